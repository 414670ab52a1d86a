"""Claim (f)'s step times from paired benchmarks (``scripts/benchmark.py`` JSON files).

A grid's runs share a machine with whatever else runs, so their wall times compare badly; the
benchmark runs LISA and one GRASS setup in one process, round by round in alternating order. Each
round gives one paired difference, ``GRASS / LISA - 1``, of

* the median step time (probe steps and the first update step left out): the per-step cost of
  measuring MGN (and of GRASS's state policy, which the setup runs as the experiment's runs did);
* the training time of the experiment's whole step budget, probe included, from the same
  round's medians: ``(P * probe + (N - P) * step) / (N * lisa)`` for ``P`` probe steps of ``N``.

A file counts only if every one of its runs trained the config of the experiment's runs of that
method in everything a step's time depends on (model, sequence, batch, precision, device, every
method field), and, on a CPU, only with glibc's allocator thresholds fixed; rounds pool across
such files.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from grass.errors import GrassError

# config fields besides the method's (all of which are compared) that a step's time depends on
_TIMED = {"model": ("name", "dtype", "init"),
          "train": ("seq_len", "batch_size", "grad_accum", "gradient_checkpointing", "max_grad_norm")}


@dataclass
class Timing:
    """Paired rounds of LISA and one GRASS setup from benchmark files."""

    files: list[str]
    grass_key: str
    step: list[float]  # per round: GRASS / LISA - 1 of the median step time
    budget: list[float]  # per round: GRASS / LISA - 1 of the training time of the experiment's steps
    steps: int  # the experiment's step budget N


def _read(path: str) -> dict:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GrassError(f"--timing {path}: cannot read a benchmark JSON ({type(e).__name__}: {e}); name a file "
                         f"scripts/benchmark.py wrote") from None
    if not d.get("complete") or "lisa" not in d.get("summary", {}):
        raise GrassError(f"--timing {path}: not a complete benchmark with lisa; run scripts/benchmark.py --methods "
                         f"lisa,<grass setup> to the end")
    if d.get("device") == "cpu" and not str(d["args"].get("malloc", "")).startswith("fixed"):
        raise GrassError(f"--timing {path}: ran with glibc's dynamic mmap threshold, which shifted CPU step times "
                         f"between methods by several percent (grass.measure.fix_malloc); run the benchmark "
                         f"again without --dynamic-malloc")
    if any("config" not in r for r in d["runs"]):
        raise GrassError(f"--timing {path}: written before scripts/benchmark.py recorded each run's config, so "
                         f"whether it ran the experiment's cannot be checked; run the benchmark again")
    return d


def _same(a, b) -> bool:
    # a YAML or table number may be a float (2.0) where the other side has an int (2)
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    return float(a) == float(b) if numbers else a == b


def _differences(bench: dict, run: dict) -> list[str]:
    """``section.field`` where a benchmark run's resolved config differs from an experiment run's
    (a field that acts in neither, such as the offload engine's under ``state_policy=reset``, is
    no difference)."""
    from grass.config import field_acts

    fields = [(sec, f) for sec, fs in _TIMED.items() for f in fs] + [("method", f) for f in bench["method"]]
    return [f"{sec}.{f}: {bench[sec].get(f)!r} vs {run[sec].get(f)!r}" for sec, f in fields
            if not _same(bench[sec].get(f), run[sec].get(f))
            and (field_acts(bench, sec, f) or field_acts(run, sec, f))]


def _check(path: str, d: dict, key: str, method: str, runs: pd.DataFrame) -> None:
    from grass.config import from_run_dir, to_dict

    bench = next(r for r in d["runs"] if r["key"] == key)
    for _, row in runs.iterrows():
        diff = _differences(bench["config"], to_dict(from_run_dir(row["run_dir"])))
        if bench.get("train/precision") != row.get("train/precision"):
            diff.append(f"train/precision: {bench.get('train/precision')!r} vs {row.get('train/precision')!r}")
        device = str(row.get("provenance.device", ""))
        if not device.startswith(str(d.get("device"))):
            diff.append(f"device: {d.get('device')!r} vs {device!r}")
        if diff:
            raise GrassError(f"--timing {path}: its {key} did not run the config of the experiment's {method} run "
                             f"{row['run_id']} ({'; '.join(diff[:3])}{'; ...' if len(diff) > 3 else ''}); benchmark "
                             f"at the experiment's config")


def load_timing(paths: list[str], lisa_runs: pd.DataFrame, grass_runs: pd.DataFrame) -> Timing:
    """Pool the paired rounds of ``paths``, each checked against the experiment's LISA and GRASS runs.

    Raises:
        GrassError: a file is unreadable, incomplete or from before runs recorded their config, holds
            no or several GRASS setups, or one of its runs trained another config than the
            experiment's runs of that method (model, sequence, batch, precision, device, any method
            field); the experiment has no LISA or GRASS runs, or GRASS runs of several step budgets.
    """
    if lisa_runs.empty or grass_runs.empty:
        raise GrassError("--timing needs the experiment's finished LISA and GRASS runs to check the benchmark's "
                         "config against; there are none yet")
    if grass_runs["cfg.train.max_steps"].nunique() > 1:
        raise GrassError("the experiment's GRASS runs have several step budgets (train.max_steps): no one "
                         "benchmark fits them")
    steps = int(grass_runs["cfg.train.max_steps"].iloc[0])
    key, step, budget = None, [], []
    for path in paths:
        d = _read(path)
        keys = [k for k in d["summary"] if k.startswith("grass")]
        if len(keys) != 1 or (key is not None and keys[0] != key):
            raise GrassError(f"--timing {path}: times {', '.join(keys) or 'no GRASS setup'}; every file must time "
                             f"lisa and one and the same GRASS setup")
        key = keys[0]
        _check(path, d, "lisa", "lisa", lisa_runs)
        _check(path, d, key, "grass", grass_runs)
        by_round = {(r["key"], r["round"]): r for r in d["runs"]}
        n_probe = int(next(r for r in d["runs"] if r["key"] == key)["config"]["method"]["probe_steps"])
        for rnd in range(d["args"]["rounds"]):
            g, lisa = by_round[(key, rnd)], by_round[("lisa", rnd)]
            g_med, l_med = statistics.median(g["step_times_s"]), statistics.median(lisa["step_times_s"])
            probe = statistics.median(g["probe_step_times_s"]) if g["probe_step_times_s"] else 0.0
            step.append(g_med / l_med - 1)
            budget.append((n_probe * probe + (steps - n_probe) * g_med) / (steps * l_med) - 1)
    return Timing([str(path) for path in paths], key, step, budget, steps)
