"""benchmarks/harness.py: the per-problem job runner (resume, the environment record, one thread per
worker, failures reported), the task table and the small parsers. Tiny jobs, no reconstructions."""

from __future__ import annotations

import io
import json
import os

import pytest

from benchmarks import harness


@pytest.fixture(autouse=True)
def _restore_threads(monkeypatch):
    """run_jobs sets the thread variables and torch's threads of the calling process: undo it."""
    import torch

    for name in harness.THREAD_VARIABLES:
        monkeypatch.setenv(name, os.environ.get(name, ""))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def report_threads(params: dict) -> dict:
    """A job: what the process it runs in sees (torch threads, the thread variable), and its input."""
    import torch

    if params.get("fail"):
        raise RuntimeError(f"job {params['i']} fails on purpose")
    return {"i": params["i"], "square": params["i"] ** 2, "torch_threads": torch.get_num_threads(),
            "omp": os.environ.get("OMP_NUM_THREADS"), "pid": os.getpid()}


def _jobs(out, n, failing=()):
    return [harness.Job(out / f"problem_{i:03d}.json", {"i": i, "fail": i in failing}) for i in range(n)]


def test_results_have_the_record_and_the_environment_and_resume_skips_them(tmp_path):
    log = io.StringIO()
    summary = harness.run_jobs(report_threads, _jobs(tmp_path, 3), log=log)
    assert [o.status for o in summary.outcomes] == ["done"] * 3
    data = json.loads((tmp_path / "problem_002.json").read_text())
    assert data["i"] == 2 and data["square"] == 4 and data["pid"] == os.getpid()  # workers=1: in this process
    env = data["environment"]
    assert env["torch_threads"] == 1 and env["OMP_NUM_THREADS"] == "1" and env["processes"] == 1
    assert {"machine", "cpus", "python", "torch", "date"} <= set(env)
    assert "OMP_NUM_THREADS=1" in harness.header("title", env)
    first = (tmp_path / "problem_001.json").stat().st_mtime_ns
    (tmp_path / "problem_002.json").unlink()
    summary = harness.run_jobs(report_threads, _jobs(tmp_path, 4), log=log)
    assert sorted((o.path[-16:], o.status) for o in summary.outcomes) == [
        ("problem_000.json", "skipped"), ("problem_001.json", "skipped"),
        ("problem_002.json", "done"), ("problem_003.json", "done")]
    assert (tmp_path / "problem_001.json").stat().st_mtime_ns == first  # not rerun
    assert "2 job(s) to run, 2 finished before" in log.getvalue()
    summary = harness.run_jobs(report_threads, _jobs(tmp_path, 2), force=True, log=log)
    assert [o.status for o in summary.outcomes] == ["done", "done"]
    text = harness.recorded_environments(harness.load_results(tmp_path.glob("*.json")) + [{"i": 9}])
    assert "4 run(s) with torch" in text and "1 file(s) without an environment record" in text


def test_an_existing_result_of_other_settings_is_refused(tmp_path):
    job = harness.Job(tmp_path / "a.json", {"i": 1}, expect={"i": 1, "settings": {"sigma": 0.1}})
    harness.write_result(job.path, {"i": 1, "settings": {"sigma": 0.1, "other": 3}}, {"torch": "x"})
    assert harness.run_jobs(report_threads, [job], log=io.StringIO()).skipped  # agrees: kept
    other = harness.Job(job.path, {"i": 1}, expect={"settings": {"sigma": 0.2}})
    with pytest.raises(SystemExit, match=r"other settings \(settings.sigma: 0.1 there, 0.2 asked\)"):
        harness.run_jobs(report_threads, [other], log=io.StringIO())


def test_a_failing_job_is_reported_and_the_others_go_on(tmp_path):
    log = io.StringIO()
    summary = harness.run_jobs(report_threads, _jobs(tmp_path, 3, failing=(1,)), log=log)
    assert [o.status for o in summary.outcomes] == ["done", "failed", "done"]
    (failed,) = summary.failed
    assert failed.path.endswith("problem_001.json") and "RuntimeError: job 1 fails on purpose" in failed.error
    assert "Traceback" in failed.error and not (tmp_path / "problem_001.json").exists()  # retried next time
    assert "1 failed" in log.getvalue() and "FAILED" in log.getvalue()
    summary = harness.run_jobs(report_threads, _jobs(tmp_path, 3), log=log)
    assert [o.status for o in summary.outcomes] == ["skipped", "done", "skipped"]


def test_a_job_must_return_a_plain_record(tmp_path):
    with pytest.raises(TypeError, match="must return a dict"):
        harness.write_result(tmp_path / "x.json", [1, 2], {})
    with pytest.raises(ValueError, match="harness adds it"):
        harness.write_result(tmp_path / "x.json", {"environment": 1}, {})
    with pytest.raises(ValueError):  # NaN is not strict JSON: reported, not written
        harness.write_result(tmp_path / "x.json", {"v": float("nan")}, {})
    assert not (tmp_path / "x.json").exists() and not list(tmp_path.iterdir())


def test_the_pool_runs_one_thread_per_worker_and_reports_failures(tmp_path):
    jobs = _jobs(tmp_path, 4, failing=(3,))
    summary = harness.run_jobs(report_threads, jobs, workers=2, log=io.StringIO())
    assert sorted(o.status for o in summary.outcomes) == ["done", "done", "done", "failed"]
    assert "job 3 fails on purpose" in summary.failed[0].error
    records = harness.load_results(tmp_path.glob("problem_*.json"))
    assert [r["square"] for r in records] == [0, 1, 4]
    assert {r["torch_threads"] for r in records} == {1} and {r["omp"] for r in records} == {"1"}
    assert all(r["pid"] != os.getpid() for r in records)  # ran in the workers
    assert {r["environment"]["processes"] for r in records} == {2}
    assert all(o.threads == 1 for o in summary.done)


def test_deadline_starts_no_more_jobs(tmp_path):
    summary = harness.run_jobs(report_threads, _jobs(tmp_path, 2), deadline=-1.0, log=io.StringIO())
    assert [o.status for o in summary.outcomes] == ["not started"] * 2 and not list(tmp_path.iterdir())


def test_tasks_ranges_and_threads_are_checked():
    assert harness.parse_range("0-2,5,7-8") == [0, 1, 2, 5, 7, 8]
    for bad in ("3-1", "a", "1-", "-1"):
        with pytest.raises(ValueError, match="bad index range"):
            harness.parse_range(bad)
    assert harness.parse_tasks("inpainting, super-resolution") == ["inpainting", "super-resolution"]
    with pytest.raises(ValueError, match="unknown task 'deblur'"):
        harness.parse_tasks("inpainting,deblur")
    sr = harness.TASKS["super-resolution"]
    assert sr.describe() == "factor 4, kernel bicubic-antialias" and sr.sigma_pixel == 0.1
    assert harness.TASKS["inpainting-mask3"].corruption == {"task": "inpainting", "mask_id": 3}
    from brgm_pyro.corruptions import standard_mask

    mask = harness.TASKS["inpainting"].make_corruption(32).mask
    assert mask.shape[-2:] == (32, 32) and bool((mask == standard_mask(0, 32)).all())
    assert harness.TASKS["super-resolution"].make_corruption(32).factor == 4
    assert harness.thread_env(3) == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            harness.thread_env(bad)
    mean, se = harness.mean_se([1.0, 2.0, 3.0, 6.0])
    assert mean == 3.0 and abs(se - (14 / 3 / 4) ** 0.5) < 1e-12


def test_the_defaults_environment_drops_every_thread_setting_and_torch_default_ignores_them(monkeypatch):
    """A child meant to show the defaults gets none of the thread variables nor OMP_WAIT_POLICY;
    torch's own thread count is measured without them (a variable above the cores is not obeyed)."""
    env = {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "OMP_WAIT_POLICY": "PASSIVE", "PATH": "/bin", "X": "1"}
    assert harness.env_without_thread_settings(env) == {"PATH": "/bin", "X": "1"}
    assert env["OMP_NUM_THREADS"] == "3"  # the given mapping is left alone
    cores = os.cpu_count() or 1
    monkeypatch.setenv("OMP_NUM_THREADS", str(cores + 1))
    monkeypatch.setenv("MKL_NUM_THREADS", str(cores + 1))
    assert "OMP_NUM_THREADS" not in harness.env_without_thread_settings()
    assert 1 <= harness.torch_default_threads() <= cores


def test_two_jobs_may_not_share_a_file(tmp_path):
    job = harness.Job(tmp_path / "a.json", {"i": 0})
    with pytest.raises(ValueError, match="same file"):
        harness.run_jobs(report_threads, [job, job], log=io.StringIO())
    with pytest.raises(ValueError, match="workers must be >= 1"):
        harness.run_jobs(report_threads, [job], workers=0, log=io.StringIO())


def test_the_scripts_leave_threads_pools_and_imports_to_the_harness():
    """Only harness.py sets the thread variables or torch's threads and starts process pools; the
    scripts import each other as ``benchmarks.NAME`` (no bare module names, no sys.path.insert)
    and no private library name."""
    import ast
    from pathlib import Path

    folder = Path(harness.__file__).parent
    scripts = {p.stem for p in folder.glob("*.py")}
    problems = []
    for path in sorted(folder.glob("*.py")):
        if path.name == "harness.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.name}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                top = node.module.split(".")[0]
                if top in scripts:
                    problems.append(f"{where}: bare import of the script {node.module}")
                if top == "brgm_pyro" and any(a.name.startswith("_") for a in node.names):
                    problems.append(f"{where}: private name from {node.module}")
                if top in ("multiprocessing", "concurrent"):
                    problems.append(f"{where}: a process pool of its own")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in scripts:
                        problems.append(f"{where}: bare import of the script {alias.name}")
                    if alias.name.split(".")[0] in ("multiprocessing", "concurrent"):
                        problems.append(f"{where}: a process pool of its own")
            elif isinstance(node, ast.Attribute) and node.attr in ("set_num_threads", "insert") \
                    and ast.unparse(node.value) in ("torch", "sys.path"):
                problems.append(f"{where}: {ast.unparse(node)}")
            elif isinstance(node, ast.Constant) and node.value in harness.THREAD_VARIABLES:
                parent_code = path.read_text().splitlines()[node.lineno - 1]
                if "environ" in parent_code or ":" in parent_code.split(node.value)[1][:3]:
                    problems.append(f"{where}: sets {node.value} (use harness.limit_threads / thread_env)")
    assert not problems, "\n".join(problems)
