"""Images in and out: files and arrays <-> tensors in [-1, 1], and image grids.

Loading follows the authors' preprocessing: optional centre crop to a square, then a Lanczos
resize to the requested resolution.  Files are scaled by their real bit depth: 8-bit (and 1-bit
and palette) images by 255, 16-bit grayscale PNGs (Pillow modes ``I;16`` / ``I``) by 65535.
An alpha channel is dropped only when every pixel is opaque; an image with transparent pixels is
refused (what lies behind them is unknown).  Files over ``MAX_IMAGE_PIXELS`` pixels are refused
before they are decoded (decompression bombs), and ``.npy`` arrays with NaN or inf are refused.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .functional import PIXEL_SCALE_255

MAX_IMAGE_PIXELS = 8192 * 8192
"""The largest image (width x height, about 67 megapixels) that ``load_image`` decodes."""

_ALPHA_MODES = {"LA": "L", "La": "L", "RGBA": "RGB", "RGBa": "RGB", "PA": "RGB"}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_COLOUR_MODES = ("CMYK", "YCbCr", "LAB", "HSV", "RGBX")


class NonSquareImageError(ValueError):
    """A non-square image given with ``center_crop=False``."""

    def __init__(self, width: int, height: int, name: str = "image") -> None:
        self.width, self.height, self.name = width, height, name
        super().__init__(f"{name} is not square ({width}x{height}); pass center_crop=True to crop its central square")


def _too_large(name: str, detail: str) -> ValueError:
    return ValueError(f"image {name} is too large ({detail}): images of at most {MAX_IMAGE_PIXELS} pixels "
                      "(8192x8192) are read, to guard against decompression bombs; resize it first")


def check_image_file(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file from its header, without decoding it; raise a
    ``ValueError`` for unreadable files and images over ``MAX_IMAGE_PIXELS``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"image path {path} is not a regular file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
        try:
            with Image.open(path) as im:
                w, h = im.size
        except Image.DecompressionBombError as exc:
            raise _too_large(str(path), f"Pillow: {exc}") from exc
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise ValueError(f"cannot read image {path}: {exc}") from exc
    if w * h > MAX_IMAGE_PIXELS:
        raise _too_large(str(path), f"{w * h} pixels, {w}x{h}")
    return w, h


def check_image(path: str | Path) -> None:
    """Read and check an image file (.npy too) as ``load_image`` would -- size limit, mode, bit
    depth, transparency, non-finite values -- without building a tensor; raise on bad input."""
    path = Path(path)
    im = _read(path, str(path))
    if isinstance(im, Image.Image):
        _normalise_mode(im, str(path))


def _open_file(path: Path) -> Image.Image:
    check_image_file(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                frames = getattr(im, "n_frames", 1)
                im.load()
                image = im.copy()
        except Image.DecompressionBombError as exc:
            raise _too_large(str(path), f"Pillow: {exc}") from exc
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise ValueError(f"cannot read image {path}: {exc}") from exc
    if frames > 1:  # APNG, animated GIF / WebP, multi-page TIFF
        warnings.warn(f"image {path} has {frames} frames (an animation or a multi-page file); only the first "
                      "frame is used", UserWarning, stacklevel=3)
    return image


_NPY_DTYPES = {("u", 1), ("u", 2), ("f", 2), ("f", 4), ("f", 8)}


def _load_npy(path: Path) -> np.ndarray:
    """An image array from a ``.npy`` file; its header's full shape and dtype are checked before
    anything is allocated (at most ``MAX_IMAGE_PIXELS`` x 3 channels x 8 bytes)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f".npy format version {version} is not supported for images (1.0 and 2.0 are)")
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read image array {path}: {exc}") from exc
    if dtype.hasobject:
        raise ValueError(f"cannot read image array {path}: it holds Python objects (pickles are never loaded)")
    if len(shape) not in (2, 3) or len(shape) == 3 and shape[2] not in (1, 3):
        raise ValueError(f"image arrays must be (H, W), (H, W, 1) or (H, W, 3), got shape {shape} ({path})")
    if shape[0] * shape[1] > MAX_IMAGE_PIXELS:
        raise _too_large(str(path), f"{shape[0] * shape[1]} pixels, shape {shape}")
    if (dtype.kind, dtype.itemsize) not in _NPY_DTYPES:
        raise ValueError(f"image arrays must be uint8 (0-255), uint16 (0-65535) or float (0-1), got dtype "
                         f"{dtype} ({path})")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if arr.shape != shape or arr.dtype != dtype:  # the file changed between the two reads
            raise ValueError(f"the header changed while reading (shape {arr.shape})")
        return np.array(arr)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read image array {path}: {exc}") from exc


def _read(source: str | Path | np.ndarray | Image.Image, name: str) -> Image.Image | np.ndarray:
    """An 8-bit PIL image (modes 1, L, P, RGB, ... as stored) or a float32 array (H, W, C) in [0, 1]."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"image file {path} does not exist")
        if not path.is_file():
            raise ValueError(f"image path {path} is not a regular file")
        if path.suffix.lower() == ".npy":
            return _array_image(_load_npy(path), str(path))
        return _open_file(path)
    return _array_image(np.asarray(source), name)


def _array_image(arr: np.ndarray, name: str) -> Image.Image | np.ndarray:
    if arr.ndim not in (2, 3) or arr.ndim == 3 and arr.shape[2] not in (1, 3):
        raise ValueError(f"image arrays must be (H, W), (H, W, 1) or (H, W, 3), got shape {arr.shape} ({name})")
    if arr.dtype == np.uint16:
        data = arr.astype(np.float32) / 65535
        return data[..., None] if data.ndim == 2 else data
    if arr.dtype == np.uint8:
        data = arr
    elif np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all():
            raise ValueError(f"{name} has {int((~finite).sum())} non-finite values (NaN or inf) of {arr.size}; "
                             "image arrays must be finite")
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError(f"float image arrays must lie in [0, 1], got [{arr.min():.3g}, {arr.max():.3g}] ({name})")
        data = np.round(arr * 255).astype(np.uint8)
    else:
        raise ValueError(f"image arrays must be uint8 (0-255), uint16 (0-65535) or float (0-1), got dtype "
                         f"{arr.dtype} ({name})")
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    return Image.fromarray(data)


def _normalise_mode(im: Image.Image, name: str) -> Image.Image | np.ndarray:
    """8-bit modes stay PIL images (1, L, RGB); 16-bit grayscale becomes a float array in [0, 1];
    palette, alpha and other colour modes are converted (alpha only when fully opaque)."""
    mode = im.mode
    if mode in ("1", "L", "RGB"):
        return im
    if mode == "P":
        has_alpha = "transparency" in im.info or im.palette is not None and im.palette.mode == "RGBA"
        im, mode = (im.convert("RGBA"), "RGBA") if has_alpha else (im.convert("RGB"), "RGB")
        if mode == "RGB":
            return im
    if mode in _ALPHA_MODES:
        alpha = np.asarray(im.getchannel("A"))
        transparent = int((alpha < 255).sum())
        if transparent:
            raise ValueError(f"{name} has {transparent} transparent pixels (alpha < 255) of {alpha.size}; what lies "
                             "behind them is unknown, so brgm does not guess: flatten the image onto a background "
                             "first, or mark the region as unobserved with an in-painting mask")
        return im.convert(_ALPHA_MODES[mode])  # fully opaque: dropping alpha loses nothing
    if mode in _SIXTEEN_BIT_MODES:
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(f"{name} (mode {mode}) has values in [{arr.min()}, {arr.max()}], outside the 16-bit "
                             "range 0..65535")
        return (arr.astype(np.float32) / 65535)[..., None]
    if mode in _COLOUR_MODES:
        return im.convert("RGB")
    raise ValueError(f"{name} has unsupported image mode {mode}; use 8-bit or 16-bit grayscale, RGB, palette or "
                     "opaque RGBA images, or a uint8 / uint16 / float [0, 1] .npy array")


def read_pixels(source: str | Path | np.ndarray | Image.Image) -> np.ndarray:
    """The pixels of an image file, array or PIL image as stored: float32 (H, W, C) in [0, 1], C = 1
    or 3, scaled by the real bit depth (no crop, no resize); the checks of ``load_image`` apply."""
    name = str(source) if isinstance(source, (str, Path)) else "the image"
    im = _read(source, name)
    if isinstance(im, Image.Image):
        im = _normalise_mode(im, name)
    if isinstance(im, Image.Image):
        im = im.convert("L" if im.mode in ("1", "L") else "RGB")
        arr = np.asarray(im, dtype=np.float32) / 255
        return arr[..., None] if arr.ndim == 2 else arr
    return im.astype(np.float32)


def resize_pixels(arr: np.ndarray, resolution: int) -> np.ndarray:
    """Lanczos resize of each band of a float (H, W, C) array, clipped to [0, 1] (as 8-bit resizing clips)."""
    bands = [np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., c]), mode="F")
                        .resize((resolution, resolution), Image.LANCZOS)) for c in range(arr.shape[2])]
    return np.clip(np.stack(bands, axis=-1), 0.0, 1.0)


def load_image(
    source: str | Path | np.ndarray | Image.Image,
    resolution: int | None = None,
    channels: int = 3,
    center_crop: bool = True,
) -> torch.Tensor:
    """An image file (PNG/JPEG/.npy), array or PIL image as a tensor (1, C, R, R) in [-1, 1].

    channels: 1 (grayscale, BT.601 luma) or 3 (RGB).  Non-square images are cropped to their
    central square (as the authors do), or raise ``NonSquareImageError`` with
    ``center_crop=False``; ``resolution`` resizes with a Lanczos filter (None keeps the size).
    Files: 1-, 8- and 16-bit grayscale, palette, RGB, opaque RGBA / LA (transparent pixels are
    an error), at most ``MAX_IMAGE_PIXELS`` pixels.  Arrays: uint8 in [0, 255], uint16 in
    [0, 65535] or finite float in [0, 1] (rounded to 8 bits), shaped (H, W), (H, W, 1) or (H, W, 3).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if resolution is not None and (not isinstance(resolution, int) or resolution < 1):
        raise ValueError(f"resolution must be a positive integer or None, got {resolution!r}")
    name = str(source) if isinstance(source, (str, Path)) else "the image"
    im = _read(source, name)
    if isinstance(im, Image.Image):
        im = _normalise_mode(im, name)
    if isinstance(im, np.ndarray):
        h, w = im.shape[:2]
    else:
        w, h = im.size
    if w != h:
        if not center_crop:
            raise NonSquareImageError(w, h, "image" if name == "the image" else f"image {name}")
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im[top:top + s, left:left + s] if isinstance(im, np.ndarray) else im.crop((left, top, left + s, top + s))
    if isinstance(im, np.ndarray):  # high bit depth: float path
        if channels == 1 and im.shape[2] == 3:
            im = im @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]  # BT.601 luma, as PIL's "L"
        elif channels == 3 and im.shape[2] == 1:
            im = np.repeat(im, 3, axis=2)
        if resolution is not None and im.shape[:2] != (resolution, resolution):
            im = resize_pixels(im, resolution)
        arr = im.astype(np.float32) * 2 - 1
    else:
        im = im.convert("L" if channels == 1 else "RGB")
        if resolution is not None and im.size != (resolution, resolution):
            im = im.resize((resolution, resolution), Image.LANCZOS)
        arr = np.asarray(im, dtype=np.float32) / PIXEL_SCALE_255 - 1.0
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).unsqueeze(0).contiguous()


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
    arr = ((image.detach().float().cpu().clamp(-1, 1) + 1) * PIXEL_SCALE_255).round().to(torch.uint8)
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
