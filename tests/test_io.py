"""Image loading and saving."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from brgm_pyro.io import load_image, load_images, make_grid, save_grid, save_image, to_uint8


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
        load_image(tmp_path / "wide.jpg", center_crop=False)
    t = load_image(tmp_path / "wide.jpg", resolution=8, channels=1)  # central square by default
    assert t.shape == (1, 1, 8, 8)
    jpeg = Image.open(tmp_path / "wide.jpg")
    ref = jpeg.crop((5, 0, 25, 20)).convert("L").resize((8, 8), Image.LANCZOS)
    np.testing.assert_allclose(t[0, 0].numpy(), np.asarray(ref) / 127.5 - 1, atol=1e-6)
    rgb_t = load_image(tmp_path / "wide.jpg", resolution=8, channels=3)
    ref = np.asarray(jpeg.convert("RGB").crop((5, 0, 25, 20)).resize((8, 8), Image.LANCZOS))
    np.testing.assert_allclose(rgb_t[0].permute(1, 2, 0).numpy(), ref / 127.5 - 1, atol=1e-6)
    # Tall image: the vertical centre is kept.
    tall = np.zeros((12, 4), np.uint8)
    tall[4:8] = 255
    assert torch.equal(load_image(tall, channels=1), torch.ones(1, 1, 4, 4))


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


def test_load_images_save_grid_and_npy(tmp_path):
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(3)]
    batch = load_images(arrays, resolution=8, channels=1)
    assert batch.shape == (3, 1, 8, 8)
    np.testing.assert_allclose(batch[2, 0].numpy(), arrays[2] / 127.5 - 1, atol=1e-6)
    save_grid(batch, tmp_path / "grid.png", nrow=2, padding=1, pad_value=-1)
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * 9 + 1, 2 * 9 + 1)
    np.testing.assert_array_equal(grid[10:18, 1:9], arrays[2])
    assert (grid[10:18, 10:18] == 0).all()  # empty slot: pad value -1 -> 0
    save_image(batch[1], tmp_path / "one.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "one.npy"), arrays[1])
    torch.testing.assert_close(load_image(tmp_path / "one.npy", channels=1), batch[1:2])
    with pytest.raises(ValueError, match="unknown image format '.xyz'"):
        save_image(batch[0], tmp_path / "a.xyz")
    with pytest.raises(ValueError, match="at least one image"):
        load_images([], resolution=8)
    with pytest.raises(ValueError, match="nrow must be >= 1"):
        make_grid(batch, nrow=0)
