"""Launch the runs of a grid: one SLURM job array, local processes, or in-process (``debug``).

Finished runs (``result.json`` says success) are skipped, and so are runs that are queued or
running; failed runs are resubmitted only with ``retry_failed``; canceled runs (interrupted, no
result) are resubmitted and resume from their checkpoint. At submit time each run directory gets
its ``config.yaml`` and a ``job.json`` (cluster, job id, log paths), written atomically.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from experiments.grid import Run
from grass.config import to_dict, to_yaml
from grass.errors import GrassError
from grass.results import CONFIG, RESULT, atomic_write_text, read_result, runs_root
from slurm.profiles import Profile, python_for
from slurm.status import RunStatus, collect, first_line, write_job

ROOT = Path(__file__).resolve().parent.parent  # the source tree jobs import (put on their PYTHONPATH)


def say(line: str) -> None:
    """Print a progress line at once (stdout may be a file or a pipe)."""
    print(line, flush=True)


@dataclass
class Plan:
    """What a launch will do: the runs to submit and the status of every run."""

    statuses: list[RunStatus]
    submit: list[Run] = field(default_factory=list)

    def describe(self, retry_failed: bool) -> list[str]:
        """One line per run: submit/skip, id, grid point, and why."""
        lines = []
        chosen = {id(r) for r in self.submit}
        for st in self.statuses:
            action = "submit" if id(st.run) in chosen else "skip"
            if st.state == "missing":
                why = "new"
            elif st.state == "canceled":
                why = f"canceled: {st.detail}; resumes from its checkpoint" if st.detail else "canceled; resumes"
            elif st.state in ("failed", "unknown") and not retry_failed:
                why = f"{st.state}: {st.detail}; use --retry-failed"
            else:
                why = f"{st.state}: {st.detail}" if st.detail else st.state
            lines.append(f"  {action:<6}  {st.run.run_id}  {st.run.label()}  ({why})")
        return lines


def plan(runs: list[Run], retry_failed: bool = False) -> Plan:
    """Decide which runs to submit: missing and canceled ones, plus failed/unknown ones on retry."""
    statuses = collect(runs)
    wanted = {"missing", "canceled"} | ({"failed", "unknown"} if retry_failed else set())
    return Plan(statuses, [st.run for st in statuses if st.state in wanted])


def _prepare(run: Run) -> None:
    """Create the run directory with its resolved config; move a previous failed result aside."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.run_dir / CONFIG, to_yaml(run.cfg))
    old = run.run_dir / RESULT
    if old.exists():
        old.replace(run.run_dir / "result.prev.json")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def submit_slurm(runs: list[Run], profile: Profile, experiment: str, max_parallel: Optional[int] = None,
                 out: Callable[[str], None] = say) -> list[str]:
    """Submit ``runs`` as one submitit job array; record job ids and log paths in each run dir.

    Returns:
        The job ids (``<array>_<task>``), in the order of ``runs``.

    Raises:
        GrassError: submitit or sbatch is missing, or sbatch refused the array.
    """
    try:
        import submitit
        from submitit.core.utils import FailedJobError, FailedSubmissionError
    except ImportError:
        raise GrassError("--cluster slurm needs submitit: pip install 'grass-suite[slurm]'") from None
    if shutil.which("sbatch") is None:
        raise GrassError("--cluster slurm needs the SLURM client (sbatch not found); use --cluster local or debug")
    from slurm.job import TrainJob

    if any(r.cfg.log.runs_dir is None for r in runs):
        raise GrassError("submit_slurm needs log.runs_dir set in every run (expand(..., runs_dir=...))")
    folder = runs_root(runs[0].cfg.log.runs_dir).resolve() / experiment / ".submitit"
    executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=profile.max_num_timeout,
                                      python=python_for(profile))
    params = profile.executor_parameters(job_name=f"grass-{experiment}", max_parallel=max_parallel)
    params["setup"] = params.get("setup", []) + [f"export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"]
    executor.update_parameters(**params)
    for run in runs:
        _prepare(run)
    grace = max(5.0, profile.signal_delay_s - 15.0)
    try:
        jobs = executor.map_array(TrainJob(grace_s=grace), [to_dict(r.cfg) for r in runs])
    except (FailedJobError, FailedSubmissionError) as e:
        raise GrassError(f"sbatch refused the job array: {first_line(str(e)) or type(e).__name__}") from None
    for run, job in zip(runs, jobs):
        write_job(run.run_dir, {"cluster": "slurm", "job_id": job.job_id, "array_job_id": job.job_id.split("_")[0],
                                "submitit_folder": str(folder), "stdout": str(job.paths.stdout),
                                "stderr": str(job.paths.stderr), "profile": profile.name,
                                "submitted_at": _now()})
    out(f"submitted {len(runs)} run(s) as job array {jobs[0].job_id.split('_')[0]} (profile {profile.name}); "
        f"logs in {folder}")
    return [j.job_id for j in jobs]


def _finished_line(run: Run, seconds: float) -> tuple[bool, str]:
    result = read_result(run.run_dir) or {}
    took = f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if result.get("status") == "success":
        loss = result.get("train/final_loss")
        return True, f"done {run.run_id} in {took}" + (f" (loss {loss:.4f})" if loss is not None else "")
    if not result:
        return False, f"stopped {run.run_id} after {took} without a result (run again to resume)"
    return False, f"FAILED {run.run_id}: {first_line(result.get('error'))}"


@contextlib.contextmanager
def stop_signals():
    """Ctrl-C (SIGINT) and ``kill`` (SIGTERM) raise KeyboardInterrupt in here, in the main thread.

    A launcher started in the background by a non-interactive shell (``nohup bash script.sh &``)
    inherits SIGINT as ignored, so without this ``kill -INT`` did nothing and plain ``kill`` left
    its runs running without the launcher; either now stops the runs at a step boundary.
    """
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def run_local(runs: list[Run], max_parallel: int = 1, out: Callable[[str], None] = say) -> int:
    """Run each run as a ``python -m slurm.runner`` process, at most ``max_parallel`` at once; block
    until all have ended. Ctrl-C (or SIGTERM, see :func:`stop_signals`) stops them at their next
    step boundary (checkpoint saved).

    Returns:
        The number of runs that did not finish successfully.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    # N processes share the cores: without a limit each takes all of them and OpenMP threads spin.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, max_parallel))))
    queue, active, bad, started = list(runs), {}, 0, 0
    with stop_signals():  # a second signal, while _stop_local waits, kills the runs
        try:
            while queue or active:
                while queue and len(active) < max(1, max_parallel):
                    run = queue.pop(0)
                    _prepare(run)
                    log_path = run.run_dir / "local.log"
                    with open(log_path, "a") as logf:
                        proc = subprocess.Popen([sys.executable, "-m", "slurm.runner", str(run.run_dir)],
                                                stdout=logf, stderr=subprocess.STDOUT, env=env,
                                                start_new_session=True)
                    # at once: a run in its own session gets no Ctrl-C from the terminal, only from _stop_local
                    active[proc] = (run, time.time())
                    write_job(run.run_dir, {"cluster": "local", "pid": proc.pid, "log": str(log_path),
                                            "submitted_at": _now()})
                    started += 1
                    out(f"[{started}/{len(runs)}] started {run.run_id} ({run.label()}); log {log_path}")
                for proc in [p for p in active if p.poll() is not None]:
                    run, t0 = active.pop(proc)
                    ok, line = _finished_line(run, time.time() - t0)
                    bad += not ok
                    out(line)
                time.sleep(0.2)
        except KeyboardInterrupt:
            _stop_local(list(active), out)
            raise
    return bad


def _stop_local(procs: list[subprocess.Popen], out: Callable[[str], None], remind_s: float = 60.0) -> None:
    """Ask each run to stop at its next step boundary (it saves a checkpoint there) and wait for it.

    No time limit: a step boundary can be minutes away (a held-out evaluation runs there), and a
    run killed before it loses the steps since its last periodic checkpoint. Every ``remind_s``
    seconds it says how many runs it still waits for. A second Ctrl-C kills the runs at once.
    """
    try:
        out(f"interrupted: stopping {len(procs)} run(s) at their next step boundary (checkpoint saved; "
            "Ctrl-C again kills them, losing the steps since their last periodic checkpoint)...")
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        while True:
            waiting = [p for p in procs if p.poll() is None]
            if not waiting:
                return
            try:
                waiting[0].wait(timeout=remind_s)
            except subprocess.TimeoutExpired:
                out(f"still waiting for {len(waiting)} run(s) to reach a step boundary (Ctrl-C again kills them)")
    except KeyboardInterrupt:
        for proc in procs:
            proc.kill()
        out("killed; each run resumes from its last periodic checkpoint")


def run_debug(runs: list[Run], out: Callable[[str], None] = say) -> int:
    """Train the runs in this process, one after another (errors show with a traceback in the log).

    Returns:
        The number of runs that failed.
    """
    from slurm.runner import run_config

    bad = 0
    for i, run in enumerate(runs, 1):
        _prepare(run)
        write_job(run.run_dir, {"cluster": "debug", "pid": os.getpid(), "log": None, "submitted_at": _now()})
        out(f"[{i}/{len(runs)}] {run.run_id} ({run.label()})")
        t0 = time.time()
        try:
            run_config(run.cfg, progress=True)
        except Exception:  # recorded in result.json; keep going with the next run
            pass
        ok, line = _finished_line(run, time.time() - t0)
        bad += not ok
        out(line)
    return bad
