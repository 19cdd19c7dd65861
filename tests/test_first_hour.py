"""A user's first hour through the command line (issue #24): their own 28x28 or colour image is
prepared as the generator declares and the change is printed; other sizes are refused; the default
kernel is the calibrated one; an empty mask is refused before any fitting; Ctrl-C on a data-set run
gives one line, exit 130 and a complete partial summary; batched runs agree with one-image runs to
the stated tolerance; ``brgm --help`` imports no torch; help and ``brgm info`` say what the code does."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from brgm_pyro.app import dataset_run
from brgm_pyro.app.cli import main
from brgm_pyro.bundled import load_test_images
from brgm_pyro.io import save_image, to_uint8

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py

FAST = ["--method", "map", "--steps", "2", "--no-progress"]


def _fashion_mnist_28(index: int = 0) -> torch.Tensor:
    """A bundled test image as Fashion-MNIST stores it: 28x28 (the bundled ones are padded to 32)."""
    return load_test_images()[0][index:index + 1, :, 2:30, 2:30]


def test_a_28x28_image_is_padded_as_declared_and_announced(tmp_path, capsys):
    small = _fashion_mnist_28()
    save_image(small, tmp_path / "trousers.png")
    out = tmp_path / "out"
    assert main(["reconstruct", str(tmp_path / "trousers.png"), "--task", "super-resolution", *FAST,
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (f"image {tmp_path / 'trousers.png'}: padded 28x28 -> 32x32 with black (-1), the generator's "
            "declared preparation") in printed
    truth = np.asarray(Image.open(out / "truth.png"))
    assert truth.shape == (32, 32) and (truth[:2] == 0).all() and (truth[:, 30:] == 0).all()
    assert np.array_equal(truth[2:30, 2:30], to_uint8(small))  # not stretched: the pixels themselves
    report = json.loads((out / "metrics.json").read_text())
    assert report["corruption"] == "super-resolution x4 (bicubic-antialias kernel)"  # the calibrated default


def test_a_data_set_run_prepares_each_file_by_the_same_rule(tmp_path, capsys):
    folder = tmp_path / "images"
    save_image(_fashion_mnist_28(1), folder / "small.png")
    save_image(load_test_images()[0][2:3], folder / "full.png")
    Image.fromarray(np.full((40, 40), 128, np.uint8)).save(tmp_path / "big.png")
    out = tmp_path / "out"
    assert main(["reconstruct", str(folder), "--task", "super-resolution", *FAST, "--out", str(out)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("image ")]
    assert lines == [f"image {folder / 'small.png'}: padded 28x28 -> 32x32 with black (-1), the generator's "
                     "declared preparation"]
    truth = np.asarray(Image.open(out / "small" / "truth.png"))
    assert (truth[:2] == 0).all() and np.array_equal(truth[2:30, 2:30], to_uint8(_fashion_mnist_28(1)))
    assert main(["reconstruct", str(folder / "full.png"), str(tmp_path / "big.png"), "--task", "super-resolution",
                 *FAST, "--out", str(tmp_path / "o2")]) == 2
    assert "is 40x40 but this generator's images are 32x32" in capsys.readouterr().err


def test_an_rgb_image_is_converted_to_grayscale_and_announced(tmp_path, capsys):
    grey = to_uint8(load_test_images()[0][:1])
    rgb = np.stack([grey, grey // 2, grey], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    assert main(["reconstruct", str(tmp_path / "colour.png"), "--task", "inpainting", "--mask-id", "0", *FAST,
                 "--out", str(tmp_path / "out")]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if "colour.png" in ln and "grayscale" in ln]
    assert line == [f"image {tmp_path / 'colour.png'}: converted colour (RGB) to grayscale (BT.601 luma)"]
    expected = np.round(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    truth = np.asarray(Image.open(tmp_path / "out" / "truth.png")).astype(np.float32)
    assert np.abs(truth - expected).max() <= 1


def test_another_size_is_refused_with_the_fix(tmp_path, capsys):
    Image.fromarray(np.full((40, 40), 128, np.uint8)).save(tmp_path / "big.png")
    assert main(["reconstruct", str(tmp_path / "big.png"), "--task", "super-resolution", *FAST,
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is 40x40 but this generator's images are 32x32" in err
    assert "give a 32x32 or 28x28 image" in err and not (tmp_path / "out").exists()


def test_a_28x28_mask_is_padded_as_observed_and_an_empty_mask_refused_before_fitting(tmp_path, capsys,
                                                                                       monkeypatch):
    save_image(load_test_images()[0][:1], tmp_path / "shirt.png")
    mask = np.zeros((28, 28), np.uint8)
    mask[:, :14] = 255
    Image.fromarray(mask).save(tmp_path / "half.png")
    out = tmp_path / "out"
    assert main(["reconstruct", str(tmp_path / "shirt.png"), "--task", "inpainting", "--mask",
                 str(tmp_path / "half.png"), *FAST, "--out", str(out)]) == 0
    assert f"mask {tmp_path / 'half.png'}: padded 28x28 -> 32x32 with 1 (observed" in capsys.readouterr().out
    shown = np.asarray(Image.open(out / "input.png"))
    assert (shown[2:30, 18:30] == 128).all()  # the hidden right half of the garment (mid-grey in the display)
    assert (shown[:2] == 0).all()  # the padded border: observed black

    import brgm_pyro.app.commands as commands

    def no_fitting(*args, **kwargs):
        raise AssertionError("fitting started although nothing is observed")

    monkeypatch.setattr(commands, "reconstruct_problems", no_fitting)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "black.png")
    assert main(["reconstruct", str(tmp_path / "shirt.png"), "--task", "inpainting", "--mask",
                 str(tmp_path / "black.png"), "--method", "map,fullrank", "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "observes no pixel" in err


def _summary_columns(path) -> list[str]:
    with open(path, newline="") as f:
        return next(csv.reader(f))


def test_ctrl_c_on_a_data_set_run_gives_one_line_exit_130_and_a_partial_summary(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "images"
    for i, img in enumerate(load_test_images()[0][:3]):
        save_image(img, folder / f"img{i}.png")
    out = tmp_path / "out"
    args = ["reconstruct", str(folder), "--task", "super-resolution", "--method", "map,vi", "--samples", "2",
            "--steps", "2", "--no-progress", "--batch-size", "1", "--out", str(out)]
    real_save = dataset_run.save_image_outputs
    calls = []

    def save_then_interrupt(*a, **k):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(a[1].name)
        return real_save(*a, **k)

    monkeypatch.setattr(dataset_run, "save_image_outputs", save_then_interrupt)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("brgm reconstruct: interrupted; 2 of 3 images finished")
    assert err.strip().endswith("resume with: brgm " + " ".join(args) + " --resume")
    partial = json.loads((out / "summary.json").read_text())
    assert not partial["complete"] and [r["name"] for r in partial["images"]] == ["img0", "img1"]
    interrupted_columns = _summary_columns(out / "summary.csv")

    monkeypatch.setattr(dataset_run, "save_image_outputs", real_save)
    assert main(args + ["--resume"]) == 0
    assert f"--resume: skipping 2 of 3 images already finished in {out}" in capsys.readouterr().out
    assert _summary_columns(out / "summary.csv") == interrupted_columns  # one column order
    fresh = tmp_path / "fresh"
    assert main(args[:-1] + [str(fresh)]) == 0
    assert _summary_columns(fresh / "summary.csv") == interrupted_columns
    assert interrupted_columns[:4] == ["index", "name", "source", "corruption"]


BATCH_TOLERANCE = 0.05
"""The stated agreement of a batched MAP image with the one-image run's (max |difference| on
[-1, 1]) at 20 steps; measured (benchmarks/batch_vs_single.py, docs/command-line.md): float
rounding of the batched convolutions, grown by Adam."""


def test_a_batch_of_different_images_agrees_with_one_image_runs(tmp_path):
    folder = tmp_path / "images"
    for i, index in enumerate((3, 17, 42)):
        save_image(load_test_images()[0][index:index + 1], folder / f"img{i}.png")
    maps = {}
    for batch in (1, 3):
        out = tmp_path / f"b{batch}"
        assert main(["reconstruct", str(folder), "--task", "super-resolution", "--method", "map", "--steps", "20",
                     "--no-progress", "--batch-size", str(batch), "--out", str(out)]) == 0
        maps[batch] = np.stack([np.load(out / f"img{i}" / "map.npy") for i in range(3)])
    diff = np.abs(maps[1] - maps[3]).reshape(3, -1).max(1)
    assert diff.max() < BATCH_TOLERANCE, diff
    assert np.abs(maps[1][0] - maps[1][1]).max() > 10 * BATCH_TOLERANCE  # the images differ: a real comparison


def test_help_imports_no_torch():
    code = ("import sys\nfrom brgm_pyro.app.cli import main\n"
            "for argv in (['--help'], ['reconstruct', '--help'], ['demo', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("NO-TORCH") and "usage: brgm reconstruct" in proc.stdout


def _help(*argv: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "brgm_pyro", *argv, "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.split())


def test_help_says_what_the_code_does_without_measured_numbers():
    top = _help()
    assert "MAP and the fullrank posterior" in top and "MAP and VI" not in top
    reconstruct = _help("reconstruct")
    assert "--seed SEED random seed" in reconstruct and "--no-progress print no progress" in reconstruct
    assert "(default: bicubic-antialias, the kernel the fullrank posterior was calibrated with" in reconstruct
    assert "'bicubic' is the authors' release" in reconstruct and "aliases" in reconstruct
    assert "optimised together by map, vi and fullrank" in reconstruct
    assert "mcmc runs one image at a time" in reconstruct
    for text in (top, reconstruct, _help("demo")):
        for measured in ("1.35", "0.95", "0.90", "0.85", "0.71", "intervals hold"):
            assert measured not in text, measured


def test_info_prints_the_installed_versions(capsys):
    assert main(["info"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines["lpips"] == importlib.metadata.version("lpips")
    assert lines["pyro"] == importlib.metadata.version("pyro-ppl")


def test_draws_the_domain_classifier_cannot_place_are_counted():
    """The demo figure's dark blobs: posterior draws that match no garment the generator makes are
    reported (the classifier's top probability below the 1% quantile of the generator's own samples)."""
    from brgm_pyro.inference import MethodOutput
    from brgm_pyro.app.report import unplaced_draws_report
    from brgm_pyro.bundled import load_domain_classifier
    from brgm_pyro.generators import load_generator

    G = load_generator("fashion-mnist-32")
    with torch.no_grad():
        own = G.synthesis(G.mapping(torch.randn(200, G.z_dim, generator=torch.Generator().manual_seed(7))))
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    blobs = torch.stack([-1 + a * torch.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / (2 * r * r))
                         for r in (3.0, 5.0, 8.0) for a in (0.5, 1.0, 1.5)]).unsqueeze(1)  # dark blobs on black
    grey = torch.zeros(4, 1, 32, 32)  # a flat grey image: no garment
    outputs = {"own": MethodOutput("own", own[:1], samples=own.clamp(-1, 1)),
               "blobs": MethodOutput("blobs", blobs[:1], samples=blobs),
               "grey": MethodOutput("grey", grey[:1], samples=grey),
               "map": MethodOutput("map", own[:1])}  # no draws: not counted
    report = unplaced_draws_report(outputs, G, reference_draws=1000)
    assert set(report) == {"own", "blobs", "grey"} and report["own"]["draws"] == 200
    assert report["own"]["count"] <= 10  # about 1% of the generator's own samples (other seed than the reference)
    assert report["grey"]["count"] == 4
    with torch.no_grad():  # the count, computed independently
        top = torch.softmax(load_domain_classifier()(blobs), -1).amax(-1)
    assert report["blobs"]["count"] == int((top < report["blobs"]["threshold"]).sum())
    calls = []  # a second report (demo's second row) reuses the threshold: no 1000 new samples
    original = G.synthesis.forward
    G.synthesis.forward = lambda *a, **k: calls.append(a[0].shape[0]) or original(*a, **k)
    again = unplaced_draws_report(outputs, G, reference_draws=1000)
    assert again == report and calls == []
    assert unplaced_draws_report(outputs, G, reference_draws=500, seed=3)["own"]["threshold"] != \
        report["own"]["threshold"] and calls == [500]  # another draw count / seed: computed anew
    G.metadata = {}
    assert unplaced_draws_report(outputs, G) == {}  # a generator without the domain classifier: not assessed


def test_draws_that_do_not_reproduce_the_observation_are_reported():
    """A draw that matches the observed half (up to the noise) passes; a dark blob does not."""
    from brgm_pyro.app.report import chi_square_quantile, inconsistent_draws_report
    from brgm_pyro.corruptions import Inpainting
    from brgm_pyro.inference import MethodOutput

    torch.manual_seed(0)
    mask = torch.zeros(1, 32, 32)
    mask[..., :16] = 1
    op = Inpainting(mask)
    truth = torch.rand(1, 1, 32, 32) * 2 - 1
    sigma = 0.1
    y = op(truth) + sigma * torch.randn(1, 1, 32, 32) * mask
    consistent = truth + 0.5 * (1 - mask) * torch.randn(3, 1, 32, 32)  # differs only where nothing is observed
    blob = torch.full((1, 1, 32, 32), -1.0)
    draws = torch.cat([consistent, blob])
    outputs = {"fullrank": MethodOutput("fullrank", truth, draws), "map": MethodOutput("map", truth)}
    # the threshold is the typical (median) draw's statistic plus the chi-square allowance
    k = 512
    statistics = ((op(draws) - y).square() * mask).flatten(1).sum(1) / sigma ** 2
    report = inconsistent_draws_report(outputs, op, y, sigma, (1, 32, 32))
    assert set(report) == {"fullrank"} and report["fullrank"]["count"] == 1 and report["fullrank"]["draws"] == 4
    centre = statistics.median()
    spread = 1.4826 * float((statistics - centre).abs().median())
    expected = float(centre) + max(chi_square_quantile(k) - k, 5 * spread)
    assert report["fullrank"]["threshold"] == pytest.approx(expected)
    # a generator that misfits (the reconstruction itself off by 0.2 on the observed half): consistent draws
    # that share the misfit are not flagged, the blob still is
    shifted = {"fullrank": MethodOutput("fullrank", truth + 0.2, torch.cat([consistent + 0.2, blob]))}
    assert inconsistent_draws_report(shifted, op, y, sigma, (1, 32, 32))["fullrank"]["count"] == 1
    assert inconsistent_draws_report(outputs, op, y, None, (1, 32, 32)) == {}  # learnt noise: no fixed test
    # the quantile against scipy's
    from scipy.stats import chi2

    for dof in (16, 512, 4096):
        assert chi_square_quantile(dof) == pytest.approx(chi2.ppf(0.999, dof), rel=1e-9)
