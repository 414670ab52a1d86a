"""The share of answers that could not be extracted is recorded per benchmark, logged beside the
accuracy and printed by ``grass eval`` (the tables' note: tests/unit/analysis/test_unparsed_note.py)."""
from __future__ import annotations

import json
import logging
import types

import pytest
import torch

from grass.eval import protocol

PIQA = [{"instruction": f"q{i}\n\nSolution1: a\n\nSolution2: b\n\nAnswer format: solution1/solution2",
         "input": "", "answer": gold} for i, gold in enumerate(["solution1", "solution1", "solution2", "solution1"])]
# correct; the paper's extraction needs the keyword 'solution1' (so no lenient 'Solution 1'); nothing; wrong
PIQA_RESPONSES = ["the correct answer is solution1", "Solution 1", "The answer is not provided.", "solution2"]
SVAMP = [{"instruction": "How many?", "input": "", "answer": "5"}, {"instruction": "How many?", "input": "",
                                                                     "answer": "7"}]


@pytest.fixture
def scripted(monkeypatch):
    """evaluate() on fixed items whose generated responses are scripted."""
    items = {"piqa": PIQA, "svamp": SVAMP}
    responses = {"piqa": PIQA_RESPONSES, "svamp": ["so the answer is 5", "I cannot tell"]}
    monkeypatch.setattr(protocol, "load_benchmark", lambda name, split, limit=None: items[name][:limit])
    monkeypatch.setattr(protocol, "generate",
                        lambda model, tok, exs, **kw: responses["piqa" if exs[0] in PIQA else "svamp"][:len(exs)])
    model = torch.nn.Linear(2, 2)
    model.config = types.SimpleNamespace()  # no context length: nothing to check
    return model


def test_unparsed_share_is_recorded_and_logged(scripted, caplog):
    with caplog.at_level(logging.INFO, logger="grass.eval.protocol"):
        r = protocol.evaluate(scripted, None, ["piqa", "svamp"], limit=None, batch_size=2, max_new_tokens=4)
    assert r["acc/piqa"] == 25.0 and r["eval/unparsed/piqa"] == 50.0
    assert r["acc/svamp"] == 50.0 and r["eval/unparsed/svamp"] == 50.0
    assert "acc  25.0% (unparsed  50.0%) on 4 items" in caplog.text


def test_grass_eval_prints_unparsed_beside_accuracy(scripted, monkeypatch, tmp_path, capsys):
    from grass.cli import main
    from grass.eval import commands

    monkeypatch.setattr(commands, "load_eval_model", lambda spec, dtype, tokenizer=None: (scripted, None, spec))
    monkeypatch.setattr("grass.data.check_benchmarks_available", lambda names: None)
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", "scripted", "--benchmarks", "piqa", "--device", "cpu", "--out", str(out)]) == 0
    header, _, row = capsys.readouterr().out.splitlines()[:3]
    assert "unparsed %" in header and row.split()[:3] == ["piqa", "25.0", "50.0"]
    assert json.loads(out.read_text())["eval/unparsed/piqa"] == 50.0
