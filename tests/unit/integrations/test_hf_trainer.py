"""LISA and GRASS inside a real ``transformers.Trainer`` on a tiny model: the same active sets and MGN
as ``grass train``, only active layers change, probe steps change nothing, state follows the policy,
and a resume from a Trainer checkpoint continues the same sequence."""
from __future__ import annotations

import json
import sys
import types

import pytest
import torch
from hf_helpers import StepRecorder, make_trainer, tiny, trainer_args, write_records

from grass.errors import ConfigError, GrassError
from grass.integrations.hf import LayerwiseCallback
from grass.optim.offload import LayerwiseOffloadAdamW
from grass.train import train

FIELDS = {"lisa": {"n_active_layers": 2, "switch_every": 3},
          "grass": {"n_active_layers": 2, "switch_every": 3, "probe_steps": 2, "refresh_every": 3}}


@pytest.mark.parametrize("method", ["lisa", "grass"])
def test_same_active_sets_mgn_and_weights_as_grass_train(method, make_cfg, tmp_path):
    # Clipping is active (max_grad_norm far below the gradient norm) and two micro-batches
    # accumulate: the MGN must be the accumulated gradient's, taken before clipping, as in our loop.
    seed, steps, clip = 3, 10, 0.05
    cfg = make_cfg(method, **{"train.max_steps": steps, "train.grad_accum": 2, "train.max_grad_norm": clip,
                              "train.min_lr_ratio": 1.0, "data.train": str(write_records(tmp_path / "r.json")),
                              "data.shuffle": False, "seed": seed,
                              **{f"method.{k}": v for k, v in FIELDS[method].items()}})
    ours = train(cfg, progress=False)
    rows = [json.loads(x) for x in open(f"{ours['run_dir']}/metrics.jsonl")]

    model, tok = tiny(seed)
    cb = LayerwiseCallback(model, method, **FIELDS[method])
    rec = StepRecorder(cb)
    trainer = make_trainer(model, tok, cb, trainer_args(tmp_path / "hf", max_steps=steps, max_grad_norm=clip,
                                                        seed=seed), [rec])
    trainer.train()
    logged = [r for r in trainer.state.log_history if "loss" in r]

    assert [set(r["active_layers"]) for r in rows] == rec.active
    assert len({frozenset(a) for a in rec.active if a}) > 1  # several draws were compared
    for row, mgn in zip(rows, rec.mgn):
        if method == "grass" and row["mgn"] is not None:
            torch.testing.assert_close(torch.tensor(mgn), torch.tensor(row["mgn"]), rtol=1e-4, atol=1e-9)
    # The same updates: the same loss and pre-clipping gradient norm at every step, to float32
    # rounding (the weights themselves are not compared: Adam turns rounding-level differences of
    # near-zero gradient entries into differences of up to lr per step in those entries).
    for row, hf in zip(rows, logged):
        assert row["loss"] == pytest.approx(hf["loss"], rel=1e-5)
        if row["grad_norm"] is not None:  # clipping active: the norm is far above max_grad_norm
            assert row["grad_norm"] > 10 * clip and row["grad_norm"] == pytest.approx(hf["grad_norm"], rel=1e-5)


@pytest.mark.parametrize("method, policy", [("lisa", "reset"), ("lisa", "keep"), ("grass", "offload"),
                                            ("grass", "reset")])
def test_only_active_layers_change_and_state_follows_policy(method, policy, tmp_path):
    model, tok = tiny(0)
    cb = LayerwiseCallback(model, method, state_policy=policy, **FIELDS[method])
    rec = StepRecorder(cb)
    make_trainer(model, tok, cb, trainer_args(tmp_path, max_steps=11), [rec]).train()
    probe = FIELDS[method].get("probe_steps", 0)

    assert rec.probe == [True] * probe + [False] * (11 - probe)
    for step in range(probe):  # the probe measures every layer and updates nothing, bit for bit
        assert rec.changed[step] == set() and rec.state_units[step] == set(), step
    for step in range(probe, 11):  # newly drawn layers change at once; frozen ones not at all
        assert rec.changed[step] == rec.active[step] | {"embed", "head"}, step
    visited = set()
    for step in range(probe, 11):
        visited |= rec.active[step]
        if policy == "reset":  # state of a layer leaving the active set is dropped at the switch
            assert rec.state_units[step] == rec.active[step] | {"embed", "head"}, step
        else:  # keep and offload: the state of every layer visited stays (on the host when offloading)
            assert rec.state_units[step] == visited | {"embed", "head"}, step
    assert isinstance(cb.optimizer.inner, LayerwiseOffloadAdamW) == (policy == "offload")


@pytest.mark.parametrize("method", ["lisa", "grass"])
def test_resume_from_trainer_checkpoint_continues_the_sequence(method, tmp_path):
    fields = {**FIELDS[method], "state_policy": "reset"}
    model, tok = tiny(0)
    cb = LayerwiseCallback(model, method, **fields)
    whole = StepRecorder(cb)
    # a checkpoint every 4 steps: step 4 is inside a period (draws at 0/2, 3/5, 6/8, ...)
    args = trainer_args(tmp_path / "a", max_steps=12, save_strategy="steps", save_steps=4)
    make_trainer(model, tok, cb, args, [whole]).train()
    saved = torch.load(tmp_path / "a" / "checkpoint-4" / "optimizer.pt", weights_only=True)
    assert set(saved) == {"optimizer", "method"} and "generator" in saved["method"]

    model2, tok2 = tiny(0)
    cb2 = LayerwiseCallback(model2, method, **fields)
    resumed = StepRecorder(cb2)
    make_trainer(model2, tok2, cb2, trainer_args(tmp_path / "a", max_steps=12), [resumed]).train(
        resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-4"))
    assert resumed.steps == list(range(4, 12))
    assert resumed.active == whole.active[4:]
    assert resumed.changed == whole.changed[4:]
    if method == "grass":
        assert resumed.mgn == whole.mgn[4:]
    for a, b in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def test_logs_carry_the_method_stats(tmp_path, monkeypatch):
    model, tok = tiny(0)
    cb = LayerwiseCallback(model, "grass", **FIELDS["grass"])
    trainer = make_trainer(model, tok, cb, trainer_args(tmp_path, max_steps=4))
    run = types.SimpleNamespace(logged=[])
    run.log = run.logged.append
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(run=run))
    trainer.args.report_to = ["wandb"]  # our logging only: Trainer's own W&B callback was not created
    trainer.train()
    rows = [r for r in trainer.state.log_history if "loss" in r]
    assert [r["probe"] for r in rows] == [True, True, False, False]
    assert rows[0]["mgn"] is None and len(rows[2]["mgn"]) == 6 and len(rows[2]["layer_probs"]) == 6
    assert rows[2]["active_layers"] == sorted(rows[2]["active_layers"]) and len(rows[2]["active_layers"]) == 2
    payload = run.logged[2]
    assert payload["train/global_step"] == 3 and payload["train/probe"] == 0
    assert sum(payload[f"train/active_layers/L{i}"] for i in range(6)) == 2
    assert payload["train/mgn/L0"] == rows[2]["mgn"][0]


def test_errors_are_the_one_line_config_errors():
    model, _ = tiny(0)
    with pytest.raises(ConfigError, match=r"unknown config key 'method.n_actve_layers': did you mean "
                                          r"'method.n_active_layers'\?"):
        LayerwiseCallback(model, "grass", n_actve_layers=2)
    with pytest.raises(ConfigError, match=r"unknown config key 'method.probe_steps'"):
        LayerwiseCallback(model, "lisa", probe_steps=3)
    with pytest.raises(ConfigError, match=r"invalid value for 'method.switch_every'"):
        LayerwiseCallback(model, "lisa", switch_every="often")
    with pytest.raises(ConfigError, match=r"method.state_policy must be one of reset, keep, offload"):
        LayerwiseCallback(model, "lisa", state_policy="sometimes")
    with pytest.raises(ConfigError, match=r"method.n_active_layers=9 but the model has only 6 decoder layers"):
        LayerwiseCallback(model, "lisa", n_active_layers=9)
    with pytest.raises(ConfigError, match=r"runs the layer-wise methods \(lisa, grass\), not 'lora'"):
        LayerwiseCallback(model, "lora")
    with pytest.raises(ConfigError, match=r"unknown method 'gras'"):
        LayerwiseCallback(model, "gras")


def test_trainer_misuse_is_refused(tmp_path):
    from transformers import Trainer

    from grass.data.format import Collator, TrainDataset
    from hf_helpers import RECORDS

    model, tok = tiny(0)
    cb = LayerwiseCallback(model, "lisa")
    own = Trainer(model=model, args=trainer_args(tmp_path, max_steps=2), train_dataset=TrainDataset(RECORDS, tok, 64),
                  data_collator=Collator(tok.pad_token_id), callbacks=[cb])  # the Trainer's AdamW, not ours
    with pytest.raises(ConfigError, match=r"pass optimizers=\(callback.optimizer, None\)"):
        own.train()

    model, tok = tiny(0)
    unbound = LayerwiseCallback(model, "lisa")
    with pytest.raises(GrassError, match="pass it to the Trainer"):
        unbound.optimizer.param_groups

    model, tok = tiny(0)
    cb = LayerwiseCallback(model, "grass", probe_steps=5)
    with pytest.raises(ConfigError, match=r"method.probe_steps=5 leaves no update step in train.max_steps=5"):
        make_trainer(model, tok, cb, trainer_args(tmp_path, max_steps=5)).train()

    model, tok = tiny(0)
    cb = LayerwiseCallback(model, "grass", state_policy="offload", overlap="backward")
    with pytest.raises(ConfigError, match=r"gradient_accumulation_steps=1 and max_grad_norm=0"):
        make_trainer(model, tok, cb, trainer_args(tmp_path, max_steps=5))
