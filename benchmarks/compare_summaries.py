"""Do two data-set runs give the same results?  Compares two ``summary.json`` files of
``brgm reconstruct`` (e.g. one process vs ``torchrun --nproc-per-node 2``), ignoring the timings
(every key ending in ``_seconds``, and the ``run`` entry: processes, threads, images per minute).

    python benchmarks/compare_summaries.py recon100-1p/summary.json recon100-2p/summary.json

Prints the number of images and numeric values compared, how many differ, and the largest
absolute difference; exits 0 when the two are identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any


def without_timings(summary: dict) -> dict:
    """The images' rows and the aggregate of a summary, without any ``*_seconds`` entry."""
    rows = [{k: v for k, v in row.items() if not k.endswith("_seconds")} for row in summary["images"]]
    aggregate = {k: v for k, v in summary["aggregate"].items() if not k.endswith("_seconds")}
    return {"images": rows, "aggregate": aggregate, "complete": summary["complete"]}


def differences(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Every leaf where ``a`` and ``b`` differ, as (path, a's value, b's value)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += differences(a.get(key), b.get(key), f"{path}/{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += differences(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [(path, a, b)]


def count_numbers(value: Any) -> int:
    if isinstance(value, dict):
        return sum(count_numbers(v) for v in value.values())
    if isinstance(value, list):
        return sum(count_numbers(v) for v in value)
    return int(isinstance(value, (int, float)) and not isinstance(value, bool))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    a, b = (without_timings(json.loads(p.read_text())) for p in (args.first, args.second))
    diff = differences(a, b)
    numeric = [abs(x - y) for _, x, y in diff if isinstance(x, (int, float)) and isinstance(y, (int, float))]
    largest = max(numeric, default=0.0)
    print(f"{len(a['images'])} vs {len(b['images'])} images, {count_numbers(a)} numbers compared; "
          f"{len(diff)} differ" + (f", largest absolute difference {largest:.3g}" if diff else " (identical)"))
    for where, x, y in diff[:10]:
        print(f"  {where}: {x} vs {y}")
    return 0 if not diff and not math.isnan(largest) else 1


if __name__ == "__main__":
    raise SystemExit(main())
