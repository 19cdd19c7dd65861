"""Calibration on real images with ground truth (issue 25): the recommended posterior's pixel
intervals measured, and their scale fitted with a finite-sample guarantee, on real images rather
than on problems drawn from the model.

    x, _ = load_fashion_mnist("test")                        # brgm_pyro.training.data
    split = split_images(x, range(len(x)), 30, 30, seed=25, exclude_ids=load_test_images()[2].tolist())
    report = real_image_calibration(G, make_corruption("inpainting", 32, mask_id=0), split,
                                    misfit="fit", alpha=0.1, out="real.json")
    print(report.table())

Each real image x (truth known) is corrupted and noised as the model says, y = f(x) + N(0, sigma^2)
on the observed entries (seeded per image), and reconstructed by the recommended posterior
(``fit_multistart_fullrank``: multi-start MAP containing MAP's own run, Laplace, full-rank Gaussian).
Per image and per interval scale s of a grid (draws c + s (w - c) about the fit's centre, i.e.
N(mu, s^2 Sigma)): the fraction of unknown pixels its central 50% / 90% intervals hold, the
posterior-mean RMSE (0-255) beside MAP's (mode 0 of the same multi-start: ``map_estimate``'s run),
the pooled posterior std over error, and how plausible the draws are (``plausibility``).

Variants: "plain" (the paper's model, the truth is exactly G(w)) and "misfit" (x = G(w) + r,
r ~ N(0, tau^2), ``models.misfit``; tau fitted on the calibration images from MAP's residual on
the observed entries, tau^2 = (mean residual^2 - sigma^2) / mean diag(A A^T), a moment estimate
that is low because MAP also fits part of the misfit).  Per variant ``conformal.conformal_scale``
fits the scale on the *calibration* images only (the guarantee: E[coverage of a new image's
unknown pixels] >= 1 - alpha, images exchangeable) and the table reports the *evaluation* images
at scale 1, at the plug-in scale and at the guaranteed scale.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from brgm_pyro.corruptions import setting_name
from brgm_pyro.functional import image_shape, mean_squared_error_255
from brgm_pyro.io import load_image
from brgm_pyro.models.brgm import BRGMModel, brgm_model, corrupt, default_config, generate
from brgm_pyro.models.config import BRGMConfig
from brgm_pyro.models.misfit import MisfitPixelLikelihood, point_images, predictive_images

from brgm_pyro.inference.intervals import DEFAULT_FACTORS, central_interval, interval_coverage_by_factor
from brgm_pyro.inference.multistart import fit_multistart_fullrank
from brgm_pyro.inference.posterior import single_image_model
from brgm_pyro.inference.recommended import calibrated_config, recommended_fit_options
from brgm_pyro.inference.quantities import unknown_region

from .conformal import conformal_scale
from .measures import interval_coverage, json_safe
from .problems import derive_seed
from .statistics import pooled_ratio, mean_se

DEFAULT_SCALES: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0)
REAL_LEVELS: tuple[float, ...] = (0.5, 0.9)
CONFORMAL_MAX_SCALE = 2.0
"""The largest scale the conformal fit may choose (``RealCalibrationReport.conformal_scales``)."""
UNPLACEABLE_BELOW = 0.5
"""A draw the domain classifier "cannot place": its highest class probability is below 0.5."""
SPLIT_RULE = ("the images without the excluded ids (for Fashion-MNIST: its test split without the 100 bundled "
              "images, brgm_pyro/pretrained/fashion-mnist-test-100.npz), in ascending id order; numpy "
              "default_rng(seed).permutation of them; the first num_calibration are calibration images, the next "
              "num_evaluation evaluation images")


# --------------------------------------------------------------------------- images


@dataclass
class RealImageSplit:
    """Calibration and evaluation images (N, C, H, W) in [-1, 1] with their ids, and the rule that split them."""

    calibration: torch.Tensor
    calibration_ids: list[int]
    evaluation: torch.Tensor
    evaluation_ids: list[int]
    rule: str
    source: str

    def __post_init__(self) -> None:
        overlap = set(self.calibration_ids) & set(self.evaluation_ids)
        if overlap:
            raise ValueError(f"calibration and evaluation images overlap: ids {sorted(overlap)[:10]}")
        for name in ("calibration", "evaluation"):
            x, ids = getattr(self, name), getattr(self, name + "_ids")
            if x.ndim != 4 or x.shape[0] != len(ids):
                raise ValueError(f"{name} images must be (N, C, H, W) with one id each, got {tuple(x.shape)} "
                                 f"and {len(ids)} ids")
            if x.numel() and (float(x.min()) < -1 - 1e-6 or float(x.max()) > 1 + 1e-6):
                raise ValueError(f"{name} images must lie in [-1, 1], got [{float(x.min()):.3g}, {float(x.max()):.3g}]")


def split_images(images: torch.Tensor, ids: Sequence[int], num_calibration: int, num_evaluation: int,
                 seed: int = 25, exclude_ids: Sequence[int] = (), source: str = "") -> RealImageSplit:
    """Calibration and evaluation images by the recorded rule ``SPLIT_RULE``: the images whose id is
    not in ``exclude_ids`` (ascending id order), permuted by numpy ``default_rng(seed)``; the first
    ``num_calibration`` calibrate, the next ``num_evaluation`` evaluate."""
    if num_calibration < 1 or num_evaluation < 0:
        raise ValueError(f"need >= 1 calibration and >= 0 evaluation images, got {num_calibration}, {num_evaluation}")
    ids = [int(i) for i in ids]
    if len(ids) != images.shape[0] or len(set(ids)) != len(ids):
        raise ValueError(f"need one distinct id per image, got {len(ids)} ids for {images.shape[0]} images")
    excluded = {int(i) for i in exclude_ids}
    remaining = sorted((i, k) for k, i in enumerate(ids) if i not in excluded)
    if num_calibration + num_evaluation > len(remaining):
        raise ValueError(f"{num_calibration} + {num_evaluation} images asked for, {len(remaining)} available")
    perm = np.random.default_rng(seed).permutation(len(remaining))
    cal = [remaining[j] for j in perm[:num_calibration]]
    ev = [remaining[j] for j in perm[num_calibration:num_calibration + num_evaluation]]
    rule = SPLIT_RULE + f" (seed {seed}; {len(excluded)} ids excluded)"
    return RealImageSplit(images[[k for _, k in cal]], [i for i, _ in cal], images[[k for _, k in ev]],
                          [i for i, _ in ev], rule, source)


def folder_images(folder: str | Path, resolution: int, channels: int = 1) -> tuple[torch.Tensor, list[int]]:
    """The PNG / JPEG images of a folder, sorted by file name, as (N, C, R, R) in [-1, 1] (centre crop,
    Lanczos resize: ``brgm_pyro.io.load_image``); ids are their positions."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise FileNotFoundError(f"no .png / .jpg images found in {folder}")
    images = torch.cat([load_image(p, resolution=resolution, channels=channels) for p in files])
    return images, list(range(len(files)))


@torch.no_grad()
def prior_draw_images(model: BRGMModel, num_images: int, seed: int = 0) -> torch.Tensor:
    """``num_images`` images G(w), w ~ the model's Gaussian prior (the calibration problems' draws),
    clamped to [-1, 1] as an image file would hold them: "images" for which the model is true, to
    check on them what the real-image calibration fits."""
    g = torch.Generator().manual_seed(seed)
    loc, scale = model.prior.init_loc(), model.prior.init_scale()
    latents = loc + scale * torch.randn((num_images, *loc.shape), generator=g).to(loc)
    images = torch.cat([generate(model.generator, model.prior.ws_from_latent(latents[i:i + 64]))
                        for i in range(0, num_images, 64)])
    return images.clamp(-1, 1).cpu()


# --------------------------------------------------------------------------- problems


@dataclass
class RealProblem:
    """A real image (1, C, H, W), its noisy observation y = f(x) + N(0, sigma^2) on the observed
    entries, and the unknown region (bool (C, H, W))."""

    index: int
    image: torch.Tensor
    observation: torch.Tensor
    unknown: torch.Tensor


@torch.no_grad()
def real_problems(corruption, images: torch.Tensor, ids: Sequence[int], sigma_pixel: float,
                  seed: int = 0) -> list[RealProblem]:
    """One problem per image; image ``id``'s noise depends only on (seed, id)."""
    shape = tuple(images.shape[1:])
    mask = corruption.observation_mask(shape)
    unknown = unknown_region(corruption, shape)
    out = []
    for x, i in zip(images, ids):
        clean = corruption(x.unsqueeze(0))[0]
        g = torch.Generator().manual_seed(derive_seed(seed, int(i), 77))
        noise = torch.randn(clean.shape, generator=g, dtype=torch.float64).to(clean) * sigma_pixel
        if mask is not None:
            noise = noise * mask.to(clean)
        out.append(RealProblem(int(i), x.unsqueeze(0), clean + noise, unknown))
    return out


# --------------------------------------------------------------------------- plausibility


@torch.no_grad()
def plausibility(classifier: torch.nn.Module | None, images: torch.Tensor) -> dict[str, float] | None:
    """The domain classifier's view of draws (n, C, H, W) (clamped to [-1, 1]): mean highest class
    probability and the fraction of draws it cannot place (highest probability < ``UNPLACEABLE_BELOW``)."""
    if classifier is None:
        return None
    probs = torch.softmax(classifier(images.clamp(-1, 1).float()), -1).max(-1).values.double()
    return {"max_softmax": float(probs.mean()), "unplaceable": float((probs < UNPLACEABLE_BELOW).double().mean())}


@torch.no_grad()
def reference_plausibility(model: BRGMModel, classifier: torch.nn.Module, real: torch.Tensor, num_prior: int = 1024,
                           seed: int = 0) -> dict[str, Any]:
    """The same measure on ``num_prior`` prior draws G(w), w ~ the model's Gaussian prior, and on the
    real images themselves (binomial / over-images standard errors)."""
    images = prior_draw_images(model, num_prior, seed)
    out = {}
    for name, x in (("prior draws", images), ("real images", real)):
        probs = torch.softmax(classifier(x.clamp(-1, 1).float()), -1).max(-1).values.double().numpy()
        bad = (probs < UNPLACEABLE_BELOW).astype(float)
        out[name] = {"n": int(probs.size), "max_softmax": mean_se(probs), "unplaceable": mean_se(bad)}
    return out


# --------------------------------------------------------------------------- measuring


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(mean_squared_error_255(a, b))


@torch.no_grad()
def _measure_image(model: BRGMModel, posterior, problem: RealProblem, map_latent: torch.Tensor, *,
                   scales: Sequence[float], levels: Sequence[float], num_draws: int, seed: int,
                   classifier, factors: Sequence[float] = DEFAULT_FACTORS) -> dict[str, Any]:
    """Everything the report needs about one image of a fitted (single-image) posterior."""
    unknown = problem.unknown.cpu()
    truth = problem.image[0].cpu()
    map_image = generate(model.generator, model.prior.ws_from_latent(map_latent).unsqueeze(0)).cpu()
    corrupted = corrupt(model.corruption, map_image.to(model.observation.device))[0].cpu()
    obs = model.observation.cpu()
    observed = torch.ones_like(obs, dtype=torch.bool) if model.mask is None else model.mask.cpu() > 0
    residual = (obs - corrupted)[observed].double()  # of G(w*) itself (the misfit's moment fit reads it)
    point = point_images(model, map_image.to(model.observation.device)).cpu()  # G(w*) + E[r | y, w*] with a misfit
    record: dict[str, Any] = {
        "map": {"rmse_unknown": math.sqrt(_mse(point[0][unknown], truth[unknown])),
                "rmse_image": math.sqrt(_mse(point[0], truth)),
                "residual_ms_observed": float(residual.square().mean()),
                "residual_sd_observed": float(residual.std())},
    }
    latents = posterior.sample(num_draws, images=False, seed=derive_seed(seed, problem.index, 1)).latents
    latents = latents.to(model.observation.device)
    centre = posterior.mean_latent.to(latents)
    by_scale = {}
    for s in scales:
        widened = centre + float(s) * (latents - centre)
        gen = torch.cat([generate(model.generator, model.prior.ws_from_latent(widened[i:i + 64]))
                         for i in range(0, num_draws, 64)])
        images = predictive_images(model, gen, torch.Generator().manual_seed(derive_seed(seed, problem.index, 2))).cpu()
        draws = images[:, unknown].double()
        mean = images.double().mean(0)
        by_scale[f"{float(s):g}"] = {
            "coverage": interval_coverage(draws, truth[unknown], levels),
            "rmse_unknown": math.sqrt(_mse(mean[unknown], truth[unknown])),
            "rmse_image": math.sqrt(_mse(mean, truth)),
            "mse_pixels": _mse(draws.mean(0), truth[unknown]),
            "var_pixels": float((draws * 127.5).var(0).mean()),
            "plausibility": plausibility(classifier, images),
        }
        if float(s) == 1.0:  # the draws' own intervals widened about their midpoints (inference.intervals)
            record["by_factor"], record["half_width"] = {}, {}  # half-width: unwidened, mean, 0-255
            for a in levels:
                lower, upper = central_interval(draws, a)
                record["by_factor"][f"{a:g}"] = interval_coverage_by_factor(lower, upper, truth[unknown].double(),
                                                                            factors)
                record["half_width"][f"{a:g}"] = float((upper - lower).mean() / 2 * 127.5)
    record["by_scale"] = by_scale
    return record


def measure_real_batch(base: BRGMModel, problems: Sequence[RealProblem], *, scales: Sequence[float] = DEFAULT_SCALES,
                       levels: Sequence[float] = REAL_LEVELS, num_draws: int = 256, seed: int = 0,
                       classifier=None, fit_options: Mapping[str, Any] | None = None,
                       factors: Sequence[float] = DEFAULT_FACTORS) -> list[dict[str, Any]]:
    """Fit the recommended posterior to a batch of real problems at once (one batched fit, each
    image seeded as if alone) and measure each image (``_measure_image``)."""
    observations = torch.stack([p.observation for p in problems])
    model = replace(base, observation=observations if len(problems) > 1 else observations[0])
    seeds = [derive_seed(seed, p.index, 0) for p in problems]
    t0 = time.perf_counter()
    options = recommended_fit_options(**dict(fit_options or {}))  # the recommended fit, unless overridden
    posterior = fit_multistart_fullrank(model, seed=seeds if model.batched else seeds[0], **options)
    fit_seconds = (time.perf_counter() - t0) / len(problems)
    records = []
    for b, problem in enumerate(problems):
        single = single_image_model(model, b)
        post = posterior.image(b)
        modes = posterior.modes[b]
        t1 = time.perf_counter()
        record = _measure_image(single, post, problem, modes.latents[0], scales=scales, levels=levels,
                                num_draws=num_draws, seed=seed, classifier=classifier, factors=factors)
        record.update(index=problem.index, method_seed=seeds[b], fit_seconds=fit_seconds,
                      measure_seconds=time.perf_counter() - t1,
                      map_log_joint=float(modes.log_joints[0]), mode_log_joint=float(modes.log_joints[modes.chosen]),
                      best_start=int(modes.start_indices[modes.chosen]))
        records.append(record)
    return records


# --------------------------------------------------------------------------- the report


def _mean_se_text(entry: Mapping[str, Any] | None, digits: int = 2) -> str:
    """``mean ± se`` of a ``statistics.mean_se`` entry ("-" when empty; no ± with one value)."""
    if not entry or entry.get("mean") is None:
        return "-"
    text = f"{entry['mean']:.{digits}f}"
    return text if entry.get("se") is None else text + f" ± {entry['se']:.{digits}f}"


def _scale_key(scale: float) -> str:
    return f"{float(scale):g}"


@dataclass
class RealCalibrationReport:
    """Per-image records of each variant ("plain", "misfit") on the calibration and evaluation
    images, the conformal fits (from the calibration images) and the plausibility references."""

    settings: dict[str, Any]
    records: dict[str, dict[str, list[dict[str, Any]]]]  # variant -> "calibration" / "evaluation" -> records
    reference: dict[str, Any] = field(default_factory=dict)

    @property
    def levels(self) -> list[float]:
        return list(self.settings["levels"])

    @property
    def scales(self) -> list[float]:
        return list(self.settings["scales"])

    def _level_index(self, level: float) -> int:
        for j, a in enumerate(self.levels):
            if math.isclose(a, level):
                return j
        raise KeyError(f"level {level} not measured (levels {self.levels})")

    @property
    def conformal_scales(self) -> list[float]:
        """The grid the conformal scale is chosen on: the measured scales up to ``CONFORMAL_MAX_SCALE``
        (fixed before any data: beyond it widening w pushes draws off the generator's range and
        coverage falls again, which the monotone loss would carry down to every smaller scale)."""
        top = float(self.settings.get("conformal_max_scale", CONFORMAL_MAX_SCALE))
        return [s for s in self.scales if s <= top]

    def fit(self, variant: str) -> dict[str, Any]:
        """The conformal scale of ``variant`` from its calibration images (``conformal.conformal_scale``)."""
        alpha = float(self.settings["alpha"])
        j = self._level_index(1 - alpha)
        recs = self.records[variant]["calibration"]
        grid = self.conformal_scales
        losses = [[1 - r["by_scale"][_scale_key(s)]["coverage"][j] for s in grid] for r in recs]
        return conformal_scale(losses, grid, alpha).to_dict()

    @property
    def factors(self) -> list[float]:
        """The interval factors measured per image (``inference.intervals``); [] for a run without them."""
        return [float(f) for f in self.settings.get("interval_factors") or []]

    def has_factors(self, variant: str) -> bool:
        """Whether every calibration record of ``variant`` holds the coverage by interval factor."""
        recs = self.records.get(variant, {}).get("calibration", [])
        return bool(self.factors) and bool(recs) and all("by_factor" in r for r in recs)

    def fit_intervals(self, variant: str) -> dict[str, dict[str, Any]]:
        """Per level a: the conformal-risk-control factor of the level-a intervals widened about their
        midpoints (``inference.intervals``) from the calibration images at alpha = 1 - a, so that
        E[fraction of a new image's unknown pixels its widened level-a intervals hold] >= a.  The
        intervals are nested in the factor, so the loss is monotone as it is (no running maximum needed)."""
        if not self.has_factors(variant):
            raise ValueError(f"the {variant} records hold no coverage by interval factor (a run before issue 25's "
                             "interval factors; rerun it)")
        recs = self.records[variant]["calibration"]
        return {f"{a:g}": conformal_scale([[1 - c for c in r["by_factor"][f"{a:g}"]] for r in recs],
                                          self.factors, 1 - a).to_dict() for a in self.levels}

    def interval_summary(self, variant: str, split: str, choice: str = "conformal") -> list[dict[str, Any]]:
        """Per level: the factor (``choice``: "conformal" or "plug-in", fitted on the calibration images),
        the coverage of ``split``'s unknown pixels by the widened intervals and their mean width (0-255),
        mean +- se over images; factor None when no grid factor meets the bound."""
        if choice not in ("conformal", "plug-in"):
            raise ValueError(f"choice must be 'conformal' or 'plug-in', got {choice!r}")
        fits = self.fit_intervals(variant)
        recs = self.records[variant][split]
        out = []
        for a in self.levels:
            key = f"{a:g}"
            fit = fits[key]
            factor = fit["scale"] if choice == "conformal" else fit["plug_in_scale"]
            entry: dict[str, Any] = {"level": a, "choice": choice, "factor": factor, "num_images": len(recs),
                                     "num_calibration": fit["num_images"]}
            if factor is not None:
                entry.update(self.coverage_at(variant, split, {a: factor})[0])
            out.append(entry)
        return out

    def coverage_at(self, variant: str, split: str, factors: Mapping[float, float]) -> list[dict[str, Any]]:
        """Per level of ``factors`` ({level: factor}, e.g. those fitted on another report's images):
        the coverage of ``split``'s unknown pixels by the intervals widened by that factor and their
        mean width (0-255), mean +- se over images.  The factor must be on this report's grid."""
        recs = self.records[variant][split]
        out = []
        for a, factor in factors.items():
            key = f"{float(a):g}"
            matches = [k for k, f in enumerate(self.factors) if math.isclose(f, float(factor), abs_tol=1e-9)]
            if not matches:
                raise ValueError(f"factor {factor} is not on this report's grid of interval factors")
            if not recs or key not in recs[0].get("by_factor", {}):
                raise ValueError(f"level {a} was not measured by interval factor for the {variant} {split} images")
            j = matches[0]
            out.append({"level": float(a), "factor": float(factor), "num_images": len(recs),
                        "coverage": mean_se(r["by_factor"][key][j] for r in recs),
                        "width": mean_se(2 * float(factor) * r["half_width"][key] for r in recs)})
        return out

    def interval_table(self, split: str = "evaluation") -> str:
        """Markdown: per variant and level, the widened intervals at the conformal and plug-in factors."""
        lines = ["| model | level | factor (chosen on n calibration images) | images | coverage | mean width (0-255) |",
                 "|---|---:|---|---:|---:|---:|"]
        for variant in self.records:
            if not self.records[variant].get(split) or not self.has_factors(variant):
                continue
            for choice in ("conformal", "plug-in"):
                for e in self.interval_summary(variant, split, choice):
                    if e["factor"] is None:
                        lines.append(f"| {self.label(variant)} | {e['level']:g} | {choice}: none on the grid meets "
                                     "the bound "
                                     f"(n = {e['num_calibration']}) | - | - | - |")
                        continue
                    chosen = f"{choice}: {e['factor']:g} (n = {e['num_calibration']})"
                    lines.append(f"| {self.label(variant)} | {e['level']:g} | {chosen} | {e['num_images']} | "
                                 f"{_mean_se_text(e['coverage'], 3)} | {_mean_se_text(e['width'], 1)} |")
        return "\n".join(lines)

    def summary(self, variant: str, split: str, scale: float) -> dict[str, Any]:
        """Mean +- se over images at one scale: coverage per level, posterior-mean and MAP RMSE (and their
        paired difference), pooled std / error, plausibility of the draws, modes below MAP's log joint."""
        recs = self.records[variant][split]
        key = _scale_key(scale)
        at = [r["by_scale"][key] for r in recs]
        cov = np.asarray([a["coverage"] for a in at], float)
        out: dict[str, Any] = {
            "variant": variant, "split": split, "scale": float(scale), "num_images": len(recs),
            "coverage": [dict(level=a, **mean_se(cov[:, j])) for j, a in enumerate(self.levels)],
            "rmse_unknown": mean_se(a["rmse_unknown"] for a in at),
            "rmse_unknown_map": mean_se(r["map"]["rmse_unknown"] for r in recs),
            "rmse_unknown_minus_map": mean_se(a["rmse_unknown"] - r["map"]["rmse_unknown"] for a, r in zip(at, recs)),
            "mean_beats_map": int(sum(a["rmse_unknown"] < r["map"]["rmse_unknown"] for a, r in zip(at, recs))),
            "std_error_ratio": pooled_ratio([a["var_pixels"] for a in at], [a["mse_pixels"] for a in at]),
            "modes_below_map": int(sum(r["mode_log_joint"] < r["map_log_joint"] - 1e-6 for r in recs)),
            "map_residual_sd_observed": mean_se(r["map"]["residual_sd_observed"] for r in recs),
        }
        plaus = [a["plausibility"] for a in at if a.get("plausibility")]
        if plaus:
            out["max_softmax"] = mean_se(p["max_softmax"] for p in plaus)
            out["unplaceable"] = mean_se(p["unplaceable"] for p in plaus)
        return out

    def label(self, variant: str) -> str:
        """The variant's name in tables: "plain" run with a given config (``settings["config"]``) names its weights."""
        config = self.settings.get("config")
        if variant != "plain" or not config:
            return variant
        tau = config.get("misfit_scale")
        return f"sigma {config['sigma_pixel']:g}" + ("" if tau is None else f", misfit tau {tau:g}")

    def chosen_scales(self, variant: str) -> dict[str, float | None]:
        fit = self.fit(variant)
        return {"1": 1.0, "plug-in": fit["plug_in_scale"], "conformal": fit["scale"]}

    def table(self, split: str = "evaluation") -> str:
        """Markdown: per variant and scale choice (1, plug-in, conformal), on ``split`` images."""
        ms = _mean_se_text
        lines = ["| model | scale (chosen on n calibration images) | images | cov90 | cov50 | RMSE post. mean | "
                 "RMSE MAP | mean − MAP (wins) | std/error | max softmax | unplaceable |",
                 "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for variant in self.records:
            if not self.records[variant].get(split):
                continue
            n_cal = len(self.records[variant].get("calibration", []))
            for name, scale in self.chosen_scales(variant).items():
                if scale is None:
                    lines.append(f"| {self.label(variant)} | {name}: none on the grid meets the bound (n = {n_cal}) "
                                 "| - | - | - "
                                 "| - | - | - | - | - | - |")
                    continue
                s = self.summary(variant, split, scale)
                cov = {c["level"]: c for c in s["coverage"]}
                r = s["std_error_ratio"]
                ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}" + (
                    "" if r["se"] is None else f" ± {r['se']:.2f}")
                lines.append("| " + " | ".join([
                    self.label(variant), f"{name}: {scale:g}" + ("" if name == "1" else f" (n = {n_cal})"),
                    str(s["num_images"]),
                    ms(cov.get(0.9)), ms(cov.get(0.5)), ms(s["rmse_unknown"], 1), ms(s["rmse_unknown_map"], 1),
                    ms(s["rmse_unknown_minus_map"], 1) + f" ({s['mean_beats_map']}/{s['num_images']})", ratio,
                    ms(s.get("max_softmax"), 3), ms(s.get("unplaceable"), 3)]) + " |")
        for name, ref in self.reference.items():
            lines.append(f"| reference: {name} | - | {ref['n']} | - | - | - | - | - | - | "
                         f"{ms(ref['max_softmax'], 3)} | {ms(ref['unplaceable'], 3)} |")
        return "\n".join(lines)

    def interval_scales(self, variant: str = "plain") -> dict[str, Any]:
        """What to store in a generator's metadata: ``{"interval_scales": {setting: s}}`` (the conformal
        scale; omitted when none meets the bound) and ``{"interval_calibration": {setting: record}}``
        (n, alpha, guarantee, split rule, misfit scale)."""
        fit = self.fit(variant)
        setting = self.settings["setting"]
        record = {"scale": fit["scale"], "num_images": fit["num_images"], "alpha": fit["alpha"],
                  "level": 1 - fit["alpha"], "guarantee": fit["guarantee"], "plug_in_scale": fit["plug_in_scale"],
                  "variant": variant,
                  "misfit_scale": self.settings.get("misfit_scale") if variant == "misfit" else None,
                  "sigma_pixel": self.settings["sigma_pixel"], "split_rule": self.settings.get("split_rule")}
        out: dict[str, Any] = {"interval_calibration": {setting: record}}
        if fit["scale"] is not None:
            out["interval_scales"] = {setting: fit["scale"]}
        if self.has_factors(variant):
            fits = self.fit_intervals(variant)
            record["interval_factors"] = {key: {"factor": f["scale"], "plug_in_factor": f["plug_in_scale"],
                                                "guarantee": f["guarantee"].replace("1 - alpha", key)}
                                          for key, f in fits.items()}
            if all(f["scale"] is not None for f in fits.values()):
                out["interval_factors"] = {setting: {key: f["scale"] for key, f in fits.items()}}
        return json_safe(out)

    def to_dict(self) -> dict[str, Any]:
        fits = {v: self.fit(v) for v in self.records if self.records[v].get("calibration")}
        summaries = {v: {name: self.summary(v, "evaluation", s) for name, s in self.chosen_scales(v).items()
                         if s is not None} for v in fits if self.records[v].get("evaluation")}
        intervals = {v: {"fits": self.fit_intervals(v),
                         "summary": {c: self.interval_summary(v, "evaluation", c) for c in ("conformal", "plug-in")}
                         if self.records[v].get("evaluation") else {}}
                     for v in fits if self.has_factors(v)}
        return json_safe({"settings": self.settings, "fits": fits, "summary": summaries,
                           "intervals": intervals, "reference": self.reference, "records": self.records})

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False))
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> "RealCalibrationReport":
        data = json.loads(Path(path).read_text())
        return cls(data["settings"], data["records"], data.get("reference", {}))


def misfit_scale_from_residuals(model: BRGMModel, residual_ms: Sequence[float], sigma_pixel: float) -> float:
    """tau from MAP residuals on observed entries: tau^2 = (mean residual^2 - sigma^2) / mean diag(A_obs A_obs^T)
    (at least 1e-3: a model that fits within the noise gets a negligible misfit)."""
    lik = MisfitPixelLikelihood.from_corruption(model.corruption, model.image_shape, sigma_pixel, 1.0)
    gain = float(lik.eigenvalues.mean())  # trace(A_obs A_obs^T) / m = mean of its diagonal
    excess = float(np.mean(residual_ms)) - sigma_pixel ** 2
    return max(math.sqrt(max(excess, 0.0) / gain), 1e-3)


def recommended_calibration(generator, corruption, sigma_pixel: float | None = None) -> tuple[BRGMConfig, float]:
    """The posterior ``brgm reconstruct`` fits for this setting, and the noise to observe the real images with:
    ``calibrated_config(default_config(generator, corruption))`` (the generator's recommended pixel sigma and
    misfit scale, kappa 0, no perceptual term), its ``sigma_pixel`` replaced by ``sigma_pixel`` when given; the
    noise is the config's pixel sigma (the model is told the noise it observes).  ``ValueError`` when there is
    no pixel sigma (recommended weights without a pixel likelihood, none given)."""
    config = calibrated_config(default_config(generator, corruption))
    if sigma_pixel is not None:
        config = replace(config, sigma_pixel=float(sigma_pixel))
    if config.sigma_pixel is None:
        raise ValueError("the generator's recommended weights for this setting have no pixel likelihood "
                         "(sigma_pixel): give the pixel sigma explicitly, or calibrate the plain model")
    return config, config.sigma_pixel


def real_image_calibration(generator, corruption, split: RealImageSplit, *, sigma_pixel: float = 0.1,
                           misfit: float | str | None = "fit", alpha: float = 0.1,
                           levels: Sequence[float] = REAL_LEVELS, scales: Sequence[float] = DEFAULT_SCALES,
                           num_draws: int = 256, seed: int = 0, batch_size: int = 5, classifier=None,
                           setting: str | None = None, fit_options: Mapping[str, Any] | None = None,
                           out: str | Path | None = None, log: Callable[[str], None] | None = None,
                           num_stats_samples: int = 10_000,
                           factors: Sequence[float] = DEFAULT_FACTORS,
                           config: BRGMConfig | None = None) -> RealCalibrationReport:
    """Measure the recommended posterior on real images (module docstring).  ``sigma_pixel``: the noise
    added to the observations; ``config``: the weights of the model the posterior is fitted to (the "plain"
    variant; default: the paper's pixel likelihood at ``sigma_pixel``, per-dimension prior std, kappa 0, no
    perceptual term; ``calibrated_config(default_config(generator, corruption))`` is the posterior ``brgm
    reconstruct`` fits, misfit term included; any config must be its own ``calibrated_config``);
    ``misfit``: None (that model only), a fixed tau, or "fit" (tau from the plain variant's calibration MAP
    residuals), not with a ``config`` that has its own; ``out``: a JSON file written after every batch and
    read back to resume (records of the same settings are kept; a split with more evaluation images, the old
    ones first, extends the run: ``split_images`` with a larger ``num_evaluation`` gives exactly that)."""
    config = config or BRGMConfig(sigma_pixel, None, 0.0, "per-dimension")
    if config != calibrated_config(config):
        raise ValueError(f"the recommended posterior is fitted with kappa 0, no perceptual term and per-dimension "
                         f"prior std; pass calibrated_config(config), got {config}")
    if misfit is not None and config.misfit_scale is not None:
        raise ValueError(f"the config has its own misfit scale ({config.misfit_scale}); pass misfit=None")
    levels = [float(a) for a in levels]
    if not any(math.isclose(a, 1 - alpha) for a in levels):
        levels = sorted(levels + [1 - alpha])
    scales = sorted(float(s) for s in scales)
    if 1.0 not in scales:
        scales = sorted(scales + [1.0])
    settings = {"corruption": corruption.describe(), "setting": setting or setting_name(corruption),
                "sigma_pixel": sigma_pixel, "alpha": alpha, "levels": levels, "scales": scales, "num_draws": num_draws,
                "seed": seed, "split_rule": split.rule, "source": split.source,
                "calibration_ids": split.calibration_ids, "evaluation_ids": split.evaluation_ids,
                "fit_options": recommended_fit_options(**dict(fit_options or {})), "misfit": misfit,
                "conformal_max_scale": CONFORMAL_MAX_SCALE, "interval_factors": sorted(float(f) for f in factors),
                "torch_threads": torch.get_num_threads()}
    if config != BRGMConfig(sigma_pixel, None, 0.0, "per-dimension"):  # recorded when not the plain default
        settings["config"] = asdict(config)
    records: dict[str, dict[str, list]] = {}
    reference: dict[str, Any] = {}
    if out is not None and Path(out).is_file():
        old = RealCalibrationReport.from_json(out)
        ignore = ("misfit_scale", "torch_threads", "evaluation_ids")
        same = {k: v for k, v in old.settings.items() if k not in ignore}
        old_ids = list(old.settings.get("evaluation_ids", []))
        extends = list(split.evaluation_ids[:len(old_ids)]) == old_ids  # more evaluation images may be added
        if same != {k: v for k, v in json_safe(settings).items() if k not in ignore} or not extends:
            raise ValueError(f"{out} holds a run with other settings (a run may only be extended by more evaluation "
                             "images of the same split); choose another --out or remove it")
        records, reference = old.records, old.reference
        if "misfit_scale" in old.settings:
            settings["misfit_scale"] = old.settings["misfit_scale"]
    say = log or (lambda text: None)
    placeholder = torch.zeros(corruption.output_shape(image_shape(generator)))
    plain = brgm_model(generator, corruption, placeholder, config=config, num_stats_samples=num_stats_samples)
    problems = {"calibration": real_problems(corruption, split.calibration, split.calibration_ids, sigma_pixel, seed),
                "evaluation": real_problems(corruption, split.evaluation, split.evaluation_ids, sigma_pixel, seed)}

    def report() -> RealCalibrationReport:
        return RealCalibrationReport(dict(settings), records, reference)

    def run(variant: str, base: BRGMModel, part: str, limit: int | None = None) -> None:
        """Measure the images of ``part`` not yet in the records (at most ``limit`` of them)."""
        done = {r["index"] for r in records.setdefault(variant, {}).setdefault(part, [])}
        todo = [p for p in problems[part] if p.index not in done][:limit]
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            t0 = time.perf_counter()
            records[variant][part].extend(measure_real_batch(
                base, batch, scales=scales, levels=levels, num_draws=num_draws, seed=seed,
                classifier=classifier, fit_options=fit_options, factors=settings["interval_factors"]))
            say(f"{variant} {part}: {len(records[variant][part])}/{len(problems[part])} images "
                f"({time.perf_counter() - t0:.0f} s for {len(batch)})")
            if out is not None:
                report().to_json(out)

    if classifier is not None and not reference:
        reference.update(reference_plausibility(plain, classifier, split.evaluation, seed=seed))
    variants = {"plain": plain}
    run("plain", plain, "calibration")
    if misfit is not None:
        if misfit == "fit":
            tau = misfit_scale_from_residuals(plain, [r["map"]["residual_ms_observed"]
                                                      for r in records["plain"]["calibration"]], sigma_pixel)
        else:
            tau = float(misfit)
        settings["misfit_scale"] = tau
        say(f"misfit scale tau = {tau:.4f}")
        variants["misfit"] = brgm_model(generator, corruption, placeholder, prior=plain.prior,
                                        config=replace(config, misfit_scale=tau))
        run("misfit", variants["misfit"], "calibration")
    # evaluation images batch by batch, every variant on each batch: a cut-short run stays paired
    while any(len(records.get(v, {}).get("evaluation", [])) < len(problems["evaluation"]) for v in variants):
        for variant, base in variants.items():
            run(variant, base, "evaluation", limit=batch_size)
    result = report()
    if out is not None:
        result.to_json(out)
    return result
