"""Training data: IDX files (Fashion-MNIST / MNIST format) and folders of images.

Images are returned as float tensors in [-1, 1], shape (N, C, R, R).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from ..assets import FASHION_MNIST_DIR
from ..functional import PIXEL_SCALE_255
from ..io import load_image

FASHION_MNIST_INSTALL_HINT = (
    "Fashion-MNIST is packaged by Debian: run `apt-get install -y dataset-fashion-mnist` "
    f"(it installs the IDX files in {FASHION_MNIST_DIR}/), or pass the folder that holds "
    "train-images-idx3-ubyte[.gz] and friends."
)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a NumPy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ValueError(f"cannot read IDX file {path}: {exc}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: header says shape {shape} ({expected} bytes), "
            f"found {len(data) - header} bytes of data"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _find_idx(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{stem}[.gz] not found in {root}. {FASHION_MNIST_INSTALL_HINT}")


def load_fashion_mnist(
    split: str = "train", root: str | Path = FASHION_MNIST_DIR, resolution: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST images (N, 1, R, R) in [-1, 1] and labels (N,).

    The 28x28 images are zero-padded (black, i.e. -1) to ``resolution`` (default 32).
    ``split`` is "train" (60,000 images) or "test" (10,000 images).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Fashion-MNIST folder {root} does not exist. {FASHION_MNIST_INSTALL_HINT}")
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise ValueError(f"unexpected IDX shapes: images {images.shape}, labels {labels.shape}")
    x = torch.from_numpy(images.astype(np.float32) / PIXEL_SCALE_255 - 1.0).unsqueeze(1)
    pad = resolution - x.shape[-1]
    if pad < 0 or pad % 2:
        raise ValueError(f"cannot pad {x.shape[-1]}x{x.shape[-1]} images to {resolution}x{resolution}")
    if pad:
        x = torch.nn.functional.pad(x, [pad // 2] * 4, value=-1.0)
    return x, torch.from_numpy(labels.astype(np.int64))


def load_image_folder(root: str | Path, resolution: int, channels: int) -> torch.Tensor:
    """All PNG/JPEG images of a folder as (N, C, R, R) in [-1, 1] (centre crop + Lanczos resize)."""
    root = Path(root)
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise FileNotFoundError(f"no .png/.jpg images found in {root}")
    return torch.cat([load_image(p, resolution=resolution, channels=channels) for p in files])


def load_training_images(data: str | Path, resolution: int, channels: int) -> torch.Tensor:
    """Training images from an IDX folder (Fashion-MNIST layout) or a folder of image files."""
    root = Path(data)
    if any(root.glob("train-images-idx3-ubyte*")):
        if channels != 1:
            raise ValueError(f"IDX data is grayscale: use channels=1, got {channels}")
        return load_fashion_mnist("train", root, resolution)[0]
    if not root.is_dir():
        raise FileNotFoundError(f"training data folder {root} does not exist. {FASHION_MNIST_INSTALL_HINT}")
    return load_image_folder(root, resolution, channels)


def select_test_images(
    per_class: int = 10, root: str | Path = FASHION_MNIST_DIR, resolution: int = 32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``per_class`` images of each class of the Fashion-MNIST *test* split.

    Returns images (10*per_class, 1, R, R) in [-1, 1] ordered by class, labels and their
    indices in the test split.  Training never sees the test split.
    """
    x, y = load_fashion_mnist("test", root, resolution)
    idx = torch.cat([torch.nonzero(y == c).flatten()[:per_class] for c in range(10)])
    return x[idx], y[idx], idx
