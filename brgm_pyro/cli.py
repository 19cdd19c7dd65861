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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brgm", description="Bayesian image reconstruction with deep generative priors (BRGM)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("info", help="print versions and whether a GPU is present")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
