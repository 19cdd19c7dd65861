"""The name of a corruption's measured setting: the key under which a generator's metadata records
what was tuned or fitted for it (``recommended_configs``, ``interval_scales``, ``interval_factors``)."""

from __future__ import annotations

import torch

from .base import Corruption
from .inpainting import Inpainting
from .masks import NUM_STANDARD_MASKS, standard_mask
from .super_resolution import SuperResolution


def setting_name(corruption: Corruption) -> str | None:
    """"super-resolution-x<factor>-<kernel>" for super-resolution with a named kernel,
    "inpainting-mask<id>" for in-painting whose mask *is* standard mask ``id`` at its resolution
    (compared pixel by pixel, so a file that holds a standard mask counts as that mask); None for
    anything else (a custom kernel or mask, other tasks, compositions), which has no measured setting."""
    if type(corruption) is SuperResolution:
        return None if corruption.kernel_name == "custom" else f"super-resolution-x{corruption.factor}-" \
                                                               f"{corruption.kernel_name}"
    if type(corruption) is Inpainting:
        mask = corruption.mask  # (1 or C, H, W)
        h, w = mask.shape[-2:]
        if h != w or h < 4:
            return None
        for index in range(NUM_STANDARD_MASKS):
            if torch.equal(mask, standard_mask(index, h).to(mask).expand_as(mask)):
                return f"inpainting-mask{index}"
    return None
