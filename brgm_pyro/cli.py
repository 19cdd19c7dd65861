"""The ``brgm`` command line."""

from __future__ import annotations

import argparse
import platform
import sys
from typing import Sequence


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    import brgm_pyro

    print(f"brgm-pyro {brgm_pyro.__version__}")
    print(f"python    {platform.python_version()}")
    print(f"torch     {torch.__version__}")
    for name in ("pyro", "arviz", "lpips", "numpy"):
        try:
            module = __import__(name)
            print(f"{name:<9} {getattr(module, '__version__', '?')}")
        except ImportError:  # pragma: no cover - reported, not fatal
            print(f"{name:<9} not installed")
    if torch.cuda.is_available():
        print(f"device    cuda ({torch.cuda.get_device_name(0)})")
    else:
        print("device    cpu (no GPU found)")
    return 0


def _cmd_train_generator(args: argparse.Namespace) -> int:
    from .training.trainer import TrainingConfig, export_generator, train_generator

    config = TrainingConfig(
        data=args.data, out_dir=args.out, resolution=args.resolution, channels=args.channels,
        z_dim=args.z_dim, w_dim=args.w_dim, mapping_layers=args.mapping_layers,
        channel_base=args.channel_base, channel_max=args.channel_max, batch_size=args.batch_size,
        iterations=args.iterations, max_minutes=args.max_minutes, lr=args.lr, r1_gamma=args.r1_gamma,
        seed=args.seed, snapshot_every=args.snapshot_every, device=args.device,
    )
    state = train_generator(config, resume=not args.no_resume, progress=not args.no_progress)
    print(f"trained {state.iteration} iterations ({state.images_seen} images) in {state.wall_seconds / 60:.1f} min")
    if args.export:
        export_generator(f"{args.out}/checkpoint.pt", args.export)
        print(f"EMA generator written to {args.export}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brgm", description="Bayesian image reconstruction with deep generative priors (BRGM)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("info", help="print versions and whether a GPU is present")
    p.set_defaults(func=_cmd_info)

    from .training.data import FASHION_MNIST_DIR

    p = sub.add_parser(
        "train-generator",
        help="train a StyleGAN2 generator on IDX files or a folder of images",
        description="Train a StyleGAN2 generator (non-saturating loss, lazy R1, style mixing, EMA). "
        "Resumes from OUT/checkpoint.pt when it exists. The defaults reproduce the bundled "
        "fashion-mnist-32 model.",
    )
    p.add_argument("--data", default=str(FASHION_MNIST_DIR), help="IDX folder or image folder (default: %(default)s)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, sample grids, log")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--z-dim", type=int, default=64)
    p.add_argument("--w-dim", type=int, default=64)
    p.add_argument("--mapping-layers", type=int, default=2)
    p.add_argument("--channel-base", type=int, default=2048)
    p.add_argument("--channel-max", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--iterations", type=int, default=20_000)
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this much wall time")
    p.add_argument("--lr", type=float, default=0.0025)
    p.add_argument("--r1-gamma", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snapshot-every", type=int, default=500)
    p.add_argument("--device", default="cuda" if _cuda_available() else "cpu")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--export", help="also write the EMA generator to this .pt file (project format)")
    p.set_defaults(func=_cmd_train_generator)
    return parser


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
