"""Reconstruct a data set: images from files, folders, globs or the bundled test set; batched
MAP and posteriors (VI, full-rank); one output folder per image; a summary over the data set; resumable; sharded over
``torchrun`` ranks.

    sources = collect_images(["scans/", "more/*.png"])
    rows = reconstruct_dataset(generator, features, sources, plan, "out/")

Per image ``out/<name>/``: ``input.png``, ``truth.png`` (when the truth is known), for each
method its reconstruction (``map.png`` / ``vi_mean.png``, and as float32 ``.npy``), posterior
samples and std map, ``metrics.json``, and last ``done.json`` (written atomically). An image
whose ``done.json`` exists is finished: ``resume`` skips it, an interruption never loses it.
``out/summary.csv`` and ``out/summary.json`` hold one row per image (rank 0 writes them).

Images are processed in batches of ``batch_size`` in data-set order; the batches are dealt
round-robin to the ranks, and each image's random seed comes from the run's seed and the
image's index in the data set, so N processes give the same results as one.  Each batch is one
batched model, solved by ``brgm_pyro.inference.run_methods``.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from tqdm.auto import tqdm

from ..assets import TEST_IMAGES_FILE
from ..bundled import load_test_images
from ..inference import MethodOptions, MethodOutput, run_methods, unknown_region
from ..io import NonSquareImageError
from ..jsonfile import write_json
from ..preparation import prepare_image
from .distributed import DistributedContext, broadcast_object, gather_objects, shard
from .report import observation_display, save_intervals, save_outputs, weights_report

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")
DONE_MARKER = "done.json"
SUMMARY_LEADING_COLUMNS = ("index", "name", "source", "corruption")
"""summary.csv starts with these columns; the metric columns follow in sorted order (fresh,
interrupted and resumed runs write the same order)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a data-set run, after the summary of the finished images was written."""

    def __init__(self, finished: int, total: int) -> None:
        super().__init__(f"{finished} of {total} images finished")
        self.finished, self.total = finished, total


@dataclass(frozen=True)
class ImageSource:
    """One image of a data set: its index in the data set, the name of its output folder, and
    where it comes from (a file, or an in-memory tensor (1, C, H, W) in [-1, 1])."""

    index: int
    name: str
    path: Path | None = None
    tensor: torch.Tensor | None = field(default=None, repr=False, compare=False)
    label: str = ""

    @property
    def origin(self) -> str:
        return str(self.path) if self.path is not None else self.label


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """Output folder names: the file stem, or ``<stem>-<suffix>`` / ``<index>-<stem>`` where
    stems collide (a.png and a.jpg; the same name in two folders)."""
    stems = [p.stem for p in paths]
    names = []
    for i, p in enumerate(paths):
        name = stems[i]
        if stems.count(name) > 1:
            name = f"{p.stem}-{p.suffix.lstrip('.').lower()}"
            same = [q for q in paths if f"{q.stem}-{q.suffix.lstrip('.').lower()}" == name]
            if len(same) > 1:
                name = f"{i:05d}-{p.stem}"
        names.append(name)
    return names


def collect_images(inputs: Sequence[str | Path]) -> list[ImageSource]:
    """The images named by ``inputs``: files, folders (their .png/.jpg/.jpeg/.npy files, sorted
    by name, not recursive) and glob patterns, in the order given; a file named twice counts once.
    """
    if not inputs:
        raise ValueError("no images given: name image files, folders or glob patterns")
    paths: list[Path] = []
    for item in inputs:
        text = str(item)
        p = Path(text)
        if p.is_dir():
            found = _image_files(p)
            if not found:
                raise ValueError(f"folder {p} holds no {'/'.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} images")
        elif p.is_file():
            found = [p]
        elif _is_glob(text):
            found = sorted(Path(m) for m in glob.glob(text) if Path(m).is_file()
                           and Path(m).suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"the pattern {text!r} matches no image files")
        else:
            raise FileNotFoundError(f"image file or folder {p} does not exist")
        paths.extend(found)
    seen: set[Path] = set()
    unique = []
    for p in paths:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return [ImageSource(i, name, path=p) for i, (p, name) in enumerate(zip(unique, _unique_names(unique)))]


def bundled_test_sources(num_images: int | None = None) -> list[ImageSource]:
    """The bundled Fashion-MNIST test images as ``test-000`` ... ``test-099``."""
    images, labels, indices = load_test_images()
    n = len(images) if num_images is None else min(num_images, len(images))
    return [ImageSource(i, f"test-{i:03d}", tensor=images[i:i + 1],
                        label=f"{TEST_IMAGES_FILE}[{i}] (test split #{int(indices[i])}, class {int(labels[i])})")
            for i in range(n)]


def image_seed(seed: int, index: int) -> int:
    """The random seed of image ``index`` in a run with ``seed``: independent of the process
    that reconstructs it, distinct across images and runs."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0] % (2**31 - 1))


@dataclass
class DatasetPlan:
    """What to do with every image of a data set.

    ``corruption_for(index)`` gives the corruption of each image (one for all, or e.g. standard
    mask ``index % 7`` in the evaluation) and ``corruption_label(index)`` names it (default: its
    ``describe()``); images with the same label share batches, so distinct corruptions need
    distinct labels. ``options``: the methods' settings (steps, lr, samples, the recommended
    posterior's interval scale). ``observed``: the files are observations, not truths.
    ``settings`` identifies the run in ``done.json`` (resuming with other settings is refused).
    """

    task: str
    corruption_for: Callable[[int], Any]
    methods: Sequence[str]
    image_shape: tuple[int, int, int]
    build_model: Callable[[Any, torch.Tensor], Any]
    options: MethodOptions = MethodOptions()
    seed: int = 0
    batch_size: int = 8
    observed: bool = False
    center_crop: bool = False
    settings: dict = field(default_factory=dict)
    preparation: Any = None  # the generator's declared ``preparation.ImagePreparation`` (None: none declared)
    label_for: Callable[[int], str] | None = None
    interval_factors: dict[float, float] | None = None  # fullrank's calibrated intervals {level: factor}

    def corruption_label(self, index: int) -> str:
        return self.label_for(index) if self.label_for is not None else self.corruption_for(index).describe()


def load_source(source: ImageSource, plan: DatasetPlan) -> tuple[torch.Tensor | None, torch.Tensor, tuple[str, ...]]:
    """(truth or None, observation, notes) of one image, each (1, ...) on the CPU; a file is
    prepared for the generator as it declares (``preparation.prepare_image``: never stretched),
    and ``notes`` says what was done to it (empty: used as it is)."""
    corruption = plan.corruption_for(source.index)
    expected = tuple(corruption.output_shape(plan.image_shape))
    target = expected if plan.observed else plan.image_shape
    notes: tuple[str, ...] = ()
    if source.tensor is not None:
        image = source.tensor
    else:
        try:
            prepared = prepare_image(source.path, target,
                                     plan.preparation if expected == plan.image_shape or not plan.observed else None,
                                     center_crop=plan.center_crop, allow_resize=not plan.observed)
        except NonSquareImageError as err:
            raise ValueError(f"{err.name} is not square ({err.width}x{err.height}); pass --center-crop to crop its "
                             "central square") from None
        image, notes = prepared.tensor, prepared.notes
    if tuple(image.shape[1:]) != target:
        what = f"the observation {source.origin}" if plan.observed else f"image {source.origin}"
        raise ValueError(f"{what} is {tuple(image.shape[1:])} (C, H, W) but {target} is needed")
    if plan.observed:
        return None, image, notes
    return image, corruption(image), notes



def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)



def is_done(folder: Path, settings: dict) -> bool:
    """True when ``folder`` holds a finished image of a run with these settings; an image
    finished with other settings is an error (resume into a fresh --out instead)."""
    marker = folder / DONE_MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text()).get("settings")
    except json.JSONDecodeError:
        return False
    if recorded != settings:
        changed = sorted(k for k in set(recorded or {}) | set(settings)
                         if (recorded or {}).get(k) != settings.get(k))
        raise ValueError(f"{folder} was reconstructed with other settings ({', '.join(changed)} differ); "
                         "use another --out, or the same settings to resume")
    return True


def save_image_outputs(folder: Path, source: ImageSource, plan: DatasetPlan, truth: torch.Tensor | None,
                       observation: torch.Tensor, outputs: dict[str, MethodOutput],
                       weights: dict | None = None) -> dict:
    """Write one image's outputs and its ``done.json`` (last, atomically); return its summary row.
    ``weights``: the model's sigmas and kappa, recorded in metrics.json."""
    corruption = plan.corruption_for(source.index)
    label = plan.corruption_label(source.index)
    display = observation_display(corruption, observation, plan.image_shape)
    metrics = save_outputs(folder, truth, display, outputs)  # the single-image writer, reused
    if plan.interval_factors and "fullrank" in outputs:
        metrics["fullrank"].update(save_intervals(
            folder, "fullrank", outputs["fullrank"].result, plan.interval_factors, image_seed(plan.seed, source.index),
            truth, unknown_region(corruption, plan.image_shape)))
    for method, o in outputs.items():
        name = "map" if method == "map" else f"{method}_mean"
        np.save(folder / f"{name}.npy", o.image[0].detach().cpu().float().numpy(), allow_pickle=False)
    row = summary_row(source, label, metrics)
    write_json({
        "name": source.name, "index": source.index, "source": source.origin, "task": plan.task,
        "corruption": label, "seed": image_seed(plan.seed, source.index), "metrics": metrics,
        "config": weights or {}}, folder / "metrics.json")
    write_json({"settings": plan.settings, "row": row}, folder / DONE_MARKER)
    return row


def summary_row(source: ImageSource, corruption: str, metrics: dict[str, dict[str, float]]) -> dict:
    row: dict[str, Any] = {"index": source.index, "name": source.name, "source": source.origin,
                           "corruption": corruption}
    for method, entry in metrics.items():
        for key, value in entry.items():
            row[f"{method}_{key}"] = value
    return row


def _batches(pending: Sequence[ImageSource], plan: DatasetPlan) -> list[list[ImageSource]]:
    """Consecutive images with the same corruption, at most ``batch_size`` per batch."""
    groups: dict[str, list[ImageSource]] = {}
    for s in pending:
        groups.setdefault(plan.corruption_label(s.index), []).append(s)
    batches = []
    for members in groups.values():
        for start in range(0, len(members), plan.batch_size):
            batches.append(members[start:start + plan.batch_size])
    return sorted(batches, key=lambda b: b[0].index)


def reconstruct_dataset(sources: Sequence[ImageSource], plan: DatasetPlan, out_dir: str | Path,
                        ctx: DistributedContext | None = None, resume: bool = False, overwrite: bool = False,
                        progress: bool = True, announce: bool = False) -> list[dict] | None:
    """Reconstruct every image of ``sources`` into ``out_dir/<name>/``; rank 0 writes the summary
    and returns its rows (in data-set order), the other ranks return None.

    Images already finished with the same settings are skipped with ``resume`` (refused without
    ``resume`` or ``overwrite``). With a process group the batches are dealt over the ranks.
    ``announce``: print how many images --resume skips and, per image, what was done to prepare
    it.  A single process interrupted by Ctrl-C writes the summary of the finished images and
    raises ``Interrupted`` (a ``KeyboardInterrupt``) with their count.
    """
    ctx = DistributedContext() if ctx is None else ctx
    out = Path(out_dir)
    if plan.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {plan.batch_size}")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError("two images share an output folder name")
    done: list[str] = []
    problem = None
    if ctx.is_main and not overwrite:
        try:
            done = [s.name for s in sources if is_done(out / s.name, plan.settings)]
        except ValueError as err:
            problem = str(err)
        if done and not resume:
            problem = (f"{out} already holds finished results for {len(done)} of these images "
                       f"(e.g. {done[0]}); pass --resume to skip them, or choose another --out")
    # rank 0 decides, so that every rank shards the same list (and every rank stops on a problem)
    done, problem = broadcast_object((done, problem), ctx)
    if problem:
        raise ValueError(problem)
    finished = set(done)
    if announce and resume:
        print(f"--resume: skipping {len(finished)} of {len(sources)} images already finished in {out}")
    pending = [s for s in sources if s.name not in finished]
    mine = shard(_batches(pending, plan), ctx)
    if mine:  # fill the caches (the prior's latent statistics) so that per-image times are per image

        first = mine[0][0]
        weights = weights_report(plan.build_model(plan.corruption_for(first.index), load_source(first, plan)[1]))
    rows: list[dict] = []
    bar = tqdm(total=sum(len(b) for b in mine), disable=not (progress and ctx.is_main), unit="image",
               desc="images" if ctx.world_size == 1 else f"images (rank 0 of {ctx.world_size})")
    start = time.perf_counter()
    try:
        for batch in mine:
            loaded = [load_source(s, plan) for s in batch]
            if announce:
                for s, (_, _, notes) in zip(batch, loaded):
                    if notes:
                        tqdm.write(f"image {s.origin}: " + "; ".join(notes))
            observations = torch.cat([obs for _, obs, _ in loaded])
            model = plan.build_model(plan.corruption_for(batch[0].index), observations)
            outputs = run_methods(model, plan.methods, plan.options, [image_seed(plan.seed, s.index) for s in batch])
            for s, (truth, obs, _), result in zip(batch, loaded, outputs):
                rows.append(save_image_outputs(out / s.name, s, plan, truth, obs, result, weights))
                bar.update(1)
    except BaseException as err:
        if not ctx.initialized:
            # a single process writes the summary of what is finished even when interrupted
            finished_rows = collect_rows(sources, out, plan.settings)
            write_summary(finished_rows, out, complete=False)
            if isinstance(err, KeyboardInterrupt) and not isinstance(err, Interrupted):
                raise Interrupted(len(finished_rows), len(sources)) from None
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    gathered = gather_objects((rows, seconds, torch.get_num_threads()), ctx)
    if not ctx.is_main:
        return None
    new_rows = [r for part, _, _ in gathered for r in part]
    wall = max(sec for _, sec, _ in gathered)
    run = {"processes": ctx.world_size, "threads_per_process": [t for _, _, t in gathered], "device": ctx.device,
           "images_this_run": len(new_rows), "wall_seconds": wall,
           "images_per_minute": 60 * len(new_rows) / wall if new_rows and wall > 0 else None}
    all_rows = collect_rows(sources, out, plan.settings, extra=new_rows)
    write_summary(all_rows, out, complete=len(all_rows) == len(sources), run=run)
    return all_rows


def collect_rows(sources: Sequence[ImageSource], out: Path, settings: dict,
                 extra: Iterable[dict] = ()) -> list[dict]:
    """Summary rows of the finished images of ``sources``, in data-set order: from ``extra``
    (rows gathered from the ranks) or else from the ``done.json`` files in ``out``."""
    by_name = {r["name"]: r for r in extra}
    rows = []
    for s in sources:
        row = by_name.get(s.name)
        if row is None:
            marker = out / s.name / DONE_MARKER
            if marker.is_file():
                data = json.loads(marker.read_text())
                if data.get("settings") == settings:
                    row = data["row"]
        if row is not None:
            rows.append(row)
    return rows


def _aggregate(rows: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Mean, sample std and count of every numeric column over the rows."""
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if key != "index" and isinstance(value, (int, float)) and not isinstance(value, bool):
                columns.setdefault(key, []).append(float(value))
    out = {}
    for key, values in columns.items():
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        out[key] = {"mean": float(v.mean()) if len(v) else float("nan"),
                    "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "count": int(len(v))}
    return out


def write_summary(rows: Sequence[dict], out: Path, complete: bool = True, run: dict | None = None) -> tuple[Path, Path]:
    """``summary.csv`` (one row per image) and ``summary.json`` (rows, mean / std per column,
    ``complete``: every image finished; ``run``: processes, threads and the wall time of the
    reconstruction loop of this invocation, start-up excluded), both written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    keys = {k for row in rows for k in row}
    columns = [k for k in SUMMARY_LEADING_COLUMNS if k in keys] + sorted(keys - set(SUMMARY_LEADING_COLUMNS))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()})
    csv_path, json_path = out / "summary.csv", out / "summary.json"
    _atomic_write_text(csv_path, buf.getvalue())
    write_json({"complete": complete, "num_images": len(rows), "images": list(rows), "aggregate": _aggregate(rows),
                "run": run or {}}, json_path)
    return csv_path, json_path
