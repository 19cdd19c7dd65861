"""What every inference runner shares: seeding, its own param-store scope, a frozen generator,
a progress bar with the current loss, a callback hook, and per-term loss recording."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pyro
from pyro.infer import Trace_ELBO
from tqdm.auto import tqdm

from brgm_pyro.models.brgm import BRGMModel

StepCallback = Callable[[int, float, dict[str, float]], None]


@contextlib.contextmanager
def inference_scope(model: BRGMModel, seed: int) -> Iterator[None]:
    """Seed Pyro/torch, give the run an empty param store (restored afterwards), and freeze the
    generator: no weight gradients, eval mode, constant noise (G is a deterministic function of w)."""
    generator = model.generator
    flags = [p.requires_grad for p in generator.parameters()] if hasattr(generator, "parameters") else []
    was_training = getattr(generator, "training", False)
    noise_mode = getattr(generator, "noise_mode", None)
    with pyro.get_param_store().scope():
        pyro.set_rng_seed(seed)
        if flags:
            generator.requires_grad_(False)
            generator.eval()
        if noise_mode is not None:
            generator.noise_mode = "const"
        try:
            yield
        finally:
            if flags:
                for p, flag in zip(generator.parameters(), flags):
                    p.requires_grad_(flag)
                generator.train(was_training)
            if noise_mode is not None:
                generator.noise_mode = noise_mode


class TermRecordingELBO(Trace_ELBO):
    """``Trace_ELBO`` that also records each model site's negative log density per step
    (the prior, colinearity and likelihood terms), averaged over particles, at no extra cost."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_terms: dict[str, float] = {}

    def _get_traces(self, model, guide, args, kwargs):  # noqa: ANN001 - Pyro's signature
        terms: dict[str, float] = {}
        for model_trace, guide_trace in super()._get_traces(model, guide, args, kwargs):
            for name, site in model_trace.nodes.items():
                if site["type"] == "sample" and "log_prob_sum" in site:
                    value = -float(site["log_prob_sum"].detach()) / self.num_particles
                    terms[name] = terms.get(name, 0.0) + value
            self.last_terms = terms
            yield model_trace, guide_trace


@dataclass
class History:
    """Loss per step and each model term (negative log density) per step."""

    loss: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    wall_seconds: float = 0.0

    def record(self, loss: float, terms: dict[str, float]) -> None:
        self.loss.append(loss)
        for name, value in terms.items():
            self.terms.setdefault(name, []).append(value)


def run_steps(
    step: Callable[[], float],
    num_steps: int,
    elbo: TermRecordingELBO | None,
    progress: bool,
    callback: StepCallback | None,
    desc: str,
) -> History:
    """Call ``step`` ``num_steps`` times with a progress bar showing the loss; record the history.

    Pyro's argument validation runs on the first step only (it checks the model's and guide's
    distributions once; later steps build the same distributions, and re-checking them cost ~4% of
    a MAP step of the bundled model, ``benchmarks/step_overhead.py``); a NaN loss, which validation
    would have caught as a NaN parameter, raises instead."""
    history = History()
    start = time.perf_counter()
    bar = tqdm(range(num_steps), disable=not progress, desc=desc, leave=False)
    for i in bar:
        if i == 0 or not pyro.infer.util.is_validation_enabled():
            loss = float(step())
        else:
            with pyro.validation_enabled(False):
                loss = float(step())
        if math.isnan(loss):
            raise ValueError(f"{desc} step {i}: the loss is NaN (the optimisation diverged); "
                             "try a smaller learning rate")
        terms = dict(elbo.last_terms) if elbo is not None else {}
        history.record(loss, terms)
        if progress and (i % 10 == 0 or i == num_steps - 1):
            bar.set_postfix(loss=f"{loss:.4g}")
        if callback is not None:
            callback(i, loss, terms)
    history.wall_seconds = time.perf_counter() - start
    return history

