"""Variational inference for w (Sec. 2.4, Eqs. 7-8): a guide fitted with ``Trace_ELBO`` under SVI,
optionally with the inverse-gamma prior on the variational standard deviation (Eq. 8)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Predictive

from brgm_pyro.models.brgm import BRGMModel

from ._runner import History, StepCallback, TermRecordingELBO, inference_scope, run_steps
from .guides import GaussianGuide, SharedGaussianGuide, make_guide
from .posterior import Posterior


@dataclass(frozen=True)
class InverseGammaPenalty:
    """-log InvGamma(scale * sigma_v; alpha, beta) summed over elements, added to the loss (Eq. 8).

    The paper: alpha = 0.1, beta = 0.95 on sigma_v (``scale=1``).  The authors' released code
    applies it to sigma_v / 2 (``scale=0.5``).  It pushes sigma_v up so that the samples cover
    more of the posterior; it is a penalty on the variational parameters, not part of the model,
    so the objective is no longer a pure ELBO (switch it off with ``sigma_prior=None``).
    """

    alpha: float = 0.1
    beta: float = 0.95
    scale: float = 1.0

    def __call__(self, sigma: torch.Tensor) -> torch.Tensor:
        return -dist.InverseGamma(self.alpha, self.beta).log_prob(sigma * self.scale).sum()


class VIPosterior(Posterior):
    """The fitted variational posterior: ``sample``, ``mean_image``, ``pixel_statistics``, plus
    the fit's ``history``, the ``guide`` and the param-store ``state`` it was fitted in."""

    def __init__(self, model: BRGMModel, sample_latents: Callable[[int], torch.Tensor],
                 mean_latent: torch.Tensor | None, history: History, guide: Callable,
                 state: dict, loc: torch.Tensor | None = None, scale: torch.Tensor | None = None) -> None:
        super().__init__(model, sample_latents, mean_latent)
        self.history, self.guide, self.state = history, guide, state
        self.loc, self.scale = loc, scale


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
    seed: int = 0,
    progress: bool = True,
    callback: StepCallback | None = None,
) -> VIPosterior:
    """Fit q(w) by maximising the ELBO (Eq. 7) minus the sigma_v penalty (Eq. 8) with Adam
    (learning rate ``lr``, multiplied by ``lr_decay`` after every step; the authors: 0.1, no decay).

    ``guide``: "gaussian" (the paper's), "shared", "normal", "lowrank", or a callable guide.
    The penalty applies to guides with a ``sigma()`` method (the Gaussian guides).
    """
    if num_steps < 1 or num_particles < 1:
        raise ValueError("num_steps and num_particles must be >= 1")
    model.require_single("fit_vi")
    with inference_scope(model, seed):
        q = make_guide(guide, model, init_scale)
        elbo = TermRecordingELBO(num_particles=num_particles, vectorize_particles=vectorize_particles,
                                 max_plate_nesting=0)
        penalty_holder: dict[str, float] = {}

        def loss_fn(model_fn: Callable, guide_fn: Callable) -> torch.Tensor:
            loss = elbo.differentiable_loss(model_fn, guide_fn)
            if sigma_prior is not None and hasattr(q, "sigma"):
                penalty = sigma_prior(q.sigma())
                penalty_holder["sigma_v_prior"] = float(penalty.detach())
                loss = loss + penalty
            return loss

        optimizer = pyro.optim.ClippedAdam({"lr": lr, "lrd": lr_decay, "clip_norm": 1e12})  # Adam with decay
        svi = SVI(model.model, q, optimizer, loss=loss_fn)

        def step() -> float:
            value = svi.step()
            elbo.last_terms.update(penalty_holder)
            return value

        history = run_steps(step, num_steps, elbo, progress, callback, "VI")
        state = pyro.get_param_store().get_state()
        if isinstance(q, GaussianGuide):
            loc, scale = q.loc().detach().clone(), q.sigma().detach().clone()
            shared = isinstance(q, SharedGaussianGuide)

            def sample_latents(n: int) -> torch.Tensor:
                eps = torch.randn(n, *loc.shape, device=loc.device, dtype=loc.dtype)
                draw = loc + scale * eps
                return draw.unsqueeze(-2).expand(n, q.num_ws, loc.shape[-1]) if shared else draw

            mean_latent = loc.expand(q.num_ws, -1) if shared else loc
            return VIPosterior(model, sample_latents, mean_latent, history, q, state, loc, scale)

    site = model.prior.site

    def sample_latents(n: int) -> torch.Tensor:
        with pyro.get_param_store().scope(state):
            return Predictive(q, num_samples=n, parallel=True)()[site].detach()

    with pyro.get_param_store().scope(state):
        median = getattr(q, "median", None)
        mean_latent = median()[site].detach() if median is not None else None
    return VIPosterior(model, sample_latents, mean_latent, history, q, state)
