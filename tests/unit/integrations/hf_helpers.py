"""Helpers of the Trainer/TRL tests: a real ``transformers.Trainer`` over a tiny model, and a callback
that records what each step changed."""
from __future__ import annotations

import json

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from grass.data.format import Collator, TrainDataset
from grass.layers import find_layers
from grass.models.load import load_model
from grass.train import seed_everything

RECORDS = [{"instruction": f"Add {i} and {i + 3}.", "input": "", "output": f"{i} + {i + 3} = {2 * i + 3}."}
           for i in range(8)]


def write_records(path):
    """The records as a JSON file for ``data.train``."""
    path.write_text(json.dumps(RECORDS))
    return path


def tiny(seed: int, arch: str = "tiny-llama"):
    """The model and tokenizer ``grass train`` builds for ``seed`` (it seeds before loading)."""
    seed_everything(seed)
    return load_model(arch)


def trainer_args(out_dir, **kw) -> TrainingArguments:
    """Two micro-batches of 4 per step over the 8 records in order, constant LR, no saving, CPU."""
    base = dict(output_dir=str(out_dir), max_steps=10, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                learning_rate=5e-3, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                max_grad_norm=1.0, logging_steps=1, report_to=[], save_strategy="no", use_cpu=True,
                train_sampling_strategy="sequential", seed=0, disable_tqdm=True)
    return TrainingArguments(**{**base, **kw})


def make_trainer(model, tok, callback, args, extra_callbacks=()) -> Trainer:
    return Trainer(model=model, args=args, train_dataset=TrainDataset(RECORDS, tok, 256),
                   data_collator=Collator(tok.pad_token_id), callbacks=[callback, *extra_callbacks],
                   optimizers=(callback.optimizer, None))


def units_of(model) -> dict[int, object]:
    """param id -> decoder layer index, 'embed' or 'head'."""
    lm = find_layers(model)
    out = {id(p): i for i in range(len(lm)) for p in lm.layer_params(i)}
    return out | {id(p): "embed" for p in lm.embed_params} | {id(p): "head" for p in lm.head_params}


class StepRecorder(TrainerCallback):
    """Runs after the LayerwiseCallback: per step, the units whose weights changed (bit for bit),
    the active set, the probe flag, the MGN, and the units holding optimizer state."""

    def __init__(self, layerwise):
        self.cb = layerwise
        self.changed, self.active, self.probe, self.mgn, self.state_units, self.steps = [], [], [], [], [], []
        self._before = None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self._before = {id(p): p.detach().clone() for p in model.parameters()}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        where = units_of(model)
        self.changed.append({where[id(p)] for p in model.parameters() if not torch.equal(p, self._before[id(p)])})
        stats = self.cb.last_stats
        self.steps.append(state.global_step - 1)
        self.active.append(set(stats["active_layers"]))
        self.probe.append(bool(stats.get("probe", False)))
        self.mgn.append(stats.get("mgn"))
        inner = self.cb.optimizer.inner
        params = [p for g in inner.param_groups for p in g["params"]]
        self.state_units.append({where[id(params[i])] for i in inner.state_dict()["state"]})
