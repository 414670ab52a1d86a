"""Run one run config inside a job: the piece shared by SLURM jobs, local processes and ``debug``.

* :func:`run_config` calls :func:`grass.train.train` and makes sure a failed attempt always leaves a
  ``result.json`` saying so (``train`` writes one for errors during training; errors found before
  the run directory exists, e.g. a missing data file, are recorded here), so ``grass status`` can
  show the first line of the error.
* :class:`StopOnSignal` turns a signal (SLURM's preemption/time-limit signal, or SIGTERM for a local
  process) into a stop request that the training loop honours at the next step boundary: it saves
  a checkpoint and raises :class:`grass.train.Preempted`. The next attempt resumes from there, so
  its final metrics equal an uninterrupted run's.

``python -m slurm.runner RUN_DIR`` runs the ``config.yaml`` of a run directory (``--cluster local``).
"""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

from grass.config import RunConfig, from_run_dir, run_id
from grass.errors import GrassError
from grass.results import read_result, run_dir_for, write_result

log = logging.getLogger(__name__)
EVENTS = "job_events.jsonl"
EXIT_PREEMPTED = 3  # exit status of a local process stopped by SIGTERM after saving a checkpoint


def record_event(run_dir: Path, event: str, **fields: Any) -> None:
    """Append one line to ``<run_dir>/job_events.jsonl`` (start / preempted / end of each attempt)."""
    row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "event": event, "host": socket.gethostname(),
           "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "restart": os.environ.get("SLURM_RESTART_COUNT"),
           **fields}
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / EVENTS, "a") as f:
        f.write(json.dumps(row) + "\n")


def record_failure(cfg: RunConfig, exc: BaseException) -> None:
    """Write a ``failed`` (or ``canceled``) result.json unless the attempt already wrote one."""
    run_dir = run_dir_for(cfg)
    existing = read_result(run_dir)
    if existing is not None and existing.get("status") in ("failed", "canceled"):
        return
    status = "canceled" if isinstance(exc, KeyboardInterrupt) else "failed"
    write_result(run_dir, {"run_id": run_id(cfg), "experiment": cfg.log.experiment, "method": cfg.method.name,
                           "model": cfg.model.name, "task": cfg.data.train or "default", "seed": cfg.seed,
                           "status": status, "error": f"{type(exc).__name__}: {exc}",
                           "traceback": traceback.format_exc()})


def run_config(cfg: RunConfig, *, stop_requested: Optional[Callable[[], bool]] = None,
               progress: bool = False) -> dict:
    """Train one run (skipped when finished, resumed from its checkpoint when present).

    Args:
        cfg: the resolved run config.
        stop_requested: polled after every step; True makes the loop checkpoint and raise Preempted.
        progress: show a progress bar.

    Returns:
        The result dict (also in ``result.json``).

    Raises:
        grass.train.Preempted: a stop was requested; the checkpoint is saved.
        Exception: the run failed; ``result.json`` says so.
    """
    from grass.train import Preempted, train

    run_dir = run_dir_for(cfg)
    _respect_cpu_allocation()
    dist = _init_distributed(cfg)
    is_main = dist is None or dist.rank == 0
    if is_main:
        record_event(run_dir, "start", pid=os.getpid())
    try:
        result = train(cfg, progress=progress, stop_requested=stop_requested, dist=dist)
    except Preempted as e:
        if is_main:
            record_event(run_dir, "preempted", detail=str(e))
        raise
    except (Exception, KeyboardInterrupt) as e:
        if is_main:
            record_failure(cfg, e)
            record_event(run_dir, "end", status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
        raise
    finally:
        if dist is not None:
            dist.close()
    if is_main:
        record_event(run_dir, "end", status=result.get("status"))
    return result


def _respect_cpu_allocation() -> None:
    """Use as many torch threads as SLURM gave CPUs (torch would take every core of the node)."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and not os.environ.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(max(1, int(cpus)))


def _init_distributed(cfg: RunConfig):
    """A DistContext when the job has several tasks (DDP or FSDP by ``train.parallel``), else None."""
    try:
        from grass.distributed import init_distributed
    except ImportError:
        return None
    return init_distributed(cfg.train.device)


def summary(result: dict) -> dict:
    """The few fields a job returns to submitit (the full record is ``result.json``)."""
    keys = ("run_id", "status", "run_dir", "train/final_loss", "acc/avg", "speed/tokens_per_s")
    return {k: result.get(k) for k in keys}


class StopOnSignal:
    """Turn signals into a stop request honoured by the training loop at the next step boundary.

    Used as a context manager around :func:`run_config`. With ``forward=True`` (SLURM), the handler
    that was installed before (submitit's checkpoint-and-requeue) is called by :meth:`forward` once
    the loop has saved its checkpoint, or after ``grace_s`` seconds if the loop does not reach a
    step boundary in time (then the run resumes from its last periodic checkpoint).
    """

    def __init__(self, signals: tuple[int, ...], *, forward: bool = False, grace_s: float = 60.0):
        self.signals, self.forward_on, self.grace_s = signals, forward, grace_s
        self.signum: Optional[int] = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopOnSignal":
        for s in self.signals:
            self._old[s] = signal.getsignal(s)
            signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._restore()

    def requested(self) -> bool:
        """True once a signal arrived (the ``stop_requested`` callback of ``train``)."""
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        log.warning("caught %s: saving a checkpoint at the next step boundary", signal.Signals(signum).name)
        if self.forward_on and self.grace_s > 0:
            signal.signal(signal.SIGALRM, self._grace_over)
            signal.alarm(max(1, math.ceil(self.grace_s)))

    def _grace_over(self, signum: int, frame: Any) -> None:
        log.warning("no step boundary within %.0f s: requeueing from the last periodic checkpoint", self.grace_s)
        self.forward()

    def forward(self) -> None:
        """Restore the previous handlers and call the one for the caught signal (submitit's:
        it calls the job's ``checkpoint()``, requeues the job and exits)."""
        signum = self.signum
        handler = self._old.get(signum) if signum is not None else None
        self._restore()
        if callable(handler):
            handler(signum, None)

    def _restore(self) -> None:
        signal.alarm(0)
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m slurm.runner RUN_DIR``: train the run directory's config; SIGTERM checkpoints."""
    from grass.train import Preempted

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m slurm.runner RUN_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        cfg = from_run_dir(argv[0])
    except GrassError as e:  # not a run directory, or its config.yaml is not a run's
        print(f"error: {e}", file=sys.stderr)
        return 2
    with StopOnSignal((signal.SIGTERM, signal.SIGINT)) as stop:
        try:
            result = run_config(cfg, stop_requested=stop.requested)
        except Preempted as e:
            log.warning("%s", e)
            return EXIT_PREEMPTED
        except Exception as e:  # recorded in result.json; one line here, the traceback is in the log
            traceback.print_exc()
            print(f"error: {type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
            return 1
    print(json.dumps(summary(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
