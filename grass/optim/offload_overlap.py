"""``overlap="backward"`` of :class:`grass.optim.offload.LayerwiseOffloadAdamW` (DESIGN section 2.7).

Beyond the paper: each unit is updated from ``register_post_accumulate_grad_hook`` as soon as its
gradients are complete, so the optimizer's work and copies overlap the rest of backward and a
unit's gradients are freed at once. The hooks hold the optimizer by a weak reference and are
removed when it is collected: a discarded optimizer never keeps updating the model (issue 15).
"""
from __future__ import annotations

import functools
import weakref

import torch

from grass.errors import ConfigError
from grass.optim.offload_state import Chunk

OVERLAPS = ("step", "backward")


class BackwardOverlap:
    """Mixin of the engine: its ``_stores``, ``_ready``, ``_done``, ``_hooks``, ``overlap`` and
    ``_update_unit`` drive the hooks."""

    def attach_backward_hooks(self) -> list:
        """Register post-accumulate-grad hooks that update each unit as soon as it is complete.

        A unit is complete when every parameter of it that requires grad has had its gradient
        accumulated; it is updated at once and its gradients are freed (``p.grad = None``), so
        they never all exist together. ``step()`` then only finishes outstanding work. Hooks
        registered earlier (e.g. importance measurement) run first. Idempotent.

        Returns:
            The hook handles (also kept; see :meth:`detach_backward_hooks`).

        Raises:
            ConfigError: when the optimizer was built with ``overlap="step"``.
        """
        if self.overlap != "backward":
            raise ConfigError("attach_backward_hooks() needs method.overlap=backward")
        if not self._hooks:
            ref = weakref.ref(self)  # a hook must not keep a discarded optimizer alive (and updating)
            for ui, s in enumerate(self._stores):
                for j, p in enumerate(s.params):
                    # torch hooks only tensors that require grad, and the layer-wise methods froze
                    # every layer but the active ones: register on all, then restore the flag.
                    flag = p.requires_grad
                    p.requires_grad_(True)
                    try:
                        self._hooks.append(p.register_post_accumulate_grad_hook(
                            functools.partial(_grad_ready_hook, ref, ui, j)))
                    finally:
                        p.requires_grad_(flag)
            weakref.finalize(self, _remove_hooks, self._hooks)
        return self._hooks

    def detach_backward_hooks(self) -> None:
        """Remove the hooks of :meth:`attach_backward_hooks` (e.g. around a probing phase)."""
        _remove_hooks(self._hooks)

    def _on_grad_ready(self, ui: int, j: int, p: torch.Tensor) -> None:
        if p.grad is None or ui in self._done:
            return  # an earlier hook consumed the gradient, or the unit is already updated
        self._ready[ui].add(j)
        s = self._stores[ui]
        if all(k in self._ready[ui] for k, q in enumerate(s.params) if q.requires_grad):
            with torch.no_grad():
                updated = self._update_unit(s, self._predict_next(ui))
            for k in updated:
                s.params[k].grad = None
            self._done.add(ui)

    def _predict_next(self, ui: int) -> Chunk | None:
        # Backward runs from the head down, so the next unit to complete is the nearest earlier
        # one with trainable parameters; a wrong guess costs one copy, never correctness.
        for k in range(ui - 1, -1, -1):
            if k not in self._done:
                first = next((c for c in self._stores[k].chunks if c.trainable()), None)
                if first is not None:
                    return first
        return None


def _grad_ready_hook(ref: weakref.ref, ui: int, j: int, p: torch.Tensor) -> None:
    opt = ref()
    if opt is not None:
        opt._on_grad_ready(ui, j, p)


def _remove_hooks(handles: list) -> None:
    for h in handles:
        h.remove()
    handles.clear()


def check_overlap(overlap: str, grad_accum: int, max_grad_norm: float) -> None:
    """Reject option combinations that ``overlap`` cannot honour (DESIGN section 3: fail early).

    Raises:
        ConfigError: with the setting to change.
    """
    if overlap not in OVERLAPS:
        raise ConfigError(f"unknown method.overlap={overlap!r}; valid: {', '.join(OVERLAPS)}")
    if overlap == "backward" and grad_accum > 1:
        raise ConfigError("overlap=backward updates each layer during backward, so it cannot accumulate "
                          f"gradients (train.grad_accum={grad_accum}); set train.grad_accum=1 or method.overlap=step")
    if overlap == "backward" and max_grad_norm > 0:
        raise ConfigError("overlap=backward updates each layer during backward, but global-norm clipping needs "
                          f"every gradient first (train.max_grad_norm={max_grad_norm}); set train.max_grad_norm=0 "
                          "or method.overlap=step")
