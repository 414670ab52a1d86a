"""train.precision=auto: bf16 only where the device computes it natively; the precision run is recorded."""
import json

import pytest

import torch

import grass.precision as precision
import grass.train as loop
from grass.cli import main
from grass.results import read_result


def test_auto_follows_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    assert precision.resolve_precision("fp32", cpu) == "fp32" and precision.resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert precision.resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert precision.resolve_precision("auto", cpu) == "fp32"


def test_auto_through_grass_train_records_what_ran(runs_dir, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
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


def _auto_run(precision_here: str, monkeypatch, *extra: str) -> list[str]:
    monkeypatch.setattr(precision, "native_bf16", lambda device: precision_here == "bf16")
    return ["train", "model.name=tiny-llama", "train.precision=auto", "train.max_steps=3", "train.seq_len=64",
            "log.experiment=grid", *extra]


def test_auto_refuses_a_device_that_resolves_it_unlike_the_finished_runs(runs_dir, monkeypatch, capsys):
    """A grid relaunched on a CPU without native bf16 would train its bf16 runs' siblings in fp32
    under ids that pair with them: refused, with what to do, and nothing written."""
    assert main(_auto_run("bf16", monkeypatch, "seed=0")) == 0
    capsys.readouterr()
    assert main(_auto_run("fp32", monkeypatch, "seed=1")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.precision=auto is fp32 on this cpu (no native bf16)" in err
    assert "1 finished run(s) of experiment grid got bf16" in err and "set train.precision=fp32" in err, err
    assert len(list((runs_dir / "grid").iterdir())) == 1  # no folder for the refused run
    # an explicit precision is a deliberate choice (its own run id) and runs
    assert main(_auto_run("fp32", monkeypatch, "seed=1", "train.precision=fp32")) == 0
    # so does a run of another budget, which pairs with none of them
    assert main(_auto_run("fp32", monkeypatch, "seed=1", "train.max_steps=4")) == 0
    # and a sibling whose files cannot be read is no evidence either way
    broken = runs_dir / "grid" / "broken"
    broken.mkdir()
    (broken / "result.json").write_text(json.dumps({"status": "success", "train/precision": "bf16"}))
    (broken / "config.yaml").write_text("train: [unclosed\n")
    assert main(_auto_run("fp32", monkeypatch, "seed=1", "train.max_steps=5")) == 0


def test_auto_does_not_resume_a_checkpoint_in_another_precision(runs_dir, monkeypatch, capsys):
    from grass.config import load_config

    args = _auto_run("fp32", monkeypatch, "train.checkpoint_every=1")
    with pytest.raises(loop.Preempted):
        loop.train(load_config(None, args[1:]), progress=False, stop_requested=lambda: True)
    assert main(_auto_run("bf16", monkeypatch, "train.checkpoint_every=1")) == 2
    err = capsys.readouterr().err
    assert "was checkpointed training in fp32 and train.precision=auto is bf16 on this cpu" in err, err
    (run,) = list((runs_dir / "grid").iterdir())
    assert read_result(run) is None  # refused before anything was written: not a failed run, still resumable
    assert main(_auto_run("fp32", monkeypatch, "train.checkpoint_every=1")) == 0  # the same device resumes
