"""The Alpaca template of LLM-Adapters, loss on the response only, truncation counted."""
from __future__ import annotations

import torch

from grass.data.format import IGNORE_INDEX, Collator, TrainDataset, encode_example, render_prompt
from grass.models.load import byte_tokenizer

EX = {"instruction": "Add 2 and 3.", "input": "", "output": "The answer is 5."}


def test_prompt_templates():
    assert render_prompt(EX).endswith("### Instruction:\nAdd 2 and 3.\n\n### Response:\n")
    assert "### Input:\nctx\n\n### Response:\n" in render_prompt({**EX, "input": "ctx"})
    assert render_prompt(EX).startswith("Below is an instruction that describes a task. Write a response")


def test_loss_on_response_only():
    tok = byte_tokenizer()
    enc, truncated = encode_example(tok, EX, 4096)
    n_prompt = sum(label == IGNORE_INDEX for label in enc["labels"])
    assert not truncated and tok.decode(enc["input_ids"][:n_prompt], skip_special_tokens=True) == render_prompt(EX)
    assert enc["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert enc["labels"][n_prompt:] == enc["input_ids"][n_prompt:] and enc["labels"][-1] == tok.eos_token_id
    assert tok.decode(enc["labels"][n_prompt:-1]) == EX["output"]


def test_truncation_is_counted():
    tok = byte_tokenizer()
    n_prompt = sum(label == IGNORE_INDEX for label in encode_example(tok, EX, 4096)[0]["labels"])
    ds = TrainDataset([EX, {**EX, "output": "x"}, {**EX, "output": "x" * 50}], tok, seq_len=n_prompt + 5)
    items = [ds[i] for i in range(len(ds))]
    assert ds.num_truncated == 2  # 'x' + EOS fits
    assert [len(it["input_ids"]) for it in items] == [n_prompt + 5, n_prompt + 2, n_prompt + 5]


def test_a_prompt_longer_than_seq_len_still_carries_loss():
    tok = byte_tokenizer()
    enc, truncated = encode_example(tok, {**EX, "instruction": "y" * 500}, 64)
    assert truncated and len(enc["input_ids"]) <= 64
    assert any(label != IGNORE_INDEX for label in enc["labels"])


def test_collator_right_pads():
    batch = Collator(pad_token_id=0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
                                      {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert torch.equal(batch["attention_mask"], torch.tensor([[1, 1, 1], [1, 0, 0]]))
