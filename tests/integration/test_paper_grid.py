"""The paper's grid for users with GPUs: every run listed by a SLURM dry run, and one of its configs
smoke-trained with random weights (the models themselves need the hub)."""
from __future__ import annotations

import dataclasses

import pytest

from experiments.grid import expand
from experiments.registry import get_experiment
from grass.cli import main


@pytest.mark.parametrize("name", ["paper_arith", "paper_commonsense"])
def test_slurm_dry_run_lists_every_run(name, capsys):
    assert main(["launch", name, "--cluster", "slurm", "--profile", "example", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "45 run(s)" in out and out.count("  submit  ") == 45
    for model in ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "google/gemma-2b", "meta-llama/Llama-2-7b-hf"):
        assert out.count(f"model.name={model} ") == 15
    assert "gpus_per_node=1" in out and "time=720" in out


@pytest.mark.slow
def test_one_paper_config_trains_with_random_weights(tmp_path):
    """TinyLlama-1.1B's LISA config, as the grid resolves it, with random weights and a tiny budget.

    LISA, not GRASS: on a CPU GRASS's offload engine keeps every layer's fp32 state in place
    (12 B per parameter, 13 GB here), more than a CI machine should spend on a smoke test."""
    (run,) = [r for r in expand(get_experiment("paper_arith"), runs_dir=str(tmp_path))
              if r.cfg.method.name == "lisa" and r.cfg.seed == 0 and "TinyLlama" in r.cfg.model.name]
    cfg = run.cfg
    assert cfg.train.seq_len == 1024 and cfg.model.dtype == "bfloat16" and cfg.train.gradient_checkpointing
    # fp32 weights and no autocast: a CPU without native bf16 (as CI's) emulates bf16 matmuls, 10x slower and more
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, init="random", dtype="float32"),
        train=dataclasses.replace(cfg.train, max_steps=2, seq_len=32, batch_size=1, grad_accum=1, precision="fp32"),
        eval=dataclasses.replace(cfg.eval, benchmarks=[]),
        method=dataclasses.replace(cfg.method, switch_every=1, n_active_layers=1),
        data=dataclasses.replace(cfg.data, max_examples=16))
    from grass.train import train

    result = train(cfg, progress=False)
    assert result["status"] == "success" and result["params/total"] > 1e9
