"""W&B logger: disabled costs nothing, failures never stop training, offline runs hold the logged keys."""
from __future__ import annotations

import logging
import sys
import types
from pathlib import Path

import pytest

from grass import wandb_log
from grass.config import RunConfig
from grass.wandb_log import WandbLogger

ROW = {"step": 3, "loss": 2.5, "lr": 1e-4, "tokens_per_s": 900.0, "active_layers": [1, 3],
       "layer_probs": [0.1, 0.2, 0.3, 0.4], "mgn": [0.5, 0.6, 0.7, 0.8], "probe": False, "note": None}


def _cfg(mode: str, method: str = "grass") -> RunConfig:
    cfg = RunConfig()
    cfg.log.wandb = mode
    cfg.log.experiment = "exp1"
    cfg.log.tags = ["nightly"]
    cfg.method.name = method
    return cfg


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(wandb_log, "_warned", set())


class FakeRun:
    def __init__(self):
        self.logged: list[tuple[dict, int | None]] = []
        self.summary: dict = {}
        self.finished_with = None

    def log(self, payload, step=None):
        self.logged.append((payload, step))

    def finish(self, exit_code=0):
        self.finished_with = exit_code


@pytest.fixture
def fake_wandb(monkeypatch):
    """A stand-in ``wandb`` module that records what the logger does."""
    module = types.SimpleNamespace(inits=[], run=FakeRun())

    def init(**kwargs):
        module.inits.append(kwargs)
        return module.run

    module.init = init
    module.Image = lambda data, caption=None: ("image", data.shape, caption)
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def test_disabled_never_imports_wandb(monkeypatch, tmp_path, caplog):
    monkeypatch.setitem(sys.modules, "wandb", None)  # any `import wandb` would now raise ImportError
    logger = WandbLogger(_cfg("disabled"), tmp_path)
    logger.log(ROW, step=3)
    logger.log_summary({"acc/avg": 1.0})
    logger.finish()
    assert not logger.active and not caplog.records and not (tmp_path / "wandb").exists()


def test_missing_wandb_warns_once_and_training_goes_on(monkeypatch, tmp_path, caplog):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with caplog.at_level(logging.WARNING, logger="grass.wandb_log"):
        for _ in range(2):
            logger = WandbLogger(_cfg("offline"), tmp_path)
            logger.log(ROW, step=3)
            logger.finish()
    assert not logger.active
    assert [r.getMessage() for r in caplog.records] == [
        "log.wandb=offline but wandb is not installed (pip install 'grass-suite[wandb]'); continuing without W&B"]


def test_init_failure_warns_and_continues(fake_wandb, tmp_path, caplog):
    def broken(**kwargs):
        raise RuntimeError("no space left")

    fake_wandb.init = broken
    with caplog.at_level(logging.WARNING, logger="grass.wandb_log"):
        logger = WandbLogger(_cfg("offline"), tmp_path)
        logger.log(ROW, step=3)
    assert not logger.active
    assert "W&B init failed in offline mode (RuntimeError: no space left)" in caplog.text


def test_init_groups_tags_and_config(fake_wandb, tmp_path):
    run_dir = tmp_path / "exp1" / "grass-abc123"
    WandbLogger(_cfg("offline"), run_dir)
    kw = fake_wandb.inits[0]
    assert kw["mode"] == "offline" and kw["dir"] == str(run_dir) and kw["group"] == "exp1"
    assert kw["name"] == "grass-abc123" and kw["project"] == "grass"
    assert kw["tags"] == ["grass", "tiny-llama", "default", "seed0", "nightly"]
    assert kw["config"]["method"]["name"] == "grass" and kw["config"]["train"]["max_steps"] == 100


def test_log_flattens_per_layer_lists_and_finish_logs_heatmap(fake_wandb, tmp_path):
    logger = WandbLogger(_cfg("offline"), tmp_path)
    logger.log(ROW, step=3)
    logger.log({**ROW, "step": 4, "active_layers": [0, 2]}, step=4)
    payload, step = fake_wandb.run.logged[0]
    assert step == 3
    assert payload == {"loss": 2.5, "lr": 1e-4, "tokens_per_s": 900.0, "active_layers/count": 2,
                       "layer_probs/L0": 0.1, "layer_probs/L1": 0.2, "layer_probs/L2": 0.3, "layer_probs/L3": 0.4,
                       "mgn/L0": 0.5, "mgn/L1": 0.6, "mgn/L2": 0.7, "mgn/L3": 0.8, "probe": 0}
    logger.log_summary({"acc/avg": 61.0, "mem/peak_device_gib": None, "status": "success"})
    assert fake_wandb.run.summary == {"acc/avg": 61.0, "status": "success"}
    run = fake_wandb.run
    logger.finish(exit_code=0)
    logger.finish()  # idempotent
    last = run.logged[-1][0]
    assert list(last) == ["layers/heatmap"]
    kind, shape, _ = last["layers/heatmap"]
    assert kind == "image" and len(shape) == 3 and shape[2] == 3  # an RGB image
    assert run.finished_with == 0 and not logger.active


def test_a_failing_log_call_disables_logging_but_not_training(fake_wandb, tmp_path, caplog):
    logger = WandbLogger(_cfg("offline", method="full"), tmp_path)

    def boom(payload, step=None):
        raise OSError("disk full")

    fake_wandb.run.log = boom
    with caplog.at_level(logging.WARNING, logger="grass.wandb_log"):
        logger.log({"step": 1, "loss": 1.0}, step=1)
        logger.log({"step": 2, "loss": 1.0}, step=2)
    assert not logger.active and caplog.text.count("W&B logging failed (OSError: disk full)") == 1


def test_offline_run_files_hold_the_logged_keys(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for key, value in {"WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true", "WANDB_DISABLE_CODE": "true",
                       "WANDB_CONSOLE": "off", "WANDB_X_DISABLE_STATS": "true", "WANDB_X_DISABLE_META": "true",
                       "WANDB_CONFIG_DIR": str(tmp_path / "cfg"), "WANDB_CACHE_DIR": str(tmp_path / "cache"),
                       "WANDB_DATA_DIR": str(tmp_path / "data"), "WANDB_API_KEY": ""}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run_dir = tmp_path / "exp1" / "grass-offline1"
    run_dir.mkdir(parents=True)
    logger = WandbLogger(_cfg("offline"), run_dir)
    assert logger.active
    for step in range(3):
        logger.log({**ROW, "step": step}, step=step)
    logger.log_summary({"acc/avg": 61.5})
    logger.finish()
    import wandb

    wandb.teardown()  # the W&B service writes the record file asynchronously: wait until it has stopped
    (record,) = list(Path(run_dir, "wandb").glob("offline-run-*/run-*.wandb"))
    data = record.read_bytes()
    for key in (b"loss", b"layer_probs/L3", b"mgn/L0", b"active_layers/count", b"acc/avg", b"layers/heatmap",
                b"exp1", b"seed0", b"nightly", b"grass-offline1"):
        assert key in data, key


# --- the defaults defer to W&B's environment variables; an explicit log.* value wins ---------------

WANDB_ENV = ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_DIR")


@pytest.fixture
def clean_env(monkeypatch):
    for key in WANDB_ENV:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


@pytest.mark.parametrize("setting, env, mode", [
    ("auto", None, "offline"),           # no WANDB_MODE: offline into the run directory, as before
    ("auto", "disabled", "disabled"),
    ("auto", "Online", "online"),
    ("auto", "dryrun", "dryrun"),        # W&B's own alias of offline, passed through
    ("offline", "disabled", "offline"),  # explicit log.wandb wins
    ("disabled", "online", "disabled"),
])
def test_mode_defers_to_wandb_mode(clean_env, setting, env, mode):
    if env is not None:
        clean_env.setenv("WANDB_MODE", env)
    assert wandb_log.resolve_mode(setting) == mode


def test_unknown_wandb_mode_is_a_config_error(clean_env):
    from grass.errors import ConfigError

    clean_env.setenv("WANDB_MODE", "offlne")
    with pytest.raises(ConfigError, match="WANDB_MODE='offlne' is not a W&B mode"):
        wandb_log.resolve_mode("auto")


def test_auto_with_wandb_mode_disabled_never_imports_wandb(clean_env, tmp_path):
    clean_env.setenv("WANDB_MODE", "disabled")
    clean_env.setitem(sys.modules, "wandb", None)
    assert not WandbLogger(_cfg("auto"), tmp_path).active and not (tmp_path / "wandb").exists()


def test_project_entity_and_dir_come_from_the_environment(fake_wandb, clean_env, tmp_path):
    clean_env.setenv("WANDB_PROJECT", "team-proj")
    clean_env.setenv("WANDB_ENTITY", "my-team")
    clean_env.setenv("WANDB_DIR", str(tmp_path / "wandb-home"))
    WandbLogger(_cfg("auto"), tmp_path / "run")
    kw = fake_wandb.inits[-1]
    assert (kw["mode"], kw["project"], kw["entity"], kw["dir"]) == ("offline", "team-proj", "my-team",
                                                                     str(tmp_path / "wandb-home"))
    cfg = _cfg("online")
    cfg.log.project, cfg.log.entity = "explicit", "someone"
    WandbLogger(cfg, tmp_path / "run")
    kw = fake_wandb.inits[-1]
    assert (kw["mode"], kw["project"], kw["entity"]) == ("online", "explicit", "someone")


def test_defaults_without_environment(fake_wandb, clean_env, tmp_path):
    WandbLogger(_cfg("auto"), tmp_path / "run")
    kw = fake_wandb.inits[-1]
    assert (kw["mode"], kw["project"], kw["entity"], kw["dir"]) == ("offline", "grass", None, str(tmp_path / "run"))


@pytest.mark.parametrize("env, overrides, inits", [
    ({"WANDB_MODE": "disabled"}, [], 0),                        # was: an offline run written anyway
    ({"WANDB_MODE": "offline", "WANDB_PROJECT": "p1"}, [], 1),
    ({"WANDB_MODE": "online"}, ["log.wandb=disabled"], 0),    # an explicit log.wandb= still wins
    ({"WANDB_MODE": "disabled"}, ["log.wandb=offline"], 1),
])
def test_grass_train_honours_wandb_env(fake_wandb, clean_env, fixed_batch_file, runs_dir, env, overrides, inits):
    import importlib.machinery

    from grass.cli import main

    # transformers imports accelerate during the run, which asks importlib whether wandb exists
    fake_wandb.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    for k, v in env.items():
        clean_env.setenv(k, v)
    clean_env.setenv("WANDB_DIR", str(runs_dir.parent / "wandb-home"))
    assert main(["train", "--no-progress", f"data.train={fixed_batch_file}", "train.max_steps=1",
                 "train.batch_size=2", "train.seq_len=32", *overrides]) == 0
    assert len(fake_wandb.inits) == inits
    if inits:
        kw = fake_wandb.inits[0]
        assert kw["mode"] == "offline" and kw["dir"] == str(runs_dir.parent / "wandb-home")
        assert kw["project"] == env.get("WANDB_PROJECT", "grass")
