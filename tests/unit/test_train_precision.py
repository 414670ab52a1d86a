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
    # which CPU it ran on: its kernels (bf16's above all) set the step time
    assert result["provenance"]["device_name"].endswith(f" ({torch.backends.cpu.get_cpu_capability()})")


def _bf16_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "check_bf16_cpu.py"
    spec = importlib.util.spec_from_file_location("check_bf16_cpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bf16_check_refuses_an_emulating_cpu_unless_forced(runs_dir, tmp_path, monkeypatch, capsys):
    import pytest

    from tests.conftest import shared_data_dir

    script = _bf16_script()
    monkeypatch.setattr(script, "native_bf16", lambda device: False)
    out = tmp_path / "bf16.json"
    assert script.main(["--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and not out.exists()
    if shared_data_dir() is None:
        pytest.skip("GRASS_DATA_DIR is not set to the LLM-Adapters data folder (the check trains on math)")
    script.main(["--force", "--model", "tiny-llama", "--steps", "3", "--seq-len", "64", "--methods", "full,lisa",
                 "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["cpu_bf16"] is False and set(report["methods"]) == {"full", "lisa"}
    for m in report["methods"].values():
        assert len(m["fp32"]["loss"]) == len(m["bf16"]["loss"]) == 3
        assert m["speedup"] > 0 and m["max_rel_diff_running_mean"] >= 0
