"""What a run's ``metrics.jsonl`` says about GRASS's sampling and speed: the probe's MGN profile,
the active set at each draw, how far the refresh moved the probabilities, the training time of the budget.

Each function takes one run's metrics frame (:func:`analysis.collect.read_metrics`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def probe_mgn(metrics: pd.DataFrame) -> np.ndarray | None:
    """The MGN profile at the end of the probe (the first logged non-null ``mgn``), mean-normalized."""
    if "mgn" not in metrics:
        return None
    for v in metrics["mgn"]:
        if isinstance(v, list) and v:
            m = np.asarray(v, dtype=float)
            return m / m.mean()
    return None


def active_sets(metrics: pd.DataFrame) -> dict[int, tuple[int, ...]]:
    """Step -> the active set it trained, at every step that logged one (a step run twice, after a
    resume, keeps its last try)."""
    out: dict[int, tuple[int, ...]] = {}
    for step, active in zip(metrics.get("step", []), metrics.get("active_layers", [])):
        if isinstance(active, list) and active:
            out[int(step)] = tuple(active)
    return out


def draw_steps(steps: int, probe_steps: int, switch_every: int) -> list[int]:
    """The steps at which a layer-wise run draws its active set: the first step after the probe,
    then every ``switch_every`` steps. A draw may give the set it already had, so the draws cannot
    be read off the changes of the active set."""
    return list(range(probe_steps, steps, switch_every)) if switch_every > 0 else []


def prob_drift(metrics: pd.DataFrame) -> float:
    """Largest change of any layer's sampling probability after the probe, over the run."""
    rows = [np.asarray(p, dtype=float) for p, probe in zip(metrics.get("layer_probs", []),
                                                           metrics.get("probe", [False] * len(metrics)))
            if isinstance(p, list) and not probe]
    return float(np.max(np.abs(np.stack(rows) - rows[0]))) if len(rows) > 1 else 0.0


def train_time_s(metrics: pd.DataFrame | None, steps: int) -> float | None:
    """Wall time of a run's ``steps`` training steps, probe and warm-up included: the sum of the logged
    ``step_time_s`` (held-out evaluation and checkpoints are not in it, nor the method's
    ``on_step_start`` work before the step timer starts: GRASS's importance refresh and layer
    switches, vectors of one number per layer).

    None unless every step was logged (``train.log_every`` 1); a step run twice (a resume) counts its
    last try.
    """
    if metrics is None or "step_time_s" not in metrics or "step" not in metrics:
        return None
    last = metrics.dropna(subset=["step_time_s"]).drop_duplicates("step", keep="last")
    if set(last["step"].astype(int)) != set(range(steps)):
        return None
    return float(last["step_time_s"].sum())


def probe_profiles(runs: pd.DataFrame, metrics: dict[str, pd.DataFrame]) -> dict[str, dict[int, np.ndarray]]:
    """Task -> seed -> the probe MGN profile of that seed's GRASS runs.

    One per seed: the adaptive and static runs of a seed run the same probe (same model, same
    batches), so their profiles are one measurement, and counting both would make a seed agree
    with itself.
    """
    out: dict[str, dict[int, np.ndarray]] = {}
    for _, r in runs[runs["method"] == "grass"].iterrows():
        p = probe_mgn(metrics[r["run_id"]]) if r["run_id"] in metrics else None
        if p is not None:
            out.setdefault(r["task"], {}).setdefault(int(r["seed"]), p)
    return out
