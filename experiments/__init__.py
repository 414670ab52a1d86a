"""Experiments as data: an :class:`~experiments.spec.Experiment` names a question, a base config and
the axes it varies; :mod:`experiments.grid` expands it into runs with stable ids, and ``grass launch``
submits them (see :mod:`slurm`). One file per experiment lives in ``experiments/defs/``.
"""
from experiments.spec import Experiment, Resources

__all__ = ["Experiment", "Resources"]
