"""The independent problems of one run solved side by side: ``brgm demo``'s two rows (x4 SR and
in-painting) in two processes on a CPU machine whose cores allow it.

Each problem is solved exactly as in a sequential run: the same settings build the same model on
the same generator, the same methods run with the same seed and on the same thread count (the
worker applies the run's thread policy itself), so the outputs are the same numbers and only
the wall time changes: on 2 cores with one thread per process, the slower row's time instead of
the sum (``benchmarks/demo_cost.py``).  A worker is a fresh ``spawn``-ed interpreter (never a
fork of a process whose OpenMP threads are running); it loads the generator and the feature
network again (a second or two) and sends its ``MethodOutput``s back pickled.

    processes = problem_processes(len(problems), generator, settings.processes)
    outputs = solve_problems(settings, generator, features, problems, processes)
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Sequence

import torch

from ..corruptions import Corruption
from ..generators import PriorGenerator
from ..inference import MethodOptions, MethodOutput, run_methods
from ..models import BRGMModel
from .cli_args import load_generator_and_features, model_from_settings
from .settings import Settings


def problem_processes(num_problems: int, generator: PriorGenerator, requested: int | None = None,
                      cores: int | None = None) -> int:
    """How many processes solve ``num_problems`` independent problems: ``requested``
    (``--processes``) if given, else as many as the cores hold at this process's torch thread
    count (``cores // torch.get_num_threads()``), never more than the problems; 1 (this process
    alone) for a generator on a GPU."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--processes must be >= 1, got {requested}")
        return max(1, min(requested, num_problems))
    if num_problems < 2 or torch.device(generator.device).type != "cpu":
        return 1
    if cores is None:
        cores = os.cpu_count() or 1
    return max(1, min(num_problems, cores // max(1, torch.get_num_threads())))


def solve_problem(settings: Settings, generator: PriorGenerator, features: torch.nn.Module | None,
                  corruption: Corruption, observation: torch.Tensor,
                  interval_scale: float) -> tuple[BRGMModel, dict[str, MethodOutput]]:
    """One problem: its model from the settings, then the settings' methods (``run_methods``)."""
    model = model_from_settings(settings, generator, corruption, observation, features)
    options = MethodOptions(steps=settings.steps, lr=settings.lr, samples=settings.samples,
                            mean_draws=settings.mean_draws,
                            progress=settings.progress, interval_scale=interval_scale)
    return model, run_methods(model, settings.methods, options, seed=settings.seed)[0]  # one image


def _solve_in_worker(settings: Settings, corruption: Corruption, observation: torch.Tensor,
                     interval_scale: float) -> bytes:
    """A worker's problem: the generator and features loaded here (with the run's thread policy).
    The outputs go back as plain pickle bytes: torch's multiprocessing reducers refuse tensors that
    are part of an autograd graph (a posterior's parameters are), plain pickle copies their values."""
    generator, features = load_generator_and_features(settings)
    return pickle.dumps(solve_problem(settings, generator, features, corruption, observation, interval_scale)[1])


def _portable(settings: Settings) -> Settings:
    """The settings as a worker gets them: plain dicts instead of read-only mappings (which do not
    pickle) and no progress bars (two processes' bars would interleave)."""
    return replace(settings, options=dict(settings.options), weights=dict(settings.weights), progress=False)


def solve_problems(settings: Settings, generator: PriorGenerator, features: torch.nn.Module | None,
                   problems: Sequence[tuple[Corruption, torch.Tensor, float]],
                   processes: int = 1) -> list[tuple[BRGMModel, dict[str, MethodOutput]]]:
    """``solve_problem`` for each (corruption, observation, interval scale), in order.  With
    ``processes`` > 1 the first problem runs here (with its progress bars) while the others run in
    ``processes - 1`` spawned workers; every model returned is built here, on ``generator``."""
    if processes <= 1 or len(problems) < 2:
        return [solve_problem(settings, generator, features, *p) for p in problems]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes - 1, mp_context=context) as pool:
        futures = [pool.submit(_solve_in_worker, _portable(settings), *p) for p in problems[1:]]
        try:
            first = solve_problem(settings, generator, features, *problems[0])
            rest = [(model_from_settings(settings, generator, c, o, features), pickle.loads(f.result()))
                    for (c, o, _), f in zip(problems[1:], futures)]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return [first, *rest]
