"""Running the paper's Table 1 for our setting: BRGM (MAP) against classical baselines on a test set.

Super-resolution: BRGM vs bicubic up-sampling vs DeepInverse's TV and wavelet reconstructions.
In-painting: image n gets standard mask n % 7 (as in the paper); BRGM vs mean fill vs TV and wavelet.
The TV / wavelet rows use the weights of ``baselines.TUNED_WEIGHTS`` (tuned on training images by
``benchmarks/baselines.py``) and need the optional extra (``pip install -e ".[baselines]"``); without
it the table says so in a note and has no such rows.
Metrics per image (``compute_metrics``): LPIPS when its backbone weights are present, RMSE, PSNR,
SSIM, MAE; plus the squared distance in the generator's feature space when one is used, and for
in-painting the RMSE inside the hidden region. Reported as mean +- std over the images, as
markdown and CSV tables (``write_tables``).  BRGM's MAP images come from
``brgm_pyro.inference.run_method`` (or from the data-set runner, which calls it too).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..functional import image_shape, rmse_255
from ..baselines import (
    INSTALL_HINT, TUNED_WEIGHTS, baselines_available, bicubic_upsample, mean_fill, tv_reconstruction,
    wavelet_reconstruction,
)
from ..corruptions import NUM_STANDARD_MASKS, Inpainting, SuperResolution, standard_mask, standard_mask_names
from ..inference import MethodOptions, run_method
from ..metrics import LPIPSMetric, compute_metrics, summarize
from ..perceptual import MissingWeightsError


@dataclass
class EvaluationTable:
    """Per-method, per-metric values over the images, and the rendered tables."""

    task: str
    num_images: int
    values: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # in-painting: per standard mask, per method, per metric values
    groups: dict[int, dict[str, dict[str, torch.Tensor]]] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        return {m: {k: summarize(v) for k, v in metrics.items()} for m, metrics in self.values.items()}

    def metric_names(self) -> list[str]:
        names: list[str] = []
        for metrics in self.values.values():
            names += [k for k in metrics if k not in names]
        return names

    def markdown(self) -> str:
        return evaluation_markdown(self)

    def group_markdown(self, metric: str = "rmse_hidden") -> str:
        return evaluation_group_markdown(self, metric)

    def csv(self) -> str:
        return evaluation_csv(self)


def try_lpips(net: str = "alex") -> tuple[LPIPSMetric | None, str | None]:
    """The LPIPS metric if its backbone weights are on disk, else (None, why)."""
    try:
        return LPIPSMetric(net), None
    except MissingWeightsError as err:
        return None, f"LPIPS ({net}) left out: {err}"


def _metrics(recon: torch.Tensor, truth: torch.Tensor, lpips: LPIPSMetric | None,
             features: torch.nn.Module | None, hidden: torch.Tensor | None) -> dict[str, torch.Tensor]:
    values = compute_metrics(recon, truth, lpips)
    if features is not None:
        with torch.no_grad():
            values["feature_distance"] = (features(recon) - features(truth)).square().sum(1).double().cpu()
    if hidden is not None:
        values["rmse_hidden"] = rmse_255(recon, truth, hidden, dim=(1, 2, 3)).cpu()
    return values


def _append(table: EvaluationTable, method: str, values: dict[str, torch.Tensor], group: int | None = None) -> None:
    if group is not None:
        table.groups.setdefault(group, {})[method] = values
    current = table.values.setdefault(method, {})
    for k, v in values.items():
        current[k] = torch.cat([current[k], v]) if k in current else v


def _map_images(build_model: Callable[[torch.Tensor], object], observations: torch.Tensor, steps: int, lr: float,
                batch_size: int, progress: bool) -> torch.Tensor:
    """MAP images (``run_method``) for many observations, ``batch_size`` at a time (one batched model each)."""
    options = MethodOptions(steps=steps, lr=lr, samples=0, progress=progress)
    images = []
    for start in range(0, len(observations), batch_size):
        outputs = run_method(build_model(observations[start:start + batch_size]), "map", options)
        images.extend(o.image for o in outputs)
    return torch.cat(images)


def generator_mean_image(generator, num_samples: int = 10_000, chunk: int = 500, seed: int = 0) -> torch.Tensor:
    """Mean of G(mapping(z)) over ``num_samples`` draws: the mean image of the prior, (C, H, W)."""
    g = torch.Generator().manual_seed(seed)
    total = None
    device = getattr(generator, "device", "cpu")
    with torch.no_grad():
        for start in range(0, num_samples, chunk):
            n = min(chunk, num_samples - start)
            z = torch.randn(n, generator.z_dim, generator=g).to(device)
            imgs = generator.synthesis(generator.mapping(z)).double().sum(0).cpu()
            total = imgs if total is None else total + imgs
    return (total / num_samples).float()


def evaluate(generator, images: torch.Tensor, task: str, build_model: Callable, features: torch.nn.Module | None,
             factor: int = 4, kernel: str = "bicubic", steps: int = 500, lr: float = 0.1, batch_size: int = 50,
             progress: bool = True, lpips_net: str | None = "alex",
             reconstructions: torch.Tensor | None = None) -> EvaluationTable:
    """Run BRGM (MAP) and the baselines of ``task`` on ``images`` (N, C, H, W) in [-1, 1].

    ``build_model(corruption, observations)`` returns the (batched) BRGM model of those observations.
    ``reconstructions`` (N, C, H, W): BRGM's MAP images made elsewhere (the data-set runner); then
    only the baselines run here.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
    shape = image_shape(generator)
    if tuple(images.shape[1:]) != shape:
        raise ValueError(f"test images are {tuple(images.shape[1:])} but the generator makes {shape}")
    if reconstructions is not None and tuple(reconstructions.shape) != tuple(images.shape):
        raise ValueError(f"reconstructions are {tuple(reconstructions.shape)} but the images {tuple(images.shape)}")
    table = EvaluationTable(task, len(images))
    if task == "super-resolution":
        table.notes.append(f"x{factor} down-sampling with the {kernel!r} kernel")
    lpips, why = (None, None) if lpips_net is None else try_lpips(lpips_net)
    if why:
        table.notes.append(why)
    classical = baselines_available(wavelets=True) and task in TUNED_WEIGHTS
    if classical:
        weights = "; ".join(f"{m} lambda={s.weight:g}" for m, s in TUNED_WEIGHTS[task].items())
        table.notes.append(f"TV and wavelet: DeepInverse PGD on the same operator, weights tuned on Fashion-MNIST "
                           f"training images by benchmarks/baselines.py ({weights})")
    elif task in TUNED_WEIGHTS:
        table.notes.append(f"TV and wavelet baselines left out: DeepInverse is not installed ({INSTALL_HINT})")

    def add_classical(op, obs, init, truth, hidden, group=None):
        if not classical:
            return
        for key, method, solve in (("tv", "TV (DeepInverse)", tv_reconstruction),
                                   ("wavelet", "wavelet (DeepInverse)", wavelet_reconstruction)):
            recon = solve(op, obs, shape, TUNED_WEIGHTS[task][key], init=init)
            _append(table, method, _metrics(recon, truth, lpips, features, hidden), group)

    if task == "super-resolution":
        op = SuperResolution(factor, kernel=kernel)
        low = op(images)
        brgm = (reconstructions.to(images.device) if reconstructions is not None
                else _map_images(lambda obs: build_model(op, obs), low, steps, lr, batch_size, progress))
        _append(table, "BRGM (MAP)", _metrics(brgm, images, lpips, features, None))
        bicubic = bicubic_upsample(low, factor)
        _append(table, "bicubic", _metrics(bicubic, images, lpips, features, None))
        add_classical(op, low, bicubic, images, None)
        return table
    if task == "inpainting":
        mean_image = generator_mean_image(generator)
        groups = tqdm(range(NUM_STANDARD_MASKS), desc="masks", disable=not progress)
        for mask_id in groups:
            if mask_id >= len(images):  # fewer images than masks: some masks have none
                continue
            idx = torch.arange(mask_id, len(images), NUM_STANDARD_MASKS)
            mask = standard_mask(mask_id, shape[-1])
            op = Inpainting(mask)
            truth = images[idx]
            obs = op(truth)
            hidden = (1 - mask).expand(len(idx), *shape)
            brgm = (reconstructions[idx].to(images.device) if reconstructions is not None
                    else _map_images(lambda o: build_model(op, o), obs, steps, lr, batch_size, False))
            _append(table, "BRGM (MAP)", _metrics(brgm, truth, lpips, features, hidden), mask_id)
            filled = mean_fill(obs, mask, mean_image)
            _append(table, "mean fill", _metrics(filled, truth, lpips, features, hidden), mask_id)
            add_classical(op, obs, filled, truth, hidden, mask_id)
        return table
    raise ValueError(f"evaluate supports the tasks super-resolution and inpainting, got {task!r}")


# --- evaluation tables (the paper's Table 1) ---------------------------------------------------

METRIC_ARROWS = {"lpips": "↓", "rmse": "↓", "mae": "↓", "psnr": "↑", "ssim": "↑", "feature_distance": "↓",
                 "rmse_hidden": "↓"}


def evaluation_markdown(table: EvaluationTable) -> str:
    """Method x metric, mean ± std over the images, as a markdown table."""
    names = table.metric_names()
    lines = ["| method | " + " | ".join(f"{n} {METRIC_ARROWS.get(n, '')}".strip() for n in names) + " |",
             "|---" * (len(names) + 1) + "|"]
    for method, stats in table.summary().items():
        cells = [f"{stats[n][0]:.3f} ± {stats[n][1]:.3f}" if n in stats else "–" for n in names]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluation_group_markdown(table: EvaluationTable, metric: str = "rmse_hidden") -> str:
    """In-painting: ``metric`` (mean over the images of each mask) per standard mask and method."""
    if not table.groups:
        return ""
    methods = list(next(iter(table.groups.values())))
    names = standard_mask_names()
    lines = ["| mask | images | " + " | ".join(methods) + " |", "|---" * (len(methods) + 2) + "|"]
    for gid in sorted(table.groups):
        row = table.groups[gid]
        n = len(next(iter(row.values()))[metric])
        lines.append(f"| {gid}: {names[gid]} | {n} | " + " | ".join(f"{float(row[m][metric].mean()):.2f}"
                                                                for m in methods) + " |")
    return "\n".join(lines)


def evaluation_csv(table: EvaluationTable) -> str:
    """task, method, metric, mean, std, num_images: one row per method and metric."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["task", "method", "metric", "mean", "std", "num_images"])
    for method, stats in table.summary().items():
        for name, (mean, std) in stats.items():
            writer.writerow([table.task, method, name, f"{mean:.6g}", f"{std:.6g}", table.num_images])
    return buf.getvalue()


def table_files(out_dir: str | Path, task: str) -> tuple[Path, Path]:
    """Where ``write_tables`` puts a task's tables: ``out_dir/evaluation-<task>.md`` and ``.csv``."""
    md = Path(out_dir) / f"evaluation-{task}.md"
    return md, md.with_suffix(".csv")


def table_path(out_dir: str | Path, task: str) -> Path:
    """Where ``write_tables`` puts a task's Markdown table: ``out_dir/evaluation-<task>.md``."""
    return table_files(out_dir, task)[0]


def write_tables(table: EvaluationTable, out_dir: str | Path) -> tuple[Path, Path]:
    """``evaluation-<task>.md`` (the table, per-mask RMSE for in-painting, notes) and ``.csv``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, csv_path = table_files(out, table.task)
    body = f"## {table.task}, {table.num_images} images\n\n{evaluation_markdown(table)}\n"
    if table.groups:
        body += f"\nRMSE inside the hidden region (0-255) per standard mask:\n\n{evaluation_group_markdown(table)}\n"
    if table.notes:
        body += "\n" + "\n".join(f"- {n}" for n in table.notes) + "\n"
    md.write_text(body)
    csv_path.write_text(evaluation_csv(table))
    return md, csv_path
