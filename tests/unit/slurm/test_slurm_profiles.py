"""Cluster profiles: shipped ones load, nothing is guessed, errors name the fix."""
from __future__ import annotations

import pytest

from experiments.spec import Resources
from grass.errors import ConfigError
from slurm.profiles import load_profile, profile_names

REQUIRED = "partition: p\ntime_min: 30\nnodes: 1\ngpus_per_node: 1\ncpus_per_task: 4\nmem_gb: 16\n"


def write(tmp_path, text: str, name: str = "mine"):
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return p


def test_shipped_profiles_load():
    assert {"example", "local"} <= set(profile_names())
    local = load_profile("local")
    assert (local.partition, local.gpus_per_node, local.mem_gb) == ("debug", 0, None)
    params = local.executor_parameters("grass-smoke", max_parallel=3)
    assert params["partition"] == "debug" and params["array_parallelism"] == 3
    assert "gpus_per_node" not in params and "mem" not in params  # 0 GPUs / null memory: options not passed
    ex = load_profile("example").executor_parameters("x")
    assert ex["gpus_per_node"] == 1 and ex["mem"] == "65536M" and ex["account"] == "my-project"
    assert ex["additional_parameters"] == {"mail-type": "FAIL"} and ex["setup"]


def test_a_profile_by_path_or_from_the_profiles_dir(tmp_path, monkeypatch):
    p = write(tmp_path, REQUIRED + "qos: high\n")
    assert load_profile(str(p)).qos == "high"
    monkeypatch.setenv("GRASS_PROFILES_DIR", str(tmp_path))
    assert "mine" in profile_names() and load_profile("mine").partition == "p"


def test_missing_required_field_is_an_error(tmp_path):
    p = write(tmp_path, REQUIRED.replace("time_min: 30\n", "").replace("mem_gb: 16\n", ""))
    with pytest.raises(ConfigError, match="lacks required field\\(s\\) time_min, mem_gb.*nothing is guessed"):
        load_profile(str(p))
    p = write(tmp_path, REQUIRED.replace("time_min: 30", "time_min: null"))
    with pytest.raises(ConfigError, match="'time_min' must be set"):
        load_profile(str(p))


def test_unknown_field_wrong_type_unknown_profile(tmp_path):
    with pytest.raises(ConfigError, match="unknown field 'partiton'.*did you mean 'partition'"):
        load_profile(str(write(tmp_path, REQUIRED + "partiton: x\n")))
    with pytest.raises(ConfigError, match="'gpus_per_node' must be int"):
        load_profile(str(write(tmp_path, REQUIRED.replace("gpus_per_node: 1", "gpus_per_node: two"))))
    with pytest.raises(ConfigError, match="'nodes' must be positive"):
        load_profile(str(write(tmp_path, REQUIRED.replace("nodes: 1", "nodes: 0"))))
    with pytest.raises(ConfigError, match="unknown profile 'nope'; valid profiles: .*example.*local"):
        load_profile("nope")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_profile(str(write(tmp_path, "- a\n- b\n")))


def test_experiment_resources_override_the_profile():
    p = load_profile("example").with_resources(Resources(gpus=4, time_min=600).overrides())
    assert (p.gpus_per_node, p.time_min, p.partition) == (4, 600, "gpu")
    params = p.executor_parameters("x")
    assert params["gpus_per_node"] == 4 and params["time"] == 600
