"""NUTS preconditioned by a fitted guide: the reference sampler for ill-conditioned BRGM posteriors.

On in-painting the posterior of w is very elongated (the observed half pins some directions, the
hidden half leaves others at the prior's scale), so NUTS with a diagonal mass matrix needs tiny
steps and does not mix.  A guide fitted by VI knows the shape, and two ways use it:

* ``run_preconditioned_nuts``: fit a full-rank (or low-rank) Gaussian N(mu, Sigma) to the
  posterior, start every chain at its own draw of it, and run NUTS with Sigma as the (dense,
  fixed) inverse mass matrix, i.e. NUTS in the whitened coordinates z = L^-1 (w - mu).
* ``run_neutra``: NeuTra (Hoffman et al., 2019) with Pyro's ``NeuTraReparam``: NUTS on the base
  variable z of an ``AutoContinuous`` guide, w = T(z); "fullrank" (AutoMultivariateNormal: T
  affine, the same geometry as above) or "iaf" (AutoIAFNormal: a normalising flow).

Both are exact MCMC whatever the quality of the guide (the guide only changes the geometry and
the starting points); both return an ``MCMCResult`` whose latents are draws of the model's site.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import (
    AutoContinuous, AutoIAFNormal, AutoLowRankMultivariateNormal, AutoMultivariateNormal,
)
from pyro.infer.autoguide.initialization import init_to_value
from pyro.infer.reparam import NeuTraReparam

from brgm_pyro.models.brgm import BRGMModel

from ._runner import inference_scope
from .mcmc import MCMCResult, chains_result, run_mcmc, sample_chain

GuideKind = Literal["fullrank", "lowrank", "iaf"]
AUTOGUIDE_KINDS: tuple[str, ...] = ("fullrank", "lowrank", "iaf")


@dataclass
class FittedAutoguide:
    """A Pyro ``AutoContinuous`` guide fitted to p(w | I), its final losses and the fit's wall time."""

    guide: AutoContinuous
    kind: str
    losses: list[float]
    seconds: float


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


def fit_autoguide(
    model: BRGMModel,
    kind: GuideKind = "fullrank",
    num_steps: int = 1500,
    lr: float = 0.01,
    final_lr: float = 0.001,
    num_particles: int = 4,
    rank: int = 32,
    init_scale: float = 0.1,
    init: torch.Tensor | None = None,
    seed: int = 0,
) -> FittedAutoguide:
    """Fit a Pyro autoguide by maximising the ELBO with Adam (learning rate decayed geometrically
    from ``lr`` to ``final_lr``), ``num_particles`` vectorised particles per step.

    The guide's parameters stay on the returned module (frozen: ``requires_grad_(False)``).
    """
    if num_steps < 1 or num_particles < 1:
        raise ValueError("num_steps and num_particles must be >= 1")
    model.require_single("fit_autoguide")
    t0 = time.perf_counter()
    with inference_scope(model, seed):
        guide = make_autoguide(model, kind, rank=rank, init_scale=init_scale, init=init)
        decay = (final_lr / lr) ** (1 / num_steps)
        optimizer = pyro.optim.ClippedAdam({"lr": lr, "lrd": decay, "clip_norm": 10.0})
        elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=0)
        svi = SVI(model.model, guide, optimizer, loss=elbo)
        losses = [float(svi.step()) for _ in range(num_steps)]
    guide.requires_grad_(False)
    return FittedAutoguide(guide, kind, losses, time.perf_counter() - t0)


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
    from .laplace import laplace_approximation

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


def run_preconditioned_nuts(
    model: BRGMModel,
    num_chains: int = 4,
    num_samples: int = 200,
    warmup_steps: int = 200,
    max_tree_depth: int = 6,
    target_accept_prob: float = 0.8,
    guide: GuideKind | Literal["laplace", "multistart-fullrank"] | AutoContinuous = "laplace",
    guide_steps: int = 1500,
    guide_lr: float = 0.01,
    guide_particles: int = 4,
    map_steps: int = 500,
    init_spread: float = 1.0,
    seed: int = 0,
    progress: bool = False,
) -> MCMCResult:
    """NUTS with a dense mass matrix and starts from a Gaussian approximation N(mu, Sigma).

    ``guide``: "laplace" (MAP by ``map_estimate`` with ``map_steps``, then the Gauss-Newton
    Laplace approximation ``laplace_gaussian``), "multistart-fullrank" (the recommended posterior,
    ``multistart.fit_multistart_fullrank``: its full-rank Gaussian), "fullrank" / "lowrank" (a Pyro Gaussian autoguide
    fitted by VI, ``fit_autoguide``), or a fitted Gaussian autoguide.  Then runs ``num_chains``
    chains of ``run_mcmc`` with inverse mass matrix Sigma (fixed; the step size adapts) and chain c
    started at a draw of N(mu, init_spread^2 Sigma).  ``wall_seconds`` includes the fit
    (``setup_seconds``).
    """
    t0 = time.perf_counter()
    if guide == "laplace":
        from .map import map_estimate

        mode = map_estimate(model, num_steps=map_steps, seed=seed, progress=False).latent
        mean, cov = laplace_gaussian(model, mode.to(model.observation.device))
        name = "laplace"
    elif guide == "multistart-fullrank":
        from .multistart import fit_multistart_fullrank

        q = fit_multistart_fullrank(model, num_steps=map_steps, seed=seed).q.distribution
        mean, cov = q.loc.detach().clone(), q.covariance_matrix.detach().clone()
        name = "multistart-fullrank"
    else:
        if isinstance(guide, str):
            if guide == "iaf":
                raise ValueError("an IAF guide has no single mass matrix; use run_neutra(model, guide='iaf')")
            guide = fit_autoguide(model, guide, num_steps=guide_steps, lr=guide_lr, num_particles=guide_particles,
                                  seed=seed).guide
        mean, cov = gaussian_of(guide)
        name = type(guide).__name__
    site_shape = model.prior.init_loc().shape
    inits = gaussian_inits(mean, cov, num_chains, site_shape, init_spread, seed=seed)
    setup = time.perf_counter() - t0
    result = run_mcmc(model, num_samples=num_samples, warmup_steps=warmup_steps, num_chains=num_chains,
                      target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth, seed=seed,
                      progress=progress, inits=inits, inverse_mass_matrix=cov, setup_seconds=setup)
    result.info.update(method="preconditioned_nuts", guide=name, init_spread=init_spread,
                       target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                       inverse_mass_matrix=cov)
    return result


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


def run_adapted_nuts(
    model: BRGMModel,
    num_chains: int = 4,
    pilot_warmup: int = 100,
    pilot_samples: int = 100,
    num_samples: int = 300,
    warmup_steps: int = 100,
    max_tree_depth: int = 6,
    target_accept_prob: float = 0.8,
    shrinkage: float = 10.0,
    map_steps: int = 500,
    seed: int = 0,
    progress: bool = False,
) -> MCMCResult:
    """NUTS in two stages: a pilot run of ``run_preconditioned_nuts`` with the recommended
    posterior's covariance as metric (``pilot_warmup`` + ``pilot_samples`` per chain), then the
    run proper from the pilot's last states with the metric ``pooled_metric`` learns from the
    pilot draws of all chains (``warmup_steps`` of step-size adaptation + ``num_samples``).
    For posteriors wider than the Gaussian fit in a few directions (in-painting), which a fixed
    metric makes NUTS cross with too-short trees.  ``wall_seconds`` includes the fit and the pilot;
    ``info["pilot"]`` holds the pilot's step sizes, tree depths and the metric's largest
    whitened variances."""
    t0 = time.perf_counter()
    pilot = run_preconditioned_nuts(model, num_chains=num_chains, num_samples=pilot_samples,
                                    warmup_steps=pilot_warmup, max_tree_depth=max_tree_depth,
                                    target_accept_prob=target_accept_prob, guide="multistart-fullrank",
                                    map_steps=map_steps, seed=seed, progress=progress)
    cov = pilot.info["inverse_mass_matrix"]
    metric = pooled_metric(pilot.latents, cov, shrinkage)
    L = torch.linalg.cholesky(cov.double())
    whitened = torch.linalg.solve_triangular(L, torch.linalg.solve_triangular(L, metric.double(), upper=False).T,
                                             upper=False)
    top = torch.linalg.eigvalsh(whitened).flip(0)[:5]
    setup = time.perf_counter() - t0
    result = run_mcmc(model, num_samples=num_samples, warmup_steps=warmup_steps, num_chains=num_chains,
                      target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth, seed=seed + 1,
                      progress=progress, inits=pilot.latents[:, -1].clone(), inverse_mass_matrix=metric,
                      setup_seconds=setup)
    result.info.update(method="adapted_nuts", guide="multistart-fullrank", target_accept_prob=target_accept_prob,
                       max_tree_depth=max_tree_depth, shrinkage=shrinkage,
                       pilot={"warmup": pilot_warmup, "samples": pilot_samples,
                              "step_sizes": pilot.step_sizes.tolist(),
                              "mean_tree_depth": float(pilot.tree_depths.double().mean()),
                              "top_whitened_variances": top.tolist()})
    return result


def run_neutra(
    model: BRGMModel,
    guide: GuideKind | AutoContinuous = "fullrank",
    num_chains: int = 4,
    num_samples: int = 200,
    warmup_steps: int = 200,
    max_tree_depth: int = 6,
    target_accept_prob: float = 0.8,
    guide_steps: int = 1500,
    guide_lr: float = 0.01,
    guide_particles: int = 4,
    init_spread: float = 1.0,
    adapt_mass_matrix: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> MCMCResult:
    """NeuTra HMC: NUTS on the base variable z ~ N(0, I) of a fitted ``AutoContinuous`` guide.

    ``guide``: "fullrank" (AutoMultivariateNormal), "lowrank", "iaf" (AutoIAFNormal), or a fitted
    AutoContinuous guide of this model.  Chain c starts at z = init_spread * eps_c (a guide draw)
    and is seeded ``seed + c``; the mass matrix in z is diagonal, adapted in warmup when
    ``adapt_mass_matrix``.  Draws are mapped back to the model's site (``latents``); ``info``
    holds the draws of z under "base_latents".
    """
    model.require_single("run_neutra")
    t0 = time.perf_counter()
    if isinstance(guide, str):
        guide = fit_autoguide(model, guide, num_steps=guide_steps, lr=guide_lr, num_particles=guide_particles,
                              seed=seed).guide
    if not isinstance(guide, AutoContinuous):
        raise TypeError(f"guide must be an AutoContinuous guide or one of {AUTOGUIDE_KINDS}, "
                        f"got {type(guide).__name__}")
    site = model.prior.site
    neutra = NeuTraReparam(guide)
    warped = poutine.reparam(model.model, config=lambda msg: neutra if msg["name"] == site else None)
    base_site = f"{site}_shared_latent"
    dim = model.prior.init_loc().numel()
    g = torch.Generator().manual_seed(seed)
    device = model.observation.device
    starts = (init_spread * torch.randn(num_chains, dim, generator=g)).to(device)
    setup = time.perf_counter() - t0
    chains = [sample_chain(warped, base_site, starts[c], num_samples, warmup_steps, seed + c, model,
                           target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                           adapt_mass_matrix=adapt_mass_matrix, progress=progress)
              for c in range(num_chains)]
    base = torch.stack([c.draws for c in chains])  # (chains, draws, dim)
    with torch.no_grad():
        site_shape = model.prior.init_loc().shape
        latents = neutra.transform_sample(base.reshape(-1, dim))[site].reshape(num_chains, num_samples, *site_shape)
        init_latents = neutra.transform_sample(starts)[site]
    info: dict[str, Any] = {"method": "neutra", "guide": type(guide).__name__, "base_latents": base,
                            "init_spread": init_spread}
    return chains_result(model, chains, latents.detach().cpu(), init_latents.detach().cpu(),
                         time.perf_counter() - t0, setup, info)
