"""The benchmark scripts (not installed with the library).

A package so that every script imports the shared harness the same way, ``from benchmarks import
harness``, whether it is run as a file (``python benchmarks/calibration.py``), as a module
(``python -m benchmarks.calibration``), in a worker process of the harness's pool, or from the tests.
"""
