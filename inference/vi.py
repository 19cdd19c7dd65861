"""Variational inference for w (Sec. 2.4, Eqs. 7-8): a guide fitted with ``Trace_ELBO`` under SVI,
optionally with the inverse-gamma prior on the variational standard deviation (Eq. 8)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Predictive

from brgm_pyro.models.brgm import BRGMModel

from ._runner import History, StepCallback, TermRecordingELBO, inference_scope, run_steps
from .guides import image_seeds, make_guide
from .posterior import Posterior, single_image_model


PENALTY_WEIGHTINGS = ("eq8", "released")


@dataclass(frozen=True)
class InverseGammaPenalty:
    """-log InvGamma(scale * sigma_v; alpha, beta) summed over elements: the -log p(theta) of Eq. 8.

    The paper: alpha = 0.1, beta = 0.95 on sigma_v (``scale=1``).  The authors' released code
    applies it to sigma_v / 2 (``scale=0.5``).

    Eq. 8 is  -log p(theta) + sum_{i=1..n} [log q(w_i) - log p(w_i) - log p(I | w_i)]: the
    penalty enters once against a *sum* over the n particles.  ``fit_vi`` minimises the particle
    *mean* (Pyro's ``Trace_ELBO``), so ``weighting="eq8"`` adds ``penalty / n`` (Eq. 8 divided by
    n); ``weighting="released"`` adds the whole penalty to the mean, as the authors' code does
    (n times stronger than Eq. 8).  ``weight(n)`` gives the factor.  The default is "released":
    on the calibration benchmark (benchmarks/README.md) the mean-field guide is overconfident
    either way, and the stronger released weighting covers more (in-painting problem 0: 90%
    intervals hold 0.62 vs 0.55 with "eq8"; see the README for the paired numbers).

    What it does: its derivative in sigma_v is (alpha + 1) / s - beta / (scale s^2), zero at the
    inverse-gamma mode s* = beta / (scale (alpha + 1)) (0.864 for the paper's ``scale=1``, 1.73
    for the released 0.5), negative below it and positive above.  Added to the ELBO, whose
    optimum for a coordinate of local posterior precision h is s = h^(-1/2) (the balance of the
    expected log density and the entropy term), it moves every sigma_v toward s* from *both*
    sides, whatever the coordinate's posterior scale: it widens coordinates narrower than s* and
    narrows wider ones.  It is a penalty on the variational parameters, not part of the model, so
    the objective is no longer an ELBO (``sigma_prior=None`` switches it off).
    """

    alpha: float = 0.1
    beta: float = 0.95
    scale: float = 1.0
    weighting: str = "released"

    def __post_init__(self) -> None:
        if self.weighting not in PENALTY_WEIGHTINGS:
            raise ValueError(f"weighting must be one of {PENALTY_WEIGHTINGS}, got {self.weighting!r}")
        if min(self.alpha, self.beta, self.scale) <= 0:
            raise ValueError("alpha, beta and scale must be positive")

    def __call__(self, sigma: torch.Tensor) -> torch.Tensor:
        return -dist.InverseGamma(self.alpha, self.beta).log_prob(sigma * self.scale).sum()

    def weight(self, num_particles: int) -> float:
        """The factor on the penalty next to the particle-mean ELBO: 1/n ("eq8") or 1 ("released")."""
        return 1.0 / num_particles if self.weighting == "eq8" else 1.0


class VIPosterior(Posterior):
    """The fitted variational posterior: ``sample``, ``mean_image``, ``pixel_statistics``, plus
    the fit's ``history``, the ``guide`` (a ``LatentGuide``) and the param-store ``state`` it was
    fitted in.

    ``q`` is the fitted q(w), frozen (``guide.freeze()``): for the named guides a
    ``LatentDistribution`` with ``sample_with_log_prob`` and, for Gaussians, ``log_prob`` (what
    importance resampling and the ensemble use); an ``ImageStack`` of them for a batched fit.
    ``loc`` is q's location (the guide's ``median()``) and ``scale`` its per-element standard
    deviation for the diagonal Gaussian guides (None otherwise), both with a leading image axis
    for a batched fit.  ``image(b)`` is image b's own ``VIPosterior``.
    """

    def __init__(self, model: BRGMModel, sample_latents: Callable[[int], torch.Tensor],
                 mean_latent: torch.Tensor | None, history: History, guide: Callable,
                 state: dict, loc: torch.Tensor | None = None, scale: torch.Tensor | None = None,
                 q: Any = None) -> None:
        super().__init__(model, sample_latents, mean_latent, self._image if model.batched else None)
        self.history, self.guide, self.state = history, guide, state
        self.loc, self.scale, self.q = loc, scale, q

    def with_q(self, q: Any, scale_factor: float = 1.0) -> "VIPosterior":
        """The same fit with q replaced (e.g. widened by ``scale_factor``, which multiplies ``scale``)."""
        return VIPosterior(self.model, q.sample, self.mean_latent, self.history, self.guide, self.state, self.loc,
                           None if self.scale is None else scale_factor * self.scale, q)

    def parameter_draws(self, num_draws: int = 1000, seed: int = 0) -> dict[str, torch.Tensor]:
        """Site -> (num_draws,) draws of the model's latent sites besides w, from the fitted guide."""
        sites = list(self.model.latent_parameters())
        if not sites:
            return {}
        if num_draws < 1:
            raise ValueError(f"num_draws must be >= 1, got {num_draws}")
        with pyro.get_param_store().scope(self.state), torch.no_grad(), torch.random.fork_rng(devices=[]):
            pyro.set_rng_seed(seed)
            samples = Predictive(self.guide, num_samples=num_draws, return_sites=sites)()
        return {k: samples[k].detach().cpu().reshape(num_draws) for k in sites}

    def _image(self, b: int) -> "VIPosterior":
        q = self.q.images()[b]
        loc, scale = (None if t is None else t[b] for t in (self.loc, self.scale))
        return VIPosterior(single_image_model(self.model, b), q.sample, q.mean, self.history, self.guide,
                           self.state, loc, scale, q)


def fit_vi(
    model: BRGMModel,
    guide: str | Callable = "gaussian",
    num_steps: int = 500,
    lr: float = 0.1,
    lr_decay: float = 1.0,
    num_particles: int = 6,
    vectorize_particles: bool = True,
    sigma_prior: InverseGammaPenalty | None = InverseGammaPenalty(),
    init_scale: torch.Tensor | float | None = None,
    init_loc: torch.Tensor | None = None,
    init_scale_tril: torch.Tensor | None = None,
    rank: int | None = None,
    num_flows: int = 2,
    seed: int | Sequence[int] = 0,
    progress: bool = True,
    callback: StepCallback | None = None,
    clip_norm: float | None = None,
) -> VIPosterior:
    """Fit q(w) by maximising the ELBO (Eq. 7) minus the sigma_v penalty (Eq. 8) with Adam
    (learning rate ``lr``, multiplied by ``lr_decay`` after every step; the authors: 0.1, no decay).

    ``guide``: "gaussian" (the paper's), "shared", "normal", "fullrank", "lowrank" (``rank``, default 10),
    "flow" (``num_flows`` IAF layers), "delta", a ``LatentGuide`` or any callable guide (e.g. a Pyro
    autoguide: its parameters stay on it).  ``clip_norm`` clips each parameter's gradient norm (default:
    none).  ``init_loc``
    starts the guide there (e.g. a MAP solution's ``latent``; default w_avg), ``init_scale`` gives its
    starting standard deviations (default: the prior's, ``model.prior.init_scale()``),
    ``init_scale_tril`` ("fullrank", "flow") a starting covariance's Cholesky factor (e.g.
    ``fit_laplace(model).q.distribution.scale_tril``).  The penalty applies to the guides whose
    ``penalised`` is set (the paper's diagonal Gaussians); its ``weighting`` says how it is scaled
    against the particle-mean ELBO (see ``InverseGammaPenalty``).

    Batches: a model built on B observations (B, C, H, W) is fitted at once, every image with
    its own variational parameters under ``pyro.plate("images", B)``; ``init_loc`` and
    ``init_scale_tril`` may then have a leading image axis.  ``seed`` is one seed or one per
    image: the guide's noise of image b comes from its own generator seeded ``seed[b]``, so image b
    of a batched fit equals a fit of image b alone with that seed (up to floating-point
    round-off).  The result's draws (``sample``) then have shape (n, B, ...), ``mean_image()``
    (B, C, H, W), and ``image(b)`` is image b's posterior.  Batched fits cover w only (models
    with other latent sites are fitted one image at a time).

    >>> import torch
    >>> from brgm_pyro.corruptions import Denoising
    >>> from brgm_pyro.generators import LinearGenerator
    >>> from brgm_pyro.models import BRGMModel, GaussianLatentPrior, PixelLikelihood
    >>> G = LinearGenerator(0.3 * torch.randn(4, 6), torch.zeros(4), num_ws=2, w_dim=3, img_resolution=2)
    >>> obs = torch.zeros(2, 1, 2, 2)  # a batch of two observations
    >>> prior = GaussianLatentPrior(torch.zeros(3), 1.0, num_ws=2)
    >>> model = BRGMModel(G, Denoising(), obs, prior, None, (PixelLikelihood(0.5),))
    >>> q = fit_vi(model, num_steps=20, seed=[0, 1], progress=False)
    >>> q.loc.shape, q.sample(5).images.shape
    (torch.Size([2, 2, 3]), torch.Size([5, 2, 1, 2, 2]))
    """
    if num_steps < 1 or num_particles < 1:
        raise ValueError("num_steps and num_particles must be >= 1")
    seeds = image_seeds(model, seed)
    if model.batched and model.latent_parameters():
        raise ValueError(f"fit_vi fits a batch of observations for w only, but this model also infers "
                         f"{', '.join(model.latent_parameters())}; build one model per image for it")
    with inference_scope(model, seeds[0]):
        q = make_guide(guide, model, init_scale, init_loc, rank, num_flows, init_scale_tril, seeds)
        q.seed_noise(seeds)
        elbo = TermRecordingELBO(num_particles=num_particles, vectorize_particles=vectorize_particles,
                                 max_plate_nesting=1 if model.batched else 0)
        penalty_holder: dict[str, float] = {}

        def loss_fn(model_fn: Callable, guide_fn: Callable) -> torch.Tensor:
            loss = elbo.differentiable_loss(model_fn, guide_fn)
            if sigma_prior is not None and q.penalised:
                penalty = sigma_prior(q.sigma()) * sigma_prior.weight(num_particles)
                penalty_holder["sigma_v_prior"] = float(penalty.detach())
                loss = loss + penalty
            return loss

        clip = 1e12 if clip_norm is None else clip_norm  # ClippedAdam: Adam with decay (and no clipping at 1e12)
        optimizer = pyro.optim.ClippedAdam({"lr": lr, "lrd": lr_decay, "clip_norm": clip})
        svi = SVI(model.model, q, optimizer, loss=loss_fn)

        def step() -> float:
            value = svi.step()
            elbo.last_terms.update(penalty_holder)
            return value

        history = run_steps(step, num_steps, elbo, progress, callback, "VI")
        state = pyro.get_param_store().get_state()
        with torch.no_grad():
            frozen = q.freeze()
            loc = _detached(q.median()[q.site]) if frozen.mean is not None else None
            scale = _detached(q.sigma())
        q.seed_noise(None)  # after the fit, the guide draws from torch's global generator like any Pyro guide
    return VIPosterior(model, frozen.sample, frozen.mean, history, q, state, loc, scale, frozen)


def _detached(value: torch.Tensor | None) -> torch.Tensor | None:
    return None if value is None else value.detach().clone()

