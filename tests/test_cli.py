"""The brgm command line: demo, reconstruct, evaluate, and the errors a user can act on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from brgm_pyro.bundled import load_test_images
from brgm_pyro.cli import main
from brgm_pyro.io import save_image


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_demo_writes_images_figure_and_metrics(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "3", "--samples", "4", "--out", str(out), "--no-progress"]) == 0
    assert "summary figure" in capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    assert set(report) == {"super-resolution", "inpainting"}
    for task in report:
        metrics = report[task]["metrics"]
        assert set(metrics) == {"map", "vi"}
        assert 0 < metrics["map"]["rmse"] < 255 and metrics["vi"]["mean_pixel_std"] > 0
        for name in ("input", "map", "vi_mean", "vi_samples", "vi_std", "truth"):
            assert (out / task / f"{name}.png").is_file()
    assert Image.open(out / "summary.png").size[0] > 500


def test_reconstruct_clean_and_observed_images(tmp_path):
    truth = load_test_images()[0][:1]
    save_image(truth, tmp_path / "shirt.png")
    out = tmp_path / "r1"
    assert main(["reconstruct", str(tmp_path / "shirt.png"), "--task", "inpainting", "--mask-id", "2",
                 "--method", "map", "--steps", "3", "--out", str(out), "--no-progress", "--kappa", "0",
                 "--lambda-pixel", "100"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["config"]["sigma_pixel"] == pytest.approx(0.1) and report["config"]["kappa"] == 0
    assert "rmse" in report["metrics"]["map"]

    low = torch.nn.functional.avg_pool2d(truth, 4)
    save_image(low, tmp_path / "low.png")
    out = tmp_path / "r2"
    assert main(["reconstruct", str(tmp_path / "low.png"), "--observed", "--task", "super-resolution",
                 "--method", "map,vi", "--samples", "4", "--steps", "2", "--out", str(out), "--no-progress",
                 "--save-inference-data"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert "rmse" not in report["metrics"]["map"]  # no truth for an observation
    assert (out / "vi_inference_data.nc").is_file() and (out / "map_inference_data.nc").is_file()


def _fails(argv, capsys, match) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err, err
    return err


def test_user_errors_are_clear(tmp_path, capsys):
    img = tmp_path / "img.png"
    save_image(load_test_images()[0][:1], img)
    Image.fromarray(np.zeros((32, 20), np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(tmp_path / "mask16.png")
    _fails(["reconstruct", str(tmp_path / "wide.png"), "--task", "super-resolution", "--out", str(tmp_path / "out")],
           capsys, "not square (20x32); pass --center-crop")
    _fails(["reconstruct", str(img), "--task", "inpainting", "--mask", str(tmp_path / "mask16.png"),
            "--out", str(tmp_path / "out")], capsys, "mask is 16x16 but the generator makes 32x32")
    _fails(["reconstruct", str(img), "--task", "inpainting", "--out", str(tmp_path / "out")], capsys, "exactly one of a mask")
    _fails(["reconstruct", str(img), "--task", "super-resolution", "--factor", "3", "--out", str(tmp_path / "out")],
           capsys, "factor 3 must be >= 2 and divide the resolution 32")
    _fails(["reconstruct", str(img), "--observed", "--task", "super-resolution", "--out", str(tmp_path / "out")],
           capsys, "is (1, 32, 32) (C, H, W) but")
    _fails(["reconstruct", str(img), "--task", "super-resolution", "--generator", str(tmp_path / "ffhq.pkl"),
            "--out", str(tmp_path / "out")], capsys, "no generator checkpoint at")
    _fails(["reconstruct", str(img), "--task", "super-resolution", "--method", "magic", "--out", str(tmp_path / "out")],
           capsys, "unknown method(s) ['magic']")
    with pytest.raises(SystemExit):
        main(["reconstruct", str(img), "--task", "deblurring-by-magic"])
    assert "invalid choice" in capsys.readouterr().err


def test_evaluate_writes_markdown_and_csv(tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", "--task", "super-resolution", "--num-images", "3", "--steps", "2", "--no-lpips",
                 "--out", str(out), "--no-progress"]) == 0
    md = (out / "evaluation-super-resolution.md").read_text()
    for method in ("BRGM (MAP)", "bicubic", "total variation"):
        assert f"| {method} |" in md
    rows = (out / "evaluation-super-resolution.csv").read_text().splitlines()
    assert rows[0] == "task,method,metric,mean,std,num_images" and len(rows) == 1 + 3 * 5
    assert main(["evaluate", "--task", "inpainting", "--num-images", "8", "--steps", "2", "--no-lpips",
                 "--out", str(out), "--no-progress"]) == 0
    md = (out / "evaluation-inpainting.md").read_text()
    assert "rmse_hidden" in md and "| mean fill |" in md


def test_missing_perceptual_weights_say_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    img = tmp_path / "img.png"
    save_image(load_test_images()[0][:1], img)
    err = _fails(["reconstruct", str(img), "--task", "super-resolution", "--features", "lpips-vgg",
                  "--out", str(tmp_path / "out")], capsys, "vgg16-397923af.pth does not exist")
    assert "torchvision.models.vgg16(weights='IMAGENET1K_V1')" in err
