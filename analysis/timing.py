"""Claim (f)'s step times from paired benchmarks (``scripts/benchmark.py`` JSON files).

A grid's runs share a machine with whatever else runs, so their wall times compare badly; the
benchmark runs LISA and one GRASS setup in one process, round by round in alternating order, at
the experiment's own config. Each round gives one paired difference, ``GRASS / LISA - 1``, of

* the median step time (probe steps and the first update step left out): the per-step cost of
  measuring MGN (and of GRASS's state policy, which the setup runs as the experiment's runs did);
* the training time of the experiment's whole step budget, probe included, from the same
  round's medians: ``(P * probe + (N - P) * step) / (N * lisa)`` for ``P`` probe steps of ``N``.

Rounds pool across files of one config (a second file adds rounds).
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from grass.errors import GrassError

# benchmark argument -> the experiment's config column it must equal
_SAME = {"model": "cfg.model.name", "seq_len": "cfg.train.seq_len", "batch": "cfg.train.batch_size",
         "dtype": "cfg.model.dtype", "precision": "train/precision", "probe_steps": "cfg.method.probe_steps",
         "switch_every": "cfg.method.switch_every", "n_active_layers": "cfg.method.n_active_layers",
         "grad_ckpt": "cfg.train.gradient_checkpointing"}


@dataclass
class Timing:
    """Paired rounds of LISA and one GRASS setup from benchmark files."""

    files: list[str]
    grass_key: str
    step: list[float]  # per round: GRASS / LISA - 1 of the median step time
    budget: list[float]  # per round: GRASS / LISA - 1 of the training time of the experiment's steps
    steps: int  # the experiment's step budget N


def _same(a, b) -> bool:
    # a table column of numbers is float (2.0), the benchmark's argument an int (2)
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _read(path: str) -> dict:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GrassError(f"--timing {path}: cannot read a benchmark JSON ({type(e).__name__}: {e}); name a file "
                         f"scripts/benchmark.py wrote") from None
    if not d.get("complete") or "lisa" not in d.get("summary", {}):
        raise GrassError(f"--timing {path}: not a complete benchmark with lisa; run scripts/benchmark.py --methods "
                         f"lisa,<grass setup> to the end")
    return d


def load_timing(paths: list[str], grass_runs: pd.DataFrame) -> Timing:
    """Pool the paired rounds of ``paths``, checked against the experiment's GRASS runs' config.

    Raises:
        GrassError: a file is unreadable or incomplete, holds no or several GRASS setups, or ran
            another config than the experiment's GRASS runs (or than the other files).
    """
    if grass_runs.empty:
        raise GrassError("--timing needs the experiment's GRASS runs to check the benchmark's config against; "
                         "none finished yet")
    for column in ("cfg.train.max_steps", *_SAME.values()):
        if column in grass_runs and grass_runs[column].nunique() > 1:
            raise GrassError(f"the experiment's GRASS runs differ in {column}: no one benchmark config fits them")
    first = grass_runs.iloc[0]
    steps = int(first["cfg.train.max_steps"])
    key, step, budget = None, [], []
    for path in paths:
        d = _read(path)
        keys = [k for k in d["summary"] if k.startswith("grass")]
        if len(keys) != 1 or (key is not None and keys[0] != key):
            raise GrassError(f"--timing {path}: times {', '.join(keys) or 'no GRASS setup'}; every file must time "
                             f"lisa and one and the same GRASS setup")
        key = keys[0]
        for arg, column in _SAME.items():
            want = first.get(column)
            if not _same(d["args"].get(arg), want):
                raise GrassError(f"--timing {path}: --{arg.replace('_', '-')} {d['args'].get(arg)}, but the "
                                 f"experiment's GRASS runs have {column}={want}; benchmark at their config")
        by_round = {(r["key"], r["round"]): r for r in d["runs"]}
        for rnd in range(d["args"]["rounds"]):
            g, lisa = by_round[(key, rnd)], by_round[("lisa", rnd)]
            g_med, l_med = statistics.median(g["step_times_s"]), statistics.median(lisa["step_times_s"])
            probe = statistics.median(g["probe_step_times_s"]) if g["probe_step_times_s"] else 0.0
            n_probe = int(d["args"]["probe_steps"])
            step.append(g_med / l_med - 1)
            budget.append((n_probe * probe + (steps - n_probe) * g_med) / (steps * l_med) - 1)
    return Timing([str(path) for path in paths], key, step, budget, steps)
