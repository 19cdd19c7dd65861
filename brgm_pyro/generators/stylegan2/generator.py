"""The StyleGAN2 generator: mapping network + synthesis network, with its configuration."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from ...functional import channel_schedule
from ..base import GeneratorBase
from .layers import NOISE_MODES, NoiseMode
from .mapping import MappingNetwork
from .synthesis import SynthesisNetwork


@dataclass
class StyleGAN2Config:
    """Everything needed to rebuild a StyleGAN2 generator (saved with the project's checkpoints).

    Defaults are NVIDIA's config-f at the given resolution (channel_base 32768, 512 max
    channels, 8 mapping layers).  The BRGM authors' models used config-e (channel_base 16384).
    """

    img_resolution: int
    img_channels: int = 3
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float = 0.995
    channel_base: int = 32768
    channel_max: int = 512
    conv_clamp: float | None = None
    resample_filter: tuple[float, ...] = field(default=(1, 3, 3, 1))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["resample_filter"] = [float(v) for v in self.resample_filter]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StyleGAN2Config":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown StyleGAN2 config keys: {unknown}")
        d = dict(d)
        if "resample_filter" in d:
            d["resample_filter"] = tuple(d["resample_filter"])
        return cls(**d)


class StyleGAN2Generator(GeneratorBase):
    """StyleGAN2 generator (skip architecture) satisfying ``PriorGenerator``.

    ``generator.mapping(z)``: (B, z_dim) -> (B, num_ws, w_dim)
    ``generator.synthesis(ws)``: (B, num_ws, w_dim) -> (B, C, R, R) in about [-1, 1]
    Module and parameter names follow NVIDIA's stylegan2-ada-pytorch, so their ``G_ema``
    state dict loads strictly.
    """

    def __init__(self, config: StyleGAN2Config, noise_mode: NoiseMode = "const") -> None:
        super().__init__()
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        self.config = config
        self.z_dim = config.z_dim
        self.w_dim = config.w_dim
        self.img_resolution = config.img_resolution
        self.img_channels = config.img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=config.w_dim,
            img_resolution=config.img_resolution,
            img_channels=config.img_channels,
            channel_base=config.channel_base,
            channel_max=config.channel_max,
            conv_clamp=config.conv_clamp,
            resample_filter=config.resample_filter,
            noise_mode=noise_mode,
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=config.z_dim,
            w_dim=config.w_dim,
            num_ws=self.num_ws,
            num_layers=config.mapping_layers,
            lr_multiplier=config.mapping_lr_multiplier,
            w_avg_beta=config.w_avg_beta,
        )

    @property
    def noise_mode(self) -> NoiseMode:
        return self.synthesis.noise_mode

    @noise_mode.setter
    def noise_mode(self, mode: NoiseMode) -> None:
        if mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {mode!r}")
        self.synthesis.noise_mode = mode

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: NoiseMode | None = None,
    ) -> torch.Tensor:
        """z (B, z_dim) -> images (B, C, R, R)."""
        ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)


def stylegan2_state_shapes(config: StyleGAN2Config) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes ``StyleGAN2Generator(config)`` will have, computed without building it.

    Lets a loader compare a checkpoint's tensors with the architecture it declares before
    allocating anything (``tests/test_checkpoints.py`` checks it against real modules).
    """
    w, taps = config.w_dim, len(config.resample_filter)
    channels = channel_schedule(config.img_resolution, config.channel_base, config.channel_max)
    shapes: dict[str, tuple[int, ...]] = {}

    def layer(prefix: str, cin: int, cout: int, res: int) -> None:
        shapes.update({f"{prefix}.weight": (cout, cin, 3, 3), f"{prefix}.bias": (cout,), f"{prefix}.noise_strength": (),
                       f"{prefix}.resample_filter": (taps, taps), f"{prefix}.noise_const": (res, res),
                       f"{prefix}.affine.weight": (cin, w), f"{prefix}.affine.bias": (cin,)})

    previous = 0
    for res, cout in channels.items():
        block = f"synthesis.b{res}"
        if previous == 0:
            shapes[f"{block}.const"] = (cout, res, res)
        shapes[f"{block}.resample_filter"] = (taps, taps)
        if previous:
            layer(f"{block}.conv0", previous, cout, res)
        layer(f"{block}.conv1", cout, cout, res)
        shapes.update({f"{block}.torgb.weight": (config.img_channels, cout, 1, 1),
                       f"{block}.torgb.bias": (config.img_channels,),
                       f"{block}.torgb.affine.weight": (cout, w), f"{block}.torgb.affine.bias": (cout,)})
        previous = cout
    shapes["mapping.w_avg"] = (w,)
    features = [config.z_dim] + [w] * config.mapping_layers
    for i in range(config.mapping_layers):
        shapes[f"mapping.fc{i}.weight"] = (features[i + 1], features[i])
        shapes[f"mapping.fc{i}.bias"] = (features[i + 1],)
    return shapes
