"""Continue a committed training run for a while and bring its results back into the repository.

    OMP_NUM_THREADS=1 nice python benchmarks/resume_training.py \\
        --run benchmarks/results/training/fashion-mnist-32-v2 --minutes 120            # CPU, one core
    python benchmarks/resume_training.py --run ... --minutes 8 --device cuda \\
        --data .data/fashion-mnist --copy-to "$OUT"                                     # a lent GPU

A committed run folder holds ``checkpoint.pt``, ``training_config.json`` (the options that define
the run), ``log.jsonl`` and a few sample grids.  This script

1. copies the committed checkpoint into the work folder (``--work``, default ``runs/<run name>``)
   unless the work folder already holds a later one (a run continued earlier in this session); a
   folder with only ``training_config.json`` is a new run, started from scratch (in an empty work folder);
2. trains with the run's own options (``brgm_pyro.training.trainer.TrainingConfig`` read from its
   ``training_config.json``; only the session fields -- data, folder, minutes, device, snapshot
   interval -- change, which ``check_resume_config`` enforces) for ``--minutes``;
3. copies the new checkpoint back into the run folder, merges the work folder's ``log.jsonl`` into
   the committed one (one line per logged iteration, none past the checkpoint's iteration: a
   stopped run's last lines may lie beyond its last checkpoint) and keeps the newest sample grid;
4. with ``--copy-to``, also copies those files there (a device machine's ``$OUT``).

It imports only the training code (torch, numpy, Pillow, tqdm), so it runs where brgm-pyro's other
dependencies are not installed.  The Frechet distance is measured separately
(``benchmarks/training_fd.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])


def checkpoint_iteration(path: Path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True)["iteration"]) if path.is_file() else -1


def merge_logs(committed: Path, new: Path, last_iteration: int) -> int:
    """Write into ``committed`` the union of both logs' lines (by iteration, the newer line wins),
    only iterations <= ``last_iteration``, in order; returns the number of lines."""
    lines: dict[int, str] = {}
    for path in (committed, new):
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    lines[int(json.loads(line)["iteration"])] = line
    kept = [lines[i] for i in sorted(lines) if i <= last_iteration]
    committed.write_text("\n".join(kept) + "\n")
    return len(kept)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True,
                    help="committed run folder (checkpoint.pt, training_config.json)")
    ap.add_argument("--work", type=Path, default=None, help="where to train (default: runs/<run folder name>)")
    ap.add_argument("--minutes", type=float, required=True, help="training time of this session")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", default=None, help="training data folder (default: the run's own)")
    ap.add_argument("--snapshot-every", type=int, default=None, help="default: the run's own")
    ap.add_argument("--copy-to", type=Path, default=None, help="also copy the results here (e.g. $OUT)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    from brgm_pyro.training.trainer import TrainingConfig, train_generator

    run, work = args.run, args.work or Path("runs") / args.run.name
    if not (run / "training_config.json").is_file():
        raise SystemExit(f"{run / 'training_config.json'} does not exist: --run must be a committed training run "
                         "folder (a new run: one that holds only its training_config.json)")
    work.mkdir(parents=True, exist_ok=True)
    if checkpoint_iteration(work / "checkpoint.pt") < checkpoint_iteration(run / "checkpoint.pt"):
        shutil.copy2(run / "checkpoint.pt", work / "checkpoint.pt")
    if not (run / "checkpoint.pt").is_file() and (work / "checkpoint.pt").is_file():
        raise SystemExit(f"{run} holds no checkpoint yet but {work} does: a new run starts in an empty work folder "
                         "(remove it, or give --work another folder)")
    saved = json.loads((run / "training_config.json").read_text())
    fields = {f.name for f in dataclasses.fields(TrainingConfig)}
    overrides = {"out_dir": str(work), "max_minutes": args.minutes, "device": args.device}
    if args.data is not None:
        overrides["data"] = args.data
    if args.snapshot_every is not None:
        overrides["snapshot_every"] = args.snapshot_every
    config = TrainingConfig(**{**{k: v for k, v in saved.items() if k in fields}, **overrides})
    state = train_generator(config, progress=not args.no_progress)

    shutil.copy2(work / "checkpoint.pt", run / "checkpoint.pt")
    lines = merge_logs(run / "log.jsonl", work / "log.jsonl", state.iteration)
    samples = sorted(work.glob("samples_*.png"))
    if samples:
        shutil.copy2(samples[-1], run / samples[-1].name)
    print(f"iteration {state.iteration} ({state.images_seen} images, {state.wall_seconds / 60:.0f} min of training "
          f"in all); {run / 'checkpoint.pt'} updated, {lines} log lines"
          + (f", {samples[-1].name} kept" if samples else ""), flush=True)
    if args.copy_to is not None:
        args.copy_to.mkdir(parents=True, exist_ok=True)
        for path in [run / "checkpoint.pt", run / "log.jsonl", *samples[-1:]]:
            shutil.copy2(path, args.copy_to / path.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
