"""How images are prepared for a generator: the size, channels and transform it was trained with.

A generator declares in its metadata how its training images were made from the data set's
(key ``image_preparation``)::

    {"method": "pad", "from_size": [28, 28], "fill": -1.0}    # the bundled fashion-mnist-32

``method`` is "pad" (centred, with ``fill`` in [-1, 1]), "center-crop" or "resize" (Lanczos);
``from_size`` is the data set's [H, W].  ``prepare_image`` reads a user's image and applies that
transform when the image has the declared size, leaves an image of the generator's size as it
is, and refuses any other size with the fix, so that nothing is silently stretched (a 28x28
Fashion-MNIST image Lanczos-stretched to 32x32 reconstructs as another garment).  A generator
without a declaration gets the authors' preprocessing, a Lanczos resize, announced.  Every
change (padding, cropping, resizing, colour to grayscale) is returned as a short note that the
command line prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .corruptions import as_binary_mask
from .io import NonSquareImageError, read_pixels, resize_pixels

PREPARATION_METHODS = ("pad", "center-crop", "resize")
METADATA_KEY = "image_preparation"
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601, as PIL's "L"


@dataclass(frozen=True)
class ImagePreparation:
    """How a generator's training images were made from the data set's images (see the module)."""

    method: str
    from_size: tuple[int, int]
    fill: float = -1.0

    def __post_init__(self) -> None:
        if self.method not in PREPARATION_METHODS:
            raise ValueError(f"image_preparation method must be one of {', '.join(PREPARATION_METHODS)}, "
                             f"got {self.method!r}")
        size = self.from_size
        if (not isinstance(size, tuple) or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise ValueError(f"image_preparation from_size must be [H, W] of two positive integers, got {size!r}")
        fill = self.fill
        if isinstance(fill, bool) or not isinstance(fill, (int, float)) or not math.isfinite(fill) or abs(fill) > 1:
            raise ValueError(f"image_preparation fill must be a number in [-1, 1], got {fill!r}")

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> ImagePreparation | None:
        """The declaration in a generator's metadata, or None when it declares none."""
        entry = (metadata or {}).get(METADATA_KEY)
        if entry is None:
            return None
        if not isinstance(entry, Mapping) or set(entry) - {"method", "from_size", "fill"}:
            raise ValueError(f"the generator's metadata {METADATA_KEY} must be a dict with keys method, from_size "
                             f"and fill, got {entry!r}")
        size = entry.get("from_size")
        return cls(entry.get("method"), tuple(size) if isinstance(size, (list, tuple)) else size,
                   entry.get("fill", -1.0))

    def to_metadata(self) -> dict[str, Any]:
        """The plain-value dict stored under ``image_preparation``."""
        return {"method": self.method, "from_size": list(self.from_size), "fill": float(self.fill)}

    def describe(self) -> str:
        h, w = self.from_size
        if self.method == "pad":
            return f"prepared from {h}x{w} by padding with {_fill_name(self.fill)}"
        return f"prepared from {h}x{w} by {'centre cropping' if self.method == 'center-crop' else 'resizing'}"


FASHION_MNIST_PADDING = ImagePreparation("pad", (28, 28), -1.0)
"""The bundled generator's preparation: Fashion-MNIST's 28x28 images padded to 32x32 with black."""


@dataclass(frozen=True)
class PreparedImage:
    """An image ready for the model, (1, C, H, W) in [-1, 1] (a mask: (1, H, W) of 0 / 1), and
    what was done to it, one short phrase per step (empty when nothing was)."""

    tensor: torch.Tensor
    notes: tuple[str, ...] = ()

    def announcement(self, name: str) -> str | None:
        """The one line the command line prints, or None when the image was used as it is."""
        return f"{name}: " + "; ".join(self.notes) if self.notes else None


def _fill_name(fill: float) -> str:
    return {-1.0: "black (-1)", 1.0: "white (1)"}.get(float(fill), f"{fill:g}")


def _size(h: int, w: int) -> str:
    return f"{h}x{w}"


def _pad(arr: np.ndarray, height: int, width: int, value: float) -> np.ndarray:
    h, w = arr.shape[:2]
    top, left = (height - h) // 2, (width - w) // 2
    out = np.full((height, width, arr.shape[2]), value, dtype=arr.dtype)
    out[top:top + h, left:left + w] = arr
    return out


def _crop(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = arr.shape[:2]
    top, left = (h - height) // 2, (w - width) // 2
    return arr[top:top + height, left:left + width]


def _fit_size(arr: np.ndarray, target: tuple[int, int], preparation: ImagePreparation | None, what: str,
              fill01: float | None, allow_resize: bool, nearest: bool,
              expected: str = "this generator's images are") -> tuple[np.ndarray, str | None]:
    """``arr`` (H, W, C) brought to ``target`` by the declared preparation, with its note."""
    size = tuple(arr.shape[:2])
    if size == target:
        return arr, None
    th, tw = target
    if preparation is not None and size == preparation.from_size:
        if preparation.method == "pad" and size[0] <= th and size[1] <= tw:
            value = (preparation.fill + 1) / 2 if fill01 is None else fill01
            shown = _fill_name(preparation.fill) if fill01 is None else "1 (observed: the padding's value is known)"
            return _pad(arr, th, tw, value), f"padded {_size(*size)} -> {_size(th, tw)} with {shown}, " \
                                             "the generator's declared preparation"
        if preparation.method == "center-crop" and size[0] >= th and size[1] >= tw:
            return _crop(arr, th, tw), f"centre-cropped {_size(*size)} -> {_size(th, tw)}, " \
                                       "the generator's declared preparation"
        if preparation.method == "resize":
            how = "nearest" if nearest else "Lanczos"
            return _resize(arr, th, nearest), (f"resized {_size(*size)} -> {_size(th, tw)} ({how}), "
                                               "the generator's declared preparation")
    if preparation is None and allow_resize and th == tw and size[0] == size[1]:
        return _resize(arr, th, nearest), (f"resized {_size(*size)} -> {_size(th, tw)} "
                                           f"({'nearest' if nearest else 'Lanczos'}; the generator declares no "
                                           "image preparation)")
    accepted = [_size(th, tw)]
    if preparation is not None:
        accepted.append(_size(*preparation.from_size))
    declared = f" ({preparation.describe()})" if preparation is not None else ""
    raise ValueError(f"{what} is {_size(*size)} but {expected} {_size(th, tw)}{declared}; give a "
                     f"{' or '.join(accepted)} {what.split(' ')[0]} (nothing is stretched: resize it yourself "
                     "first if a stretched image is what you want)")


def _resize(arr: np.ndarray, resolution: int, nearest: bool) -> np.ndarray:
    if not nearest:
        return resize_pixels(arr, resolution)
    h, w = arr.shape[:2]
    rows = (np.arange(resolution) * h) // resolution
    cols = (np.arange(resolution) * w) // resolution
    return arr[rows][:, cols]


def _square(arr: np.ndarray, center_crop: bool, what: str) -> tuple[np.ndarray, str | None]:
    h, w = arr.shape[:2]
    if h == w:
        return arr, None
    if not center_crop:
        raise NonSquareImageError(w, h, what)
    s = min(h, w)
    return _crop(arr, s, s), f"cropped its central square {_size(h, w)} -> {_size(s, s)} (--center-crop)"


def prepare_pixels(pixels: np.ndarray, shape: tuple[int, int, int], preparation: ImagePreparation | None,
                   what: str = "image", center_crop: bool = False, allow_resize: bool = True,
                   expected: str = "this generator's images are") -> PreparedImage:
    """Pixels (H, W, C) in [0, 1] (``io.read_pixels``) as an image of ``shape`` (C, H, W).

    Non-square images: their central square with ``center_crop``, else ``NonSquareImageError``.
    Channels: RGB to grayscale by BT.601 luma, grayscale to RGB by repetition (each announced).
    Size: see the module; ``allow_resize=False`` (an observation) refuses every size but the declared
    one and ``shape``'s; ``expected`` words the size in that error.
    """
    c, h, w = shape
    arr, notes = pixels.astype(np.float32), []
    arr, note = _square(arr, center_crop, what) if (h == w) else (arr, None)
    notes += [note] if note else []
    if c == 1 and arr.shape[2] == 3:
        if not np.array_equal(arr, arr[..., :1].repeat(3, axis=2)):
            notes.append("converted colour (RGB) to grayscale (BT.601 luma)")
        arr = arr @ _LUMA[:, None]
    elif c == 3 and arr.shape[2] == 1:
        arr = arr.repeat(3, axis=2)
        notes.append("repeated its grayscale channel to RGB")
    arr, note = _fit_size(arr, (h, w), preparation, what, None, allow_resize, nearest=False, expected=expected)
    notes += [note] if note else []
    tensor = torch.from_numpy(np.ascontiguousarray(arr * 2 - 1, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
    return PreparedImage(tensor.contiguous(), tuple(notes))


def prepare_image(source: str | Path | np.ndarray, shape: tuple[int, int, int],
                  preparation: ImagePreparation | None, center_crop: bool = False,
                  allow_resize: bool = True) -> PreparedImage:
    """An image file (PNG / JPEG / .npy; the checks of ``io.read_pixels``) prepared for a generator
    of images ``shape`` (C, H, W) with the declared ``preparation`` (``prepare_pixels``)."""
    what = f"image {source}" if isinstance(source, (str, Path)) else "the image"
    return prepare_pixels(read_pixels(source), shape, preparation, what, center_crop, allow_resize)


def prepare_mask(source: str | Path | np.ndarray | torch.Tensor, resolution: int,
                 preparation: ImagePreparation | None) -> PreparedImage:
    """An in-painting mask (1 = observed) brought to ``resolution`` by the same rule as the images:
    the declared preparation applied (padding marks the padded border observed: its value is the
    known fill), the generator's size as it is, any other size refused (nearest-neighbour resize
    for a generator without a declaration).  Returns (1, R, R) of 0 / 1.  The values are checked
    by ``corruptions.as_binary_mask`` (a mask that observes nothing: by ``Inpainting``)."""
    what = f"mask image {source}" if isinstance(source, (str, Path)) else "the mask"
    mask = as_binary_mask(source)[:1]  # (1, H, W)
    arr = mask.permute(1, 2, 0).numpy()
    arr, note = _fit_size(arr, (resolution, resolution), preparation, what, 1.0, True, nearest=True)
    tensor = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()
    return PreparedImage(tensor, (note,) if note else ())
