"""Posterior samples of w and of reconstructions, in memory-bounded chunks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from brgm_pyro.models.brgm import BRGMModel, corrupt, generate


@dataclass
class PosteriorSamples:
    """latents: (n, *prior site shape); ws: (n, num_ws, w_dim); images: (n, C, H, W) on the CPU
    (None if not requested).  Row i of each belongs to the same draw."""

    latents: torch.Tensor
    ws: torch.Tensor
    images: torch.Tensor | None


@dataclass
class PixelStatistics:
    """Per-pixel posterior mean and standard deviation of G(w), (C, H, W), over n samples."""

    mean: torch.Tensor
    std: torch.Tensor
    num_samples: int


class Posterior:
    """Samples of w from a fitted approximation (or MCMC draws) and the images they generate.

    ``sample_latents(n)`` returns n draws of the prior's latent site; ``mean_latent`` (optional)
    is the point whose image is the "posterior mean image" G(mu_v).
    """

    def __init__(self, model: BRGMModel, sample_latents: Callable[[int], torch.Tensor],
                 mean_latent: torch.Tensor | None = None) -> None:
        self.model = model
        self._sample_latents = sample_latents
        self.mean_latent = mean_latent

    @torch.no_grad()
    def sample(self, n: int, chunk_size: int = 64, images: bool = True, seed: int | None = None) -> PosteriorSamples:
        """n posterior draws; images are generated ``chunk_size`` at a time and kept on the CPU."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if seed is not None:
            torch.manual_seed(seed)
        all_latents, all_ws, all_images = [], [], []
        for start in range(0, n, chunk_size):
            k = min(chunk_size, n - start)
            latents = self._sample_latents(k)
            ws = self.model.prior.ws_from_latent(latents)
            all_latents.append(latents.cpu())
            all_ws.append(ws.cpu())
            if images:
                all_images.append(generate(self.model.generator, ws).cpu())
        return PosteriorSamples(torch.cat(all_latents), torch.cat(all_ws), torch.cat(all_images) if images else None)

    @torch.no_grad()
    def mean_image(self) -> torch.Tensor:
        """G(mu_v): (1, C, H, W)."""
        if self.mean_latent is None:
            raise ValueError("this posterior has no mean latent; use pixel_statistics() instead")
        ws = self.model.prior.ws_from_latent(self.mean_latent)
        return generate(self.model.generator, ws.unsqueeze(0))

    @torch.no_grad()
    def pixel_statistics(self, n: int = 1000, chunk_size: int = 64, seed: int | None = None) -> PixelStatistics:
        """Per-pixel mean and std of G(w) over n draws, accumulated in float64 without storing images."""
        if n < 2:
            raise ValueError(f"n must be >= 2 for a standard deviation, got {n}")
        if seed is not None:
            torch.manual_seed(seed)
        total = total_sq = None
        for start in range(0, n, chunk_size):
            k = min(chunk_size, n - start)
            imgs = generate(self.model.generator, self.model.prior.ws_from_latent(self._sample_latents(k))).double()
            s, s2 = imgs.sum(0), imgs.square().sum(0)
            total = s if total is None else total + s
            total_sq = s2 if total_sq is None else total_sq + s2
        mean = total / n
        var = ((total_sq - n * mean.square()) / (n - 1)).clamp_min(0)
        return PixelStatistics(mean.float().cpu(), var.sqrt().float().cpu(), n)

    @torch.no_grad()
    def corrupted_images(self, ws: torch.Tensor) -> torch.Tensor:
        """f(G(ws)) for given W+ latents (n, L, D)."""
        return corrupt(self.model.corruption, generate(self.model.generator, ws.to(self.model.observation.device)))
