"""Choose a generator's recommended weights per setting (its ``recommended_configs``) on real tuning images.

    OMP_NUM_THREADS=2 nice python benchmarks/tune_weights.py --generator NEW.pt \\
        --out benchmarks/results/tune_weights/NEW \\
        --baselines benchmarks/results/tune_weights/baselines-on-tuning-images/baselines.json

Each candidate ``BRGMConfig`` (``--sigma-pixel`` x ``--sigma-perceptual`` x ``--kappa`` x ``--misfit-scale`` x
``--layer-correlation`` grid, prior std per dimension; perceptual term with the generator's feature network, "none"
for none; misfit term ``models.misfit``, "none" for the paper's model, the default; layer correlation of the prior,
``models.LayerCorrelatedPrior``, 0 for the paper's independent layers, the default) runs BRGM's MAP
(``run_method(model, "map")``, 500 Adam steps from w_avg) on the problems of ``benchmarks/baselines.py``
(its ``problems``, same noise seeds) built from Fashion-MNIST *test* images ``--tune-start`` ... (default
6000-6019: disjoint from the 100 bundled test images, test indices below 124, and from the evaluation
images 5000-5099 of ``benchmarks/prior_vs_baselines.py``; checked): x4 super-resolution
(bicubic-antialias) and in-painting with standard masks 0 and 1, noise sigma ``--noise``.

The choice is made per setting (the tasks want different weights: a tight pixel likelihood for
super-resolution, a loose one for in-painting): among the candidates whose MAP reproduces what is
observed -- observed residual RMS |f(x) - y| / noise at most 1.25 on at least 80% of the tuning images
(issue #26's fit requirement) -- the one with the lowest mean RMSE (0-255) on what is unknown (the whole
image for super-resolution, the hidden half for in-painting); when no candidate fits, the lowest RMSE,
flagged.  ``--baselines`` (``benchmarks/baselines.py --eval-start 6000 --num-eval 20``'s JSON) adds the
paired per-image comparison of each chosen candidate with the tuned baselines on the same problems (checked
to be the same: the bicubic / mean-fill scores recomputed here must equal the stored ones).  Prints the
tables and the metadata (``recommended_configs`` and, for settings without an entry, ``recommended_config``:
the lowest mean of the three settings among the candidates that fit all three -- or, with ``--common-masks``, of
standard masks that have no entry, the settings that balance actually serves); ``--out`` keeps every
per-image value (resumable: a rerun skips the candidates it has) and the metadata as ``recommended.json``,
the ``--weights`` of ``python -m brgm_pyro.training.model_card``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Callable

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import harness  # noqa: E402
from benchmarks.prior_vs_baselines import (  # noqa: E402
    BASELINE_NAMES, OBSERVED_TARGET, check_same_problems, generator_identity, key_metric, paired, score_batch)

EVALUATION_IDS = range(5000, 5100)  # benchmarks/baselines.py's and prior_vs_baselines.py's evaluation images
FIT_TARGET = OBSERVED_TARGET  # issue #26: observed residual within 1.25x the noise ...
FIT_SHARE = 0.8  # ... on 80% of the images


def parse_sigma(text: str) -> float | None:
    return None if text == "none" else float(text)


def candidate_name(sigma_pixel: float, sigma_perceptual: float | None, kappa: float,
                   misfit_scale: float | None = None, layer_correlation: float = 0.0) -> str:
    perc = "none" if sigma_perceptual is None else f"{sigma_perceptual:g}"
    misfit = "" if misfit_scale is None else f", misfit_scale={misfit_scale:g}"
    layers = "" if layer_correlation == 0 else f", layer_correlation={layer_correlation:g}"
    return f"sigma_pixel={sigma_pixel:g}, sigma_perceptual={perc}, kappa={kappa:g}{misfit}{layers}"


def candidate_config(name: str) -> dict[str, float | None]:
    """The weights a candidate's name stands for (inverse of ``candidate_name``; ``misfit_scale`` None and
    ``layer_correlation`` 0: the paper's model, written out so that a setting's entry does not inherit the common
    balance's)."""
    parts = dict(part.split("=") for part in name.split(", "))
    return {"sigma_pixel": float(parts["sigma_pixel"]), "sigma_perceptual": parse_sigma(parts["sigma_perceptual"]),
            "kappa": float(parts["kappa"]), "misfit_scale": parse_sigma(parts.get("misfit_scale", "none")),
            "layer_correlation": float(parts.get("layer_correlation", 0.0))}


def unknown_metric(label: str) -> str:
    return "rmse" if label.startswith("x") else "rmse_hidden"


def mean_unknown(found: dict, name: str, label: str) -> float:
    """A candidate's mean RMSE on what is unknown in one setting (the score it is chosen by)."""
    return harness.mean_se(found[name][label][unknown_metric(label)])[0]


def fits(values: dict[str, list[float]], key: str = "observed_residual") -> tuple[int, bool]:
    """How many tuning images the MAP fits (observed residual <= 1.25 noise) and whether that is >= 80%;
    ``key="generator_residual"``: G(w*) alone (differs from the MAP image with a misfit term)."""
    values = values.get(key, values["observed_residual"])
    within = sum(v <= FIT_TARGET for v in values)
    return within, within >= FIT_SHARE * len(values)


def fit_cell(values: dict[str, list[float]]) -> str:
    """'k/n' images fitted, with G(w*)'s own count in parentheses where a misfit term makes it differ."""
    n = len(values["observed_residual"])
    cell = f"{fits(values)[0]}/{n}"
    if values.get("generator_residual", values["observed_residual"]) != values["observed_residual"]:
        cell += f" (G(w*) alone {fits(values, 'generator_residual')[0]}/{n})"
    return cell


def choose(found: dict[str, dict[str, dict[str, list[float]]]], label: str) -> tuple[str, bool]:
    """The chosen candidate of a setting: lowest mean unknown RMSE among those that fit; (name, fitted)."""
    def rmse(name: str) -> float:
        return mean_unknown(found, name, label)

    fitting = [n for n in found if fits(found[n][label])[1]]
    return (min(fitting, key=rmse), True) if fitting else (min(found, key=rmse), False)


def common_unknown(found: dict, name: str, labels: list[str]) -> float:
    """A candidate's mean over the settings of its mean RMSE on what is unknown (the common balance's score)."""
    return sum(mean_unknown(found, name, lab) for lab in labels) / len(labels)


def choose_common(found: dict[str, dict[str, dict[str, list[float]]]], labels: list[str]) -> tuple[str, bool]:
    """The balance for settings without their own entry (``recommended_config``: other masks, kernels and
    tasks): the lowest mean over the settings of the unknown RMSE among the candidates that fit every
    setting; (name, fitted)."""
    def score(name: str) -> float:
        return common_unknown(found, name, labels)

    fitting = [n for n in found if all(fits(found[n][lab])[1] for lab in labels)]
    return (min(fitting, key=score), True) if fitting else (min(found, key=score), False)


def entry_name(entry: dict) -> str:
    """The candidate name of a recommended weights entry (``recommended.json``'s, absent keys at their defaults)."""
    return candidate_name(entry["sigma_pixel"], entry.get("sigma_perceptual"), entry.get("kappa", 0.0),
                          entry.get("misfit_scale"), entry.get("layer_correlation", 0.0))


def neighbours(a: str, b: str) -> bool:
    """Two candidates whose weights differ in exactly one (``candidate_config``)."""
    ca, cb = candidate_config(a), candidate_config(b)
    return sum(ca[key] != cb[key] for key in ca) == 1


def descend(found: dict, start: str, score: Callable[[str], float], fitting: Callable[[str], bool]) -> list[str]:
    """Coordinate-wise choice from an incumbent ``start``: move to the best-scoring fitting candidate that differs
    from the current one in one weight while that improves the score; the path, ``start`` first and the choice last.
    A new weight (e.g. ``--layer-correlation``) is so tuned with the others at their chosen values, then the
    others given it, and an incumbent stays unless one change at a time improves on it (no jump across the grid
    to a candidate that differs everywhere by noise on 20 images).  ``fitting`` and ``score`` are asked about the
    current candidate's neighbours only (so they may measure on demand, ``--common-masks``)."""
    if start not in found:
        raise SystemExit(f"--start: its candidate {start!r} was not measured here (add its weights to the grid)")
    path = [start]
    while True:
        better = [n for n in list(found) if neighbours(n, path[-1]) and fitting(n) and score(n) < score(path[-1])]
        if not better:
            return path
        path.append(min(better, key=score))


def paired_lines(found: dict, stored: dict, settings: list[tuple[str, dict]], chosen: dict[str, str]) -> list[str]:
    """Per setting: the chosen candidate minus each stored baseline, per image (PSNR for super-resolution,
    hidden RMSE for in-painting), mean +- standard error and the images on which BRGM is better."""
    lines = ["Chosen candidates against the tuned baselines on the same tuning problems (BRGM MAP minus "
             "baseline, per image: PSNR for super-resolution, higher is better; hidden RMSE for in-painting, "
             "lower is better; mean ± standard error, images where BRGM is better):", "",
             "| setting | metric | " + " | ".join(BASELINE_NAMES.values()) + " |", "|---|---|" + "---:|" * 4]
    for task, p in settings:
        label = p["label"]
        metric, sign = key_metric(task)
        ours = found[chosen[label]][label][metric]
        cells = []
        for method in BASELINE_NAMES:
            theirs = stored["tasks"][task]["per_problem"][label].get(method)
            if theirs is None:
                cells.append("-")
                continue
            mean, se, wins = paired(ours, theirs[metric], sign)
            cells.append(f"{mean:+.2f} ± {se:.2f} ({wins}/{len(ours)})")
        lines.append(f"| {label} | {metric} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default=harness.BUNDLED, help="generator name or file, or a training checkpoint")
    ap.add_argument("--out", type=Path, default=None, help="folder for tune_weights.json / tune_weights.md")
    ap.add_argument("--baselines", type=Path, default=None,
                    help="benchmarks/baselines.py's baselines.json on the same tuning images (paired comparison)")
    ap.add_argument("--data", default=None, help="Fashion-MNIST IDX folder (default: the Debian package's)")
    ap.add_argument("--tune-start", type=int, default=6000)
    ap.add_argument("--num-tune", type=int, default=20)
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--sigma-pixel", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    ap.add_argument("--sigma-perceptual", type=parse_sigma, nargs="+", default=[None, 0.0167, 0.05])
    ap.add_argument("--kappa", type=float, nargs="+", default=[0.0, 0.25])
    ap.add_argument("--misfit-scale", type=parse_sigma, nargs="+", default=[None],
                    help="tau of the generator's misfit (models.misfit; 'none': the paper's model)")
    ap.add_argument("--layer-correlation", type=float, nargs="+", default=[0.0],
                    help="correlation of the Gaussian prior between the layers of W+ (models.LayerCorrelatedPrior; "
                         "0: the paper's independent layers)")
    ap.add_argument("--start", type=Path, default=None,
                    help="a previous recommended.json: choose coordinate-wise from its weights (``descend``) "
                         "instead of the lowest RMSE of the whole grid")
    ap.add_argument("--common-masks", type=int, nargs="+", default=None, metavar="MASK",
                    help="standard in-painting masks without their own entry on which to choose the balance for every "
                         "other setting (``recommended_config``), instead of the mean over the tuned settings; "
                         "measured on demand (with --start: the candidates the walk visits)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="the seed benchmarks/baselines.py ran with")
    args = ap.parse_args(argv)
    if args.batch_size < 2:
        ap.error("--batch-size must be >= 2")
    from benchmarks.baselines import MASKS
    from brgm_pyro.corruptions import NUM_STANDARD_MASKS
    bad = [m for m in args.common_masks or () if m in MASKS or not 0 <= m < NUM_STANDARD_MASKS]
    if bad:
        ap.error(f"--common-masks {bad}: choose standard masks 0-{NUM_STANDARD_MASKS - 1} that have no entry of their "
                 f"own (the tuned masks are {list(MASKS)})")
    if args.baselines is not None and not args.baselines.exists():
        ap.error(f"{args.baselines} does not exist: run benchmarks/baselines.py --eval-start {args.tune_start} "
                 f"--num-eval {args.num_tune} --out {args.baselines.parent} first")

    from benchmarks.baselines import problems
    from brgm_pyro.app.features import build_features
    from brgm_pyro.bundled import load_test_images
    from brgm_pyro.corruptions import setting_name
    from brgm_pyro.inference import MethodOptions
    from brgm_pyro.models.config import BRGMConfig
    from brgm_pyro.training.data import FASHION_MNIST_DIR, load_fashion_mnist

    ids = list(range(args.tune_start, args.tune_start + args.num_tune))
    clash = (set(ids) & set(load_test_images()[2].tolist())) | (set(ids) & set(EVALUATION_IDS))
    if clash:
        ap.error(f"tuning images overlap the bundled or the evaluation images: {sorted(clash)[:10]}")
    test, _ = load_fashion_mnist("test", args.data or FASHION_MNIST_DIR)
    tune = test[ids]
    # the problems of benchmarks/baselines.py on these images: its evaluation seed (seed + 2)
    settings = [(task, p) for task in ("super-resolution", "inpainting")
                for p in problems(task, tune, args.noise, args.seed + 2)]
    stored = None
    if args.baselines is not None:
        stored = json.loads(args.baselines.read_text())
        train, _ = load_fashion_mnist("train", args.data or FASHION_MNIST_DIR)
        check_same_problems(stored, settings, train.mean(0), args.baselines)
    generator = harness.load_prior(args.generator)
    features = build_features("auto", generator, "cpu")
    path = None if args.out is None else args.out / "tune_weights.json"
    identity = {"generator": generator_identity(args.generator), "ids": ids, "noise": args.noise,
                "steps": args.steps, "seed": args.seed, "problems": "benchmarks/baselines.py evaluation seed"}
    saved = json.loads(path.read_text()) if path is not None and path.exists() else {"identity": identity,
                                                                                    "candidates": {}}
    if saved["identity"] != identity:
        raise SystemExit(f"{path} was made with other settings ({saved['identity']}); use another --out")
    found = saved["candidates"]
    options = MethodOptions(steps=args.steps, samples=0)

    def measure(name: str, problems_: list[tuple[str, dict]]) -> dict[str, dict[str, list[float]]]:
        """The candidate's per-image values on ``problems_``, run where missing (and saved at once)."""
        per_setting = found.setdefault(name, {})
        missing = [p for _, p in problems_ if p["label"] not in per_setting]
        if not missing:
            return per_setting
        weights = candidate_config(name)
        config = BRGMConfig(**weights, prior_std="per-dimension")
        for p in missing:
            values: dict[str, list[float]] = {}
            for start in range(0, len(ids), args.batch_size):
                batch = list(range(start, min(start + args.batch_size, len(ids))))
                row = score_batch(generator, features if weights["sigma_perceptual"] is not None else None, p, batch,
                                  config, ["map"], options, [ids[i] for i in batch], args.noise)
                for metric, v in row["map"][0].items():
                    values.setdefault(metric, []).extend(v)
            per_setting[p["label"]] = values
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"identity": identity, "candidates": found}, indent=1))
        print(f"{name}: " + ", ".join(f"{p['label']} {mean_unknown(found, name, p['label']):.2f}" for p in missing),
              flush=True)
        return per_setting

    for sp, perc, kappa, tau, rho in itertools.product(args.sigma_pixel, args.sigma_perceptual, args.kappa,
                                                       args.misfit_scale, args.layer_correlation):
        measure(candidate_name(sp, perc, kappa, tau, rho), settings)

    labels = [p["label"] for _, p in settings]
    # the settings the common balance is chosen on: the tuned ones, or (--common-masks) masks that have no entry
    others = [] if args.common_masks is None else [
        ("inpainting", p) for p in problems("inpainting", tune, args.noise, args.seed + 2, tuple(args.common_masks))]
    other_labels = [p["label"] for _, p in others]
    common_labels = other_labels or labels
    common_problems = others or settings

    def common_score(name: str) -> float:
        measure(name, common_problems)
        return common_unknown(found, name, common_labels)

    def common_fits(name: str) -> bool:
        per_setting = measure(name, common_problems)
        return all(fits(per_setting[lab])[1] for lab in common_labels)

    chosen = {label: choose(found, label) for label in labels}
    if args.start is None:
        for name in list(found):
            measure(name, common_problems)
        common, common_fitted = choose_common(found, common_labels)
    path_lines: list[str] = []  # with --start: each choice's path, "name (score)" steps

    def walk(what: str, start: str, score: Callable[[str], float], fitting: Callable[[str], bool]) -> str:
        path = descend(found, start, score, fitting)
        path_lines.append(f"- {what}: " + " -> ".join(f"{n} ({score(n):.2f})" for n in path))
        return path[-1]

    if args.start is not None:  # coordinate-wise from the incumbent weights of each setting
        previous = json.loads(args.start.read_text())
        for _, p in settings:
            label = p["label"]
            entry = {**previous["recommended_config"], **previous["recommended_configs"][setting_name(p["op"])]}
            name = walk(label, entry_name(entry), lambda n, lab=label: mean_unknown(found, n, lab),
                        lambda n, lab=label: fits(found[n][lab])[1])
            chosen[label] = (name, fits(found[name][label])[1])
        common = walk("every other setting", entry_name(previous["recommended_config"]), common_score, common_fits)
        common_fitted = common_fits(common)
    lines = [harness.header(f"benchmarks/tune_weights.py, generator {args.generator}, test images "
                            f"{ids[0]}-{ids[-1]}, noise sigma {args.noise}, MAP {args.steps} steps"), "",
             f"Per setting: mean ± standard error of the RMSE (0-255) on what is unknown, and on how many images the "
             f"MAP fits what is observed (observed residual / noise ≤ {FIT_TARGET}; with a misfit term the MAP "
             f"image is G(w*) + E[r | y, w*], G(w*) alone in parentheses); chosen: " + (
                 f"coordinate-wise from the weights of `{args.start}` (one weight changed at a time while the RMSE "
                 f"falls, among the candidates that fit {FIT_SHARE:.0%} of the images)" if args.start is not None
                 else f"the lowest RMSE among the candidates that fit {FIT_SHARE:.0%} of the images") + ".", "",
             "| candidate | " + " | ".join(f"{lab}: RMSE unknown | {lab}: fits" for lab in labels + other_labels)
             + " |", "|---|" + "---:|" * (2 * len(labels + other_labels))]
    for n in sorted(found, key=lambda n: common_unknown(found, n, labels)):
        cells = []
        for lab in labels + other_labels:
            if lab not in found[n]:  # a setting measured on demand (--common-masks), not for this candidate
                cells.append("- | -")
                continue
            mean, se = harness.mean_se(found[n][lab][unknown_metric(lab)])
            mark = " **(chosen)**" if (chosen[lab][0] if lab in chosen else common) == n else ""
            cells.append(f"{mean:.2f} ± {se:.2f}{mark} | {fit_cell(found[n][lab])}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "Chosen per setting (``recommended_configs`` metadata) and for every other setting "
              "(``recommended_config``: the lowest mean over " + (
                  f"the masks without an entry of their own ({', '.join(other_labels)}; --common-masks)"
                  if other_labels else "the tuned settings") + " among the candidates that fit all of them):", ""]
    configs = {}
    unfit = f" (no candidate fits {FIT_SHARE:.0%} of the images: lowest RMSE, does not meet the fit target)"
    for _, p in settings:  # each problem's metadata key is the setting name of its operator
        name, fitted = chosen[p["label"]]
        configs[setting_name(p["op"])] = candidate_config(name)
        lines.append(f"- {setting_name(p['op'])}: {name}" + ("" if fitted else unfit))
    lines.append(f"- every other setting: {common}" + ("" if common_fitted else unfit))
    if path_lines:
        lines += ["", "The coordinate-wise paths (from the incumbent; RMSE on what is unknown):", "", *path_lines]
    recommended = {"recommended_config": {**candidate_config(common), "prior_std": "per-dimension"},
                   "recommended_configs": configs,
                   "tuning": {"images": f"Fashion-MNIST test {ids[0]}-{ids[-1]}", "num_images": len(ids),
                              "noise": args.noise, "map_steps": args.steps, "candidates": len(found),
                              "common_balance_on": common_labels}}
    lines += ["", "```json", json.dumps(recommended, indent=1), "```"]
    if stored is not None:
        lines += ["", *paired_lines(found, stored, settings, {lab: chosen[lab][0] for lab in labels})]
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "tune_weights.md").write_text("\n".join(lines) + "\n")
        (args.out / "recommended.json").write_text(json.dumps(recommended, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
