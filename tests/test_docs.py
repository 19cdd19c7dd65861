"""The README and the documentation site: the commands CI runs, the API example, links, the strict
MkDocs build and its API reference (one page per public module)."""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _hooks():
    spec = importlib.util.spec_from_file_location("brgm_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _installed_public_modules() -> set[str]:
    """Public modules of the packages pyproject.toml installs, found through the import system
    (independent of the folder walk in docs/hooks.py)."""
    with open(ROOT / "pyproject.toml", "rb") as fh:
        packages = tomllib.load(fh)["tool"]["setuptools"]["packages"]
    names = set()
    for package in packages:
        if any(part.startswith("_") for part in package.split(".")):
            continue
        folder = Path(importlib.util.find_spec(package).origin).parent
        names.add(package)
        names.update(f"{package}.{p.stem}" for p in folder.glob("*.py") if not p.name.startswith("_"))
    return names


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NO_MKDOCS_2_WARNING": "1"}


def test_readme_commands_are_the_ones_ci_runs():
    """The README's install and test commands are exactly what .ci/run does."""
    readme = README.read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && .venv/bin/brgm demo' in readme
    assert '.venv/bin/pip install -q -e ".[test]"' in ci
    assert "\n.venv/bin/python -m pytest\n" in readme
    assert ci.rstrip().splitlines()[-1] == ".venv/bin/python -m pytest"


def test_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= 180, f"README.md has {len(lines)} lines; reference text belongs in docs/"


def test_docs_extra_is_part_of_the_test_extra():
    with open(ROOT / "pyproject.toml", "rb") as fh:
        extras = tomllib.load(fh)["project"]["optional-dependencies"]
    names = {re.split(r"[\[<>=!~ ]", req)[0] for req in extras["docs"]}
    assert {"mkdocs-material", "mkdocstrings"} <= names
    assert any(req.startswith("brgm-pyro[docs]") for req in extras["test"])


def test_every_relative_link_names_a_file():
    """README, the docs pages, the benchmarks' results and the model card: no link names nothing."""
    hooks = _hooks()
    pages = [README, *(p for folder in ("docs", "benchmarks", "brgm_pyro", "examples")
                       for p in sorted((ROOT / folder).glob("**/*.md")))]
    generated = hooks.generated_pages(ROOT / "docs")
    problems = {str(p.relative_to(ROOT)): hooks.broken_links(p.read_text(), p, docs_dir=ROOT / "docs",
                                                            generated=generated)
                for p in pages}
    assert {page: found for page, found in problems.items() if found} == {}


def test_link_check_finds_broken_links():
    hooks = _hooks()
    page = ROOT / "docs" / "page.md"          # never written: only its folder matters
    text = ("[ok](index.md) [ok](../benchmarks/README.md#calibration) [bad](nope.md) "
            "[bad anchor](../benchmarks/README.md#no-such-heading) [web](https://example.org/x.md) "
            "[outside](../../etc/passwd)\n```\n[in code](ignored.md)\n```\n")
    found = hooks.broken_links(text, page, docs_dir=ROOT / "docs")
    assert [f.split(" ")[0] for f in found] == [
        "nope.md", "../benchmarks/README.md#no-such-heading", "../../etc/passwd"]


def test_github_slug():
    hooks = _hooks()
    assert hooks.github_slug("Calibration: variational methods") == "calibration-variational-methods"
    assert (hooks.github_slug("Generator: `python benchmarks/generator.py --repeats 2`")
            == "generator-python-benchmarksgeneratorpy---repeats-2")


def test_doctest_blocks_become_fenced_code():
    hooks = _hooks()
    text = "Intro.\n\n>>> x = {'a': 1}\n>>> x['a']\n1\n\nAfter.\n\n```\n>>> kept\n```"
    assert hooks.fence_doctests(text) == (
        "Intro.\n\n```pycon\n>>> x = {'a': 1}\n>>> x['a']\n1\n```\n\nAfter.\n\n```\n>>> kept\n```")


def test_api_pages_cover_every_public_module():
    """docs/hooks.py's folder walk finds exactly the public modules the installed packages have."""
    assert set(_hooks().public_modules()) == _installed_public_modules()


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    """`mkdocs build --strict` succeeds (no warning: broken links, anchors, docstrings) and writes one
    API page per public module, and none for a module that does not exist."""
    site = tmp_path / "site"
    shutil.rmtree(ROOT / "build" / "docs-src", ignore_errors=True)   # as in a fresh clone
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                         cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "WARNING" not in run.stderr
    pages = {p.parent.name for p in (site / "api").glob("*/index.html")}
    assert pages == _installed_public_modules()
    # a page has the module's documented members, not an empty shell
    html = (site / "api" / "brgm_pyro.inference.map" / "index.html").read_text()
    assert 'id="brgm_pyro.inference.map.map_estimate"' in html
    assert (site / "demo.png").exists()


def _readme_api_example() -> str:
    text = README.read_text()
    section = text[text.index("## The API in 20 lines"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_api_example_is_about_20_lines():
    assert 15 <= len(_readme_api_example().strip().splitlines()) <= 24


@pytest.mark.slow
def test_readme_api_example_runs(tmp_path):
    """The README's API example runs as written and prints finite RMSEs for MAP and the VI mean."""
    script = tmp_path / "example.py"
    script.write_text(_readme_api_example())
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(), capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    values = dict(re.findall(r"^(MAP|VI mean) RMSE \(0-255\): (\S+)$", run.stdout, re.M))
    assert set(values) == {"MAP", "VI mean"}, run.stdout
    assert all(math.isfinite(float(v)) and 0 <= float(v) <= 255 for v in values.values())
    from PIL import Image
    with Image.open(tmp_path / "sr.png") as grid:
        assert grid.width >= 4 * 32 and grid.height >= 32


def test_install_page_cpu_command_pins_the_projects_torch():
    """The CPU-only install names the torch / torchvision versions pyproject.toml pins."""
    with open(ROOT / "pyproject.toml", "rb") as fh:
        deps = tomllib.load(fh)["project"]["dependencies"]
    pins = [d for d in deps if d.startswith(("torch==", "torchvision=="))]
    assert len(pins) == 2
    for page in (README, ROOT / "docs" / "install.md"):
        line = next(ln for ln in page.read_text().splitlines() if "download.pytorch.org/whl/cpu" in ln)
        assert set(pins) <= set(shlex.split(line)), (page.name, line)


def _doc_pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("**/*.md"))]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def _resolves(dotted: str) -> bool:
    """``dotted`` is an importable module, or an attribute path inside one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_python_blocks_in_the_docs_compile():
    for page in _doc_pages():
        for i, block in enumerate(_python_blocks(page.read_text())):
            compile(block, f"{page.name}, python block {i}", "exec")


def test_names_the_docs_use_exist():
    """Every `from brgm_pyro... import name` of a code block and every backticked brgm_pyro.x.y of
    the text names a module or attribute that exists (so a moved or renamed name shows up here)."""
    missing = []
    for page in _doc_pages():
        text = page.read_text()
        for block in _python_blocks(text):
            for module, names in re.findall(r"^\s*from (brgm_pyro[\w.]*) import ([\w, ]+)", block, re.M):
                missing += [f"{page.name}: {module}.{n.strip()}" for n in names.split(",")
                            if not _resolves(f"{module}.{n.strip()}")]
        for dotted in set(re.findall(r"`(brgm_pyro(?:\.\w+)+)`", text)):
            if not _resolves(dotted):
                missing.append(f"{page.name}: {dotted}")
    assert missing == []
