"""The ``brgm`` command line."""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .functional import image_shape

# ---------------------------------------------------------------------------------------------
# Up-front checks: every numeric flag, --device, --method, input files and --out are checked
# before a generator is loaded or anything is computed.

_Rule = tuple[str, Callable[[Any], bool]]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _positive(v: Any) -> bool:
    return _finite(v) and v > 0


def _non_negative(v: Any) -> bool:
    return _finite(v) and v >= 0


def _int_at_least(lo: int) -> _Rule:
    return f"an integer >= {lo}", lambda v: isinstance(v, int) and v >= lo


def _int_between(lo: int, hi: int) -> _Rule:
    return f"an integer in {lo}..{hi}", lambda v: isinstance(v, int) and lo <= v <= hi


POSITIVE = ("a positive finite number", _positive)
NON_NEGATIVE = ("a finite number >= 0", _non_negative)
MAX_SEED = 2**32 - 1

_MODEL_RULES: dict[str, _Rule] = {
    "steps": _int_at_least(1), "lr": POSITIVE, "seed": _int_between(0, MAX_SEED),
    "sigma_pixel": POSITIVE, "sigma_perceptual": POSITIVE, "kappa": NON_NEGATIVE,
    "lambda_pixel": POSITIVE, "lambda_perceptual": POSITIVE, "lambda_colin": NON_NEGATIVE,
}
_RULES: dict[str, dict[str, _Rule]] = {
    "demo": {**_MODEL_RULES, "image_index": _int_between(0, 99), "mask_id": _int_between(0, 6),
             "samples": _int_at_least(1)},
    "reconstruct": {**_MODEL_RULES, "factor": _int_at_least(2), "mask_id": _int_between(0, 6),
                    "samples": _int_at_least(1)},
    "evaluate": {**_MODEL_RULES, "factor": _int_at_least(2), "num_images": _int_at_least(1),
                 "batch_size": _int_at_least(1)},
    "train-generator": {
        "resolution": ("a power of two in 4..1024", lambda v: isinstance(v, int) and v in [2**k for k in range(2, 11)]),
        "channels": ("1 or 3", lambda v: v in (1, 3)), "z_dim": _int_at_least(1), "w_dim": _int_at_least(1),
        "mapping_layers": _int_at_least(1), "channel_base": _int_at_least(1), "channel_max": _int_at_least(1),
        "batch_size": _int_at_least(1), "iterations": _int_at_least(1), "max_minutes": POSITIVE, "lr": POSITIVE,
        "r1_gamma": NON_NEGATIVE, "seed": _int_between(0, MAX_SEED), "snapshot_every": _int_at_least(1),
    },
}


def check_numbers(args: argparse.Namespace) -> None:
    """Each numeric flag given (not None) must be finite and in range: ValueError naming the flag."""
    for dest, (what, ok) in _RULES.get(args.command, {}).items():
        value = getattr(args, dest, None)
        if value is not None and not ok(value):
            raise ValueError(f"--{dest.replace('_', '-')} must be {what}, got {value}")


def check_device(device: str | None) -> None:
    """--device: cpu, cuda, cuda:N or mps, and present on this machine."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA GPU is available here (this torch {torch.__version__} "
                             f"{'has no CUDA support' if torch.version.cuda is None else 'finds no GPU'}); "
                             "use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"--device {device}: Apple MPS is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise ValueError(f"--device {device!r} is not supported; use cpu, cuda, cuda:N or mps")


def _method_list(text: str) -> list[str]:
    from .reconstruction import METHODS

    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise ValueError(f"--method needs at least one of {', '.join(METHODS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"--method lists a method twice: {text!r}")
    return methods


def _check_input_file(path: str, what: str, decode: bool = True) -> None:
    """An image / mask file exists, is within the pixel limit and (decode) reads as a valid image."""
    from .io import check_image, check_image_file

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} {p} does not exist")
    if not p.is_file():
        raise ValueError(f"{what} {p} is not a regular file")
    if decode:
        check_image(p)
    elif p.suffix.lower() != ".npy":
        check_image_file(p)


# Files the commands write; --overwrite removes these (and only these) from the output folder.
_RUN_FILES = ("input.png", "truth.png", "map.png", "metrics.json", "summary.png",
              *(f"{m}_{kind}" for m in ("map", "vi", "fullrank", "mcmc")
                for kind in ("mean.png", "samples.png", "std.png", "inference_data.nc")))
_DEMO_TASK_FOLDERS = ("super-resolution", "inpainting")


def _output_files(args: argparse.Namespace, out: Path) -> list[Path]:
    """The paths a previous run of this command may have left in ``out``."""
    if args.command == "evaluate":
        return [out / f"evaluation-{args.task}.md", out / f"evaluation-{args.task}.csv"]
    files = [out / name for name in _RUN_FILES]
    if args.command == "demo":
        files += [out / task / name for task in _DEMO_TASK_FOLDERS for name in _RUN_FILES]
    return files


def _is_dataset_run(args: argparse.Namespace) -> bool:
    """evaluate, and reconstruct on several images: the data-set runner refuses finished results
    itself (unless --resume or --overwrite), per image."""
    from .dataset_cli import is_dataset_run

    return args.command == "evaluate" or args.command == "reconstruct" and is_dataset_run(args)


def check_out(args: argparse.Namespace) -> Path:
    """--out must be a folder we can write.  reconstruct / demo: an existing folder that is not
    empty is refused without --overwrite.  evaluate (one table pair per task in a shared folder):
    refused when this task's tables exist, without --overwrite."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder; choose a folder path")
    ancestor = out
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"--out {out}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: no permission to write in {ancestor}")
    per_image = args.command == "reconstruct" and _is_dataset_run(args)  # the runner refuses finished images
    if out.is_dir() and not args.overwrite and not per_image and not getattr(args, "resume", False):
        if args.command == "evaluate":
            existing = [p.name for p in _output_files(args, out) if p.exists()]
        else:
            existing = sorted(p.name for p in out.iterdir())
        if existing:
            shown = ", ".join(existing[:4]) + (", ..." if len(existing) > 4 else "")
            what = "these results" if args.command == "evaluate" else "files"
            raise ValueError(f"--out {out} already holds {what} ({shown}); "
                             "pass --overwrite to replace the previous run's files, or choose another --out")
    return out


def clear_previous_outputs(args: argparse.Namespace, out: Path) -> list[Path]:
    """With --overwrite: remove the files a previous run of this command wrote (other files stay)."""
    removed = []
    if not (args.overwrite and out.is_dir()):
        return removed
    for path in _output_files(args, out):
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(path)
    if args.command == "demo":
        for task in _DEMO_TASK_FOLDERS:
            folder = out / task
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    return removed


def check_args(args: argparse.Namespace) -> None:
    """All up-front checks of one command line (before any computation)."""
    check_numbers(args)
    check_device(getattr(args, "device", None))
    if args.command == "reconstruct":
        args.methods = _method_list(args.method)
        if not _is_dataset_run(args):
            _check_input_file(args.image[0], "image file")
        elif args.image and not args.bundled_test_images:  # every file of the data set, before any computation
            from .dataset_run import collect_images

            for source in collect_images(args.image)[:args.num_images]:
                _check_input_file(str(source.path), "image file")
        if args.mask is not None:
            _check_input_file(args.mask, "mask image", decode=False)  # read (and checked) by the corruption
    if args.command == "evaluate" and args.images is not None and not Path(args.images).is_dir():
        raise ValueError(f"--images {args.images} is not a folder")
    if args.command in ("reconstruct", "demo", "evaluate"):
        check_out(args)
    if args.command == "train-generator" and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} exists and is not a folder")


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


def _load_image_cli(load_image, path: str, **kwargs):
    """load_image with the CLI's wording for a non-square image."""
    from .io import NonSquareImageError

    try:
        return load_image(path, **kwargs)
    except NonSquareImageError as err:
        raise ValueError(f"{err.name} is not square ({err.width}x{err.height}); pass --center-crop to crop its "
                         "central square") from None


def _check_finite_outputs(outputs) -> None:
    import torch

    for method, o in outputs.items():
        if not bool(torch.isfinite(o.image).all()):
            raise ValueError(f"{method} gave non-finite (NaN / inf) images: the optimisation diverged; nothing was "
                             "written (try a smaller --lr)")


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    from .dataset_cli import is_dataset_run, reconstruct_command

    if is_dataset_run(args):  # several images, a folder, a glob, the bundled test set, or torchrun
        return reconstruct_command(args)
    args.image = args.image[0]
    from .io import load_image
    from .reconstruction import (build_problem, format_parameter_report, make_task, observation_display,
                                 parameter_report, run_methods, summary_figure, write_json)

    out = check_out(args)
    generator, features = _load(args)
    shape = image_shape(generator)
    corruption = make_task(args.task, generator.img_resolution, factor=args.factor, mask=args.mask,
                           mask_id=args.mask_id, kernel=args.kernel)
    out_shape = tuple(corruption.output_shape(shape))
    if args.observed:
        observation = _load_image_cli(load_image, args.image, resolution=None, channels=shape[0],
                                      center_crop=args.center_crop)
        if tuple(observation.shape[1:]) != out_shape:
            raise ValueError(f"the observation {args.image} is {tuple(observation.shape[1:])} (C, H, W) but "
                             f"{corruption.describe()} of this generator's images gives {out_shape}")
        truth = None
    else:
        truth = _load_image_cli(load_image, args.image, resolution=shape[-1], channels=shape[0],
                                center_crop=args.center_crop)
        observation = corruption(truth)
    model = build_problem(generator, corruption, observation.to(generator.device), features, **_overrides(args))
    model = _blind_model(model, args)  # --learn-noise / --blind: unknown noise and corruption parameters
    methods = getattr(args, "methods", None) or _method_list(args.method)
    outputs = run_methods(model, methods, steps=args.steps, lr=args.lr, samples=args.samples, seed=args.seed,
                          progress=not args.no_progress)
    display = observation_display(corruption, observation, shape)
    _check_finite_outputs(outputs)
    clear_previous_outputs(args, out)
    metrics = _save_outputs(out, truth, display, outputs)
    parameters = parameter_report(outputs)
    write_json({"task": args.task, "corruption": model.corruption.describe(), "metrics": metrics,
                "config": model_config_dict(model), **({"parameters": parameters} if parameters else {})},
               out / "metrics.json")
    notes = format_parameter_report(parameters)
    if notes:
        print(notes)
    figure = summary_figure([_figure_row(display, truth, outputs)], out / "summary.png", notes=notes or None)
    if args.save_inference_data:
        from .inference import to_inference_data

        for method, o in outputs.items():
            idata = to_inference_data(o.result, model, num_draws=args.samples)
            idata.to_netcdf(str(out / f"{method}_inference_data.nc"))
    print(f"outputs in {out}; summary figure: {figure}")
    return 0


def _blind_model(model, args: argparse.Namespace):
    """--learn-noise: sigma_pixel ~ HalfNormal(0.5) is inferred; --blind: the named corruption
    parameters are inferred (default priors in brgm_pyro.corruptions.blind)."""
    from dataclasses import replace

    from .corruptions import make_blind
    from .models import learn_noise

    if args.blind:
        model = replace(model, corruption=make_blind(model.corruption, args.blind))
    if args.learn_noise:
        model = learn_noise(model)
    return model


def model_config_dict(model) -> dict:
    """The weights a run used (for metrics.json)."""
    from .models import PixelLikelihood, PerceptualLikelihood

    out: dict = {"kappa": getattr(model.colinearity, "kappa", 0.0)}
    for lik in model.likelihoods:
        if isinstance(lik, (PixelLikelihood, PerceptualLikelihood)):
            key = "sigma_pixel" if isinstance(lik, PixelLikelihood) else "sigma_perceptual"
            out[key] = lik.sigma if lik.sigma is not None else f"learned, {lik.sigma_prior.describe()}"
    return out


def _cmd_demo(args: argparse.Namespace) -> int:
    from .bundled import load_test_images
    from .reconstruction import (build_problem, make_task, observation_display, run_methods, summary_figure,
                                 write_json)

    out = check_out(args)
    generator, features = _load(args)
    images, labels, _ = load_test_images()
    if args.image_index >= len(images):
        raise ValueError(f"--image-index must be in 0..{len(images) - 1}, got {args.image_index}")
    shape = image_shape(generator)
    if tuple(images.shape[1:]) != shape:
        raise ValueError(f"the demo images are {tuple(images.shape[1:])} but the generator makes {shape}; "
                         "run the demo with the bundled generator, or use `brgm reconstruct`")
    truth = images[args.image_index:args.image_index + 1].to(generator.device)
    tasks = [("super-resolution", make_task("super-resolution", shape[-1], factor=4, kernel=args.kernel)),
             ("inpainting", make_task("inpainting", shape[-1], mask_id=args.mask_id))]
    rows, titles, report, results = [], [], {}, []
    for name, corruption in tasks:
        observation = corruption(truth)
        model = build_problem(generator, corruption, observation, features, **_overrides(args))
        outputs = run_methods(model, ["map", "vi"], steps=args.steps, lr=args.lr, samples=args.samples,
                              seed=args.seed, progress=not args.no_progress)
        _check_finite_outputs(outputs)
        results.append((name, corruption, model, observation_display(corruption, observation, shape), outputs))
    clear_previous_outputs(args, out)
    for name, corruption, model, display, outputs in results:
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
    from .dataset_cli import evaluate_command

    return evaluate_command(args)  # per-image outputs, resumable, sharded under torchrun


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
    p.add_argument("--out", default="brgm-out", help="output folder (default: %(default)s); an existing folder "
                   "with files is refused unless --overwrite is given")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing --out folder, first removing the files a previous run wrote there")
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
    p.add_argument("--method", default="map,vi",
                   help="comma-separated: map; vi (the paper's mean-field guide: overconfident, 90%% intervals hold "
                        "0.84 / 0.73 of the unknown pixels for x4 SR / in-painting); fullrank (calibrated on x4 SR, "
                        "about 2.5x MAP's time; needs --kappa 0 --features none); mcmc (default: %(default)s)")
    p.add_argument("--samples", type=int, default=64, help="posterior samples to draw (default: %(default)s)")
    p.add_argument("--save-inference-data", action="store_true", help="also write ArviZ NetCDF files")
    from .corruptions import BLIND_CHOICES

    p.add_argument("--learn-noise", action="store_true",
                   help="infer sigma_pixel (prior HalfNormal(0.5)) instead of fixing it")
    p.add_argument("--blind", action="append", choices=BLIND_CHOICES, default=[],
                   help="infer this corruption parameter (repeatable): blur (task blur), kernel (super-resolution "
                        "with --kernel gaussian), shift (sub-pixel translation), gain (gain and offset)")
    _add_kernel_option(p, "bicubic")
    _add_model_options(p)
    from .dataset_cli import add_dataset_options

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


# Errors a user can act on (bad flag, image, mask, --out, device, checkpoint, missing weights):
# one line on stderr and exit code 2.  Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, PermissionError, IsADirectoryError,
                                                NotADirectoryError, FileExistsError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .generators import CheckpointError, UnsafeCheckpointError

    try:
        check_args(args)
        return int(args.func(args) or 0)
    except (*USER_ERRORS, CheckpointError, UnsafeCheckpointError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"brgm {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
