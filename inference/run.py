"""One way to run a reconstruction method on a model of one observation or a batch of B.

    outputs = run_method(model, "fullrank", MethodOptions(steps=500, interval_scale=1.35), seed=[3, 4])
    outputs[1].image, outputs[1].samples, outputs[1].std        # image 1 of the batch

A single observation is a batch of one: the result is always one ``MethodOutput`` per image.
MAP, VI and the recommended posterior run once on the batched model (image i seeded ``seed[i]``:
equal to a run on image i alone with that seed); NUTS runs one image at a time.  The command
line (one image and data sets) and the evaluation all run their methods through here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from brgm_pyro.choices import METHODS
from brgm_pyro.models import BRGMModel

from .guides import image_seeds
from .map import map_estimate
from .mcmc import run_mcmc
from .posterior import single_image_model
from .recommended import fit_recommended_posterior
from .vi import fit_vi
from .widening import check_interval_scale


BATCHED_METHODS = frozenset({"map", "vi", "fullrank"})
"""Methods fitted once on a batched model; the others run one image at a time."""


@dataclass(frozen=True)
class MethodOptions:
    """Settings of the methods: ``steps`` Adam steps (MAP, VI, and the recommended posterior's MAP
    starts) at learning rate ``lr``; ``samples`` posterior draws kept per image; ``mean_draws`` draws of w
    for the per-pixel mean (fullrank's and mcmc's image) and std (``Posterior.pixel_statistics``: the misfit
    integrated out, so only w is drawn); ``mcmc_samples`` NUTS draws after as many warm-up steps;
    ``interval_scale`` widens the recommended posterior; ``progress`` shows progress bars."""

    steps: int = 500
    lr: float = 0.1
    samples: int = 64
    mean_draws: int = 512
    mcmc_samples: int = 100
    interval_scale: float = 1.0
    progress: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "mcmc_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mean_draws < 2:
            raise ValueError(f"mean_draws must be >= 2 (a mean and a std), got {self.mean_draws}")
        if self.samples < 0:
            raise ValueError(f"samples must be >= 0, got {self.samples}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        check_interval_scale(self.interval_scale)


@dataclass
class MethodOutput:
    """What one method gives for one image: ``image`` (1, C, H, W) on the CPU (the MAP reconstruction,
    G(mu) of VI, the posterior mean image of fullrank and mcmc); ``samples`` (n, C, H, W) posterior
    draws of the clean image and ``std`` (1, C, H, W) the per-pixel posterior std (None for MAP);
    ``generated`` (1, C, H, W): G(w*) of MAP, which differs from ``image`` with a misfit term (``image`` is
    then G(w*) + E[r | y, w*], ``MAPResult.reconstruction``; None for the other methods, whose draws carry
    r); ``seconds`` of wall time (a batch's time shared equally by its images); ``result`` the fitted
    object (``MAPResult`` of a single-image MAP, the image's ``Posterior``, the ``MCMCResult``;
    None for an image of a batched MAP)."""

    method: str
    image: torch.Tensor
    samples: torch.Tensor | None = None
    std: torch.Tensor | None = None
    seconds: float = 0.0
    result: Any = field(default=None, repr=False)
    generated: torch.Tensor | None = None


def check_methods(methods: Sequence[str]) -> list[str]:
    """``methods`` as a list, or ``ValueError`` naming the unknown ones."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    return list(methods)


def run_method(model: BRGMModel, method: str, options: MethodOptions = MethodOptions(),
               seed: int | Sequence[int] = 0) -> list[MethodOutput]:
    """Run ``method`` (``METHODS``) on ``model``; one ``MethodOutput`` per image (one for a
    single-image model).  ``seed``: one for every image, or one per image."""
    check_methods([method])
    if method != "map" and options.samples < 1:
        raise ValueError(f"method {method} draws posterior samples: samples must be >= 1, got {options.samples}")
    seeds = image_seeds(model, seed)
    n = model.num_images
    t0 = time.perf_counter()
    if method == "mcmc":
        return [_run_mcmc(single_image_model(model, i), options, seeds[i]) for i in range(n)]
    if method == "map":
        res = map_estimate(model, num_steps=options.steps, lr=options.lr, seed=seeds[0], progress=options.progress)
        images, generated = (x.detach().reshape(n, *x.shape[-3:]).cpu() for x in (res.reconstruction, res.image))
        seconds = (time.perf_counter() - t0) / n
        return [MethodOutput(method, images[i:i + 1], seconds=seconds, result=None if model.batched else res,
                             generated=generated[i:i + 1]) for i in range(n)]
    fit_seed = seeds if model.batched else seeds[0]
    if method == "vi":
        posterior = fit_vi(model, num_steps=options.steps, lr=options.lr, seed=fit_seed, progress=options.progress)
    else:
        posterior = fit_recommended_posterior(model, seed=fit_seed, map_steps=options.steps,
                                              interval_scale=options.interval_scale, progress=options.progress)
    out = []
    for i in range(n):
        image_posterior = posterior.image(i)
        draws = image_posterior.sample(options.samples, seed=seeds[i])
        stats = image_posterior.pixel_statistics(options.mean_draws, seed=seeds[i])
        # vi: G(mu_v), the paper's reconstruction; fullrank: the posterior mean image
        image = image_posterior.mean_image().cpu() if method == "vi" else stats.mean.unsqueeze(0)
        out.append(MethodOutput(method, image, draws.images, stats.std.unsqueeze(0).cpu(), result=image_posterior))
    seconds = (time.perf_counter() - t0) / n
    for o in out:
        o.seconds = seconds
    return out


def _run_mcmc(model: BRGMModel, options: MethodOptions, seed: int) -> MethodOutput:
    t0 = time.perf_counter()
    result = run_mcmc(model, num_samples=options.mcmc_samples, warmup_steps=options.mcmc_samples, seed=seed,
                      progress=options.progress)
    posterior = result.posterior
    draws = posterior.sample(options.samples, seed=seed)
    stats = posterior.pixel_statistics(options.mean_draws, seed=seed)
    return MethodOutput("mcmc", stats.mean.unsqueeze(0), draws.images, stats.std.unsqueeze(0).cpu(),
                        time.perf_counter() - t0, result)


def run_methods(model: BRGMModel, methods: Sequence[str], options: MethodOptions = MethodOptions(),
                seed: int | Sequence[int] = 0) -> list[dict[str, MethodOutput]]:
    """Each of ``methods`` in turn (``run_method``): for each image, method -> its output."""
    check_methods(methods)
    out: list[dict[str, MethodOutput]] = [{} for _ in range(model.num_images)]
    for method in methods:
        for per_image, output in zip(out, run_method(model, method, options, seed)):
            per_image[method] = output
    return out
