"""How many CPU threads a run uses, chosen from its work so that a busy machine cannot make it crawl.

Two measured facts (``benchmarks/busy_machine.py``, ``docs/speed.md``) set the policy:

- torch's CPU kernels run on OpenMP (``torch.__config__.parallel_info()``: libgomp).  With
  OpenMP's default *active* wait, a thread that reaches a barrier spins for its descheduled
  siblings; next to one CPU-bound process on 2 cores, a MAP step of the bundled model went from
  ~20 ms to ~0.7-1.3 s.  The *passive* wait policy (``OMP_WAIT_POLICY=PASSIVE``) sleeps instead
  and removes the cliff.  libgomp reads it once, when torch is imported, so it must be in the
  environment before that: ``prefer_passive_wait`` (called by the ``brgm`` command before it
  imports torch) sets it unless the user set it.
- A small generator (the bundled 32x32 one) is no faster with 2 threads than with 1: its
  kernels are too small to split.  It runs single-threaded (``SMALL_OUTPUT_PIXELS``).

``--threads`` and ``OMP_NUM_THREADS`` always win.  This module does not import torch at import
time, so that ``prefer_passive_wait`` can run before torch is loaded.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Mapping, MutableMapping

SMALL_OUTPUT_PIXELS = 64 * 64
"""Generators whose images have fewer pixels than this (per channel) run on one thread by default."""

_PASSIVE_SET_BEFORE_TORCH: bool | None = None  # None: prefer_passive_wait was not called


@dataclass(frozen=True)
class ThreadChoice:
    """The number of intra-op threads and why (shown by the CLI)."""

    threads: int
    reason: str


def prefer_passive_wait(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a wait policy.  Call before torch is
    imported (libgomp reads it then); returns whether passive waiting is in effect for this process."""
    global _PASSIVE_SET_BEFORE_TORCH
    env = os.environ if environ is None else environ
    if not env.get("OMP_WAIT_POLICY"):
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    in_effect = env["OMP_WAIT_POLICY"].strip().upper() == "PASSIVE" and "torch" not in sys.modules
    if environ is None:
        _PASSIVE_SET_BEFORE_TORCH = in_effect
    return in_effect


def passive_wait_in_effect() -> bool:
    """Whether torch's OpenMP threads wait passively: OMP_WAIT_POLICY is PASSIVE and was set before
    torch was imported (known when ``prefer_passive_wait`` ran first, else assumed from the environment)."""
    if os.environ.get("OMP_WAIT_POLICY", "").strip().upper() != "PASSIVE":
        return False
    return True if _PASSIVE_SET_BEFORE_TORCH is None else _PASSIVE_SET_BEFORE_TORCH


def output_pixels(generator: Any) -> int:
    """Pixels per channel of the generator's images (``img_resolution`` squared)."""
    resolution = getattr(generator, "img_resolution", None)
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"the generator has no positive integer img_resolution (got {resolution!r})")
    return resolution * resolution


def _env_threads(environ: Mapping[str, str]) -> int | None:
    text = environ.get("OMP_NUM_THREADS", "").strip()
    if not text:
        return None
    try:
        value = int(text.split(",")[0])
    except ValueError:
        raise ValueError(f"OMP_NUM_THREADS must be a positive integer, got {text!r}") from None
    if value < 1:
        raise ValueError(f"OMP_NUM_THREADS must be a positive integer, got {text!r}")
    return value


def choose_threads(pixels: int, cores: int, requested: int | None = None,
                   environ: Mapping[str, str] | None = None, passive_wait: bool = True,
                   share: int | None = None) -> ThreadChoice:
    """The thread count for a run whose generator makes ``pixels`` pixels per channel on a machine
    (or a rank's share of it, ``share``) with ``cores`` cores.

    In order: ``requested`` (``--threads``); ``OMP_NUM_THREADS``; one thread for a small generator
    (fewer than ``SMALL_OUTPUT_PIXELS``); else the cores (or ``share``).  Without passive waiting a
    multi-threaded choice is still made but its reason says that a busy machine can slow it.
    """
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be >= 1, got {requested}")
        return ThreadChoice(requested, "--threads")
    env = _env_threads(os.environ if environ is None else environ)
    if env is not None:
        return ThreadChoice(env, "OMP_NUM_THREADS")
    if pixels < SMALL_OUTPUT_PIXELS:
        return ThreadChoice(1, f"small generator ({pixels} pixels < {SMALL_OUTPUT_PIXELS}): one thread is as fast")
    n = max(1, min(cores, share if share is not None else cores))
    if n == 1:
        return ThreadChoice(1, "one core")
    wait = ("passive OpenMP wait: a busy core costs its share only" if passive_wait else
            "ACTIVE OpenMP wait (torch was imported before OMP_WAIT_POLICY=PASSIVE was set): a busy core can "
            "slow every step; set OMP_WAIT_POLICY=PASSIVE or --threads 1")
    return ThreadChoice(n, f"{n} cores, {wait}")


def apply_thread_policy(generator: Any, requested: int | None = None, share: int | None = None) -> ThreadChoice:
    """``choose_threads`` for ``generator`` on this machine, applied with ``torch.set_num_threads``.
    ``share`` defaults to the cores divided by the processes on this node (``LOCAL_WORLD_SIZE``, set
    by torchrun).  A generator on a GPU keeps one CPU thread unless told otherwise (the CPU only feeds it)."""
    import torch

    if share is None:
        ranks = os.environ.get("LOCAL_WORLD_SIZE", "1").strip()
        share = max(1, (os.cpu_count() or 1) // max(1, int(ranks) if ranks.isdigit() else 1))

    device = getattr(generator, "device", None)
    on_gpu = device is not None and torch.device(device).type != "cpu"
    pixels = 1 if on_gpu else output_pixels(generator)
    choice = choose_threads(pixels, os.cpu_count() or 1, requested, passive_wait=passive_wait_in_effect(),
                            share=share)
    if on_gpu and choice.reason.startswith("small"):
        choice = ThreadChoice(1, "generator on a GPU: one CPU thread feeds it")
    torch.set_num_threads(choice.threads)
    return choice
