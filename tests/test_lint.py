"""The tree passes ruff with the project's configuration (pyproject.toml [tool.ruff])."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_passes():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    assert Path(ruff).exists(), "ruff is not installed: pip install -e '.[test]' installs it"
    proc = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_configuration_checks_imports_semicolons_and_lambdas():
    """E402 (an import below code), E702 (statements joined by ';'), E731 (a lambda assigned to a
    name) and F401 (an unused import) are on: ruff reports each in a snippet checked with the
    project's configuration."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    snippet = "import os\nx = 1; y = 2\nf = lambda: 0\nimport sys\n"
    proc = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", "--stdin-filename",
                           str(ROOT / "brgm_pyro" / "_snippet.py"), "-"], input=snippet, capture_output=True,
                          text=True, cwd=ROOT)
    for code in ("E402", "E702", "E731", "F401"):
        assert code in proc.stdout, f"{code} is not enabled: {proc.stdout}{proc.stderr}"
