"""The :class:`Experiment` definition: a grid declared as data.

An experiment answers one question. It holds a base config (dotted keys or nested sections, as in
a YAML delta), the axes it varies (dotted key -> list of values, where one value may also be a dict
of several dotted keys set together, e.g. a method with its own learning rate), the seeds, the
cluster resources one run needs, and the paper tables/figures it feeds. ``budgets`` holds named
variants (e.g. ``paper`` for GPUs) as extra base deltas.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from grass.errors import ConfigError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-4}, "seed": 0}`` -> ``{"train.lr": 1e-4, "seed": 0}``.

    Dotted keys may be mixed with nested sections. Lists are leaves (no config value is a dict).
    """
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def nest(dotted: dict[str, Any]) -> dict:
    """Inverse of :func:`flatten`: ``{"train.lr": 1e-4}`` -> ``{"train": {"lr": 1e-4}}``."""
    out: dict = {}
    for key, v in dotted.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key '{key}' sets a field inside '{p}', which is not a section")
        node[leaf] = v
    return out


def _matches(settings: dict[str, Any], match: dict) -> bool:
    """Whether flattened ``settings`` hold every ``match`` value (a list or tuple: any of its values)."""
    return all((settings.get(k) in v) if isinstance(v, (list, tuple)) else settings.get(k) == v
               for k, v in flatten(match).items())


@dataclass(frozen=True)
class Resources:
    """What one run of the experiment needs from a cluster. ``None`` = take the profile's value.

    Attributes:
        profile: the cluster profile used when ``grass launch --cluster slurm`` gets no ``--profile``.
        gpus: GPUs per node.
        time_min: wall-clock limit of one job, in minutes.
        cpus: CPUs per task.
        mem_gb: memory per node in GiB.
    """

    profile: Optional[str] = None
    gpus: Optional[int] = None
    time_min: Optional[int] = None
    cpus: Optional[int] = None
    mem_gb: Optional[float] = None

    def overrides(self) -> dict[str, Any]:
        """The profile fields this experiment sets (profile field name -> value)."""
        pairs = {"gpus_per_node": self.gpus, "time_min": self.time_min, "cpus_per_task": self.cpus,
                 "mem_gb": self.mem_gb}
        return {k: v for k, v in pairs.items() if v is not None}


@dataclass
class Experiment:
    """A grid of runs that answers one question.

    Attributes:
        name: identifier; runs land in ``<runs_dir>/<name>/<run_id>``.
        question: the question the experiment answers, one sentence.
        base: config deltas shared by every run (dotted keys or nested sections).
        axes: dotted key -> values; the grid is their Cartesian product (times ``seeds``). A value
            that is a dict sets several dotted keys together (the axis key is then only a label).
        seeds: one run per seed for every grid point.
        resources: what one run needs from a cluster.
        feeds: the paper tables/figures this experiment produces (e.g. ``"table2"``, ``"fig5"``).
        description: longer notes: budget rule, what to look at.
        budgets: named variants, e.g. ``{"paper": {"train.max_steps": 1000}}``, merged over ``base``.
        seed_plan: ``[(match, seeds), ...]``: grid points whose axis settings match ``match``
            (dotted key -> value, or a list of accepted values) get ``seeds`` instead of
            ``seeds``; the first matching entry wins. Spends seeds where a comparison is decided,
            e.g. more seeds for the layer-wise methods on one task.
        run_order: ``[match, ...]``: the order runs are launched in (and listed, and take SLURM
            array indices). Runs matching the first entry come first, then the second, ..., then
            the rest; within one group seed-major (every grid point of seed 0, then seed 1, ...),
            so a grid interrupted at any point has finished the comparisons it decides first.
            Empty: grid order (axes in declared order, seeds innermost).
    """

    name: str
    question: str
    base: dict = field(default_factory=dict)
    axes: dict = field(default_factory=dict)
    seeds: list = field(default_factory=lambda: [0])
    resources: Resources = field(default_factory=Resources)
    feeds: list = field(default_factory=list)
    description: str = ""
    budgets: dict = field(default_factory=dict)
    seed_plan: list = field(default_factory=list)
    run_order: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"experiment name '{self.name}' must be lower_snake_case")
        if not self.question.strip():
            raise ConfigError(f"experiment '{self.name}' needs a question")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"experiment '{self.name}': seeds must be a non-empty list without repeats, "
                              f"got {self.seeds}")
        if "seed" in self.axes:
            raise ConfigError(f"experiment '{self.name}': put seeds in 'seeds', not in 'axes'")
        for key, values in self.axes.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(f"experiment '{self.name}': axis '{key}' needs a non-empty list of values")
        for entry in self.seed_plan:
            ok = isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], dict)
            seeds = list(entry[1]) if ok else []
            if not ok or not seeds or len(set(seeds)) != len(seeds):
                raise ConfigError(f"experiment '{self.name}': each seed_plan entry is (match dict, seeds without "
                                  f"repeats), got {entry!r}")
        if not all(isinstance(m, dict) for m in self.run_order):
            raise ConfigError(f"experiment '{self.name}': run_order is a list of match dicts, got {self.run_order!r}")
        for budget, delta in self.budgets.items():
            if not isinstance(delta, dict):
                raise ConfigError(f"experiment '{self.name}': budget '{budget}' must be a dict of config deltas")

    def base_for(self, budget: Optional[str] = None) -> dict[str, Any]:
        """The flattened base config, with the named budget's deltas merged over it.

        Raises:
            ConfigError: unknown budget (the message lists the valid ones).
        """
        base = flatten(self.base)
        if budget is not None:
            if budget not in self.budgets:
                valid = ", ".join(self.budgets) or "none defined"
                raise ConfigError(f"experiment '{self.name}' has no budget '{budget}'; valid budgets: {valid}")
            base.update(flatten(self.budgets[budget]))
        return base

    def seeds_for(self, settings: dict[str, Any]) -> list:
        """The seeds of a grid point, from its flattened axis settings (see ``seed_plan``)."""
        for match, seeds in self.seed_plan:
            if _matches(settings, match):
                return list(seeds)
        return list(self.seeds)

    def priority(self, settings: dict[str, Any]) -> int:
        """Index of the first ``run_order`` entry a run's settings match (``len(run_order)``: none)."""
        return next((i for i, match in enumerate(self.run_order) if _matches(settings, match)), len(self.run_order))

    @property
    def grid_size(self) -> int:
        """Number of runs (grid points times their seeds), before ``--only`` filtering."""

        total = 0
        for combo in itertools.product(*self.axes.values()):
            settings: dict[str, Any] = {}
            for key, value in zip(self.axes, combo):
                settings.update(flatten(value) if isinstance(value, dict) else {key: value})
            total += len(self.seeds_for(settings))
        return total
