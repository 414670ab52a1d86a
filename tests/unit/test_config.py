"""Config loading: defaults, YAML deltas, overrides, and the errors a user sees."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from grass.cli import main
from grass.config import describe, load_config, run_id
from grass.errors import ConfigError


def test_yaml_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: 0.001\n  max_steps: 7\nmethod:\n  name: lora\n  rank: 4\n")
    cfg = load_config(f, ["train.lr=3e-4", "method.alpha=8"])
    assert cfg.train.lr == 3e-4 and cfg.train.max_steps == 7
    assert cfg.method.name == "lora" and cfg.method.rank == 4 and cfg.method.alpha == 8.0


def test_method_fields_are_typed_per_method():
    assert load_config(None, ["method.name=grass", "method.temperature=0.5"]).method.temperature == 0.5
    with pytest.raises(ConfigError, match="unknown config key 'method.rank'"):
        load_config(None, ["method.name=full", "method.rank=8"])


@pytest.mark.parametrize("overrides, message", [
    (["train.max_step=1"], "did you mean 'train.max_steps'"),
    (["trian.lr=1"], "did you mean 'train'"),
    (["train.max_steps=abc"], "train.max_steps"),
    (["train.max_steps=0"], "train.max_steps must be positive"),
    (["train.batch_size=-2"], "train.batch_size must be positive"),
    (["method.name=sgd"], "valid methods: full, lora, dora, lisa, grass"),
    (["train.precision=fp8"], "train.precision must be one of fp32, bf16"),
    (["method.name=grass", "method.probe_steps=50", "train.max_steps=20"], "leaves no update step"),
    (["train"], "not key=value"),
])
def test_bad_overrides(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(bad)


def test_run_id_is_stable_and_ignores_logging():
    a = load_config(None, ["train.lr=1e-3", "method.name=lisa"])
    b = load_config(None, ["method.name=lisa", "train.lr=0.001", "log.experiment=other"])
    assert run_id(a) == run_id(b) and run_id(a).startswith("lisa-")
    assert run_id(a) != run_id(load_config(None, ["method.name=lisa", "seed=1"]))


def test_recording_knobs_do_not_change_the_run_id():
    """Checkpointing (to survive preemption) and the logging period change how a run is recorded, not
    what it computes: a grid relaunched with checkpoints on finds its finished runs."""
    a = load_config(None, ["method.name=lisa"])
    b = load_config(None, ["method.name=lisa", "train.checkpoint_every=10", "train.log_every=5"])
    assert run_id(a) == run_id(b) == "lisa-531ccd22d4"


def test_run_ids_recorded_by_earlier_versions_still_match():
    # Ids of finished runs from before model.init existed: a new field at its default must not
    # change them (a grid launched again would re-run everything).
    assert run_id(load_config(None, ["method.name=lisa"])) == "lisa-531ccd22d4"
    # GRASS's offload defaults changed (issue 15: 64 MiB chunks, state in the weights' dtype): a
    # default run is a new run; the old settings, spelled out, find the old finished run; runs
    # whose optimizer state is not offloaded keep their id (the offload fields do not act there).
    # Later, probe_checkpointing came on by default: a default GRASS run is a new run again, and
    # probe_checkpointing=false (the behaviour before the field) finds the old one.
    old_grass = ["method.name=grass", "model.name=smollm2-135m", "method.probe_checkpointing=false"]
    assert run_id(load_config(None, old_grass)) != "grass-2e1c64d061"
    assert run_id(load_config(None, old_grass + ["method.offload_chunk_mb=null", "method.offload_fp32_state=true"])) \
        == "grass-2e1c64d061"
    assert run_id(load_config(None, old_grass[:2] + ["method.offload_chunk_mb=null",
                                                     "method.offload_fp32_state=true"])) != "grass-2e1c64d061"
    reset = run_id(load_config(None, old_grass + ["method.state_policy=reset"]))
    assert reset == "grass-e150f3bc41"  # recorded before the change
    assert run_id(load_config(None, old_grass + ["method.state_policy=reset", "method.offload_chunk_mb=8"])) == reset
    assert run_id(load_config(None, ["method.name=lisa", "model.init=random"])) != "lisa-531ccd22d4"
    # A run that checkpoints every step has nothing for probe checkpointing to do: either value, or
    # none (before the field), is one run.
    checkpointed = [run_id(load_config(None, old_grass[:2] + ["train.gradient_checkpointing=true"] + extra))
                    for extra in ([], ["method.probe_checkpointing=false"], ["method.probe_checkpointing=true"])]
    assert len(set(checkpointed)) == 1
    with pytest.raises(ConfigError, match="model.init must be one of pretrained, random"):
        load_config(None, ["model.init=zeros"])


def test_describe_shows_help():
    text = describe(load_config(None, ["method.name=grass"]))
    assert "temperature: 1.0" in text and "softmax" in text


@pytest.mark.parametrize("argv, message", [
    (["train", "train.max_steps=0"], "train.max_steps must be positive"),
    (["train", "model.name=tiny-llma"], "unknown model 'tiny-llma'"),
    (["train", "method.name=nope"], "unknown method 'nope'"),
    (["train", "--config", "/does/not/exist.yaml"], "does not exist"),
])
def test_cli_bad_input_is_one_line_exit_2(argv, message, capsys, runs_dir):
    assert main(argv + ["log.wandb=disabled"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not runs_dir.exists() or not any(runs_dir.rglob("result.json"))


def test_config_show(capsys):
    assert main(["config", "show", "method.name=lora"]) == 0
    assert "rank: 8" in capsys.readouterr().out


def test_from_run_dir_validates_with_the_values_the_run_ran_with(tmp_path, monkeypatch):
    # A field added later is filled with its before-value *before* the checks run: a check that reads
    # it sees what the run ran with, not today's default (here data.heldout, which eval.heldout_loss needs).
    import grass.config as config

    monkeypatch.setitem(config.ADDED_LATER, ("data", "heldout"), 16)
    saved = config.to_dict(config.config_from_dicts([{"data": {"heldout": 16}, "eval": {"heldout_loss": True}}]))
    del saved["data"]["heldout"]
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(saved)))
    cfg = config.from_run_dir(tmp_path)
    assert cfg.data.heldout == 16 and cfg.eval.heldout_loss
    # a field another method's config lacks is not filled in (LoRA has no offload fields)
    saved = config.to_dict(config.config_from_dicts([{"method": {"name": "lora"}}]))
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(saved)))
    assert config.from_run_dir(tmp_path).method.name == "lora"
    # a config that is not sections is refused in one line, as a scalar method section is
    # and so is one that is empty or names no model or method (it is not a run's: defaults would
    # make it a full fine-tuning run), or is not YAML
    for text, says in (("- a\n", "is not a run's config"),
                       ("model: {name: tiny-llama}\nmethod: grass\n", "'method' is a section"),
                       ("", "names no model"), ("# only a comment\n", "names no model"), ("{}\n", "names no model"),
                       ("seed: 3\n", "names no model"), ("model: {}\nmethod: {}\n", "names no model"),
                       ("model: {name: tiny-llama}\n", "names no method"), ("0\n", "not readable YAML"),
                       ("train: [unclosed\n", "not readable YAML"), ("\t\n", "not readable YAML")):
        (tmp_path / "config.yaml").write_text(text)
        with pytest.raises(ConfigError, match=says):
            config.from_run_dir(tmp_path)
