"""Run directories -> one frame: states, flattening, variants, saving, and clear errors."""
from __future__ import annotations

import pandas as pd
import pytest

from analysis.collect import collect, read_metrics, save_frame
from grass.errors import GrassError


def test_states_and_footnote(golden):
    coll = collect("golden", golden)
    assert len(coll.frame) == 10 and len(coll.runs) == 7
    assert coll.excluded == {"unfinished": 1, "failed": 1, "dirty": 1}
    assert coll.footnote() == ("Left out: 1 unfinished, 1 failed, 1 from a dirty tree "
                               "(use --include-unfinished to include them).")
    assert list(dict.fromkeys(coll.runs["method"])) == ["full", "lisa", "grass"]  # display order


def test_a_run_whose_config_is_not_a_runs_is_left_out_with_a_note(tmp_path, write_run):
    for seed in (0, 1):
        write_run(tmp_path, "exp", "lisa", seed, {"boolq": 50.0})
    bad = write_run(tmp_path, "exp", "grass", 0, {"boolq": 50.0})
    for text in ("- a\n", "train: [unclosed\n", "method: grass\n"):  # used to be an AttributeError traceback
        (bad / "config.yaml").write_text(text)
        for include in (False, True):
            coll = collect("exp", tmp_path, include_unfinished=include)
            assert list(coll.runs["method"]) == ["lisa", "lisa"] and coll.excluded == {"unreadable": 1}
            assert "1 with a config.yaml that is not a run's" in coll.footnote()


def test_config_and_provenance_are_flattened(golden):
    runs = collect("golden", golden).runs
    grass = runs[runs["method"] == "grass"].iloc[0]
    assert grass["cfg.method.n_active_layers"] == 2 and grass["cfg.method.switch_every"] == 10
    assert grass["cfg.eval.benchmarks"] == '["boolq", "piqa"]'  # lists become JSON text
    assert grass["provenance.git_sha"] == "abc1234def5678" and grass["provenance.versions.torch"] == "2.13.0"
    assert (runs["variant"] == "").all()  # seeds alone never make a variant


def test_varied_hyper_parameters_become_variants(tmp_path, write_run):
    for gamma in (1, 4):
        for seed in (0, 1):
            write_run(tmp_path, "sens", "grass", seed, {"boolq": 50.0}, method_cfg={"n_active_layers": gamma})
    runs = collect("sens", tmp_path).runs
    assert sorted(runs["variant"].unique()) == ["n_active_layers=1", "n_active_layers=4"]


def test_variants_are_listed_in_the_order_of_their_values(tmp_path, write_run):
    """Numbers sort as numbers, not as text: 3e-05 before 0.0001, 2 before 16 (a sweep's table reads
    from one end of the range to the other)."""
    for tau in (0.003, 3e-05, 0.0001):
        write_run(tmp_path, "rates", "grass", 0, {"boolq": 50.0}, method_cfg={"tau": tau})
    for gamma in (16, 2, 8):
        write_run(tmp_path, "gammas", "grass", 0, {"boolq": 50.0}, method_cfg={"n_active_layers": gamma})
    assert list(collect("rates", tmp_path).runs["variant"]) == ["tau=3e-05", "tau=0.0001", "tau=0.003"]
    assert list(collect("gammas", tmp_path).runs["variant"]) == [f"n_active_layers={g}" for g in (2, 8, 16)]


def test_save_frame_round_trips(golden, tmp_path):
    coll = collect("golden", golden)
    csv, parquet = save_frame(coll, tmp_path)
    back = pd.read_parquet(parquet)
    assert len(back) == len(pd.read_csv(csv)) == 10
    assert set(back["state"]) == {"ok", "unfinished", "failed", "dirty"}
    assert back["included"].sum() == 7


def test_half_written_metrics_line_is_skipped(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0}\n{"step": 1, "lo')
    assert read_metrics(tmp_path)["step"].tolist() == [0]


def test_missing_experiment_names_the_known_ones(golden):
    with pytest.raises(GrassError, match=r"no runs of experiment 'nope'.*grass launch nope.*golden"):
        collect("nope", golden)


def test_no_finished_runs_is_a_clear_error(tmp_path, write_run):
    write_run(tmp_path, "pending", "grass", 0, finished=False)
    write_run(tmp_path, "pending", "full", 0, status="failed")
    with pytest.raises(GrassError, match=r"'pending' has no finished runs \(1 unfinished, 1 failed\): "
                                         r"launch it with `grass launch pending`"):
        collect("pending", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GrassError, match="has no runs yet: launch it with `grass launch empty`"):
        collect("empty", tmp_path)
