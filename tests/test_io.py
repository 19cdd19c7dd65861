"""Image loading and saving."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from brgm_pyro.io import load_image, make_grid, save_image, to_uint8


def test_png_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    t = load_image(tmp_path / "a.png", channels=3)
    assert t.shape == (1, 3, 16, 16) and t.min() >= -1 and t.max() <= 1
    save_image(t, tmp_path / "b.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png")), rgb)


def test_resize_crop_and_channels(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, 5:25] = 200
    Image.fromarray(rgb).save(tmp_path / "wide.jpg")
    with pytest.raises(ValueError, match=r"not square \(30x20\); pass center_crop=True"):
        load_image(tmp_path / "wide.jpg")
    t = load_image(tmp_path / "wide.jpg", resolution=8, channels=1, center_crop=True)
    assert t.shape == (1, 1, 8, 8)
    ref = Image.fromarray(rgb).crop((5, 0, 25, 20)).convert("L").resize((8, 8), Image.LANCZOS)
    np.testing.assert_allclose(t[0, 0].numpy(), np.asarray(ref) / 127.5 - 1, atol=1e-6)


def test_arrays_and_errors(tmp_path):
    gray = np.linspace(0, 1, 64).reshape(8, 8)
    t = load_image(gray, channels=1)
    np.testing.assert_allclose(t[0, 0].numpy(), np.round(gray * 255) / 127.5 - 1, atol=1e-6)
    np.save(tmp_path / "x.npy", (gray * 255).astype(np.uint8))
    assert load_image(tmp_path / "x.npy", channels=3).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"\(H, W, 3\), got shape \(8, 8, 5\)"):
        load_image(np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        load_image(gray * 3)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        load_image(gray, channels=2)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        load_image(tmp_path / "junk.png")
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="a batch of 2"):
        to_uint8(torch.zeros(2, 1, 4, 4))


def test_make_grid_layout():
    imgs = torch.stack([torch.full((1, 2, 2), float(i) / 10) for i in range(5)])
    grid = make_grid(imgs, nrow=3, padding=1, pad_value=-1)
    assert grid.shape == (1, 2 * 3 + 1, 3 * 3 + 1)
    assert grid[0, 1, 1] == 0.0 and grid[0, 1, 4] == pytest.approx(0.1) and grid[0, 4, 4] == pytest.approx(0.4)
    assert grid[0, 4, 7] == -1  # empty slot keeps the pad value
