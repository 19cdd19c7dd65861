"""Pure-PyTorch building blocks of the StyleGAN2 generator.

Everything here is plain differentiable PyTorch (no custom CUDA extensions), so it runs
unchanged on CPU and GPU and under ``torch.func`` / Pyro.  The numerics follow the
published StyleGAN2 architecture (Karras et al., 2020, "Analyzing and improving the image
quality of StyleGAN"):

- ``upfirdn2d``: upsample by zero insertion, pad, convolve with a 2-D FIR filter, downsample.
- ``modulated_conv2d``: style modulation and weight demodulation (StyleGAN2 Eqs. 1-3), with
  a fused (grouped convolution) and a non-fused (scale the activations) path that are equal.
- ``bias_act``: bias, leaky ReLU with gain sqrt(2), optional clamp.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """The separable low-pass filter as a normalised 2-D kernel: outer(f, f) / sum, shape (K, K)."""
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    if f.ndim != 1 or f.numel() < 1:
        raise ValueError(f"filter taps must be a non-empty 1-D sequence, got shape {tuple(f.shape)}")
    f2 = torch.outer(f, f)
    return f2 / f2.sum()


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample (zero insertion), pad (x0, x1, y0, y1; negative crops), FIR-filter, downsample.

    x: (B, C, H, W); f: (K, K) 2-D filter.  The filter is applied as a true convolution
    (flipped), scaled by ``gain``.
    """
    batch, channels, height, width = x.shape
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    kernel = (f * gain).to(dtype=x.dtype, device=x.device).flip([0, 1])
    kernel = kernel[None, None].repeat(channels, 1, 1, 1)  # (C, 1, K, K), depthwise
    x = F.conv2d(x, kernel, groups=channels)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Upsample (B, C, H, W) -> (B, C, up*H, up*W) with the FIR filter ``f`` (gain up**2)."""
    k = f.shape[-1]
    pad0 = (k + up - 1) // 2
    pad1 = (k - up) // 2
    return upfirdn2d(x, f, up=up, padding=(pad0, pad1, pad0, pad1), gain=up * up)


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    activation: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """x + bias (broadcast over dim 1), then the activation times its gain, then clamp.

    ``activation`` is ``"linear"`` (default gain 1) or ``"lrelu"`` (slope 0.2, default gain sqrt(2)).
    """
    if bias is not None:
        shape = [1, -1] + [1] * (x.ndim - 2)
        x = x + bias.to(x.dtype).reshape(shape)
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
        default_gain = LRELU_GAIN
    elif activation == "linear":
        default_gain = 1.0
    else:
        raise ValueError(f"unknown activation {activation!r}; expected 'linear' or 'lrelu'")
    g = default_gain if gain is None else gain
    if g != 1:
        x = x * g
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _conv_up2(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, groups: int) -> torch.Tensor:
    """3x3 convolution with 2x upsampling: stride-2 transposed convolution, then the FIR filter.

    weight: (groups * O, I, k, k) as for a grouped ``conv2d``; output (B, groups * O, 2H, 2W).
    """
    out_total, in_per_group, kh, kw = weight.shape
    out_per_group = out_total // groups
    # conv_transpose2d expects (groups * I, O, k, k).
    w = weight.reshape(groups, out_per_group, in_per_group, kh, kw).transpose(1, 2)
    w = w.reshape(groups * in_per_group, out_per_group, kh, kw)
    x = F.conv_transpose2d(x, w, stride=2, groups=groups)  # (B, O, 2H + k - 2, ...)
    fk = f.shape[-1]
    p0 = (fk + 2 - 1) // 2 + (kw // 2) - (kw - 1)  # padding of the filter after the transposed conv
    p1 = (fk - 2) // 2 + (kw // 2) - (kw - 2)
    return upfirdn2d(x, f, padding=(p0, p1, p0, p1), gain=4)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    fused: bool = True,
) -> torch.Tensor:
    """Modulated convolution of StyleGAN2 (Eqs. 1-3 of Karras et al., 2020).

    x: (B, I, H, W); weight: (O, I, k, k); styles: (B, I); noise: broadcastable to the output.
    w'_{b,o,i} = w_{o,i} * s_{b,i};  w''_{b,o,i} = w'_{b,o,i} / sqrt(sum_{i,kh,kw} w'^2 + 1e-8).
    ``fused=True`` runs one grouped convolution with per-sample weights; ``fused=False`` scales
    the activations instead and shares the weight across the batch.  Both give the same result.
    Returns (B, O, up*H, up*W).
    """
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if styles.shape != (batch, in_channels):
        raise ValueError(f"styles must have shape {(batch, in_channels)}, got {tuple(styles.shape)}")
    if up not in (1, 2):
        raise ValueError(f"only up=1 or up=2 is supported, got {up}")
    padding = kw // 2

    dcoefs = None
    if demodulate:
        # sum_{i,kh,kw} (w_{o,i} s_{b,i})^2 = sum_i s_{b,i}^2 sum_{kh,kw} w_{o,i}^2: a (B, I) x (I, O)
        # product instead of the (B, O, I, k, k) modulated weight (which only the fused path needs).
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # (B, O)

    if not fused:
        x = x * styles.reshape(batch, in_channels, 1, 1)
        if up == 2:
            x = _conv_up2(x, weight, resample_filter, groups=1)
        else:
            x = F.conv2d(x, weight, padding=padding)
        if dcoefs is not None:
            x = x * dcoefs.reshape(batch, out_channels, 1, 1)
        if noise is not None:
            x = x + noise
        return x

    w = weight.unsqueeze(0) * styles.reshape(batch, 1, in_channels, 1, 1)  # (B, O, I, k, k)
    if dcoefs is not None:
        w = w * dcoefs.reshape(batch, out_channels, 1, 1, 1)
    w = w.reshape(batch * out_channels, in_channels, kh, kw)
    x = x.reshape(1, batch * in_channels, *x.shape[2:])
    if up == 2:
        x = _conv_up2(x, w, resample_filter, groups=batch)
    else:
        x = F.conv2d(x, w, padding=padding, groups=batch)
    x = x.reshape(batch, out_channels, *x.shape[2:])
    if noise is not None:
        x = x + noise
    return x
