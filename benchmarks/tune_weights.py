"""Choose a generator's recommended weights (its ``recommended_config``) on real tuning images.

    OMP_NUM_THREADS=1 nice python benchmarks/tune_weights.py --generator NEW.pt \\
        --out benchmarks/results/tune_weights/NEW

Each candidate ``BRGMConfig`` (``--sigma-pixel`` x ``--sigma-perceptual`` x ``--kappa`` grid, prior std
per dimension; perceptual term with the generator's feature network, "none" for none) runs BRGM's MAP
(``run_method(model, "map")``, 500 Adam steps from w_avg) on the problems of ``benchmarks/baselines.py``
built from Fashion-MNIST *test* images ``--tune-start`` ... (default 6000-6019: disjoint from the 100
bundled test images, test indices below 124, and from the evaluation images 5000-5099 of
``benchmarks/prior_vs_baselines.py``; checked): x4 super-resolution (bicubic-antialias) and
in-painting with standard masks 0 and 1, noise sigma ``--noise`` (0.05, as the evaluation).
Score (lower is better): the mean over the three settings of the RMSE (0-255) on what is unknown --
the whole image for super-resolution, the hidden half for in-painting -- the criterion of the model
card.  Prints the table with standard errors and the chosen candidate; ``--out`` keeps every
per-image value (resumable: a rerun skips the candidates it has).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import harness  # noqa: E402

EVALUATION_IDS = range(5000, 5100)  # benchmarks/baselines.py's and prior_vs_baselines.py's evaluation images


def parse_sigma(text: str) -> float | None:
    return None if text == "none" else float(text)


def candidate_name(sigma_pixel: float, sigma_perceptual: float | None, kappa: float) -> str:
    perc = "none" if sigma_perceptual is None else f"{sigma_perceptual:g}"
    return f"sigma_pixel={sigma_pixel:g}, sigma_perceptual={perc}, kappa={kappa:g}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default=harness.BUNDLED, help="generator name or file, or a training checkpoint")
    ap.add_argument("--out", type=Path, default=None, help="folder for tune_weights.json / tune_weights.md")
    ap.add_argument("--data", default=None, help="Fashion-MNIST IDX folder (default: the Debian package's)")
    ap.add_argument("--tune-start", type=int, default=6000)
    ap.add_argument("--num-tune", type=int, default=20)
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--sigma-pixel", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    ap.add_argument("--sigma-perceptual", type=parse_sigma, nargs="+", default=[None, 0.0167, 0.05])
    ap.add_argument("--kappa", type=float, nargs="+", default=[0.0, 0.25])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.batch_size < 2:
        ap.error("--batch-size must be >= 2")

    import torch

    from benchmarks.baselines import problems
    from benchmarks.prior_vs_baselines import generator_identity, score_batch
    from brgm_pyro.app.features import build_features
    from brgm_pyro.bundled import load_test_images
    from brgm_pyro.inference import MethodOptions
    from brgm_pyro.models.config import BRGMConfig
    from brgm_pyro.training.data import FASHION_MNIST_DIR, load_fashion_mnist

    ids = list(range(args.tune_start, args.tune_start + args.num_tune))
    clash = (set(ids) & set(load_test_images()[2].tolist())) | (set(ids) & set(EVALUATION_IDS))
    if clash:
        ap.error(f"tuning images overlap the bundled or the evaluation images: {sorted(clash)[:10]}")
    generator = harness.load_prior(args.generator)
    features = build_features("auto", generator, "cpu")
    test, _ = load_fashion_mnist("test", args.data or FASHION_MNIST_DIR)
    tune = test[ids]
    path = None if args.out is None else args.out / "tune_weights.json"
    identity = {"generator": generator_identity(args.generator), "ids": ids, "noise": args.noise,
                "steps": args.steps, "seed": args.seed}
    saved = json.loads(path.read_text()) if path is not None and path.exists() else {"identity": identity,
                                                                                    "candidates": {}}
    if saved["identity"] != identity:
        raise SystemExit(f"{path} was made with other settings ({saved['identity']}); use another --out")
    found = saved["candidates"]
    options = MethodOptions(steps=args.steps, samples=0)
    settings = [(task, p) for task in ("super-resolution", "inpainting")
                for p in problems(task, tune, args.noise, args.seed + 3)]
    for sp, perc, kappa in itertools.product(args.sigma_pixel, args.sigma_perceptual, args.kappa):
        name = candidate_name(sp, perc, kappa)
        if name in found:
            continue
        config = BRGMConfig(sigma_pixel=sp, sigma_perceptual=perc, kappa=kappa, prior_std="per-dimension")
        per_setting = {}
        for task, p in settings:
            key = "rmse" if task == "super-resolution" else "rmse_hidden"
            values = []
            for start in range(0, len(ids), args.batch_size):
                batch = list(range(start, min(start + args.batch_size, len(ids))))
                row = score_batch(generator, features if perc is not None else None, p, batch, config, ["map"],
                                  options, [ids[i] for i in batch], args.noise)
                values += row["map"][0][key]
            per_setting[p["label"]] = values
        found[name] = per_setting
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"identity": identity, "candidates": found}, indent=1))
        print(f"{name}: " + ", ".join(f"{k} {sum(v) / len(v):.2f}" for k, v in per_setting.items()), flush=True)

    def score(per_setting: dict[str, list[float]]) -> tuple[float, float]:
        per_image = torch.tensor([list(v) for v in per_setting.values()], dtype=torch.float64).mean(0)
        return harness.mean_se(per_image.tolist())

    labels = [p["label"] for _, p in settings]
    ranked = sorted(found, key=lambda n: score(found[n])[0])
    lines = [harness.header(f"benchmarks/tune_weights.py, generator {args.generator}, test images "
                            f"{ids[0]}-{ids[-1]}, noise sigma {args.noise}, MAP {args.steps} steps"), "",
             "| candidate | " + " | ".join(f"RMSE unknown, {lab}" for lab in labels) + " | score (mean) |",
             "|---|" + "---:|" * (len(labels) + 1)]
    for n in ranked:
        cells = [harness.mean_se(found[n][lab]) for lab in labels]
        mean, se = score(found[n])
        lines.append(f"| {n}{' (chosen)' if n == ranked[0] else ''} | "
                     + " | ".join(f"{a:.2f} ± {b:.2f}" for a, b in cells) + f" | {mean:.2f} ± {se:.2f} |")
    if args.out is not None:
        (args.out / "tune_weights.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
