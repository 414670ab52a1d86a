"""The memory planner: predicted bytes of a fine-tuning run from the model's config alone.

:mod:`~grass.memory.arch` (shape facts and parameter tensors), :mod:`~grass.memory.model`
(``predict``), :mod:`~grass.memory.activations` (the activation estimate),
:mod:`~grass.memory.tracker` (measures activations on any device, the check behind the estimate)
and :mod:`~grass.memory.commands` (``grass memory``). docs/memory.md states the formulas.
"""
