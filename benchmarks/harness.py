"""The benchmark harness: the tasks, the thread setting, the environment header and the
per-problem job runner that the scripts of ``benchmarks/`` are configurations of.

* ``TASKS``: the corruptions the calibration benchmarks run (x4 super-resolution with the
  antialiased bicubic kernel, in-painting with standard mask k), each with its sigma_pixel, and
  ``problem_model`` (the study's model of a task on a generator, built once per process).
* ``thread_env`` / ``limit_threads``: the one place that sets ``OMP_NUM_THREADS`` (and
  ``MKL_NUM_THREADS``), for this process or for a child's environment;
  ``env_without_thread_settings`` (a child's environment with none of them, nor
  ``OMP_WAIT_POLICY``) and ``apply_torch_default_threads`` (torch's own thread count) for the
  measurements of the defaults.
* ``environment`` / ``header``: machine, Python, torch, torch threads, the thread variables,
  processes at once and the date, printed above every table and stored in every job's JSON.
* ``run_jobs``: one JSON file per job (a problem x method x seed, say); a job whose file exists
  is skipped (resume), after checking that it was made with the same settings (``Job.expect``);
  ``workers`` jobs at once in a pool of spawned processes, each with ``threads`` torch threads
  set before torch is imported there; a job that raises is reported with its error and
  leaves no file, so the next run retries it.

A script becomes a configuration by importing this module (see the first lines of
``calibration.py``), building its ``Job`` list and a job function ``params -> dict`` defined at
the top level of its module, calling ``run_jobs(function, jobs, workers=args.jobs)``, and making
its table from the JSON files.  ``benchmarks/README.md`` ("Harness") has the recipe.
"""

from __future__ import annotations

import datetime
import json
import math
import multiprocessing
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
BUNDLED = "fashion-mnist-32"


# --------------------------------------------------------------------------------------- threads

def thread_env(threads: int) -> dict[str, str]:
    """The environment variables that fix a process's thread count (merge into a child's env)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return {name: str(threads) for name in THREAD_VARIABLES}


def limit_threads(threads: int = 1) -> None:
    """Run this process (and the processes it starts) with ``threads`` threads: the thread
    variables first (OpenMP reads them when torch is imported), then ``torch.set_num_threads``."""
    os.environ.update(thread_env(threads))
    import torch

    torch.set_num_threads(threads)


WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"


def env_without_thread_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (this process's by default) without the thread variables and
    ``OMP_WAIT_POLICY``: a child started with it gets torch's and the application's own choices."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k not in (*THREAD_VARIABLES, WAIT_POLICY_VARIABLE)}


def torch_default_threads() -> int:
    """The intra-op thread count torch chooses by itself: ``torch.get_num_threads()`` in a fresh
    interpreter started with ``env_without_thread_settings()`` (no variable, nothing set)."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         env=env_without_thread_settings(), capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1])


def apply_torch_default_threads() -> int:
    """Give this process's torch the thread count torch chooses by itself (``torch_default_threads``),
    whatever set it since; the environment is left alone.  For a measurement whose point is torch's
    own default (e.g. the behaviour before the application's thread policy); returns the count."""
    import torch

    threads = torch_default_threads()
    torch.set_num_threads(threads)
    return threads


# ----------------------------------------------------------------------------------- environment

def environment(processes: int = 1) -> dict[str, Any]:
    """What a measurement depends on besides its settings: machine, versions, this process's
    torch threads and thread variables, ``processes`` running at once, GPU, date (now, UTC)."""
    import torch

    return {
        "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), **{name: os.environ.get(name) for name in THREAD_VARIABLES},
        "processes": processes,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def header(title: str, env: Mapping[str, Any] | None = None) -> str:
    """``# title: ...`` -- the environment line printed above a table (``environment()`` by default)."""
    env = environment() if env is None else env
    variables = ", ".join(f"{name}={env.get(name)}" for name in THREAD_VARIABLES)
    gpu = f", GPU {env['gpu']}" if env.get("gpu") else ""
    return (f"# {title}: torch {env['torch']}, Python {env['python']}, {env['processor']}, {env['cpus']} cpus{gpu}; "
            f"{env['torch_threads']} torch thread(s) per process ({variables}), {env['processes']} process(es) "
            f"at once; {env['date']}")


def recorded_environments(results: Iterable[Mapping[str, Any]]) -> str:
    """One line on the environments stored in result files: the distinct settings that matter
    (torch, machine, threads, processes at once), the dates' range, and how many have none."""
    kinds: dict[str, int] = {}
    dates, missing = [], 0
    for result in results:
        env = result.get("environment")
        if not env:
            missing += 1
            continue
        key = (f"torch {env['torch']}, {env['processor']}, {env['cpus']} cpus, {env['torch_threads']} torch "
               f"thread(s) (OMP_NUM_THREADS={env.get('OMP_NUM_THREADS')}), {env['processes']} process(es) at once")
        kinds[key] = kinds.get(key, 0) + 1
        dates.append(env["date"])
    parts = [f"{n} run(s) with {key}" for key, n in kinds.items()]
    if dates:
        parts.append(f"dated {min(dates)} to {max(dates)}")
    if missing:
        parts.append(f"{missing} file(s) without an environment record (made before the harness)")
    return "; ".join(parts) if parts else "no results"


# ----------------------------------------------------------------------------------------- tasks

@dataclass(frozen=True)
class Task:
    """A calibration task: the corruption (``make_corruption`` keywords, ``task`` included) and the
    pixel noise of its simulated observations."""

    name: str
    corruption: Mapping[str, Any]
    sigma_pixel: float = 0.1

    def describe(self) -> str:
        """E.g. ``factor 4, kernel bicubic-antialias``."""
        return ", ".join(f"{k} {v}" for k, v in self.corruption.items() if k != "task")

    def make_corruption(self, resolution: int):
        """The operator for a generator of ``resolution`` x ``resolution`` images."""
        from brgm_pyro.corruptions import make_corruption

        return make_corruption(resolution=resolution, **self.corruption)


TASKS: dict[str, Task] = {
    "super-resolution": Task("super-resolution", {"task": "super-resolution", "factor": 4,
                                                   "kernel": "bicubic-antialias"}),
    "inpainting": Task("inpainting", {"task": "inpainting", "mask_id": 0}),
    # the other standard masks: does a fitted interval scale transfer?
    **{f"inpainting-mask{i}": Task(f"inpainting-mask{i}", {"task": "inpainting", "mask_id": i}) for i in range(1, 7)},
}


def task(name: str) -> Task:
    """``TASKS[name]``, or a ``ValueError`` naming the known tasks."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name]


def parse_tasks(text: str) -> list[str]:
    """Comma-separated task names, each checked."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ValueError("no task given")
    for name in names:
        task(name)
    return names


_CACHE: dict[Any, Any] = {}


def problem_model(name: str, *, generator: str = BUNDLED, sigma_pixel: float | None = None,
                  prior_std: str = "per-dimension"):
    """The study's model of task ``name`` on ``generator`` (``brgm_pyro.study.problem_model``;
    sigma_pixel: the task's unless given), built once per process and cached."""
    t = task(name)
    sigma = t.sigma_pixel if sigma_pixel is None else sigma_pixel
    key = (generator, name, sigma, prior_std)
    if key not in _CACHE:
        from brgm_pyro.generators import load_generator
        from brgm_pyro.study import problem_model as study_model

        if generator not in _CACHE:
            _CACHE[generator] = load_generator(generator, device="cpu")
        g = _CACHE[generator]
        _CACHE[key] = study_model(g, t.make_corruption(g.img_resolution), sigma_pixel=sigma, prior_std=prior_std)
    return _CACHE[key]


CARRIED_METADATA = ("recommended_config", "recommended_configs", "feature_network", "image_preparation")
"""What a training checkpoint's generator takes from the bundled one's metadata (``load_prior``) until
it is re-fitted: the same model (weights, feature network), so that comparisons are of the networks."""


def load_prior(name: str, device: str = "cpu"):
    """A generator by name or file (``load_generator``), or a training checkpoint's (``checkpoint.pt``
    of ``brgm train-generator``) EMA generator with the bundled generator's ``CARRIED_METADATA``."""
    import tempfile

    import torch

    from brgm_pyro.generators import load_generator
    from brgm_pyro.training.trainer import export_generator

    path = Path(name)
    if path.is_file() and path.suffix == ".pt":
        try:  # a training checkpoint is a plain state dict (as export_generator reads it)
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 -- not one: load_generator says what it is
            saved = None
        if isinstance(saved, dict) and "G_ema" in saved:
            bundled = load_generator(BUNDLED, device="cpu").metadata
            with tempfile.TemporaryDirectory() as tmp:
                exported = Path(tmp) / "generator.pt"
                export_generator(path, exported, metadata={k: bundled[k] for k in CARRIED_METADATA if k in bundled})
                return load_generator(exported, device=device)
    return load_generator(name, device=device)


def parse_range(text: str) -> list[int]:
    """Problem indices: ``"0-19"``, ``"0,3,5-7"``."""
    out: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise ValueError(f"bad index range {part!r} in {text!r} (write e.g. 0-19 or 0,3,5-7)") from None
        if first < 0 or last < first:
            raise ValueError(f"bad index range {part!r} in {text!r}: need 0 <= first <= last")
        out.extend(range(first, last + 1))
    return out


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std / sqrt(n); NaN for one value)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_se of no values")
    mean = sum(values) / n
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else math.nan
    return mean, se


# ------------------------------------------------------------------------------------------ jobs

@dataclass(frozen=True)
class Job:
    """One unit of work: its JSON-able parameters, the file its result goes to, and what an
    existing file there must agree with to count as this job finished (nested keys of its JSON)."""

    path: Path
    params: Mapping[str, Any]
    expect: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of a job: "done", "skipped" (its file existed), "failed" or "not started"
    (past the deadline); the worker's torch threads and the error text where there is one."""

    path: str
    status: str
    seconds: float = 0.0
    threads: int | None = None
    error: str | None = None


@dataclass
class RunSummary:
    """Every job's ``Outcome`` (in the jobs' order), and those of each status."""

    outcomes: list[Outcome] = field(default_factory=list)

    def _with(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def done(self) -> list[Outcome]:
        return self._with("done")

    @property
    def skipped(self) -> list[Outcome]:
        return self._with("skipped")

    @property
    def failed(self) -> list[Outcome]:
        return self._with("failed")

    @property
    def not_started(self) -> list[Outcome]:
        return self._with("not started")


def _normalised(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _differences(expected: Any, found: Any, where: str = "") -> list[str]:
    """Where ``found`` (a result's JSON) disagrees with ``expected`` (a nested subset of it)."""
    if isinstance(expected, Mapping):
        if not isinstance(found, Mapping):
            return [f"{where or 'the file'}: {found!r}, asked {expected!r}"]
        return [d for k, v in expected.items()
                for d in _differences(v, found.get(k), f"{where}.{k}" if where else str(k))]
    return [] if expected == found else [f"{where}: {found!r} there, {expected!r} asked"]


def check_existing(job: Job) -> bool:
    """True if ``job.path`` holds a finished result that agrees with ``job.expect``; raise
    ``SystemExit`` naming the differences if it holds another run's."""
    path = Path(job.path)
    if not path.is_file():
        return False
    if job.expect:
        differences = _differences(_normalised(job.expect), json.loads(path.read_text()))
        if differences:
            raise SystemExit(f"{path} was made with other settings ({'; '.join(differences)}); use another "
                             "--out, the same settings, or --force")
    return True


def write_result(path: str | Path, record: Mapping[str, Any], env: Mapping[str, Any]) -> Path:
    """``record`` with ``"environment": env`` as strict JSON, written whole or not at all."""
    if not isinstance(record, Mapping):
        raise TypeError(f"a job must return a dict (its JSON record), got {type(record).__name__}")
    if "environment" in record:
        raise ValueError("a job's record must not have an 'environment' key: the harness adds it")
    path = Path(path)
    text = json.dumps({**record, "environment": dict(env)}, indent=1, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _start_worker(threads: int) -> None:
    limit_threads(threads)


def _run_one(function: Callable[[dict], Mapping[str, Any]], job: Job, force: bool, processes: int,
             start: float, deadline: float | None) -> Outcome:
    """Run ``job`` in this process and write its JSON; errors become a "failed" outcome."""
    path = str(job.path)
    if deadline is not None and time.time() - start > deadline:  # wall clock: comparable across processes
        return Outcome(path, "not started")
    if not force and Path(path).is_file():  # finished meanwhile by another run
        return Outcome(path, "skipped")
    t0 = time.perf_counter()
    env = None
    try:
        env = environment(processes)
        record = function(dict(job.params))
        write_result(path, record, env)
    except Exception as error:  # reported to the caller with its traceback
        detail = "".join(traceback.format_exception(error)).rstrip()
        return Outcome(path, "failed", time.perf_counter() - t0, env and env["torch_threads"],
                       f"{type(error).__name__}: {error}\n{detail}")
    return Outcome(path, "done", time.perf_counter() - t0, env["torch_threads"])


def run_jobs(function: Callable[[dict], Mapping[str, Any]], jobs: Sequence[Job], *, workers: int = 1,
             threads: int = 1, force: bool = False, deadline: float | None = None,
             log: TextIO | None = None) -> RunSummary:
    """Run every job whose file does not exist yet (all with ``force``): ``function(params)``
    returns the record, written with the environment to ``job.path``.  The summary lists an
    outcome per job, in the jobs' order.

    ``workers`` 1 runs the jobs here, one after the other; more runs them in a pool of that many
    spawned processes, each started with ``threads`` threads (``limit_threads`` in the parent's
    environment, inherited by the worker before it imports torch, and again in the worker).
    ``function`` must be defined at the top level of a module (the pool pickles it by name).
    ``deadline``: start no job after that many seconds.  Failures are printed with their
    traceback and returned, never dropped; the other jobs go on.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    thread_env(threads)  # checked before anything runs
    order = {str(job.path): k for k, job in enumerate(jobs)}
    if len(order) < len(jobs):
        raise ValueError("two jobs write the same file")
    log = sys.stderr if log is None else log
    summary = RunSummary()
    todo = []
    for job in jobs:
        if not force and check_existing(job):
            summary.outcomes.append(Outcome(str(job.path), "skipped"))
        else:
            todo.append(job)
    print(f"{len(todo)} job(s) to run, {len(summary.skipped)} finished before; {workers} process(es) at once, "
          f"{threads} thread(s) each", file=log, flush=True)
    start, t0 = time.time(), time.perf_counter()

    def report(i: int, outcome: Outcome) -> None:
        summary.outcomes.append(outcome)
        if outcome.status == "done":
            print(f"[{i}/{len(todo)}] {outcome.path} ({outcome.seconds:.1f} s)", file=log, flush=True)
        elif outcome.status == "failed":
            print(f"[{i}/{len(todo)}] FAILED {outcome.path}: {outcome.error}", file=log, flush=True)

    if workers == 1:
        limit_threads(threads)
        for i, job in enumerate(todo, 1):
            report(i, _run_one(function, job, force, 1, start, deadline))
    elif todo:
        os.environ.update(thread_env(threads))  # inherited by the spawned workers before they import torch
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                 initargs=(threads,)) as pool:
            futures = {pool.submit(_run_one, function, job, force, workers, start, deadline): job for job in todo}
            for i, future in enumerate(as_completed(futures), 1):
                try:
                    outcome = future.result()
                except Exception as error:  # the worker died or the job could not be sent to it
                    outcome = Outcome(str(futures[future].path), "failed", error=f"{type(error).__name__}: {error}")
                report(i, outcome)
    summary.outcomes.sort(key=lambda o: order[o.path])  # in the jobs' order
    failed, late = summary.failed, summary.not_started
    print(f"done in {time.perf_counter() - t0:.0f} s: {len(summary.done)} run, {len(failed)} failed"
          + (f", {len(late)} not started (deadline)" if late else ""), file=log, flush=True)
    for outcome in failed:
        print(f"failed: {outcome.path}: {outcome.error.splitlines()[0]}", file=log, flush=True)
    return summary


def load_results(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The JSON records of ``paths`` (sorted)."""
    return [json.loads(Path(p).read_text()) for p in sorted(paths)]
