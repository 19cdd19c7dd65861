"""The recommended posterior: one named pipeline, multi-start MAP -> Laplace -> full-rank VI,
widened by its interval scale.

    posterior = fit_recommended_posterior(model, interval_scale=1.35)
    draws = posterior.sample(64)

It is the ``fullrank`` method of ``brgm reconstruct`` / ``run_method`` and the calibration
study's "multistart-fullrank" configuration.  Its coverage was measured on one model only, the
pixel-likelihood model with the Gaussian prior on W+ (``calibrated_model``), so the pipeline fits
that model, not the one it is given when the two differ: the returned posterior's ``.model`` says
which model it is a posterior of.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

from brgm_pyro.models import BRGMConfig, BRGMModel, brgm_model
from brgm_pyro.models.priors import gaussian_loc_scale

from .map import latent_initial_values
from .multistart import fit_multistart_fullrank
from .posterior import Posterior
from .warm_start import fullrank_from_laplace
from .widening import check_interval_scale, widen

RECOMMENDED_STARTS = 8
"""MAP starts of the recommended posterior: w_avg and 7 prior draws (the measured configuration)."""

RECOMMENDED_KEEP = 3
"""Starts that climb to the end: w_avg (always, as ``map_estimate`` itself) and the best 2 of the
other 7 after a tenth of the MAP steps (``RECOMMENDED_SCREEN_FRACTION``, successive halving)."""

RECOMMENDED_SCREEN_FRACTION = 0.1
"""The share of the MAP steps after which the starts are screened (50 of the default 500)."""

RECOMMENDED_VI_STEPS = 100
"""Full-rank VI steps from the Laplace start.

Chosen by ``benchmarks/fast_posterior.py`` (setting "k3-sc50-v100" = these defaults, paired with
the former fit -- all 8 starts x 500 MAP steps, 200 VI steps -- on 12 held-out model-drawn problems
per task): coverage and posterior-mean RMSE unchanged within their standard errors, for about 0.6x
the former fit's time; the numbers are in docs/speed.md ("What the recommended posterior costs")."""


def calibrated_config(config: BRGMConfig) -> BRGMConfig:
    """The weights the recommended posterior is fitted with for a model of ``config``: its ``sigma_pixel``
    and misfit scale kept, the perceptual term and the colinearity prior dropped, per-dimension prior std."""
    return replace(config, sigma_perceptual=None, kappa=0.0, prior_std="per-dimension")


def calibrated_model(model: BRGMModel) -> BRGMModel:
    """The model the recommended posterior is fitted to, the one its calibration was measured on.

    It keeps ``model``'s generator, corruption, observation(s) and ``sigma_pixel``, and it
    REPLACES the rest: the prior becomes the Gaussian on W+ with per-dimension std that
    ``brgm_model`` builds from the generator's latent statistics, the colinearity prior is
    dropped (kappa 0) and so is the perceptual term.  ``model`` itself when it already is that
    model.  Raises ``ValueError`` for what it cannot keep or replace faithfully: a model without
    a config (not built by ``brgm_model``), latent noise levels or corruption parameters
    (``learn_noise``, ``make_blind``), and a prior of another kind than the one it would put in its
    place (one passed to ``brgm_model`` by hand: a Student-t, a shared w, your own), which would be
    swapped out silently.  A Gaussian W+ prior is rebuilt from the generator's latent statistics
    (10,000 mapping samples) even if ``model``'s was built from fewer."""
    if model.config is None:
        raise ValueError("the recommended posterior needs a model built by brgm_model (it reads model.config)")
    if latent_initial_values(model):
        raise ValueError("the recommended posterior does not infer noise levels or corruption parameters "
                         "(learn_noise / make_blind, --learn-noise / --blind): use map, vi or mcmc for those")
    target = calibrated_config(model.config)
    if target == model.config:
        return model
    calibrated = brgm_model(model.generator, model.corruption, model.observation, config=target)
    own, gaussian = gaussian_loc_scale(model.prior), gaussian_loc_scale(calibrated.prior)
    if own is None or own[0].shape != gaussian[0].shape:
        raise ValueError(f"the recommended posterior is fitted to the Gaussian prior on W+ that brgm_model builds; "
                         f"this model's prior ({type(model.prior).__name__}: "
                         f"{'not Gaussian' if own is None else 'a Gaussian of another shape'}) was given by hand and "
                         "would be replaced: fit it with map, vi or mcmc, or build the model without prior=")
    return calibrated


def screen_steps_for(map_steps: int) -> int:
    """After how many of ``map_steps`` MAP steps the starts are screened (a tenth, at least 1)."""
    return max(1, int(map_steps * RECOMMENDED_SCREEN_FRACTION))


def recommended_fit_options(**overrides: Any) -> dict[str, Any]:
    """The options of ``fit_multistart_fullrank`` that make it the recommended posterior's fit
    (before widening), with ``overrides`` applied: 8 starts, 500 MAP steps, the best 3 kept after
    a tenth of the steps (no screening when ``keep`` >= the starts or fewer than 2 steps), 100 VI
    steps.  For code that calls ``fit_multistart_fullrank`` itself (``brgm_pyro.study.real_images``)."""
    options = {"num_starts": RECOMMENDED_STARTS, "num_steps": 500, "keep": RECOMMENDED_KEEP,
               "vi_steps": RECOMMENDED_VI_STEPS, **overrides}
    options.setdefault("screen_steps", screen_steps_for(options["num_steps"]))
    if options["keep"] is not None and (options["keep"] >= options["num_starts"] or options["num_steps"] < 2):
        options["keep"] = None
    return options


def fit_recommended_posterior(model: BRGMModel, seed: int | Sequence[int] = 0, *, map_steps: int = 500,
                              num_starts: int = RECOMMENDED_STARTS, keep: int | None = RECOMMENDED_KEEP,
                              vi_steps: int = RECOMMENDED_VI_STEPS, interval_scale: float = 1.0,
                              progress: bool = False) -> Posterior:
    """The recommended, calibrated posterior of ``calibrated_model(model)``.

    1. MAP (Eq. 6's objective) from w_avg and ``num_starts - 1`` prior draws; the w_avg start is
       ``map_estimate``'s own run of ``map_steps`` Adam steps, the others one batch; after a tenth
       of the steps (``screen_steps_for``) only the ``keep`` best (w_avg always among them) go on
       to ``map_steps`` (``fit_multistart_laplace``; ``keep`` None or >= ``num_starts``: all go on;
       ``num_starts=1``: w_avg only);
    2. the Laplace approximation at the mode with the highest log joint;
    3. the full-rank Gaussian guide (Eq. 7) fitted from there, ``vi_steps`` steps (``fullrank_at``);
    4. widened about its mean to N(mu, s^2 Sigma) by ``interval_scale`` s (``widen``; 1: as
       fitted; the bundled generator's metadata ``interval_scales`` holds the scales measured for it).

    ``seed``: one, or one per image of a batched model (one batched fit, each image as if alone).
    The posterior's ``.model`` is ``calibrated_model(model)``.  Errors (a bad scale, a model the
    pipeline cannot fit) are raised before any fitting.  ``progress``: a bar for each phase."""
    check_interval_scale(interval_scale)
    if num_starts < 1:
        raise ValueError(f"num_starts must be >= 1, got {num_starts}")
    if keep is not None and keep < 1:
        raise ValueError(f"keep must be >= 1 (or None: every start climbs to the end), got {keep}")
    if vi_steps < 1:
        raise ValueError(f"vi_steps must be >= 1, got {vi_steps}")
    target = calibrated_model(model)
    try:  # the Laplace step refuses models it cannot linearise (e.g. a non-Gaussian custom prior)
        if num_starts == 1:
            posterior = fullrank_from_laplace(target, seed, map_steps=map_steps, vi_steps=vi_steps)
        else:
            options = recommended_fit_options(num_starts=num_starts, num_steps=map_steps, keep=keep, vi_steps=vi_steps)
            posterior = fit_multistart_fullrank(target, seed=seed, progress=progress, **options)
    except ValueError as err:
        raise ValueError(f"the recommended posterior: {err}") from None
    return widen(posterior, interval_scale)
