"""Hostile checkpoint files must end in a clean ``CheckpointError``: no crash, hang, memory blow-up or code run.

The corpus (``hostile_checkpoints.CASES``, one file per attack class of issue 9) is generated in
a temporary folder and loaded by ``load_generator`` in child processes with an address-space
limit (2.5 GiB above what importing torch maps) and a CPU-time limit; a segfault or abort shows
up as a negative return code, a hang as a timeout, memory exhaustion as a MemoryError outcome.
The numpy / tensor-state cases that crashed Python before the fix run in their own child.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .hostile_checkpoints import CASES

CRASH_CLASSES = ("numpy_void_dtype", "numpy_reconstruct_short_build", "numpy_object_scalar", "tensor_setstate")
HANG_GUARD_S = 30  # per file; a hang guard, not a benchmark

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import torch
    from brgm_pyro.generators import CheckpointError, load_generator
    vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + (5 << 29), vm + (5 << 29)))
    resource.setrlimit(resource.RLIMIT_CPU, (240, 240))
    for name, path in json.loads(sys.argv[1]).items():
        start = time.perf_counter()
        try:
            load_generator(path, device="cpu")
            outcome, message = "loaded", ""
        except CheckpointError as err:
            outcome, message = type(err).__name__, str(err)
        except BaseException as err:  # reported, and fails the test
            outcome, message = type(err).__name__, repr(err)[:2000]
        print(json.dumps(dict(name=name, outcome=outcome, message=message,
                              seconds=time.perf_counter() - start)), flush=True)
""")


def run_child(paths: dict[str, str], cwd: Path) -> tuple[int, dict[str, dict], str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(paths)], capture_output=True, text=True,
                          timeout=HANG_GUARD_S * 4 + 60, cwd=cwd, env=env)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            results[row["name"]] = row
    return proc.returncode, results, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    paths = {name: str(builder(folder)) for name, (builder, _) in CASES.items()}
    crash = {k: v for k, v in paths.items() if k in CRASH_CLASSES}
    rest = {k: v for k, v in paths.items() if k not in CRASH_CLASSES}
    runs = {}
    for group in (crash, rest):
        rc, results, stderr = run_child(group, folder)
        for name in group:
            runs[name] = (rc, results.get(name), stderr)
    return folder, paths, runs


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_file_gives_a_clean_checkpoint_error(corpus, name):
    folder, paths, runs = corpus
    rc, result, stderr = runs[name]
    assert rc == 0, f"the child loading the corpus died with return code {rc} (negative = signal): {stderr}"
    assert result is not None, f"no result for {name}: {stderr}"
    assert result["outcome"] in ("CheckpointError", "UnsafeCheckpointError", "CheckpointNotFoundError"), result
    assert result["seconds"] < HANG_GUARD_S, result
    assert __import__("re").search(CASES[name][1], result["message"]), result["message"]
    if not paths[name].startswith("/dev/"):
        assert repr(paths[name]) in result["message"], "the message must name the file"


def test_no_hostile_payload_ran(corpus):
    folder, _, _ = corpus
    assert not list(folder.glob("PWNED*"))


def test_code_running_cases_are_unsafe_errors(corpus):
    _, _, runs = corpus
    for name in ("os_system", "eval_stack_global", "inst_opcode", "tensor_setstate"):
        assert runs[name][1]["outcome"] == "UnsafeCheckpointError", runs[name]
