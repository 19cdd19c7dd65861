"""Classical baselines on real Fashion-MNIST test images: bicubic / mean fill / DeepInverse TV and
wavelet reconstructions, their weights tuned on training images, evaluated on held-out test images.

    OMP_NUM_THREADS=1 nice python benchmarks/baselines.py --out benchmarks/results/baselines

Tasks (observation noise N(0, sigma^2) on [-1, 1], sigma 0.05 by default, seeded):
  super-resolution: x4, kernel bicubic-antialias, scored on the whole image;
  inpainting: standard masks 0 (right half) and 1 (left half), every image with each mask,
              scored on the hidden region (rmse_hidden) and on the whole image.
Tuning: each method's lambda (and the wavelet) by grid search on ``--tune-images`` Fashion-MNIST
*training* images (best mean PSNR for SR, best mean hidden-region RMSE for in-painting).
Evaluation: test-split images ``--eval-start`` ... (default 5000-5099; the 100 bundled test images
are test indices below 124). Mean fill fills the holes with the mean *training* image (no generator).
Prints (and writes to OUT/baselines.md, OUT/baselines.json) a table of mean +- standard error.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

from brgm_pyro.baselines import (
    BaselineSetting, baselines_available, bicubic_upsample, mean_fill, tv_reconstruction, wavelet_reconstruction,
)
from brgm_pyro.bundled import load_test_images
from brgm_pyro.corruptions import Inpainting, SuperResolution, standard_mask
from brgm_pyro.functional import rmse_255
from brgm_pyro.metrics import compute_metrics
from brgm_pyro.training.data import FASHION_MNIST_DIR, load_fashion_mnist

SHAPE = (1, 32, 32)
GRIDS = {  # every optimum inside its grid, or at the end where lambda -> 0 (the start image wins)
    "super-resolution": {
        "tv": [BaselineSetting(w, iterations=200) for w in (1e-3, 2e-3, 5e-3, 1e-2)],
        "wavelet": [BaselineSetting(w, iterations=200, wavelet=wv, level=lv)
                    for wv, lv in (("db4", 2), ("haar", 3)) for w in (1e-7, 1e-6, 3e-6, 1e-5, 3e-5)],
    },
    "inpainting": {
        "tv": [BaselineSetting(w, iterations=200) for w in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)],
        "wavelet": [BaselineSetting(w, iterations=200, wavelet="db4", level=2) for w in (1e-5, 1e-4, 1e-3, 1e-2)],
    },
}
MASKS = (0, 1)


def observe(op, truth: torch.Tensor, noise: float, seed: int) -> torch.Tensor:
    clean = op(truth)
    g = torch.Generator().manual_seed(seed)
    return clean + noise * torch.randn(clean.shape, generator=g)


def problems(task: str, truths: torch.Tensor, noise: float, seed: int, masks: tuple[int, ...] = MASKS) -> list[dict]:
    """The problems of a task on ``truths``: one (SR) or one per standard mask of ``masks`` (in-painting; the
    noise of mask m drawn with seed ``seed + 100 (m + 1)``, so a mask's problem does not depend on the others)."""
    if task == "super-resolution":
        op = SuperResolution(4, kernel="bicubic-antialias")
        return [{"label": "x4 bicubic-antialias", "op": op, "truth": truths, "obs": observe(op, truths, noise, seed),
                 "hidden": None}]
    out = []
    for m in masks:
        mask = standard_mask(m, SHAPE[-1])
        op = Inpainting(mask)
        obs = observe(op, truths, noise, seed + 100 * (m + 1)) * mask  # holes carry no data
        out.append({"label": f"mask {m}", "op": op, "truth": truths, "obs": obs, "mask": mask,
                    "hidden": (1 - mask).expand(len(truths), *SHAPE)})
    return out


def initial_image(task: str, p: dict, mean_image: torch.Tensor) -> torch.Tensor:
    """Where the proximal solvers start: bicubic (SR) or mean fill (in-painting); the problems are
    convex, the start only decides how far a fixed number of iterations gets."""
    return bicubic_upsample(p["obs"], 4) if task == "super-resolution" else mean_fill(p["obs"], p["mask"], mean_image)


def reconstruct(method: str, task: str, p: dict, mean_image: torch.Tensor,
                setting: BaselineSetting | None) -> torch.Tensor:
    if method == "bicubic":
        return bicubic_upsample(p["obs"], 4)
    if method == "mean fill":
        return mean_fill(p["obs"], p["mask"], mean_image)
    solve = tv_reconstruction if method == "tv" else wavelet_reconstruction
    return solve(p["op"], p["obs"], SHAPE, setting, init=initial_image(task, p, mean_image))


def scores(recon: torch.Tensor, p: dict) -> dict[str, torch.Tensor]:
    values = {k: v for k, v in compute_metrics(recon, p["truth"]).items() if k in ("psnr", "ssim", "rmse")}
    if p["hidden"] is not None:
        values["rmse_hidden"] = rmse_255(recon, p["truth"], p["hidden"], dim=(1, 2, 3))
    return values


def criterion(task: str, values: list[dict[str, torch.Tensor]]) -> float:
    """Higher is better: mean PSNR (SR) or minus the mean hidden-region RMSE (in-painting)."""
    key = "psnr" if task == "super-resolution" else "rmse_hidden"
    mean = torch.cat([v[key] for v in values]).double().mean().item()
    return mean if key == "psnr" else -mean


def describe(s: BaselineSetting, method: str) -> str:
    return f"lambda={s.weight:g}" + (f", {s.wavelet} level {s.level}" if method == "wavelet" else "") + \
        f", {s.iterations} PGD iterations"


def mean_se(v: torch.Tensor) -> tuple[float, float]:
    v = v.double()
    return v.mean().item(), (v.std(unbiased=True) / math.sqrt(len(v))).item() if len(v) > 1 else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(FASHION_MNIST_DIR))
    ap.add_argument("--out", type=Path, default=None, help="write baselines.md and baselines.json here")
    ap.add_argument("--tune-images", type=int, default=10, help="training images 0..N-1 for tuning")
    ap.add_argument("--eval-start", type=int, default=5000, help="first test-split index evaluated")
    ap.add_argument("--num-eval", type=int, default=100)
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tasks", nargs="+", default=["super-resolution", "inpainting"],
                    choices=["super-resolution", "inpainting"])
    args = ap.parse_args(argv)
    if not baselines_available(wavelets=True):
        print('benchmarks/baselines.py needs DeepInverse and ptwt: pip install -e ".[baselines]"', file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    train, _ = load_fashion_mnist("train", args.data)
    test, _ = load_fashion_mnist("test", args.data)
    bundled = set(load_test_images()[2].tolist())
    eval_idx = list(range(args.eval_start, args.eval_start + args.num_eval))
    if bundled & set(eval_idx):
        raise SystemExit(f"evaluation indices overlap the bundled test images: {sorted(bundled & set(eval_idx))}")
    mean_image = train.mean(0)  # the classical mean fill: the mean training image
    tune, evaluation = train[:args.tune_images], test[eval_idx]
    header = (f"# benchmarks/baselines.py: {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
              f"{platform.processor() or platform.machine()}; noise sigma {args.noise}; tuning on training images "
              f"0-{args.tune_images - 1}; evaluation on test images {eval_idx[0]}-{eval_idx[-1]}")
    print(header, flush=True)
    result: dict = {"header": header, "tasks": {}}
    lines = [header, ""]
    for task in args.tasks:
        t0 = time.time()
        tune_problems = problems(task, tune, args.noise, args.seed + 1)
        chosen: dict[str, BaselineSetting] = {}
        tuning_rows = []
        for method, grid in GRIDS[task].items():
            best = None
            for setting in grid:
                vals = [scores(reconstruct(method, task, p, mean_image, setting), p) for p in tune_problems]
                score = criterion(task, vals)
                tuning_rows.append((method, describe(setting, method), score))
                print(f"tune {task} {method} {describe(setting, method)}: {score:.3f}", flush=True)
                if best is None or score > best[0]:
                    best = (score, setting)
            chosen[method] = best[1]
        tune_seconds = time.time() - t0
        methods = (["bicubic"] if task == "super-resolution" else ["mean fill"]) + ["tv", "wavelet"]
        names = {"bicubic": "bicubic", "mean fill": "mean fill (mean training image)",
                 "tv": "TV, DeepInverse PGD", "wavelet": "wavelet, DeepInverse PGD"}
        eval_problems = problems(task, evaluation, args.noise, args.seed + 2)
        per_method: dict[str, dict[str, torch.Tensor]] = {}
        per_problem: dict[str, dict[str, dict[str, list[float]]]] = {}
        seconds: dict[str, float] = {}
        for method in methods:
            t1 = time.time()
            collected: dict[str, list[torch.Tensor]] = {}
            for p in eval_problems:
                v = scores(reconstruct(method, task, p, mean_image, chosen.get(method)), p)
                per_problem.setdefault(p["label"], {})[method] = {k: x.tolist() for k, x in v.items()}
                for k, x in v.items():
                    collected.setdefault(k, []).append(x)
            per_method[method] = {k: torch.cat(x) for k, x in collected.items()}
            seconds[method] = time.time() - t1
        metrics = ["psnr", "ssim", "rmse"] + (["rmse_hidden"] if task == "inpainting" else [])
        n = len(per_method[methods[0]]["psnr"])
        lines += [f"## {task}: {n} problems ({len(evaluation)} held-out test images"
                  + (f" x masks {', '.join(map(str, MASKS))}" if task == "inpainting" else "") + ")", "",
                  "| method | setting | " + " | ".join(metrics) + " | seconds |",
                  "|---|---|" + "---:|" * (len(metrics) + 1)]
        for method in methods:
            setting = describe(chosen[method], method) if method in chosen else "-"
            cells = [f"{m:.3f} ± {s:.3f}" for m, s in (mean_se(per_method[method][k]) for k in metrics)]
            lines.append(f"| {names[method]} | {setting} | " + " | ".join(cells) + f" | {seconds[method]:.0f} |")
        if task == "inpainting":
            lines += ["", "Hidden-region RMSE (0-255) per mask, mean ± standard error:", "",
                      "| mask | " + " | ".join(names[m] for m in methods) + " |", "|---|" + "---:|" * len(methods)]
            for label, by_method in per_problem.items():
                cells = [f"{m:.2f} ± {s:.2f}" for m, s in
                         (mean_se(torch.tensor(by_method[meth]["rmse_hidden"])) for meth in methods)]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", f"Tuning ({len(tune_problems)} problem(s) on {len(tune)} training images, "
                  f"{tune_seconds:.0f} s; score: " + ("mean PSNR" if task == "super-resolution"
                                                    else "minus the mean hidden-region RMSE") + "):", "",
                  "| method | setting | score |", "|---|---|---:|"]
        lines += [f"| {m} | {d} | {s:.3f}" + (" (chosen)" if d == describe(chosen[m], m) else "") + " |"
                  for m, d, s in tuning_rows]
        lines.append("")
        result["tasks"][task] = {
            "chosen": {m: vars(s) for m, s in chosen.items()},
            "summary": {m: {k: mean_se(v) for k, v in vals.items()} for m, vals in per_method.items()},
            "per_problem": per_problem, "tuning": tuning_rows, "seconds": seconds, "tune_seconds": tune_seconds,
        }
        write(args.out, lines, result)  # after every task: a long run keeps what it finished
    print("\n".join(lines))
    return 0


def write(out: Path | None, lines: list[str], result: dict) -> None:
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "baselines.md").write_text("\n".join(lines) + "\n")
    (out / "baselines.json").write_text(json.dumps(result, indent=1))
    print(f"written: {out / 'baselines.md'}, {out / 'baselines.json'}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
