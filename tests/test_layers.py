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
MAY_IMPORT_TRAINING = {"brgm_pyro.app.commands"}


# Every module belongs to one layer (docs/architecture.md), lowest first; a module imports only modules of
# its own layer or below.  A package's modules share its layer; the top-level modules of brgm_pyro are
# listed one by one, so a new one fails test_every_module_is_in_a_layer until it is placed.
LAYERS = ("substrate", "models", "inference", "study", "application", "tools")
LAYER_OF = {
    "brgm_pyro": "substrate",  # __init__: the version
    "brgm_pyro.functional": "substrate", "brgm_pyro.assets": "substrate", "brgm_pyro.io": "substrate",
    "brgm_pyro.metrics": "substrate", "brgm_pyro.perceptual": "substrate", "brgm_pyro.frechet": "substrate",
    "brgm_pyro.domain_classifier": "substrate", "brgm_pyro.baselines": "substrate", "brgm_pyro.bundled": "substrate",
    "brgm_pyro.generators": "substrate", "brgm_pyro.corruptions": "substrate",
    "brgm_pyro.choices": "substrate", "brgm_pyro.preparation": "substrate", "brgm_pyro.jsonfile": "substrate",
    "brgm_pyro.threads": "substrate", "brgm_pyro.precision_recall": "substrate",
    "brgm_pyro.models": "models",
    "brgm_pyro.inference": "inference",
    "brgm_pyro.study": "study",
    "brgm_pyro.app": "application",
    # on top: the training scripts (their model card runs the evaluation) and the entry point
    "brgm_pyro.training": "tools", "brgm_pyro.__main__": "tools",
}


def layer_of(module: str) -> str | None:
    """The layer of a module: its own entry, else its closest package's (brgm_pyro itself only for __init__)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYER_OF and (prefix != "brgm_pyro" or module == "brgm_pyro"):
            return LAYER_OF[prefix]
    return None


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


def module_level_imports(path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``path`` imports at module level (what runs on import)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:  # `from package import module` imports the module
                out.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module)
    return out & modules


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing itself)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        order[v] = low[v] = len(order)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in order:
            visit(v)
    return cycles


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
    ("brgm_pyro.corruptions", {"brgm_pyro.corruptions", "brgm_pyro.io", "brgm_pyro.functional", "brgm_pyro.choices"}),
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


FILES = {module_name(f): f for folder in PACKAGES for f in sorted((ROOT / folder).rglob("*.py"))}


def test_every_module_is_in_a_layer():
    assert {"brgm_pyro.app.cli_args", "brgm_pyro.app.distributed", "brgm_pyro.functional",
            "brgm_pyro.study.methods"} <= set(SOURCES)
    assert sorted(name for name in SOURCES if layer_of(name) is None) == []


def test_every_import_points_to_the_same_layer_or_below():
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    bad = sorted(f"{name} ({layer_of(name)}) imports {target} ({layer_of(target)})"
                 for name, targets in SOURCES.items() if name not in MAY_IMPORT_TRAINING
                 for target in targets if within(target, "brgm_pyro") and layer_of(target) is not None
                 and rank[layer_of(target)] > rank[layer_of(name)])
    assert bad == []


def test_no_import_cycles_among_module_level_imports():
    graph = {name: module_level_imports(path, set(FILES)) for name, path in FILES.items()}
    assert "brgm_pyro.inference.guides" in graph["brgm_pyro.inference.vi"]
    assert import_cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"a"}}) == [["a"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []
