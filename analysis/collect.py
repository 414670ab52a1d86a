"""Run directories -> one pandas frame (DESIGN.md section 4: analysis reads only run files).

Every run directory under ``<runs_dir>/<experiment>/`` becomes one row: the ``result.json`` keys
(``acc/<benchmark>``, ``mem/...``, ``speed/...``), provenance flattened to ``provenance.<key>``,
and the resolved config flattened to ``cfg.<dotted.key>``. Each row carries a ``state``
(ok | unfinished | failed | canceled | dirty | unreadable) and ``included``; tables and plots use
only the included rows.
"""
from __future__ import annotations

import json
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from grass.errors import GrassError
from grass.results import CONFIG, METRICS, RESULT, runs_root

METHOD_ORDER = ("full", "lora", "dora", "lisa", "grass")
GROUP = ["method", "model", "task", "variant"]
# Excluded states in the order the footnote names them.
EXCLUDED_STATES = {"unfinished": "unfinished", "failed": "failed", "canceled": "canceled",
                   "dirty": "from a dirty tree", "unreadable": "with a config.yaml that is not a run's"}
# Config keys that never make runs different configurations: seeds average over, logging and
# device placement do not change what is computed, and method/model/task are already group keys.
_NOT_A_VARIANT = ("cfg.seed", "cfg.log.", "cfg.model.cache_dir", "cfg.model.name", "cfg.method.name",
                  "cfg.data.train", "cfg.train.device", "cfg.train.log_every", "cfg.train.checkpoint_every",
                  "cfg.train.save_model", "cfg.eval.batch_size")


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dict -> ``{"a.b.c": value}``; lists become JSON text so every cell is a scalar."""
    out: dict = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(list(v))
        else:
            out[key] = v
    return out


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """A run's ``metrics.jsonl`` as a frame (one row per logged step).

    A half-written last line (a run still writing) is skipped rather than fatal.
    """
    p = Path(run_dir) / METRICS
    rows = []
    if p.exists():
        for line in p.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return pd.DataFrame(rows)


def _read_run(run_dir: Path) -> dict:
    row: dict = {"run_dir": str(run_dir), "run_id": run_dir.name}
    cfg_path = run_dir / CONFIG
    if cfg_path.is_file():
        try:
            cfg = yaml.safe_load(cfg_path.read_text()) or {}
        except yaml.YAMLError:
            cfg = None
        if not isinstance(cfg, dict) or not all(isinstance(cfg.get(k, {}), dict) for k in ("method", "model", "data")):
            row["state"] = "unreadable"  # not a run's config: left out, and the footnote says so
            return row
        row.update(flatten(cfg, "cfg."))
        row.update({"method": cfg.get("method", {}).get("name"), "model": cfg.get("model", {}).get("name"),
                    "task": cfg.get("data", {}).get("train"), "seed": cfg.get("seed")})
    try:
        result = json.loads((run_dir / RESULT).read_text())
    except (OSError, json.JSONDecodeError):
        result = None
    if result is None:
        row["state"] = "unfinished"
        return row
    prov = result.pop("provenance", None) or {}
    result.pop("traceback", None)  # `error` says what failed; the traceback stays in result.json
    result.pop("run_dir", None)  # where the run was trained; the folder we read it from is what counts
    row.update({k: v for k, v in flatten(result).items() if v is not None or k not in row})
    row.update(flatten(prov, "provenance."))
    status = result.get("status")
    if status != "success":
        row["state"] = "canceled" if status == "canceled" else "failed"
    else:
        row["state"] = "dirty" if prov.get("git_dirty") is True else "ok"
    return row


def _method_rank(m: str) -> int:
    return METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER)


def _label_variants(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per row, ``key=value`` for the config keys that differ within its (method, model, task),
    and the row's rank in the group when sorted by those values (numbers as numbers: 3e-05 before
    0.0001, 8 before 16).

    A grid over e.g. ``method.n_active_layers`` then gives one table row per value instead of
    averaging different configurations as if they were seeds.
    """
    keys = ["method", "model", "task"]
    cols = [c for c in frame.columns if c.startswith("cfg.") and not c.startswith(_NOT_A_VARIANT)]
    labels = pd.Series("", index=frame.index, dtype=object)
    ranks = pd.Series(0, index=frame.index, dtype=int)
    ref = frame[frame["included"]]
    for _, idx in frame.groupby(keys, dropna=False).groups.items():
        group = ref[ref.index.isin(idx)]
        varying = [c for c in cols if group[c].dropna().astype(str).nunique() > 1]
        for i in idx:
            labels[i] = ", ".join(f"{c.rsplit('.', 1)[-1]}={fmt_value(frame.at[i, c])}" for c in varying)
        order = sorted(idx, key=lambda i: tuple(_sort_key(frame.at[i, c]) for c in varying))
        for rank, i in enumerate(order):
            ranks[i] = rank
    return labels, ranks


def _sort_key(v) -> tuple:
    """Numbers before everything else and in numeric order; the rest by their text."""
    if isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and v == v:
        return (0, float(v), "")
    return (1, 0.0, str(v))


def fmt_value(v) -> str:
    """A config value as a reader expects it: ``2`` not ``2.0`` (pandas turns ints with gaps to float)."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


@dataclass
class Collection:
    """Every run of one experiment.

    Attributes:
        experiment: the experiment name.
        runs_dir: the root the experiment lives under.
        frame: one row per run directory, included or not.
        include_unfinished: whether failed, unfinished and dirty runs are in the tables.
    """

    experiment: str
    runs_dir: Path
    frame: pd.DataFrame
    include_unfinished: bool = False

    @property
    def runs(self) -> pd.DataFrame:
        """The included runs."""
        return self.frame[self.frame["included"]]

    @property
    def excluded(self) -> dict[str, int]:
        """Count of left-out runs by state (unfinished, failed, canceled, dirty), zeros omitted."""
        left = self.frame[~self.frame["included"]]["state"].value_counts()
        return {s: int(left[s]) for s in EXCLUDED_STATES if s in left}

    def footnote(self) -> str:
        """One sentence on which runs are left out or marked; empty if every run is finished and clean."""
        excluded = self.excluded
        unreadable = excluded.pop("unreadable", 0)  # never included, so no --include-unfinished hint
        never = f"Left out: {unreadable} {EXCLUDED_STATES['unreadable']}." if unreadable else ""
        if self.include_unfinished:
            marked = self.runs["state"].ne("ok").sum()
            note = (f"† {marked} run(s) that failed, are unfinished or come from a dirty tree are included."
                    if marked else "")
            return " ".join(x for x in (note, never) if x)
        dirty = int(self.runs["state"].eq("dirty").sum())
        note = f"† {dirty} run(s) come from a git tree with uncommitted changes." if dirty else ""
        parts = ", ".join(f"{n} {EXCLUDED_STATES[s]}" for s, n in excluded.items())
        left = f"Left out: {parts} (use --include-unfinished to include them)." if parts else ""
        return " ".join(x for x in (left, never, note) if x)


def experiment_dir(experiment: str, runs_dir: str | Path | None = None) -> Path:
    """``<runs_dir>/<experiment>``; GrassError naming the known experiments if it does not exist."""
    root = runs_root(str(runs_dir) if runs_dir else None)
    path = root / experiment
    if not path.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))) \
            if root.is_dir() else []
        hint = f" Experiments there: {', '.join(known)}." if known else ""
        raise GrassError(f"no runs of experiment '{experiment}' under '{root}': launch it with "
                         f"`grass launch {experiment}` or pass --runs-dir.{hint}")
    return path


def collect(experiment: str, runs_dir: str | Path | None = None, include_unfinished: bool = False,
            include_dirty: bool = False) -> Collection:
    """Read every run of ``experiment`` into a :class:`Collection`.

    Args:
        experiment: experiment name (a folder under the runs root).
        runs_dir: the runs root; default ``$GRASS_RUNS_DIR`` or ``./runs``.
        include_unfinished: also include failed, canceled, unfinished and dirty runs.
        include_dirty: also include finished runs made from a git tree with uncommitted changes
            (a researcher's own work in progress, e.g. in `grass quickstart`).

    Raises:
        GrassError: the experiment folder does not exist or holds no run to report on.
    """
    path = experiment_dir(experiment, runs_dir)
    # A run directory holds a config or a result; folders starting with "_" (e.g. _analysis) are ours.
    dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
                  and ((p / CONFIG).exists() or (p / RESULT).exists()))
    frame = pd.DataFrame([_read_run(d) for d in dirs])
    coll = Collection(experiment, path.parent, frame, include_unfinished)
    if frame.empty:
        raise GrassError(f"experiment '{experiment}' in '{path}' has no runs yet: launch it with "
                         f"`grass launch {experiment}`.")
    for col in ("method", "model", "task", "seed", "status"):
        if col not in frame:
            frame[col] = None
    frame["task"] = frame["task"].fillna("default")
    # A run whose config cannot be read has no method, model or task to be grouped by: never included.
    frame["included"] = (frame["state"].eq("ok") | include_unfinished
                         | (frame["state"].eq("dirty") & include_dirty)) & frame["state"].ne("unreadable")
    if not frame["included"].any():
        counts = ", ".join(f"{n} {EXCLUDED_STATES[s]}" for s, n in coll.excluded.items())
        clean = " from a clean git tree" if "dirty" in coll.excluded else ""
        raise GrassError(f"experiment '{experiment}' has no finished runs{clean} ({counts}): launch it with "
                         f"`grass launch {experiment}` (it skips finished runs), or pass --include-unfinished.")
    frame["variant"], frame["_variant_rank"] = _label_variants(frame)
    frame["_rank"] = frame["method"].map(_method_rank)
    # One block per model (as the paper's tables), methods in display order within it, variants
    # in the order of their values.
    coll.frame = frame.sort_values(["model", "task", "_rank", "method", "_variant_rank", "seed"],
                                   kind="stable").drop(columns=["_rank", "_variant_rank"]).reset_index(drop=True)
    return coll


def save_frame(coll: Collection, out_dir: str | Path) -> list[Path]:
    """Write the whole frame (every run, with ``state`` and ``included``) as CSV and Parquet."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = coll.frame.copy()
    for col in frame.columns[frame.dtypes == object]:
        # Parquet needs one type per column; a key whose type differs between runs becomes text.
        types = {type(v) for v in frame[col].dropna()}
        if len(types) > 1:
            frame[col] = frame[col].map(lambda v: v if v is None or pd.isna(v) else str(v))
    paths = [out / "runs.csv", out / "runs.parquet"]
    frame.to_csv(paths[0], index=False)
    frame.to_parquet(paths[1], index=False)
    return paths


def label(method: str, variant: str = "", marked: bool = False) -> str:
    """How a method (and its configuration) is named in tables and legends; † marks unclean runs."""
    text = f"{method} ({variant})" if variant else str(method)
    return text + ("†" if marked else "")


def groups(runs: pd.DataFrame):
    """Yield ``((method, model, task, variant), rows)`` in display order (the frame is sorted)."""
    yield from runs.groupby(GROUP, sort=False, dropna=False)


PEAK_LABEL = "peak device memory (GiB)"
FALLBACK_LABEL = "weights + grads + optimizer state (GiB; CPU: no peak)"


def memory_gib(runs: pd.DataFrame) -> tuple[pd.Series, str]:
    """Per run, the memory to compare methods by, and its axis label.

    The CUDA peak when every run has one; otherwise (CPU runs record no peak) the exact bytes of
    weights, gradients and on-device optimizer state for every run, so one axis never mixes both.
    """
    peak = runs.get("mem/peak_device_gib")
    if peak is not None and peak.notna().all():
        return peak.astype(float), PEAK_LABEL
    # A run that recorded none of them (unfinished) stays NaN: a blank cell, not a zero.
    parts = [runs.get(c, pd.Series(float("nan"), index=runs.index)).astype(float)
             for c in ("mem/params_gib", "mem/grads_gib", "mem/optimizer_state_device_gib")]
    return sum(parts), FALLBACK_LABEL


UNRECORDED_CPU = "a CPU (model not recorded)"


def device_model(runs: pd.DataFrame) -> pd.Series:
    """Per run, the device it ran on, to compare speed within: the GPU's name, or the CPU's model.

    Runs recorded before the CPU's model was (their ``device_name`` is the architecture, e.g.
    ``x86_64``, with no ``(AVX2)``-style suffix) get :data:`UNRECORDED_CPU`: one label for all of
    them, since they cannot be told apart.
    """
    name = runs.get("provenance.device_name", pd.Series(None, index=runs.index, dtype=object))
    kind = runs.get("provenance.device", pd.Series(None, index=runs.index, dtype=object)).astype(str)
    legacy = kind.str.startswith("cpu") & ~name.fillna("").astype(str).str.endswith(")")
    return name.where(~legacy & name.notna(), UNRECORDED_CPU)
