"""Expand an :class:`~experiments.spec.Experiment` into runs with stable ids.

Every grid point is resolved through :func:`grass.config.config_from_dicts` (so an axis naming a
config key that does not exist fails with the closest valid key), and its id is
:func:`grass.config.run_id`, a hash of the resolved config: reordering axes, or writing a value in
the base instead of an axis, changes nothing. Everything here runs before anything is submitted.
"""
from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.spec import Experiment, flatten, nest
from grass.config import RunConfig, config_from_dicts, run_id, to_dict
from grass.errors import ConfigError
from grass.results import run_dir_for


@dataclass
class Run:
    """One run of a grid: its resolved config, stable id and grid coordinates (axis label -> value)."""

    cfg: RunConfig
    run_id: str
    point: dict

    @property
    def run_dir(self) -> Path:
        return run_dir_for(self.cfg)

    def label(self) -> str:
        """``method.name=lisa seed=0``: the point as one line."""
        return " ".join(f"{k}={v}" for k, v in self.point.items())


def parse_overrides(pairs: Iterable[str], what: str = "override") -> dict[str, Any]:
    """``["train.lr=3e-4"]`` -> ``{"train.lr": 0.0003}`` (values parsed as in ``grass train``).

    Raises:
        ConfigError: an item is not ``key=value``.
    """
    pairs = list(pairs)
    for p in pairs:
        if "=" not in p or p.startswith("="):
            raise ConfigError(f"{what} '{p}' is not key=value (e.g. method.name=lisa)")
    if not pairs:
        return {}
    try:
        return flatten(OmegaConf.to_container(OmegaConf.from_dotlist(pairs)))
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot parse {what}s: {str(e).splitlines()[0]}") from None


def _labels(axis: str, values: list) -> list[dict]:
    """Display coordinates of each value of one axis. A dict value shows the axis key's own value
    plus the keys that tell it apart from other values with the same one (e.g. ``train.lr`` in a
    per-method learning-rate sweep); a dict without the axis key shows its settings."""
    flats = [flatten(v) if isinstance(v, dict) else {axis: v} for v in values]
    out = []
    for flat in flats:
        if axis in flat:
            same = [f for f in flats if f.get(axis) == flat[axis]]
            varying = [k for k in flat if k != axis and len({repr(f.get(k)) for f in same}) > 1]
            out.append({axis: flat[axis], **{k: flat[k] for k in varying}})
        else:
            out.append({axis: ",".join(f"{k}={v}" for k, v in flat.items()) or "default"})
    return out


def _points(exp: Experiment) -> list[tuple[dict, dict]]:
    """(dotted deltas, display point) for every grid point, in ``exp.run_order`` (see there)."""
    points = list(_grid_points(exp))
    if not exp.run_order:
        return points
    keyed = sorted(range(len(points)), key=lambda i: (exp.priority(points[i][0]), points[i][0]["seed"], i))
    return [points[i] for i in keyed]


def _grid_points(exp: Experiment) -> Iterable[tuple[dict, dict]]:
    """(dotted deltas, display point) for every grid point, seeds innermost."""
    keys = list(exp.axes)
    labels = {k: _labels(k, list(exp.axes[k])) for k in keys}
    for combo in itertools.product(*(range(len(exp.axes[k])) for k in keys)):
        settings: dict[str, Any] = {}
        coords: dict[str, Any] = {}
        for key, i in zip(keys, combo):
            value = exp.axes[key][i]
            settings.update(flatten(value) if isinstance(value, dict) else {key: value})
            coords.update(labels[key][i])
        for seed in exp.seeds_for(settings):
            yield {**settings, "seed": seed}, {**coords, "seed": seed}


def _axis_keys(exp: Experiment) -> set[str]:
    keys: set[str] = set()
    for key, values in exp.axes.items():
        for v in values:
            keys.update(flatten(v) if isinstance(v, dict) else {key})
    return keys | {"seed"}


def expand(exp: Experiment, *, budget: Optional[str] = None, overrides: Iterable[str] = (),
           runs_dir: Optional[str] = None, only: Iterable[str] = ()) -> list[Run]:
    """All runs of ``exp``, in its ``run_order`` (default: axes in declared order, seeds innermost).

    Args:
        exp: the experiment.
        budget: a named variant of the experiment (``exp.budgets``), merged over its base.
        overrides: ``key=value`` strings applied to the base of every run (not to an axis key).
        runs_dir: root of run directories, stored (absolute) in every run's ``log.runs_dir``.
        only: ``key=value`` filters on the resolved configs (see :func:`select`).

    Returns:
        The runs, each with ``cfg.log.experiment == exp.name``.

    Raises:
        ConfigError: unknown key (with the closest valid key), invalid value, an override of an axis
            key, two grid points with the same run id, or ``only`` matching nothing.
    """
    base = exp.base_for(budget)
    extra = parse_overrides(overrides)
    clash = sorted(set(extra) & _axis_keys(exp))
    if clash:
        raise ConfigError(f"'{clash[0]}' is varied by experiment '{exp.name}'; select values with "
                          f"--only {clash[0]}=VALUE instead of overriding it")
    base.update(extra)
    base["log.experiment"] = exp.name
    if runs_dir is not None:
        base["log.runs_dir"] = str(Path(runs_dir).resolve())
    runs: list[Run] = []
    seen: dict[str, Run] = {}
    for deltas, point in _points(exp):
        try:
            cfg = config_from_dicts([nest({**base, **deltas})])
        except ConfigError as e:
            label = " ".join(f"{k}={v}" for k, v in point.items())
            raise ConfigError(f"experiment '{exp.name}', run {label}: {e}") from None
        run = Run(cfg, run_id(cfg), point)
        if run.run_id in seen:
            raise ConfigError(f"experiment '{exp.name}' makes two runs with the same id {run.run_id}: "
                              f"'{seen[run.run_id].label()}' and '{run.label()}' resolve to the same config; "
                              "remove one of the values")
        seen[run.run_id] = run
        runs.append(run)
    return select(runs, only, exp.name)


def _matches(value: Any, wanted: str) -> bool:
    if isinstance(value, bool):
        return wanted.lower() in (("true", "1", "yes") if value else ("false", "0", "no"))
    if isinstance(value, (int, float)):
        try:
            return float(wanted) == float(value)
        except ValueError:
            return False
    return str(value) == wanted


def select(runs: list[Run], only: Iterable[str], experiment: str = "the grid") -> list[Run]:
    """Keep the runs whose resolved config matches every ``key=value`` filter.

    Filters on the same key are alternatives (``--only seed=0 --only seed=1``), as are
    comma-separated values (``method.name=lisa,grass``); filters on different keys must all hold.

    Raises:
        ConfigError: a filter is not key=value, names no config key, or no run matches.
    """
    wanted: dict[str, list[str]] = {}
    for f in only:
        key, sep, value = f.partition("=")
        if not sep or not key:
            raise ConfigError(f"--only '{f}' is not key=value (e.g. --only method.name=lisa)")
        wanted.setdefault(key.strip(), []).extend(v.strip() for v in value.split(","))
    if not wanted or not runs:
        return runs
    flats = [flatten(to_dict(r.cfg)) for r in runs]
    known = set().union(*flats)
    for key in wanted:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else "it is not a config key"
            raise ConfigError(f"--only {key}=...: unknown config key '{key}': {hint}")
    kept = [r for r, flat in zip(runs, flats)
            if all(key in flat and any(_matches(flat[key], v) for v in vals) for key, vals in wanted.items())]
    if not kept:
        present = {key: sorted({str(flat.get(key)) for flat in flats}) for key in wanted}
        values = "; ".join(f"{k} takes {', '.join(v)}" for k, v in present.items())
        raise ConfigError(f"--only {' '.join(only)} matches none of the {len(runs)} runs of {experiment} "
                          f"({values})")
    return kept
