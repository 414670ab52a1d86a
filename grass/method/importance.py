"""Layer importance: the mean gradient norm (MGN) of each decoder layer.

Per step (DESIGN.md 2.2): ``rms_l = ||g_l||_2 / sqrt(N_l)`` over all parameters of layer ``l``,
with ``g`` the accumulated gradient of the optimizer step. Over a window of steps the layer's
MGN is the mean of its per-step RMS. The probe fills every layer's window; afterwards only active
layers have gradients, and a refresh (2.5) blends their window mean into the estimate with an EMA.
"""
from __future__ import annotations

import math

import torch

from grass.distributed.shards import local_tensor


def grad_sq_sum(params) -> torch.Tensor:
    """Sum of squared gradient entries over ``params`` (float64 scalar, on the gradients' device:
    one transfer per layer when it is read, not one per tensor). Under FSDP, of this rank's shards
    only: the sum over ranks (:func:`grass.distributed.shards.sum_over_shards`) is the whole one."""
    sums = [local_tensor(p.grad).detach().double().pow(2).sum() for p in params if p.grad is not None]
    return torch.stack(sums).sum() if sums else torch.zeros((), dtype=torch.float64)


def layer_rms(sq_sum: torch.Tensor | float, numel: int) -> float:
    """``sqrt(sum g^2 / N)``: the gradient RMS of one layer."""
    return math.sqrt(float(sq_sum) / numel)


class MGNEstimator:
    """Running MGN estimate ``m`` of ``L`` layers with a window of per-step RMS values.

    Attributes:
        mgn: float64 tensor ``[L]``, the current estimate (ones until the probe ends).
        initialized: whether the probe has set ``mgn``.
    """

    def __init__(self, n_layers: int, alpha: float):
        self.alpha = alpha
        self.mgn = torch.ones(n_layers, dtype=torch.float64)
        self.initialized = False
        self.win_sum = torch.zeros(n_layers, dtype=torch.float64)
        self.win_count = torch.zeros(n_layers, dtype=torch.long)

    def add(self, layer: int, rms: float) -> None:
        """Record layer ``layer``'s gradient RMS of one step."""
        self.win_sum[layer] += rms
        self.win_count[layer] += 1

    def window_mean(self) -> torch.Tensor:
        """Mean RMS per layer over the window (NaN where a layer had no gradient)."""
        mean = self.win_sum / self.win_count.clamp(min=1).double()
        mean[self.win_count == 0] = float("nan")
        return mean

    def finish_probe(self) -> None:
        """Set ``m_l`` to the probe window's mean for every layer (DESIGN 2.3)."""
        if bool((self.win_count == 0).any()):
            missing = (self.win_count == 0).nonzero().flatten().tolist()
            raise RuntimeError(f"probe measured no gradient for layers {missing}")
        self.mgn = self.window_mean()
        self.initialized = True
        self.clear_window()

    def refresh(self) -> list[int]:
        """``m_l <- alpha * window_mean_l + (1 - alpha) * m_l`` for layers seen in the window;
        others keep their value (DESIGN 2.5). Returns the refreshed layers."""
        seen = (self.win_count > 0).nonzero().flatten().tolist()
        if seen:
            mean = self.window_mean()
            self.mgn[seen] = self.alpha * mean[seen] + (1 - self.alpha) * self.mgn[seen]
        self.clear_window()
        return seen

    def clear_window(self) -> None:
        self.win_sum.zero_()
        self.win_count.zero_()

    def state_dict(self) -> dict:
        return {"mgn": self.mgn.clone(), "initialized": self.initialized, "win_sum": self.win_sum.clone(),
                "win_count": self.win_count.clone()}

    def load_state_dict(self, s: dict) -> None:
        self.mgn, self.initialized = s["mgn"].clone(), s["initialized"]
        self.win_sum, self.win_count = s["win_sum"].clone(), s["win_count"].clone()
