"""Held-out loss: the token-mean loss on response tokens of examples no run trains on.

It has far more statistical power than task accuracy at a small budget: every response token
counts, and because the held-out examples are the same for every run (:mod:`grass.data.heldout`),
two runs' losses can be compared pairwise. The standard error treats examples (not tokens) as
the independent draws: the loss is a ratio ``sum_i s_i / sum_i n_i`` of per-example token-loss
sums ``s_i`` and token counts ``n_i``, and its standard error is the delta-method one,
``sqrt(sum_i (s_i - L n_i)^2 / (k (k - 1))) / mean(n)``.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from grass.data.format import IGNORE_INDEX, Collator, encode_example


def ratio_mean_se(sums: list[float], counts: list[int]) -> tuple[float, float]:
    """Ratio estimate ``sum(sums) / sum(counts)`` and its delta-method standard error over items.

    Args:
        sums: per-item sums (e.g. token losses of one example).
        counts: per-item counts (its response tokens); items with count 0 are skipped.

    Returns:
        ``(mean, se)``; ``se`` is NaN with fewer than two items.
    """
    pairs = [(s, n) for s, n in zip(sums, counts) if n > 0]
    k = len(pairs)
    if k == 0:
        return math.nan, math.nan
    total_n = sum(n for _, n in pairs)
    mean = sum(s for s, _ in pairs) / total_n
    if k < 2:
        return mean, math.nan
    resid = sum((s - mean * n) ** 2 for s, n in pairs)
    return mean, math.sqrt(resid / (k * (k - 1))) / (total_n / k)


@torch.no_grad()
def heldout_loss(model, tokenizer, examples: list[dict], *, seq_len: int, batch_size: int,
                 device: torch.device, precision: str = "fp32") -> dict:
    """Token-mean loss of ``model`` on the response tokens of ``examples``.

    Args:
        model: a causal LM (PEFT-wrapped is fine); eval mode for the call, mode restored after.
        tokenizer: its tokenizer.
        examples: held-out examples (normalized schema), encoded as in training.
        seq_len: ``train.seq_len`` (the same truncation as training).
        batch_size: examples per forward pass.
        device: where inputs go.
        precision: ``fp32`` or ``bf16`` (autocast, as the training step).

    Returns:
        ``{"loss/heldout": mean, "loss/heldout_se": standard error, "loss/heldout_n": examples,
        "loss/heldout_tokens": response tokens}``.
    """
    collate = Collator(tokenizer.pad_token_id)
    encoded = [encode_example(tokenizer, ex, seq_len)[0] for ex in examples]
    # Batches of similar length waste little on padding; the estimate does not depend on the order.
    encoded.sort(key=lambda e: len(e["input_ids"]))
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    was_training = model.training
    model.eval()
    sums: list[float] = []
    counts: list[int] = []
    try:
        for start in range(0, len(encoded), batch_size):
            batch = {k: v.to(device) for k, v in collate(encoded[start:start + batch_size]).items()}
            labels = batch["labels"]
            scored = labels != IGNORE_INDEX
            if not scored.any():
                sums += [0.0] * len(labels)
                counts += [0] * len(labels)
                continue
            # Only positions that predict a response token need the LM head (a fifth of a small
            # model's forward, and the vocabulary-wide log-softmax): keep the logits from the
            # batch's first response token on.
            first = max(1, int(scored.int().argmax(dim=1)[scored.any(dim=1)].min()))
            with autocast:
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               logits_to_keep=labels.shape[1] - first + 1).logits
            target = labels[:, first:]
            mask = target != IGNORE_INDEX
            # One example at a time: an fp32 copy of the whole batch's logits is batch x len x vocab x 4
            # bytes (3 GiB at 64 x 256 x 49k, twice over with the log-softmax), and two runs side by side
            # ran out of memory. Each row is computed exactly as in the whole batch (the same bits).
            for k in range(len(target)):
                tok = F.cross_entropy(logits[k:k + 1, :-1].float().transpose(1, 2), target[k:k + 1],
                                      ignore_index=IGNORE_INDEX, reduction="none")  # [1, len - first]
                sums += (tok * mask[k:k + 1]).sum(dim=1).tolist()
                counts += mask[k:k + 1].sum(dim=1).tolist()
    finally:
        model.train(was_training)
    mean, se = ratio_mean_se(sums, counts)
    return {"loss/heldout": mean, "loss/heldout_se": se, "loss/heldout_n": len(examples),
            "loss/heldout_tokens": int(sum(counts))}
