"""MAP estimate of w (Eq. 6): an ``AutoDelta`` guide fitted under SVI, started at w_avg."""

from __future__ import annotations

from dataclasses import dataclass, field

from typing import Any

import pyro
import torch
from pyro.infer import SVI
from pyro.infer.autoguide import AutoDelta
from pyro.infer.autoguide.initialization import init_to_value

from brgm_pyro.models.brgm import BRGMModel, corrupt, generate
from brgm_pyro.models.misfit import point_images

from ._runner import History, StepCallback, TermRecordingELBO, inference_scope, run_steps


@dataclass
class MAPResult:
    """w* (latent site value), ws* (num_ws, w_dim), G(w*) (1, C, H, W), f(G(w*)), the history,
    ``parameters``: the MAP values of the model's other latent sites (unknown noise levels and
    corruption parameters, e.g. "sigma_pixel", "corruption.blur_sigma"; empty for the paper's model), and
    ``reconstruction``: the MAP of the clean image -- G(w*) for the paper's model, G(w*) + E[r | y, w*] for a
    model with the generator's misfit x = G(w) + r (the joint MAP of (w, r); ``models.misfit.point_images``)."""

    latent: torch.Tensor
    ws: torch.Tensor
    image: torch.Tensor
    corrupted: torch.Tensor
    history: History
    parameters: dict[str, torch.Tensor] = field(default_factory=dict)
    reconstruction: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.reconstruction is None:
            self.reconstruction = self.image

    @property
    def loss(self) -> list[float]:
        return self.history.loss

    # the InferenceResult interface (inference.posterior): a point estimate
    @property
    def posterior(self) -> None:
        return None

    @property
    def wall_seconds(self) -> float:
        return self.history.wall_seconds

    def latent_draws(self, num_draws: int = 1, seed: int = 0) -> torch.Tensor:
        """(1, 1, *site shape): the estimate as the one draw of one chain."""
        return self.latent.detach().cpu()[None, None]

    def parameter_draws(self, num_draws: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
        """Site -> (1, ...): the MAP values of the model's other latent sites."""
        return {k: v.detach().cpu().reshape(1, *v.shape) for k, v in self.parameters.items()}

    def sample_stats(self) -> dict[str, Any]:
        return {}

    @property
    def terms(self) -> dict[str, list[float]]:
        return self.history.terms


def map_estimate(
    model: BRGMModel,
    num_steps: int = 500,
    lr: float = 0.1,
    init: torch.Tensor | None = None,
    seed: int = 0,
    progress: bool = True,
    callback: StepCallback | None = None,
) -> MAPResult:
    """Maximise p(w | I) with Adam on an ``AutoDelta`` guide (the authors' defaults: lr 0.1, 500 steps).

    Starts at ``init`` (default: the prior's mean, i.e. w_avg on every layer).  The loss per
    step is the negative log joint; ``result.terms`` holds each site's share (Eq. 6 / 2).  With a misfit
    term (``models.misfit``) the clean image's estimate is ``result.reconstruction`` (G(w*) plus the residual's
    conditional mean), ``result.image`` stays G(w*).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    start = model.prior.init_loc() if init is None else init
    if model.batched and start.shape == model.prior.init_loc().shape:
        start = start.expand(model.num_images, *start.shape)
    site = model.prior.site
    with inference_scope(model, seed):
        values = {site: start.detach().clone(), **latent_initial_values(model)}
        guide = AutoDelta(model.model, init_loc_fn=init_to_value(values=values))
        elbo = TermRecordingELBO()
        svi = SVI(model.model, guide, pyro.optim.Adam({"lr": lr}), loss=elbo)
        history = run_steps(svi.step, num_steps, elbo, progress, callback, "MAP")
        with torch.no_grad():
            median = guide.median()
            latent = median[site].detach()
            parameters = {name: median[name].detach() for name in latent_initial_values(model)}
            corruption_sites = model.corruption.latent_parameters()
            ws = model.prior.ws_from_latent(latent)
            image = generate(model.generator, ws if model.batched else ws.unsqueeze(0))
            corrupted = corrupt(model.corruption, image, {k: v for k, v in parameters.items() if k in corruption_sites})
            reconstruction = point_images(model, image, parameters)
    return MAPResult(latent, ws, image, corrupted, history, parameters, reconstruction)


def latent_initial_values(model: BRGMModel) -> dict[str, torch.Tensor]:
    """Starting values of the model's latent sites besides w (empty for the paper's model),
    expanded over the images of a batched model."""
    values = model.initial_values() if hasattr(model, "initial_values") else {}
    if model.batched:
        values = {k: v.expand(model.num_images).clone() for k, v in values.items()}
    return values
