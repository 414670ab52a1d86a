"""Shared fixtures: every test gets its own runs folder, W&B off, and a tiny-config factory."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

# Tiny models run fastest on one thread, and several test processes (DDP workers, SLURM jobs) must
# not oversubscribe the cores: OpenMP threads spin-wait and a run slows down twenty-fold.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("GRASS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def fixed_batch_file(tmp_path) -> Path:
    """Four short instruction/response records: one batch of 4, the same batch every step."""
    records = [
        {"instruction": "Add 2 and 3.", "input": "", "output": "The answer is 5."},
        {"instruction": "Is the sky green?", "input": "", "output": "the correct answer is false"},
        {"instruction": "Name a colour.", "input": "of the sea", "output": "blue"},
        {"instruction": "What is 10 minus 4?", "input": "", "output": "10 - 4 = 6. The answer is 6."},
    ]
    p = tmp_path / "fixed.json"
    p.write_text(json.dumps(records))
    return p


@pytest.fixture
def make_cfg():
    """``make_cfg("lisa", "tiny-gpt2", **{"train.max_steps": 5})`` -> a resolved RunConfig."""
    from grass.config import load_config

    def make(method: str = "full", model: str = "tiny-llama", **overrides):
        ov = {"method.name": method, "model.name": model, "log.wandb": "disabled", "train.max_steps": 10,
              "train.batch_size": 4, "train.seq_len": 256, "train.lr": 5e-3, "train.warmup_ratio": 0.0,
              **overrides}
        return load_config(None, [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in ov.items()])

    return make


def shared_data_dir() -> Path | None:
    """The LLM-Adapters folder from $GRASS_DATA_DIR, or None (tests that need it skip)."""
    d = os.environ.get("GRASS_DATA_DIR")
    return Path(d) if d and Path(d).is_dir() else None
