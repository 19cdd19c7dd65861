"""The ``>>>`` examples in the docstrings of the main entry points run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

DOCUMENTED = [
    ("brgm_pyro.corruptions.base", "Corruption"),
    ("brgm_pyro.models.brgm", "BRGMModel"),
    ("brgm_pyro.generators.loading", "load_generator"),
    ("brgm_pyro.inference.vi", "fit_vi"),
]


@pytest.mark.parametrize("module_name, name", DOCUMENTED)
def test_docstring_examples_run(module_name, name, one_thread):
    module = importlib.import_module(module_name)
    obj = getattr(module, name)
    # recurse=False: the object's own docstring, not those of its methods
    tests = [t for t in doctest.DocTestFinder(recurse=False).find(obj, name, module=module) if t.examples]
    assert tests, f"{module_name}.{name} has no >>> example in its docstring"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)
