"""The generator interface that the Pyro model relies on.

Any prior generator (StyleGAN2, the linear test generator, a user's own network) offers:

- ``num_ws``, ``w_dim``, ``z_dim``, ``img_resolution``, ``img_channels``
- ``synthesis(ws)``: (B, num_ws, w_dim) -> images (B, C, H, W) in about [-1, 1], deterministic
- ``mapping(z)``: (B, z_dim) -> (B, num_ws, w_dim)
- ``latent_stats(num_samples, seed)``: the statistics of w that the prior of Eq. 2 uses.

``GeneratorBase`` implements ``latent_stats`` (chunked, cached) on top of ``mapping``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn


@dataclass(frozen=True)
class LatentStats:
    """Statistics of w = mapping(z), z ~ N(0, I), over ``num_samples`` draws.

    mean: (w_dim,) -- mu of Eq. 2 (the authors' ``w_avg``)
    std: (w_dim,) -- per-dimension standard deviation
    std_scalar: () -- sqrt(mean_n ||w_n - mean||^2), the single sigma of the authors' release
    """

    mean: torch.Tensor
    std: torch.Tensor
    std_scalar: torch.Tensor
    num_samples: int
    seed: int

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "LatentStats":
        return LatentStats(
            self.mean.to(device=device, dtype=dtype),
            self.std.to(device=device, dtype=dtype),
            self.std_scalar.to(device=device, dtype=dtype),
            self.num_samples,
            self.seed,
        )


@runtime_checkable
class PriorGenerator(Protocol):
    """What the BRGM model needs from a generator."""

    num_ws: int
    w_dim: int
    z_dim: int
    img_resolution: int
    img_channels: int

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor: ...

    def mapping(self, z: torch.Tensor) -> torch.Tensor: ...

    def latent_stats(self, num_samples: int = 10_000, seed: int = 0) -> LatentStats: ...


class GeneratorBase(nn.Module):
    """Shared behaviour of the project's generators: device/dtype and cached ``latent_stats``."""

    num_ws: int
    w_dim: int
    z_dim: int
    img_resolution: int
    img_channels: int

    def __init__(self) -> None:
        super().__init__()
        self._latent_stats_cache: dict[tuple, LatentStats] = {}

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for t in self.parameters():
            return t.dtype
        for t in self.buffers():
            if t.is_floating_point():
                return t.dtype
        return torch.get_default_dtype()

    def _weights_version(self) -> int:
        # Tensor version counters change on every in-place update (optimiser steps,
        # load_state_dict), so a stale cache entry is never returned.
        return sum(t._version for t in self.parameters()) + sum(t._version for t in self.buffers())

    @torch.no_grad()
    def latent_stats(self, num_samples: int = 10_000, seed: int = 0, chunk_size: int = 1000) -> LatentStats:
        """Mean, per-dimension std and scalar std of w over ``num_samples`` mapping samples (Eq. 2's mu, sigma).

        Sampling uses a CPU ``torch.Generator`` seeded with ``seed``, so the result does not
        depend on the device; accumulation is in float64.  Results are cached per generator.
        """
        if num_samples < 2:
            raise ValueError(f"num_samples must be at least 2, got {num_samples}")
        key = (num_samples, seed, str(self.device), self.dtype, self._weights_version())
        if key in self._latent_stats_cache:
            return self._latent_stats_cache[key]
        rng = torch.Generator().manual_seed(seed)
        total = torch.zeros(self.w_dim, dtype=torch.float64)
        total_sq = torch.zeros(self.w_dim, dtype=torch.float64)
        done = 0
        while done < num_samples:
            n = min(chunk_size, num_samples - done)
            z = torch.randn(n, self.z_dim, generator=rng).to(device=self.device, dtype=self.dtype)
            w = self.mapping(z)[:, 0].to(device="cpu", dtype=torch.float64)  # (n, w_dim)
            total += w.sum(dim=0)
            total_sq += w.square().sum(dim=0)
            done += n
        mean = total / num_samples
        var = (total_sq / num_samples - mean.square()).clamp_min(0.0)
        stats = LatentStats(
            mean=mean.to(self.dtype).to(self.device),
            std=var.sqrt().to(self.dtype).to(self.device),
            std_scalar=var.sum().sqrt().to(self.dtype).to(self.device),
            num_samples=num_samples,
            seed=seed,
        )
        self._latent_stats_cache = {key: stats}
        return stats
