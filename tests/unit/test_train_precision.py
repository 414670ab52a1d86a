"""train.precision=auto: bf16 only where the device computes it natively; the precision run is recorded."""
import json

import torch

import grass.train as loop
from grass.cli import main


def test_auto_follows_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    assert loop.resolve_precision("fp32", cpu) == "fp32" and loop.resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(loop, "native_bf16", lambda device: True)
    assert loop.resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(loop, "native_bf16", lambda device: False)
    assert loop.resolve_precision("auto", cpu) == "fp32"


def test_auto_through_grass_train_records_what_ran(runs_dir, monkeypatch):
    monkeypatch.setattr(loop, "native_bf16", lambda device: True)
    assert main(["train", "model.name=tiny-llama", "train.precision=auto", "train.max_steps=2",
                 "train.seq_len=64"]) == 0
    (run,) = list((runs_dir / "default").iterdir())
    result = json.loads((run / "result.json").read_text())
    assert result["train/precision"] == "bf16"
    assert "precision: auto" in (run / "config.yaml").read_text()
