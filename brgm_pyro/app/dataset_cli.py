"""The command-line side of data-set runs: ``brgm reconstruct`` on several images, a folder, a
glob or the bundled test images, and ``brgm evaluate``, in one process or under ``torchrun``.

    brgm reconstruct scans/ --task super-resolution --batch-size 8 --out recon
    brgm reconstruct --bundled-test-images --task inpainting --mask-id 3 --method map,vi
    torchrun --nproc-per-node 2 -m brgm_pyro reconstruct scans/ --task super-resolution
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..functional import image_shape
from .cli_args import (  # noqa: F401 - is_dataset_run: re-exported (it lived here)
    corruption_from_args, is_dataset_run, load_generator_and_features, method_list, model_from_args,
    weight_overrides_from_args,
)
from ..corruptions import NUM_STANDARD_MASKS, make_corruption, standard_mask_names
from .dataset_run import (
    DatasetPlan, ImageSource, bundled_test_sources, collect_images, load_source, reconstruct_dataset,
)
from .distributed import DistributedContext, configure_threads, init_distributed, shutdown
from .evaluation import evaluate
from .report import write_tables


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
                   help="torch threads per process (default: OMP_NUM_THREADS, else one for a small generator "
                        "such as the bundled one, else the process's share of the cores; see docs/speed.md)")


def _settings(args: argparse.Namespace, task: str, corruption: str, methods: list[str], overrides: dict) -> dict:
    """What identifies a run's results in each image's done.json."""
    return {"task": task, "corruption": corruption, "methods": methods, "steps": args.steps, "lr": args.lr,
            "samples": getattr(args, "samples", 0), "seed": args.seed, "generator": str(args.generator),
            "features": args.features, "observed": bool(getattr(args, "observed", False)),
            "overrides": {k: v for k, v in overrides.items() if v is not None},
            "learn_noise": bool(getattr(args, "learn_noise", False)),
            "blind": sorted(getattr(args, "blind", None) or []),
            **({"interval_scale": args.interval_scale} if getattr(args, "interval_scale", 1.0) != 1.0 else {})}


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
    if args.bundled_test_images and args.image:
        raise ValueError("give either image paths or --bundled-test-images, not both")
    if args.num_images is not None and args.num_images < 1:
        raise ValueError(f"--num-images must be >= 1, got {args.num_images}")
    if getattr(args, "save_inference_data", False):
        raise ValueError("--save-inference-data is for one image; leave it out for a data set")
    methods = method_list(args.method)
    sources: list[ImageSource] = (bundled_test_sources() if args.bundled_test_images
                                  else collect_images(args.image))[:args.num_images]
    ctx, threads = _start(args)
    try:
        generator, features = load_generator_and_features(args)
        threads = torch.get_num_threads()  # the thread policy may have lowered it (brgm_pyro.threads)
        shape = image_shape(generator)
        corruption = corruption_from_args(args, generator.img_resolution)
        overrides = weight_overrides_from_args(args)
        plan = DatasetPlan(
            task=args.task, corruption_for=lambda index: corruption, methods=methods, image_shape=shape,
            build_model=lambda op, obs: model_from_args(args, generator, op, obs, features),
            steps=args.steps, lr=args.lr, samples=args.samples, seed=args.seed, batch_size=args.batch_size,
            observed=args.observed, center_crop=bool(getattr(args, "center_crop", False)),
            interval_scale=float(getattr(args, "interval_scale", 1.0)),
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
    if args.num_images is not None and args.num_images < 1:
        raise ValueError(f"--num-images must be >= 1, got {args.num_images}")
    sources = (collect_images([args.images]) if args.images else bundled_test_sources())[:args.num_images]
    ctx, threads = _start(args)
    try:
        generator, features = load_generator_and_features(args)
        threads = torch.get_num_threads()  # the thread policy may have lowered it (brgm_pyro.threads)
        shape = image_shape(generator)
        factor = args.factor or 4
        n_masks = NUM_STANDARD_MASKS
        if args.task == "super-resolution":
            op = make_corruption("super-resolution", shape[-1], factor=factor, kernel=args.kernel)
            corruption_for, describe = (lambda index: op), op.describe()
        else:
            ops = [make_corruption("inpainting", shape[-1], mask_id=m) for m in range(n_masks)]
            corruption_for, describe = (lambda index: ops[index % n_masks]), f"standard mask (image index % {n_masks})"
            names = standard_mask_names()
        overrides = weight_overrides_from_args(args)

        def build_model(corruption, observations):
            return model_from_args(args, generator, corruption, observations, features)

        plan = DatasetPlan(
            task=args.task, corruption_for=corruption_for, methods=["map"], image_shape=shape,
            build_model=build_model, steps=args.steps, lr=args.lr, samples=0, seed=args.seed,
            batch_size=args.batch_size, center_crop=bool(getattr(args, "center_crop", True)),
            settings=_settings(args, args.task, describe, ["map"], overrides),
            label_for=None if args.task == "super-resolution" else
            (lambda index: f"in-painting, standard mask {index % n_masks} ({names[index % n_masks]})"))
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
