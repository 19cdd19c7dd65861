"""Binary observation masks: loading and validation, and the seven standard masks of the paper's
in-painting evaluation (defined as fractions of the image, so they scale to any resolution)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# Hidden boxes (y0, y1, x0, x1) as fractions of the image side, one list per standard mask.
STANDARD_MASK_BOXES: tuple[tuple[str, tuple[tuple[float, float, float, float], ...]], ...] = (
    ("right half", ((0.0, 1.0, 0.5, 1.0),)),
    ("left half", ((0.0, 1.0, 0.0, 0.5),)),
    ("two eye boxes", ((0.34, 0.5, 0.2, 0.44), (0.34, 0.5, 0.56, 0.8))),
    ("vertical bar right of centre", ((0.0, 1.0, 0.56, 0.72),)),
    ("top-right quadrant", ((0.0, 0.5, 0.5, 1.0),)),
    ("mouth box", ((0.66, 0.84, 0.3, 0.7),)),
    ("bottom half", ((0.5, 1.0, 0.0, 1.0),)),
)
NUM_STANDARD_MASKS = len(STANDARD_MASK_BOXES)


def standard_mask(index: int, resolution: int) -> torch.Tensor:
    """Standard mask ``index % 7`` at ``resolution``: (1, R, R) float, 1 = observed, 0 = hidden.

    Applied cyclically over a test set: image n gets ``standard_mask(n, R)``.
    """
    if resolution < 4:
        raise ValueError(f"resolution must be at least 4, got {resolution}")
    _, boxes = STANDARD_MASK_BOXES[index % NUM_STANDARD_MASKS]
    mask = torch.ones(1, resolution, resolution)
    for y0, y1, x0, x1 in boxes:
        r = lambda f: int(round(f * resolution))  # noqa: E731 - fraction -> pixel index
        mask[:, r(y0):r(y1), r(x0):r(x1)] = 0.0
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
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(mask) as im:
                arr = np.asarray(im.convert("L"))
        except (OSError, UnidentifiedImageError) as exc:
            raise ValueError(f"cannot read mask image {mask}: {exc}") from exc
        values = set(np.unique(arr).tolist())
        if not values <= {0, 255}:
            raise ValueError(f"mask image {mask} is not binary: it has grey levels {sorted(values - {0, 255})[:5]}...; use 0 (hidden) and 255 (observed)")
        t = torch.from_numpy((arr == 255).astype(np.float32))
    else:
        t = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).detach().float()
        bad = ~((t == 0) | (t == 1))
        if bad.any():
            raise ValueError(f"mask must contain only 0 (hidden) and 1 (observed); found values such as {t[bad].flatten()[:3].tolist()}")
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3:
        raise ValueError(f"mask must have shape (H, W), (C, H, W) or (1, C, H, W), got {tuple(t.shape)}")
    return t
