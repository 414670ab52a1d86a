"""Measure activation memory on any device: the check behind the memory model's estimate."""
from __future__ import annotations

import weakref

import torch


class ActivationTracker:
    """Peak bytes of tensors created while active, parameters, buffers and gradients excluded.

    A ``TorchDispatchMode`` sees every tensor an operator returns; a weak reference to its storage
    says when the storage is freed. Works on any device, so the activation estimate can be checked
    on a CPU. Use: ``with ActivationTracker(model) as t: loss.backward()...``; then ``t.peak``.
    """

    def __init__(self, model: torch.nn.Module):
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                tracker._track(out)
                return out

        self._mode = _Mode()
        self._skip = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
        self._live: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self._hooks = [p.register_post_accumulate_grad_hook(self._grad_ready)
                       for p in model.parameters() if p.requires_grad]

    def _grad_ready(self, p: torch.Tensor) -> None:  # a gradient is not an activation
        if p.grad is not None:
            key = p.grad.untyped_storage().data_ptr()
            self.current -= self._live.pop(key, 0)
            self._skip.add(key)

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def _track(self, out) -> None:
        from torch.utils._pytree import tree_flatten

        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            st = t.untyped_storage()
            key = st.data_ptr()
            if key == 0 or key in self._live or key in self._skip:
                continue
            self._live[key] = st.nbytes()
            self.current += st.nbytes()
            self.peak = max(self.peak, self.current)
            weakref.finalize(st, self._free, key)

    def __enter__(self) -> "ActivationTracker":
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)
        for h in self._hooks:
            h.remove()
