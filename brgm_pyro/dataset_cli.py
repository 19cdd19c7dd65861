"""The command-line side of data-set runs: ``brgm reconstruct`` on several images, a folder, a
glob or the bundled test images, and ``brgm evaluate``, in one process or under ``torchrun``.

    brgm reconstruct scans/ --task super-resolution --batch-size 8 --out recon
    brgm reconstruct --bundled-test-images --task inpainting --mask-id 3 --method map,vi
    torchrun --nproc-per-node 2 -m brgm_pyro.cli reconstruct scans/ --task super-resolution
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from .dataset_run import (DatasetPlan, ImageSource, _is_glob, bundled_test_sources, collect_images, load_source,
                          reconstruct_dataset)
from .distributed import DistributedContext, configure_threads, init_distributed, shutdown
from .functional import image_shape


def add_dataset_options(p: argparse.ArgumentParser, evaluate: bool = False) -> None:
    """--resume and --threads (and for reconstruct: --batch-size, --num-images, --bundled-test-images)."""
    g = p.add_argument_group("data sets (several images, a folder, a glob; also under torchrun)")
    if not evaluate:
        g.add_argument("--bundled-test-images", action="store_true",
                       help="reconstruct the 100 bundled Fashion-MNIST test images (one subfolder each)")
        g.add_argument("--num-images", type=int, default=None, help="only the first N images of the data set")
        g.add_argument("--batch-size", type=int, default=8,
                       help="images optimised together by MAP (default: %(default)s; VI and MCMC run one at a time)")
    g.add_argument("--resume", action="store_true",
                   help="skip images already finished in --out (their done.json exists)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch threads per process (default: all cores for one process; under torchrun "
                        "OMP_NUM_THREADS, else cores / processes per node)")


def is_dataset_run(args: argparse.Namespace) -> bool:
    """True unless ``brgm reconstruct`` was given exactly one image file in a single process
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


def _settings(args: argparse.Namespace, task: str, corruption: str, methods: list[str], overrides: dict) -> dict:
    """What identifies a run's results in each image's done.json."""
    return {"task": task, "corruption": corruption, "methods": methods, "steps": args.steps, "lr": args.lr,
            "samples": getattr(args, "samples", 0), "seed": args.seed, "generator": str(args.generator),
            "features": args.features, "observed": bool(getattr(args, "observed", False)),
            "overrides": {k: v for k, v in overrides.items() if v is not None},
            "learn_noise": bool(getattr(args, "learn_noise", False)),
            "blind": sorted(getattr(args, "blind", None) or [])}


def _start(args: argparse.Namespace) -> tuple[DistributedContext, int]:
    ctx = init_distributed(args.device)
    threads = configure_threads(args.threads, ctx)
    args.device = ctx.device
    return ctx, threads


def _report(rows: list[dict], methods: list[str], out: Path, total: int) -> None:
    print(f"{len(rows)} of {total} images finished; per-image outputs in {out}/<name>/, "
          f"summary: {out / 'summary.csv'} and {out / 'summary.json'}")
    for method in methods:
        values = [r[f"{method}_rmse"] for r in rows if isinstance(r.get(f"{method}_rmse"), (int, float))]
        if values:
            v = np.asarray(values)
            print(f"  {method}: RMSE {v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.2f} (0-255 scale)")


def reconstruct_command(args: argparse.Namespace) -> int:
    """``brgm reconstruct`` on a data set (see ``is_dataset_run``)."""
    from .cli import _blind_model, _load, _overrides
    from .reconstruction import METHODS, build_problem, make_task

    if args.bundled_test_images and args.image:
        raise ValueError("give either image paths or --bundled-test-images, not both")
    if args.num_images is not None and args.num_images < 1:
        raise ValueError(f"--num-images must be >= 1, got {args.num_images}")
    if getattr(args, "save_inference_data", False):
        raise ValueError("--save-inference-data is for one image; leave it out for a data set")
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    sources: list[ImageSource] = (bundled_test_sources() if args.bundled_test_images
                                  else collect_images(args.image))[:args.num_images]
    ctx, threads = _start(args)
    try:
        generator, features = _load(args)
        shape = image_shape(generator)
        corruption = make_task(args.task, generator.img_resolution, factor=args.factor, mask=args.mask,
                               mask_id=args.mask_id, kernel=args.kernel)
        overrides = _overrides(args)
        plan = DatasetPlan(
            task=args.task, corruption_for=lambda index: corruption, methods=methods, image_shape=shape,
            build_model=lambda op, obs: _blind_model(
                build_problem(generator, op, obs.to(generator.device), features, **overrides), args),
            steps=args.steps, lr=args.lr, samples=args.samples, seed=args.seed, batch_size=args.batch_size,
            observed=args.observed, center_crop=bool(getattr(args, "center_crop", False)),
            settings=_settings(args, args.task, corruption.describe(), methods, overrides))
        out = Path(args.out)
        if ctx.is_main:
            print(f"{len(sources)} images, {ctx.world_size} process(es), {threads} thread(s) each, device {ctx.device}")
        rows = reconstruct_dataset(sources, plan, out, ctx, resume=args.resume,
                                   overwrite=bool(getattr(args, "overwrite", False)), progress=not args.no_progress)
        if ctx.is_main and rows is not None:
            _report(rows, methods, out, len(sources))
    finally:
        shutdown(ctx)
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    """``brgm evaluate``: BRGM (MAP) through the data-set runner (per-image outputs in
    OUT/<task>/, resumable, sharded under torchrun), then rank 0 adds the baselines and tables."""
    from .cli import _load, _overrides
    from .corruptions import NUM_STANDARD_MASKS, Inpainting, SuperResolution, standard_mask, standard_mask_names
    from .evaluation import evaluate, write_tables
    from .reconstruction import build_problem

    if args.num_images is not None and args.num_images < 1:
        raise ValueError(f"--num-images must be >= 1, got {args.num_images}")
    sources = (collect_images([args.images]) if args.images else bundled_test_sources())[:args.num_images]
    ctx, threads = _start(args)
    try:
        generator, features = _load(args)
        shape = image_shape(generator)
        factor = args.factor or 4
        if args.task == "super-resolution":
            op = SuperResolution(factor, kernel=args.kernel)
            corruption_for, describe = (lambda index: op), op.describe()
        else:
            ops = [Inpainting(standard_mask(m, shape[-1])) for m in range(NUM_STANDARD_MASKS)]
            corruption_for, describe = (lambda index: ops[index % len(ops)]), "standard mask (image index % 7)"
            names = standard_mask_names()
        overrides = _overrides(args)

        def build_model(corruption, observations):
            return build_problem(generator, corruption, observations.to(generator.device), features, **overrides)

        plan = DatasetPlan(
            task=args.task, corruption_for=corruption_for, methods=["map"], image_shape=shape,
            build_model=build_model, steps=args.steps, lr=args.lr, samples=0, seed=args.seed,
            batch_size=args.batch_size, center_crop=bool(getattr(args, "center_crop", True)),
            settings=_settings(args, args.task, describe, ["map"], overrides),
            label_for=None if args.task == "super-resolution" else
            (lambda index: f"in-painting, standard mask {index % len(ops)} ({names[index % len(ops)]})"))
        out = Path(args.out) / args.task
        if ctx.is_main:
            print(f"{len(sources)} images, {ctx.world_size} process(es), {threads} thread(s) each, device {ctx.device}")
        rows = reconstruct_dataset(sources, plan, out, ctx, resume=args.resume,
                                   overwrite=bool(getattr(args, "overwrite", False)), progress=not args.no_progress)
        if not ctx.is_main or rows is None:
            return 0
        truths = torch.cat([load_source(s, plan)[0] for s in sources])
        recon = torch.cat([torch.from_numpy(np.load(out / s.name / "map.npy", allow_pickle=False))[None]
                           for s in sources])
        table = evaluate(generator, truths.to(generator.device), args.task, build_model, features,
                         factor=factor, kernel=args.kernel, steps=args.steps, lr=args.lr,
                         batch_size=args.batch_size, progress=not args.no_progress,
                         lpips_net=None if args.no_lpips else "alex", reconstructions=recon)
        md, csv_path = write_tables(table, args.out)
        print(md.read_text())
        print(f"written: {md} and {csv_path}; per-image outputs and summary in {out}")
    finally:
        shutdown(ctx)
    return 0
