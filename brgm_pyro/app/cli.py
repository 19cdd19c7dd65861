"""The ``brgm`` command line: argument parsing, and commands that call the application layer.

The checks of the arguments and what they mean live in ``brgm_pyro.app.cli_args``; building and
running a reconstruction in ``brgm_pyro.app.reconstruction``; writing its images, metrics, figure and
JSON in ``brgm_pyro.app.report``; data-set runs (several images, ``evaluate``) in ``brgm_pyro.app.dataset_cli``.
``demo`` and ``reconstruct`` (one image) share one flow, ``reconstruct_problems``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

import brgm_pyro

from ..functional import image_shape
from .. import generators  # generators.load_generator looked up at call time (tests replace it)
from ..bundled import load_test_images
from .cli_args import (  # noqa: F401 - check_numbers, check_device, clear_previous_outputs: public names
    DEMO_TASK_FOLDERS, check_args, check_device, check_numbers, check_out, clear_previous_outputs, corruption_from_args,
    is_dataset_run, load_generator_and_features, method_list, model_from_args, read_image_arg,
)
from ..corruptions import BLIND_CHOICES, SR_KERNELS, TASKS, Corruption, make_corruption
from .dataset_cli import add_dataset_options, evaluate_command, reconstruct_command
from ..generators import CheckpointError, PriorGenerator, UnsafeCheckpointError
from ..inference import to_inference_data
from ..study import calibrate, methods_from, resolve_methods, simulate_problems
from ..study.interval_scale import BUNDLED_INTERVAL_SCALES, fit_method_interval_scale, widened
from ..models import BRGMModel
from .reconstruction import FEATURE_CHOICES, MethodOutput, run_methods
from .report import (
    figure_row, format_parameter_report, observation_display, parameter_report, save_outputs, summary_figure,
    weights_report, write_json,
)
from ..training.data import FASHION_MNIST_DIR
from ..training.trainer import TrainingConfig, export_generator, train_generator

# Old private names, still imported by brgm_pyro.app.dataset_run.
_save_outputs = save_outputs
model_config_dict = weights_report


# --- the one flow of demo and reconstruct ------------------------------------------------------

@dataclass
class Problem:
    """One observation of a ``demo`` / ``reconstruct`` run, and (once solved) its model and outputs."""

    task: str
    corruption: Corruption
    observation: torch.Tensor
    truth: torch.Tensor | None              # (1, C, H, W) on the CPU, or None for an observed image
    folder: str | None = None               # subfolder of --out (None: --out itself)
    title: str | None = None                # row title in the summary figure
    interval_scale: float | None = None     # widens the fullrank posterior (None: --interval-scale)
    model: BRGMModel | None = None
    outputs: dict[str, MethodOutput] = field(default_factory=dict)


def reconstruct_problems(args: argparse.Namespace, out: Path, generator: PriorGenerator,
                         features: torch.nn.Module | None, problems: list[Problem],
                         methods: Sequence[str]) -> tuple[dict, Path]:
    """Build each problem's model from the arguments, run ``methods`` and refuse non-finite images;
    only then clear the previous run's files and write each problem's images, metrics.json (one
    entry per problem; a problem written into --out itself is the whole file) and summary.png.
    Returns the metrics.json content and the figure's path."""
    for problem in problems:
        problem.model = model_from_args(args, generator, problem.corruption, problem.observation, features)
        if problem.interval_scale is None:
            problem.interval_scale = args.interval_scale
        problem.outputs = run_methods(problem.model, methods, steps=args.steps, lr=args.lr, samples=args.samples,
                                      seed=args.seed, progress=not args.no_progress,
                                      interval_scale=problem.interval_scale)
        _check_finite_outputs(problem.outputs)
    clear_previous_outputs(args, out)
    entries, rows, notes = {}, [], []
    for problem in problems:
        folder = out if problem.folder is None else out / problem.folder
        display = observation_display(problem.corruption, problem.observation, problem.model.image_shape)
        entry = {"task": problem.task, "corruption": problem.model.corruption.describe(),
                 "config": weights_report(problem.model),
                 "metrics": save_outputs(folder, problem.truth, display, problem.outputs)}
        fullrank = problem.outputs.get("fullrank")
        if fullrank is not None:
            entry["fullrank_interval_scale"] = problem.interval_scale
        if fullrank is not None and fullrank.result.model is not problem.model:
            entry["fullrank_config"] = weights_report(fullrank.result.model)  # its calibrated_model
        parameters = parameter_report(problem.outputs)
        if parameters:
            entry["parameters"] = parameters
            notes.append(format_parameter_report(parameters))
        entries[problem.folder] = entry
        rows.append(figure_row(display, problem.truth, problem.outputs))
        if getattr(args, "save_inference_data", False):
            for method, o in problem.outputs.items():
                idata = to_inference_data(o.result, problem.model, num_draws=args.samples)
                idata.to_netcdf(str(folder / f"{method}_inference_data.nc"))
    report = entries[None] if list(entries) == [None] else entries
    write_json(report, out / "metrics.json")
    if notes:
        print("\n".join(notes))
    titles = [p.title or "" for p in problems] if any(p.title for p in problems) else None
    figure = summary_figure(rows, out / "summary.png", row_titles=titles, notes="\n".join(notes) or None)
    return report, figure


def _check_finite_outputs(outputs: dict[str, MethodOutput]) -> None:
    for method, o in outputs.items():
        if not bool(torch.isfinite(o.image).all()):
            raise ValueError(f"{method} gave non-finite (NaN / inf) images: the optimisation diverged; nothing was "
                             "written (try a smaller --lr)")


# --- commands ----------------------------------------------------------------------------------

def _cmd_info(args: argparse.Namespace) -> int:
    print(f"brgm-pyro {brgm_pyro.__version__}")
    print(f"python    {platform.python_version()}")
    print(f"torch     {torch.__version__}")
    for name in ("pyro", "arviz", "lpips", "numpy"):
        try:
            module = importlib.import_module(name)
            print(f"{name:<9} {getattr(module, '__version__', '?')}")
        except ImportError:  # pragma: no cover - reported, not fatal
            print(f"{name:<9} not installed")
    if torch.cuda.is_available():
        print(f"device    cuda ({torch.cuda.get_device_name(0)})")
    else:
        print("device    cpu (no GPU found)")
    return 0


def _cmd_train_generator(args: argparse.Namespace) -> int:
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


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    args.interval_scale = default_interval_scale(args, args.task)
    if is_dataset_run(args):  # several images, a folder, a glob, the bundled test set, or torchrun
        return reconstruct_command(args)
    args.image = args.image[0]
    out = check_out(args)
    generator, features = load_generator_and_features(args)
    corruption = corruption_from_args(args, generator.img_resolution)
    truth, observation = read_image_arg(args, generator, corruption)
    problem = Problem(args.task, corruption, observation, truth)
    methods = getattr(args, "methods", None) or method_list(args.method)
    _, figure = reconstruct_problems(args, out, generator, features, [problem], methods)
    print(f"outputs in {out}; summary figure: {figure}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    out = check_out(args)
    generator, features = load_generator_and_features(args)
    images, _, _ = load_test_images()
    if args.image_index >= len(images):
        raise ValueError(f"--image-index must be in 0..{len(images) - 1}, got {args.image_index}")
    shape = image_shape(generator)
    if tuple(images.shape[1:]) != shape:
        raise ValueError(f"the demo images are {tuple(images.shape[1:])} but the generator makes {shape}; "
                         "run the demo with the bundled generator, or use `brgm reconstruct`")
    truth = images[args.image_index:args.image_index + 1]
    sr = make_corruption("super-resolution", shape[-1], factor=4, kernel=args.kernel)
    inpainting = make_corruption("inpainting", shape[-1], mask_id=args.mask_id)
    problems = [Problem(task, op, op(truth), truth, folder=task, title=title,
                        interval_scale=default_interval_scale(args, kind))
                for task, op, title, kind in zip(DEMO_TASK_FOLDERS, (sr, inpainting),
                                                 ("SR x4", f"in-painting, mask {args.mask_id}"),
                                                 ("super-resolution", "inpainting"))]
    report, figure = reconstruct_problems(args, out, generator, features, problems, ["map", "fullrank"])
    for name, entry in report.items():
        m = entry["metrics"]
        print(f"{name:>16}: RMSE  MAP {m['map']['rmse']:.1f}  posterior mean {m['fullrank']['rmse']:.1f}  "
              f"(0-255 scale; posterior mean pixel std {m['fullrank']['mean_pixel_std']:.3f})")
    scales = ", ".join(f"{p.task} x{p.interval_scale:g}" for p in problems)
    print(f"posterior: method fullrank, interval scale {scales} (on held-out problems drawn from the model its 90% "
          "intervals held 0.89 / 0.90 of the unknown pixels for x4 SR / in-painting mask 0 at scales 0.95 / 1.35; "
          "at 4.6 / 5.3x MAP's time; the paper's mean-field VI 0.85 / 0.71; see the README)")
    print(f"summary figure: {figure}")
    return 0


def default_interval_scale(args: argparse.Namespace, task: str) -> float:
    """--interval-scale if given; else the measured scale (``BUNDLED_INTERVAL_SCALES``) where the
    setting is the one it was measured in (the bundled generator with its default pixel noise, x4
    bicubic-antialias super-resolution or in-painting with standard mask 0), and 1 elsewhere."""
    if args.interval_scale is not None:
        return args.interval_scale
    own_noise = getattr(args, "sigma_pixel", None) is None and getattr(args, "lambda_pixel", None) is None
    inpainting_0 = task == "inpainting" and args.mask_id == 0 and getattr(args, "mask", None) is None
    sr_4 = (task == "super-resolution" and getattr(args, "factor", None) in (None, 4)
            and args.kernel == "bicubic-antialias")
    measured = args.generator == "fashion-mnist-32" and own_noise and (inpainting_0 or sr_4)
    return BUNDLED_INTERVAL_SCALES[task] if measured else 1.0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    return evaluate_command(args)  # per-image outputs, resumable, sharded under torchrun


def _cmd_calibrate(args: argparse.Namespace) -> int:
    """Simulation-based calibration of posterior methods on problems drawn from the model
    (``--images DIR``: the recommended posterior on real images with ground truth instead)."""
    if args.images is not None:
        return _calibrate_real(args)
    methods = resolve_methods(args.methods, methods_from(args.imports))
    for name, value in (("--num-problems", args.num_problems), ("--num-draws", args.num_draws),
                        ("--steps", args.steps)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    generator = generators.load_generator(args.generator, device=args.device)
    corruption = corruption_from_args(args, generator.img_resolution)
    problem_seed = args.seed if args.problem_seed is None else args.problem_seed
    problems = simulate_problems(generator, corruption, args.num_problems, sigma_pixel=args.sigma_pixel,
                                 prior_std=args.prior_std, seed=problem_seed)
    settings = {"task": args.task, "corruption": corruption.describe(), "generator": args.generator,
                "sigma_pixel": args.sigma_pixel, "prior_std": args.prior_std, "kappa": 0.0,
                "problem_seed": problem_seed, "steps": args.steps}
    out = Path(args.out)
    if args.fit_interval_scale:
        return _fit_interval_scale(args, methods, problems, settings, out)
    if args.interval_scale != 1.0:
        methods = {f"{name}-x{args.interval_scale:g}": widened(method, args.interval_scale)
                   for name, method in methods.items()}
        settings["interval_scale"] = args.interval_scale
    report = calibrate(problems, methods, num_draws=args.num_draws, seed=args.seed, progress=not args.no_progress,
                       options={"num_steps": args.steps}, settings=settings)
    json_path = report.to_json(out / "calibration.json")
    figure = report.figure(out / "calibration.png")
    print(f"# {args.task} ({corruption.describe()}), {args.num_problems} problems (seed {problem_seed}), "
          f"{args.num_draws} draws, {args.steps} steps, method seed {args.seed}")
    print(report.table())
    print(f"written: {json_path} and {figure}")
    return 0


def _calibrate_real(args: argparse.Namespace) -> int:
    """``calibrate --images DIR``: coverage, RMSE against MAP, std / error and draw plausibility of the
    recommended posterior on real images, and its conformal interval scale (``study.real_images``)."""
    from ..bundled import load_domain_classifier
    from ..study.real_images import folder_images, real_image_calibration, split_images
    from ..training.data import load_fashion_mnist

    generator = generators.load_generator(args.generator, device=args.device)
    corruption = corruption_from_args(args, generator.img_resolution)
    folder = Path(args.images)
    if any(folder.glob("t10k-images-idx3-ubyte*")):  # Fashion-MNIST IDX files: the test split, bundled 100 excluded
        images, _ = load_fashion_mnist("test", folder, generator.img_resolution)
        ids, exclude, source = range(images.shape[0]), load_test_images()[2].tolist(), f"{folder} (test split)"
    else:
        images, ids = folder_images(folder, generator.img_resolution, generator.img_channels)
        exclude, source = (), f"{folder} (files sorted by name, id = position)"
    split = split_images(images, ids, args.num_calibration, args.num_evaluation, seed=args.split_seed,
                         exclude_ids=exclude, source=source)
    misfit = {"none": None, "fit": "fit"}.get(args.misfit_scale, None)
    if args.misfit_scale not in ("none", "fit"):
        misfit = positive_float(args.misfit_scale)
    domain = (generator.img_channels, generator.img_resolution) == (1, 32) and args.generator == "fashion-mnist-32"
    setting = (f"inpainting-mask{args.mask_id}" if args.task == "inpainting"
               else f"super-resolution-x{args.factor}-{args.kernel}")
    out = Path(args.out)
    report = real_image_calibration(
        generator, corruption, split, sigma_pixel=args.sigma_pixel, misfit=misfit, alpha=args.alpha,
        num_draws=args.num_draws, seed=args.seed, batch_size=args.batch_size,
        classifier=load_domain_classifier(args.device or "cpu") if domain else None, setting=setting,
        fit_options={"num_steps": args.steps},
        out=out / "real_calibration.json", log=None if args.no_progress else print)
    stored = report.interval_scales("plain")
    (out / "interval_scales.json").write_text(json.dumps(stored, indent=1))
    print(f"# {args.task} ({corruption.describe()}) on real images of {args.images}: {len(split.calibration_ids)} "
          f"calibration, {len(split.evaluation_ids)} evaluation ({split.rule}); sigma {args.sigma_pixel}")
    print(report.table())
    fit = report.fit("plain")
    print(f"conformal scale (alpha {args.alpha}, n = {fit['num_images']}): {fit['scale']} "
          f"(plug-in, no guarantee: {fit['plug_in_scale']}); metadata to store: {out / 'interval_scales.json'}")
    return 0


def _fit_interval_scale(args: argparse.Namespace, methods: dict, problems: list, settings: dict, out: Path) -> int:
    """``calibrate --fit-interval-scale``: fit the interval scale of the (one) method on the problems."""
    if len(methods) != 1:
        raise ValueError(f"--fit-interval-scale fits one method at a time, got {', '.join(methods)}")
    (name, method), = methods.items()
    fit = fit_method_interval_scale(problems, method, seed=args.seed, num_draws=args.num_draws,
                                    options={"num_steps": args.steps})
    out.mkdir(parents=True, exist_ok=True)
    path = out / "interval_scale.json"
    path.write_text(json.dumps({"method": name, "settings": settings, "num_draws": args.num_draws,
                                "seed": args.seed, **fit.__dict__}, indent=1))
    print(f"# interval scale of {name}: {args.task} ({settings['corruption']}), {len(problems)} problems "
          f"(seed {settings['problem_seed']}), {args.num_draws} draws")
    print("| scale | " + " | ".join(f"{a:g}" for a in fit.levels) + " | mean abs error |")
    print("|---" * (len(fit.levels) + 2) + "|")
    for s, row, err in zip(fit.scales, fit.coverage, fit.calibration_error):
        mark = " <-" if s == fit.scale else ""
        print(f"| {s:.2f} | " + " | ".join(f"{c:.3f}" for c in row) + f" | {err:.3f}{mark} |")
    print(f"fitted scale: {fit.scale:g} (use --interval-scale {fit.scale:g}); written: {path}")
    return 0


# --- the parser --------------------------------------------------------------------------------

def _add_model_options(p: argparse.ArgumentParser, steps: int = 500) -> None:
    p.add_argument("--generator", default="fashion-mnist-32",
                   help="bundled name or checkpoint path (.pkl from NVIDIA / the BRGM authors, rosinality .pt, "
                        "brgm-pyro .pt); default: %(default)s")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--features", default="auto", choices=FEATURE_CHOICES,
                   help="perceptual feature network (auto: the generator's own, else LPIPS-VGG)")
    p.add_argument("--steps", type=int, default=steps, help="optimisation steps (default: %(default)s)")
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="brgm-out", help="output folder (default: %(default)s); an existing folder "
                   "with files is refused unless --overwrite is given")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing --out folder, first removing the files a previous run wrote there")
    p.add_argument("--no-progress", action="store_true")
    g = p.add_argument_group("weights (default: the generator's recommended balance, else the authors' released one)")
    g.add_argument("--sigma-pixel", type=float)
    g.add_argument("--sigma-perceptual", type=float)
    g.add_argument("--kappa", type=float, help="von Mises concentration of the colinearity prior (0: off)")
    g.add_argument("--misfit-scale", type=misfit_scale_arg, default=None,
                   help="tau of the generator's misfit x = G(w) + r, r ~ N(0, tau^2) per pixel, integrated out of "
                        "the pixel likelihood (a number, or 'learn'); draws of the image then include r (default: off)")
    g.add_argument("--lambda-pixel", type=float, help="paper's Eq. 6 weight: sigma_pixel = lambda^-1/2")
    g.add_argument("--lambda-perceptual", type=float, help="paper's Eq. 6 weight: sigma_perceptual = lambda^-1/2")
    g.add_argument("--lambda-colin", type=float, help="paper's Eq. 6 weight: kappa = lambda_colin / 2")


def misfit_scale_arg(text: str) -> float | str:
    """argparse type of --misfit-scale: 'learn' or a finite number > 0."""
    return "learn" if text == "learn" else positive_float(text)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _add_interval_scale_option(p: argparse.ArgumentParser, default: float | None, default_help: str) -> None:
    p.add_argument("--interval-scale", type=positive_float, default=default,
                   help="widen the fullrank posterior to N(mu, s^2 Sigma): the simulation-calibrated scale s "
                        "(`brgm calibrate --fit-interval-scale` fits it for your generator and corruption; "
                        f"README, Calibration); {default_help}")


def _add_kernel_option(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--kernel", default=default, choices=SR_KERNELS,
                   help="super-resolution down-sampling kernel (default: %(default)s; 'bicubic' without "
                        "antialiasing is the authors' release, which aliases badly on 32x32 images)")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): ``brgm COMMAND: error: ...``, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="brgm", description="Bayesian image reconstruction with deep generative priors (BRGM)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("info", help="print versions and whether a GPU is present")
    p.set_defaults(func=_cmd_info)

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
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--export", help="also write the EMA generator to this .pt file (project format)")
    p.set_defaults(func=_cmd_train_generator)

    p = sub.add_parser("demo", help="x4 super-resolution and in-painting of a bundled test image with MAP and VI",
                       description="The main job: on the bundled generator and a bundled Fashion-MNIST test image, "
                       "run x4 super-resolution and in-painting with MAP and VI; write reconstructions, VI samples, "
                       "std maps, a summary figure and metrics.json.")
    _add_model_options(p)
    p.set_defaults(out="brgm-demo")
    p.add_argument("--image-index", type=int, default=0, help="which of the 100 bundled test images (0..99)")
    p.add_argument("--mask-id", type=int, default=0, help="standard mask for the in-painting row (0..6)")
    p.add_argument("--samples", type=int, default=64, help="posterior samples to draw (default: %(default)s)")
    _add_interval_scale_option(p, None, "default: the measured scale of each row's setting, 1.35 for in-painting "
                               "mask 0 and 0.95 for SR x4 with the bundled generator, else 1")
    _add_kernel_option(p, "bicubic-antialias")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("reconstruct", help="reconstruct images (MAP / VI / MCMC): one, several, a folder, a glob",
                       description="Reconstruct IMAGE: by default IMAGE is the clean image, corrupted here (metrics "
                       "against it are reported); with --observed it is the corrupted observation itself. One image "
                       "file writes its outputs into --out; several images, a folder, a glob or "
                       "--bundled-test-images write one subfolder per image and summary.csv / summary.json.")
    p.add_argument("image", nargs="*", help="PNG / JPEG / .npy images, folders or glob patterns (square, or use "
                   "--center-crop; 8- or 16-bit, at most 8192x8192 pixels, no transparent pixels)")
    p.add_argument("--center-crop", action="store_true", help="crop a non-square image to its central square")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--factor", type=int, default=None, help="super-resolution factor (default 4)")
    p.add_argument("--mask", default=None, help="in-painting mask image, white (1) = observed")
    p.add_argument("--mask-id", type=int, default=None, help="one of the seven standard masks, 0..6")
    p.add_argument("--observed", action="store_true", help="IMAGE is already the corrupted observation")
    p.add_argument("--method", default="map,fullrank",
                   help="comma-separated: map; fullrank (recommended posterior: multi-start MAP, Laplace, full-rank "
                        "Gaussian, fitted to the pixel-likelihood model with kappa 0 and no perceptual term; "
                        "on held-out problems its 90%% intervals hold 0.90 of the unknown pixels for x4 SR and, "
                        "with --interval-scale 1.35, for in-painting mask 0 (0.84 without), at about 4-6x MAP's "
                        "time); vi (the paper's mean-field guide: overconfident, 90%% intervals hold 0.85 / 0.71); "
                        "mcmc (default: %(default)s)")
    p.add_argument("--samples", type=int, default=64, help="posterior samples to draw (default: %(default)s)")
    _add_interval_scale_option(p, None, "default: the measured scale where the setting is the measured one, "
                               "1.35 for in-painting with --mask-id 0 and 0.95 for x4 bicubic-antialias SR on the "
                               "bundled generator at its own pixel noise, else 1")
    p.add_argument("--save-inference-data", action="store_true", help="also write ArviZ NetCDF files")
    p.add_argument("--learn-noise", action="store_true",
                   help="infer sigma_pixel (prior HalfNormal(0.5)) instead of fixing it")
    p.add_argument("--blind", action="append", choices=BLIND_CHOICES, default=[],
                   help="infer this corruption parameter (repeatable): blur (task blur), kernel (super-resolution "
                        "with --kernel gaussian), shift (sub-pixel translation), gain (gain and offset)")
    _add_kernel_option(p, "bicubic")
    _add_model_options(p)
    add_dataset_options(p)
    p.set_defaults(func=_cmd_reconstruct)

    p = sub.add_parser("evaluate", help="BRGM (MAP) against classical baselines on test images (Table 1)")
    p.add_argument("--task", required=True, choices=("super-resolution", "inpainting"))
    p.add_argument("--factor", type=int, default=4)
    p.add_argument("--num-images", type=int, default=100)
    p.add_argument("--images", default=None, help="folder or glob of test images (default: the 100 bundled ones)")
    p.add_argument("--batch-size", type=int, default=50, help="images optimised together (default: %(default)s)")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS even if its weights are present")
    p.add_argument("--center-crop", action="store_true", help="crop non-square --images to their central square")
    _add_kernel_option(p, "bicubic-antialias")
    _add_model_options(p)
    add_dataset_options(p, evaluate=True)
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
                   help="comma-separated names from brgm_pyro.study.METHODS (default: %(default)s)")
    p.add_argument("--import", dest="imports", action="append", default=[],
                   help="module whose METHODS dict (name -> method) adds methods (repeatable)")
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
    p.add_argument("--interval-scale", type=positive_float, default=1.0,
                   help="widen every method's posterior by this scale about its centre (default: %(default)s)")
    p.add_argument("--fit-interval-scale", action="store_true",
                   help="instead of the coverage report, fit the interval scale of the one method in --methods "
                        "(the scale whose calibration curve is closest to the diagonal); writes interval_scale.json")
    r = p.add_argument_group("real images (--images: the recommended posterior on real images with ground truth)")
    r.add_argument("--images", default=None,
                   help="folder of real images (PNG / JPEG, or Fashion-MNIST IDX files: its test split without "
                        "the 100 bundled images); split into calibration and evaluation images by a seeded rule")
    r.add_argument("--num-calibration", type=int, default=30, help="calibration images (default: %(default)s)")
    r.add_argument("--num-evaluation", type=int, default=30, help="evaluation images (default: %(default)s)")
    r.add_argument("--split-seed", type=int, default=25, help="seed of the split (default: %(default)s)")
    r.add_argument("--alpha", type=float, default=0.1,
                   help="the conformal scale guarantees coverage >= 1 - alpha (default: %(default)s)")
    r.add_argument("--misfit-scale", default="none",
                   help="also measure the model with the generator's misfit term: 'fit' (tau from calibration "
                        "MAP residuals) or a number; 'none' (default) measures the paper's model only")
    r.add_argument("--batch-size", type=int, default=5, help="images fitted together (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_calibrate)
    return parser


# Errors a user can act on (bad flag, image, mask, --out, device, checkpoint, missing weights):
# one line on stderr and exit code 2.  Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, PermissionError, IsADirectoryError,
                                                NotADirectoryError, FileExistsError, CheckpointError,
                                                UnsafeCheckpointError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"brgm {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
