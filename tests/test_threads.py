"""The thread policy (brgm_pyro.threads): its decisions, and that the CLI applies it."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from brgm_pyro.threads import (
    SMALL_OUTPUT_PIXELS, ThreadChoice, apply_thread_policy, choose_threads, output_pixels, prefer_passive_wait,
)


@pytest.fixture
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_requested_threads_win_over_everything():
    choice = choose_threads(32 * 32, cores=8, requested=3, environ={"OMP_NUM_THREADS": "2"})
    assert choice == ThreadChoice(3, "--threads")


def test_omp_num_threads_wins_over_the_size_rule():
    assert choose_threads(32 * 32, cores=8, environ={"OMP_NUM_THREADS": "4"}).threads == 4
    assert choose_threads(1024 * 1024, cores=8, environ={"OMP_NUM_THREADS": "1"}).threads == 1


def test_small_generator_runs_single_threaded():
    choice = choose_threads(32 * 32, cores=16, environ={})
    assert choice.threads == 1 and "small generator" in choice.reason
    assert choose_threads(SMALL_OUTPUT_PIXELS - 1, cores=16, environ={}).threads == 1


def test_large_generator_uses_the_cores_or_its_share():
    assert choose_threads(SMALL_OUTPUT_PIXELS, cores=16, environ={}).threads == 16
    assert choose_threads(256 * 256, cores=16, environ={}, share=4).threads == 4
    assert choose_threads(256 * 256, cores=1, environ={}).threads == 1
    assert "passive" in choose_threads(256 * 256, cores=2, environ={}).reason
    active = choose_threads(256 * 256, cores=2, environ={}, passive_wait=False)
    assert active.threads == 2 and "ACTIVE" in active.reason


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_bad_omp_num_threads_is_refused(bad):
    with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
        choose_threads(32 * 32, cores=2, environ={"OMP_NUM_THREADS": bad})


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="--threads must be >= 1"):
        choose_threads(32 * 32, cores=2, requested=0, environ={})
    with pytest.raises(ValueError, match="cores"):
        choose_threads(32 * 32, cores=0, environ={})
    with pytest.raises(ValueError, match="img_resolution"):
        output_pixels(SimpleNamespace())


def test_prefer_passive_wait_keeps_the_users_policy():
    env: dict[str, str] = {}
    prefer_passive_wait(env)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
    env = {"OMP_WAIT_POLICY": "active"}
    assert prefer_passive_wait(env) is False and env["OMP_WAIT_POLICY"] == "active"


def test_apply_thread_policy_sets_torch_threads(keep_threads, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    small = SimpleNamespace(img_resolution=32, device=torch.device("cpu"))
    assert apply_thread_policy(small).threads == 1 and torch.get_num_threads() == 1
    assert apply_thread_policy(small, requested=2).threads == 2 and torch.get_num_threads() == 2


def test_the_cli_runs_the_bundled_model_on_one_thread_unless_told(keep_threads, monkeypatch, tmp_path):
    from brgm_pyro.app.cli_args import load_generator_and_features
    from brgm_pyro.app.parser import build_parser
    from brgm_pyro.app.settings import resolve_settings

    def load(*flags):
        argv = ["demo", "--device", "cpu", "--out", str(tmp_path / "out"), *flags]
        load_generator_and_features(resolve_settings(build_parser().parse_args(argv), argv))
        return torch.get_num_threads()

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    assert load() == 1                     # the bundled (small) generator: one thread
    assert load("--threads", "2") == 2     # --threads wins
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(1)
    assert load() == 2                     # so does OMP_NUM_THREADS


def test_the_brgm_command_waits_passively():
    """The application sets OMP_WAIT_POLICY=PASSIVE before torch (and so libgomp) is loaded."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = ("import brgm_pyro.app.cli, os; from brgm_pyro.threads import passive_wait_in_effect; "
            "print(os.environ['OMP_WAIT_POLICY'], passive_wait_in_effect())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["PASSIVE", "True"]
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["ACTIVE", "False"]
