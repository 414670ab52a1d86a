"""BAdam through badam's BlockOptimizer in our loop: which block trains when, what changes, what the
optimizer holds, resume, and the errors a user sees."""
from __future__ import annotations

import json

import pytest
import torch

from grass.cli import main
from grass.layers import find_layers
from grass.train import Preempted, train


def _where(model) -> dict[int, object]:
    lm = find_layers(model)
    out = {id(p): i for i in range(len(lm)) for p in lm.layer_params(i)}
    return out | {id(p): "embed" for p in lm.embed_params} | {id(p): "head" for p in lm.head_params}


class Changes:
    """on_step_end: the units whose weights changed at each step, and the optimizer's state bytes."""

    def __init__(self):
        self.prev, self.changed, self.active, self.state_bytes = None, [], [], []

    def __call__(self, step, model, optimizer, method):
        where = _where(model)
        now = {id(p): p.detach().clone() for p in model.parameters()}
        if self.prev is not None:
            self.changed.append({where[k] for k in now if not torch.equal(now[k], self.prev[k])})
        self.prev = now
        self.active.append(method.stats()["active_layers"])
        self.state_bytes.append(optimizer.state_bytes()["device"])


def _rows(result) -> list[dict]:
    return [json.loads(x) for x in open(f"{result['run_dir']}/metrics.jsonl")]


def test_one_block_at_a_time_in_badam_order(make_cfg, fixed_batch_file):
    rec = Changes()
    cfg = make_cfg("badam", **{"train.max_steps": 10, "data.train": str(fixed_batch_file),
                               "method.switch_block_every": 3, "method.switch_mode": "ascending"})
    result, model = train(cfg, progress=False, on_step_end=rec, return_model=True)
    # BlockOptimizer switches when (updates + 1) % K == 0 after counting the update, so its first
    # block gets K - 1 steps and every later one K: badam's own schedule, kept as it is.
    assert [r["active_layers"] for r in _rows(result)] == [[0]] * 2 + [[1]] * 3 + [[2]] * 3 + [[3]] * 2
    # each step changes exactly the layer it reports; embeddings and head stay frozen (BAdam's default)
    for step in range(1, 10):
        assert rec.changed[step - 1] == set(rec.active[step]), step
    # the Adam state is the active block's only (moments + its fp32 copy), dropped at each switch
    layer = sum(p.numel() * 4 for p in find_layers(model).layer_params(0))
    assert max(rec.state_bytes) <= 3 * layer + 64 and rec.state_bytes[1] == layer  # step 1 ended in a switch
    assert result["params/trainable"] == layer // 4  # one layer requires grad at the end


def test_resume_continues_exactly(make_cfg, fixed_batch_file, tmp_path):
    ov = {"train.max_steps": 9, "data.train": str(fixed_batch_file), "method.switch_block_every": 2,
          "method.switch_mode": "random", "log.runs_dir": str(tmp_path), "train.warmup_ratio": 0.2}
    whole, model_a = train(make_cfg("badam", **{**ov, "log.experiment": "whole"}), progress=False,
                           return_model=True)
    cut = make_cfg("badam", **{**ov, "log.experiment": "cut"})
    seen = []
    with pytest.raises(Preempted):  # stopped after step 5 (mid-block), checkpoint saved
        train(cut, progress=False, stop_requested=lambda: len(seen) == 5,
              on_step_end=lambda step, *_: seen.append(step))
    resumed, model_b = train(cut, progress=False, return_model=True)
    assert [r["active_layers"] for r in _rows(resumed)] == [r["active_layers"] for r in _rows(whole)]
    assert [r["lr"] for r in _rows(resumed)] == [r["lr"] for r in _rows(whole)]
    assert len({tuple(r["active_layers"]) for r in _rows(whole)}) > 2  # the random order moved on
    for (n, a), b in zip(model_a.named_parameters(), model_b.parameters()):
        assert torch.equal(a, b), n


def test_cli_blocks_with_embeddings_and_head(capsys, fixed_batch_file, runs_dir):
    argv = ["train", "method.name=badam", "model.name=tiny-gpt2", "train.max_steps=6", "train.seq_len=128",
            f"data.train={fixed_batch_file}", "log.wandb=disabled", "method.include_embedding=true",
            "method.include_lm_head=true", "method.switch_mode=descending", "method.start_block=1",
            "method.switch_block_every=2"]
    assert main(argv) == 0
    (run,) = (runs_dir / "default").iterdir()
    rows = [json.loads(x) for x in open(run / "metrics.jsonl")]
    # blocks: embed, layer.0 .. layer.5, head; descending from block 1 (layer.0), then embed, head, layer.5
    assert [r["block"] for r in rows] == ["layer.0", "embed", "embed", "head", "head", "layer.5"]
    assert [r["active_layers"] for r in rows] == [[0], [], [], [], [], [5]]


@pytest.mark.parametrize("override, message", [
    ("method.switch_mode=sideways", "method.switch_mode must be one of random, ascending, descending, fixed"),
    ("method.switch_block_every=0", "method.switch_block_every must be positive"),
    ("method.start_block=6", "method.start_block=6 but the model has 6 blocks; use 0..5"),
])
def test_cli_bad_badam_fields(override, message, capsys, fixed_batch_file, runs_dir):
    argv = ["train", "method.name=badam", "train.max_steps=2", f"data.train={fixed_batch_file}",
            "log.wandb=disabled", override]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
