"""Reporting what a reconstruction gave: saved images and their metrics, the summary figure,
and the weights and inferred parameters of a run.

Nothing here builds a model or runs inference (that is ``brgm_pyro.inference.run_methods``):

    outputs = run_methods(model, ["map", "vi"])[0]                   # inference: image 0's outputs
    metrics = save_outputs(out, truth, display, outputs)            # report.py: images + metrics
    write_json({"metrics": metrics, "config": weights_report(model)}, out / "metrics.json")
    summary_figure([figure_row(display, truth, outputs)], out / "summary.png")

Strict JSON is written by ``brgm_pyro.jsonfile``; the evaluation tables by ``brgm_pyro.app.evaluation``.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..bundled import load_domain_classifier
from ..corruptions import Corruption
from ..inference import MethodOutput, parameter_summary, posterior_intervals
from ..io import save_figure, save_grid, save_image
from ..metrics import compute_metrics, summarize_metrics
from ..models import BRGMModel


# --- images and their metrics ------------------------------------------------------------------

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


def save_outputs(out_dir: Path, truth: torch.Tensor | None, display: torch.Tensor,
                 outputs: Mapping[str, MethodOutput]) -> dict[str, dict[str, float]]:
    """Write the images of one problem (input, truth, each method's image, samples and std map; with a
    misfit term also MAP's G(w*) alone, ``map_generator.png``)
    and return method -> metrics (RMSE, PSNR, ... against the truth when it is known; seconds;
    the mean posterior pixel std)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_image(display, out_dir / "input.png")
    if truth is not None:
        save_image(truth, out_dir / "truth.png")
    metrics: dict[str, dict[str, float]] = {}
    for method, o in outputs.items():
        save_image(o.image, out_dir / ("map.png" if method == "map" else f"{method}_mean.png"))
        if o.generated is not None and not torch.equal(o.generated, o.image):  # a misfit term: G(w*) alone too
            save_image(o.generated, out_dir / f"{method}_generator.png")
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


def save_intervals(out_dir: Path, method: str, posterior, factors: Mapping[float, float], seed: int,
                   truth: torch.Tensor | None = None, unknown: torch.Tensor | None = None) -> dict[str, float]:
    """Write a posterior's calibrated pixel intervals (``inference.intervals.posterior_intervals`` with the
    generator's real-image ``factors`` {level: factor}): per level ``{method}_interval{pct}_lower.png`` /
    ``_upper.png`` (clipped to [-1, 1] for display) and ``{method}_interval{pct}.npy`` (float32 (2, C, H, W):
    lower, upper, unclipped).  Returns metrics.json's entries: the factor, the mean width (0-255) and, with
    the truth, the fraction of the ``unknown`` pixels (bool (C, H, W); all when None) the interval holds."""
    entry: dict[str, float] = {}
    for level, (lower, upper) in posterior_intervals(posterior, factors, seed=seed).items():
        pct = f"{100 * level:g}"
        save_image(lower.clamp(-1, 1).float(), out_dir / f"{method}_interval{pct}_lower.png")
        save_image(upper.clamp(-1, 1).float(), out_dir / f"{method}_interval{pct}_upper.png")
        np.save(out_dir / f"{method}_interval{pct}.npy", torch.stack([lower, upper]).float().numpy(),
                allow_pickle=False)
        entry[f"interval{pct}_factor"] = float(factors[level])
        entry[f"interval{pct}_mean_width"] = float((upper - lower).mean() * 127.5)
        if truth is not None:
            t = truth.reshape(lower.shape).double().cpu()
            where = torch.ones_like(t, dtype=torch.bool) if unknown is None else unknown.cpu()
            inside = (t >= lower.cpu()) & (t <= upper.cpu())
            entry[f"interval{pct}_coverage_unknown"] = float(inside[where].double().mean())
    return entry


# --- the run's weights and inferred parameters -------------------------------------------------

def weights_report(model: BRGMModel) -> dict[str, Any]:
    """The weights a run used (metrics.json's "config"): the fields of ``model.config``; a noise
    level the model infers (its latent site "sigma_pixel" / "sigma_perceptual") is written as
    ``"learned, <its prior>"``."""
    if model.config is None:
        raise ValueError("this model has no config (build it with brgm_model)")
    out: dict[str, Any] = asdict(model.config)
    for site, parameter in model.latent_parameters().items():
        if site in out:
            out[site] = f"learned, {parameter.describe()}"
    return out


def parameter_report(outputs: Mapping[str, MethodOutput], level: float = 0.9) -> dict[str, dict]:
    """Method -> site -> {"mean", "std", "lower", "upper", "level"} for the model's latent sites
    besides w (a learned noise level, blind corruption parameters); {} when there are none."""
    report = {}
    for method, o in outputs.items():
        summary = parameter_summary(o.result, level=level) if o.result is not None else {}
        if summary:
            report[method] = summary
    return report


def format_parameter_report(report: Mapping[str, dict]) -> str:
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


UNPLACED_QUANTILE = 0.01
"""A draw is "unplaced" when the domain classifier's top class probability is below this quantile of
its top probabilities on the generator's own samples."""


def unplaced_draws_report(outputs: Mapping[str, MethodOutput], generator: Any, reference_draws: int = 1000,
                          seed: int = 0) -> dict[str, dict[str, Any]]:
    """Method -> {"count", "draws", "threshold"}: how many posterior draws the bundled domain
    classifier cannot place, i.e. whose top class probability is below the 1% quantile
    (``UNPLACED_QUANTILE``) of its top probabilities on ``reference_draws`` of the generator's own
    samples.  Such draws match no garment the generator makes (e.g. a dark blob in an in-painting
    hole).  Only for a generator whose metadata names that classifier as its feature network
    ({} otherwise), and only methods with draws."""
    if getattr(generator, "metadata", {}).get("feature_network") != "fashion-mnist-classifier":
        return {}
    sampled = {method: o.samples for method, o in outputs.items() if o.samples is not None}
    if not sampled:
        return {}
    classifier = load_domain_classifier("cpu")
    threshold = _unplaced_threshold(generator, classifier, reference_draws, seed)
    with torch.no_grad():
        report = {}
        for method, draws in sampled.items():
            unplaced = _top_probability(classifier, draws.float().cpu().clamp(-1, 1)) < threshold
            report[method] = {"count": int(unplaced.sum()), "draws": int(unplaced.numel()), "threshold": threshold}
    return report


_THRESHOLDS: "weakref.WeakKeyDictionary[Any, dict[tuple[int, int], float]]" = weakref.WeakKeyDictionary()


def _unplaced_threshold(generator: Any, classifier: torch.nn.Module, reference_draws: int, seed: int) -> float:
    """The ``UNPLACED_QUANTILE`` quantile of the bundled classifier's top class probability on
    ``reference_draws`` of the generator's own samples (z drawn with ``seed``).  Computed once per
    generator, draw count and seed and kept while the generator lives: ``brgm demo`` asks for it
    for each of its rows (1000 generator samples and classifier calls, seconds on a CPU)."""
    cached = _THRESHOLDS.setdefault(generator, {})
    key = (reference_draws, seed)
    if key not in cached:
        rng = torch.Generator().manual_seed(seed)
        z = torch.randn(reference_draws, generator.z_dim, generator=rng)
        with torch.no_grad():
            own = generator.synthesis(generator.mapping(z.to(generator.device))).float().cpu().clamp(-1, 1)
            cached[key] = float(torch.quantile(_top_probability(classifier, own), UNPLACED_QUANTILE))
    return cached[key]


def _top_probability(classifier: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return torch.softmax(classifier(images), dim=-1).amax(dim=-1)


INCONSISTENT_LEVEL = 0.999
"""A draw is "inconsistent with the observation" when its observed-value residual exceeds the typical
(median) draw's by more than this quantile of the noise's chi-square spread and by more than
``OUTLIER_SPREADS`` robust standard deviations of the draws' own residuals."""

OUTLIER_SPREADS = 5.0


def chi_square_quantile(dof: int, level: float = INCONSISTENT_LEVEL) -> float:
    """The ``level`` quantile of a chi-square law with ``dof`` degrees of freedom: the root of
    P(dof / 2, q / 2) = level (regularised lower incomplete gamma, ``torch.special.gammainc``) by
    bisection, to float64 precision."""
    half = torch.tensor(dof / 2, dtype=torch.float64)
    lo, hi = 0.0, float(dof) + 10.0 * math.sqrt(2.0 * dof) + 100.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if torch.special.gammainc(half, torch.tensor(mid / 2, dtype=torch.float64)).item() < level:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def inconsistent_draws_report(outputs: Mapping[str, MethodOutput], corruption: Corruption,
                              observation: torch.Tensor, sigma: float | None,
                              image_shape: tuple[int, int, int]) -> dict[str, dict[str, Any]]:
    """Method -> {"count", "draws", "threshold"}: how many posterior draws x reproduce the observation y
    much worse than the method's typical draw.  With T(x) = sum over observed values of
    (f(x) - y)^2 / sigma^2, a draw counts when T(x) > median(T) + max(q - k, 5 * 1.4826 * MAD(T)), where
    k is the number of observed values, q the 0.999 quantile of a chi-square law with k degrees of
    freedom (``INCONSISTENT_LEVEL``) and MAD the draws' median absolute deviation
    (``OUTLIER_SPREADS``): its residual exceeds the typical draw's by more than the noise's 0.1%
    fluctuation allows and it is an outlier among the draws.  Relative to the draws, not to the
    noise alone, so that neither a
    generator that cannot fit a real image exactly (its misfit) nor a posterior widened on the
    observed pixels too flags every draw; an outlying draw that leaves what was seen (e.g. a dark blob
    over the observed half of an in-painting problem) is counted.  {} when the noise level is not a
    known number (``sigma`` None: learnt) or no method has draws."""
    sampled = {method: o for method, o in outputs.items() if o.samples is not None}
    if sigma is None or not sampled:
        return {}
    y = observation.detach().float().cpu().reshape(1, *observation.shape[-3:])
    mask = corruption.observation_mask(image_shape)
    observed = torch.ones_like(y) if mask is None else mask.float().cpu().expand_as(y)
    k = int(observed.sum().item())
    allowance = chi_square_quantile(k) - k

    def statistic(images: torch.Tensor) -> torch.Tensor:
        fx = corruption(images.float().to(observation.device)).cpu()
        return ((fx - y).square() * observed).flatten(1).sum(1) / sigma ** 2

    report = {}
    with torch.no_grad():
        for method, o in sampled.items():
            values = statistic(o.samples)
            centre = values.median()
            spread = 1.4826 * float((values - centre).abs().median())
            threshold = float(centre) + max(allowance, OUTLIER_SPREADS * spread)
            count = int((values > threshold).sum())
            report[method] = {"count": count, "draws": int(o.samples.shape[0]), "threshold": threshold}
    return report


# --- the summary figure ------------------------------------------------------------------------

def figure_row(display: torch.Tensor, truth: torch.Tensor | None,
               outputs: Mapping[str, MethodOutput]) -> dict[str, torch.Tensor | None]:
    """One row of ``summary_figure``: the input, each method's image, the first sampling method's
    draws and std map, and the truth."""
    row: dict[str, torch.Tensor | None] = {"input": display, "truth": truth}
    for method, o in outputs.items():
        row[method] = o.image
        if o.samples is not None and "samples" not in row:
            row["samples"], row["std"] = o.samples, o.std
    return row


def _show(ax, image: torch.Tensor, title: str, cmap: str = "gray", signed: bool = True):
    img = image.detach().cpu().float()
    if img.ndim == 4:
        img = img[0]
    if img.shape[0] == 1:
        data = img[0].numpy()
        kwargs = dict(cmap=cmap, vmin=-1, vmax=1) if signed else dict(cmap=cmap, vmin=0)
    else:
        data = ((img.permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy()
        kwargs = {}
    shown = ax.imshow(data, interpolation="nearest", **kwargs)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def summary_figure(rows: Sequence[Mapping[str, torch.Tensor | None]], path: str | Path,
                   row_titles: Sequence[str] | None = None, num_samples: int = 3, notes: str | None = None) -> Path:
    """One row per problem: input | MAP | VI mean | samples | std | truth (whichever are given).

    Each row is a dict with keys "input", "map", "vi", "mcmc", "samples" (n, C, H, W), "std",
    "truth"; std maps use their own colour scale, shown by a colour bar (on [-1, 1] pixel units).
    ``notes``: text printed under the images (the inferred noise level / corruption parameters of a blind run).
    """
    import matplotlib  # imported here: matplotlib costs ~0.4 s, which `brgm --help` need not pay

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = ["input", "map", "vi", "fullrank", "mcmc", "samples", "std", "truth"]
    labels = {"input": "input", "map": "MAP", "vi": "VI mean", "fullrank": "full-rank mean", "mcmc": "NUTS mean",
              "std": "VI std", "truth": "truth"}

    def columns(row: Mapping[str, torch.Tensor | None]) -> int:
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
                image = _show(axes[r][c], value, "posterior std", cmap="magma", signed=False)
                bar = fig.colorbar(image, ax=axes[r][c], fraction=0.046, pad=0.04)
                bar.ax.tick_params(labelsize=6)
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
