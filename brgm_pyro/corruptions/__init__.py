"""Forward corruption operators f (the known degradation of the observed image)."""

from __future__ import annotations

from .base import Corruption
from .blind import BLIND_CHOICES, make_blind
from .blur import Blur, GaussianBlur
from .compose import Compose
from .compressed_sensing import CompressedSensing, gaussian_measurement_matrix
from .factory import TASKS, make_corruption
from .inpainting import Inpainting
from .intensity import Intensity
from .latent import LatentParameter
from .masks import NUM_STANDARD_MASKS, as_binary_mask, standard_mask, standard_mask_names, standard_masks
from .setting import setting_name
from .shift import Shift, fourier_shift
from .simple import Denoising, Grayscale
from .super_resolution import SR_KERNELS, SuperResolution

__all__ = [
    "Corruption", "Blur", "Compose", "CompressedSensing", "gaussian_measurement_matrix", "Inpainting", "Denoising",
    "Grayscale",
    "SuperResolution", "SR_KERNELS", "NUM_STANDARD_MASKS", "as_binary_mask", "standard_mask",
    "standard_mask_names", "standard_masks", "make_corruption", "TASKS",
    "LatentParameter", "GaussianBlur", "Shift", "fourier_shift", "Intensity", "BLIND_CHOICES", "make_blind",
    "setting_name",
]
