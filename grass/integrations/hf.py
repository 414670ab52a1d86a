"""LISA and GRASS inside a ``transformers.Trainer`` (and TRL's ``SFTTrainer``)::

    from grass.integrations.hf import LayerwiseCallback
    callback = LayerwiseCallback(model, "grass", n_active_layers=2, switch_every=25, probe_steps=10)
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[callback],
                      optimizers=(callback.optimizer, None))
    trainer.train()

The callback drives the method object ``grass train`` builds (the same class, config validation,
sampler, MGN estimator, refresh, state policies and offload optimizer) and reproduces the order of
our loop's hooks (:mod:`grass.interface`) inside Trainer's loop:

* ``on_step_start(step)`` at ``on_step_begin``, with ``step = state.global_step``;
* ``before_backward(step, last)`` from a forward pre-hook on the model, once per micro-batch;
  ``last`` is accelerate's ``GradientState().sync_gradients``, which Trainer sets per micro-batch;
* ``on_after_backward(step)`` at ``on_pre_optimizer_step``. Trainer clips the gradients before any
  callback runs, so GRASS takes every layer's RMS in its post-accumulate-grad hooks, on the
  accumulated gradient of the step's last micro-batch, before clipping (as our loop measures it);
* ``is_update_step(step)`` false (GRASS's probe): ``callback.optimizer.step()`` does nothing;
* the method's state (sampler RNG, active set, MGN estimate and window) travels inside
  ``callback.optimizer.state_dict()``, which Trainer writes to ``optimizer.pt`` in every checkpoint
  and restores on ``train(resume_from_checkpoint=...)``; it is loaded before the optimizer's own
  state, as in :func:`grass.checkpoint.load_checkpoint`.

Choices (README, "Use GRASS in your Trainer"):

* Hyper-parameters come from ``TrainingArguments`` (``learning_rate``, ``adam_beta1/2``,
  ``adam_epsilon``, ``weight_decay``, ``seed``, ``gradient_accumulation_steps``, ``max_grad_norm``);
  the optimizer is built when the Trainer is constructed (``on_init_end``), after it has moved the
  model to its device. ``args.optim`` is not used: the method's AdamW or offload engine is.
* Trainer's LR scheduler is left alone, so it also counts GRASS's probe steps (``grass train``
  starts its schedule after the probe): with ``probe_steps=10`` of 1000 steps the schedule runs 1%
  ahead. Use ``lr_scheduler_type="constant"`` or a warm-up longer than the probe if that matters.
* One process: under DDP a post-accumulate-grad hook sees the local gradient, before the
  all-reduce, so the ranks would draw different layers. ``grass train`` runs DDP. GRASS refuses
  ``fp16=True``: its loss scaling would scale the gradients the MGN is measured on (bf16 is fine).
* Trainer's logs (``state.log_history``, printed logs) get ``active_layers``, ``layer_probs``,
  ``mgn`` and ``probe``; the reporting callbacks run before user callbacks, so for W&B
  (``report_to="wandb"``) the callback logs them to the open run itself, per layer.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from accelerate.state import GradientState
from torch import nn
from transformers.trainer_callback import TrainerCallback

from grass.config import RunConfig, config_from_dicts
from grass.errors import ConfigError, GrassError
from grass.layerwise import LayerwiseMethod
from grass.registry import get_method, method_names

log = logging.getLogger(__name__)

NOT_BOUND = ("LayerwiseCallback has not seen the Trainer yet: pass it to the Trainer, "
             "Trainer(..., callbacks=[callback], optimizers=(callback.optimizer, None))")
_UNBOUNDED = 2**31 - 1  # max_steps while the Trainer's is unknown; checked again at on_train_begin


def _cpu(obj):
    """``obj`` with every tensor on the CPU (accelerate moves optimizer state to the device)."""
    if torch.is_tensor(obj):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


class LayerwiseOptimizer(torch.optim.Optimizer):
    """The optimizer to give the Trainer: the method's own optimizer (built at ``on_init_end``) that
    skips the steps the method does not update and carries the method's state in its state_dict.

    ``torch.optim.Optimizer.__init__`` is not called: as accelerate's ``AcceleratedOptimizer``
    does, ``param_groups``, ``state`` and ``defaults`` are the wrapped optimizer's, so the LR
    scheduler Trainer builds steers the real optimizer.
    """

    def __init__(self, method: LayerwiseMethod):
        self.method = method
        self.inner: torch.optim.Optimizer | None = None
        self.step_index = 0  # the Trainer's global step, set at on_step_begin

    def _opt(self) -> torch.optim.Optimizer:
        if self.inner is None:
            raise GrassError(NOT_BOUND)
        return self.inner

    param_groups = property(lambda self: self._opt().param_groups,
                            lambda self, v: setattr(self._opt(), "param_groups", v))
    state = property(lambda self: self._opt().state, lambda self, v: setattr(self._opt(), "state", v))
    defaults = property(lambda self: self._opt().defaults, lambda self, v: setattr(self._opt(), "defaults", v))

    def step(self, closure=None):
        """Step the method's optimizer, except on steps that update nothing (GRASS's probe)."""
        if not self.method.is_update_step(self.step_index):
            return None
        return self._opt().step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._opt().zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict) -> None:
        raise NotImplementedError("the layer-wise optimizer holds every layer from the start; it takes no new groups")

    def state_dict(self) -> dict:
        """``{"optimizer": the method optimizer's state, "method": the method's state}``."""
        return {"optimizer": self._opt().state_dict(), "method": self.method.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        """Inverse of :meth:`state_dict`; the method first: it restores which layers train."""
        self.method.load_state_dict(_cpu(state_dict["method"]))
        self._opt().load_state_dict(state_dict["optimizer"])

    def __repr__(self) -> str:
        return f"LayerwiseOptimizer({self.method.name}, {self.inner!r})"


def _method_run_config(method: str, fields: dict[str, Any]) -> RunConfig:
    """Validate ``fields`` as ``method.<field>`` overrides, through the config machinery of ``grass train``."""
    # Accumulation and clipping come from TrainingArguments at on_init_end (checked there against
    # overlap=backward in Trainer's own terms); until then they are neutral placeholders.
    return config_from_dicts([{"method": {"name": method, **fields},
                               "train": {"max_steps": _UNBOUNDED, "grad_accum": 1, "max_grad_norm": 0.0}}])


class LayerwiseCallback(TrainerCallback):
    """Layer-wise fine-tuning (``"lisa"`` or ``"grass"``) for a ``transformers.Trainer``.

    Args:
        model: the model given to the Trainer (the method freezes and hooks it now).
        method: ``"lisa"`` or ``"grass"``.
        **fields: the method's config fields (``grass config show method.name=grass``).

    Attributes:
        optimizer: give it to the Trainer as ``optimizers=(callback.optimizer, None)``.
        method: the method object (the class ``grass train`` uses).
        last_stats: the method's stats of the last step (what is added to the logs).

    Raises:
        ConfigError: unknown method or field, bad value (the one-line messages of ``grass train``);
            at Trainer construction or ``train()``: options the Trainer's arguments contradict.
    """

    def __init__(self, model: nn.Module, method: str, **fields: Any):
        cls = get_method(method)
        if not issubclass(cls, LayerwiseMethod):
            layerwise = [m for m in method_names() if issubclass(get_method(m), LayerwiseMethod)]
            raise ConfigError(f"LayerwiseCallback runs the layer-wise methods ({', '.join(layerwise)}), not "
                              f"'{method}'; run '{method}' with grass train")
        self.cfg = _method_run_config(method, fields)
        if getattr(self.cfg.method, "probe_in_hook", True) is False:
            raise ConfigError("method.probe_in_hook=false is not available in a Trainer: Trainer clips the "
                              "gradients before a callback sees them, so the probe is measured in the hooks")
        self.method = cls(self.cfg.method, self.cfg)
        self.method.measure_in_backward = True  # GRASS: RMS before Trainer's clipping (no-op for LISA)
        self.model = self.method.prepare(model)
        self.optimizer = LayerwiseOptimizer(self.method)
        self.last_stats: dict[str, Any] = {}
        self._step = 0
        self._wandb_warned = False

    # -- binding to the Trainer --------------------------------------------------------------------
    def on_init_end(self, args, state, control, model=None, **kwargs):
        if model is not None and model is not self.model:
            raise ConfigError("LayerwiseCallback was built for another model than the Trainer's; pass the same one")
        if self.optimizer.inner is not None:
            return  # already bound (a second Trainer over the same callback keeps the optimizer)
        if args.world_size > 1:
            raise ConfigError(f"LayerwiseCallback runs in one process (this launch has {args.world_size}): the "
                              f"gradient hooks would see each rank's own gradient; use grass train for DDP")
        if getattr(self.cfg.method, "overlap", "step") == "backward" and (
                args.gradient_accumulation_steps > 1 or args.max_grad_norm > 0):
            raise ConfigError("method.overlap=backward updates each layer during backward: set "
                              "gradient_accumulation_steps=1 and max_grad_norm=0 in TrainingArguments, or use "
                              "overlap='step'")
        if args.fp16 and self.cfg.method.name == "grass":
            raise ConfigError("GRASS measures the gradient during backward, where fp16 loss scaling multiplies it by a "
                              "changing factor; use bf16=True (no loss scaling) or fp32")
        tc = dataclasses.replace(self.cfg.train, lr=args.learning_rate, adam_beta1=args.adam_beta1,
                                 adam_beta2=args.adam_beta2, adam_eps=args.adam_epsilon,
                                 weight_decay=args.weight_decay, grad_accum=args.gradient_accumulation_steps,
                                 max_grad_norm=args.max_grad_norm)
        self.cfg = dataclasses.replace(self.cfg, seed=args.seed, train=tc)
        self.method.run_cfg = self.cfg
        self.method.reseed(args.seed)
        self.optimizer.inner = self.method.build_optimizer(self.model)
        self.model.register_forward_pre_hook(self._before_forward)

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        if self.optimizer.inner is None:
            raise GrassError(NOT_BOUND)
        if getattr(optimizer, "optimizer", optimizer) is not self.optimizer:  # accelerate wraps ours
            raise ConfigError("the Trainer has its own optimizer: pass optimizers=(callback.optimizer, None); "
                              "an optimizer built at step 0 holds only the layers trainable then, so newly drawn "
                              "layers would never train")
        self.cfg = dataclasses.replace(self.cfg, train=dataclasses.replace(self.cfg.train, max_steps=state.max_steps))
        self.method.run_cfg = self.cfg
        self.cfg.method.validate(self.cfg)  # e.g. a probe as long as the Trainer's max_steps

    # -- the step ----------------------------------------------------------------------------------
    def on_step_begin(self, args, state, control, **kwargs):
        self._step = self.optimizer.step_index = state.global_step
        self.method.on_step_start(self._step)

    def _before_forward(self, module: nn.Module, inputs) -> None:
        if module.training and torch.is_grad_enabled():  # not evaluation or generation
            self.method.before_backward(self._step, GradientState().sync_gradients)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.method.on_after_backward(self._step)

    def on_step_end(self, args, state, control, **kwargs):
        self.last_stats = self.method.stats()

    # -- logs --------------------------------------------------------------------------------------
    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs or not self.last_stats:
            return  # evaluation and end-of-training summaries carry no per-step method stats
        logs.update(self.last_stats)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(self.last_stats)  # Trainer stored a copy before on_log
        if "wandb" in (args.report_to or []) and state.is_world_process_zero:
            self._log_wandb(state.global_step)

    def _log_wandb(self, step: int) -> None:
        try:
            import wandb

            if wandb.run is not None:
                wandb.run.log({**wandb_payload(self.last_stats, len(self.method.lmap)), "train/global_step": step})
        except Exception as e:  # noqa: BLE001 - W&B must never stop training
            if not self._wandb_warned:
                self._wandb_warned = True
                log.warning("W&B logging of the layer-wise stats failed (%s: %s); continuing", type(e).__name__, e)


def wandb_payload(stats: dict, n_layers: int) -> dict[str, float]:
    """The method's stats as W&B scalars under ``train/``: per-layer lists as ``<key>/L<i>``, the
    active set as 0/1 per layer, flags as 0/1 (W&B takes no lists)."""
    from grass.wandb_log import PER_LAYER

    out: dict[str, float] = {}
    for key, value in stats.items():
        if isinstance(value, bool):
            out[f"train/{key}"] = int(value)
        elif isinstance(value, (int, float)):
            out[f"train/{key}"] = value
        elif key == "active_layers":
            out.update({f"train/active_layers/L{i}": float(i in value) for i in range(n_layers)})
        elif key in PER_LAYER and isinstance(value, list):
            out.update({f"train/{key}/L{i}": v for i, v in enumerate(value)})
    return out
