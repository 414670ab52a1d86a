"""A run id leaves out the process count (train.batch_size is per process): a finished or
checkpointed run from another world size is refused, not silently reused."""
from __future__ import annotations

import json

import pytest
import torch

from grass.errors import GrassError
from grass.results import run_dir_for
from grass.train import Preempted, train


def test_finished_run_from_another_world_size_is_refused(make_cfg, fixed_batch_file, tmp_path):
    cfg = make_cfg("full", **{"train.max_steps": 2, "data.train": str(fixed_batch_file),
                              "log.runs_dir": str(tmp_path)})
    first = train(cfg, progress=False)
    assert first["train/world_size"] == 1
    assert train(cfg, progress=False) == first  # same launch: the finished result, at once
    result = run_dir_for(cfg) / "result.json"
    recorded = json.loads(result.read_text())
    result.write_text(json.dumps({**recorded, "train/world_size": 2}))
    with pytest.raises(GrassError, match=r"finished with 2 process\(es\) and this launch has 1"):
        train(cfg, progress=False)


def test_resume_from_another_world_size_is_refused(make_cfg, fixed_batch_file, tmp_path):
    cfg = make_cfg("lisa", **{"train.max_steps": 4, "data.train": str(fixed_batch_file),
                              "log.runs_dir": str(tmp_path), "method.n_active_layers": 1})
    with pytest.raises(Preempted):
        train(cfg, progress=False, stop_requested=lambda: True)
    trainer = run_dir_for(cfg) / "checkpoint" / "trainer.pt"
    state = torch.load(trainer, weights_only=False)
    assert state["extra"]["world_size"] == 1
    state["extra"]["world_size"] = 2
    torch.save(state, trainer)
    with pytest.raises(GrassError, match=r"checkpointed with 2 process\(es\)"):
        train(cfg, progress=False)
