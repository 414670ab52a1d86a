"""Where each run of a grid stands: done / failed / canceled / running / pending / missing.

The run directory is read first (``result.json``, then ``job.json`` written at submit time); only
runs that are not finished on disk are looked up in the scheduler: SLURM through submitit's
``sacct`` watcher (one call for all jobs, ``squeue`` when accounting is off), local processes by
their PID.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from experiments.grid import Run
from grass.results import atomic_write_text, read_result

log = logging.getLogger(__name__)
JOB_FILE = "job.json"
STATES = ("done", "failed", "canceled", "running", "pending", "unknown", "missing")
_SLURM_PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESIZING", "PREEMPTED",
                  "SUSPENDED"}
_SLURM_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
_SLURM_CANCELED = {"CANCELLED"}


@dataclass
class RunStatus:
    """One row of ``grass status``."""

    run: Run
    state: str
    detail: str = ""
    job_id: Optional[str] = None
    log: Optional[str] = None


def read_job(run_dir: Path) -> Optional[dict]:
    """The submit record ``<run_dir>/job.json``, or None."""
    try:
        return json.loads((Path(run_dir) / JOB_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_job(run_dir: Path, record: dict) -> None:
    """Write the submit record atomically (job id, log paths, cluster, time)."""
    atomic_write_text(Path(run_dir) / JOB_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")


def first_line(text: Optional[str]) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _from_disk(run: Run) -> RunStatus:
    job = read_job(run.run_dir) or {}
    job_id = job.get("job_id") or (f"{job.get('cluster')}:{job['pid']}" if job.get("pid") else None)
    st = RunStatus(run, "missing", job_id=job_id, log=job.get("stdout") or job.get("log"))
    result = read_result(run.run_dir)
    if result is not None:
        status = result.get("status")
        if status == "success":
            st.state = "done"
            loss = result.get("train/final_loss")
            acc = result.get("acc/avg")
            st.detail = " ".join(x for x in (f"loss {loss:.4f}" if isinstance(loss, float) else "",
                                              f"acc {acc:.3f}" if isinstance(acc, float) else "") if x)
            return st
        if status in ("failed", "canceled"):
            st.state, st.detail = status, first_line(result.get("error"))
            return st
    if job:
        st.state = "unknown"
    return st


def _slurm_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM state of each job id (``123_4`` for array tasks), one ``sacct`` call through submitit."""
    if not job_ids:
        return {}
    states: dict[str, str] = {}
    try:
        from submitit.slurm.slurm import SlurmInfoWatcher

        watcher = SlurmInfoWatcher()
        for jid in job_ids:
            watcher.register_job(jid)
        watcher.update()
        states = {jid: watcher.get_state(jid, mode="cache") for jid in job_ids}
    except ImportError:
        pass
    unknown = [j for j in job_ids if states.get(j, "UNKNOWN") == "UNKNOWN"]
    if unknown:  # no accounting: squeue still lists queued, running and recently finished jobs
        try:
            out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%T", "-j", ",".join(unknown)],
                                 capture_output=True, text=True, timeout=30).stdout
            for line in out.splitlines():
                jid, _, state = line.partition("|")
                if jid in unknown:
                    states[jid] = state.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return states


def _last_event(run_dir: Path) -> dict:
    """The last line of ``job_events.jsonl`` (written by the job), or {}."""
    try:
        lines = (Path(run_dir) / "job_events.jsonl").read_text().splitlines()
        return json.loads(lines[-1]) if lines else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _pid_running(pid: int) -> bool:
    """A live (not zombie) process that is a run of ``slurm.runner`` (PIDs get reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z" and b"slurm.runner" in cmdline


def _apply_slurm(st: RunStatus, state: str) -> None:
    base = state.split()[0].upper() if state else "UNKNOWN"
    if base in _SLURM_PENDING:
        st.state, st.detail = "pending", f"SLURM {state}"
    elif base in _SLURM_RUNNING:
        st.state, st.detail = "running", f"SLURM {state}"
    elif base in _SLURM_CANCELED:
        st.state, st.detail = "canceled", f"SLURM {state}; no result.json"
    elif base == "UNKNOWN":
        st.state, st.detail = "unknown", "SLURM state unknown (no sacct record); see the log"
    else:
        st.state, st.detail = "failed", f"SLURM {state} without a result.json; see the log"


def collect(runs: list[Run]) -> list[RunStatus]:
    """The status of every run, in grid order; asks the scheduler only about unfinished runs."""
    out = [_from_disk(r) for r in runs]
    open_ = [(st, read_job(st.run.run_dir) or {}) for st in out if st.state == "unknown"]
    slurm_ids = [job["job_id"] for _, job in open_ if job.get("cluster") == "slurm" and job.get("job_id")]
    states = _slurm_states(slurm_ids)
    for st, job in open_:
        if job.get("cluster") == "slurm":
            _apply_slurm(st, states.get(job.get("job_id", ""), "UNKNOWN"))
        elif job.get("cluster") == "local":
            if job.get("pid") and _pid_running(int(job["pid"])):
                st.state, st.detail = "running", f"pid {job['pid']}"
            else:
                st.state, st.detail = "canceled", "process ended without a result.json"
        else:
            st.state, st.detail = "canceled", "in-process run ended without a result.json"
        if st.state == "canceled" and _last_event(st.run.run_dir).get("event") == "preempted":
            st.detail = _last_event(st.run.run_dir).get("detail") or st.detail
    return out


def counts(statuses: list[RunStatus]) -> dict[str, int]:
    """Number of runs in each state (every state present, zeros included)."""
    c = {s: 0 for s in STATES}
    for st in statuses:
        c[st.state] += 1
    return c


def format_table(statuses: list[RunStatus], *, show_log: bool = True) -> str:
    """A plain-text table: run id, state, grid point, job id, detail (error / SLURM state), log."""
    header = ["RUN ID", "STATE", "RUN", "JOB", "DETAIL"] + (["LOG"] if show_log else [])
    rows = [[st.run.run_id, st.state, st.run.label(), st.job_id or "-", st.detail or "-"]
            + ([_short(st.log)] if show_log else []) for st in statuses]
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    widths[4] = min(widths[4], 70)
    lines = []
    for r in [header] + rows:
        cells = [str(c) if i != 4 or len(str(c)) <= 70 else str(c)[:67] + "..." for i, c in enumerate(r)]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    c = counts(statuses)
    lines.append(", ".join(f"{n} {s}" for s, n in c.items() if n or s in ("done", "failed", "missing")))
    return "\n".join(lines)


def _short(path: Optional[str]) -> str:
    if not path:
        return "-"
    try:
        rel = os.path.relpath(path)
        return rel if len(rel) < len(path) else path
    except ValueError:
        return path
