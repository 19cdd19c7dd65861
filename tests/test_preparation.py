"""A generator's declared image preparation: read from its metadata, applied to a user's image or
mask, every change reported, any other size refused (nothing is stretched silently)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brgm_pyro.generators import load_generator
from brgm_pyro.io import NonSquareImageError
from brgm_pyro.preparation import (
    FASHION_MNIST_PADDING, ImagePreparation, prepare_mask, prepare_pixels,
)


def pixels(h: int, w: int, c: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, c)).astype(np.float32)


def test_the_bundled_generator_declares_padding_28_to_32_with_black():
    metadata = load_generator("fashion-mnist-32").metadata
    assert metadata["image_preparation"] == {"method": "pad", "from_size": [28, 28], "fill": -1.0}
    assert ImagePreparation.from_metadata(metadata) == FASHION_MNIST_PADDING
    assert ImagePreparation.from_metadata({}) is None
    round_trip = ImagePreparation("center-crop", (40, 36), 0.5)
    assert ImagePreparation.from_metadata({"image_preparation": round_trip.to_metadata()}) == round_trip


@pytest.mark.parametrize("entry, match", [
    ({"method": "stretch", "from_size": [28, 28]}, "method must be one of"),
    ({"method": "pad", "from_size": [28]}, "from_size must be"),
    ({"method": "pad", "from_size": [0, 28]}, "from_size must be"),
    ({"method": "pad", "from_size": [28, 28], "fill": 2.0}, "fill must be a number in"),
    ({"method": "pad", "from_size": [28, 28], "fill": float("nan")}, "fill must be a number in"),
    ({"method": "pad", "from_size": [28, 28], "colour": 1}, "must be a dict with keys"),
    ("pad", "must be a dict with keys"),
])
def test_a_bad_declaration_is_refused_naming_the_field(entry, match):
    with pytest.raises(ValueError, match=match):
        ImagePreparation.from_metadata({"image_preparation": entry})


def test_declared_size_is_padded_with_the_fill_and_announced():
    arr = pixels(28, 28)
    prepared = prepare_pixels(arr, (1, 32, 32), FASHION_MNIST_PADDING, "image a.png")
    x = prepared.tensor
    assert x.shape == (1, 1, 32, 32)
    torch.testing.assert_close(x[0, 0, 2:30, 2:30], torch.from_numpy(arr[..., 0]) * 2 - 1)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert bool((x[0, 0][border] == -1).all())
    assert prepared.notes == ("padded 28x28 -> 32x32 with black (-1), the generator's declared preparation",)
    assert prepared.announcement("image a.png").startswith("image a.png: padded 28x28 -> 32x32")


def test_the_generators_own_size_is_used_as_it_is():
    arr = pixels(32, 32)
    prepared = prepare_pixels(arr, (1, 32, 32), FASHION_MNIST_PADDING)
    assert prepared.notes == () and prepared.announcement("x") is None
    torch.testing.assert_close(prepared.tensor[0, 0], torch.from_numpy(arr[..., 0]) * 2 - 1)


def test_any_other_size_is_refused_with_the_fix_never_stretched():
    with pytest.raises(ValueError, match=r"image b.png is 40x40 but this generator's images are 32x32 "
                                         r"\(prepared from 28x28 by padding with black \(-1\)\); give a 32x32 or "
                                         r"28x28 image"):
        prepare_pixels(pixels(40, 40), (1, 32, 32), FASHION_MNIST_PADDING, "image b.png")
    with pytest.raises(NonSquareImageError):
        prepare_pixels(pixels(28, 30), (1, 32, 32), FASHION_MNIST_PADDING)
    cropped = prepare_pixels(pixels(28, 30), (1, 32, 32), FASHION_MNIST_PADDING, center_crop=True)
    assert cropped.notes[0].startswith("cropped its central square 28x30 -> 28x28") and "padded" in cropped.notes[1]


def test_centre_crop_and_resize_declarations_and_no_declaration():
    arr = pixels(36, 36)
    crop = prepare_pixels(arr, (1, 32, 32), ImagePreparation("center-crop", (36, 36)))
    torch.testing.assert_close(crop.tensor[0, 0], torch.from_numpy(arr[2:34, 2:34, 0]) * 2 - 1)
    assert crop.notes[0].startswith("centre-cropped 36x36 -> 32x32")
    resized = prepare_pixels(arr, (1, 32, 32), ImagePreparation("resize", (36, 36)))
    assert resized.tensor.shape == (1, 1, 32, 32) and "Lanczos" in resized.notes[0]
    undeclared = prepare_pixels(arr, (1, 32, 32), None)  # the authors' preprocessing, but said
    assert "declares no image preparation" in undeclared.notes[0]
    torch.testing.assert_close(undeclared.tensor, resized.tensor)
    with pytest.raises(ValueError, match="is 36x36 but"):  # an observation is never resized
        prepare_pixels(arr, (1, 32, 32), None, allow_resize=False)


def test_colour_to_grayscale_is_announced_and_grey_rgb_is_not():
    rgb = pixels(32, 32, 3)
    prepared = prepare_pixels(rgb, (1, 32, 32), None)
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    torch.testing.assert_close(prepared.tensor[0, 0], torch.from_numpy(luma) * 2 - 1)
    assert prepared.notes == ("converted colour (RGB) to grayscale (BT.601 luma)",)
    grey = np.repeat(pixels(32, 32), 3, axis=2)
    assert prepare_pixels(grey, (1, 32, 32), None).notes == ()
    assert prepare_pixels(pixels(32, 32), (3, 32, 32), None).notes == ("repeated its grayscale channel to RGB",)


def test_masks_follow_the_same_rule_and_an_empty_mask_is_refused():
    mask = np.zeros((28, 28), np.float32)
    mask[:, :14] = 1
    prepared = prepare_mask(mask, 32, FASHION_MNIST_PADDING)
    m = prepared.tensor
    assert m.shape == (1, 32, 32)
    torch.testing.assert_close(m[0, 2:30, 2:30], torch.from_numpy(mask))
    assert float(m[0, :2].min()) == 1 and float(m[0, :, 30:].min()) == 1  # the padding is known: observed
    assert "padded 28x28 -> 32x32 with 1 (observed" in prepared.notes[0]
    with pytest.raises(ValueError, match="mask is 20x20 but"):
        prepare_mask(np.ones((20, 20), np.float32), 32, FASHION_MNIST_PADDING)
    from brgm_pyro.corruptions import Inpainting

    with pytest.raises(ValueError, match="observes no pixel"):
        Inpainting(torch.zeros(32, 32))
