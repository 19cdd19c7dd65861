"""Forward corruption operators f (the known degradation of the observed image)."""

from __future__ import annotations

from typing import Any

from .base import Corruption
from .blind import BLIND_CHOICES, make_blind
from .blur import Blur, GaussianBlur
from .compose import Compose
from .compressed_sensing import CompressedSensing, gaussian_measurement_matrix
from .inpainting import Inpainting
from .intensity import Intensity
from .latent import LatentParameter
from .masks import NUM_STANDARD_MASKS, as_binary_mask, standard_mask, standard_mask_names, standard_masks
from .shift import Shift, fourier_shift
from .simple import Denoising, Grayscale
from .super_resolution import SR_KERNELS, SuperResolution

TASKS = ("super-resolution", "inpainting", "denoising", "blur", "grayscale", "compressed-sensing")


def make_corruption(task: str, **kwargs: Any) -> Corruption:
    """Build the operator of a task by name.

    super-resolution: factor, kernel, sigma; inpainting: mask; blur: sigma (Gaussian) or kernel;
    compressed-sensing: num_measurements, seed, image_shape; denoising / grayscale: none.
    """
    if task == "super-resolution":
        return SuperResolution(**kwargs)
    if task == "inpainting":
        return Inpainting(**kwargs)
    if task == "denoising":
        return Denoising(**kwargs)
    if task == "grayscale":
        return Grayscale(**kwargs)
    if task == "blur":
        if "kernel" in kwargs:
            return Blur(**kwargs)
        return Blur.gaussian(**kwargs)
    if task == "compressed-sensing":
        return CompressedSensing(**kwargs)
    raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")


__all__ = [
    "Corruption", "Blur", "Compose", "CompressedSensing", "gaussian_measurement_matrix", "Inpainting", "Denoising",
    "Grayscale",
    "SuperResolution", "SR_KERNELS", "NUM_STANDARD_MASKS", "as_binary_mask", "standard_mask",
    "standard_mask_names", "standard_masks", "make_corruption", "TASKS",
    "LatentParameter", "GaussianBlur", "Shift", "fourier_shift", "Intensity", "BLIND_CHOICES", "make_blind",
]
