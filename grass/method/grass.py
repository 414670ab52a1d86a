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

from grass.distributed.shards import local_tensor, sum_over_shards
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
        self._model: nn.Module | None = None
        # activation checkpointing switched on for the probe (and off after it): False or how HF's
        # input-grad hook stood before it (see _checkpoint_probe)
        self._probe_ckpt: bool | str = False
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
        self._model = model
        n = len(self.lmap)
        self.estimator = MGNEstimator(n, self.cfg.alpha)
        self._numel = [sum(p.numel() for p in self.lmap.layer_params(i)) for i in range(n)]
        self._hook_sq = [0.0] * n
        # Under DDP a post-accumulate-grad hook sees this rank's local gradient: it fires before
        # DDP all-reduces the bucket (and freeing the gradient there would feed DDP a missing one).
        # The RMS is not linear in the gradient, so the local RMS cannot be averaged instead. So
        # under DDP the probe measures the all-reduced gradient in on_after_backward; this costs no
        # memory beyond DDP's own buckets, of which the gradients are views (gradient_as_bucket_view).
        # Under FSDP the hooks move to the sharded parameters (on_sharded), where FSDP2 calls them
        # after the reduce-scatter: the probe frees each layer's shards as they arrive.
        from grass.distributed import ddp_active

        self._probe_in_hook = self.cfg.probe_in_hook and not ddp_active()
        # With overlap=backward the offload engine updates and frees each layer's gradient inside
        # backward, so the active layers' RMS is taken in the hook too (registered here, before the
        # engine's hooks, so it runs first). overlap=backward is refused under DDP and FSDP.
        self._active_in_hook = self.cfg.overlap == "backward" or self.measure_in_backward
        self._register_hooks()
        return model

    def on_sharded(self, model: nn.Module) -> None:
        """FSDP replaced the parameters: measure the probe in hooks on the sharded ones. FSDP2 runs a
        sharded parameter's post-accumulate-grad hooks once its reduce-scattered shard is in
        ``.grad``; the whole RMS is then the all-reduced sum of every rank's shard sums."""
        super().on_sharded(model)
        self._probe_in_hook = self.cfg.probe_in_hook
        self._register_hooks()

    def _register_hooks(self) -> None:
        if self._probe_in_hook or self._active_in_hook:
            for i in range(len(self.lmap)):
                for p in self.lmap.layer_params(i):
                    flag = p.requires_grad
                    p.requires_grad_(True)  # torch only hooks tensors that require grad
                    p.register_post_accumulate_grad_hook(self._make_probe_hook(i))
                    p.requires_grad_(flag)

    def _make_probe_hook(self, layer: int):
        def hook(p: torch.Tensor) -> None:
            # Only the step's last micro-batch holds the accumulated gradient the RMS is defined on.
            if p.grad is None or not self._last_micro:
                return
            sq = local_tensor(p.grad).detach().double().pow(2).sum()  # FSDP: this rank's shard
            if self._probing and self._probe_in_hook:
                self._hook_sq[layer] = self._hook_sq[layer] + sq
                p.grad = None  # free at once: the probe updates nothing (and the engine skips it)
            elif not self._probing and self._active_in_hook:
                self._hook_sq[layer] = self._hook_sq[layer] + sq
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
                self._checkpoint_probe(True)
        elif step == p_steps:
            self._end_probe()
        elif self.cfg.mode == "adaptive" and (step - p_steps) % self.cfg.refresh_every == 0:
            self.estimator.refresh()
        self._step_mgn = [float(x) for x in self.estimator.mgn]
        super().on_step_start(step)

    def _end_probe(self) -> None:
        # A run resumed from a checkpoint taken after the last probe step arrives here not probing
        # but with the probe's window still unfinished (saved in the checkpoint): finish it too.
        if self._probing or (self.cfg.probe_steps > 0 and not self.estimator.initialized):
            self.estimator.finish_probe()
            for i in range(len(self.lmap)):
                set_requires_grad(self.lmap.layer_params(i), False)
            self._set_always_trained(True)
            self._checkpoint_probe(False)
            self._probing = False
        self.active = []

    def _checkpoint_probe(self, on: bool) -> None:
        """Activation checkpointing for the probe steps only (``probe_checkpointing``).

        Every block's weights need a gradient in the probe, so every block keeps the inputs of its
        linear layers for backward, which the update steps' frozen blocks do not: measured on
        SmolLM2-135M at 4 x 256 tokens, 1.96 GiB of saved activations in a probe step against 1.55
        GiB in a LISA step. Recomputing each block in backward keeps only block inputs (0.63 GiB),
        so the update steps set the peak again. A run that already checkpoints is left alone.
        """
        model = self._model
        if on:
            if (not self.cfg.probe_checkpointing or model is None or getattr(model, "is_activation_checkpointing", True)
                    or not getattr(model, "supports_gradient_checkpointing", False)):
                return
            had_input_hook = hasattr(model, "_require_grads_hook")
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            # HF also makes the embeddings' output require grad; undone below, or with frozen
            # embeddings every update step would backpropagate through the blocks below the active ones
            self._probe_ckpt = "input_hook_kept" if had_input_hook else "input_hook_added"
        elif self._probe_ckpt:
            model.activation_checkpointing_disable()
            if self._probe_ckpt == "input_hook_added" and hasattr(model, "_require_grads_hook"):
                model.disable_input_require_grads()
            self._probe_ckpt = False

    def before_backward(self, step: int, last_micro_batch: bool) -> None:
        self._last_micro = last_micro_batch

    def on_after_backward(self, step: int) -> None:
        layers = list(range(len(self.lmap))) if self._probing else list(self.active)
        in_hook = self._probe_in_hook if self._probing else self._active_in_hook
        if layers:
            sums = [self._hook_sq[i] if in_hook else grad_sq_sum(self.lmap.layer_params(i)) for i in layers]
            dev = next((x.device for x in sums if torch.is_tensor(x)), torch.device("cpu"))
            sq = torch.stack([torch.as_tensor(x, dtype=torch.float64, device=dev) for x in sums])
            # FSDP: each rank summed its own shards; the whole gradient's sum is the sum over ranks
            # (one all-reduce per step). DDP and one process: already whole, nothing to do.
            sq = sum_over_shards(sq, self.lmap.layer_params(layers[0])).tolist()
            for i, s in zip(layers, sq):
                self.estimator.add(i, layer_rms(s, self._numel[i]))
        if self._probing:
            for i in layers:
                for p in self.lmap.layer_params(i):
                    p.grad = None
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
        self._checkpoint_probe(False)  # a method object reused for a resume may be mid-probe
        self._probing = False  # resumed inside the probe: the next on_step_start re-enters it
        if not state["probing"]:
            self._set_always_trained(True)
            for i in range(len(self.lmap)):
                set_requires_grad(self.lmap.layer_params(i), False)
        super().load_state_dict(state)
