"""What ``brgm demo`` costs, whole and per method, with the recommended posterior's current or cheaper settings.

Runs the demo (``brgm_pyro.app.cli.main(["demo", ...])``, default threads: one for the bundled
generator) in this process and prints its wall time and this process's CPU time (user + sys).
With one thread, the CPU time is about the wall time the demo takes on a quiet machine, which
makes it a usable estimate on a shared one (it still runs a bit slower than quiet: caches and
turbo are shared).  ``--map-steps`` / ``--vi-steps`` / ``--starts`` replace the settings of the
``fullrank`` method's multi-start MAP and full-rank VI (the demo's own MAP keeps ``--steps``).

    python benchmarks/demo_cost.py                                   # current settings
    python benchmarks/demo_cost.py --map-steps 250 --vi-steps 100    # a cheaper recommended posterior
    python benchmarks/demo_cost.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children (the demo's second row)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--starts", type=int, default=None, help="MAP starts of the fullrank method (default: its own, 8)")
    p.add_argument("--map-steps", type=int, default=None, help="steps of each start (default: the demo's --steps)")
    p.add_argument("--vi-steps", type=int, default=None, help="full-rank VI steps (default: its own, 200)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--processes", type=int, default=None,
                   help="the demo's --processes (default: its own choice; 1 whenever a fullrank setting is replaced, "
                        "since the replacement is made in this process only)")
    args = p.parse_args(argv)
    import brgm_pyro.app  # noqa: F401 - the application's thread setup, before torch loads
    import torch

    from brgm_pyro.app import cli
    from brgm_pyro.inference import recommended
    from brgm_pyro.inference import multistart

    original = multistart.fit_multistart_fullrank
    options = {k: v for k, v in (("num_steps", args.map_steps), ("vi_steps", args.vi_steps),
                                 ("num_starts", args.starts)) if v is not None}

    def fit(model, *a, **kw):
        kw.update(options)
        return original(model, *a, **kw)

    recommended.fit_multistart_fullrank = fit
    with tempfile.TemporaryDirectory() as out:
        argv_demo = ["demo", "--out", out, "--overwrite", "--no-progress", "--device", args.device]
        if args.threads is not None:
            argv_demo += ["--threads", str(args.threads)]
        processes = 1 if options else args.processes
        if processes is not None:
            argv_demo += ["--processes", str(processes)]
        wall, cpu = time.perf_counter(), cpu_seconds()
        code = cli.main(argv_demo)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    load = os.getloadavg()
    described = options or "the recommended defaults (8 starts, the best 3 on after a tenth of 500 steps, VI 100)"
    print(f"# brgm demo; fullrank settings {described}; "
          f"torch threads {torch.get_num_threads()}; device {args.device}; torch {torch.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} cpus; demo processes {processes or 'default'}; "
          f"load average after {load[0]:.2f}")
    print(f"exit {code}; wall {wall:.1f} s; CPU (user + sys) {cpu:.1f} s")
    for name, entry in metrics.items():
        seconds = {m: round(v.get("seconds", float("nan")), 1) for m, v in entry.get("metrics", {}).items()}
        rmse = {m: round(v.get("rmse", float("nan")), 1) for m, v in entry.get("metrics", {}).items()}
        print(f"{name}: seconds {seconds}; RMSE {rmse}")
    return code


if __name__ == "__main__":
    sys.exit(main())
