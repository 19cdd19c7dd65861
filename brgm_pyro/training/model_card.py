"""Export the bundled generator and measure what its model card reports.

    python -m brgm_pyro.training.model_card --checkpoint RUN/checkpoint.pt --out brgm_pyro/pretrained

1. writes ``fashion-mnist-32.pt`` (EMA generator, project format) with its recommended weights (``--weights``:
   ``benchmarks/tune_weights.py``'s ``recommended.json``, per setting and for every other setting) and, with
   ``--interval-factors DIR``, the interval factors that ``benchmarks/real_images.py`` fitted on real images for
   this generator (export first, calibrate the exported file, then export again with the option);
   ``--export-only`` stops here;
2. sample quality: Frechet distance in the domain classifier's 256-d embedding between 10,000
   generated images and the 10,000 test images, next to two references: 10,000 training images
   (the floor a perfect generator would reach) and the blurred test images (a trivial baseline);
   the classifier's predicted-class histogram of the generated images;
3. a grid of samples (``fashion-mnist-32-samples.png``);
4. "it serves as a prior": ``brgm evaluate`` for x4 super-resolution and the seven masks on the
   100 bundled test images;
5. ``README.md`` (the card, with ``--held-out``: ``benchmarks/prior_vs_baselines.py``'s ``summary.md``) and
   ``fashion-mnist-32.json`` (the numbers).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from ..assets import FASHION_MNIST_CLASSES
from ..bundled import load_domain_classifier, load_domain_features, load_test_images
from ..corruptions import Blur
from ..app.evaluation import evaluate, table_path, write_tables
from ..frechet import frechet_distance
from ..generators import load_generator
from ..io import save_grid
from ..generators.metadata import validate_metadata
from ..models import BRGMConfig, brgm_model
from ..preparation import FASHION_MNIST_PADDING
from .data import FASHION_MNIST_DIR, load_fashion_mnist
from .trainer import TrainingConfig, export_generator



@torch.no_grad()
def embed(classifier, images: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    feats, preds = [], []
    for i in range(0, len(images), batch):
        e = classifier.embedding(images[i:i + batch])
        feats.append(e)
        preds.append(classifier.head(e).argmax(1))
    return torch.cat(feats), torch.cat(preds)


@torch.no_grad()
def generate(G, n: int, seed: int = 0, batch: int = 500) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = [G.synthesis(G.mapping(torch.randn(min(batch, n - i), G.z_dim, generator=g))) for i in range(0, n, batch)]
    return torch.cat(out).clamp(-1, 1)


def pixel_gaussian_samples(images: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """A trivial generative model: a Gaussian with the pixel mean and covariance of ``images``."""
    flat = images.flatten(1).double()
    mean = flat.mean(0)
    cov = torch.cov(flat.T) + 1e-4 * torch.eye(flat.shape[1], dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, flat.shape[1], generator=g, dtype=torch.float64)
    samples = mean + z @ torch.linalg.cholesky(cov).T
    return samples.float().clamp(-1, 1).reshape(n, *images.shape[1:])


def training_subset(train: torch.Tensor, n: int) -> torch.Tensor:
    """The card's reference set of real training images: ``n`` of ``train`` drawn at random with seed 0."""
    return train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:n]]


def sample_quality(G, data: Path = FASHION_MNIST_DIR, n: int = 10_000) -> dict:
    classifier = load_domain_classifier()
    test, _ = load_fashion_mnist("test", data)
    train, _ = load_fashion_mnist("train", data)
    fake = generate(G, n)
    f_test, _ = embed(classifier, test[:n])
    f_fake, p_fake = embed(classifier, fake)
    f_train, _ = embed(classifier, training_subset(train, n))
    f_blur1, _ = embed(classifier, Blur.gaussian(sigma=1.0)(test[:n]))
    f_blur2, _ = embed(classifier, Blur.gaussian(sigma=2.0)(test[:n]))
    f_gauss, _ = embed(classifier, pixel_gaussian_samples(train, n))
    hist = torch.bincount(p_fake, minlength=10).double() / len(p_fake)
    return {
        "fd_generated_vs_test": frechet_distance(f_fake, f_test),
        "fd_train_vs_test": frechet_distance(f_train, f_test),
        "fd_blurred_test_vs_test": frechet_distance(f_blur1, f_test),
        "fd_blurred2_test_vs_test": frechet_distance(f_blur2, f_test),
        "fd_pixel_gaussian_vs_test": frechet_distance(f_gauss, f_test),
        "generated_class_fractions": {c: round(float(h), 4) for c, h in zip(FASHION_MNIST_CLASSES, hist)},
        "num_images": n,
    }


TRAINING_FLAGS = {"batch_size": "--batch-size", "lr": "--lr", "r1_gamma": "--r1-gamma", "r1_interval": "--r1-interval",
                  "style_mixing_prob": "--style-mixing", "ema_kimg": "--ema-kimg", "ema_rampup": "--ema-rampup",
                  "seed": "--seed"}
"""The options of ``brgm train-generator`` that define a run (the card names those not at their default)."""


def _value(v: object) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def training_options(config: dict) -> str:
    """The defining options of a run that differ from ``TrainingConfig``'s defaults, as flags."""
    defaults = TrainingConfig()
    changed = [f"{flag} {_value(config[key])}" for key, flag in TRAINING_FLAGS.items()
               if key in config and config[key] != getattr(defaults, key)]
    return " ".join(changed)


CARD_TASKS = ("super-resolution", "inpainting")
"""The tasks the card evaluates on the bundled test images, each with its table (``app.evaluation.table_path``)."""


def weights_text(config: dict) -> str:
    perc = "none" if config.get("sigma_perceptual") is None else f"{config['sigma_perceptual']:g}"
    tau = config.get("misfit_scale")
    misfit = "" if tau is None else f", misfit scale {_value(tau)}"
    rho = config.get("layer_correlation") or 0.0
    layers = "" if rho == 0 else f", layer correlation {rho:g}"
    return f"sigma_pixel {config['sigma_pixel']:g}, sigma_perceptual {perc}, kappa {config['kappa']:g}{misfit}{layers}"


def weights_table(recommended: dict, per_setting: dict) -> str:
    rows = [f"| {name} | {weights_text({**recommended, **entry})} |" for name, entry in per_setting.items()]
    rows.append(f"| every other setting (`recommended_config`) | {weights_text(recommended)} |")
    return "\n".join(["| setting (`recommended_configs` key) | weights |", "|---|---|", *rows])


def calibration_text(factors: dict | None) -> str:
    """The card's paragraph on the interval factors recorded in the metadata (``--interval-factors``)."""
    if not factors:
        return ("None recorded: `brgm reconstruct` reports the recommended posterior's own intervals (fit factors "
                "with `benchmarks/real_images.py` and export again with `--interval-factors`).")
    rows = [f"| {name} | " + " | ".join(f"{entry.get(level, '-')}" for level in ("0.5", "0.9")) + " |"
            for name, entry in factors.items()]
    return "\n".join([
        "`brgm reconstruct` rescales (widens or narrows) the recommended posterior's pixel intervals about their "
        "midpoints by these factors, fitted on real test images by conformal risk control "
        "(`benchmarks/real_images.py`: the recommended posterior of each setting at its recommended noise), for "
        "these settings at the generator's own pixel noise; what they hold on held-out real images and what they "
        "guarantee: "
        "`docs/calibration-real-images.md`.", "",
        "| setting | 50% interval factor | 90% interval factor |", "|---|---:|---:|", *rows])


def card_text(info: dict, sr_md: str, ip_md: str, held_out_md: str | None = None) -> str:
    q, t, c = info["quality"], info["training"], info["training_config"]
    fractions = " · ".join(f"{name} {100 * v:.1f}%" for name, v in q["generated_class_fractions"].items())
    options = training_options(c)
    tuning = info["tuning"]
    held_out = held_out_md or ("Not measured for this file: `python benchmarks/prior_vs_baselines.py --generator "
                               "THIS_FILE --out DIR` (DeepInverse's TV and wavelet reconstructions with weights tuned "
                               "on training images, 100 other real test images).")
    return f"""# fashion-mnist-32: the bundled StyleGAN2 prior

A {c['resolution']}x{c['resolution']} grayscale StyleGAN2 (config-e style skip generator, {c['channel_max']} channels
at every resolution, z = {c['z_dim']}, w = {c['w_dim']}, {c['mapping_layers']} mapping layers) trained by this
project, so that brgm-pyro works offline and MCMC comparisons stay affordable. File: `fashion-mnist-32.pt`
(project format, EMA weights).

![samples](fashion-mnist-32-samples.png)

## Training
- Data: Fashion-MNIST **training split only** (60,000 images, Debian `dataset-fashion-mnist`),
  padded 28 -> 32 with black, x-flips; the 100 bundled test images and the test split were never seen.
- Command: `brgm train-generator --out RUN {options}` (options not named are at their defaults: \
lr {c['lr']:g}, R1 gamma {c['r1_gamma']:g} every {c['r1_interval']} steps, style mixing {c['style_mixing_prob']:g}, \
EMA half-life {c['ema_kimg']:g}k images with a ramp-up of {_value(c['ema_rampup'])}, batch {c['batch_size']}, seed \
{c['seed']}), stopped and resumed across sessions with `--max-minutes` (on the CPU a resumed run equals an \
uninterrupted one), then `python -m brgm_pyro.training.model_card --checkpoint RUN/checkpoint.pt --out \
brgm_pyro/pretrained --weights recommended.json` (the recommended weights, below).
- {t['iterations']:,} iterations ({t['images_seen']:,} images shown) in {t['wall_seconds'] / 60:.0f} minutes \
on {t['hardware']}.

## Sample quality
Frechet distance in the 256-d embedding of the bundled domain classifier ({info['classifier_accuracy']:.2%}
test accuracy), {q['num_images']:,} images each (lower is better):

| images compared with the 10,000 test images | Frechet distance |
|---|---:|
| 10,000 training images (what a perfect generator would score) | {q['fd_train_vs_test']:.2f} |
| **10,000 generated images** | **{q['fd_generated_vs_test']:.2f}** |
| 10,000 samples of a Gaussian fitted to the training pixels (mean, 1024x1024 covariance): \
a trivial generative model | {q['fd_pixel_gaussian_vs_test']:.2f} |
| the test images themselves, blurred (Gaussian, sigma 1 px) | {q['fd_blurred_test_vs_test']:.2f} |
| the test images themselves, blurred (Gaussian, sigma 2 px) | {q['fd_blurred2_test_vs_test']:.2f} |

Classes the classifier assigns to the generated images (uniform would be 10% each):
{fractions}.

## It serves as a prior
MAP reconstructions (500 Adam steps, lr 0.1, initialised at w_avg) on the 100 bundled test images, noiseless
observations, with the recommended weights of each setting (below) and the domain classifier's features
(blocks 1-3) as phi. RMSE/MAE on the 0-255 scale; `feature_distance` is ||phi(x) - phi(truth)||^2 in the same
features. Where the weights carry a misfit scale, the MAP image is G(w*) + E[r | y, w*] (the joint mode of w and
the generator's misfit r; `brgm reconstruct` also writes G(w*) alone). Reproduce with `brgm evaluate --task ...`.

Super-resolution uses antialiased bicubic down-sampling (`--kernel bicubic-antialias`, the
default of `brgm demo` / `brgm evaluate`). The authors' release down-samples with bicubic
interpolation *without* antialiasing: each of the 8x8 values interpolates the 32x32 image at
one point, so detail finer than 4 pixels aliases, several garments fit the observation equally
well, and no prior can recover what was lost. Pass `--kernel bicubic` to reproduce that setting.

{sr_md}
{ip_md}
The mean-fill baseline fills the hidden pixels with the generator's mean image (10,000 samples).

## Against the library baselines on held-out real images
{held_out}

## Calibrated intervals
{calibration_text(info.get('interval_factors'))}

## Cost as a prior
The network is the same size as the first bundled generator's (same architecture and widths), so a MAP step,
a NUTS transition and a calibration run cost what they cost with it; measured side by side, before / after, in
`benchmarks/results/prior_cost.md` and `prior_cost_bundled.md` (`benchmarks/prior_cost.py`).

## Recommended weights
The authors' released balance, transferred to these sizes (`released_config`), gives the pixel
term almost no weight at 32x32. The weights below were chosen by `benchmarks/tune_weights.py` among
{tuning['candidates']} candidates (sigma_pixel x sigma_perceptual x kappa, some with the generator's misfit scale,
per-dimension prior std) by MAP
({tuning['map_steps']} steps) on {tuning['images']} ({tuning['num_images']} images apart from the bundled 100 and
from the held-out evaluation images), noise sigma {tuning['noise']:g}, per setting: the lowest RMSE on what is
unknown among the candidates whose MAP reproduces what is observed (residual at most 1.25 noise sigmas on 80%
of the images). Super-resolution wants a tight pixel fit, in-painting a looser one, so the file stores them
per setting (`recommended_configs`, used for that corruption) and one balance for every other setting
(`recommended_config`{common_basis(tuning)}); `brgm` and the examples use them unless you pass `--sigma-*` /
`--lambda-*`.

{weights_table(info['recommended_config'], info['recommended_configs'])}
"""


def common_basis(tuning: dict) -> str:
    """What the balance for every other setting was chosen on, when ``tune_weights --common-masks`` recorded it."""
    labels = tuning.get("common_balance_on")
    return f", chosen on {', '.join(labels)}: settings without weights of their own" if labels else ""


def read_weights(path: Path) -> dict:
    """``benchmarks/tune_weights.py``'s ``recommended.json``: the metadata's weights and how they were tuned."""
    data = json.loads(path.read_text())
    missing = {"recommended_config", "recommended_configs", "tuning"} - set(data)
    if missing:
        raise SystemExit(f"{path} lacks {sorted(missing)}: pass the recommended.json of benchmarks/tune_weights.py")
    validate_metadata({"recommended_config": data["recommended_config"],
                       "recommended_configs": data["recommended_configs"]}, path)
    BRGMConfig(**data["recommended_config"])
    return data


def fitted_interval_factors(folder: Path) -> dict:
    """The conformal interval factors of every ``benchmarks/real_images.py`` run in ``folder`` (one JSON per
    setting): ``{setting: {level: factor}}`` of the model each run calibrated (its "plain" variant)."""
    from ..study.real_images import RealCalibrationReport

    fitted: dict = {}
    for path in sorted(folder.glob("*.json")):
        try:
            report = RealCalibrationReport.from_json(path)
        except (KeyError, ValueError) as err:
            raise SystemExit(f"{path} is not a benchmarks/real_images.py run ({err!r})") from None
        fitted.update(report.interval_scales("plain").get("interval_factors", {}))
    if not fitted:
        raise SystemExit(f"{folder} holds no real-image run with interval factors (benchmarks/real_images.py --out)")
    return fitted


def store_interval_factors(out: Path, factors: dict) -> None:
    """Write ``factors`` into the metadata of ``out``'s generator file and, when there, its card's JSON."""
    from ..generators.native_format import save_generator

    path = out / "fashion-mnist-32.pt"
    G = load_generator(path, device="cpu")
    save_generator(G, path, metadata={**G.metadata, "interval_factors": factors})
    card = out / "fashion-mnist-32.json"
    if card.is_file():
        card.write_text(json.dumps({**json.loads(card.read_text()), "interval_factors": factors}, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="the training checkpoint (not with --render-only)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=None,
                        help="recommended.json of benchmarks/tune_weights.py (per-setting and common weights)")
    parser.add_argument("--render-only", action="store_true",
                        help="only write README.md again from --out's fashion-mnist-32.json, the --tables files and "
                             "--held-out (after the card's text changed; nothing is measured)")
    parser.add_argument("--evaluate", nargs="+", choices=CARD_TASKS, default=list(CARD_TASKS),
                        help="the tasks evaluated on the bundled test images (default: both); a task left out is "
                             "read from its --tables file, for a re-export whose weights changed in one task only")
    parser.add_argument("--quality-from", type=Path, default=None,
                        help="a card JSON of the same network (same checkpoint iteration): take its sample quality "
                             "(Frechet distances, class histogram) instead of measuring it again (new weights only)")
    parser.add_argument("--held-out", type=Path, default=None,
                        help="summary.md of benchmarks/prior_vs_baselines.py (the held-out comparison, in the card)")
    parser.add_argument("--interval-factors", type=Path, default=None,
                        help="a folder of benchmarks/real_images.py runs (one JSON per setting): store their fitted "
                             "interval factors in the metadata (fitted on this generator: export, calibrate, then "
                             "run again with this option)")
    parser.add_argument("--export-only", action="store_true", help="write the generator file and stop")
    parser.add_argument("--hardware", default=f"{platform.machine()} CPU")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--kernel", default="bicubic-antialias", help="super-resolution down-sampling kernel")
    parser.add_argument("--num-images", type=int, default=100)
    parser.add_argument("--tables", type=Path, default=Path("model-card-tables"),
                        help="where the evaluation Markdown/CSV files go (not package data)")
    args = parser.parse_args(argv)
    held_out = args.held_out.read_text() if args.held_out is not None else None
    if args.render_only:
        info = json.loads((args.out / "fashion-mnist-32.json").read_text())
        tables = {task: table_path(args.tables, task).read_text() for task in CARD_TASKS}
        (args.out / "README.md").write_text(card_text(info, tables["super-resolution"], tables["inpainting"], held_out))
        print(f"model card: {args.out / 'README.md'}")
        return
    if args.checkpoint is None or args.weights is None:
        parser.error("--checkpoint and --weights are required (unless --render-only)")
    kept = [table_path(args.tables, task) for task in CARD_TASKS if task not in args.evaluate]
    missing = [str(path) for path in kept if not path.is_file()]
    if missing:
        parser.error(f"--evaluate leaves out a task whose table is missing: {missing}")
    weights = read_weights(args.weights)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    path = args.out / "fashion-mnist-32.pt"
    # image_preparation: the transform the training data went through (training.data pads 28 -> 32);
    # interval_factors: benchmarks/real_images.py's real-image fits (--interval-factors; tests/test_intervals.py)
    export_generator(args.checkpoint, path, {"feature_network": "fashion-mnist-classifier",
                                             "recommended_config": weights["recommended_config"],
                                             "recommended_configs": weights["recommended_configs"],
                                             "data": "Fashion-MNIST train split",
                                             "image_preparation": FASHION_MNIST_PADDING.to_metadata()})
    print(f"generator: {path}", flush=True)
    factors = fitted_interval_factors(args.interval_factors) if args.interval_factors is not None else None
    if factors is not None:
        store_interval_factors(args.out, factors)
    if args.export_only:
        return
    G = load_generator(path, device="cpu")
    save_grid(generate(G, 64, seed=1), args.out / "fashion-mnist-32-samples.png", nrow=8)
    if args.quality_from is not None:  # the same network: its sample quality does not depend on the weights
        previous = json.loads(args.quality_from.read_text())
        if previous["training"]["iterations"] != ckpt["iteration"]:
            raise SystemExit(f"--quality-from {args.quality_from} is of iteration "
                             f"{previous['training']['iterations']}, the checkpoint of {ckpt['iteration']}")
        quality = previous["quality"]
    else:
        t0 = time.time()
        quality = sample_quality(G)
        print(json.dumps(quality, indent=2), f"({time.time() - t0:.0f} s)", flush=True)

    features = load_domain_features()
    images = load_test_images()[0][:args.num_images]
    tables = {}
    for task in CARD_TASKS:  # default_config: each corruption's recommended weights
        if task not in args.evaluate:
            tables[task] = table_path(args.tables, task).read_text()
            continue
        table = evaluate(G, images, task, lambda op, obs: brgm_model(G, op, obs, features=features),
                         features, kernel=args.kernel, steps=args.steps, lpips_net=None, progress=True)
        md_path, _ = write_tables(table, args.tables)
        tables[task] = md_path.read_text()
        print(tables[task], flush=True)

    classifier_info = json.loads((args.out / "fashion-mnist-classifier.json").read_text())
    info = {
        "training": {"iterations": ckpt["iteration"], "images_seen": ckpt["images_seen"],
                     "wall_seconds": ckpt["wall_seconds"], "hardware": args.hardware},
        "training_config": ckpt["config"],
        "quality": quality,
        "classifier_accuracy": classifier_info["test_accuracy"],
        "recommended_config": weights["recommended_config"],
        "recommended_configs": weights["recommended_configs"],
        "tuning": weights["tuning"],
    }
    if factors is not None:
        info["interval_factors"] = factors
    (args.out / "fashion-mnist-32.json").write_text(json.dumps(info, indent=2))
    (args.out / "README.md").write_text(card_text(info, tables["super-resolution"], tables["inpainting"], held_out))
    print(f"model card: {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
