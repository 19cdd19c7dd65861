"""Super-resolution: blur with a kernel k and keep every ``factor``-th pixel, I = (x * k) down_s (Sec. 2.2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..choices import SR_KERNELS
from ..functional import gaussian_kernel_1d
from .base import Corruption
from .blur import separable_conv
from .latent import LatentParameter



class SuperResolution(Corruption):
    """Down-sampling by an integer ``factor``: (B, C, H, W) -> (B, C, H/factor, W/factor).

    kernel:
      - ``"bicubic"`` (default): bicubic interpolation without antialiasing (the authors' PyTorch release);
      - ``"bicubic-antialias"``: bicubic with antialiasing (PIL-like);
      - ``"box"``: mean over factor x factor blocks (the authors' TensorFlow release);
      - ``"gaussian"``: Gaussian blur of std ``sigma`` (default factor / 2) centred on each block, then sampling;
        ``sigma`` may be a ``LatentParameter`` (unknown kernel width, site ``"corruption.sr_kernel_sigma"``,
        kernel support from the prior's 99% quantile);
      - a 2-D tensor (K, K) with K >= factor: any blur kernel, applied centred on each block (replicate padding).
    """

    def __init__(self, factor: int, kernel: str | torch.Tensor = "bicubic",
                 sigma: float | LatentParameter | None = None) -> None:
        super().__init__()
        if not isinstance(factor, int) or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor!r}")
        self.factor = factor
        self.kernel_name = kernel if isinstance(kernel, str) else "custom"
        if isinstance(kernel, str) and kernel not in SR_KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; expected one of {SR_KERNELS} or a 2-D tensor")
        weights = None
        self.latent_sigma = isinstance(sigma, LatentParameter)
        if isinstance(sigma, LatentParameter):
            if kernel != "gaussian":
                raise ValueError("a latent sigma needs kernel='gaussian'")
            self.declare_parameter("sigma", sigma, site="sr_kernel_sigma")
            self.sigma_prior = sigma
            size = factor + 2 * math.ceil(2 * sigma.quantile(0.99))
            k1 = gaussian_kernel_1d(sigma.initial_value().double(), size).float()
            weights = torch.outer(k1, k1)  # at the starting sigma: fixes the support size
        elif kernel == "gaussian":
            sigma = factor / 2 if sigma is None else sigma
            if sigma <= 0:
                raise ValueError(f"sigma must be positive, got {sigma}")
            self.sigma = float(sigma)
            k1 = gaussian_kernel_1d(self.sigma, factor + 2 * math.ceil(2 * self.sigma)).float()
            weights = torch.outer(k1, k1)
        elif isinstance(kernel, torch.Tensor):
            if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
                raise ValueError(f"a custom kernel must be a square 2-D tensor, got shape {tuple(kernel.shape)}")
            if kernel.shape[0] < factor:
                raise ValueError(f"a custom kernel must be at least factor x factor ({factor}), "
                                 f"got {tuple(kernel.shape)}")
            weights = kernel.detach().float()
        self.register_buffer("weights", weights if weights is not None else torch.empty(0))

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = input_shape
        if h % self.factor or w % self.factor or h < self.factor:
            raise ValueError(
                f"super-resolution factor {self.factor} does not divide the image size {h}x{w}"
            )
        return (c, h // self.factor, w // self.factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = self.check_input(x)
        size = (h // self.factor, w // self.factor)
        if self.factor == 1:
            return x
        if self.kernel_name == "box":
            return F.avg_pool2d(x, self.factor)
        if self.kernel_name in ("bicubic", "bicubic-antialias"):
            return F.interpolate(
                x, size=size, mode="bicubic", align_corners=False,
                antialias=self.kernel_name == "bicubic-antialias",
            )
        k = self.weights.to(x.dtype)
        pad = k.shape[-1] - self.factor
        if self.latent_sigma:
            x = F.pad(x, [pad // 2, pad - pad // 2, pad // 2, pad - pad // 2], mode="replicate")
            kernels = gaussian_kernel_1d(self.parameter_batch("sigma", x), k.shape[-1])
            return separable_conv(x, kernels, stride=self.factor)
        x = F.pad(x, [pad // 2, pad - pad // 2, pad // 2, pad - pad // 2], mode="replicate")
        kernel = k[None, None].expand(c, 1, *k.shape)
        return F.conv2d(x, kernel, stride=self.factor, groups=c)

    def describe(self) -> str:
        extra = f", sigma={self.sigma:g}" if self.kernel_name == "gaussian" and not self.latent_sigma else ""
        if self.latent_sigma:
            extra = f", sigma {self.sigma_prior.describe()}"
        return f"super-resolution x{self.factor} ({self.kernel_name} kernel{extra})"
