"""A small residual StyleGAN2 discriminator (used only to train generators)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..functional import channel_schedule
from ..generators.stylegan2.ops import bias_act, setup_filter, upfirdn2d


class Conv2dLayer(nn.Module):
    """Equalised-learning-rate convolution, optional FIR-filtered 2x downsampling, bias + activation."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
        activation: str = "linear", down: int = 1,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.down = down
        self.kernel_size = kernel_size
        self.register_buffer("resample_filter", setup_filter((1, 3, 3, 1)))
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        pad = self.kernel_size // 2
        if self.down == 2:
            fk = self.resample_filter.shape[-1]
            if self.kernel_size == 1:  # blur-downsample, then 1x1 conv
                p0, p1 = (fk - 1) // 2, (fk - 2) // 2
                x = upfirdn2d(x, self.resample_filter, down=2, padding=(p0, p1, p0, p1))
                x = torch.nn.functional.conv2d(x, w)
            else:  # blur, then strided conv
                p = pad + (fk - 1) // 2
                x = upfirdn2d(x, self.resample_filter, padding=(p, p, p, p))
                x = torch.nn.functional.conv2d(x, w, stride=2)
        else:
            x = torch.nn.functional.conv2d(x, w, padding=pad)
        default_gain = math.sqrt(2.0) if self.activation == "lrelu" else 1.0
        return bias_act(x, self.bias, activation=self.activation, gain=default_gain * gain)


class DiscriminatorBlock(nn.Module):
    """Residual block: (B, C, R, R) -> (B, C', R/2, R/2); the first block starts with FromRGB."""

    def __init__(self, in_channels: int, channels: int, out_channels: int, img_channels: int) -> None:
        super().__init__()
        self.from_rgb = Conv2dLayer(img_channels, channels, 1, activation="lrelu") if in_channels == 0 else None
        self.conv0 = Conv2dLayer(channels, channels, 3, activation="lrelu")
        self.conv1 = Conv2dLayer(channels, out_channels, 3, activation="lrelu", down=2)
        self.skip = Conv2dLayer(channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.from_rgb is not None:
            x = self.from_rgb(x)
        y = self.skip(x, gain=math.sqrt(0.5))
        return y + self.conv1(self.conv0(x), gain=math.sqrt(0.5))


class MinibatchStd(nn.Module):
    """Append the standard deviation over groups of the batch as one extra feature map."""

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = min(self.group_size, b)
        if b % g:
            g = 1
        y = x.reshape(g, -1, c, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # (B/g, C, H, W)
        y = y.mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)  # (B, 1, H, W)
        return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """Residual discriminator: image (B, C, R, R) -> logit (B, 1)."""

    def __init__(self, img_resolution: int, img_channels: int, channel_base: int = 2048, channel_max: int = 64) -> None:
        super().__init__()
        log2 = int(math.log2(img_resolution))
        if 2**log2 != img_resolution or img_resolution < 8:
            raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
        ch = channel_schedule(img_resolution, channel_base, channel_max)
        blocks = []
        for res in [2**i for i in range(log2, 2, -1)]:
            in_ch = 0 if res == img_resolution else ch[res]
            blocks.append(DiscriminatorBlock(in_ch, ch[res], ch[res // 2], img_channels))
        self.blocks = nn.ModuleList(blocks)
        self.mbstd = MinibatchStd()
        self.conv = Conv2dLayer(ch[4] + 1, ch[4], 3, activation="lrelu")
        self.fc_weight = nn.Parameter(torch.randn(ch[4], ch[4] * 16))
        self.fc_bias = nn.Parameter(torch.zeros(ch[4]))
        self.out_weight = nn.Parameter(torch.randn(1, ch[4]))
        self.out_bias = nn.Parameter(torch.zeros(1))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = img
        for block in self.blocks:
            x = block(x)
        x = self.conv(self.mbstd(x)).flatten(1)
        x = bias_act(x @ (self.fc_weight / math.sqrt(self.fc_weight.shape[1])).t(), self.fc_bias, "lrelu")
        return x @ (self.out_weight / math.sqrt(self.out_weight.shape[1])).t() + self.out_bias
