"""GRASS (Tian et al. 2026, arXiv 2604.07808): gradient-based adaptive layer-wise importance sampling.

Steps ``0 .. T_p-1`` probe: every decoder layer requires grad, nothing is updated, and each
layer's gradient RMS is measured (in a post-accumulate-grad hook that frees the gradient at once,
so the probe never holds every layer's gradient). From step ``T_p`` on, gamma layers are drawn
from ``softmax(normalize(MGN) / tau)`` every ``T_s`` steps, the active layers' RMS fills a window,
and every ``T_u`` steps the window refreshes their MGN with an EMA (``adaptive``; ``static`` is the
paper's GRASS* ablation and never refreshes).
"""
from __future__ import annotations

import torch
from torch import nn

from grass.layers import set_requires_grad
from grass.layerwise import LayerwiseMethod
from grass.method.config import GRASSConfig
from grass.method.importance import MGNEstimator, grad_sq_sum, layer_rms
from grass.method.sampler import draw_layers, layer_probs


class GRASS(LayerwiseMethod):
    name = "grass"
    Config = GRASSConfig

    def __init__(self, cfg: GRASSConfig, run_cfg):
        super().__init__(cfg, run_cfg)
        self.estimator: MGNEstimator | None = None
        self._probing = False
        self._last_micro = True
        # Per-layer sum of squared gradients seen by the hooks this step, kept on the gradient's
        # device (0-d tensors) so a hook never waits for the GPU; read once per step.
        self._hook_sq: list = []
        self._numel: list[int] = []
        self._step_mgn: list[float] = []  # the estimate this step's probabilities came from
        # Set before prepare() by a loop that clips the gradients before on_after_backward can see
        # them (transformers.Trainer, grass.integrations.hf): the active layers' RMS is then taken
        # in the post-accumulate-grad hooks, on the accumulated gradient before clipping.
        self.measure_in_backward = False

    # -- set-up ----------------------------------------------------------------------------------
    def prepare(self, model: nn.Module) -> nn.Module:
        model = super().prepare(model)
        n = len(self.lmap)
        self.estimator = MGNEstimator(n, self.cfg.alpha)
        self._numel = [sum(p.numel() for p in self.lmap.layer_params(i)) for i in range(n)]
        self._hook_sq = [0.0] * n
        # Under DDP a post-accumulate-grad hook sees this rank's local gradient: it fires before
        # DDP all-reduces the bucket (and freeing the gradient there would feed DDP a missing one).
        # The RMS is not linear in the gradient, so the local RMS cannot be averaged instead. So
        # under DDP the probe measures the all-reduced gradient in on_after_backward; this costs no
        # memory beyond DDP's own buckets, of which the gradients are views (gradient_as_bucket_view).
        from grass.distributed import ddp_active

        self._probe_in_hook = self.cfg.probe_in_hook and not ddp_active()
        # With overlap=backward the offload engine updates and frees each layer's gradient inside
        # backward, so the active layers' RMS is taken in the hook too (registered here, before the
        # engine's hooks, so it runs first). overlap=backward is refused under DDP.
        self._active_in_hook = self.cfg.overlap == "backward" or self.measure_in_backward
        if self._probe_in_hook or self._active_in_hook:
            for i in range(n):
                for p in self.lmap.layer_params(i):
                    p.requires_grad_(True)  # torch only hooks tensors that require grad
                    p.register_post_accumulate_grad_hook(self._make_probe_hook(i))
                    p.requires_grad_(False)
        return model

    def _make_probe_hook(self, layer: int):
        def hook(p: torch.Tensor) -> None:
            # Only the step's last micro-batch holds the accumulated gradient the RMS is defined on.
            if p.grad is None or not self._last_micro:
                return
            if self._probing and self._probe_in_hook:
                self._hook_sq[layer] = self._hook_sq[layer] + p.grad.detach().double().pow(2).sum()
                p.grad = None  # free at once: the probe updates nothing (and the engine skips it)
            elif not self._probing and self._active_in_hook:
                self._hook_sq[layer] = self._hook_sq[layer] + p.grad.detach().double().pow(2).sum()
        return hook

    def num_probe_steps(self) -> int:
        return self.cfg.probe_steps

    def first_draw_step(self) -> int:
        return self.cfg.probe_steps

    def is_update_step(self, step: int) -> bool:
        return step >= self.cfg.probe_steps

    # -- hooks -----------------------------------------------------------------------------------
    def on_step_start(self, step: int) -> None:
        p_steps = self.cfg.probe_steps
        if step < p_steps:
            if not self._probing:  # probe: every layer measured, embeddings/head not needed
                self._probing = True
                self._set_always_trained(False)
                for i in range(len(self.lmap)):
                    set_requires_grad(self.lmap.layer_params(i), True)
        elif step == p_steps:
            self._end_probe()
        elif self.cfg.mode == "adaptive" and (step - p_steps) % self.cfg.refresh_every == 0:
            self.estimator.refresh()
        self._step_mgn = [float(x) for x in self.estimator.mgn]
        super().on_step_start(step)

    def _end_probe(self) -> None:
        if self._probing:
            self.estimator.finish_probe()
            for i in range(len(self.lmap)):
                set_requires_grad(self.lmap.layer_params(i), False)
            self._set_always_trained(True)
            self._probing = False
        self.active = []

    def before_backward(self, step: int, last_micro_batch: bool) -> None:
        self._last_micro = last_micro_batch

    def on_after_backward(self, step: int) -> None:
        if self._probing:
            for i in range(len(self.lmap)):
                params = self.lmap.layer_params(i)
                sq = self._hook_sq[i] if self._probe_in_hook else grad_sq_sum(params)
                self.estimator.add(i, layer_rms(sq, self._numel[i]))
                for p in params:
                    p.grad = None
            self._hook_sq = [0.0] * len(self.lmap)
        else:
            for i in self.active:
                sq = self._hook_sq[i] if self._active_in_hook else grad_sq_sum(self.lmap.layer_params(i))
                self.estimator.add(i, layer_rms(sq, self._numel[i]))
            self._hook_sq = [0.0] * len(self.lmap)

    # -- sampling --------------------------------------------------------------------------------
    def probs(self) -> torch.Tensor:
        if not self.estimator.initialized:
            return super().probs()
        return layer_probs(self.estimator.mgn, self.cfg.temperature, self.cfg.normalize)

    def draw(self) -> list[int]:
        return draw_layers(self.probs(), self.cfg.n_active_layers, self.generator)

    # -- records ---------------------------------------------------------------------------------
    def stats(self) -> dict:
        out = super().stats()
        # null while the probe is still measuring: the estimate is a placeholder until it ends
        out["mgn"] = [round(x, 8) for x in self._step_mgn] if self.estimator.initialized else None
        out["probe"] = self._probing  # probe steps update nothing, so active_layers is empty there
        return out

    def summary(self) -> dict:
        return {"mgn": [float(x) for x in self.estimator.mgn], "layer_probs": [float(x) for x in self.probs()]}

    def state_dict(self) -> dict:
        return super().state_dict() | {"estimator": self.estimator.state_dict(), "probing": self._probing}

    def load_state_dict(self, state: dict) -> None:
        self.estimator.load_state_dict(state["estimator"])
        self._probing = False  # resumed inside the probe: the next on_step_start re-enters it
        if not state["probing"]:
            self._set_always_trained(True)
            for i in range(len(self.lmap)):
                set_requires_grad(self.lmap.layer_params(i), False)
        super().load_state_dict(state)
