"""Scalar quantities of posterior draws that convergence diagnostics and calibration measure: the
region of the image the observation does not show, and the log-likelihood log p(y | w) of a draw."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro import poutine

from brgm_pyro.models.brgm import BRGMModel


def unknown_region(corruption: torch.nn.Module, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """bool (C, H, W): the pixels that are not observed directly.  For a pointwise corruption with
    an observation mask (in-painting) the masked-out pixels; for any other corruption every pixel."""
    mask = corruption.observation_mask(image_shape)
    if mask is not None and getattr(corruption, "pointwise", False) and tuple(mask.shape) == tuple(image_shape):
        unknown = mask.detach().cpu() == 0
        if not unknown.any():
            raise ValueError(f"{corruption.describe()} observes every pixel: there is no unknown region")
        return unknown
    return torch.ones(image_shape, dtype=torch.bool)


@torch.no_grad()
def log_likelihood(model: BRGMModel, latents: torch.Tensor, chunk_size: int = 64) -> torch.Tensor:
    """log p(y | w) of the model's observed sites (the likelihoods, not factors) for each latent (n, *site) -> (n,)."""
    site = model.prior.site
    out = []
    for start in range(0, latents.shape[0], chunk_size):
        value = latents[start:start + chunk_size].to(model.observation.device)
        trace = poutine.trace(poutine.condition(model.model, data={site: value})).get_trace()
        total = torch.zeros(value.shape[0], dtype=torch.float64)
        for name, node in trace.nodes.items():
            if node["type"] != "sample" or name == site or not node["is_observed"]:
                continue
            if isinstance(node["fn"], dist.Unit):  # pyro.factor (the colinearity prior), not data
                continue
            lp = node["fn"].log_prob(node["value"]).double().cpu()
            total = total + lp.expand(value.shape[0])  # batch shape (n,), or () if it does not depend on w
        out.append(total)
    return torch.cat(out)
