"""NUTS preconditioned by a fitted Gaussian or warped by a fitted guide: the reference samplers for
ill-conditioned BRGM posteriors.

On in-painting the posterior of w is very elongated (the observed half pins some directions, the
hidden half leaves others at the prior's scale), so NUTS with a diagonal mass matrix needs tiny
steps and does not mix.  A guide fitted by VI knows the shape, and two ways use it:

* ``run_preconditioned_nuts``: fit a full-rank (or low-rank) Gaussian N(mu, Sigma) to the
  posterior, start every chain at its own draw of it, and run NUTS with Sigma as the (dense,
  fixed) inverse mass matrix, i.e. NUTS in the whitened coordinates z = L^-1 (w - mu).
* ``run_neutra``: NeuTra (Hoffman et al., 2019) with Pyro's ``NeuTraReparam``: NUTS on the base
  variable z of an ``AutoContinuous`` guide, w = T(z); "fullrank" (AutoMultivariateNormal: T
  affine, the same geometry as above) or "iaf" (AutoIAFNormal: a normalising flow).

* ``run_adapted_nuts``: a pilot run of ``run_preconditioned_nuts``, then NUTS with the metric
  learnt from the pilot draws (``pooled_metric``).

All are exact MCMC whatever the quality of the guide (the guide only changes the geometry and
the starting points); all return an ``MCMCResult`` whose latents are draws of the model's site.
They share the sampling settings (``NUTSSettings``) and, where they fit a Pyro autoguide by name,
how it is fitted (``GuideFit``: by ``fit_vi``, like every other guide).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from pyro import poutine
from pyro.infer.autoguide import (
    AutoContinuous, AutoIAFNormal, AutoLowRankMultivariateNormal, AutoMultivariateNormal,
)
from pyro.infer.autoguide.initialization import init_to_value
from pyro.infer.reparam import NeuTraReparam

from brgm_pyro.models.brgm import BRGMModel

from .laplace import laplace_approximation
from .map import map_estimate
from .mcmc import MCMCResult, chains_result, run_mcmc, sample_chain
from .multistart import fit_multistart_fullrank
from .vi import fit_vi

GuideKind = Literal["fullrank", "lowrank", "iaf"]
AUTOGUIDE_KINDS: tuple[str, ...] = ("fullrank", "lowrank", "iaf")


@dataclass(frozen=True)
class NUTSSettings:
    """The sampling settings every runner here takes: ``num_chains`` chains (chain c seeded from
    ``seed``), each ``warmup_steps`` of step-size adaptation then ``num_samples`` draws, trees up to
    ``max_tree_depth`` (2^depth - 1 leapfrog steps), step size adapted to ``target_accept_prob``."""

    num_chains: int = 4
    num_samples: int = 200
    warmup_steps: int = 200
    max_tree_depth: int = 6
    target_accept_prob: float = 0.8
    seed: int = 0
    progress: bool = False


@dataclass(frozen=True)
class GuideFit:
    """How a runner fits a Pyro autoguide it is given by name: ``fit_vi`` with ``num_steps`` Adam steps,
    the learning rate decayed geometrically from ``lr`` to ``final_lr``, ``num_particles`` particles,
    gradients clipped to norm ``clip_norm``, no sigma_v penalty."""

    num_steps: int = 1500
    lr: float = 0.01
    final_lr: float = 0.001
    num_particles: int = 4
    clip_norm: float = 10.0

    def __post_init__(self) -> None:
        if self.num_steps < 1 or self.num_particles < 1 or not (self.lr > 0 and self.final_lr > 0):
            raise ValueError(f"a guide fit needs num_steps, num_particles >= 1 and positive learning rates: {self}")


def make_autoguide(model: BRGMModel, kind: GuideKind = "fullrank", rank: int = 32, init_scale: float = 0.1,
                   init: torch.Tensor | None = None, hidden_dim: int | None = None,
                   num_transforms: int = 2) -> AutoContinuous:
    """An unfitted Pyro autoguide over the model's latent site, centred at ``init`` (default w_avg)."""
    if kind not in AUTOGUIDE_KINDS:
        raise ValueError(f"kind must be one of {AUTOGUIDE_KINDS}, got {kind!r}")
    start = (model.prior.init_loc() if init is None else init).detach()
    init_loc_fn = init_to_value(values={model.prior.site: start})
    if kind == "fullrank":
        return AutoMultivariateNormal(model.model, init_loc_fn=init_loc_fn, init_scale=init_scale)
    if kind == "lowrank":
        return AutoLowRankMultivariateNormal(model.model, init_loc_fn=init_loc_fn, init_scale=init_scale, rank=rank)
    hidden = [hidden_dim or 2 * start.numel()]
    return AutoIAFNormal(model.model, hidden_dim=hidden, num_transforms=num_transforms, init_loc_fn=init_loc_fn)


def fit_autoguide(model: BRGMModel, kind: GuideKind = "fullrank", fit: GuideFit = GuideFit(), seed: int = 0,
                  **guide_options: Any) -> AutoContinuous:
    """A Pyro autoguide (``make_autoguide(model, kind, **guide_options)``) fitted to p(w | I) by
    ``fit_vi`` as ``fit`` says; its parameters stay on the returned module, frozen."""
    model.require_single("fit_autoguide")
    with torch.random.fork_rng(devices=[]):  # an IAF's initial weights come from the seed
        torch.manual_seed(seed)
        guide = make_autoguide(model, kind, **guide_options)
    decay = (fit.final_lr / fit.lr) ** (1 / fit.num_steps)
    fit_vi(model, guide=guide, num_steps=fit.num_steps, lr=fit.lr, lr_decay=decay,
           num_particles=fit.num_particles, sigma_prior=None, clip_norm=fit.clip_norm, seed=seed, progress=False)
    guide.requires_grad_(False)
    return guide


def gaussian_of(guide: AutoContinuous) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, covariance) over the flattened latent site of a fitted Gaussian autoguide."""
    if isinstance(guide, (AutoMultivariateNormal, AutoLowRankMultivariateNormal)):
        with torch.no_grad():
            posterior = guide.get_posterior()
            return posterior.loc.detach().clone(), posterior.covariance_matrix.detach().clone()
    raise ValueError(f"{type(guide).__name__} is not a Gaussian autoguide (use 'fullrank' or 'lowrank')")


def laplace_gaussian(model: BRGMModel, latent: torch.Tensor,
                     chunk_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gauss-Newton Laplace approximation N(latent, H^-1) at ``latent`` (e.g. the MAP) as
    (mean, covariance) over the flattened site: ``laplace.laplace_approximation`` (Gaussian prior,
    the pixel likelihood alone, no colinearity factor), for use as a dense mass matrix."""
    q = laplace_approximation(model, latent, chunk_size)
    return q.distribution.loc.detach().clone(), q.distribution.covariance_matrix.detach().to(latent.dtype)


def gaussian_inits(mean: torch.Tensor, cov: torch.Tensor, num_chains: int, site_shape: torch.Size,
                   spread: float = 1.0, seed: int = 0) -> torch.Tensor:
    """``num_chains`` draws of N(mean, spread^2 cov), shaped (num_chains, *site_shape)."""
    g = torch.Generator().manual_seed(seed)
    L = torch.linalg.cholesky(cov.double())
    eps = torch.randn(num_chains, mean.numel(), generator=g, dtype=torch.float64)
    draws = mean.double() + spread * eps @ L.T
    return draws.to(mean.dtype).reshape(num_chains, *site_shape)


def _dense_nuts(model: BRGMModel, settings: NUTSSettings, inits: torch.Tensor, metric: torch.Tensor, t0: float,
                info: dict[str, Any], seed_offset: int = 0) -> MCMCResult:
    """The core of the preconditioned runners: ``run_mcmc`` from ``inits`` with the dense inverse mass
    matrix ``metric`` (fixed; the step size adapts), the time since ``t0`` counted as setup."""
    s = settings
    result = run_mcmc(model, num_samples=s.num_samples, warmup_steps=s.warmup_steps, num_chains=s.num_chains,
                      target_accept_prob=s.target_accept_prob, max_tree_depth=s.max_tree_depth,
                      seed=s.seed + seed_offset, progress=s.progress, inits=inits, inverse_mass_matrix=metric,
                      setup_seconds=time.perf_counter() - t0)
    result.info.update(info, target_accept_prob=s.target_accept_prob, max_tree_depth=s.max_tree_depth)
    return result


def run_preconditioned_nuts(
    model: BRGMModel,
    settings: NUTSSettings = NUTSSettings(),
    guide: GuideKind | Literal["laplace", "multistart-fullrank"] | AutoContinuous = "laplace",
    fit: GuideFit = GuideFit(),
    map_steps: int = 500,
    init_spread: float = 1.0,
) -> MCMCResult:
    """NUTS with a dense mass matrix and starts from a Gaussian approximation N(mu, Sigma).

    ``guide``: "laplace" (MAP by ``map_estimate`` with ``map_steps``, then the Gauss-Newton
    Laplace approximation ``laplace_gaussian``), "multistart-fullrank" (the recommended posterior,
    ``fit_multistart_fullrank``: its full-rank Gaussian), "fullrank" / "lowrank" (a Pyro Gaussian
    autoguide fitted as ``fit`` says), or a fitted Gaussian autoguide.  Then runs the chains of
    ``settings`` with inverse mass matrix Sigma (fixed; the step size adapts), chain c started at a
    draw of N(mu, init_spread^2 Sigma).  ``wall_seconds`` includes the fit (``setup_seconds``).
    """
    t0 = time.perf_counter()
    seed = settings.seed
    if guide == "laplace":
        mode = map_estimate(model, num_steps=map_steps, seed=seed, progress=False).latent
        mean, cov = laplace_gaussian(model, mode.to(model.observation.device))
        name = "laplace"
    elif guide == "multistart-fullrank":
        q = fit_multistart_fullrank(model, num_steps=map_steps, seed=seed).q.distribution
        mean, cov = q.loc.detach().clone(), q.covariance_matrix.detach().clone()
        name = "multistart-fullrank"
    else:
        if isinstance(guide, str):
            if guide == "iaf":
                raise ValueError("an IAF guide has no single mass matrix; use run_neutra(model, guide='iaf')")
            guide = fit_autoguide(model, guide, fit, seed=seed)
        mean, cov = gaussian_of(guide)
        name = type(guide).__name__
    inits = gaussian_inits(mean, cov, settings.num_chains, model.prior.init_loc().shape, init_spread, seed=seed)
    return _dense_nuts(model, settings, inits, cov, t0, {"method": "preconditioned_nuts", "guide": name,
                                                         "init_spread": init_spread, "inverse_mass_matrix": cov})


def pooled_metric(latents: torch.Tensor, cov: torch.Tensor, shrinkage: float = 10.0) -> torch.Tensor:
    """A dense metric from pilot draws: their covariance, pooled over chains (each chain about its
    own mean), in the whitened coordinates z = L^-1 w of ``cov`` = L L^T and shrunk toward the
    identity there, C = (n S + k I) / (n + k) with n draws and k = ``shrinkage``; returned as
    L C L^T.  With few draws it stays close to ``cov``; where the draws spread wider (or
    narrower) than ``cov`` along some directions, the metric follows them."""
    chains = latents.reshape(latents.shape[0], latents.shape[1], -1).double()
    centred = (chains - chains.mean(1, keepdim=True)).reshape(-1, chains.shape[-1])
    n = centred.shape[0] - chains.shape[0]  # degrees of freedom after one mean per chain
    if n < 1:
        raise ValueError("pooled_metric needs at least two draws per chain")
    L = torch.linalg.cholesky(cov.double())
    z = torch.linalg.solve_triangular(L, centred.T, upper=False)  # (dim, draws)
    S = z @ z.T / n
    C = (n * S + shrinkage * torch.eye(S.shape[0], dtype=S.dtype)) / (n + shrinkage)
    return (L @ C @ L.T).to(cov.dtype)


def run_adapted_nuts(model: BRGMModel, settings: NUTSSettings = NUTSSettings(num_samples=300, warmup_steps=100),
                     pilot_warmup: int = 100, pilot_samples: int = 100, shrinkage: float = 10.0,
                     map_steps: int = 500) -> MCMCResult:
    """NUTS in two stages: a pilot run of ``run_preconditioned_nuts`` with the recommended
    posterior's covariance as metric (``pilot_warmup`` + ``pilot_samples`` per chain), then the
    run proper (``settings``; chain c seeded ``seed + 1 + c``) from the pilot's last states with the
    metric ``pooled_metric`` learns from the pilot draws of all chains.
    For posteriors wider than the Gaussian fit in a few directions (in-painting), which a fixed
    metric makes NUTS cross with too-short trees.  ``wall_seconds`` includes the fit and the pilot;
    ``info["pilot"]`` holds the pilot's step sizes, tree depths and the metric's largest
    whitened variances."""
    t0 = time.perf_counter()
    pilot = run_preconditioned_nuts(model, replace(settings, num_samples=pilot_samples, warmup_steps=pilot_warmup),
                                    guide="multistart-fullrank", map_steps=map_steps)
    cov = pilot.info["inverse_mass_matrix"]
    metric = pooled_metric(pilot.latents, cov, shrinkage)
    L = torch.linalg.cholesky(cov.double())
    whitened = torch.linalg.solve_triangular(L, torch.linalg.solve_triangular(L, metric.double(), upper=False).T,
                                             upper=False)
    top = torch.linalg.eigvalsh(whitened).flip(0)[:5]
    pilot_info = {"warmup": pilot_warmup, "samples": pilot_samples, "step_sizes": pilot.step_sizes.tolist(),
                  "mean_tree_depth": float(pilot.tree_depths.double().mean()), "top_whitened_variances": top.tolist()}
    return _dense_nuts(model, settings, pilot.latents[:, -1].clone(), metric, t0,
                       {"method": "adapted_nuts", "guide": "multistart-fullrank", "shrinkage": shrinkage,
                        "pilot": pilot_info}, seed_offset=1)


def run_neutra(model: BRGMModel, guide: GuideKind | AutoContinuous = "fullrank",
               settings: NUTSSettings = NUTSSettings(), fit: GuideFit = GuideFit(), init_spread: float = 1.0,
               adapt_mass_matrix: bool = True) -> MCMCResult:
    """NeuTra HMC: NUTS on the base variable z ~ N(0, I) of a fitted ``AutoContinuous`` guide.

    ``guide``: "fullrank" (AutoMultivariateNormal), "lowrank", "iaf" (AutoIAFNormal), fitted as
    ``fit`` says, or a fitted AutoContinuous guide of this model.  Chain c starts at
    z = init_spread * eps_c (a guide draw) and is seeded ``seed + c``; the mass matrix in z is
    diagonal, adapted in warmup when ``adapt_mass_matrix``.  Draws are mapped back to the model's
    site (``latents``); ``info`` holds the draws of z under "base_latents".
    """
    model.require_single("run_neutra")
    s = settings
    t0 = time.perf_counter()
    if isinstance(guide, str):
        guide = fit_autoguide(model, guide, fit, seed=s.seed)
    if not isinstance(guide, AutoContinuous):
        raise TypeError(f"guide must be an AutoContinuous guide or one of {AUTOGUIDE_KINDS}, "
                        f"got {type(guide).__name__}")
    site = model.prior.site
    neutra = NeuTraReparam(guide)
    warped = poutine.reparam(model.model, config=lambda msg: neutra if msg["name"] == site else None)
    base_site = f"{site}_shared_latent"
    dim = model.prior.init_loc().numel()
    g = torch.Generator().manual_seed(s.seed)
    starts = (init_spread * torch.randn(s.num_chains, dim, generator=g)).to(model.observation.device)
    setup = time.perf_counter() - t0
    chains = [sample_chain(warped, base_site, starts[c], s.num_samples, s.warmup_steps, s.seed + c, model,
                           target_accept_prob=s.target_accept_prob, max_tree_depth=s.max_tree_depth,
                           adapt_mass_matrix=adapt_mass_matrix, progress=s.progress)
              for c in range(s.num_chains)]
    base = torch.stack([c.draws for c in chains])  # (chains, draws, dim)
    with torch.no_grad():
        site_shape = model.prior.init_loc().shape
        latents = neutra.transform_sample(base.reshape(-1, dim))[site].reshape(s.num_chains, s.num_samples,
                                                                                 *site_shape)
        init_latents = neutra.transform_sample(starts)[site]
    info: dict[str, Any] = {"method": "neutra", "guide": type(guide).__name__, "base_latents": base,
                            "init_spread": init_spread}
    return chains_result(model, chains, latents.detach().cpu(), init_latents.detach().cpu(),
                         time.perf_counter() - t0, setup, info)
