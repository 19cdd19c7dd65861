"""Prior generators: the interface, StyleGAN2, a linear test generator, and checkpoint loading."""

from .base import GeneratorBase, LatentStats, PriorGenerator
from .linear import LinearGenerator
from .stylegan2 import StyleGAN2Config, StyleGAN2Generator

__all__ = [
    "GeneratorBase", "LatentStats", "PriorGenerator", "LinearGenerator",
    "StyleGAN2Config", "StyleGAN2Generator",
]
