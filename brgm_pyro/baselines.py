"""Classical reconstructions that BRGM is compared against (the paper's Table 1 setting).

- ``bicubic_upsample``: bicubic interpolation of a low-resolution image.
- ``total_variation_reconstruction``: argmin_x ||A(x) - y||^2 / (2 sigma^2) + lambda TV(x) for any
  corruption A, by Adam on x (a classical regularised inverse; the isotropic TV is smoothed).
- ``mean_fill``: observed pixels kept, holes filled with a mean image.

Images are (B, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .corruptions.base import Corruption


def bicubic_upsample(low: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, factor*h, factor*w) by bicubic interpolation, clamped to [-1, 1]."""
    if low.ndim != 4:
        raise ValueError(f"expected (B, C, h, w) images, got shape {tuple(low.shape)}")
    if factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    return F.interpolate(low, scale_factor=factor, mode="bicubic", align_corners=False).clamp(-1, 1)


def total_variation(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Smoothed isotropic total variation per image: sum sqrt(dx^2 + dy^2 + eps^2), shape (B,)."""
    dx = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
    dy = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    return (dx.square() + dy.square() + eps**2).sqrt().sum(dim=[1, 2, 3])


def total_variation_reconstruction(
    corruption: Corruption,
    observation: torch.Tensor,
    image_shape: tuple[int, int, int],
    tv_weight: float = 0.05,
    steps: int = 300,
    lr: float = 0.05,
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """TV-regularised least squares: argmin_x sum_obs (A(x) - y)^2 / 2 + tv_weight * TV(x), x in [-1, 1].

    Only the observed values of the corruption's mask count.  ``init`` defaults to zeros.
    """
    expected = (observation.shape[0], *corruption.output_shape(image_shape))
    if tuple(observation.shape) != expected:
        raise ValueError(f"observation must have shape {expected} for {corruption.describe()}, "
                         f"got {tuple(observation.shape)}")
    mask = corruption.observation_mask(image_shape)
    x = (torch.zeros(observation.shape[0], *image_shape, device=observation.device) if init is None else init.clone())
    x.requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        residual = corruption(x) - observation
        if mask is not None:
            residual = residual * mask.to(residual)
        loss = 0.5 * residual.square().sum() + tv_weight * total_variation(x).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(-1, 1)
    return x.detach()


def mean_fill(observation: torch.Tensor, mask: torch.Tensor, mean_image: torch.Tensor) -> torch.Tensor:
    """Keep observed pixels (mask 1) and fill the others from ``mean_image`` (C, H, W)."""
    if mask.shape[-2:] != observation.shape[-2:] or mean_image.shape[-2:] != observation.shape[-2:]:
        raise ValueError(
            f"shapes differ: observation {tuple(observation.shape)}, mask {tuple(mask.shape)}, "
            f"mean image {tuple(mean_image.shape)}"
        )
    return mask * observation + (1 - mask) * mean_image
