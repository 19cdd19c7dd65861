"""The ``brgm`` command line."""

from __future__ import annotations

import argparse
import platform
import sys
from typing import Sequence


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    import brgm_pyro

    print(f"brgm-pyro {brgm_pyro.__version__}")
    print(f"python    {platform.python_version()}")
    print(f"torch     {torch.__version__}")
    for name in ("pyro", "arviz", "lpips", "numpy"):
        try:
            module = __import__(name)
            print(f"{name:<9} {getattr(module, '__version__', '?')}")
        except ImportError:  # pragma: no cover - reported, not fatal
            print(f"{name:<9} not installed")
    if torch.cuda.is_available():
        print(f"device    cuda ({torch.cuda.get_device_name(0)})")
    else:
        print("device    cpu (no GPU found)")
    return 0


def _cmd_train_generator(args: argparse.Namespace) -> int:
    from .training.trainer import TrainingConfig, export_generator, train_generator

    config = TrainingConfig(
        data=args.data, out_dir=args.out, resolution=args.resolution, channels=args.channels,
        z_dim=args.z_dim, w_dim=args.w_dim, mapping_layers=args.mapping_layers,
        channel_base=args.channel_base, channel_max=args.channel_max, batch_size=args.batch_size,
        iterations=args.iterations, max_minutes=args.max_minutes, lr=args.lr, r1_gamma=args.r1_gamma,
        seed=args.seed, snapshot_every=args.snapshot_every, device=args.device,
    )
    state = train_generator(config, resume=not args.no_resume, progress=not args.no_progress)
    print(f"trained {state.iteration} iterations ({state.images_seen} images) in {state.wall_seconds / 60:.1f} min")
    if args.export:
        export_generator(f"{args.out}/checkpoint.pt", args.export)
        print(f"EMA generator written to {args.export}")
    return 0


def _load(args: argparse.Namespace):
    """The generator, its feature network and the device of a reconstruct / demo / evaluate run."""
    from .generators import load_generator
    from .reconstruction import build_features

    generator = load_generator(args.generator, device=args.device)
    features = build_features(args.features, generator, generator.device)
    return generator, features


def _overrides(args: argparse.Namespace) -> dict[str, float | None]:
    """--sigma-* and --lambda-* (paper's Eq. 6 weights: sigma = lambda^-1/2, kappa = lambda_colin / 2)."""
    out = {"sigma_pixel": args.sigma_pixel, "sigma_perceptual": args.sigma_perceptual, "kappa": args.kappa}
    for name, lam in (("sigma_pixel", args.lambda_pixel), ("sigma_perceptual", args.lambda_perceptual)):
        if lam is not None:
            if out[name] is not None:
                raise ValueError(f"give either --{name.replace('_', '-')} or its lambda, not both")
            if lam <= 0:
                raise ValueError(f"lambda weights must be positive, got {lam}")
            out[name] = lam**-0.5
    if args.lambda_colin is not None:
        if out["kappa"] is not None:
            raise ValueError("give either --kappa or --lambda-colin, not both")
        out["kappa"] = args.lambda_colin / 2
    return out


def _save_outputs(out_dir, truth, display, outputs) -> dict:
    """Write the images of one problem and return its metrics (when the truth is known)."""
    from .io import save_grid, save_image
    from .metrics import compute_metrics, summarize_metrics

    out_dir.mkdir(parents=True, exist_ok=True)
    save_image(display, out_dir / "input.png")
    if truth is not None:
        save_image(truth, out_dir / "truth.png")
    metrics: dict = {}
    for method, o in outputs.items():
        save_image(o.image, out_dir / ("map.png" if method == "map" else f"{method}_mean.png"))
        if o.samples is not None:
            save_grid(o.samples[:64], out_dir / f"{method}_samples.png", nrow=8)
            std = o.std / max(float(o.std.max()), 1e-8) * 2 - 1  # std map scaled to its own maximum
            save_image(std, out_dir / f"{method}_std.png")
        entry = {"seconds": round(o.seconds, 2)}
        if truth is not None:
            entry.update({k: v[0] for k, v in summarize_metrics(compute_metrics(o.image, truth.cpu())).items()})
        if o.std is not None:
            entry["mean_pixel_std"] = float(o.std.mean())
        metrics[method] = entry
    return metrics


def _figure_row(display, truth, outputs) -> dict:
    row = {"input": display, "truth": truth}
    for method, o in outputs.items():
        row[method] = o.image
        if o.samples is not None and "samples" not in row:
            row["samples"], row["std"] = o.samples, o.std
    return row


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .io import load_image
    from .reconstruction import (build_problem, make_task, observation_display, run_methods, summary_figure,
                                 write_json)

    generator, features = _load(args)
    shape = (generator.img_channels, generator.img_resolution, generator.img_resolution)
    corruption = make_task(args.task, generator.img_resolution, factor=args.factor, mask=args.mask,
                           mask_id=args.mask_id, kernel=args.kernel)
    out_shape = tuple(corruption.output_shape(shape))
    if args.observed:
        observation = load_image(args.image, resolution=None, channels=shape[0], center_crop=False)
        if tuple(observation.shape[1:]) != out_shape:
            raise ValueError(f"the observation {args.image} is {tuple(observation.shape[1:])} (C, H, W) but "
                             f"{corruption.describe()} of this generator's images gives {out_shape}")
        truth = None
    else:
        truth = load_image(args.image, resolution=shape[-1], channels=shape[0], center_crop=False)
        observation = corruption(truth)
    model = build_problem(generator, corruption, observation.to(generator.device), features, **_overrides(args))
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    outputs = run_methods(model, methods, steps=args.steps, lr=args.lr, samples=args.samples, seed=args.seed,
                          progress=not args.no_progress)
    out = Path(args.out)
    display = observation_display(corruption, observation, shape)
    metrics = _save_outputs(out, truth, display, outputs)
    write_json({"task": args.task, "corruption": corruption.describe(), "metrics": metrics,
                "config": model_config_dict(model)}, out / "metrics.json")
    figure = summary_figure([_figure_row(display, truth, outputs)], out / "summary.png")
    if args.save_inference_data:
        from .inference import to_inference_data

        for method, o in outputs.items():
            idata = to_inference_data(o.result, model, num_draws=args.samples)
            idata.to_netcdf(str(out / f"{method}_inference_data.nc"))
    print(f"outputs in {out}; summary figure: {figure}")
    return 0


def model_config_dict(model) -> dict:
    """The weights a run used (for metrics.json)."""
    from .models import PixelLikelihood, PerceptualLikelihood

    out: dict = {"kappa": getattr(model.colinearity, "kappa", 0.0)}
    for lik in model.likelihoods:
        if isinstance(lik, PixelLikelihood):
            out["sigma_pixel"] = lik.sigma
        elif isinstance(lik, PerceptualLikelihood):
            out["sigma_perceptual"] = lik.sigma
    return out


def _cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bundled import load_test_images
    from .reconstruction import (build_problem, make_task, observation_display, run_methods, summary_figure,
                                 write_json)

    generator, features = _load(args)
    images, labels, _ = load_test_images()
    shape = (generator.img_channels, generator.img_resolution, generator.img_resolution)
    if tuple(images.shape[1:]) != shape:
        raise ValueError(f"the demo images are {tuple(images.shape[1:])} but the generator makes {shape}; "
                         "run the demo with the bundled generator, or use `brgm reconstruct`")
    truth = images[args.image_index:args.image_index + 1].to(generator.device)
    tasks = [("super-resolution", make_task("super-resolution", shape[-1], factor=4, kernel=args.kernel)),
             ("inpainting", make_task("inpainting", shape[-1], mask_id=args.mask_id))]
    out = Path(args.out)
    rows, titles, report = [], [], {}
    for name, corruption in tasks:
        observation = corruption(truth)
        model = build_problem(generator, corruption, observation, features, **_overrides(args))
        outputs = run_methods(model, ["map", "vi"], steps=args.steps, lr=args.lr, samples=args.samples,
                              seed=args.seed, progress=not args.no_progress)
        display = observation_display(corruption, observation, shape)
        report[name] = {"corruption": corruption.describe(), "config": model_config_dict(model),
                        "metrics": _save_outputs(out / name, truth.cpu(), display, outputs)}
        rows.append(_figure_row(display, truth.cpu(), outputs))
        titles.append("SR x4" if name == "super-resolution" else f"in-painting, mask {args.mask_id}")
    write_json(report, out / "metrics.json")
    figure = summary_figure(rows, out / "summary.png", row_titles=titles)
    for name, entry in report.items():
        m = entry["metrics"]
        print(f"{name:>16}: RMSE  MAP {m['map']['rmse']:.1f}  VI mean {m['vi']['rmse']:.1f}  "
              f"(0-255 scale; VI mean pixel std {m['vi']['mean_pixel_std']:.3f})")
    print(f"summary figure: {figure}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .bundled import load_test_images
    from .evaluation import evaluate, write_tables
    from .io import load_images
    from .reconstruction import build_problem

    generator, features = _load(args)
    shape = (generator.img_channels, generator.img_resolution, generator.img_resolution)
    if args.images:
        from pathlib import Path

        files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".npy"))
        if not files:
            raise ValueError(f"no .png/.jpg/.npy images in {args.images}")
        images = load_images(files[:args.num_images], resolution=shape[-1], channels=shape[0])
    else:
        images = load_test_images()[0][:args.num_images]
    overrides = _overrides(args)
    table = evaluate(generator, images.to(generator.device), args.task,
                     lambda op, obs: build_problem(generator, op, obs, features, **overrides),
                     features, factor=args.factor or 4, kernel=args.kernel, steps=args.steps, lr=args.lr,
                     batch_size=args.batch_size,
                     progress=not args.no_progress, lpips_net=None if args.no_lpips else "alex")
    md, csv_path = write_tables(table, args.out)
    print(md.read_text())
    print(f"written: {md} and {csv_path}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    """Simulation-based calibration of posterior methods on problems drawn from the model."""
    import importlib
    from pathlib import Path

    from .generators import load_generator
    from .inference.calibration import calibrate, resolve_methods, simulate_problems
    from .reconstruction import make_task

    for module in args.imports:
        importlib.import_module(module)
    methods = resolve_methods(args.methods)
    for name, value in (("--num-problems", args.num_problems), ("--num-draws", args.num_draws),
                        ("--steps", args.steps)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    generator = load_generator(args.generator, device=args.device)
    if args.task == "super-resolution":
        corruption = make_task(args.task, generator.img_resolution, factor=args.factor, kernel=args.kernel)
    else:
        corruption = make_task(args.task, generator.img_resolution, mask_id=args.mask_id)
    problem_seed = args.seed if args.problem_seed is None else args.problem_seed
    problems = simulate_problems(generator, corruption, args.num_problems, sigma_pixel=args.sigma_pixel,
                                 prior_std=args.prior_std, seed=problem_seed)
    settings = {"task": args.task, "corruption": corruption.describe(), "generator": args.generator,
                "sigma_pixel": args.sigma_pixel, "prior_std": args.prior_std, "kappa": 0.0,
                "problem_seed": problem_seed, "steps": args.steps}
    report = calibrate(problems, methods, num_draws=args.num_draws, seed=args.seed, progress=not args.no_progress,
                       options={"num_steps": args.steps}, settings=settings)
    out = Path(args.out)
    json_path = report.to_json(out / "calibration.json")
    figure = report.figure(out / "calibration.png")
    print(f"# {args.task} ({corruption.describe()}), {args.num_problems} problems (seed {problem_seed}), "
          f"{args.num_draws} draws, {args.steps} steps, method seed {args.seed}")
    print(report.table())
    print(f"written: {json_path} and {figure}")
    return 0


def _add_model_options(p: argparse.ArgumentParser, steps: int = 500) -> None:
    from .reconstruction import FEATURE_CHOICES

    p.add_argument("--generator", default="fashion-mnist-32",
                   help="bundled name or checkpoint path (.pkl from NVIDIA / the BRGM authors, rosinality .pt, "
                        "brgm-pyro .pt); default: %(default)s")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--features", default="auto", choices=FEATURE_CHOICES,
                   help="perceptual feature network (auto: the generator's own, else LPIPS-VGG)")
    p.add_argument("--steps", type=int, default=steps, help="optimisation steps (default: %(default)s)")
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="brgm-out", help="output folder (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true")
    g = p.add_argument_group("weights (default: the generator's recommended balance, else the authors' released one)")
    g.add_argument("--sigma-pixel", type=float)
    g.add_argument("--sigma-perceptual", type=float)
    g.add_argument("--kappa", type=float, help="von Mises concentration of the colinearity prior (0: off)")
    g.add_argument("--lambda-pixel", type=float, help="paper's Eq. 6 weight: sigma_pixel = lambda^-1/2")
    g.add_argument("--lambda-perceptual", type=float, help="paper's Eq. 6 weight: sigma_perceptual = lambda^-1/2")
    g.add_argument("--lambda-colin", type=float, help="paper's Eq. 6 weight: kappa = lambda_colin / 2")


def _add_kernel_option(p: argparse.ArgumentParser, default: str) -> None:
    from .corruptions import SR_KERNELS

    p.add_argument("--kernel", default=default, choices=SR_KERNELS,
                   help="super-resolution down-sampling kernel (default: %(default)s; 'bicubic' without "
                        "antialiasing is the authors' release, which aliases badly on 32x32 images)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brgm", description="Bayesian image reconstruction with deep generative priors (BRGM)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("info", help="print versions and whether a GPU is present")
    p.set_defaults(func=_cmd_info)

    from .training.data import FASHION_MNIST_DIR

    p = sub.add_parser(
        "train-generator",
        help="train a StyleGAN2 generator on IDX files or a folder of images",
        description="Train a StyleGAN2 generator (non-saturating loss, lazy R1, style mixing, EMA). "
        "Resumes from OUT/checkpoint.pt when it exists. The defaults reproduce the bundled "
        "fashion-mnist-32 model.",
    )
    p.add_argument("--data", default=str(FASHION_MNIST_DIR), help="IDX folder or image folder (default: %(default)s)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, sample grids, log")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--z-dim", type=int, default=64)
    p.add_argument("--w-dim", type=int, default=64)
    p.add_argument("--mapping-layers", type=int, default=2)
    p.add_argument("--channel-base", type=int, default=2048)
    p.add_argument("--channel-max", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--iterations", type=int, default=20_000)
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this much wall time")
    p.add_argument("--lr", type=float, default=0.0025)
    p.add_argument("--r1-gamma", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snapshot-every", type=int, default=500)
    p.add_argument("--device", default="cuda" if _cuda_available() else "cpu")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--export", help="also write the EMA generator to this .pt file (project format)")
    p.set_defaults(func=_cmd_train_generator)

    from .corruptions import TASKS

    p = sub.add_parser("demo", help="x4 super-resolution and in-painting of a bundled test image with MAP and VI",
                       description="The main job: on the bundled generator and a bundled Fashion-MNIST test image, "
                       "run x4 super-resolution and in-painting with MAP and VI; write reconstructions, VI samples, "
                       "std maps, a summary figure and metrics.json.")
    _add_model_options(p)
    p.set_defaults(out="brgm-demo")
    p.add_argument("--image-index", type=int, default=0, help="which of the 100 bundled test images (0..99)")
    p.add_argument("--mask-id", type=int, default=0, help="standard mask for the in-painting row (0..6)")
    p.add_argument("--samples", type=int, default=64, help="VI samples to draw (default: %(default)s)")
    _add_kernel_option(p, "bicubic-antialias")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("reconstruct", help="reconstruct one image (MAP / VI / MCMC)",
                       description="Reconstruct IMAGE: by default IMAGE is the clean image, corrupted here (metrics "
                       "against it are reported); with --observed it is the corrupted observation itself.")
    p.add_argument("image", help="PNG / JPEG / .npy image (square)")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--factor", type=int, default=None, help="super-resolution factor (default 4)")
    p.add_argument("--mask", default=None, help="in-painting mask image, white (1) = observed")
    p.add_argument("--mask-id", type=int, default=None, help="one of the seven standard masks, 0..6")
    p.add_argument("--observed", action="store_true", help="IMAGE is already the corrupted observation")
    p.add_argument("--method", default="map,vi", help="comma-separated: map, vi, mcmc (default: %(default)s)")
    p.add_argument("--samples", type=int, default=64, help="posterior samples to draw (default: %(default)s)")
    p.add_argument("--save-inference-data", action="store_true", help="also write ArviZ NetCDF files")
    _add_kernel_option(p, "bicubic")
    _add_model_options(p)
    p.set_defaults(func=_cmd_reconstruct)

    p = sub.add_parser("evaluate", help="BRGM (MAP) against classical baselines on test images (Table 1)")
    p.add_argument("--task", required=True, choices=("super-resolution", "inpainting"))
    p.add_argument("--factor", type=int, default=4)
    p.add_argument("--num-images", type=int, default=100)
    p.add_argument("--images", default=None, help="folder of test images (default: the 100 bundled ones)")
    p.add_argument("--batch-size", type=int, default=50, help="images optimised together (default: %(default)s)")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS even if its weights are present")
    _add_kernel_option(p, "bicubic-antialias")
    _add_model_options(p)
    p.set_defaults(out="brgm-evaluation")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("calibrate", help="coverage of posterior methods on problems drawn from the model",
                       description="Simulation-based calibration: draw w from the model's Gaussian prior, "
                       "x = G(w), y = f(x) + N(0, sigma_pixel^2); run each method; report the coverage of its "
                       "central intervals (latents and unknown-region pixels), posterior std / error, RMSE "
                       "against MAP's, SBC rank statistics and wall time. Writes calibration.json and "
                       "calibration.png.")
    p.add_argument("--task", required=True, choices=("super-resolution", "inpainting"))
    p.add_argument("--factor", type=int, default=4, help="super-resolution factor (default: %(default)s)")
    p.add_argument("--mask-id", type=int, default=0, help="standard in-painting mask 0..6 (default: %(default)s)")
    _add_kernel_option(p, "bicubic-antialias")
    p.add_argument("--methods", default="map,vi-meanfield",
                   help="comma-separated names from brgm_pyro.inference.calibration.METHODS (default: %(default)s)")
    p.add_argument("--import", dest="imports", action="append", default=[],
                   help="module that registers more methods (repeatable)")
    p.add_argument("--num-problems", type=int, default=20)
    p.add_argument("--num-draws", type=int, default=256, help="posterior draws per problem (default: %(default)s)")
    p.add_argument("--steps", type=int, default=500, help="optimisation steps of the methods (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the methods and their draws")
    p.add_argument("--problem-seed", type=int, default=None, help="seed of the simulated problems (default: --seed)")
    p.add_argument("--sigma-pixel", type=float, default=0.1, help="the model's pixel noise std (default: %(default)s)")
    p.add_argument("--prior-std", default="per-dimension", choices=("per-dimension", "scalar"))
    p.add_argument("--generator", default="fashion-mnist-32", help="bundled name or checkpoint path")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--out", default="brgm-calibration", help="output folder (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_calibrate)
    return parser


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .generators import CheckpointError

    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        # errors a user can act on: bad task/mask/image, missing checkpoint or weights
        print(f"brgm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
