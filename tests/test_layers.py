"""Dependencies point down (docs/architecture.md): checked on the import statements of the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# source folder -> the package name it is installed as (pyproject.toml [tool.setuptools.package-dir])
PACKAGES = {"brgm_pyro": "brgm_pyro", "models": "brgm_pyro.models", "inference": "brgm_pyro.inference"}
# The application (command line, data-set runs, reports) is the sub-package brgm_pyro.app.
APPLICATION = {"brgm_pyro.app"}
# The calibration study (simulated problems, SBC report, interval-scale fit, the named methods) sits on
# top of the algorithms: brgm_pyro.study.
STUDY = "brgm_pyro.study"
# The command line is the top of the house: its `train-generator` command runs the training scripts;
# `python -m brgm_pyro` (brgm_pyro.__main__) starts it.
MAY_IMPORT_TRAINING = {"brgm_pyro.app.cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    name = [PACKAGES[parts[0]], *parts[1:]]
    return ".".join(name[:-1] if name[-1] == "__init__" else name)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules (and ``module.name`` of from-imports) that ``path`` imports,
    at module level or inside functions."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def sources() -> dict[str, set[str]]:
    return {module_name(f): imported_modules(f) for folder in PACKAGES for f in sorted((ROOT / folder).rglob("*.py"))}


SOURCES = sources()


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(importer_in: str, forbidden: set[str], allowed_importers: set[str] = frozenset()) -> list[str]:
    return sorted(f"{name} imports {target}" for name, targets in SOURCES.items()
                  if within(name, importer_in) and name not in allowed_importers
                  for target in targets if any(within(target, f) for f in forbidden))


def test_the_scanner_resolves_relative_imports():
    assert "brgm_pyro.generators.checkpoint_files" in SOURCES["brgm_pyro.generators.loading"]
    assert "brgm_pyro.models.priors" in SOURCES["brgm_pyro.models"]  # models/__init__.py: from .priors import ...
    assert "brgm_pyro.models.brgm.BRGMModel" in SOURCES["brgm_pyro.inference.map"]
    assert "brgm_pyro.generators.stylegan2" in SOURCES["brgm_pyro.training.trainer"]


def test_runtime_code_never_imports_training():
    bad = sorted(f"{name} imports {target}" for name, targets in SOURCES.items()
                 if not within(name, "brgm_pyro.training") and name not in MAY_IMPORT_TRAINING
                 for target in targets if within(target, "brgm_pyro.training"))
    assert bad == []


@pytest.mark.parametrize("package, allowed", [
    # the generator loaders: only themselves, the file table of the bundled assets, and functional helpers
    ("brgm_pyro.generators", {"brgm_pyro.generators", "brgm_pyro.assets", "brgm_pyro.functional"}),
    # the operators f: themselves, pixel reading (mask files) and functional helpers
    ("brgm_pyro.corruptions", {"brgm_pyro.corruptions", "brgm_pyro.io", "brgm_pyro.functional"}),
])
def test_substrate_packages_import_only_what_lies_below(package, allowed):
    bad = sorted(f"{name} imports {target}" for name, targets in SOURCES.items() if within(name, package)
                 for target in targets if within(target, "brgm_pyro") and not any(within(target, a) for a in allowed))
    assert bad == []


def test_models_and_inference_do_not_reach_up():
    assert violations("brgm_pyro.models", {"brgm_pyro.inference", "brgm_pyro.bundled", STUDY, *APPLICATION}) == []
    assert violations("brgm_pyro.inference", {"brgm_pyro.bundled", STUDY, *APPLICATION}) == []


def test_the_study_sits_above_inference_and_below_the_application():
    # nothing below the study (substrate, models, inference) imports it; the study imports no application code
    below = sorted(f"{name} imports {target}" for name, targets in SOURCES.items()
                   if not any(within(name, top) for top in (STUDY, "brgm_pyro.app", "brgm_pyro.training",
                                                             "brgm_pyro.__main__"))
                   for target in targets if within(target, STUDY))
    assert below == []
    assert violations(STUDY, set(APPLICATION)) == []
    assert "brgm_pyro.study.methods" in SOURCES and "brgm_pyro.inference.calibration" not in SOURCES


def test_only_the_application_and_the_tools_above_it_import_the_application():
    # brgm_pyro.training (offline tools: its model card runs the evaluation) and the entry point sit on top.
    bad = sorted(f"{name} imports {target}" for name, targets in SOURCES.items()
                 if not any(within(name, top) for top in ("brgm_pyro.app", "brgm_pyro.training", "brgm_pyro.__main__"))
                 for target in targets if within(target, "brgm_pyro.app"))
    assert bad == []
