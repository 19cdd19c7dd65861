"""A faithful pure-PyTorch StyleGAN2 generator (config-e / config-f, skip architecture)."""

from .generator import StyleGAN2Config, StyleGAN2Generator
from .layers import FullyConnectedLayer, SynthesisLayer, ToRGBLayer
from .mapping import MappingNetwork, normalize_2nd_moment
from .ops import bias_act, modulated_conv2d, setup_filter, upfirdn2d, upsample2d
from .synthesis import SynthesisBlock, SynthesisNetwork, channel_schedule

__all__ = [
    "StyleGAN2Config", "StyleGAN2Generator", "FullyConnectedLayer", "SynthesisLayer", "ToRGBLayer",
    "MappingNetwork", "normalize_2nd_moment", "bias_act", "modulated_conv2d", "setup_filter",
    "upfirdn2d", "upsample2d", "SynthesisBlock", "SynthesisNetwork", "channel_schedule",
]
