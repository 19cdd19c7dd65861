"""MkDocs hooks for the brgm-pyro site (named in ``mkdocs.yml``; excluded from the site itself).

- **API pages from the package tree.** Every public module (no path component with a leading
  underscore) of every package under the roots in ``pyproject.toml``'s
  ``[tool.setuptools.package-dir]`` gets a generated page ``api/<module>.md`` holding
  ``::: <module>``, and the nav entry ``api/index.md`` becomes a section listing them all, so a new
  or moved module needs no edit here.
- **Source tree for mkdocstrings.** ``brgm_pyro.models`` and ``brgm_pyro.inference`` live in
  ``models/`` and ``inference/`` (package-dir mapping), which griffe's static loader cannot follow;
  ``build/docs-src/`` gets a tree of symbolic links that puts every package where its name says.
- **Doctests as code.** ``DoctestFences`` (a griffe extension, named in ``mkdocs.yml``) puts each
  doctest block (``>>>`` lines and their output, up to a blank line) of a docstring in a fenced
  ``pycon`` block, so Markdown neither quotes it (``>``) nor reads ``x["a"]["b"]`` as a link.
- **Links.** Every relative link of every page must name an existing file or folder of the
  repository (links that leave ``docs/`` too, e.g. to ``benchmarks/README.md``), and a link to a
  heading of a Markdown file outside ``docs/`` must name an existing heading; otherwise a warning,
  which fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tomllib
from pathlib import Path

import griffe
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.plugins.brgm_pyro_docs")

ROOT = Path(__file__).resolve().parent.parent
SOURCE_TREE = ROOT / "build" / "docs-src"
API_INDEX = "api/index.md"


def package_roots(root: Path = ROOT) -> dict[str, Path]:
    """Package name -> folder, from ``[tool.setuptools.package-dir]`` (the default: ``name/``)."""
    with open(root / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)
    mapping = project.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    roots = {name: root / folder for name, folder in mapping.items() if name}
    top = project["project"]["name"].replace("-", "_")
    roots.setdefault(top, root / top)
    return roots


def module_tree(root: Path = ROOT) -> dict[str, str]:
    """Every public module and package under the package roots -> the package it belongs to.

    A package belongs to itself; a module to the package whose folder holds it.
    """
    tree: dict[str, str] = {}
    for package, folder in package_roots(root).items():
        for dirpath, dirnames, filenames in os.walk(folder):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
            if "__init__.py" not in filenames:
                dirnames[:] = []
                continue
            dotted = ".".join((package, *here.relative_to(folder).parts))
            tree[dotted] = dotted
            for name in filenames:
                if name.endswith(".py") and not name.startswith("_"):
                    tree[f"{dotted}.{name[:-3]}"] = dotted
    return dict(sorted(tree.items()))


def public_modules(root: Path = ROOT) -> list[str]:
    """Dotted names of every public module and package under the package roots, sorted."""
    return list(module_tree(root))


def _build_source_tree(root: Path = ROOT) -> Path:
    """Symbolic links under ``build/docs-src`` that place every package at the path its name gives."""
    if SOURCE_TREE.exists():
        shutil.rmtree(SOURCE_TREE)
    roots = package_roots(root)
    for package in sorted(roots, key=lambda name: name.count(".")):
        target = SOURCE_TREE.joinpath(*package.split("."))
        target.parent.mkdir(parents=True, exist_ok=True)
        if package.count(".") == 0:
            target.mkdir()
            for entry in sorted(roots[package].iterdir()):
                if not entry.name.startswith("."):
                    (target / entry.name).symlink_to(entry)
        else:
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to(roots[package])
    return SOURCE_TREE


def _api_page(module: str) -> str:
    return f"api/{module}.md"


def generated_pages(docs_dir: Path) -> frozenset[Path]:
    """The pages ``on_files`` adds (not on disk): the API index and one page per public module."""
    return frozenset(docs_dir / p for p in [API_INDEX, *map(_api_page, public_modules())])


def _api_nav(tree: dict[str, str]) -> list:
    sections: dict[str, list] = {}
    for module, package in tree.items():
        sections.setdefault(package, []).append({module: _api_page(module)})
    return [{"Overview": API_INDEX}] + [{package: entries} for package, entries in sections.items()]


@event_priority(100)  # before mkdocstrings sets up its handler, whose search path is the tree
def on_config(config):
    _build_source_tree()
    tree = module_tree()
    nav = config.get("nav") or []
    for i, entry in enumerate(nav):
        if isinstance(entry, dict) and list(entry.values()) == [API_INDEX]:
            nav[i] = {next(iter(entry)): _api_nav(tree)}
    return config


def on_files(files: Files, config) -> Files:
    tree = module_tree()
    lines = ["# API reference", "",
             "One page per public module, built by mkdocstrings from the docstrings. The layers "
             "(each imports only those below it) are described in [Architecture](../architecture.md).", ""]
    group = None
    for module, package in tree.items():
        if package != group:
            group = package
            lines += ["", f"## `{group}`", ""]
        lines.append(f"- [`{module}`]({module}.md)")
    files.append(File.generated(config, API_INDEX, content="\n".join(lines) + "\n"))
    for module in tree:
        files.append(File.generated(config, _api_page(module), content=f"# `{module}`\n\n::: {module}\n"))
    return files


_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def github_slug(heading: str) -> str:
    """The anchor GitHub and MkDocs' toc give a heading (lower case, punctuation dropped, spaces -> -)."""
    text = re.sub(r"`|\*\*|\[|\]\([^)]*\)", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return {github_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def broken_links(markdown: str, source: Path, root: Path = ROOT, docs_dir: Path | None = None,
                 generated: frozenset[Path] = frozenset()) -> list[str]:
    """The relative links of ``markdown`` (written in file ``source``) that name nothing in the repository.

    Links from a page of ``docs_dir`` to another are checked for existence only (MkDocs checks their
    anchors); pages in
    ``generated`` (written by a hook, not on disk) count as existing; links to Markdown files
    elsewhere are also checked for the heading they name.
    """
    problems = []
    for match in _LINK.finditer(_FENCE.sub("", markdown)):
        target = match.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith(("#", "/")):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (source.parent / path_part).resolve()
        try:
            resolved.relative_to(root)
        except ValueError:
            problems.append(f"{target} (outside the repository)")
            continue
        if not resolved.exists() and resolved not in generated:
            problems.append(f"{target} (no such file)")
            continue
        mkdocs_checks = (docs_dir is not None and source.resolve().is_relative_to(docs_dir)
                         and resolved.is_relative_to(docs_dir))
        if anchor and not mkdocs_checks and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            problems.append(f"{target} (no heading #{anchor} in {resolved.relative_to(root)})")
    return problems


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.abs_src_path is None:
        return markdown
    docs_dir = Path(config["docs_dir"]).resolve()
    generated = frozenset(docs_dir / f.src_uri for f in files if f.generated_by)
    for problem in broken_links(markdown, Path(page.file.abs_src_path), docs_dir=docs_dir, generated=generated):
        log.warning("Doc file '%s' has a broken link: %s", page.file.src_uri, problem)
    return markdown


def fence_doctests(text: str) -> str:
    """``text`` with every doctest block (``>>>`` up to a blank line) inside a ```` ```pycon ```` fence."""
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
        if in_fence or not stripped.startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(stripped)]
        out.append(f"{indent}```pycon")
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    """Griffe extension: doctest blocks of every docstring become fenced code (see ``fence_doctests``)."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
