"""`grass launch --cluster slurm` against a real one-node SLURM (see conftest.py): the smoke grid end
to end, a relaunch that submits nothing, a preempted job that resumes and matches an uninterrupted
run, and a failed job whose error shows in `grass status`."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from grass.cli import main
from grass.results import read_metrics, read_result

pytestmark = pytest.mark.slurm


def cli(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out + err


def run_dirs(root: Path, experiment: str = "smoke") -> list[Path]:
    d = root / experiment
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")) if d.exists() else []


def wait_for(cond, timeout: float, what: str, every: float = 1.0):
    end = time.time() + timeout
    while time.time() < end:
        value = cond()
        if value:
            return value
        time.sleep(every)
    squeue = subprocess.run(["squeue"], capture_output=True, text=True).stdout
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; squeue:\n{squeue}")


def sacct_state(job_id: str) -> str:
    from submitit.slurm.slurm import SlurmInfoWatcher

    watcher = SlurmInfoWatcher()
    watcher.register_job(job_id)
    watcher.update()
    return watcher.get_state(job_id, mode="cache")


def test_smoke_grid_end_to_end_then_relaunch_submits_nothing(slurm_cluster, capsys, tmp_path):
    args = ["smoke", "--runs-dir", str(tmp_path)]
    rc, out = cli(capsys, "launch", *args, "--cluster", "slurm", "--profile", "local", "--max-parallel", "4")
    assert rc == 0 and "submitted 4 run(s) as job array" in out, out
    dirs = run_dirs(tmp_path)
    jobs = {d: json.loads((d / "job.json").read_text()) for d in dirs}  # recorded at submit time
    assert len(dirs) == 4 and len({j["job_id"] for j in jobs.values()}) == 4
    assert len({j["array_job_id"] for j in jobs.values()}) == 1  # one job array
    assert all(j["cluster"] == "slurm" and j["stdout"].startswith(str(tmp_path)) for j in jobs.values())

    wait_for(lambda: all((read_result(d) or {}).get("status") for d in dirs), 400, "the 4 smoke runs")
    for d in dirs:
        assert read_result(d)["status"] == "success", read_result(d).get("error")
        assert Path(jobs[d]["stdout"]).is_file()
    rc, table = cli(capsys, "status", *args)
    assert "4 done, 0 failed, 0 missing" in table and all(j["job_id"] in table for j in jobs.values())

    rc, out = cli(capsys, "launch", *args, "--cluster", "slurm", "--profile", "local")
    assert rc == 0 and out.rstrip().endswith("nothing to submit") and "submitted" not in out
    assert {d: json.loads((d / "job.json").read_text()) for d in dirs} == jobs  # nothing resubmitted


def test_preempted_job_resumes_and_matches_an_uninterrupted_run(slurm_cluster, capsys, tmp_path):
    import submitit

    args = ["smoke", "train.max_steps=60", "train.checkpoint_every=10", "--only", "method.name=grass",
            "--only", "seed=0"]
    rc, out = cli(capsys, "launch", *args, "--cluster", "slurm", "--profile", "local",
                  "--runs-dir", str(tmp_path / "slurm"))
    assert rc == 0, out
    (d,) = run_dirs(tmp_path / "slurm")
    job = json.loads((d / "job.json").read_text())
    wait_for(lambda: len(read_metrics(d)) >= 3, 240, "the job's first training steps", every=0.3)
    submitit.SlurmJob(folder=Path(job["submitit_folder"]) / "%j", job_id=job["job_id"])._interrupt()

    # the same run, uninterrupted, in this process (while the job requeues)
    rc, out = cli(capsys, "launch", *args, "--cluster", "debug", "--runs-dir", str(tmp_path / "ref"))
    assert rc == 0, out
    (ref,) = run_dirs(tmp_path / "ref")
    assert ref.name == d.name  # same config, same id

    wait_for(lambda: (read_result(d) or {}).get("status"), 300, "the preempted job to finish")
    events = [json.loads(ln) for ln in (d / "job_events.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert "preempted" in kinds, f"the job was not interrupted mid-run: {kinds}"
    stop_step = int(next(e for e in events if e["event"] == "preempted")["detail"].split()[3].rstrip(";"))
    assert 0 < stop_step < 60 and kinds.count("start") == 2 and events[-1]["status"] == "success"
    assert events[-1]["restart"] == "1"  # SLURM_RESTART_COUNT: the same job, requeued

    got, want = read_result(d), read_result(ref)
    assert got["status"] == want["status"] == "success"
    for key in ("train/final_loss", "method/mgn", "method/layer_probs"):
        assert got[key] == pytest.approx(want[key], rel=1e-6), key
    rows, ref_rows = read_metrics(d), read_metrics(ref)
    assert [r["step"] for r in rows] == list(range(60))  # no step lost or repeated
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in ref_rows], rel=1e-6)
    assert [r["active_layers"] for r in rows] == [r["active_layers"] for r in ref_rows]


def test_failed_job_shows_its_error_in_status_and_is_not_resubmitted(slurm_cluster, capsys, tmp_path):
    args = ["smoke", "data.train=/nonexistent/train.json", "--only", "method.name=lisa", "--only", "seed=0",
            "--runs-dir", str(tmp_path)]
    rc, out = cli(capsys, "launch", *args, "--cluster", "slurm", "--profile", "local")
    assert rc == 0, out
    (d,) = run_dirs(tmp_path)
    job_id = json.loads((d / "job.json").read_text())["job_id"]
    wait_for(lambda: (read_result(d) or {}).get("status"), 180, "the failing job")
    rc, table = cli(capsys, "status", *args)
    assert "0 done, 1 failed, 0 missing" in table and job_id in table
    assert "DataError: " in table and "'/nonexistent/train.json' does not exist" in table
    assert wait_for(lambda: sacct_state(job_id) == "FAILED", 60, "sacct to record FAILED")
    rc, out = cli(capsys, "launch", *args, "--cluster", "slurm", "--profile", "local")
    assert rc == 0 and "use --retry-failed" in out and out.rstrip().endswith("nothing to submit")
