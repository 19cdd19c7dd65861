"""Untrusted input at the command line and in image files (issue 23): every bad file or path is one
line on stderr and exit code 2, a file that loads cleanly runs, and image headers are checked
before anything is allocated."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from brgm_pyro.app.cli import main
from brgm_pyro.generators import load_generator, save_generator
from brgm_pyro.io import load_image

from .hostile_checkpoints import metadata_tensor, metadata_tiny_sigma


def _one_line_error(argv, capsys, match) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"brgm {argv[0]}: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert match in err, err
    return err


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(path)
    return path


def test_paths_that_cannot_exist_are_one_line_errors(image, tmp_path, capsys):
    out = str(tmp_path / "out")
    long_name = str(tmp_path / ("x" * 5000 + ".pt"))
    _one_line_error(["reconstruct", str(image), "--task", "super-resolution", "--generator", long_name,
                     "--out", out], capsys, "File name too long")
    _one_line_error(["reconstruct", str(tmp_path / ("y" * 5000 + ".png")), "--task", "super-resolution",
                     "--out", out], capsys, "File name too long")


@pytest.mark.parametrize("builder, match", [(metadata_tensor, "metadata.recommended_config is a Tensor"),
                                            (metadata_tiny_sigma, "sigma_pixel=1e-300 is not a finite number")])
def test_bad_metadata_is_a_one_line_error_naming_the_file(builder, match, image, tmp_path, capsys):
    path = builder(tmp_path)
    err = _one_line_error(["reconstruct", str(image), "--task", "super-resolution", "--generator", str(path),
                           "--out", str(tmp_path / "out")], capsys, match)
    assert str(path) in err


def test_a_file_with_extreme_but_valid_metadata_runs(image, tmp_path, capsys):
    G = load_generator("fashion-mnist-32", device="cpu")
    extreme = {"sigma_pixel": 1e-6, "sigma_perceptual": 1e3, "kappa": 1e4, "prior_std": "scalar"}
    save_generator(G, tmp_path / "g.pt", metadata=dict(G.metadata, recommended_config=extreme))
    assert main(["reconstruct", str(image), "--task", "super-resolution", "--generator", str(tmp_path / "g.pt"),
                 "--method", "map", "--steps", "2", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    capsys.readouterr()


def test_npy_header_shape_is_checked_before_reading(tmp_path):
    path = tmp_path / "deep.npy"
    with open(path, "wb") as f:  # the header of a (32, 32, 2**21) uint8 array (2 GiB), and no data
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (32, 32, 2**21)})
    with pytest.raises(ValueError, match=r"got shape \(32, 32, 2097152\)"):
        load_image(path, resolution=32)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<c16", "fortran_order": False, "shape": (8, 8)})
    with pytest.raises(ValueError, match="got dtype complex128"):
        load_image(path, resolution=32)
    np.save(path, np.full((8, 8, 3), 0.5, np.float32))
    loaded = load_image(path, resolution=8)  # 0.5 -> 128 -> 128 / 127.5 - 1
    assert torch.allclose(loaded, torch.zeros(1, 3, 8, 8), atol=2 / 255)


def test_animated_png_uses_its_first_frame_and_says_so(tmp_path):
    frames = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (0, 255)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="has 2 frames .* only the first frame is used"):
        first = load_image(tmp_path / "anim.png", resolution=8)
    assert torch.all(first == -1)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "still.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(tmp_path / "still.png", resolution=8)
