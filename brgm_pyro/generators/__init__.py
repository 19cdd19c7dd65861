"""Prior generators: the interface, StyleGAN2, a linear test generator, and checkpoint loading."""

from .base import GeneratorBase, LatentStats, PriorGenerator
from .checkpoint_files import CheckpointNotFoundError
from .checkpoints import CheckpointError, UnsafeCheckpointError
from .linear import LinearGenerator
from .loading import load_generator, registered_generators
from .native_format import load_native, save_generator
from .nvidia_pickle import load_nvidia_pickle, read_network_pickle
from .rosinality import load_rosinality
from .stylegan2 import StyleGAN2Config, StyleGAN2Generator

__all__ = [
    "GeneratorBase", "LatentStats", "PriorGenerator", "LinearGenerator",
    "StyleGAN2Config", "StyleGAN2Generator",
    "CheckpointError", "UnsafeCheckpointError", "CheckpointNotFoundError", "load_generator", "registered_generators",
    "save_generator", "load_native", "load_nvidia_pickle", "read_network_pickle", "load_rosinality",
]
