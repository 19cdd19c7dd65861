"""Property-based fuzzing of the checkpoint loader, in a child process so a crash fails the test.

``tests/checkpoint_fuzz.py`` holds the hypothesis properties (mutated real checkpoints, mutated
``data.pkl`` inside a valid zip, random and spliced pickle opcode streams): every input loads a
generator or raises ``CheckpointError``. CI runs a bounded, derandomised number of examples; for a
longer randomised run: ``BRGM_FUZZ_EXAMPLES=5000 python tests/checkpoint_fuzz.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parent / "checkpoint_fuzz.py"
LIMITS = ("import resource, runpy, sys; "
          "resource.setrlimit(resource.RLIMIT_CPU, (600, 600)); "
          "sys.argv = [{path!r}]; import torch; "
          "vm = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024; "
          "resource.setrlimit(resource.RLIMIT_AS, (vm + (6 << 30), vm + (6 << 30))); "
          "runpy.run_path({path!r}, run_name='__main__')")


def test_loader_property_holds_under_fuzzing():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", LIMITS.format(path=str(FUZZ))], capture_output=True, text=True,
                          timeout=900, env=env)
    report = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, f"fuzzing failed or crashed (return code {proc.returncode}):\n{report}"
    assert proc.stdout.count("property held") == 10, report
