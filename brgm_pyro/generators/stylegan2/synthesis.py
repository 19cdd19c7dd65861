"""The StyleGAN2 synthesis network ("skip" architecture): w (B, num_ws, w_dim) -> image (B, C, R, R)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ...functional import channel_schedule
from .layers import NoiseMode, SynthesisLayer, ToRGBLayer
from .ops import setup_filter, upsample2d


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator.

    First block (res 4): learned constant (C, 4, 4) -> conv1 -> torgb.
    Other blocks: conv0 (2x up) -> conv1 -> torgb, and the running image is upsampled and summed.
    Consumes ``num_conv + num_torgb`` consecutive w vectors; the torgb vector is shared with the
    next block's conv0 (as in the reference implementation).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, up=2,
                resample_filter=resample_filter, conv_clamp=conv_clamp,
            )
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution,
            resample_filter=resample_filter, conv_clamp=conv_clamp,
        )
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,  # (B, num_conv + num_torgb, w_dim)
        noise_mode: NoiseMode = "const",
        fused_modconv: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.to(ws.dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        else:
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """Stack of ``SynthesisBlock`` s from 4x4 to ``img_resolution``; num_ws = 2 log2(R) - 2.

    ``noise_mode`` (const / random / none) is fixed per network so that the generator is a
    deterministic function of w by default; ``fused_modconv=None`` chooses the modulation path:
    the fused convolution (per-sample weights) only for a batch of one on a GPU, else the
    non-fused one (scaled activations, shared weights). On the CPU the non-fused path is the
    faster one at every resolution for a forward + backward with respect to w (the fused path's
    gradient reaches w through the per-sample weights: an extra weight-gradient convolution),
    and grouped convolutions for batches are slow there (benchmarks/README.md).
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        conv_clamp: float | None = None,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        noise_mode: NoiseMode = "const",
    ) -> None:
        super().__init__()
        log2 = math.log2(img_resolution) if img_resolution > 0 else -1
        if not (log2 == int(log2) and 3 <= log2 <= 10):
            raise ValueError(f"img_resolution must be a power of two in 8..1024, got {img_resolution}")
        if img_channels not in (1, 3):
            raise ValueError(f"img_channels must be 1 or 3, got {img_channels}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.noise_mode = noise_mode
        self.block_resolutions = [2**i for i in range(2, int(log2) + 1)]
        self.channels = channel_schedule(img_resolution, channel_base, channel_max)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = self.channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(
                in_channels, self.channels[res], w_dim, res, img_channels,
                resample_filter=resample_filter, conv_clamp=conv_clamp,
            )
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last ToRGB

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: NoiseMode | None = None,
        fused_modconv: bool | None = None,
    ) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(
                f"ws must have shape (B, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}"
            )
        noise_mode = self.noise_mode if noise_mode is None else noise_mode
        if fused_modconv is None:
            fused_modconv = ws.shape[0] == 1 and ws.device.type == "cuda"
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            x, img = block(x, img, block_ws, noise_mode=noise_mode, fused_modconv=fused_modconv)
            w_idx += block.num_conv
        return img  # (B, img_channels, R, R)

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
            f"img_channels={self.img_channels}, noise_mode={self.noise_mode}"
        )
