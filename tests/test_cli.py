"""The brgm command line: demo, reconstruct, evaluate, and the errors a user can act on."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from brgm_pyro.baselines import baselines_available
from brgm_pyro.bundled import load_test_images
from brgm_pyro.app.cli import main
from brgm_pyro.io import save_image


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def test_demo_writes_images_figure_and_metrics(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "3", "--samples", "4", "--out", str(out), "--no-progress"]) == 0
    assert "summary figure" in capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    assert set(report) == {"super-resolution", "inpainting"}
    for task in report:
        metrics = report[task]["metrics"]
        assert set(metrics) == {"map", "fullrank"}
        assert 0 < metrics["map"]["rmse"] < 255 and metrics["fullrank"]["mean_pixel_std"] > 0
        for name in ("input", "map", "fullrank_mean", "fullrank_samples", "fullrank_std", "truth"):
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
            "--out", str(tmp_path / "out")], capsys, "is 16x16 but this generator's images are 32x32")
    _fails(["reconstruct", str(img), "--task", "inpainting", "--out", str(tmp_path / "out")],
           capsys, "exactly one of a mask")
    _fails(["reconstruct", str(img), "--task", "super-resolution", "--factor", "3", "--out", str(tmp_path / "out")],
           capsys, "factor 3 must be >= 2 and divide the resolution 32")
    _fails(["reconstruct", str(img), "--observed", "--task", "super-resolution", "--out", str(tmp_path / "out")],
           capsys, "is 32x32 but super-resolution x4 (bicubic-antialias kernel) of this generator's images gives 8x8")
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
    methods = ["BRGM (MAP)", "bicubic"]
    if baselines_available():  # the optional extra (installed by the test extra, so in CI)
        methods += ["TV (DeepInverse)", "wavelet (DeepInverse)"]
    else:
        assert 'pip install -e ".[baselines]"' in md
    for method in methods:
        assert f"| {method} |" in md
    rows = (out / "evaluation-super-resolution.csv").read_text().splitlines()
    assert rows[0] == "task,method,metric,mean,std,num_images" and len(rows) == 1 + len(methods) * 5
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


# ---------------------------------------------------------------------------------------------
# Bad input (issue 9, items 6-8): each is a one-line error with exit code 2, before any computation,
# or is handled correctly.

def _one_line_error(argv, capsys, match) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"brgm {argv[0]}: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert match in err, err
    return err


@pytest.fixture
def no_generator(monkeypatch):
    """Fail the test if a command gets as far as loading the generator (i.e. starts computing)."""
    import brgm_pyro.generators as generators

    def forbidden(*args, **kwargs):
        raise AssertionError("the generator was loaded: the input should have been refused before")

    monkeypatch.setattr(generators, "load_generator", forbidden)


@pytest.fixture
def shirt(tmp_path):
    path = tmp_path / "shirt.png"
    save_image(load_test_images()[0][:1], path)
    return path


@pytest.mark.parametrize("flags, match", [
    (["--kappa", "nan"], "--kappa must be a finite number >= 0, got nan"),
    (["--kappa", "inf"], "--kappa must be a finite number >= 0, got inf"),
    (["--kappa", "-1"], "--kappa must be a finite number >= 0, got -1.0"),
    (["--layer-correlation", "1"], "--layer-correlation must be a number in [0, 1), got 1.0"),
    (["--layer-correlation", "-0.1"], "--layer-correlation must be a number in [0, 1), got -0.1"),
    (["--lambda-colin", "nan"], "--lambda-colin must be a finite number >= 0, got nan"),
    (["--lambda-pixel", "0"], "--lambda-pixel must be a positive finite number, got 0.0"),
    (["--lambda-perceptual=-inf"], "--lambda-perceptual must be a positive finite number, got -inf"),
    (["--sigma-pixel", "inf"], "--sigma-pixel must be a positive finite number, got inf"),
    (["--sigma-perceptual", "nan"], "--sigma-perceptual must be a positive finite number, got nan"),
    (["--steps", "0"], "--steps must be an integer >= 1, got 0"),
    (["--lr", "nan"], "--lr must be a positive finite number, got nan"),
    (["--samples", "0"], "--samples must be an integer >= 1, got 0"),
    (["--mean-draws", "1"], "--mean-draws must be an integer >= 2, got 1"),
    (["--factor", "1"], "--factor must be an integer >= 2, got 1"),
    (["--seed", "-3"], "--seed must be an integer in 0..4294967295, got -3"),
    (["--device", "bogus"], "--device 'bogus' is not a device"),
    (["--method", "map,,"], None),  # empty entries are ignored: valid, refused later only by no_generator
    (["--method", ","], "--method needs at least one of map, vi, fullrank, mcmc"),
])
def test_numeric_and_device_flags_are_checked_up_front(flags, match, shirt, tmp_path, capsys, no_generator):
    argv = ["reconstruct", str(shirt), "--task", "super-resolution", "--out", str(tmp_path / "out"), *flags]
    if match is None:
        with pytest.raises(AssertionError, match="generator was loaded"):
            main(argv)
        return
    _one_line_error(argv, capsys, match)
    assert not (tmp_path / "out").exists()


def test_other_commands_check_their_flags(tmp_path, capsys, no_generator):
    _one_line_error(["reconstruct", "x.png", "--task", "inpainting", "--mask-id", "7"], capsys,
                    "--mask-id must be an integer in 0..6, got 7")
    _one_line_error(["demo", "--image-index", "100", "--out", str(tmp_path / "d")], capsys,
                    "--image-index must be an integer in 0..99, got 100")
    _one_line_error(["demo", "--samples", "0", "--out", str(tmp_path / "d")], capsys, "--samples must be")
    _one_line_error(["demo", "--mean-draws", "0", "--out", str(tmp_path / "d")], capsys, "--mean-draws must be")
    _one_line_error(["evaluate", "--task", "inpainting", "--num-images", "0", "--out", str(tmp_path / "e")], capsys,
                    "--num-images must be an integer >= 1, got 0")
    _one_line_error(["evaluate", "--task", "inpainting", "--batch-size", "-1", "--out", str(tmp_path / "e")], capsys,
                    "--batch-size must be an integer >= 1")
    _one_line_error(["train-generator", "--out", str(tmp_path / "t"), "--lr", "inf"], capsys,
                    "--lr must be a positive finite number, got inf")
    _one_line_error(["train-generator", "--out", str(tmp_path / "t"), "--resolution", "48"], capsys,
                    "--resolution must be a power of two in 4..1024, got 48")
    _one_line_error(["train-generator", "--out", str(tmp_path / "t"), "--device", "bogus"], capsys,
                    "--device 'bogus' is not a device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu_is_one_line(shirt, tmp_path, capsys, no_generator):
    for device in ("cuda", "cuda:0"):
        _one_line_error(["reconstruct", str(shirt), "--task", "super-resolution", "--device", device,
                         "--out", str(tmp_path / "out")], capsys, f"--device {device}: no CUDA GPU is available here")


def _png_header_only(path, width: int, height: int) -> None:
    """A ~70-byte PNG whose IHDR declares width x height (as in test_io)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_bad_image_files_are_one_line_errors(tmp_path, capsys, no_generator):
    out = str(tmp_path / "out")
    np.save(tmp_path / "nan.npy", np.full((32, 32), np.nan, np.float32))
    _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    Image.fromarray(np.zeros((32, 32, 4), np.uint8)).save(tmp_path / "clear.png")
    for name, match in [("nan.npy", "has 1024 non-finite values (NaN or inf) of 1024"),
                        ("bomb.png", "is too large"), ("missing.png", "does not exist"),
                        ("clear.png", "has 1024 transparent pixels")]:
        argv = ["reconstruct", str(tmp_path / name), "--task", "super-resolution", "--out", out]
        _one_line_error(argv, capsys, match)
    # a folder is a data set: each of its files is checked before the generator is loaded
    _one_line_error(["reconstruct", str(tmp_path), "--task", "super-resolution", "--out", out], capsys,
                    "is too large")
    _one_line_error(["reconstruct", str(tmp_path / "*.npy"), "--task", "super-resolution", "--out", out], capsys,
                    "non-finite values")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "ok.png")
    _one_line_error(["reconstruct", str(tmp_path / "ok.png"), "--task", "inpainting", "--mask",
                     str(tmp_path / "bomb.png"), "--out", out], capsys, "bomb.png is too large")
    assert not (tmp_path / "out").exists()


def test_bad_checkpoint_is_a_one_line_error(tmp_path, capsys):
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "clear.png")
    (tmp_path / "junk.pkl").write_bytes(bytes(range(256)))
    _one_line_error(["reconstruct", str(tmp_path / "clear.png"), "--task", "super-resolution", "--generator",
                     str(tmp_path / "junk.pkl"), "--out", str(tmp_path / "out")], capsys, "junk.pkl")


def test_out_is_checked_before_any_computation(shirt, tmp_path, capsys, no_generator):
    (tmp_path / "file.txt").write_text("keep me")
    base = ["reconstruct", str(shirt), "--task", "super-resolution"]
    _one_line_error([*base, "--out", str(tmp_path / "file.txt")], capsys, "file.txt exists and is not a folder")
    _one_line_error([*base, "--out", str(tmp_path / "file.txt" / "sub")], capsys, "file.txt is a file, not a folder")
    _one_line_error([*base, "--out", str(tmp_path)], capsys,
                    "already holds files (file.txt, shirt.png); pass --overwrite")
    assert (tmp_path / "file.txt").read_text() == "keep me"
    _one_line_error(["demo", "--out", str(tmp_path)], capsys, "already holds files")
    (tmp_path / "evaluation-inpainting.md").write_text("old table")
    _one_line_error(["evaluate", "--task", "inpainting", "--out", str(tmp_path)], capsys,
                    "already holds these results (evaluation-inpainting.md); pass --overwrite")
    with pytest.raises(AssertionError, match="generator was loaded"):  # another task's tables may share the folder
        main(["evaluate", "--task", "super-resolution", "--out", str(tmp_path)])


def _strict_json(path):
    def refuse(token):
        raise AssertionError(f"non-JSON token {token} in {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_overwrite_replaces_the_previous_run_and_keeps_other_files(shirt, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["reconstruct", str(shirt), "--task", "inpainting", "--mask-id", "1", "--steps", "1", "--no-progress",
            "--out", str(out)]
    assert main([*base, "--method", "vi", "--samples", "2"]) == 0
    assert (out / "vi_mean.png").is_file() and (out / "vi_std.png").is_file()
    (out / "notes.txt").write_text("mine")
    before = (out / "metrics.json").read_text()
    _one_line_error([*base, "--method", "map"], capsys, "already holds files")
    assert (out / "metrics.json").read_text() == before  # refused: nothing touched
    assert main([*base, "--method", "map", "--overwrite"]) == 0
    names = {p.name for p in out.iterdir()}
    # the bundled weights for mask 1 have a misfit term: MAP also writes G(w*) alone (map_generator.png)
    assert names == {"input.png", "truth.png", "map.png", "map_generator.png", "metrics.json", "summary.png",
                     "notes.txt"}, names
    assert set(_strict_json(out / "metrics.json")["metrics"]) == {"map"}


def test_sixteen_bit_png_is_scaled_and_center_crop_flag(tmp_path, capsys):
    rng = np.random.default_rng(3)
    deep = rng.integers(0, 65536, (32, 32), dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    out = tmp_path / "out"
    assert main(["reconstruct", str(tmp_path / "deep.png"), "--task", "super-resolution", "--method", "map",
                 "--steps", "1", "--no-progress", "--out", str(out)]) == 0
    truth = np.asarray(Image.open(out / "truth.png")).astype(int)
    assert np.abs(truth - np.round(deep / 65535 * 255)).max() <= 1  # scaled by 65535, not clipped at 255
    assert (truth == 255).mean() < 0.01
    wide = np.zeros((32, 40), np.uint8)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    _one_line_error(["reconstruct", str(tmp_path / "wide.png"), "--task", "super-resolution", "--out",
                     str(tmp_path / "w")], capsys, "not square (40x32); pass --center-crop to crop its central square")
    assert main(["reconstruct", str(tmp_path / "wide.png"), "--task", "super-resolution", "--method", "map",
                 "--steps", "1", "--no-progress", "--center-crop", "--out", str(tmp_path / "w")]) == 0
    assert Image.open(tmp_path / "w" / "truth.png").size == (32, 32)


def test_unparsable_flags_are_one_line_errors(capsys):
    for argv, match in [(["reconstruct", "x.png", "--task", "inpainting", "--steps", "1.5"],
                         "argument --steps: invalid int value: '1.5'"),
                        (["demo", "--kappa", "much"], "argument --kappa: invalid float value: 'much'")]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"brgm {argv[0]}: error: ") and err.count("\n") == 1 and match in err, err


def test_json_outputs_are_strict(tmp_path):
    from brgm_pyro.jsonfile import json_safe, write_json

    data = {"psnr": float("inf"), "rmse": float("nan"), "ok": [1.5, float("-inf")], "n": 3}
    assert json_safe(data) == {"psnr": None, "rmse": None, "ok": [1.5, None], "n": 3}
    path = write_json(data, tmp_path / "m.json")
    assert _strict_json(path) == {"psnr": None, "rmse": None, "ok": [1.5, None], "n": 3}


def test_overwrite_clears_only_known_files_of_each_command(tmp_path):
    from types import MappingProxyType

    from brgm_pyro.app.settings import Settings, clear_previous_outputs

    def settings(command, out, overwrite=True, task=None):
        return Settings(command, MappingProxyType({}), out=out, overwrite=overwrite, task=task)

    demo = tmp_path / "demo"
    for rel in ("metrics.json", "summary.png", "super-resolution/map.png", "super-resolution/vi_std.png",
                "inpainting/truth.png", "inpainting/mine.txt", "notes.md"):
        (demo / rel).parent.mkdir(parents=True, exist_ok=True)
        (demo / rel).write_text("x")
    removed = clear_previous_outputs(settings("demo", demo))
    assert len(removed) == 5
    left = sorted(str(p.relative_to(demo)) for p in demo.rglob("*"))
    assert left == ["inpainting", "inpainting/mine.txt", "notes.md"]  # emptied task folder removed
    ev = tmp_path / "ev"
    ev.mkdir()
    for name in ("evaluation-inpainting.md", "evaluation-inpainting.csv", "evaluation-super-resolution.md"):
        (ev / name).write_text("x")
    assert {p.name for p in clear_previous_outputs(settings("evaluate", ev, task="inpainting"))} == {
                                                                  "evaluation-inpainting.md",
                                                                  "evaluation-inpainting.csv"}
    assert [p.name for p in ev.iterdir()] == ["evaluation-super-resolution.md"]
    assert clear_previous_outputs(settings("demo", demo, overwrite=False)) == []


def test_fullrank_method_gives_a_posterior_of_the_pixel_likelihood_model(shirt, tmp_path, capsys):
    out = tmp_path / "fr"
    argv = ["reconstruct", str(shirt), "--task", "inpainting", "--mask-id", "0", "--method", "map,fullrank",
            "--steps", "20", "--samples", "8", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "metrics.json").read_text())
    metrics = report["metrics"]
    assert metrics["fullrank"]["mean_pixel_std"] > 0 and np.isfinite(metrics["fullrank"]["rmse"])
    assert (out / "fullrank_mean.png").exists() and (out / "fullrank_samples.png").exists()
    # MAP used the bundled model's balance for mask 0 (colinearity, perceptual and misfit terms); fullrank its
    # calibrated model: the same pixel noise and misfit scale, no colinearity or perceptual term
    assert report["config"]["kappa"] > 0 and report["config"]["sigma_perceptual"] is not None
    assert report["fullrank_config"]["kappa"] == 0 and report["fullrank_config"]["sigma_perceptual"] is None
    assert report["fullrank_config"]["sigma_pixel"] == report["config"]["sigma_pixel"]
    assert report["fullrank_config"]["misfit_scale"] == report["config"]["misfit_scale"] == 0.2
    assert report["fullrank_config"]["prior_std"] == "per-dimension"
    # it does not infer noise levels: a clear error, not a silently different model
    _one_line_error(["reconstruct", str(shirt), "--task", "super-resolution", "--method", "fullrank", "--steps", "2",
                     "--learn-noise", "--no-progress", "--out", str(tmp_path / "x")], capsys, "--learn-noise")

def _without_seconds(report: dict) -> dict:
    return {task: {**entry, "metrics": {m: {k: v for k, v in values.items() if k != "seconds"}
                                        for m, values in entry["metrics"].items()}}
            for task, entry in report.items()}


@pytest.mark.slow
def test_demo_rows_in_two_processes_equal_the_sequential_run(tmp_path, capsys):
    """``brgm demo`` solves its two rows in two processes where the cores allow (one thread each);
    every number and image equals the one-process run's."""
    from brgm_pyro.app.parallel import problem_processes

    runs = {}
    for processes in ("1", "2"):
        out = tmp_path / f"p{processes}"
        assert main(["demo", "--steps", "4", "--samples", "6", "--out", str(out), "--processes", processes]) == 0
        runs[processes] = out
    printed = capsys.readouterr().out
    assert "in-painting, mask 0: map, fullrank (in a second process, no progress bar)" in printed
    one, two = (json.loads((runs[p] / "metrics.json").read_text()) for p in ("1", "2"))
    assert _without_seconds(one) == _without_seconds(two)
    for task in one:
        for name in ("map", "fullrank_mean", "fullrank_samples", "fullrank_std"):
            a, b = (np.asarray(Image.open(runs[p] / task / f"{name}.png")) for p in ("1", "2"))
            assert np.array_equal(a, b), (task, name)
    tiny = SimpleNamespace(device=torch.device("cpu"))
    threads = torch.get_num_threads()  # the rule divides the cores by this process's thread count
    try:
        torch.set_num_threads(1)
        assert problem_processes(2, tiny, cores=2) == 2 and problem_processes(2, tiny, cores=1) == 1
        torch.set_num_threads(2)
        assert problem_processes(2, tiny, cores=2) == 1 and problem_processes(8, tiny, cores=8) == 4
    finally:
        torch.set_num_threads(threads)
    assert problem_processes(1, tiny, cores=8) == 1 and problem_processes(2, tiny, requested=1) == 1
    assert problem_processes(2, SimpleNamespace(device=torch.device("meta")), cores=8) == 1  # not a CPU: one process


def test_map_with_a_misfit_term_writes_the_reconstruction_and_the_generator_image(shirt, tmp_path, one_thread):
    """With --misfit-scale, map.png is G(w*) + E[r | y, w*] (the joint MAP, models.misfit), which reproduces the
    observed half more closely than G(w*) alone (map_generator.png); the hidden half is G(w*)'s."""
    from brgm_pyro.corruptions import standard_mask
    from brgm_pyro.io import load_image

    out = tmp_path / "out"
    assert main(["reconstruct", str(shirt), "--task", "inpainting", "--mask-id", "0", "--steps", "20",
                 "--no-progress", "--method", "map", "--misfit-scale", "0.2", "--out", str(out)]) == 0
    recon, generated = load_image(out / "map.png", channels=1), load_image(out / "map_generator.png", channels=1)
    truth = load_image(out / "truth.png", channels=1)
    mask = standard_mask(0, truth.shape[-1]).expand_as(truth) > 0
    assert (recon - truth)[mask].square().mean() < 0.5 * (generated - truth)[mask].square().mean()
    assert (recon - generated)[~mask].abs().max() <= 1 / 127.5 + 1e-6  # hidden pixels: r's mean is 0
    # the paper's model over it with --overwrite (the bundled weights' misfit term turned off): one MAP image, the
    # old G(w*) removed
    assert main(["reconstruct", str(shirt), "--task", "inpainting", "--mask-id", "0", "--steps", "2",
                 "--no-progress", "--method", "map", "--misfit-scale", "none", "--out", str(out), "--overwrite"]) == 0
    assert (out / "map.png").is_file() and not (out / "map_generator.png").exists()


def test_mean_draws_reaches_the_methods_and_the_run_identity(tiny_generator, tmp_path, monkeypatch):
    """--mean-draws: into MethodOptions of a single-image run and a data-set run, and into done.json's identity
    (a resumed run with another value is refused, as for --samples)."""
    from brgm_pyro.app import dataset_cli, parallel
    from brgm_pyro.app.parser import build_parser
    from brgm_pyro.app.settings import Settings, resolve_settings
    from brgm_pyro.corruptions import make_corruption
    from brgm_pyro.inference import MethodOptions
    from brgm_pyro.io import save_image

    image = tmp_path / "x.png"
    save_image(torch.zeros(1, 1, 16, 16), image)
    argv = ["reconstruct", str(image), "--task", "inpainting", "--mask-id", "0", "--features", "none",
            "--out", str(tmp_path / "out"), "--mean-draws", "7"]
    settings = resolve_settings(build_parser().parse_args(argv), argv)
    assert settings.mean_draws == 7
    seen = []
    monkeypatch.setattr(parallel, "run_methods", lambda model, methods, options, seed: seen.append(options) or [{}])
    parallel.solve_problem(settings, tiny_generator, None, make_corruption("inpainting", 16, mask_id=0),
                           torch.zeros(1, 16, 16), 1.0)
    assert seen[0].mean_draws == 7 and seen[0].samples == 64
    identity = dataset_cli._run_identity(settings, "mask 0", ["fullrank"], settings.samples)
    assert identity["mean_draws"] == 7
    default = resolve_settings(build_parser().parse_args(argv[:-2]), argv[:-2])
    assert default.mean_draws == Settings.mean_draws == MethodOptions().mean_draws  # one default, not three
