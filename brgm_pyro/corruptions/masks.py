"""Binary observation masks: loading and validation, and the seven standard masks of the paper's
in-painting evaluation (the authors' released boxes, scaled to any resolution)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..io import read_pixels  # size limit, bit depth and mode checks of load_image

# Hidden boxes (y0, y1, x0, x1), rows y0:y1 and columns x0:x1 with the end excluded, of the seven
# masks the BRGM authors released, in pixels of a 1024x1024 image.  Other resolutions scale every
# edge by R / 1024 and round half up (at 256x256 this reproduces the released 256 files to within
# one pixel at an edge).
RELEASED_MASK_RESOLUTION = 1024
STANDARD_MASK_BOXES: tuple[tuple[str, tuple[tuple[int, int, int, int], ...]], ...] = (
    ("right half", ((0, 1024, 510, 1024),)),
    ("left half", ((0, 1024, 0, 510),)),
    ("two eye boxes", ((411, 585, 276, 454), (411, 585, 564, 726))),
    ("vertical bar right of centre", ((185, 840, 515, 747),)),
    ("top-right quadrant", ((0, 513, 510, 1024),)),
    ("mouth box", ((616, 868, 286, 751),)),
    ("bottom half", ((500, 1024, 0, 1024),)),
)
NUM_STANDARD_MASKS = len(STANDARD_MASK_BOXES)


def scaled_box(box: tuple[int, int, int, int], resolution: int) -> tuple[int, int, int, int]:
    """A released 1024x1024 box's edges at ``resolution``: round(edge * R / 1024), halves up."""
    return tuple(math.floor(edge * resolution / RELEASED_MASK_RESOLUTION + 0.5) for edge in box)  # type: ignore[return-value]


def standard_mask(index: int, resolution: int) -> torch.Tensor:
    """Standard mask ``index % 7`` at ``resolution``: (1, R, R) float, 1 = observed, 0 = hidden.

    The authors' released in-painting masks (``STANDARD_MASK_BOXES``), scaled from 1024x1024.
    Applied cyclically over a test set: image n gets ``standard_mask(n, R)``.
    """
    if resolution < 4:
        raise ValueError(f"resolution must be at least 4, got {resolution}")
    _, boxes = STANDARD_MASK_BOXES[index % NUM_STANDARD_MASKS]
    mask = torch.ones(1, resolution, resolution)
    for box in boxes:
        y0, y1, x0, x1 = scaled_box(box, resolution)
        mask[:, y0:y1, x0:x1] = 0.0
    return mask


def standard_masks(resolution: int) -> torch.Tensor:
    """All seven standard masks: (7, 1, R, R), 1 = observed."""
    return torch.stack([standard_mask(i, resolution) for i in range(NUM_STANDARD_MASKS)])


def standard_mask_names() -> list[str]:
    return [name for name, _ in STANDARD_MASK_BOXES]


def as_binary_mask(mask: torch.Tensor | np.ndarray | str | Path) -> torch.Tensor:
    """A mask from a tensor, array or image file as a float tensor (1 or C, H, W) of 0s and 1s.

    Image files: white (255) = observed, black (0) = hidden; any other grey level is an error.
    """
    if isinstance(mask, (str, Path)):
        pixels = read_pixels(mask)  # (H, W, C) in [0, 1]
        if pixels.shape[2] == 3 and not (pixels == pixels[..., :1]).all():
            raise ValueError(f"mask image {mask} has coloured pixels; use black (hidden) and white (observed)")
        pixels = pixels[..., 0]
        grey = np.unique(pixels[(pixels != 0) & (pixels != 1)])
        if grey.size:
            raise ValueError(f"mask image {mask} is not binary: it has grey levels (0-1 scale) "
                             f"{[round(float(v), 4) for v in grey[:5]]}...; use black (hidden) and white (observed)")
        t = torch.from_numpy((pixels == 1).astype(np.float32))
    else:
        t = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).detach().float()
        bad = ~((t == 0) | (t == 1))
        if bad.any():
            raise ValueError("mask must contain only 0 (hidden) and 1 (observed); "
                             f"found values such as {t[bad].flatten()[:3].tolist()}")
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3:
        raise ValueError(f"mask must have shape (H, W), (C, H, W) or (1, C, H, W), got {tuple(t.shape)}")
    return t
