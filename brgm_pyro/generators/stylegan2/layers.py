"""The layers of the StyleGAN2 generator: equalised fully connected layer, modulated
synthesis convolution with noise, and the ToRGB layer.

Parameter and buffer names match NVIDIA's stylegan2-ada-pytorch networks so that their
state dicts load strictly into these modules.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import nn

from .ops import bias_act, modulated_conv2d, setup_filter

NoiseMode = Literal["const", "random", "none"]
NOISE_MODES = ("const", "random", "none")


class FullyConnectedLayer(nn.Module):
    """Equalised-learning-rate linear layer: y = act(x @ (g * W)^T + lr_mul * b), g = lr_mul / sqrt(in)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)  # (out, in)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None  # (out,)
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in) -> (B, out)
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype) * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, activation=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally 2x up), + per-pixel noise, + bias, leaky ReLU (gain sqrt 2).

    (B, I, H, W), w (B, w_dim) -> (B, O, up*H, up*W).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))  # (4, 4)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)  # w -> styles (B, I)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))  # (H, W)
            self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: NoiseMode = "const",
        fused_modconv: bool = True,
    ) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        styles = self.affine(w)  # (B, I)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn(
                x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype
            ) * self.noise_strength.to(x.dtype)
        elif self.use_noise and noise_mode == "const":
            noise = (self.noise_const * self.noise_strength).to(x.dtype)
        x = modulated_conv2d(
            x,
            self.weight.to(x.dtype),
            styles,
            noise=noise,
            up=self.up,
            resample_filter=self.resample_filter,
            fused=fused_modconv,
        )
        return bias_act(x, self.bias, activation="lrelu", clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"resolution={self.resolution}, up={self.up}"
        )


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution without demodulation, + bias: (B, I, H, W) -> (B, img_channels, H, W)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight.to(x.dtype), styles, demodulate=False, fused=fused_modconv)
        return bias_act(x, self.bias, activation="linear", clamp=self.conv_clamp)
