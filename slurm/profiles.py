"""Named SLURM cluster profiles: YAML files that say where and how jobs run.

A profile is looked up as ``slurm/profiles/<name>.yaml`` (shipped), then
``$GRASS_PROFILES_DIR/<name>.yaml``; ``--profile path/to/file.yaml`` names a file directly.
Nothing is guessed: every field in :data:`REQUIRED` must be present (``null`` is allowed where noted
and means "do not pass this option"); unknown fields are errors. ``example.yaml`` documents every field.
"""
from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import yaml

from grass.errors import ConfigError

SHIPPED = Path(__file__).parent / "profiles"
PROFILES_ENV = "GRASS_PROFILES_DIR"
# field -> may it be null?
REQUIRED = {"partition": True, "time_min": False, "nodes": False, "gpus_per_node": False,
            "cpus_per_task": False, "mem_gb": True}


@dataclass
class Profile:
    """Where and how one run's job is scheduled (see ``slurm/profiles/example.yaml``)."""

    name: str
    partition: Optional[str]
    time_min: int
    nodes: int
    gpus_per_node: int
    cpus_per_task: int
    mem_gb: Optional[float]
    tasks_per_node: int = 1
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    signal_delay_s: int = 90
    max_num_timeout: int = 3
    array_parallelism: Optional[int] = None
    setup: list = field(default_factory=list)
    additional_parameters: dict = field(default_factory=dict)
    python: Optional[str] = None

    def with_resources(self, overrides: dict[str, Any]) -> "Profile":
        """A copy with an experiment's resource needs (profile field -> value) applied."""
        return _validated(self.name, {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"},
                                      **overrides})

    def executor_parameters(self, job_name: str, max_parallel: Optional[int] = None) -> dict[str, Any]:
        """Keyword arguments for ``submitit.SlurmExecutor.update_parameters``."""
        params: dict[str, Any] = {
            "job_name": job_name, "time": self.time_min, "nodes": self.nodes,
            "ntasks_per_node": self.tasks_per_node, "cpus_per_task": self.cpus_per_task,
            "signal_delay_s": self.signal_delay_s,
        }
        optional = {"partition": self.partition, "account": self.account, "qos": self.qos,
                    "constraint": self.constraint, "gpus_per_node": self.gpus_per_node or None,
                    "mem": None if self.mem_gb is None else f"{int(round(self.mem_gb * 1024))}M"}
        params.update({k: v for k, v in optional.items() if v is not None})
        limit = max_parallel or self.array_parallelism
        if limit:
            params["array_parallelism"] = limit
        if self.setup:
            params["setup"] = list(self.setup)
        if self.additional_parameters:
            params["additional_parameters"] = dict(self.additional_parameters)
        return params


def profile_names() -> list[str]:
    """Names of the available profiles (shipped and in ``$GRASS_PROFILES_DIR``)."""
    names = {p.stem for p in SHIPPED.glob("*.yaml")}
    extra = os.environ.get(PROFILES_ENV)
    if extra and Path(extra).is_dir():
        names |= {p.stem for p in Path(extra).glob("*.yaml")}
    return sorted(names)


def _find(name: str) -> Path:
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        p = Path(name)
        if not p.is_file():
            raise ConfigError(f"profile file '{name}' does not exist")
        return p
    candidates = [SHIPPED / f"{name}.yaml"]
    if os.environ.get(PROFILES_ENV):
        candidates.append(Path(os.environ[PROFILES_ENV]) / f"{name}.yaml")
    for p in candidates:
        if p.is_file():
            return p
    raise ConfigError(f"unknown profile '{name}'; valid profiles: {', '.join(profile_names())} "
                      f"(or a path to a YAML file, or a file in ${PROFILES_ENV})")


def _check_type(name: str, key: str, value: Any, kind: type) -> None:
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise ConfigError(f"profile '{name}': '{key}' must be {kind.__name__}, got {value!r}")


_TYPES = {"partition": str, "time_min": int, "nodes": int, "gpus_per_node": int, "cpus_per_task": int,
          "mem_gb": float, "tasks_per_node": int, "account": str, "qos": str, "constraint": str,
          "signal_delay_s": int, "max_num_timeout": int, "array_parallelism": int, "setup": list,
          "additional_parameters": dict, "python": str}


def _validated(name: str, data: dict[str, Any]) -> Profile:
    valid = [f.name for f in fields(Profile) if f.name != "name"]
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else f"valid fields: {', '.join(valid)}"
            raise ConfigError(f"profile '{name}': unknown field '{key}': {hint}")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ConfigError(f"profile '{name}' lacks required field(s) {', '.join(missing)} "
                          "(see slurm/profiles/example.yaml; nothing is guessed)")
    for key, value in data.items():
        if value is None:
            if key in REQUIRED and not REQUIRED[key]:
                raise ConfigError(f"profile '{name}': '{key}' must be set, not null")
            continue
        _check_type(name, key, value, _TYPES[key])
    for key in ("time_min", "nodes", "cpus_per_task", "tasks_per_node"):
        if key in data and data[key] is not None and data[key] <= 0:
            raise ConfigError(f"profile '{name}': '{key}' must be positive, got {data[key]}")
    if data["gpus_per_node"] < 0:
        raise ConfigError(f"profile '{name}': 'gpus_per_node' must be >= 0, got {data['gpus_per_node']}")
    clean = {k: v for k, v in data.items() if v is not None or k in REQUIRED}
    return Profile(name=name, **clean)


def load_profile(name: str) -> Profile:
    """Load and validate a profile by name or path.

    Raises:
        ConfigError: unknown profile (valid names listed), unparsable YAML, missing required field,
            unknown field (closest valid one named), wrong type.
    """
    path = _find(name)
    label = path.stem
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse profile '{path}': {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"profile '{path}' must hold a mapping of fields")
    return _validated(label, data)


def python_for(profile: Profile) -> str:
    """The Python interpreter jobs run: the profile's ``python`` or the launching one."""
    return profile.python or sys.executable
