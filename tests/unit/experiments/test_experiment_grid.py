"""Experiment definitions and grid expansion: stable ids, validation before submission, --only."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from experiments.grid import expand, select
from experiments.registry import experiment_names, get_experiment
from experiments.spec import Experiment, flatten, nest
from grass.config import config_from_dicts, from_run_dir, load_config, run_id, to_dict, to_yaml
from grass.errors import ConfigError, GrassError

REPO = Path(__file__).resolve().parents[3]

BASE = {"model.name": "tiny-llama", "train.max_steps": 20, "log.wandb": "disabled"}


def exp(**kw) -> Experiment:
    args = dict(name="t", question="q?", base=dict(BASE), axes={"method.name": ["lisa", "full"]}, seeds=[0, 1])
    args.update(kw)
    return Experiment(**args)


SHIPPED = ["ablation_static", "lr_sweep", "main_arith", "main_commonsense", "memory_throughput", "quickstart",
           "sensitivity", "smoke"]


def test_every_shipped_experiment_expands_with_unique_ids():
    assert set(SHIPPED) <= set(experiment_names())
    for name in SHIPPED:
        e = get_experiment(name)
        runs = expand(e)
        assert len(runs) == e.grid_size, name
        assert len({r.run_id for r in runs}) == len(runs), name
        assert all(r.cfg.log.experiment == name for r in runs)


def test_paper_grids_have_the_promised_shape():
    for name in ("main_arith", "main_commonsense"):
        runs = expand(get_experiment(name))
        assert {r.cfg.method.name for r in runs} == {"full", "lora", "dora", "lisa", "grass"}
        assert {r.cfg.seed for r in runs} == {0, 1, 2}
    smoke = expand(get_experiment("smoke"))
    assert len(smoke) == 4 and {r.cfg.model.name for r in smoke} == {"tiny-llama"}
    assert all(r.cfg.log.wandb == "disabled" for r in smoke)
    quick = expand(get_experiment("quickstart"))
    assert {r.cfg.method.name for r in quick} == {"full", "lora", "lisa", "grass"}
    assert len(set(r.cfg.train.max_steps for r in quick)) == 1 and len(quick[0].cfg.eval.benchmarks) >= 4
    paper = expand(get_experiment("quickstart"), budget="paper")
    assert paper[0].cfg.train.max_steps > quick[0].cfg.train.max_steps
    assert paper[0].cfg.eval.limit > quick[0].cfg.eval.limit


def test_ids_do_not_depend_on_axis_order_or_where_a_value_is_written():
    a = exp(axes={"method.name": ["lisa", "grass"], "train.lr": [1e-4, 2e-4]})
    b = exp(axes={"train.lr": [2e-4, 1e-4], "method.name": ["grass", "lisa"]}, base=dict(reversed(BASE.items())))
    assert {r.run_id for r in expand(a)} == {r.run_id for r in expand(b)}
    nested = exp(base={"model": {"name": "tiny-llama"}, "train": {"max_steps": 20}, "log": {"wandb": "disabled"}})
    assert [r.run_id for r in expand(nested)] == [r.run_id for r in expand(exp())]
    # the logging section (runs dir, experiment name) is not part of a run's identity
    assert [r.run_id for r in expand(exp(), runs_dir="/tmp/elsewhere")] == [r.run_id for r in expand(exp())]


def test_dict_values_set_several_keys_and_label_the_run():
    e = exp(axes={"method.name": [{"method.name": "lisa", "train.lr": 1e-4}, {"method.name": "lisa", "train.lr": 3e-4},
                                  {"method.name": "full", "train.lr": 1e-5}]}, seeds=[0])
    runs = expand(e)
    assert [r.cfg.train.lr for r in runs] == [1e-4, 3e-4, 1e-5]
    assert runs[0].label() == "method.name=lisa train.lr=0.0001 seed=0"
    assert runs[2].label() == "method.name=full seed=0"
    knobs = exp(base={**BASE, "method.name": "grass"}, axes={"knob": [{}, {"method.temperature": 2.0}]}, seeds=[0])
    assert [r.label() for r in expand(knobs)] == ["knob=default seed=0", "knob=method.temperature=2.0 seed=0"]


def test_an_axis_naming_an_unknown_key_fails_with_the_closest_key():
    with pytest.raises(ConfigError, match="unknown config key 'method.n_active_layer'.*did you mean "
                                          "'method.n_active_layers'"):
        expand(exp(axes={"method.name": ["lisa"], "method.n_active_layer": [1, 2]}))
    with pytest.raises(ConfigError, match="did you mean 'train.lr'"):
        expand(exp(axes={"method.name": [{"method.name": "lisa", "train.lrr": 1e-4}]}))
    with pytest.raises(ConfigError, match="experiment 't', run method.name=full"):
        expand(exp(axes={"method.name": ["full"], "train.max_steps": [0]}))


def test_two_runs_with_the_same_id_are_an_error():
    with pytest.raises(ConfigError, match="two runs with the same id"):
        expand(exp(axes={"train.lr": [2e-4, 0.0002]}))
    with pytest.raises(ConfigError, match="two runs with the same id"):
        expand(exp(axes={"method.name": ["lisa", {"method.name": "lisa", "train.lr": 1e-4}]}))  # 1e-4 = default


def test_overrides_apply_to_every_run_but_not_to_an_axis_key():
    runs = expand(exp(), overrides=["train.max_steps=7"])
    assert {r.cfg.train.max_steps for r in runs} == {7}
    with pytest.raises(ConfigError, match="'method.name' is varied by experiment 't'.*--only"):
        expand(exp(), overrides=["method.name=grass"])
    with pytest.raises(ConfigError, match="not key=value"):
        expand(exp(), overrides=["train.max_steps"])


def test_only_filters_on_resolved_config_values():
    e = exp(axes={"method.name": ["lisa", "full"], "train.lr": [1e-4, 2e-4]})
    assert len(expand(e, only=["method.name=lisa"])) == 4
    assert len(expand(e, only=["method.name=lisa", "seed=1"])) == 2
    assert len(expand(e, only=["seed=0", "seed=1"])) == 8  # same key: alternatives
    assert len(expand(e, only=["method.name=lisa,full", "train.lr=0.0002"])) == 4
    assert len(expand(e, only=["train.lr=2e-4"])) == 4  # numbers compare as numbers


def test_only_errors_name_the_problem():
    e = exp()
    with pytest.raises(ConfigError, match="matches none of the 4 runs.*method.name takes full, lisa"):
        expand(e, only=["method.name=grass"])
    with pytest.raises(ConfigError, match="unknown config key 'methd.name'.*did you mean 'method.name'"):
        expand(e, only=["methd.name=lisa"])
    with pytest.raises(ConfigError, match="not key=value"):
        select(expand(e), ["lisa"])


def test_bad_definitions_are_rejected():
    with pytest.raises(ConfigError, match="lower_snake_case"):
        exp(name="My Exp")
    with pytest.raises(ConfigError, match="non-empty list"):
        exp(axes={"train.lr": []})
    with pytest.raises(ConfigError, match="without repeats"):
        exp(seeds=[0, 0])
    with pytest.raises(ConfigError, match="put seeds in 'seeds'"):
        exp(axes={"seed": [0, 1]})
    with pytest.raises(ConfigError, match="no budget 'huge'; valid budgets: small, paper"):
        expand(get_experiment("quickstart"), budget="huge")


def test_unknown_experiment_lists_the_valid_ones():
    with pytest.raises(GrassError, match="unknown experiment 'smok'; valid experiments: .*smoke"):
        get_experiment("smok")


def test_flatten_and_nest_are_inverse():
    d = {"train": {"lr": 1e-4, "seq_len": 64}, "seed": 3, "eval.benchmarks": ["boolq"]}
    assert flatten(d) == {"train.lr": 1e-4, "train.seq_len": 64, "seed": 3, "eval.benchmarks": ["boolq"]}
    assert nest(flatten(d)) == {"train": {"lr": 1e-4, "seq_len": 64}, "seed": 3, "eval": {"benchmarks": ["boolq"]}}


def test_a_run_config_survives_the_trip_to_a_job_with_its_id(tmp_path):
    for run in expand(get_experiment("quickstart")) + expand(get_experiment("smoke")):
        assert run_id(config_from_dicts([to_dict(run.cfg)])) == run.run_id  # what a SLURM job receives
        (tmp_path / "config.yaml").write_text(to_yaml(run.cfg))
        assert run_id(from_run_dir(tmp_path)) == run.run_id  # what a local process reads


def test_a_run_recorded_before_a_field_existed_reloads_as_it_ran(tmp_path):
    """A GRASS config.yaml from before method.probe_checkpointing and the offload fields existed:
    a SLURM job (``slurm.runner`` reads it back) must resume it as it ran, under its own id."""
    cfg = load_config(None, ["method.name=grass", "method.probe_checkpointing=false",
                             "method.offload_chunk_mb=null", "method.offload_fp32_state=true"])
    old = to_dict(cfg)
    for key in ("probe_checkpointing", "offload_chunk_mb", "offload_fp32_state"):
        del old["method"][key]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    back = from_run_dir(tmp_path)
    assert (back.method.probe_checkpointing, back.method.offload_chunk_mb, back.method.offload_fp32_state) == \
        (False, None, True)
    assert run_id(back) == run_id(cfg)
    assert load_config(None, ["method.name=grass"]).method.probe_checkpointing  # today's default differs


def test_seed_plan_spends_more_seeds_where_it_matches():
    exp = Experiment(name="plan", question="q?", base={"train.max_steps": 2},
                     axes={"data.train": ["math", "commonsense"], "method.name": ["full", "lisa"]}, seeds=[0],
                     seed_plan=[({"data.train": "math", "method.name": ["lisa"]}, [0, 1, 2])])
    runs = expand(exp)
    per_point = {}
    for r in runs:
        per_point.setdefault((r.cfg.data.train, r.cfg.method.name), []).append(r.cfg.seed)
    assert per_point == {("math", "full"): [0], ("math", "lisa"): [0, 1, 2], ("commonsense", "full"): [0],
                         ("commonsense", "lisa"): [0]}
    assert exp.grid_size == len(runs) == 6
    with pytest.raises(ConfigError, match="seed_plan"):
        Experiment(name="bad", question="q?", seed_plan=[({"method.name": "lisa"}, [1, 1])])


def test_cpu_repro_meets_the_issue_budget():
    """At least 200 steps of >= 512 tokens, 256 held-out examples, >= 200 items per benchmark,
    8 seeds of the layer-wise methods on arithmetic, >= 20 draws of the active set per run."""
    runs = expand(get_experiment("cpu_repro"))
    assert len(runs) == 45
    for r in runs:
        t = r.cfg.train
        assert t.max_steps >= 200 and t.batch_size * t.seq_len >= 512
        assert r.cfg.data.heldout == 256 and r.cfg.eval.heldout_loss
        if r.cfg.method.name in ("lisa", "grass"):
            probe = getattr(r.cfg.method, "probe_steps", 0)
            assert (t.max_steps - probe) // r.cfg.method.switch_every >= 20
    seeds = {}
    for r in runs:
        key = (r.cfg.data.train, r.cfg.method.name, getattr(r.cfg.method, "mode", None))
        seeds[key] = seeds.get(key, 0) + 1
    assert seeds[("math", "lisa", None)] == seeds[("math", "grass", "adaptive")] == seeds[("math", "grass", "static")] == 8
    assert all(n >= 3 for n in seeds.values())
    # every committed run is still one of the grid's runs (a new field or default that moved their ids
    # would orphan them, and the grid would train them again)
    committed = {p.parent.name for p in (REPO / "results" / "cpu_repro").glob("*/result.json")}
    assert committed and committed <= {r.run_id for r in runs}


def test_cpu_lr_sweep_trains_like_cpu_repro_and_selects_on_other_examples():
    """The sweep's runs differ from cpu_repro's arithmetic runs only in the rate, the held-out salt
    (the rate is chosen on examples no reported figure uses), the evaluation (none: its batch size
    stays at the runs' launch value), and when the held-out loss is logged; every committed run is
    one of its runs (a change that moves the sweep's run ids would orphan them)."""
    repro = {r.cfg.method.name: r.cfg for r in expand(get_experiment("cpu_repro"))
             if r.cfg.data.train == "math" and r.cfg.seed == 0 and getattr(r.cfg.method, "mode", None) != "static"}
    sweep = expand(get_experiment("cpu_lr_sweep"))
    assert sorted((r.cfg.method.name, r.cfg.train.lr) for r in sweep) == \
        [("lisa", 3e-5), ("lisa", 1e-4), ("lisa", 3e-4), ("lisa", 1e-3), ("lora", 3e-4), ("lora", 1e-3), ("lora", 3e-3),
         ("lora", 1e-2)]
    committed = {p.parent.name for p in (REPO / "results" / "cpu_lr_sweep").glob("*/result.json")}
    assert len(committed) == 8 and committed <= {r.run_id for r in sweep}
    for r in sweep:
        ref = repro[r.cfg.method.name]
        assert r.cfg.data.heldout == ref.data.heldout and r.cfg.data.heldout_seed != ref.data.heldout_seed
        assert r.cfg.eval.benchmarks == [] and r.cfg.eval.heldout_loss
        assert r.cfg.train == type(ref.train)(**{**vars(ref.train), "lr": r.cfg.train.lr})
        assert r.cfg.method == ref.method


def test_run_order_launches_the_deciding_runs_first_seed_by_seed():
    exp = Experiment(name="ordered", question="q?", base={"model.name": "tiny-llama"},
                     axes={"data.train": ["math", "commonsense"], "method.name": ["full", "lisa", "grass"]},
                     seeds=[0, 1], run_order=[{"data.train": "math", "method.name": ["lisa", "grass"]},
                                              {"data.train": "math"}])
    order = [(r.cfg.data.train, r.cfg.method.name, r.cfg.seed) for r in expand(exp)]
    assert order == [("math", "lisa", 0), ("math", "grass", 0), ("math", "lisa", 1), ("math", "grass", 1),
                     ("math", "full", 0), ("math", "full", 1),
                     *[("commonsense", m, s) for s in (0, 1) for m in ("full", "lisa", "grass")]]
    unordered = Experiment(name="ordered", question="q?", base={"model.name": "tiny-llama"}, axes=exp.axes,
                           seeds=[0, 1])
    assert sorted(r.run_id for r in expand(unordered)) == sorted(r.run_id for r in expand(exp))
    with pytest.raises(ConfigError, match="run_order"):
        Experiment(name="bad", question="q?", run_order=["math"])


def test_cpu_repro_decides_claims_b_and_c_first():
    first = [(r.cfg.method.name, getattr(r.cfg.method, "mode", None), r.cfg.seed)
             for r in expand(get_experiment("cpu_repro"))][:6]
    assert first == [("lisa", None, 0), ("grass", "adaptive", 0), ("grass", "static", 0),
                     ("lisa", None, 1), ("grass", "adaptive", 1), ("grass", "static", 1)]
