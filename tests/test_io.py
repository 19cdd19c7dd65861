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


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose IHDR declares width x height 8-bit grayscale, with a tiny (truncated) IDAT:
    a few dozen bytes that would decode to width * height bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_16_bit_png_is_scaled_by_65535_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64).round().astype(np.uint16).reshape(8, 8)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode in ("I;16", "I")
    t = load_image(tmp_path / "deep.png", channels=1)
    np.testing.assert_allclose(t[0, 0].numpy(), values / 65535 * 2 - 1, atol=1e-6)
    assert t.min() == -1 and t.max() == 1 and (t.abs() < 0.99).float().mean() > 0.9  # nothing saturates
    rgb = load_image(tmp_path / "deep.png", channels=3)
    assert rgb.shape == (1, 3, 8, 8) and torch.equal(rgb[0, 0], rgb[0, 2])
    # Resized: close to the 8-bit image holding the same levels (Lanczos on floats vs on bytes).
    small = load_image(tmp_path / "deep.png", resolution=4, channels=1)
    ref = load_image((values / 257).round().astype(np.uint8), resolution=4, channels=1)
    np.testing.assert_allclose(small.numpy(), ref.numpy(), atol=2 / 255)
    # uint16 arrays (.npy) follow the same rule.
    np.save(tmp_path / "deep.npy", values)
    torch.testing.assert_close(load_image(tmp_path / "deep.npy", channels=1), t)


def test_palette_one_bit_and_opaque_alpha_are_converted(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    pal = Image.fromarray(rgb).quantize(16)
    pal.save(tmp_path / "pal.png")
    expected = np.asarray(pal.convert("RGB"), dtype=np.float32) / 127.5 - 1
    got = load_image(tmp_path / "pal.png", channels=3)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    bits = np.eye(8, dtype=bool)
    Image.fromarray(bits).save(tmp_path / "bits.png")
    np.testing.assert_array_equal(load_image(tmp_path / "bits.png", channels=1)[0, 0].numpy(),
                                  np.where(bits, 1.0, -1.0))
    rgba = np.concatenate([rgb, np.full((8, 8, 1), 255, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    np.testing.assert_allclose(load_image(tmp_path / "opaque.png")[0].permute(1, 2, 0).numpy(), rgb / 127.5 - 1,
                               atol=1e-6)


def test_transparent_pixels_are_refused(tmp_path):
    rgba = np.full((8, 8, 4), 200, np.uint8)
    rgba[..., 3] = 255
    rgba[:2, :, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "cut-out.png")
    with pytest.raises(ValueError, match=r"cut-out.png has 16 transparent pixels \(alpha < 255\) of 64"):
        load_image(tmp_path / "cut-out.png")
    la = Image.fromarray(rgba[..., [0, 3]], mode="LA")
    with pytest.raises(ValueError, match="transparent pixels"):
        load_image(la, channels=1)
    grey = rgba[..., 0].copy()
    grey[:2] = 7
    pal = Image.fromarray(grey).convert("P")
    pal.info["transparency"] = 7
    pal.save(tmp_path / "pal-t.png")
    with pytest.raises(ValueError, match="16 transparent pixels"):
        load_image(tmp_path / "pal-t.png")


def test_non_finite_arrays_are_refused_naming_the_file(tmp_path):
    np.save(tmp_path / "nan.npy", np.full((8, 8), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"nan.npy has 64 non-finite values \(NaN or inf\) of 64"):
        load_image(tmp_path / "nan.npy")
    arr = np.zeros((8, 8))
    arr[3, 3] = np.inf
    with pytest.raises(ValueError, match="1 non-finite values"):
        load_image(arr)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="cannot read image array .*obj.npy"):
        load_image(tmp_path / "obj.npy")


def test_decompression_bombs_are_refused_with_the_limit(tmp_path):
    from brgm_pyro.io import MAX_IMAGE_PIXELS, check_image_file

    _png_header_only(tmp_path / "bomb.png", 20000, 20000)  # 400 Mpixel: Pillow's own bomb error
    with pytest.raises(ValueError, match=rf"bomb.png is too large.*at most {MAX_IMAGE_PIXELS} pixels"):
        load_image(tmp_path / "bomb.png")
    _png_header_only(tmp_path / "big.png", 9000, 8000)  # 72 Mpixel: under Pillow's limit, over ours
    with pytest.raises(ValueError, match=r"big.png is too large \(72000000 pixels, 9000x8000\)"):
        load_image(tmp_path / "big.png")
    with pytest.raises(ValueError, match="too large"):
        check_image_file(tmp_path / "big.png")
    _png_header_only(tmp_path / "ok.png", 8, 8)
    assert check_image_file(tmp_path / "ok.png") == (8, 8)
    # A .npy whose header declares a huge array is refused before it is read.
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), np.uint8))
    header["shape"] = (20000, 20000)
    with open(tmp_path / "bomb.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
    with pytest.raises(ValueError, match="bomb.npy"):
        load_image(tmp_path / "bomb.npy")
