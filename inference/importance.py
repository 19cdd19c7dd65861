"""Importance resampling of a fitted q(w) with Pareto-smoothed importance weights (PSIS).

Draws w_1..w_M ~ q get log weights log p(w_m, I) - log q(w_m) (the model's log joint: prior,
colinearity factor and likelihoods); PSIS (Vehtari et al., 2024) replaces the M_tail largest
weights by the expected order statistics of a generalised Pareto distribution fitted to them,
which bounds their variance, and its shape estimate k-hat says whether the result can be
trusted: k < 0.5 good, 0.5-0.7 usable, > 0.7 the proposal misses posterior mass (the weights'
variance is infinite in practice, and the resampled draws collapse onto a few proposals).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pyro import poutine
from pyro.ops.stats import fit_generalized_pareto

from brgm_pyro.models.brgm import BRGMModel

from .posterior import Posterior


@torch.no_grad()
def log_joint(model: BRGMModel, latents: torch.Tensor, chunk_size: int = 64) -> torch.Tensor:
    """log p(w, I) for each latent (n, *site shape) -> (n,) float64: every sample site of the
    model (prior, observed likelihoods) and factor (colinearity), up to the model's constants."""
    return differentiable_log_joint(model, latents, chunk_size)


def differentiable_log_joint(model: BRGMModel, latents: torch.Tensor, chunk_size: int = 64) -> torch.Tensor:
    """``log_joint`` with gradients flowing to ``latents`` (when grad mode is on)."""
    site = model.prior.site
    model.require_single("log_joint")  # a plate of B images would pair draw k with image k when n == B
    if latents.ndim < 1 or latents.shape[1:] != model.prior.init_loc().shape:
        raise ValueError(f"latents must have shape (n, *{tuple(model.prior.init_loc().shape)}), "
                         f"got {tuple(latents.shape)}")
    out = []
    for start in range(0, latents.shape[0], chunk_size):
        value = latents[start:start + chunk_size].to(model.observation.device)
        trace = poutine.trace(poutine.condition(model.model, data={site: value})).get_trace()
        out.append(trace_log_joint(trace, value.shape[:1]))
    return torch.cat(out)


def trace_log_joint(trace: poutine.Trace, shape: torch.Size) -> torch.Tensor:
    """The sum of a model trace's log densities, float64 on the CPU, per draw: ``shape`` is the
    leading shape of the conditioned value ((n,), or (K, B) under a plate of B images); a plate's
    own subsample site (no density) is skipped."""
    total = torch.zeros(shape, dtype=torch.float64)
    for node in trace.nodes.values():
        if node["type"] == "sample" and hasattr(node["fn"], "batch_shape"):
            total = total + node["fn"].log_prob(node["value"]).double().cpu().expand(shape)
    return total


def psis_smooth(log_weights: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Pareto-smoothed log weights (same order, unnormalised) and the Pareto shape estimate k-hat.

    The tail is the M = ceil(min(0.2 n, 3 sqrt(n))) largest weights; a generalised Pareto
    distribution is fitted to their excess over the largest weight outside the tail, the tail
    is replaced by its quantiles at (i - 1/2) / M, and no smoothed weight exceeds the largest raw one.
    """
    lw = torch.as_tensor(log_weights, dtype=torch.float64).flatten()
    n = lw.numel()
    if n < 10:
        raise ValueError(f"PSIS needs at least 10 weights, got {n}")
    if not torch.isfinite(lw).all():
        raise ValueError("log weights must be finite")
    lw = lw - lw.max()
    tail_len = int(math.ceil(min(0.2 * n, 3 * math.sqrt(n))))
    order = torch.argsort(lw)
    cutoff = float(lw[order[-tail_len - 1]])
    tail = order[-tail_len:]
    excess = lw[tail].exp() - math.exp(cutoff)
    if float(excess.max()) <= 0:  # all tail weights equal the cutoff: nothing to smooth
        return lw, -math.inf
    try:
        k, sigma = fit_generalized_pareto(excess.float())
        k, sigma = float(k), float(sigma)
    except ZeroDivisionError:  # degenerate tail (one weight dominates all others): no finite fit
        return lw, math.inf
    if not (math.isfinite(k) and math.isfinite(sigma) and sigma > 0):
        return lw, math.inf
    p = (torch.arange(1, tail_len + 1, dtype=torch.float64) - 0.5) / tail_len
    if abs(k) < 1e-8:
        quantiles = -sigma * torch.log1p(-p)
    else:
        quantiles = sigma / k * ((1 - p).pow(-k) - 1)
    smoothed = lw.clone()
    smoothed[tail] = torch.log(quantiles + math.exp(cutoff)).clamp_max(0.0)  # the largest raw weight is exp(0)
    return smoothed, k


class ImportancePosterior(Posterior):
    """Draws resampled (with replacement) from M weighted proposals: ``proposals`` (M, *site shape),
    ``weights`` (M,) summing to 1; ``mean_latent`` is the weighted mean of the proposals, and
    ``diagnostics`` holds {"khat", "ess", "num_proposals"} (ESS = 1 / sum w^2 of the smoothed weights)."""

    def __init__(self, model: BRGMModel, proposals: torch.Tensor, weights: torch.Tensor,
                 diagnostics: dict[str, Any]) -> None:
        self.proposals, self.weights, self.diagnostics = proposals, weights, diagnostics
        mean = (weights.to(proposals).reshape(-1, *[1] * (proposals.ndim - 1)) * proposals).sum(0)
        super().__init__(model, self._resample, mean)

    def _resample(self, n: int) -> torch.Tensor:
        idx = torch.multinomial(self.weights, n, replacement=True)
        return self.proposals[idx]


def importance_resample(posterior: Any, num_proposals: int = 1000, chunk_size: int = 64,
                        seed: int | None = 0) -> ImportancePosterior:
    """PSIS importance resampling of a fitted posterior whose ``q`` has ``sample_with_log_prob``
    (``fit_vi``'s named Gaussian and flow guides, ``fit_ensemble``'s mixture).

    Returns an ``ImportancePosterior``: a ``Posterior`` whose draws are resampled from
    ``num_proposals`` draws of q in proportion to their smoothed weights p(w, I) / q(w), with
    ``.diagnostics`` {"khat", "ess", "num_proposals"}.  Trust it only where k-hat < 0.7.
    """
    q = getattr(posterior, "q", None)
    if q is None or not hasattr(q, "sample_with_log_prob"):
        raise ValueError("importance_resample needs a posterior with a q that has sample_with_log_prob "
                         "(fit_vi with a named Gaussian or flow guide, or fit_ensemble)")
    if num_proposals < 10:
        raise ValueError(f"num_proposals must be >= 10, got {num_proposals}")
    if posterior.model.batched:
        raise ValueError(f"importance_resample takes one image's posterior; this one holds "
                         f"{posterior.model.num_images} images (use posterior.image(b))")
    if seed is not None:
        torch.manual_seed(seed)
    latents, log_q = q.sample_with_log_prob(num_proposals)
    log_p = log_joint(posterior.model, latents, chunk_size)
    smoothed, khat = psis_smooth(log_p - log_q.double().cpu())
    weights = torch.softmax(smoothed, 0)
    ess = float(1.0 / weights.square().sum())
    diagnostics = {"khat": khat, "ess": ess, "num_proposals": num_proposals}
    return ImportancePosterior(posterior.model, latents, weights.float().to(latents.device), diagnostics)
