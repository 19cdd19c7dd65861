"""The command line resolved once: a frozen ``Settings`` built from the parsed arguments, with
every check done here, before a generator is loaded or anything is computed.

    settings = resolve_settings(build_parser().parse_args(argv))   # ValueError on bad input
    settings.methods, settings.image.pixels, settings.dataset ...  # read, never written

The single image of ``brgm reconstruct IMAGE`` is read, decoded and checked here, once
(``ImageInput.pixels``); what the generator needs (its size, its declared preparation) is applied
to those pixels later (``brgm_pyro.preparation``).  The interval scale has one meaning (the width
s of the fullrank posterior, N(mu, s^2 Sigma)) and is resolved in one place,
``interval_scale_for``: the flag when given, else 1 where the generator's metadata records
real-image interval factors for the setting (``interval_factors_for``), else the scale its metadata
records for the setting (``interval_scales``), else 1.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..choices import METHODS
from ..corruptions import NUM_STANDARD_MASKS, Corruption, setting_name
from ..io import check_image, check_image_file, read_pixels
from ..models import weight_overrides
from .evaluation import table_files
from .dataset_run import ImageSource, _is_glob, bundled_test_sources, collect_images

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
    "layer_correlation": ("a number in [0, 1)", lambda v: _finite(v) and 0 <= v < 1),
}
_RULES: dict[str, dict[str, _Rule]] = {
    "demo": {**_MODEL_RULES, "image_index": _int_between(0, 99), "mask_id": _int_between(0, NUM_STANDARD_MASKS - 1),
             "samples": _int_at_least(1), "mean_draws": _int_at_least(2), "threads": _int_at_least(1),
             "processes": _int_at_least(1)},
    "reconstruct": {**_MODEL_RULES, "factor": _int_at_least(2), "mask_id": _int_between(0, NUM_STANDARD_MASKS - 1),
                    "samples": _int_at_least(1), "mean_draws": _int_at_least(2), "num_images": _int_at_least(1),
                    "batch_size": _int_at_least(1),
                    "threads": _int_at_least(1)},
    "evaluate": {**_MODEL_RULES, "factor": _int_at_least(2), "num_images": _int_at_least(1),
                 "batch_size": _int_at_least(1), "threads": _int_at_least(1)},
    "train-generator": {
        "resolution": ("a power of two in 4..1024", _power_of_two),
        "channels": ("1 or 3", lambda v: v in (1, 3)), "z_dim": _int_at_least(1), "w_dim": _int_at_least(1),
        "mapping_layers": _int_at_least(1), "channel_base": _int_at_least(1), "channel_max": _int_at_least(1),
        "batch_size": _int_at_least(1), "iterations": _int_at_least(1), "max_minutes": POSITIVE, "lr": POSITIVE,
        "r1_gamma": NON_NEGATIVE, "seed": _int_between(0, MAX_SEED), "snapshot_every": _int_at_least(1),
        "r1_interval": _int_at_least(1), "ema_kimg": POSITIVE, "ema_rampup": NON_NEGATIVE,
        "style_mixing": ("a probability in [0, 1]", lambda v: _finite(v) and 0 <= v <= 1),
        "d_channel_base": _int_at_least(1), "d_channel_max": _int_at_least(1),
    },
    "calibrate": {"num_problems": _int_at_least(1), "num_draws": _int_at_least(1), "steps": _int_at_least(1),
                  "seed": _int_between(0, MAX_SEED), "num_calibration": _int_at_least(1),
                  "num_evaluation": _int_at_least(1), "split_seed": _int_between(0, MAX_SEED),
                  "alpha": ("a number in (0, 1)", lambda v: _finite(v) and 0 < v < 1), "batch_size": _int_at_least(1)},
}

# --sigma-* / --kappa, the paper's Eq. 6 --lambda-* flags and --layer-correlation: (flag dest, weight_overrides keyword)
_WEIGHT_FLAGS = (("sigma_pixel", "sigma_pixel"), ("sigma_perceptual", "sigma_perceptual"), ("kappa", "kappa"),
                 ("lambda_pixel", "lambda_pixel"), ("lambda_perceptual", "lambda_percept"),
                 ("lambda_colin", "lambda_colin"), ("layer_correlation", "layer_correlation"))
_WEIGHT_PAIRS = (("sigma_pixel", "lambda_pixel"), ("sigma_perceptual", "lambda_perceptual"), ("kappa", "lambda_colin"))


def check_numbers(command: str, values: Mapping[str, Any]) -> None:
    """Each numeric flag given (not None) must be finite and in range: ValueError naming the flag."""
    for dest, (what, ok) in _RULES.get(command, {}).items():
        value = values.get(dest)
        if value is not None and not ok(value):
            raise ValueError(f"--{dest.replace('_', '-')} must be {what}, got {value}")
    for direct, lam in _WEIGHT_PAIRS:
        if values.get(direct) is not None and values.get(lam) is not None:
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


def method_list(text: str) -> tuple[str, ...]:
    """--method: comma-separated names from ``METHODS``, each once."""
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise ValueError(f"--method needs at least one of {', '.join(METHODS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"--method lists a method twice: {text!r}")
    return tuple(methods)


def _check_file(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} {p} does not exist")
    if not p.is_file():
        raise ValueError(f"{what} {p} is not a regular file")
    return p


# --- --out -------------------------------------------------------------------------------------

# Files the commands write; --overwrite removes these (and only these) from the output folder.
_RUN_FILES = ("input.png", "truth.png", "map.png", "map_generator.png", "metrics.json", "summary.png",
              *(f"{m}_{kind}" for m in METHODS for kind in ("mean.png", "samples.png", "std.png", "inference_data.nc")))
DEMO_TASK_FOLDERS = ("super-resolution", "inpainting")


def output_files(command: str, out: Path, task: str | None = None) -> list[Path]:
    """The paths a previous run of ``command`` may have left in ``out``."""
    if command == "evaluate":
        return list(table_files(out, task))
    files = [out / name for name in _RUN_FILES]
    if command == "demo":
        files += [out / t / name for t in DEMO_TASK_FOLDERS for name in _RUN_FILES]
    return files


def check_out(command: str, out: Path, overwrite: bool, per_image: bool = False, task: str | None = None) -> Path:
    """--out must be a folder we can write.  reconstruct / demo: an existing folder that is not
    empty is refused without --overwrite.  evaluate (one table pair per task in a shared folder):
    refused when this task's tables exist, without --overwrite.  A data-set run of reconstruct
    (``per_image``) is checked per image by the data-set runner instead."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder; choose a folder path")
    ancestor = out
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"--out {out}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: no permission to write in {ancestor}")
    if out.is_dir() and not overwrite and not per_image:
        if command == "evaluate":
            existing = [p.name for p in output_files(command, out, task) if p.exists()]
        else:
            existing = sorted(p.name for p in out.iterdir())
        if existing:
            shown = ", ".join(existing[:4]) + (", ..." if len(existing) > 4 else "")
            what = "these results" if command == "evaluate" else "files"
            raise ValueError(f"--out {out} already holds {what} ({shown}); "
                             "pass --overwrite to replace the previous run's files, or choose another --out")
    return out


def clear_previous_outputs(settings: Settings) -> list[Path]:
    """With --overwrite: remove the files a previous run of this command wrote (other files stay)."""
    removed: list[Path] = []
    out = settings.out
    if not (settings.overwrite and out.is_dir()):
        return removed
    for path in output_files(settings.command, out, settings.task):
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(path)
    if settings.command == "demo":
        for task in DEMO_TASK_FOLDERS:
            folder = out / task
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    return removed


# --- the settings ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageInput:
    """The one image file of ``brgm reconstruct IMAGE``: its path and its pixels (H, W, C) in
    [0, 1], decoded and checked once (``io.read_pixels``)."""

    path: Path
    pixels: np.ndarray


@dataclass(frozen=True)
class Settings:
    """One command line, checked and resolved (see the module).  Fields a command does not have
    keep their defaults; ``options`` is a read-only view of every parsed value (for
    ``train-generator`` and ``calibrate``, whose options go straight into their configs)."""

    command: str
    options: Mapping[str, Any]
    argv: tuple[str, ...] = ()               # the command line as given (for the resume command)
    generator: str = "fashion-mnist-32"
    device: str | None = None
    features: str = "auto"
    steps: int = 500
    lr: float = 0.1
    seed: int = 0
    out: Path = Path("brgm-out")
    overwrite: bool = False
    progress: bool = True
    weights: Mapping[str, float | None] = field(default_factory=lambda: MappingProxyType({}))  # weight flags
    learn_noise: bool = False
    blind: tuple[str, ...] = ()
    task: str | None = None
    factor: int | None = None
    kernel: str = "bicubic-antialias"
    mask: Path | None = None
    mask_id: int | None = None
    methods: tuple[str, ...] = ()
    samples: int = 64
    mean_draws: int = 512                     # draws of w for the posterior mean image and std map
    interval_scale: float | None = None      # --interval-scale as given (None: ``interval_scale_for``)
    image: ImageInput | None = None           # reconstruct: the one image of a single-image run
    sources: tuple[ImageSource, ...] = ()    # reconstruct / evaluate: the images of a data-set run
    dataset: bool = False                    # reconstruct: a data-set run (outputs per image)
    observed: bool = False
    center_crop: bool = False
    save_inference_data: bool = False
    batch_size: int = 8
    resume: bool = False
    threads: int | None = None
    processes: int | None = None             # demo: rows solved at once (``brgm_pyro.app.parallel``)
    misfit_scale: float | str | None = None  # --misfit-scale (models.misfit; "none": off; None: not given)
    image_index: int = 0
    no_lpips: bool = False

    def resume_command(self) -> str:
        """The command line that resumes this run: the same arguments plus --resume."""
        args = list(self.argv) + ([] if "--resume" in self.argv else ["--resume"])
        return "brgm " + shlex.join(args)

    @property
    def own_pixel_noise(self) -> bool:
        """True when no flag changes sigma_pixel (the generator's recommended pixel noise applies)."""
        return self.weights.get("sigma_pixel") is None and not self.learn_noise


def _is_dataset_run(images: list[str], bundled: bool, resume: bool) -> bool:
    """``brgm reconstruct``: True unless it was given exactly one image file in a single process
    (that case keeps the single-image layout: outputs directly in --out)."""
    if bundled or resume or "WORLD_SIZE" in os.environ:
        return True
    if len(images) != 1:
        if not images:
            raise ValueError("give an image file, several, a folder or a glob pattern (or --bundled-test-images)")
        return True
    only = Path(images[0])
    return only.is_dir() or (not only.exists() and _is_glob(images[0]))


def _reconstruct_inputs(v: Mapping[str, Any]) -> dict[str, Any]:
    """reconstruct's images: the single image (decoded and checked here, once) or the data set
    (every file checked before any computation)."""
    images = list(v["image"] or [])
    if v["bundled_test_images"] and images:
        raise ValueError("give either image paths or --bundled-test-images, not both")
    dataset = _is_dataset_run(images, v["bundled_test_images"], v["resume"])
    if not dataset:
        path = _check_file(images[0], "image file")
        return {"dataset": False, "image": ImageInput(path, read_pixels(path))}
    if v["save_inference_data"]:
        raise ValueError("--save-inference-data is for one image; leave it out for a data set")
    if v["bundled_test_images"]:
        sources = bundled_test_sources()
    else:
        sources = collect_images(images)
        for source in sources[:v["num_images"]]:
            check_image(_check_file(source.path, "image file"))
    return {"dataset": True, "sources": tuple(sources[:v["num_images"]])}


def _evaluate_inputs(v: Mapping[str, Any]) -> tuple[ImageSource, ...]:
    if v["images"] is None:
        return tuple(bundled_test_sources()[:v["num_images"]])
    if not Path(v["images"]).is_dir():
        raise ValueError(f"--images {v['images']} is not a folder")
    return tuple(collect_images([v["images"]])[:v["num_images"]])


def resolve_settings(args: argparse.Namespace, argv: Sequence[str] = ()) -> Settings:
    """Check the parsed command line (numbers, device, methods, input files, --out) and resolve it
    into ``Settings``; a ``ValueError`` / ``FileNotFoundError`` names the problem."""
    v = dict(vars(args))
    command = v["command"]
    check_numbers(command, v)
    check_device(v.get("device"))
    options = MappingProxyType(v)
    if command not in ("demo", "reconstruct", "evaluate"):
        if command == "train-generator" and Path(v["out"]).exists() and not Path(v["out"]).is_dir():
            raise ValueError(f"--out {v['out']} exists and is not a folder")
        return Settings(command, options, tuple(argv))
    common = dict(
        argv=tuple(argv), generator=v["generator"], device=v["device"], features=v["features"], steps=v["steps"],
        lr=v["lr"], seed=v["seed"], out=Path(v["out"]), overwrite=v["overwrite"], progress=not v["no_progress"],
        weights=MappingProxyType(weight_overrides(**{key: v.get(dest) for dest, key in _WEIGHT_FLAGS})),
        kernel=v["kernel"], samples=v.get("samples", 0), mean_draws=v.get("mean_draws", Settings.mean_draws),
        interval_scale=v.get("interval_scale"),
        mask_id=v.get("mask_id"), resume=v.get("resume", False), threads=v.get("threads"),
        misfit_scale=v.get("misfit_scale"),
    )
    if command == "demo":
        settings = Settings(command, options, methods=("map", "fullrank"), image_index=v["image_index"],
                            processes=v["processes"], **common)
    elif command == "reconstruct":
        mask = None if v["mask"] is None else _check_file(v["mask"], "mask image")
        if mask is not None and mask.suffix.lower() != ".npy":
            check_image_file(mask)
        settings = Settings(
            command, options, task=v["task"], factor=v["factor"], mask=mask, methods=method_list(v["method"]),
            learn_noise=v["learn_noise"], blind=tuple(v["blind"]), observed=v["observed"],
            center_crop=v["center_crop"], save_inference_data=v["save_inference_data"],
            batch_size=v["batch_size"], **_reconstruct_inputs(v), **common)
    else:
        settings = Settings(command, options, task=v["task"], factor=v["factor"] or 4, methods=("map",),
                            batch_size=v["batch_size"], center_crop=v["center_crop"], no_lpips=v["no_lpips"],
                            sources=_evaluate_inputs(v), **common)
    check_out(command, settings.out, settings.overwrite or settings.resume, per_image=settings.dataset,
              task=settings.task)
    return settings


# --- the interval scale: one meaning, resolved here --------------------------------------------

INTERVAL_SCALES_KEY = "interval_scales"
"""Generator metadata key: {setting name (``corruptions.setting_name``): the measured interval scale}: the
scale of the recommended posterior (``fit_multistart_fullrank``) whose calibration curve on problems drawn
from the model is closest to the diagonal (``benchmarks/interval_scale.py``, ``brgm calibrate
--fit-interval-scale``).  It holds for its setting only, and real-image ``interval_factors`` for the same
setting take precedence.  The bundled generator records none (its settings have real-image factors); the
first bundled generator's scales are in ``benchmarks/results/interval_scale/``."""


def interval_scale_for(settings: Settings, metadata: Mapping[str, Any] | None, corruption: Corruption) -> float:
    """The width s of the fullrank posterior N(mu, s^2 Sigma) for ``corruption`` (its setting,
    ``corruptions.setting_name``): --interval-scale when given; else 1 when the generator's metadata
    records real-image interval factors for this setting (``interval_factors_for``: they were
    fitted on the unwidened posterior's draws); else the scale the metadata records for this
    setting (``interval_scales``, measured at its own pixel noise, so only when no flag changes
    sigma_pixel); else 1."""
    if settings.interval_scale is not None:
        return settings.interval_scale
    if interval_factors_for(settings, metadata, corruption):
        return 1.0
    scales = (metadata or {}).get(INTERVAL_SCALES_KEY) or {}
    if not isinstance(scales, Mapping):
        raise ValueError(f"the generator's metadata {INTERVAL_SCALES_KEY} must be a dict, got {scales!r}")
    name = setting_name(corruption)
    scale = scales.get(name) if name is not None and settings.own_pixel_noise else None
    if scale is None:
        return 1.0
    if isinstance(scale, bool) or not _positive(scale):
        raise ValueError(f"the generator's metadata {INTERVAL_SCALES_KEY}[{name!r}] must be a positive number, "
                         f"got {scale!r}")
    return float(scale)


INTERVAL_FACTORS_KEY = "interval_factors"
"""Generator metadata key: {setting name (``corruptions.setting_name``): {level as text, e.g. "0.9": factor}}.
The factors widen the recommended posterior's level-a pixel intervals about their midpoints
(``brgm_pyro.inference.intervals``); they are fitted by conformal risk control on real images with
ground truth (``brgm calibrate --images``, ``benchmarks/real_images.py``), so that on average over
new images of the same source a level-a interval holds at least a of the unknown pixels."""


def interval_factors_for(settings: Settings, metadata: Mapping[str, Any] | None,
                         corruption: Corruption) -> dict[float, float] | None:
    """{level: factor} of the real-image interval calibration the generator's metadata records for
    ``corruption``'s setting (``interval_factors``), or None: none recorded, another pixel noise than the
    generator's own, or --interval-scale given (the user widens the latent posterior instead)."""
    if settings.interval_scale is not None or not settings.own_pixel_noise:
        return None
    table = (metadata or {}).get(INTERVAL_FACTORS_KEY) or {}
    if not isinstance(table, Mapping):
        raise ValueError(f"the generator's metadata {INTERVAL_FACTORS_KEY} must be a dict, got {table!r}")
    name = setting_name(corruption)
    entry = table.get(name) if name is not None else None
    if not entry:
        return None
    if not isinstance(entry, Mapping):
        raise ValueError(f"the generator's metadata {INTERVAL_FACTORS_KEY}[{name!r}] must be a dict "
                         f"{{level: factor}}, got {entry!r}")
    out = {}
    for level, factor in entry.items():
        try:
            a = float(level)
        except (TypeError, ValueError):
            a = math.nan
        if not 0 < a < 1 or isinstance(factor, bool) or not _positive(factor):
            raise ValueError(f"the generator's metadata {INTERVAL_FACTORS_KEY}[{name!r}] must map levels in (0, 1) "
                             f"to positive factors, got {level!r}: {factor!r}")
        out[a] = float(factor)
    return dict(sorted(out.items()))
