"""Building and running a reconstruction: the feature network, MAP / VI / full-rank / NUTS on a
BRGM model, and what each method gives (image, draws, per-pixel std, wall time).

    model = brgm_model(G, corruption, observation, features=build_features("auto", G))
    outputs = run_methods(model, ["map", "fullrank"], steps=500, samples=64)

The model itself is built by the one builder, ``brgm_pyro.models.brgm_model``; the corruption by
the one task factory, ``brgm_pyro.corruptions.make_corruption``.  Reporting (saved images,
metrics, figures, JSON) lives in ``brgm_pyro.app.report``; its names are re-exported here for old
imports, as are the deprecated ``build_problem`` and ``make_task``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch

from ..bundled import load_domain_features
from ..corruptions import Corruption, make_corruption
from ..generators import PriorGenerator
from ..inference import fit_vi, map_estimate, run_mcmc
from ..inference.multistart import fit_multistart_fullrank
from ..inference.widening import check_interval_scale, widen
from ..inference.warm_start import fullrank_from_laplace
from ..models import BRGMModel, brgm_model, default_config
from ..perceptual import LPIPSFeatures
from .report import (  # noqa: F401 - re-exported: they lived here before brgm_pyro.app.report
    _show, format_parameter_report, json_safe, observation_display, parameter_report, summary_figure, write_json,
)

FEATURE_CHOICES = ("auto", "domain", "lpips-vgg", "lpips-alex", "none")
METHODS = ("map", "vi", "fullrank", "mcmc")
"""map: MAP (AutoDelta); vi: the paper's mean-field Gaussian guide (overconfident, see the README's
calibration section); fullrank (recommended): multi-start MAP, the Laplace approximation at the
best mode, then a full-rank Gaussian guide, fitted to the pixel-likelihood model
(``calibrated_model``; calibrated on x4 super-resolution and in-painting); mcmc: NUTS."""


def build_features(kind: str, generator: PriorGenerator, device: torch.device | str = "cpu") -> torch.nn.Module | None:
    """phi for the perceptual likelihood.

    "domain": the bundled Fashion-MNIST classifier's features (for the bundled generator);
    "lpips-vgg" / "lpips-alex": LPIPS features (need torchvision's backbone weights);
    "auto": the generator's own recommendation (``metadata["feature_network"]``), else LPIPS-VGG;
    "none": no perceptual term.
    """
    if kind not in FEATURE_CHOICES:
        raise ValueError(f"unknown feature network {kind!r}; choose from {', '.join(FEATURE_CHOICES)}")
    if kind == "auto":
        recommended = getattr(generator, "metadata", {}).get("feature_network")
        kind = "domain" if recommended == "fashion-mnist-classifier" else "lpips-vgg"
    if kind == "none":
        return None
    if kind == "domain":
        if (generator.img_channels, generator.img_resolution) != (1, 32):
            raise ValueError("the domain feature network is for 32x32 grayscale images (the bundled generator); "
                             "use --features lpips-vgg or none for this generator")
        return load_domain_features(device)
    return LPIPSFeatures(net=kind.split("-")[1], resize=256).to(device)


@dataclass
class MethodOutput:
    """What one inference method gives for one observation (images (1, C, H, W) on the CPU)."""

    method: str
    image: torch.Tensor                      # MAP image, or G(mu) of VI, or the MCMC mean image
    samples: torch.Tensor | None = None      # (n, C, H, W) posterior draws of G(w)
    std: torch.Tensor | None = None          # (1, C, H, W) per-pixel posterior std
    seconds: float = 0.0
    result: Any = field(default=None, repr=False)


FULLRANK_STARTS = 8
"""MAP starts of the ``fullrank`` method: w_avg and 7 prior draws (the measured configuration)."""


def calibrated_model(model: BRGMModel) -> BRGMModel:
    """The model the ``fullrank`` posterior is fitted to, the one its calibration was measured on:
    the same generator, corruption, observation(s) and sigma_pixel, the Gaussian prior on W+ with
    per-dimension std, no colinearity factor (kappa 0) and no perceptual term.  ``model`` itself
    when it already is that model."""
    from ..inference.map import latent_initial_values

    if model.config is None:
        raise ValueError("method fullrank needs a model built by brgm_model (it reads model.config)")
    if latent_initial_values(model):
        raise ValueError("method fullrank does not infer noise levels or corruption parameters "
                         "(--learn-noise / --blind): use map, vi or mcmc for those")
    target = replace(model.config, sigma_perceptual=None, kappa=0.0, prior_std="per-dimension")
    if target == model.config:
        return model
    return brgm_model(model.generator, model.corruption, model.observation, config=target)


def fit_fullrank(model: BRGMModel, seed: int | Sequence[int] = 0, map_steps: int = 500,
                 num_starts: int = FULLRANK_STARTS, interval_scale: float = 1.0):
    """The recommended, calibrated posterior ("multistart-fullrank" of the calibration benchmark;
    "vi-fullrank" with ``num_starts=1``): MAP from w_avg and ``num_starts - 1`` prior draws
    (``map_steps`` Adam steps each, in one batch), the Laplace approximation at the mode with the
    highest log joint, then the full-rank Gaussian guide started there.  It is fitted to
    ``calibrated_model(model)`` (pixel likelihood and Gaussian prior only); the returned
    posterior's ``.model`` is that model.  A batched model: per-image starts, one batched fit.
    ``interval_scale`` s widens it to N(mu, s^2 Sigma) (``inference.widening``: 1.35 is the
    measured scale for in-painting with the bundled generator, ``BUNDLED_INTERVAL_SCALES``)."""
    check_interval_scale(interval_scale)  # before the fit, not after it
    target = calibrated_model(model)
    try:  # the Laplace step refuses models it cannot linearise (e.g. a non-Gaussian custom prior)
        if num_starts == 1:
            posterior = fullrank_from_laplace(target, seed, map_steps=map_steps)
        else:
            posterior = fit_multistart_fullrank(target, num_starts=num_starts, num_steps=map_steps, seed=seed)
    except ValueError as err:
        raise ValueError(f"method fullrank: {err}") from None
    return widen(posterior, interval_scale)


def run_methods(model, methods: Sequence[str], steps: int = 500, lr: float = 0.1, samples: int = 64,
                mcmc_samples: int = 100, seed: int = 0, progress: bool = True,
                interval_scale: float = 1.0) -> dict[str, MethodOutput]:
    """Run each of ``methods`` (``METHODS``) on ``model``; ``interval_scale`` widens the fullrank
    posterior (``fit_fullrank``)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    out: dict[str, MethodOutput] = {}
    for method in methods:
        t0 = time.perf_counter()
        if method == "map":
            res = map_estimate(model, num_steps=steps, lr=lr, seed=seed, progress=progress)
            out[method] = MethodOutput(method, res.image.cpu(), seconds=time.perf_counter() - t0, result=res)
            continue
        if method == "vi":
            posterior = fit_vi(model, num_steps=steps, lr=lr, seed=seed, progress=progress)
        elif method == "fullrank":
            posterior = fit_fullrank(model, seed=seed, map_steps=steps, interval_scale=interval_scale)
        else:
            mcmc_result = run_mcmc(model, num_samples=mcmc_samples, warmup_steps=mcmc_samples, seed=seed,
                                   progress=progress)
            posterior = mcmc_result.posterior
        draws = posterior.sample(samples, seed=seed)
        stats = posterior.pixel_statistics(max(samples, 2), seed=seed)
        # vi: G(mu_v), the paper's reconstruction; fullrank and mcmc: the posterior mean image
        image = posterior.mean_image().cpu() if method == "vi" else stats.mean.unsqueeze(0)
        out[method] = MethodOutput(method, image, draws.images, stats.std.unsqueeze(0).cpu(),
                                   time.perf_counter() - t0, mcmc_result if method == "mcmc" else posterior)
    return out


# --- deprecated entry points (one release of grace) --------------------------------------------

def build_problem(generator: PriorGenerator, corruption: Corruption, observation: torch.Tensor,
                  features: torch.nn.Module | None = None, config=None, **overrides: float | None) -> BRGMModel:
    """Deprecated: use ``brgm_model(generator, corruption, observation, features=features,
    config=config)``, which now has the same default weights (``default_config``).  ``overrides``
    (``sigma_pixel``, ``sigma_perceptual``, ``kappa``; None: keep) replace fields of the config."""
    warnings.warn("brgm_pyro.app.reconstruction.build_problem is deprecated; use brgm_pyro.models.brgm_model "
                  "(the same default weights; pass config=dataclasses.replace(default_config(...), ...) to "
                  "change some)", DeprecationWarning, stacklevel=2)
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        config = replace(default_config(generator, corruption, features) if config is None else config, **given)
    return brgm_model(generator, corruption, observation, config=config, features=features)


def make_task(task: str, resolution: int, factor: int | None = None, mask: Any = None,
              mask_id: int | None = None, blur_sigma: float = 1.5, measurements: int | None = None,
              seed: int = 0, kernel: str = "bicubic") -> Corruption:
    """Deprecated: use ``brgm_pyro.corruptions.make_corruption(task, resolution, ...)``.  Arguments
    that do not belong to ``task`` are ignored, as before."""
    warnings.warn("brgm_pyro.app.reconstruction.make_task is deprecated; use "
                  "brgm_pyro.corruptions.make_corruption(task, resolution, **the task's arguments)",
                  DeprecationWarning, stacklevel=2)
    arguments = {"super-resolution": {"factor": factor, "kernel": kernel},
                 "inpainting": {"mask": mask, "mask_id": mask_id},
                 "blur": {"sigma": blur_sigma},
                 "compressed-sensing": {"num_measurements": measurements, "seed": seed}}
    return make_corruption(task, resolution, **arguments.get(task, {}))
