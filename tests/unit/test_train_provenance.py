"""A result's provenance names the code that trained it: each part of a resumed run records the
code it started on, so a resume across a code change (or on a dirty checkout) shows."""
from __future__ import annotations

import json
import logging

import pytest
import torch

import grass.train as train_module
from grass.results import run_dir_for
from grass.train import Preempted, train


def _code(sha: str, dirty: bool = False):
    return lambda: {"git_sha": sha, "git_dirty": dirty}


def _cfg(make_cfg, fixed_batch_file, tmp_path):
    return make_cfg("lisa", **{"train.max_steps": 3, "data.train": str(fixed_batch_file),
                               "log.runs_dir": str(tmp_path), "method.n_active_layers": 1})


def test_a_run_in_one_part_records_its_code(make_cfg, fixed_batch_file, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "code_version", _code("aaa"))
    prov = train(_cfg(make_cfg, fixed_batch_file, tmp_path), progress=False)["provenance"]
    assert prov["git_sha"] == "aaa" and prov["git_dirty"] is False and "code_segments" not in prov


@pytest.mark.parametrize("first_dirty", [False, True])
def test_a_resume_on_other_code_lists_both_parts(make_cfg, fixed_batch_file, tmp_path, monkeypatch, caplog,
                                                 first_dirty):
    cfg = _cfg(make_cfg, fixed_batch_file, tmp_path)
    monkeypatch.setattr(train_module, "code_version", _code("aaa", first_dirty))
    with pytest.raises(Preempted):
        train(cfg, progress=False, stop_requested=lambda: True)  # stops after step 0, checkpoint at step 1
    monkeypatch.setattr(train_module, "code_version", _code("bbb"))
    with caplog.at_level(logging.WARNING, logger="grass.train"):
        prov = train(cfg, progress=False)["provenance"]
    assert "resuming" in caplog.text and "bbb" in caplog.text and "ran aaa" in caplog.text
    assert prov["git_sha"] == "bbb" and prov["git_dirty"] is first_dirty  # dirty if any part was
    assert prov["code_segments"] == [{"from_step": 0, "git_sha": "aaa", "git_dirty": first_dirty},
                                     {"from_step": 1, "git_sha": "bbb", "git_dirty": False}]


def test_a_checkpoint_from_before_parts_were_recorded_leaves_the_start_unknown(make_cfg, fixed_batch_file, tmp_path,
                                                                              monkeypatch):
    cfg = _cfg(make_cfg, fixed_batch_file, tmp_path)
    monkeypatch.setattr(train_module, "code_version", _code("aaa"))
    with pytest.raises(Preempted):
        train(cfg, progress=False, stop_requested=lambda: True)
    trainer = run_dir_for(cfg) / "checkpoint" / "trainer.pt"
    state = torch.load(trainer, weights_only=False)
    del state["extra"]["code_segments"]
    torch.save(state, trainer)
    prov = train(cfg, progress=False)["provenance"]
    assert prov["git_sha"] == "aaa" and prov["git_dirty"] is None  # the first part's code is not known
    assert prov["code_segments"][0] == {"from_step": 0, "git_sha": None, "git_dirty": None}


@pytest.mark.parametrize("dirty", [False, True])
def test_resumes_on_one_clean_commit_stay_one_part(make_cfg, fixed_batch_file, tmp_path, monkeypatch, dirty):
    # a dirty checkout may hold other edits at each resume: every part is listed
    cfg = _cfg(make_cfg, fixed_batch_file, tmp_path)
    monkeypatch.setattr(train_module, "code_version", _code("aaa", dirty))
    for _ in range(2):  # preempted twice, resumed twice, on one checkout
        with pytest.raises(Preempted):
            train(cfg, progress=False, stop_requested=lambda: True)
    prov = train(cfg, progress=False)["provenance"]
    assert prov["git_sha"] == "aaa" and prov["git_dirty"] is dirty
    assert len(prov.get("code_segments", [None])) == (3 if dirty else 1)


def test_a_failed_resume_records_every_part_it_ran(make_cfg, fixed_batch_file, tmp_path, monkeypatch):
    cfg = _cfg(make_cfg, fixed_batch_file, tmp_path)
    monkeypatch.setattr(train_module, "code_version", _code("aaa"))
    with pytest.raises(Preempted):
        train(cfg, progress=False, stop_requested=lambda: True)
    monkeypatch.setattr(train_module, "code_version", _code("bbb", True))

    def boom(step, *_):
        raise RuntimeError(f"boom at step {step}")

    with pytest.raises(RuntimeError, match="boom"):
        train(cfg, progress=False, on_step_end=boom)
    result = json.loads((run_dir_for(cfg) / "result.json").read_text())
    assert result["status"] == "failed" and result["provenance"]["git_dirty"] is True
    assert [s["git_sha"] for s in result["provenance"]["code_segments"]] == ["aaa", "bbb"]
