"""The speed a run records: measured over its timed steps only, and absent (not 0) without any."""
import json

import pytest

from grass.cli import main


def _result(runs_dir, *args: str) -> dict:
    assert main(["train", "model.name=tiny-llama", "train.seq_len=64", *args]) == 0
    (run,) = list((runs_dir / "default").iterdir())
    return json.loads((run / "result.json").read_text())


def test_a_run_with_no_timed_step_records_no_speed(runs_dir):
    # GRASS's probe steps and the first update step after them are not timed (warm-up): with
    # probe_steps=2 and 3 steps nothing is left to time
    result = _result(runs_dir, "method.name=grass", "method.probe_steps=2", "train.max_steps=3")
    assert "speed/tokens_per_s" in result  # the field is there, empty
    assert result["speed/tokens_per_s"] is None and result["speed/step_time_s_median"] is None


@pytest.mark.parametrize("method", [["method.name=lisa"], ["method.name=grass", "method.probe_steps=2"]])
def test_timed_steps_give_a_positive_speed(runs_dir, method):
    result = _result(runs_dir, *method, "train.max_steps=5")
    assert result["speed/tokens_per_s"] > 0 and result["speed/step_time_s_median"] > 0


def test_step_time_includes_the_methods_layer_switch(runs_dir, monkeypatch):
    """A layer switch (and the offload engine's swap-in it starts) is part of the step it serves:
    on a clock that only the switch advances, every timed step lasts exactly one switch."""
    import types

    import grass.layerwise
    import grass.measure

    clock = [0.0]
    monkeypatch.setattr(grass.measure, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    switch_start = grass.layerwise.LayerwiseMethod.on_step_start

    def slow_switch(self, step):
        clock[0] += 5.0
        switch_start(self, step)

    monkeypatch.setattr(grass.layerwise.LayerwiseMethod, "on_step_start", slow_switch)
    result = _result(runs_dir, "method.name=lisa", "train.max_steps=4")
    assert result["speed/step_time_s_median"] == 5.0
