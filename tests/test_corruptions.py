"""Corruption operators against independent computations, and their input validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage, signal

from brgm_pyro.corruptions import (
    Blur, Compose, CompressedSensing, Denoising, Grayscale, Inpainting, SuperResolution, make_corruption,
    standard_mask, standard_masks,
)


def test_box_super_resolution_is_block_mean():
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    y = SuperResolution(3, "box")(x)
    ref = x.numpy().reshape(2, 3, 4, 3, 4, 3).mean(axis=(3, 5))
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-12)


def keys_cubic(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel (a = -0.75, as PyTorch's bicubic)."""
    t = np.abs(t)
    near = (a + 2) * t**3 - (a + 3) * t**2 + 1
    far = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def bicubic_matrix(n: int, factor: int) -> np.ndarray:
    """(n / factor, n) matrix of bicubic sampling at half-pixel centres, edge pixels repeated."""
    m = np.zeros((n // factor, n))
    for i in range(n // factor):
        c = (i + 0.5) * factor - 0.5
        for j in range(int(np.floor(c)) - 1, int(np.floor(c)) + 3):
            m[i, min(max(j, 0), n - 1)] += keys_cubic(np.array(c - j))
    return m


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_bicubic_matches_numpy_cubic_convolution(factor):
    x = np.random.default_rng(factor).standard_normal((24, 24))
    y = SuperResolution(factor)(torch.tensor(x)[None, None])[0, 0].numpy()
    a = bicubic_matrix(24, factor)
    np.testing.assert_allclose(y, a @ x @ a.T, atol=1e-12)


def test_bicubic_antialias_matches_pil():
    x = np.random.default_rng(0).random((24, 24)).astype(np.float32)
    for factor in (2, 3, 4):
        pil = Image.fromarray(x, mode="F").resize((24 // factor, 24 // factor), Image.BICUBIC)
        y = SuperResolution(factor, "bicubic-antialias")(torch.tensor(x)[None, None])[0, 0].numpy()
        np.testing.assert_allclose(y, np.asarray(pil), atol=1e-5)


@pytest.mark.parametrize("kernel", ["box", "bicubic", "bicubic-antialias"])
def test_x256_super_resolution_1024_to_4(kernel):
    """The extreme down-sampling of the paper's Fig. 6: 1024x1024 -> 4x4."""
    x = torch.rand(1, 3, 1024, 1024, dtype=torch.float64)
    y = SuperResolution(256, kernel)(x)
    assert y.shape == (1, 3, 4, 4)
    if kernel == "box":
        ref = x.numpy().reshape(1, 3, 4, 256, 4, 256).mean(axis=(3, 5))
        np.testing.assert_allclose(y.numpy(), ref, atol=1e-12)
    assert SuperResolution(256, kernel).output_shape((3, 1024, 1024)) == (3, 4, 4)


def test_gaussian_and_custom_kernel_super_resolution_match_scipy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 8))
    k = rng.random((4, 4))
    y = SuperResolution(2, torch.tensor(k))(torch.tensor(x)[None, None].float())[0, 0].numpy()
    padded = np.pad(x, 1, mode="edge")
    ref = signal.correlate2d(padded, k, mode="valid")[::2, ::2]
    np.testing.assert_allclose(y, ref, atol=1e-5)
    g = SuperResolution(4, "gaussian", sigma=1.0)
    assert g.weights.shape == (8, 8) and torch.isclose(g.weights.sum(), torch.tensor(1.0))
    const = g(torch.full((1, 1, 16, 16), 0.3))
    torch.testing.assert_close(const, torch.full((1, 1, 4, 4), 0.3))


def test_super_resolution_errors():
    with pytest.raises(ValueError, match="does not divide the image size 30x30"):
        SuperResolution(4)(torch.zeros(1, 1, 30, 30))
    with pytest.raises(ValueError, match="unknown kernel"):
        SuperResolution(4, "lanczos")
    with pytest.raises(ValueError, match="positive integer"):
        SuperResolution(0)
    with pytest.raises(ValueError, match="at least factor x factor"):
        SuperResolution(4, torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        SuperResolution(2)(torch.zeros(3, 8, 8))


def test_inpainting_masks_observed_pixels_and_validates(tmp_path):
    mask = torch.zeros(8, 8)
    mask[:, :4] = 1
    op = Inpainting(mask)
    x = torch.randn(2, 3, 8, 8)
    y = op(x)
    torch.testing.assert_close(y[..., :4], x[..., :4])
    assert (y[..., 4:] == 0).all()
    obs = op.observation_mask((3, 8, 8))
    assert obs.shape == (3, 8, 8) and obs.sum() == 3 * 8 * 4
    with pytest.raises(ValueError, match=r"mask of shape \(1, 8, 8\) does not fit images of shape \(3, 16, 16\)"):
        op(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="only 0"):
        Inpainting(torch.full((8, 8), 0.5))
    with pytest.raises(ValueError, match="does not fit"):
        Inpainting(torch.ones(2, 8, 8))(torch.zeros(1, 3, 8, 8))
    # From an image file: white = observed.
    Image.fromarray((mask.numpy() * 255).astype(np.uint8)).save(tmp_path / "m.png")
    torch.testing.assert_close(Inpainting(tmp_path / "m.png").mask[0], mask)
    grey = np.full((8, 8), 128, np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    with pytest.raises(ValueError, match="not binary"):
        Inpainting(tmp_path / "grey.png")


def test_standard_masks_scale_with_resolution():
    m32, m1024 = standard_masks(32), standard_masks(1024)
    assert m32.shape == (7, 1, 32, 32) and m1024.shape == (7, 1, 1024, 1024)
    assert m32[0, 0, :, :16].all() and not m32[0, 0, :, 16:].any()  # right half hidden
    assert not m32[6, 0, 16:].any() and m32[6, 0, :16].all()  # bottom half hidden
    # The observed fraction is the same at every resolution (up to rounding of the box edges).
    torch.testing.assert_close(m32.mean(dim=[1, 2, 3]), m1024.mean(dim=[1, 2, 3]), atol=0.03, rtol=0)
    assert torch.equal(standard_mask(9, 32), m32[2])  # cyclic


def test_blur_matches_scipy_convolution():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 10))
    op = Blur.gaussian(1.2)
    y = op(torch.tensor(x)[None, None].float())[0, 0].numpy()
    ref = ndimage.convolve(x, op.kernel.numpy().astype(np.float64), mode="mirror")
    np.testing.assert_allclose(y, ref, atol=1e-5)
    motion = Blur.motion(5, 0)
    assert motion.kernel[2].sum() == pytest.approx(1.0) and motion.kernel.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="odd size"):
        Blur(torch.ones(4, 4))


def test_grayscale_compressed_sensing_denoising_compose():
    x = torch.rand(2, 3, 8, 8)
    g = Grayscale()(x)
    torch.testing.assert_close(g[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    with pytest.raises(ValueError, match="3 channels"):
        Grayscale()(torch.zeros(1, 1, 8, 8))
    cs = CompressedSensing(20, seed=3)
    assert cs.output_shape((3, 8, 8)) == (1, 1, 20)
    y = cs(x)
    assert y.shape == (2, 1, 1, 20) and cs.matrix.shape == (20, 3 * 8 * 8)
    np.testing.assert_allclose(y[:, 0, 0].numpy(), x.reshape(2, -1).numpy() @ cs.matrix.numpy().T, atol=1e-5)
    # Same seed -> same matrix, whether the shape is given up front or taken from the first call.
    assert torch.equal(CompressedSensing(20, 3, image_shape=(3, 8, 8)).matrix, cs.matrix)
    assert not torch.equal(CompressedSensing(20, 4, image_shape=(3, 8, 8)).matrix, cs.matrix)
    assert cs.matrix.std().item() == pytest.approx(20**-0.5, rel=0.1)  # N(0, 1/m) entries
    with pytest.raises(ValueError, match=r"set up for images of shape \(3, 8, 8\), got \(3, 16, 16\)"):
        cs(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="positive integer"):
        CompressedSensing(0)
    assert torch.equal(Denoising()(x), x)
    mask = torch.ones(1, 8, 8)
    mask[..., 0] = 0
    composed = Compose(Blur.gaussian(0.8), Inpainting(mask))
    torch.testing.assert_close(composed(x), Inpainting(mask)(Blur.gaussian(0.8)(x)))
    assert composed.observation_mask((3, 8, 8)).sum() == 3 * 8 * 7
    with pytest.raises(ValueError, match="put masking operators last"):
        Compose(Inpainting(mask), SuperResolution(2)).observation_mask((3, 8, 8))


def test_make_corruption_by_task_name():
    assert isinstance(make_corruption("super-resolution", factor=4), SuperResolution)
    assert isinstance(make_corruption("blur", sigma=1.0), Blur)
    assert isinstance(make_corruption("blur", kernel=torch.ones(3, 3)), Blur)
    assert isinstance(make_corruption("inpainting", mask=torch.ones(4, 4)), Inpainting)
    assert isinstance(make_corruption("denoising"), Denoising)
    assert isinstance(make_corruption("grayscale"), Grayscale)
    sensing = make_corruption("compressed-sensing", num_measurements=5, seed=1)
    assert sensing(torch.zeros(1, 1, 4, 4)).shape == (1, 1, 1, 5)
    with pytest.raises(ValueError, match="unknown task 'deraining'; valid tasks: super-resolution"):
        make_corruption("deraining")


def test_corruptions_are_differentiable():
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    for op in (SuperResolution(4), SuperResolution(2, "gaussian"), Blur.motion(3, 30), Grayscale(),
               Inpainting(standard_mask(0, 16))):
        op(x).sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        x.grad = None


def hidden_boxes(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The hidden rectangles of a (R, R) mask (1 = observed) as (y0, y1, x0, x1), end exclusive,
    found independently of the mask code: connected components of the hidden pixels."""
    labels, count = ndimage.label(mask == 0)
    boxes = []
    for k in range(1, count + 1):
        rows, cols = np.nonzero(labels == k)
        assert len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1), "not a rectangle"
        boxes.append((int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1))
    return sorted(boxes, key=lambda b: (b[2], b[0]))


# The authors' released masks (issue 11): hidden boxes at 1024x1024 and in their 256x256 files.
RELEASED_1024 = [
    [(0, 1024, 510, 1024)], [(0, 1024, 0, 510)], [(411, 585, 276, 454), (411, 585, 564, 726)],
    [(185, 840, 515, 747)], [(0, 513, 510, 1024)], [(616, 868, 286, 751)], [(500, 1024, 0, 1024)],
]
RELEASED_256 = [
    [(0, 256, 128, 256)], [(0, 256, 0, 127)], [(103, 146, 69, 114), (103, 146, 141, 182)],
    [(46, 210, 129, 187)], [(0, 128, 127, 256)], [(154, 217, 71, 188)], [(125, 256, 0, 256)],
]


def test_standard_masks_are_the_released_boxes_at_1024():
    masks = standard_masks(1024)[:, 0].numpy()
    for i, expected in enumerate(RELEASED_1024):
        assert hidden_boxes(masks[i]) == expected, f"mask {i}"


def test_standard_masks_match_the_released_256_files_to_one_pixel():
    masks = standard_masks(256)[:, 0].numpy()
    for i, expected in enumerate(RELEASED_256):
        found = hidden_boxes(masks[i])
        assert len(found) == len(expected), f"mask {i}"
        for got, want in zip(found, expected):
            assert max(abs(g - w) for g, w in zip(got, want)) <= 1, f"mask {i}: {got} vs released {want}"
        released = np.ones((256, 256))
        for y0, y1, x0, x1 in expected:
            released[y0:y1, x0:x1] = 0
        assert (released == masks[i]).mean() > 0.99, f"mask {i}"


def test_standard_mask_geometry():
    r = 64
    hidden = 1 - standard_masks(r)[:, 0].numpy()  # (7, R, R), 1 = hidden
    labels = [ndimage.label(h)[0] for h in hidden]
    assert [lab.max() for lab in labels] == [1, 1, 2, 1, 1, 1, 1]  # two separate eye boxes
    rows, cols = np.nonzero(hidden[2])
    assert rows.max() < r * 0.6 and cols.min() < r / 2 < cols.max()  # eyes: near the middle row, both sides
    rows, cols = np.nonzero(hidden[3])
    assert cols.min() >= r / 2 and rows.min() > 0 and rows.max() < r - 1  # bar right of centre
    assert hidden[4][: r // 2, r // 2:].all()  # top-right quadrant
    rows, cols = np.nonzero(hidden[5])
    assert rows.min() > r / 2 and abs(cols.mean() - (r - 1) / 2) < 1  # mouth: lower half, centred
    assert hidden[1][:, : r // 2].all() and hidden[1].sum() == r * r / 2  # left half


def test_motion_blur_kernels_and_inpainting_from_numpy():
    horizontal, vertical = Blur.motion(5, 0).kernel, Blur.motion(5, 90).kernel
    torch.testing.assert_close(vertical, horizontal.t())
    diagonal = Blur.motion(5, 45).kernel
    rows, cols = torch.nonzero(diagonal, as_tuple=True)
    # A 5-pixel line at 45 degrees (pointing up-right) spans 5 / sqrt(2) ~ 3.5 pixels on each axis.
    assert torch.equal(rows + cols, torch.full_like(rows, 4)) and len(rows) == 3
    mask = np.ones((3, 8, 8), dtype=bool)
    mask[1, 2:4, 2:4] = False  # per-channel masks are allowed
    op = Inpainting(mask)
    assert op.observation_mask((3, 8, 8)).sum() == 3 * 64 - 4
    x = torch.randn(1, 3, 8, 8)
    np.testing.assert_array_equal(op(x).numpy(), x.numpy() * mask)


def test_mask_files_are_read_by_their_bit_depth_and_size_checked(tmp_path, monkeypatch):
    import brgm_pyro.io as io

    binary16 = np.zeros((8, 8), np.uint16)
    binary16[:, :4] = 65535
    Image.fromarray(binary16).save(tmp_path / "m16.png")
    expected = torch.zeros(1, 8, 8)
    expected[:, :, :4] = 1
    torch.testing.assert_close(Inpainting(tmp_path / "m16.png").mask, expected)
    grey16 = binary16.copy()
    grey16[0, 0] = 40000  # an 8-bit reading would clip this to "observed"
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    with pytest.raises(ValueError, match="not binary"):
        Inpainting(tmp_path / "g16.png")
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, :4] = 255
    rgb[0, 0] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    with pytest.raises(ValueError, match="coloured"):
        Inpainting(tmp_path / "colour.png")
    monkeypatch.setattr(io, "MAX_IMAGE_PIXELS", 32)  # the decompression-bomb limit applies to masks too
    with pytest.raises(ValueError, match="too large"):
        Inpainting(tmp_path / "m16.png")
