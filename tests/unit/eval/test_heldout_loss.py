"""Held-out loss: the token mean over response tokens, its standard error, and its records."""
import json
import math

import pytest
import torch

from grass.cli import main
from grass.data.format import Collator, encode_example
from grass.eval.heldout import heldout_loss, ratio_mean_se
from grass.models.load import load_model


def test_ratio_mean_se_by_hand():
    sums, counts = [2.0, 6.0, 1.0], [1, 3, 1]
    mean, se = ratio_mean_se(sums, counts)
    assert mean == pytest.approx(9 / 5)
    # residuals s_i - L n_i: 0.2, 0.6, -0.8; sum of squares 1.04; k = 3; mean count 5/3
    assert se == pytest.approx(math.sqrt(1.04 / 6) / (5 / 3))
    assert ratio_mean_se([3.0], [2])[0] == 1.5 and math.isnan(ratio_mean_se([3.0], [2])[1])
    assert ratio_mean_se([1.0, 5.0], [0, 0]) == pytest.approx((math.nan, math.nan), nan_ok=True)


def _one_at_a_time(model, tok, examples, seq_len):
    """Reference: each example alone, HF's own loss (the token mean over its labels) times its tokens."""
    sums, counts = [], []
    with torch.no_grad():
        for ex in examples:
            batch = Collator(tok.pad_token_id)([encode_example(tok, ex, seq_len)[0]])
            n = int((batch["labels"][:, 1:] != -100).sum())
            sums.append(float(model(**batch).loss) * n)
            counts.append(n)
    return ratio_mean_se(sums, counts), sum(counts)


@pytest.mark.parametrize("adapter", [False, True])
def test_heldout_loss_is_the_token_mean_of_the_models_own_loss(adapter):
    torch.manual_seed(0)
    model, tok = load_model("tiny-llama")
    if adapter:  # PEFT passes the forward's keyword arguments through to the base model
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    # prompts and responses of different lengths: a batch's examples start their responses at
    # different positions, and sorting by length regroups them
    examples = [{"instruction": "Say " + "please " * (7 - 2 * i) + w + ".", "input": "", "output": w * (i + 1)}
                for i, w in enumerate("abcde")] + [{"instruction": "Nothing?", "input": "", "output": "no " * 9}]
    out = heldout_loss(model, tok, examples, seq_len=64, batch_size=3, device=torch.device("cpu"))
    (mean, se), tokens = _one_at_a_time(model, tok, examples, 64)
    assert out["loss/heldout"] == pytest.approx(mean, rel=1e-5)
    assert out["loss/heldout_se"] == pytest.approx(se, rel=1e-4) and se > 0
    assert out["loss/heldout_tokens"] == tokens and out["loss/heldout_n"] == 6


def test_heldout_loss_row_by_row_gives_the_whole_batch_bits(monkeypatch):
    """The loss is taken one example at a time (memory), bit for bit as over the whole batch, so
    results recorded before and after the change compare exactly."""
    import torch.nn.functional as F

    import grass.eval.heldout as heldout

    torch.manual_seed(0)
    model, tok = load_model("tiny-llama")
    examples = [{"instruction": f"Count to {i}.", "input": "", "output": "one two three " * (i + 1)} for i in range(5)]
    kw = dict(seq_len=64, batch_size=5, device=torch.device("cpu"))
    rows = heldout_loss(model, tok, examples, **kw)
    whole = []  # the batch computed at once: each call's full batch, its row sums taken in one go
    real = F.cross_entropy

    def batched(logits, target, **kw2):
        out = real(logits, target, **kw2)
        if logits.shape[0] == 1:  # the row-by-row calls: compute the same rows within the whole batch too
            whole.append(out)
        return out

    monkeypatch.setattr(heldout.F, "cross_entropy", batched)
    assert heldout_loss(model, tok, examples, **kw) == rows
    assert len(whole) == len(examples)  # one call per example
    monkeypatch.undo()
    collate = Collator(tok.pad_token_id)
    enc = sorted((encode_example(tok, ex, 64)[0] for ex in examples), key=lambda e: len(e["input_ids"]))
    batch = collate(enc)
    labels = batch["labels"]
    scored = labels != -100
    first = max(1, int(scored.int().argmax(dim=1).min()))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       logits_to_keep=labels.shape[1] - first + 1).logits
    target = labels[:, first:]
    tok_loss = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), target, ignore_index=-100, reduction="none")
    sums = (tok_loss * (target != -100)).sum(dim=1).tolist()
    assert rows["loss/heldout"] == ratio_mean_se(sums, (target != -100).sum(dim=1).tolist())[0]


def test_train_records_heldout_loss_in_metrics_and_result(runs_dir, fixed_batch_file, tmp_path):
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"instruction": f"What is {i} plus 1?", "input": "", "output": f"It is {i + 1}."}
                                for i in range(24)]))
    code = main(["train", "model.name=tiny-llama", "method.name=lisa", f"data.train={data}", "data.heldout=0.25",
                 "eval.heldout_loss=true", "eval.heldout_every=2", "train.max_steps=5", "train.batch_size=4",
                 "train.seq_len=64", "train.lr=5e-3", "method.switch_every=2"])
    assert code == 0
    (run,) = [p for p in (runs_dir / "default").iterdir()]
    result = json.loads((run / "result.json").read_text())
    assert result["loss/heldout_n"] == 6 and result["data/train_examples"] == 18
    assert math.isfinite(result["loss/heldout"]) and result["loss/heldout_se"] > 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss/heldout" in r] == [1, 3]
    # training lowered the held-out loss of a task this easy (lr 5e-3 on a tiny model)
    first = next(r["loss/heldout"] for r in rows if "loss/heldout" in r)
    assert result["loss/heldout"] < first


def test_heldout_loss_without_heldout_data_is_refused(capsys):
    assert main(["train", "eval.heldout_loss=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "data.heldout" in err
