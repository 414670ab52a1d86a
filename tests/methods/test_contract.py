"""The contract every registered method honours, on the four tiny architectures."""
from __future__ import annotations

import json
import math

import pytest
import torch

from grass.models.configs import TINY_MODELS

from grass.models.load import load_model
from grass.registry import method_names
from grass.results import RESULT_FIELDS
from grass.train import seed_everything, train

# Layer-wise methods: short periods so 20 steps see several active sets; a short GRASS probe.
METHOD_OVERRIDES = {
    "lisa": {"method.switch_every": 5},
    "grass": {"method.switch_every": 5, "method.probe_steps": 3, "method.refresh_every": 5},
    "badam": {"method.switch_block_every": 5},
    "lora": {"train.lr": 1e-2, "method.dropout": 0.0},
    "dora": {"train.lr": 1e-2, "method.dropout": 0.0},
}


def _initial_params(arch: str, seed: int) -> dict[str, torch.Tensor]:
    seed_everything(seed)  # train() seeds the same way before building the model
    model, _ = load_model(arch)
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("arch", TINY_MODELS)
@pytest.mark.parametrize("method", method_names())
def test_method_contract(method, arch, make_cfg, fixed_batch_file):
    cfg = make_cfg(method, arch, **{"train.max_steps": 20, "data.train": str(fixed_batch_file),
                                    "data.shuffle": False, "train.max_grad_norm": 0.0,
                                    **METHOD_OVERRIDES.get(method, {})})
    result, model = train(cfg, progress=False, return_model=True)
    run_dir = result["run_dir"]

    # The run directory has the documented files and fields.
    rows = [json.loads(x) for x in open(f"{run_dir}/metrics.jsonl")]
    assert [r["step"] for r in rows] == list(range(20))
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert set(RESULT_FIELDS) <= set(json.load(open(f"{run_dir}/result.json")))
    assert result["status"] == "success"

    # 20 steps on one fixed batch drive the loss clearly down (first update step vs last step).
    first = rows[cfg.method.probe_steps if method == "grass" else 0]["loss"]
    assert rows[-1]["loss"] < 0.8 * first, (first, rows[-1]["loss"])

    before = _initial_params(arch, cfg.seed)
    if method == "full":
        changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        assert changed == set(before)
    elif method in ("lora", "dora"):
        adapters = [n for n, p in model.named_parameters() if p.requires_grad]
        assert adapters and all("lora_" in n for n in adapters)
        base = model.unload()  # the base model with its own (untouched) weights
        for n, p in base.named_parameters():
            assert torch.equal(p, before[n]), f"{method} changed base weight {n}"
    else:
        visited = {i for r in rows for i in r["active_layers"]}
        assert visited, "no layer was ever active"
        n_active = getattr(cfg.method, "n_active_layers", 1)  # badam: one block, here always a decoder layer
        assert all(len(r["active_layers"]) == n_active for r in rows if r.get("updated"))
