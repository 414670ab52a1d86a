"""Prompt formatting and tokenization: the Alpaca-style template of LLM-Adapters, loss on the
response tokens only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE_INDEX = -100

# LLM-Adapters' generate_prompt (finetune.py), with and without an input field.
PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def render_prompt(example: dict) -> str:
    """The prompt (everything before the response) of a normalized example."""
    if example.get("input"):
        return PROMPT_WITH_INPUT.format(instruction=example["instruction"], input=example["input"])
    return PROMPT_NO_INPUT.format(instruction=example["instruction"])


def encode_example(tokenizer, example: dict, seq_len: int) -> tuple[dict, bool]:
    """Tokenize prompt + response (+ EOS); labels mask the prompt.

    Examples longer than ``seq_len`` are cut from the right, as LLM-Adapters does. When that would
    leave no response token at all (a prompt longer than ``seq_len``), the prompt is cut from the
    left instead so the example still carries loss.

    Returns:
        ``({"input_ids": list[int], "labels": list[int]}, truncated)``; both lists have the same
        length ``<= seq_len``.
    """
    prompt_ids = tokenizer(render_prompt(example), add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None and getattr(tokenizer, "add_bos_token", True):
        prompt_ids = [tokenizer.bos_token_id] + prompt_ids
    response_ids = tokenizer(example["output"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    truncated = len(prompt_ids) + len(response_ids) > seq_len
    if len(prompt_ids) >= seq_len:
        keep = max(1, seq_len // 2)
        prompt_ids = prompt_ids[-keep:]
    ids = (prompt_ids + response_ids)[:seq_len]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + response_ids)[:seq_len]
    return {"input_ids": ids, "labels": labels}, truncated


class TrainDataset(torch.utils.data.Dataset):
    """Training examples, tokenized on first access (a 150k-example mixture costs nothing until a
    batch needs it) and cached. ``num_truncated`` counts the truncated examples seen so far."""

    def __init__(self, examples: list[dict], tokenizer, seq_len: int):
        self.examples, self.tokenizer, self.seq_len = examples, tokenizer, seq_len
        self._cache: dict[int, dict] = {}
        self.num_truncated = 0

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        item = self._cache.get(i)
        if item is None:
            item, truncated = encode_example(self.tokenizer, self.examples[i], self.seq_len)
            self.num_truncated += truncated
            self._cache[i] = item
        return item

    @property
    def num_seen(self) -> int:
        return len(self._cache)


@dataclass
class Collator:
    """Right-pads a list of encoded examples into tensors of shape ``[batch, max_len]``."""

    pad_token_id: int

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        n = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), n), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), n), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for i, b in enumerate(batch):
            k = len(b["input_ids"])
            ids[i, :k] = torch.tensor(b["input_ids"])
            labels[i, :k] = torch.tensor(b["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}
