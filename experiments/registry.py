"""Experiment registry: every module ``experiments/defs/<name>.py`` defines ``EXPERIMENT``.

To add an experiment, add one file there (see ``experiments/defs/smoke.py``); nothing else to edit.
"""
from __future__ import annotations

import importlib
import pkgutil

from experiments.spec import Experiment
from grass.errors import GrassError


def experiment_names() -> list[str]:
    """Names of the shipped experiments, sorted."""
    import experiments.defs as defs

    return sorted(m.name for m in pkgutil.iter_modules(defs.__path__) if not m.name.startswith("_"))


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``.

    Raises:
        GrassError: no such experiment (the message lists the valid names), or a definition file
            without a matching ``EXPERIMENT``.
    """
    names = experiment_names()
    if name not in names:
        raise GrassError(f"unknown experiment '{name}'; valid experiments: {', '.join(names)}")
    module = importlib.import_module(f"experiments.defs.{name}")
    exp = getattr(module, "EXPERIMENT", None)
    if not isinstance(exp, Experiment) or exp.name != name:
        raise GrassError(f"experiments/defs/{name}.py must define EXPERIMENT = Experiment(name='{name}', ...)")
    return exp
