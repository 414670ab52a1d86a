"""The run directory, the unit of record (DESIGN.md section 4).

``<runs_dir>/<experiment>/<run_id>/`` holds ``config.yaml`` (resolved), ``metrics.jsonl`` (one
line per logged step), ``result.json`` (atomic, written last), ``checkpoint/`` and job logs.
Analysis reads only these files.
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RESULT = "result.json"
METRICS = "metrics.jsonl"
CONFIG = "config.yaml"

# Fields every result.json carries (None where a run has no value, e.g. CUDA peak on a CPU).
RESULT_FIELDS = (
    "schema_version", "run_id", "experiment", "method", "model", "task", "seed", "status", "error",
    "mem/peak_device_gib", "mem/optimizer_state_device_gib", "mem/optimizer_state_host_gib",
    "speed/tokens_per_s", "speed/step_time_s_median", "params/trainable", "provenance",
)


def runs_root(runs_dir: str | None = None) -> Path:
    """Where run directories live: the config field, else ``$GRASS_RUNS_DIR``, else ``./runs``."""
    return Path(runs_dir or os.environ.get("GRASS_RUNS_DIR") or "runs")


def run_dir_for(cfg) -> Path:
    from grass.config import run_id

    return runs_root(cfg.log.runs_dir) / cfg.log.experiment / run_id(cfg)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clean(v: Any) -> Any:
    """JSON-safe values: NaN/inf become None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def write_result(run_dir: str | os.PathLike, result: dict) -> dict:
    """Write ``result.json`` atomically (the run's last act); return what was written."""
    result = _clean({"schema_version": SCHEMA_VERSION, **result})
    atomic_write_text(Path(run_dir) / RESULT, json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def read_result(run_dir: str | os.PathLike) -> dict | None:
    """The run's result, or None if it has none yet (or an unreadable one)."""
    p = Path(run_dir) / RESULT
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_done(run_dir: str | os.PathLike) -> bool:
    r = read_result(run_dir)
    return r is not None and r.get("status") == "success"


class MetricsWriter:
    """Appends one JSON line per logged step to ``metrics.jsonl``, flushed at once.

    On resume, lines past the checkpoint's step are dropped first, so the file never holds a step
    twice.
    """

    def __init__(self, run_dir: str | os.PathLike, resume_step: int | None = None):
        self.path = Path(run_dir) / METRICS
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            kept = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", -1) < resume_step]
            atomic_write_text(self.path, "".join(ln + "\n" for ln in kept))
        self._f = open(self.path, "a")

    def write(self, row: dict) -> None:
        self._f.write(json.dumps(_clean(row)) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    p = Path(run_dir) / METRICS
    if not p.exists():
        return []
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]


def _git(*args: str) -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    """The CPU's model and the vector instructions torch's kernels use, e.g. ``AMD EPYC (AVX2)``.

    Step times (and bf16 kernels) differ several-fold between CPUs, so a CPU run records which one
    it ran on; ``platform.processor()`` is empty on Linux.
    """
    import torch

    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{model or platform.processor() or platform.machine()} ({torch.backends.cpu.get_cpu_capability()})"


def code_version() -> dict:
    """``{"git_sha", "git_dirty"}`` of this checkout now: read when a run, or a resumed part of it,
    starts (the code it imports), not when it ends."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_sha": _git("rev-parse", "HEAD"), "git_dirty": bool(status) if status is not None else None}


def provenance(device, code_segments: list[dict] | None = None) -> dict:
    """Where a result came from: git sha and dirty flag, package versions, device, SLURM job.

    ``code_segments``: the code each part of a resumed run ran (``from_step``, ``git_sha``,
    ``git_dirty``; :func:`code_version` at each start). The sha is then the last part's, dirty if any
    part was, and a run that ran more than one part lists them (``code_segments``), so a resume
    across a code change shows; without it, the checkout's state now.
    """
    import importlib.metadata as md

    import torch

    versions = {}
    for pkg in ("torch", "transformers", "peft", "lm-eval", "submitit", "wandb"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    segments = code_segments or [code_version()]
    dirty = [seg["git_dirty"] for seg in segments]
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()
    return {
        "git_sha": segments[-1]["git_sha"],
        "git_dirty": True if True in dirty else (None if None in dirty else False),
        **({"code_segments": segments} if len(segments) > 1 else {}),
        "versions": versions,
        "python": platform.python_version(),
        "device": str(dev),
        "device_name": name,
        "hostname": platform.node(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
    }
