"""``train.parallel`` without processes: the option's values, its place in the run id, and what
FSDP refuses (before the run directory exists). The 2-process runs are tests/distributed."""
from __future__ import annotations

import pytest
import torch

from grass.config import run_id
from grass.distributed import DistContext
from grass.errors import ConfigError
from grass.results import run_dir_for


def test_parallel_values_and_run_id(make_cfg):
    assert make_cfg("full").train.parallel == "ddp"
    with pytest.raises(ConfigError, match="train.parallel must be one of ddp, fsdp"):
        make_cfg("full", **{"train.parallel": "zero3"})
    # the default leaves run ids of earlier runs unchanged; fsdp runs (other checkpoints) get their own
    assert run_id(make_cfg("full", **{"train.parallel": "ddp"})) == run_id(make_cfg("full"))
    assert run_id(make_cfg("full", **{"train.parallel": "fsdp"})) != run_id(make_cfg("full"))


@pytest.mark.parametrize("method, extra, match", [
    ("lora", {"train.save_model": "full"}, "use train.save_model=adapter"),
    ("full", {"train.save_model": "adapter"}, "needs an adapter method"),
    ("grass", {"method.overlap": "backward", "method.state_policy": "offload", "method.probe_steps": 2,
               "train.max_grad_norm": 0}, "use method.overlap=step"),
    ("full", {"eval.lm_eval": True}, "eval.lm_eval=true is not supported"),
])
def test_fsdp_refuses_before_the_run_exists(make_cfg, fixed_batch_file, method, extra, match):
    from grass.train import train

    ctx = DistContext(0, 2, 0, torch.device("cpu"), "gloo")  # no process group is needed to refuse
    cfg = make_cfg(method, **{"train.parallel": "fsdp", "data.train": str(fixed_batch_file), **extra})
    with pytest.raises(ConfigError, match=match):
        train(cfg, progress=False, dist=ctx)
    assert not run_dir_for(cfg).exists()
    ctx.configure(make_cfg(method, **{"data.train": str(fixed_batch_file), **extra}))  # DDP runs them
    assert not ctx.sharded
