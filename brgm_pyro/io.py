"""Images in and out: files and arrays <-> tensors in [-1, 1], and image grids.

Loading follows the authors' preprocessing: optional centre crop to a square, then a Lanczos
resize to the requested resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


def _to_pil(source: str | Path | np.ndarray | Image.Image) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"image file {path} does not exist")
        if path.suffix.lower() == ".npy":
            return _to_pil(np.load(path, allow_pickle=False))
        try:
            with Image.open(path) as im:
                im.load()
                return im.copy()
        except (OSError, UnidentifiedImageError) as exc:
            raise ValueError(f"cannot read image {path}: {exc}") from exc
    arr = np.asarray(source)
    if arr.ndim == 3 and arr.shape[2] not in (1, 3):
        raise ValueError(f"image arrays must be (H, W), (H, W, 1) or (H, W, 3), got shape {arr.shape}")
    if arr.ndim not in (2, 3):
        raise ValueError(f"image arrays must be (H, W), (H, W, 1) or (H, W, 3), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        data = arr
    elif np.issubdtype(arr.dtype, np.floating):
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError(f"float image arrays must lie in [0, 1], got [{arr.min():.3g}, {arr.max():.3g}]")
        data = np.round(arr * 255).astype(np.uint8)
    else:
        raise ValueError(f"image arrays must be uint8 (0-255) or float (0-1), got dtype {arr.dtype}")
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    return Image.fromarray(data)


def load_image(
    source: str | Path | np.ndarray | Image.Image,
    resolution: int | None = None,
    channels: int = 3,
    center_crop: bool = True,
) -> torch.Tensor:
    """An image file (PNG/JPEG/.npy), array or PIL image as a tensor (1, C, R, R) in [-1, 1].

    channels: 1 (grayscale, BT.601 luma) or 3 (RGB).  Non-square images are cropped to their
    central square (as the authors do), or raise with ``center_crop=False``; ``resolution``
    resizes with a Lanczos filter (None keeps the size).  Arrays: uint8 in [0, 255] or float in
    [0, 1], shaped (H, W), (H, W, 1) or (H, W, 3).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if resolution is not None and (not isinstance(resolution, int) or resolution < 1):
        raise ValueError(f"resolution must be a positive integer or None, got {resolution!r}")
    im = _to_pil(source)
    if im.mode not in ("L", "RGB", "RGBA", "P", "I;16", "I", "LA"):
        raise ValueError(f"unsupported image mode {im.mode}")
    w, h = im.size
    if w != h:
        if not center_crop:
            raise ValueError(f"image is not square ({w}x{h}); pass center_crop=True to crop its central square")
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s))
    im = im.convert("L" if channels == 1 else "RGB")
    if resolution is not None and im.size != (resolution, resolution):
        im = im.resize((resolution, resolution), Image.LANCZOS)
    arr = np.asarray(im, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(arr / 127.5 - 1.0).permute(2, 0, 1).unsqueeze(0).contiguous()


def load_images(
    sources: Sequence[str | Path | np.ndarray | Image.Image],
    resolution: int,
    channels: int = 3,
    center_crop: bool = True,
) -> torch.Tensor:
    """Several images (e.g. a test set) as one batch (N, C, R, R) in [-1, 1]; see ``load_image``."""
    if len(sources) == 0:
        raise ValueError("load_images needs at least one image")
    return torch.cat([load_image(s, resolution, channels, center_crop) for s in sources])


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (1, C, H, W) in [-1, 1] -> (H, W) or (H, W, 3) uint8 (values clamped)."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {image.shape[0]}: save a grid instead")
        image = image[0]
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected an image (C, H, W) with C in (1, 3), got shape {tuple(image.shape)}")
    arr = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    arr = arr.permute(1, 2, 0).numpy()
    return arr[..., 0] if arr.shape[2] == 1 else arr


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Write (C, H, W) or (1, C, H, W) in [-1, 1] as an 8-bit image (format from the suffix:
    PNG, JPEG, ... or .npy for a uint8 array (H, W) / (H, W, 3) that ``load_image`` reads back)."""
    path = Path(path)
    data = to_uint8(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npy":
        np.save(path, data, allow_pickle=False)
        return path
    try:
        Image.fromarray(data).save(path)
    except (ValueError, KeyError) as exc:  # PIL: unknown extension
        raise ValueError(f"cannot save an image as {path}: unknown image format {path.suffix!r}") from exc
    return path


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile (N, C, H, W) images into one (C, H', W') image, ``nrow`` per row, separated by ``padding``."""
    if images.ndim != 4:
        raise ValueError(f"make_grid expects (N, C, H, W), got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("make_grid needs at least one image")
    if nrow < 1 or padding < 0:
        raise ValueError(f"nrow must be >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    n, c, h, w = images.shape
    cols = min(nrow, n)
    rows = (n + cols - 1) // cols
    grid = torch.full((c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value,
                      dtype=images.dtype)
    for i in range(n):
        r, q = divmod(i, cols)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, y:y + h, x:x + w] = images[i].detach().cpu()
    return grid


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, padding: int = 2,
              pad_value: float = 1.0) -> Path:
    """``make_grid`` of (N, C, H, W) images in [-1, 1], written as one 8-bit image file."""
    return save_image(make_grid(images, nrow=nrow, padding=padding, pad_value=pad_value), path)


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure (creating the folder), close it, and return the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
