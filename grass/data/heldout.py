"""The held-out split of the training data: examples no run ever trains on.

The split depends only on the data and ``data.heldout_seed``, never on the run seed or the
method, so every run of a grid is evaluated on the same held-out examples and their held-out
losses are paired. Membership is decided by a salted hash of each example's text (not by its
position), so reordering a file or adding examples moves few examples across the split, and
duplicates of a held-out example are removed from training too.
"""
from __future__ import annotations

import hashlib
import json

from grass.errors import ConfigError


def example_key(example: dict, salt: int) -> str:
    """Salted content hash of an example (its prompt and response fields)."""
    text = json.dumps([example.get("instruction", ""), example.get("input", ""), example.get("output", "")])
    return hashlib.sha1(f"{salt}\0{text}".encode()).hexdigest()


def heldout_count(heldout: float | None, n: int) -> int:
    """Examples to hold out: ``heldout`` is a count (>= 1, whole) or a fraction (0 < f < 1) of ``n``.

    Raises:
        ConfigError: a non-whole count, a value <= 0, or a split that leaves nothing to train on.
    """
    if heldout is None:
        return 0
    h = float(heldout)
    if h <= 0:
        raise ConfigError(f"data.heldout must be a count >= 1 or a fraction in (0, 1), got {heldout}")
    k = max(1, round(h * n)) if h < 1 else int(h)
    if h >= 1 and h != int(h):
        raise ConfigError(f"data.heldout={heldout} is neither a whole count nor a fraction below 1")
    if k >= n:
        raise ConfigError(f"data.heldout={heldout} holds out {k} of the {n} training examples and leaves none "
                          f"to train on; use a smaller count or a fraction")
    return k


def split_heldout(examples: list[dict], heldout: float | None, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Split ``examples`` into (train, held-out).

    Args:
        examples: the training examples as loaded (normalized schema).
        heldout: a count or a fraction (see :func:`heldout_count`); None holds out nothing.
        seed: ``data.heldout_seed``, the salt of the content hash.

    Returns:
        ``(train, heldout)``; held-out examples in a fixed (hash) order, training examples in
        their original order, minus every example whose text equals a held-out one.

    Raises:
        ConfigError: see :func:`heldout_count`.
    """
    k = heldout_count(heldout, len(examples))
    if k == 0:
        return examples, []
    keys = [example_key(ex, seed) for ex in examples]
    order = sorted(range(len(examples)), key=lambda i: keys[i])
    held, held_keys = [], set()
    for i in order:
        if len(held) == k:
            break
        if keys[i] not in held_keys:
            held_keys.add(keys[i])
            held.append(examples[i])
    train = [ex for ex, key in zip(examples, keys) if key not in held_keys]
    return train, held
