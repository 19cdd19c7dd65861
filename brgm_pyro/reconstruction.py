"""End-to-end reconstruction: choose the corruption, the feature network and the weights, run
MAP / VI / MCMC, and collect what the CLI, the examples and the evaluation show.

    problem = build_problem(G, corruption, observation, features="auto")
    outputs = run_methods(problem, ["map", "vi"], steps=500, samples=64)
    summary_figure([row(...)], "summary.png")
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from .corruptions import TASKS, Corruption, Inpainting, SuperResolution, make_corruption, standard_mask
from .generators import PriorGenerator
from .io import save_figure

FEATURE_CHOICES = ("auto", "domain", "lpips-vgg", "lpips-alex", "none")
METHODS = ("map", "vi", "fullrank", "mcmc")
"""map: MAP (AutoDelta); vi: the paper's mean-field Gaussian guide; fullrank: MAP, the Laplace
approximation there, then a full-rank Gaussian guide (calibrated on x4 super-resolution, see the
README's calibration section; needs the pixel likelihood alone and kappa 0); mcmc: NUTS."""


def make_task(task: str, resolution: int, factor: int | None = None, mask: Any = None,
              mask_id: int | None = None, blur_sigma: float = 1.5, measurements: int | None = None,
              seed: int = 0, kernel: str = "bicubic") -> Corruption:
    """The corruption of a named task, checked against the generator's ``resolution``.

    ``kernel``: the super-resolution down-sampling kernel ("bicubic" without antialiasing is the
    authors' release; "bicubic-antialias" low-passes first, as PIL's resize does).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    if task == "super-resolution":
        factor = 4 if factor is None else factor
        if factor < 2 or resolution % factor:
            raise ValueError(f"super-resolution factor {factor} must be >= 2 and divide the resolution {resolution}")
        return SuperResolution(factor, kernel=kernel)
    if task == "inpainting":
        if (mask is None) == (mask_id is None):
            raise ValueError("inpainting needs exactly one of a mask (file or tensor, 1 = observed) or a mask id 0..6")
        if mask_id is not None:
            if not 0 <= mask_id < 7:
                raise ValueError(f"mask id must be in 0..6, got {mask_id}")
            return Inpainting(standard_mask(mask_id, resolution))
        op = Inpainting(mask)
        shape = tuple(op.mask.shape[-2:])
        if shape != (resolution, resolution):
            raise ValueError(f"mask is {shape[0]}x{shape[1]} but the generator makes {resolution}x{resolution} images; "
                             "resize the mask (nearest neighbour) to the generator's resolution")
        return op
    if task == "blur":
        return make_corruption("blur", sigma=blur_sigma)
    if task == "compressed-sensing":
        n = measurements if measurements is not None else resolution * resolution // 4
        return make_corruption("compressed-sensing", num_measurements=n, seed=seed)
    return make_corruption(task)


def build_features(kind: str, generator: PriorGenerator, device: torch.device | str = "cpu") -> torch.nn.Module | None:
    """phi for the perceptual likelihood.

    "domain": the bundled Fashion-MNIST classifier's features (for the bundled generator);
    "lpips-vgg" / "lpips-alex": LPIPS features (need torchvision's backbone weights);
    "auto": the generator's own recommendation (``metadata["feature_network"]``), else LPIPS-VGG;
    "none": no perceptual term.
    """
    if kind not in FEATURE_CHOICES:
        raise ValueError(f"unknown feature network {kind!r}; choose from {', '.join(FEATURE_CHOICES)}")
    if kind == "auto":
        recommended = getattr(generator, "metadata", {}).get("feature_network")
        kind = "domain" if recommended == "fashion-mnist-classifier" else "lpips-vgg"
    if kind == "none":
        return None
    if kind == "domain":
        from .bundled import load_domain_features

        if (generator.img_channels, generator.img_resolution) != (1, 32):
            raise ValueError("the domain feature network is for 32x32 grayscale images (the bundled generator); "
                             "use --features lpips-vgg or none for this generator")
        return load_domain_features(device)
    from .perceptual import LPIPSFeatures

    return LPIPSFeatures(net=kind.split("-")[1], resize=256).to(device)


def default_config(generator: PriorGenerator, corruption: Corruption, features: torch.nn.Module | None):
    """The generator's recommended balance (``metadata["recommended_config"]``, the bundled
    model's tuned weights) or else the authors' released balance for this problem's sizes."""
    from dataclasses import replace

    from .models import BRGMConfig, released_config

    recommended = getattr(generator, "metadata", {}).get("recommended_config")
    if recommended:
        config = BRGMConfig(**recommended)
        return config if features is not None else replace(config, sigma_perceptual=None)
    return released_config(generator, corruption, features)


def build_problem(generator: PriorGenerator, corruption: Corruption, observation: torch.Tensor,
                  features: torch.nn.Module | None = None, config=None, **overrides: float | None):
    """The BRGM model of one observation (or a batch); ``overrides`` replace fields of the
    config (``sigma_pixel``, ``sigma_perceptual``, ``kappa``)."""
    from dataclasses import replace

    from .models import brgm_model

    config = default_config(generator, corruption, features) if config is None else config
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        config = replace(config, **overrides)
    return brgm_model(generator, corruption, observation, config=config, features=features)


@dataclass
class MethodOutput:
    """What one inference method gives for one observation (images (1, C, H, W) on the CPU)."""

    method: str
    image: torch.Tensor                      # MAP image, or G(mu) of VI, or the MCMC mean image
    samples: torch.Tensor | None = None      # (n, C, H, W) posterior draws of G(w)
    std: torch.Tensor | None = None          # (1, C, H, W) per-pixel posterior std
    seconds: float = 0.0
    result: Any = field(default=None, repr=False)


def fit_fullrank(model, seed: int = 0, map_steps: int = 500):
    """The calibrated posterior method ("vi-fullrank" of the calibration benchmark): MAP, the
    Laplace approximation at it, then the full-rank Gaussian guide started there."""
    from .inference.vi_methods import fullrank_from_laplace

    try:  # the Laplace step refuses models it cannot linearise (colinearity, perceptual term)
        return fullrank_from_laplace(model, seed, map_steps=map_steps)
    except ValueError as err:
        raise ValueError(f"method fullrank: {err} (on the command line: --kappa 0 --features none)") from None


def run_methods(model, methods: Sequence[str], steps: int = 500, lr: float = 0.1, samples: int = 64,
                mcmc_samples: int = 100, seed: int = 0, progress: bool = True) -> dict[str, MethodOutput]:
    """Run each of ``methods`` (``METHODS``) on ``model``."""
    from .inference import fit_vi, map_estimate, run_mcmc

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    out: dict[str, MethodOutput] = {}
    for method in methods:
        t0 = time.perf_counter()
        if method == "map":
            res = map_estimate(model, num_steps=steps, lr=lr, seed=seed, progress=progress)
            out[method] = MethodOutput(method, res.image.cpu(), seconds=time.perf_counter() - t0, result=res)
            continue
        if method == "vi":
            posterior = fit_vi(model, num_steps=steps, lr=lr, seed=seed, progress=progress)
        elif method == "fullrank":
            posterior = fit_fullrank(model, seed=seed, map_steps=steps)
        else:
            mcmc_result = run_mcmc(model, num_samples=mcmc_samples, warmup_steps=mcmc_samples, seed=seed,
                                   progress=progress)
            posterior = mcmc_result.posterior
        draws = posterior.sample(samples, seed=seed)
        stats = posterior.pixel_statistics(max(samples, 2), seed=seed)
        # vi: G(mu_v), the paper's reconstruction; fullrank and mcmc: the posterior mean image
        image = posterior.mean_image().cpu() if method == "vi" else stats.mean.unsqueeze(0)
        out[method] = MethodOutput(method, image, draws.images, stats.std.unsqueeze(0).cpu(),
                                   time.perf_counter() - t0, mcmc_result if method == "mcmc" else posterior)
    return out


def parameter_report(outputs: dict[str, MethodOutput], level: float = 0.9) -> dict[str, dict]:
    """Method -> site -> {"mean", "std", "lower", "upper", "level"} for the model's latent sites
    besides w (a learned noise level, blind corruption parameters); {} when there are none."""
    from .inference import parameter_summary

    report = {}
    for method, o in outputs.items():
        summary = parameter_summary(o.result, level=level) if o.result is not None else {}
        if summary:
            report[method] = summary
    return report


def format_parameter_report(report: dict[str, dict]) -> str:
    """One line per method: ``MAP: sigma_pixel 0.101, corruption.blur_sigma 1.84`` (VI / NUTS with intervals)."""
    lines = []
    for method, sites in report.items():
        parts = []
        for site, e in sites.items():
            text = f"{site} {e['mean']:.3g}" if "mean" in e else f"{site} {e.get('value')}"
            if e.get("lower") is not None:
                text += f" [{e['lower']:.3g}, {e['upper']:.3g}]"
            parts.append(text)
        lines.append(f"{method.upper()}: " + ", ".join(parts))
    return "\n".join(lines)


def observation_display(corruption: Corruption, observation: torch.Tensor,
                        image_shape: tuple[int, int, int]) -> torch.Tensor:
    """The observation drawn at the image's size (nearest-neighbour for low resolution, holes at
    mid-grey for in-painting); a blank image when f's output is not an image."""
    obs = observation if observation.ndim == 4 else observation.unsqueeze(0)
    obs = obs.detach().cpu()
    c, h, w = image_shape
    if obs.ndim == 4 and obs.shape[1] == c and obs.shape[-2:] != (h, w) and h % obs.shape[-2] == 0:
        return F.interpolate(obs, size=(h, w), mode="nearest")
    if obs.ndim == 4 and tuple(obs.shape[1:]) == image_shape:
        return obs
    return torch.zeros(obs.shape[0], c, h, w)


def _show(ax, image: torch.Tensor, title: str, cmap: str = "gray", signed: bool = True) -> None:
    img = image.detach().cpu().float()
    if img.ndim == 4:
        img = img[0]
    if img.shape[0] == 1:
        data = img[0].numpy()
        kwargs = dict(cmap=cmap, vmin=-1, vmax=1) if signed else dict(cmap=cmap, vmin=0)
    else:
        data = ((img.permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy()
        kwargs = {}
    ax.imshow(data, interpolation="nearest", **kwargs)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def summary_figure(rows: Sequence[dict[str, torch.Tensor]], path: str | Path, row_titles: Sequence[str] | None = None,
                   num_samples: int = 3, notes: str | None = None) -> Path:
    """One row per problem: input | MAP | VI mean | samples | std | truth (whichever are given).

    Each row is a dict with keys "input", "map", "vi", "mcmc", "samples" (n, C, H, W), "std",
    "truth"; std maps use their own colour scale (shown in the title).  ``notes``: text printed
    under the images (the inferred noise level / corruption parameters of a blind run).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = ["input", "map", "vi", "fullrank", "mcmc", "samples", "std", "truth"]
    labels = {"input": "input", "map": "MAP", "vi": "VI mean", "fullrank": "full-rank mean", "mcmc": "NUTS mean",
              "std": "VI std",
              "truth": "truth"}
    def columns(row: dict[str, torch.Tensor]) -> int:
        return sum((min(num_samples, len(row[k])) if k == "samples" else 1) for k in order if row.get(k) is not None)

    ncols = max(columns(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.6 * ncols, 1.8 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        c = 0
        for key in order:
            value = row.get(key)
            if value is None:
                continue
            if key == "samples":
                for s in range(min(num_samples, len(value))):
                    _show(axes[r][c], value[s], f"sample {s + 1}")
                    c += 1
            elif key == "std":
                _show(axes[r][c], value, f"std (max {float(value.max()):.2f})", cmap="magma", signed=False)
                c += 1
            else:
                _show(axes[r][c], value, labels[key])
                c += 1
        for rest in range(c, ncols):
            axes[r][rest].axis("off")
        if row_titles is not None:
            axes[r][0].set_ylabel(row_titles[r], fontsize=8)
    fig.tight_layout()
    if notes:
        height = fig.get_figheight()
        extra = 0.18 * (notes.count("\n") + 1)
        fig.set_figheight(height + extra)
        fig.subplots_adjust(bottom=extra / (height + extra))
        fig.text(0.01, 0.01, notes, fontsize=6, family="monospace", va="bottom")
    return save_figure(fig, path, dpi=150)


def json_safe(data: Any) -> Any:
    """``data`` with every float that is not finite (NaN, +-inf) replaced by None, so that it can be
    written as strict JSON (e.g. the PSNR of an exact reconstruction is +inf and is written as null)."""
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def write_json(data: Any, path: str | Path) -> Path:
    """Strict JSON (no NaN / Infinity tokens): non-finite floats are written as null (``json_safe``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(data), indent=2, sort_keys=True, allow_nan=False))
    return path
