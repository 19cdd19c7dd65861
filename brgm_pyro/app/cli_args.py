"""What the ``brgm`` command line's arguments mean: the up-front checks (every numeric flag,
--device, --method, the input files and --out are checked before a generator is loaded or
anything is computed), and the objects the checked arguments ask for (the generator and its
feature network, the corruption, the weights and the model).
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from ..functional import image_shape
from .. import generators  # generators.load_generator looked up at call time (tests replace it)
from ..corruptions import NUM_STANDARD_MASKS, Corruption, make_blind, make_corruption
from .dataset_run import _is_glob, collect_images
from ..generators import PriorGenerator
from ..io import NonSquareImageError, check_image, check_image_file, load_image
from ..models import BRGMModel, brgm_model, default_config, learn_noise, weight_overrides
from .reconstruction import METHODS, build_features

# --- numeric flags -----------------------------------------------------------------------------

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


def _power_of_two(v: Any) -> bool:
    return isinstance(v, int) and v in [2**k for k in range(2, 11)]


POSITIVE = ("a positive finite number", _positive)
NON_NEGATIVE = ("a finite number >= 0", _non_negative)
MAX_SEED = 2**32 - 1

_MODEL_RULES: dict[str, _Rule] = {
    "steps": _int_at_least(1), "lr": POSITIVE, "seed": _int_between(0, MAX_SEED),
    "sigma_pixel": POSITIVE, "sigma_perceptual": POSITIVE, "kappa": NON_NEGATIVE,
    "lambda_pixel": POSITIVE, "lambda_perceptual": POSITIVE, "lambda_colin": NON_NEGATIVE,
}
_RULES: dict[str, dict[str, _Rule]] = {
    "demo": {**_MODEL_RULES, "image_index": _int_between(0, 99), "mask_id": _int_between(0, NUM_STANDARD_MASKS - 1),
             "samples": _int_at_least(1)},
    "reconstruct": {**_MODEL_RULES, "factor": _int_at_least(2), "mask_id": _int_between(0, NUM_STANDARD_MASKS - 1),
                    "samples": _int_at_least(1)},
    "evaluate": {**_MODEL_RULES, "factor": _int_at_least(2), "num_images": _int_at_least(1),
                 "batch_size": _int_at_least(1)},
    "train-generator": {
        "resolution": ("a power of two in 4..1024", _power_of_two),
        "channels": ("1 or 3", lambda v: v in (1, 3)), "z_dim": _int_at_least(1), "w_dim": _int_at_least(1),
        "mapping_layers": _int_at_least(1), "channel_base": _int_at_least(1), "channel_max": _int_at_least(1),
        "batch_size": _int_at_least(1), "iterations": _int_at_least(1), "max_minutes": POSITIVE, "lr": POSITIVE,
        "r1_gamma": NON_NEGATIVE, "seed": _int_between(0, MAX_SEED), "snapshot_every": _int_at_least(1),
    },
}

# --sigma-* / --kappa and the paper's Eq. 6 --lambda-* flags: (flag dest, weight_overrides keyword)
_WEIGHT_FLAGS = (("sigma_pixel", "sigma_pixel"), ("sigma_perceptual", "sigma_perceptual"), ("kappa", "kappa"),
                 ("lambda_pixel", "lambda_pixel"), ("lambda_perceptual", "lambda_percept"),
                 ("lambda_colin", "lambda_colin"))
_WEIGHT_PAIRS = (("sigma_pixel", "lambda_pixel"), ("sigma_perceptual", "lambda_perceptual"), ("kappa", "lambda_colin"))


def check_numbers(args: argparse.Namespace) -> None:
    """Each numeric flag given (not None) must be finite and in range: ValueError naming the flag."""
    for dest, (what, ok) in _RULES.get(args.command, {}).items():
        value = getattr(args, dest, None)
        if value is not None and not ok(value):
            raise ValueError(f"--{dest.replace('_', '-')} must be {what}, got {value}")
    for direct, lam in _WEIGHT_PAIRS:
        if getattr(args, direct, None) is not None and getattr(args, lam, None) is not None:
            raise ValueError(f"give either --{direct.replace('_', '-')} or --{lam.replace('_', '-')}, not both")


def check_device(device: str | None) -> None:
    """--device: cpu, cuda, cuda:N or mps, and present on this machine."""
    if device is None:
        return
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


def method_list(text: str) -> list[str]:
    """--method: comma-separated names from ``METHODS``, each once."""
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
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} {p} does not exist")
    if not p.is_file():
        raise ValueError(f"{what} {p} is not a regular file")
    if decode:
        check_image(p)
    elif p.suffix.lower() != ".npy":
        check_image_file(p)


# --- --out -------------------------------------------------------------------------------------

# Files the commands write; --overwrite removes these (and only these) from the output folder.
_RUN_FILES = ("input.png", "truth.png", "map.png", "metrics.json", "summary.png",
              *(f"{m}_{kind}" for m in METHODS for kind in ("mean.png", "samples.png", "std.png", "inference_data.nc")))
DEMO_TASK_FOLDERS = ("super-resolution", "inpainting")


def _output_files(args: argparse.Namespace, out: Path) -> list[Path]:
    """The paths a previous run of this command may have left in ``out``."""
    if args.command == "evaluate":
        return [out / f"evaluation-{args.task}.md", out / f"evaluation-{args.task}.csv"]
    files = [out / name for name in _RUN_FILES]
    if args.command == "demo":
        files += [out / task / name for task in DEMO_TASK_FOLDERS for name in _RUN_FILES]
    return files


def is_dataset_run(args: argparse.Namespace) -> bool:
    """``brgm reconstruct``: True unless it was given exactly one image file in a single process
    (that case keeps the single-image layout: outputs directly in --out)."""
    images = list(args.image or [])
    if args.bundled_test_images or args.resume or "WORLD_SIZE" in os.environ:
        return True
    if len(images) != 1:
        if not images:
            raise ValueError("give an image file, several, a folder or a glob pattern (or --bundled-test-images)")
        return True
    only = Path(images[0])
    return only.is_dir() or (not only.exists() and _is_glob(images[0]))


def check_out(args: argparse.Namespace) -> Path:
    """--out must be a folder we can write.  reconstruct / demo: an existing folder that is not
    empty is refused without --overwrite.  evaluate (one table pair per task in a shared folder):
    refused when this task's tables exist, without --overwrite.  A data-set run of reconstruct
    (several images) is checked per image by the data-set runner instead."""
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
    per_image = args.command == "reconstruct" and is_dataset_run(args)  # the runner refuses finished images
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
    removed: list[Path] = []
    if not (args.overwrite and out.is_dir()):
        return removed
    for path in _output_files(args, out):
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(path)
    if args.command == "demo":
        for task in DEMO_TASK_FOLDERS:
            folder = out / task
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    return removed


def check_args(args: argparse.Namespace) -> None:
    """All up-front checks of one command line (before any computation)."""
    check_numbers(args)
    check_device(getattr(args, "device", None))
    if args.command == "reconstruct":
        args.methods = method_list(args.method)
        if not is_dataset_run(args):
            _check_input_file(args.image[0], "image file")
        elif args.image and not args.bundled_test_images:  # every file of the data set, before any computation
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


# --- the objects the arguments ask for ---------------------------------------------------------

def load_generator_and_features(args: argparse.Namespace) -> tuple[PriorGenerator, torch.nn.Module | None]:
    """--generator on --device, and the --features network for it."""
    generator = generators.load_generator(args.generator, device=args.device)
    return generator, build_features(args.features, generator, generator.device)


# The flags of each task's corruption (the others are not the task's and are left out).
_TASK_FLAGS = {"super-resolution": ("factor", "kernel"), "inpainting": ("mask", "mask_id")}


def corruption_from_args(args: argparse.Namespace, resolution: int) -> Corruption:
    """--task with its flags (--factor / --kernel, --mask / --mask-id), checked against the resolution."""
    given = {flag: getattr(args, flag, None) for flag in _TASK_FLAGS.get(args.task, ())}
    return make_corruption(args.task, resolution, **{k: v for k, v in given.items() if v is not None})


def weight_overrides_from_args(args: argparse.Namespace) -> dict[str, float | None]:
    """The config fields --sigma-* / --kappa / --lambda-* set (lambdas converted by
    ``brgm_pyro.models.weight_overrides``, i.e. ``BRGMConfig.from_lambdas``)."""
    return weight_overrides(**{key: getattr(args, dest, None) for dest, key in _WEIGHT_FLAGS})


def model_from_args(args: argparse.Namespace, generator: PriorGenerator, corruption: Corruption,
                    observation: torch.Tensor, features: torch.nn.Module | None) -> BRGMModel:
    """The model the command line asks for: ``default_config`` with the weight flags applied,
    built by ``brgm_model``; --blind makes the named corruption parameters latent and
    --learn-noise infers sigma_pixel (prior HalfNormal(0.5)); --misfit-scale adds the generator's misfit."""
    config = replace(default_config(generator, corruption, features), **weight_overrides_from_args(args))
    if getattr(args, "misfit_scale", None) is not None:  # the generator's misfit (brgm_pyro.models.misfit)
        config = replace(config, misfit_scale=args.misfit_scale)
    model = brgm_model(generator, corruption, observation.to(generator.device), config=config, features=features)
    if getattr(args, "blind", None):
        model = replace(model, corruption=make_blind(model.corruption, args.blind))
    if getattr(args, "learn_noise", False):
        model = learn_noise(model)
    return model


def read_image_arg(args: argparse.Namespace, generator: PriorGenerator,
                   corruption: Corruption) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(truth, observation) of ``brgm reconstruct IMAGE``: IMAGE is the clean image, corrupted
    here, or with --observed the observation itself (then the truth is None)."""
    shape = image_shape(generator)
    if not args.observed:
        truth = _load_image(args.image, resolution=shape[-1], channels=shape[0], center_crop=args.center_crop)
        return truth, corruption(truth)
    observation = _load_image(args.image, resolution=None, channels=shape[0], center_crop=args.center_crop)
    out_shape = tuple(corruption.output_shape(shape))
    if tuple(observation.shape[1:]) != out_shape:
        raise ValueError(f"the observation {args.image} is {tuple(observation.shape[1:])} (C, H, W) but "
                         f"{corruption.describe()} of this generator's images gives {out_shape}")
    return None, observation


def _load_image(path: str, **kwargs: Any) -> torch.Tensor:
    """load_image with the command line's wording for a non-square image."""
    try:
        return load_image(path, **kwargs)
    except NonSquareImageError as err:
        raise ValueError(f"{err.name} is not square ({err.width}x{err.height}); pass --center-crop to crop its "
                         "central square") from None
