"""Every config field, of every section and every registered method, refuses a value of the wrong
type and (where it has a range) an out-of-range value: exit 2 and one line naming the field.

The cases are generated from the dataclasses, so a new field is covered at once: a wrong-type
case comes for free, and a new number or string field fails :func:`test_every_field_is_classified`
until it gets an out-of-range value here or a reason why it has none.
"""
from __future__ import annotations

import dataclasses
import typing

import pytest

from grass.cli import main
from grass.config import RunConfig, method_config_class
from grass.registry import method_names

# Out-of-range values, by dotted key; "<method>:<key>" when one method's field means something else.
OUT_OF_RANGE: dict[str, list] = {
    "seed": [-1, 2 ** 32],
    "data.max_examples": [0, -3],
    "data.heldout": [0, -1],
    "method.switch_block_every": [0, -5],
    "method.start_block": [-1],
    "train.max_steps": [0, -1],
    "train.batch_size": [0],
    "train.grad_accum": [0],
    "train.seq_len": [0, 1],
    "train.lr": [0, -1e-4],
    "train.weight_decay": [-0.1],
    "train.adam_beta1": [1.0, -0.1],
    "train.adam_beta2": [1.5, -0.1],
    "train.adam_eps": [0, -1e-8],
    "train.warmup_ratio": [1.0, -0.1],
    "train.min_lr_ratio": [1.5, -0.1],
    "train.max_grad_norm": [-1.0],
    "train.log_every": [0],
    "train.checkpoint_every": [-1],
    "eval.limit": [0],
    "eval.batch_size": [0],
    "eval.max_new_tokens": [0],
    "eval.heldout_every": [-1],
    "method.rank": [0, -4],
    "lora:method.alpha": [0, -16],
    "dora:method.alpha": [0, -16],
    "grass:method.alpha": [0, 1.5],
    "method.dropout": [1.0, -0.1],
    "method.target_modules": ["[]"],
    "method.n_active_layers": [0],
    "method.switch_every": [0],
    "method.offload_chunk_mb": [0, -1],
    "method.probe_steps": [-1, 100],  # 100 = train.max_steps: no update step left
    "method.temperature": [0, -1],
    "method.refresh_every": [0],
}
# String fields with a fixed set of values: a value outside it.
CHOICES = {"model.dtype", "model.init", "train.precision", "train.device", "train.save_model", "log.wandb",
           "method.name", "method.state_policy", "method.normalize", "method.mode", "method.overlap",
           "train.parallel", "method.switch_mode"}
# Fields that accept any value of their type, and why.
NO_RANGE = {
    "model.name": "any HF id or folder: checked when the model loads (tests/unit/test_bad_input_cli.py)",
    "model.cache_dir": "any folder",
    "model.tokenizer": "any HF id or folder: checked when it loads (tests/unit/test_bad_input_cli.py)",
    "data.train": "a file, mixture or benchmark: checked before the run (tests/unit/data)",
    "data.heldout_seed": "any integer: a salt of the split's hash",
    "log.project": "any W&B project name",
    "log.entity": "any W&B entity",
    "log.runs_dir": "any folder",
    "log.experiment": "any name",
    "log.run_id": "any name",
}


def _leaves(cls: type, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, annotated type) of every leaf field of a config dataclass."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            out += _leaves(t, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", t))
    return out


def _base(t) -> type:
    """int for ``Optional[int]``, list for ``list[str]``..."""
    args = [a for a in typing.get_args(t) if a is not type(None)]
    if typing.get_origin(t) is typing.Union and len(args) == 1:
        t = args[0]
    return typing.get_origin(t) or t


def _fields() -> list[tuple[str, str, type]]:
    """(method, dotted key, base type) of every field, the method section once per method."""
    out = [("full", key, _base(t)) for key, t in _leaves(RunConfig) if not key.startswith("method.")]
    for m in method_names():
        out += [(m, f"method.{key}", _base(t)) for key, t in _leaves(method_config_class(m))]
    return out


def _wrong_type(base: type) -> str:
    return {int: "abc", float: "abc", bool: "maybe", list: "abc", str: "[1,2]"}[base]


def _cases():
    for method, key, base in _fields():
        yield pytest.param(method, key, _wrong_type(base), id=f"{method}-{key}-type")
        if base is float:
            for v in ("nan", "inf"):
                yield pytest.param(method, key, v, id=f"{method}-{key}-{v}")
        if key in CHOICES:
            yield pytest.param(method, key, "bogus", id=f"{method}-{key}-choice")
        for v in OUT_OF_RANGE.get(f"{method}:{key}", OUT_OF_RANGE.get(key, [])):
            yield pytest.param(method, key, v, id=f"{method}-{key}-{v}")


def test_every_field_is_classified():
    unclassified = [f"{m}:{k}" for m, k, base in _fields()
                    if base in (int, float, str) and k not in CHOICES and k not in NO_RANGE
                    and k not in OUT_OF_RANGE and f"{m}:{k}" not in OUT_OF_RANGE]
    assert not unclassified, "give these an out-of-range value in OUT_OF_RANGE or a reason in NO_RANGE"


@pytest.mark.parametrize("method, key, value", list(_cases()))
def test_bad_value_is_one_line_exit_2(method, key, value, capsys):
    overrides = [f"method.name={method}"] if key != "method.name" else []
    assert main(["config", "show", *overrides, f"{key}={value}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    field = key if key != "method.name" else "method"
    assert field in err, err
