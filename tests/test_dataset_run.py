"""Data-set runs: collecting images, per-image outputs, the summary, --resume, interruption, the
evaluation through the same runner, and torchrun (2 gloo processes) giving the same summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brgm_pyro.app import dataset_run
from brgm_pyro.bundled import load_test_images
from brgm_pyro.app.cli import main
from brgm_pyro.app.dataset_run import collect_images, image_seed
from brgm_pyro.app.distributed import DistributedContext, configure_threads, init_distributed, shard
from brgm_pyro.io import load_image, save_image


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def _strict(text: str):
    def refuse(name):
        raise AssertionError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _folder(tmp_path: Path, n: int) -> Path:
    folder = tmp_path / "images"
    for i, img in enumerate(load_test_images()[0][:n]):
        save_image(img, folder / f"img{i}.png")
    return folder


def _without_seconds(summary: dict) -> dict:
    rows = [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in summary["images"]]
    agg = {k: v for k, v in summary["aggregate"].items() if not k.endswith("_seconds")}
    return {"images": rows, "aggregate": agg, "complete": summary["complete"]}


def test_collect_images_from_files_folders_and_globs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        save_image(torch.zeros(1, 8, 8), folder / "x.png")
        np.save(folder / "y.npy", np.zeros((8, 8), np.uint8))
    (a / "notes.txt").write_text("not an image")
    found = collect_images([a, str(b / "*.png"), a / "x.png"])  # a/x.png named twice counts once
    assert [s.path for s in found] == [a / "x.png", a / "y.npy", b / "x.png"]
    assert [s.index for s in found] == [0, 1, 2]
    assert len({s.name for s in found}) == 3 and found[1].name == "y"  # x collides, y does not
    assert collect_images([a / "x.png", a / "x.png"])[0].name == "x"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect_images([tmp_path / "missing.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        collect_images([tmp_path / "empty"])
    with pytest.raises(ValueError, match="matches no image files"):
        collect_images([str(tmp_path / "*.jpg")])


def test_image_seeds_depend_on_index_and_seed_only():
    seeds = {image_seed(0, i) for i in range(1000)}
    assert len(seeds) == 1000 and image_seed(3, 7) == image_seed(3, 7)
    assert image_seed(0, 1) != image_seed(1, 0)


def test_threads_and_sharding_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_distributed("cpu")
    assert not ctx.initialized and (ctx.rank, ctx.world_size) == (0, 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert configure_threads(None, DistributedContext(local_world_size=2)) == 1
    assert configure_threads(2, ctx) == 2
    with pytest.raises(ValueError, match="--threads must be >= 1"):
        configure_threads(0, ctx)
    items = list(range(7))
    parts = [shard(items, DistributedContext(rank=r, world_size=3)) for r in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]


def test_folder_in_folders_out_with_summary_and_batched_map(tmp_path):
    folder = _folder(tmp_path, 3)
    out = tmp_path / "out"
    args = ["reconstruct", str(folder), "--task", "super-resolution", "--method", "map,vi", "--steps", "2",
            "--samples", "4", "--no-progress", "--batch-size", "2"]
    assert main(args + ["--out", str(out)]) == 0
    summary = _strict((out / "summary.json").read_text())
    assert summary["complete"] and [r["name"] for r in summary["images"]] == ["img0", "img1", "img2"]
    for row in summary["images"]:
        sub = out / row["name"]
        for name in ("input", "truth", "map", "vi_mean", "vi_samples", "vi_std"):
            assert (sub / f"{name}.png").is_file(), name
        assert (sub / "done.json").is_file()
        report = _strict((sub / "metrics.json").read_text())
        metrics = report["metrics"]
        assert report["config"]["sigma_pixel"] > 0 and report["index"] == int(row["name"][-1])
        assert row["map_rmse"] == metrics["map"]["rmse"] and row["vi_mean_pixel_std"] > 0
        # the float reconstruction (unclamped) and the 8-bit image agree; the RMSE is that of the float one
        recon = torch.from_numpy(np.load(sub / "map.npy"))[None]
        assert (recon.clamp(-1, 1) - load_image(sub / "map.png", channels=1)).abs().max() <= 1 / 127.5 + 1e-6
        truth = load_image(folder / f"{row['name']}.png", channels=1)
        rmse = float(((recon - truth) * 127.5).square().mean().sqrt())
        assert row["map_rmse"] == pytest.approx(rmse, rel=1e-5)
    csv_rows = (out / "summary.csv").read_text().splitlines()
    assert len(csv_rows) == 4
    assert csv_rows[0].startswith("index,name,source,corruption,map_mae,map_psnr,map_rmse,map_seconds")
    mean = np.mean([r["map_rmse"] for r in summary["images"]])
    assert summary["aggregate"]["map_rmse"]["mean"] == pytest.approx(mean)

    # batching MAP does not change the per-image results (the plate makes B independent problems)
    out1 = tmp_path / "batch1"
    assert main(args[:6] + ["--steps", "2", "--no-progress", "--batch-size", "1", "--out", str(out1)]) == 0
    single = _strict((out1 / "summary.json").read_text())["images"]
    for a, b in zip(single, summary["images"]):
        assert a["map_rmse"] == pytest.approx(b["map_rmse"], rel=1e-4, abs=1e-4)


def test_resume_skips_finished_images_and_interruption_keeps_them(tmp_path, capsys, monkeypatch):
    folder = _folder(tmp_path, 3)
    out = tmp_path / "out"
    args = ["reconstruct", str(folder / "*.png"), "--task", "inpainting", "--mask-id", "1", "--method", "map",
            "--steps", "2", "--no-progress", "--batch-size", "1", "--out", str(out)]

    real_save = dataset_run.save_image_outputs
    calls = []

    def save_then_interrupt(*a, **k):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(a[1].name)
        return real_save(*a, **k)

    monkeypatch.setattr(dataset_run, "save_image_outputs", save_then_interrupt)
    assert main(args) == 130  # Ctrl-C: one line (tests/test_first_hour.py), the finished images kept
    partial = _strict((out / "summary.json").read_text())
    assert not partial["complete"] and [r["name"] for r in partial["images"]] == ["img0", "img1"]
    assert not (out / "img2" / "done.json").exists()

    monkeypatch.setattr(dataset_run, "save_image_outputs", real_save)
    assert main(args) == 2  # finished results are never overwritten silently
    assert "pass --resume" in capsys.readouterr().err
    before = (out / "img0" / "metrics.json").stat().st_mtime_ns
    assert main(args + ["--resume"]) == 0
    assert (out / "img0" / "metrics.json").stat().st_mtime_ns == before  # skipped
    done = _strict((out / "summary.json").read_text())
    assert done["complete"] and [r["name"] for r in done["images"]] == ["img0", "img1", "img2"]
    assert done["images"][:2] == partial["images"]
    assert main(args[:-1] + [str(out), "--resume", "--steps", "3"]) == 2  # other settings: refused
    assert "steps differ" in capsys.readouterr().err


def test_evaluate_runs_map_through_the_data_set_runner(tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", "--task", "super-resolution", "--num-images", "3", "--steps", "2", "--no-lpips",
                 "--batch-size", "2", "--out", str(out), "--no-progress"]) == 0
    summary = _strict((out / "super-resolution" / "summary.json").read_text())
    assert [r["name"] for r in summary["images"]] == ["test-000", "test-001", "test-002"]
    assert (out / "super-resolution" / "test-002" / "map.npy").is_file()
    rows = (out / "evaluation-super-resolution.csv").read_text().splitlines()
    brgm_rmse = next(r for r in rows if r.startswith("super-resolution,BRGM (MAP),rmse,")).split(",")[3]
    assert float(brgm_rmse) == pytest.approx(summary["aggregate"]["map_rmse"]["mean"], rel=1e-4)


def test_batches_never_mix_corruptions():
    from brgm_pyro.app.dataset_run import DatasetPlan, ImageSource, _batches

    ops = ["mask0", "mask1", "mask2"]
    plan = DatasetPlan("inpainting", lambda i: ops[i % 3], ["map"], (1, 32, 32), build_model=None,
                       batch_size=2, label_for=lambda i: ops[i % 3])
    sources = [ImageSource(i, f"im{i}") for i in range(8)]
    batches = [[s.index for s in b] for b in _batches(sources, plan)]
    assert batches == [[0, 3], [1, 4], [2, 5], [6], [7]]
    assert sorted(i for b in batches for i in b) == list(range(8))


def _torchrun(nproc: int, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "brgm_pyro.app.cli", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


@pytest.mark.slow
def test_torchrun_two_gloo_processes_give_the_one_process_summary(tmp_path):
    common = ["--bundled-test-images", "--num-images", "5", "--task", "super-resolution", "--method", "map,vi",
              "--steps", "2", "--samples", "4", "--batch-size", "2", "--no-progress", "--threads", "1"]
    assert main(["reconstruct", *common, "--out", str(tmp_path / "one")]) == 0
    run = _torchrun(2, ["reconstruct", *common, "--out", str(tmp_path / "two")], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "2 process(es)" in run.stdout
    one = _strict((tmp_path / "one" / "summary.json").read_text())
    two = _strict((tmp_path / "two" / "summary.json").read_text())
    assert _without_seconds(two) == _without_seconds(one)
    assert len(two["images"]) == 5
    # the check of the 100-image run (benchmarks/compare_summaries.py) agrees, and sees a change
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_summaries.py"
    paths = [str(tmp_path / name / "summary.json") for name in ("one", "two")]
    same = subprocess.run([sys.executable, str(script), *paths], capture_output=True, text=True)
    assert same.returncode == 0 and "0 differ (identical)" in same.stdout, same.stdout + same.stderr
    two["images"][3]["map_psnr"] = two["images"][3]["map_psnr"] + 0.5
    (tmp_path / "changed.json").write_text(json.dumps(two))
    changed = subprocess.run([sys.executable, str(script), paths[0], str(tmp_path / "changed.json")],
                             capture_output=True, text=True)
    assert changed.returncode == 1 and "largest absolute difference 0.5" in changed.stdout, changed.stdout

    ev = ["evaluate", "--task", "super-resolution", "--num-images", "4", "--steps", "2", "--no-lpips",
          "--batch-size", "2", "--no-progress", "--threads", "1"]
    assert main([*ev, "--out", str(tmp_path / "ev1")]) == 0
    run = _torchrun(2, [*ev, "--out", str(tmp_path / "ev2")], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    csv1 = (tmp_path / "ev1" / "evaluation-super-resolution.csv").read_text()
    assert (tmp_path / "ev2" / "evaluation-super-resolution.csv").read_text() == csv1


def test_data_set_input_errors_are_clear(tmp_path, capsys):
    folder = _folder(tmp_path, 1)
    for argv, message in [
        (["reconstruct", "--task", "super-resolution"], "give an image file, several, a folder"),
        (["reconstruct", str(folder), "--bundled-test-images", "--task", "super-resolution"], "not both"),
        (["reconstruct", str(folder), "--save-inference-data", "--task", "super-resolution"], "is for one image"),
        (["reconstruct", str(tmp_path / "*.jpg"), "--task", "super-resolution"], "matches no image files"),
        (["reconstruct", str(folder), "--batch-size", "0", "--task", "super-resolution", "--out", str(tmp_path / "o")],
         "--batch-size must be an integer >= 1"),
    ]:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
