"""The command-line side of data-set runs: ``brgm reconstruct`` on several images, a folder, a
glob or the bundled test images, and ``brgm evaluate``, in one process or under ``torchrun``.

    brgm reconstruct scans/ --task super-resolution --batch-size 8 --out recon
    brgm reconstruct --bundled-test-images --task inpainting --mask-id 3 --method map,vi
    torchrun --nproc-per-node 2 -m brgm_pyro reconstruct scans/ --task super-resolution
"""

from __future__ import annotations

from pathlib import Path

from dataclasses import replace

import numpy as np
import torch

from ..functional import image_shape
from .cli_args import corruption_from_settings, image_preparation, load_generator_and_features, model_from_settings
from ..corruptions import NUM_STANDARD_MASKS, make_corruption, standard_mask_names
from ..inference import MethodOptions
from .dataset_run import DatasetPlan, Interrupted, load_source, reconstruct_dataset
from .distributed import DistributedContext, configure_threads, init_distributed, shutdown
from .evaluation import evaluate, write_tables
from .settings import Settings, interval_factors_for, interval_scale_for


def _run_identity(settings: Settings, corruption: str, methods: list[str], samples: int,
                  interval_scale: float = 1.0, interval_factors: dict[float, float] | None = None) -> dict:
    """What identifies a run's results in each image's done.json."""
    return {"task": settings.task, "corruption": corruption, "methods": methods, "steps": settings.steps,
            "lr": settings.lr, "samples": samples, "mean_draws": settings.mean_draws, "seed": settings.seed,
            "generator": str(settings.generator),
            "features": settings.features, "observed": settings.observed,
            "overrides": {k: v for k, v in settings.weights.items() if v is not None},
            "learn_noise": settings.learn_noise, "blind": sorted(settings.blind),
            **({"interval_scale": interval_scale} if interval_scale != 1.0 else {}),
            **({"interval_factors": {f"{a:g}": f for a, f in interval_factors.items()}} if interval_factors else {})}


def _start(settings: Settings) -> DistributedContext:
    ctx = init_distributed(settings.device)
    configure_threads(settings.threads, ctx)  # this rank's share of the cores
    return ctx


def _load(settings: Settings, ctx: DistributedContext):
    """The generator and feature network on this rank's device, and the torch threads the run uses
    (the thread policy of ``load_generator_and_features`` may lower the rank's share)."""
    generator, features = load_generator_and_features(replace(settings, device=ctx.device))
    return generator, features, torch.get_num_threads()


def _run(sources, plan: DatasetPlan, out: Path, ctx: DistributedContext, settings: Settings) -> list[dict] | None:
    """``reconstruct_dataset`` with the command line's words: how many images --resume skips, and
    on Ctrl-C one line with what finished and the exact command that resumes."""
    try:
        return reconstruct_dataset(sources, plan, out, ctx, resume=settings.resume, overwrite=settings.overwrite,
                                   progress=settings.progress, announce=ctx.is_main)
    except Interrupted as stop:
        raise KeyboardInterrupt(f"{stop.finished} of {stop.total} images finished (summary of those: "
                                f"{out / 'summary.csv'}); resume with: {settings.resume_command()}") from None


def _report(rows: list[dict], methods: list[str], out: Path, total: int) -> None:
    print(f"{len(rows)} of {total} images finished; per-image outputs in {out}/<name>/, "
          f"summary: {out / 'summary.csv'} and {out / 'summary.json'}")
    for method in methods:
        values = [r[f"{method}_rmse"] for r in rows if isinstance(r.get(f"{method}_rmse"), (int, float))]
        if values:
            v = np.asarray(values)
            print(f"  {method}: RMSE {v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.2f} (0-255 scale)")


def reconstruct_command(settings: Settings) -> int:
    """``brgm reconstruct`` on a data set (``Settings.dataset``)."""
    methods = list(settings.methods)
    sources = list(settings.sources)
    ctx = _start(settings)
    try:
        generator, features, threads = _load(settings, ctx)
        shape = image_shape(generator)
        corruption = corruption_from_settings(settings, generator)
        metadata = getattr(generator, "metadata", None)
        scale = interval_scale_for(settings, metadata, corruption)
        factors = interval_factors_for(settings, metadata, corruption)
        plan = DatasetPlan(
            task=settings.task, corruption_for=lambda index: corruption, methods=methods, image_shape=shape,
            build_model=lambda op, obs: model_from_settings(settings, generator, op, obs, features),
            options=MethodOptions(steps=settings.steps, lr=settings.lr, samples=settings.samples,
                                  mean_draws=settings.mean_draws, interval_scale=scale),
            seed=settings.seed, batch_size=settings.batch_size, observed=settings.observed,
            center_crop=settings.center_crop, preparation=image_preparation(generator),
            interval_factors=factors,
            settings=_run_identity(settings, corruption.describe(), methods, settings.samples, scale, factors))
        out = settings.out
        if ctx.is_main:
            print(f"{len(sources)} images, {ctx.world_size} process(es), {threads} thread(s) each, device {ctx.device}")
        rows = _run(sources, plan, out, ctx, settings)
        if ctx.is_main and rows is not None:
            _report(rows, methods, out, len(sources))
    except BaseException:
        shutdown(ctx, wait_for_all=False)
        raise
    shutdown(ctx)
    return 0


def evaluate_command(settings: Settings) -> int:
    """``brgm evaluate``: BRGM (MAP) through the data-set runner (per-image outputs in
    OUT/<task>/, resumable, sharded under torchrun), then rank 0 adds the baselines and tables."""
    sources = list(settings.sources)
    ctx = _start(settings)
    try:
        generator, features, threads = _load(settings, ctx)
        shape = image_shape(generator)
        factor = settings.factor
        n_masks = NUM_STANDARD_MASKS
        if settings.task == "super-resolution":
            op = make_corruption("super-resolution", shape[-1], factor=factor, kernel=settings.kernel)
            corruption_for, describe = (lambda index: op), op.describe()
        else:
            ops = [make_corruption("inpainting", shape[-1], mask_id=m) for m in range(n_masks)]
            corruption_for, describe = (lambda index: ops[index % n_masks]), f"standard mask (image index % {n_masks})"
            names = standard_mask_names()

        def build_model(corruption, observations):
            return model_from_settings(settings, generator, corruption, observations, features)

        plan = DatasetPlan(
            task=settings.task, corruption_for=corruption_for, methods=["map"], image_shape=shape,
            build_model=build_model, options=MethodOptions(steps=settings.steps, lr=settings.lr, samples=0),
            seed=settings.seed,
            batch_size=settings.batch_size, center_crop=settings.center_crop,
            preparation=image_preparation(generator),
            settings=_run_identity(settings, describe, ["map"], 0),
            label_for=None if settings.task == "super-resolution" else
            (lambda index: f"in-painting, standard mask {index % n_masks} ({names[index % n_masks]})"))
        out = settings.out / settings.task
        if ctx.is_main:
            print(f"{len(sources)} images, {ctx.world_size} process(es), {threads} thread(s) each, device {ctx.device}")
        rows = _run(sources, plan, out, ctx, settings)
        if ctx.is_main and rows is not None:
            _write_evaluation(settings, generator, features, build_model, sources, plan, out, factor)
    except BaseException:
        shutdown(ctx, wait_for_all=False)
        raise
    shutdown(ctx)
    return 0


def _write_evaluation(settings: Settings, generator, features, build_model, sources, plan: DatasetPlan, out: Path,
                      factor: int) -> None:
    """Rank 0, after the data-set run: the baselines on the same images and the tables."""
    truths = torch.cat([load_source(s, plan)[0] for s in sources])
    recon = torch.cat([torch.from_numpy(np.load(out / s.name / "map.npy", allow_pickle=False))[None]
                       for s in sources])
    table = evaluate(generator, truths.to(generator.device), settings.task, build_model, features,
                     factor=factor, kernel=settings.kernel, steps=settings.steps, lr=settings.lr,
                     batch_size=settings.batch_size, progress=settings.progress,
                     lpips_net=None if settings.no_lpips else "alex", reconstructions=recon)
    md, csv_path = write_tables(table, settings.out)
    print(md.read_text())
    print(f"written: {md} and {csv_path}; per-image outputs and summary in {out}")
