"""Checks that a loaded model and tokenizer can run what the config asks, before any run starts.

A model whose context is shorter than ``train.seq_len`` fails deep inside its position embedding
(``IndexError: index out of range in self`` for learned positions, OPT / GPT-2); a tokenizer with
an empty vocabulary (a model folder without its tokenizer files: transformers 5 builds an empty
one for some architectures instead of failing) turns every example into no tokens and the loss
into NaN. Both are the user's to fix, so they are :class:`~grass.errors.GrassError` s that name
the field to change.
"""
from __future__ import annotations

from grass.errors import ConfigError, ModelError

# How HF configs name the longest sequence a model was trained for (first found wins):
# LLaMA/Gemma/OPT/Qwen `max_position_embeddings` (GPT-2 maps it to `n_positions`), GPT-2/GPT-J
# `n_positions`, old GPT-2 `n_ctx`, MPT `max_seq_len`, ChatGLM `seq_length`, others `max_sequence_length`.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "max_sequence_length",
                "seq_length")
SAMPLE_TEXT = "The answer is 42. Question: is the sky blue? Answer: true"
TOKENIZER_HINT = "set model.tokenizer=<HF id or folder of its tokenizer> (grass eval: --tokenizer)"


def context_length(config) -> tuple[str, int] | None:
    """``(config key, length)`` of the model's trained context, or None when the config sets none
    (ALiBi models such as BLOOM have no hard limit).

    Rotary models may extrapolate past it, but it is still the length they were trained for, so
    the framework refuses longer sequences rather than guessing.
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in CONTEXT_KEYS:
        value = getattr(text, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            # the name config.json uses (GPT-2 aliases max_position_embeddings to n_positions)
            return getattr(text, "attribute_map", {}).get(key, key), value
    return None


def check_context(config, model_name: str, seq_len: int | None = None,
                  budgets: dict[str, int] | None = None, budget_field: str = "eval.max_new_tokens") -> None:
    """Refuse a training length or a generation budget the model's context cannot hold.

    Args:
        config: the model's HF config.
        model_name: as the user gave it (for the message).
        seq_len: ``train.seq_len``, or None to skip.
        budgets: benchmark -> new tokens generated per item; each must leave room for a prompt
            (longer prompts are cut from the left by :func:`grass.eval.protocol.generate`).
        budget_field: the option that sets the budget, for the message.

    Raises:
        ConfigError: naming both numbers and the field to change.
    """
    found = context_length(config)
    if found is None:
        return
    key, ctx = found
    if seq_len is not None and seq_len > ctx:
        raise ConfigError(f"train.seq_len={seq_len} is longer than the context of model '{model_name}' "
                          f"({key}={ctx}): set train.seq_len={ctx} or less")
    for bench, budget in (budgets or {}).items():
        if budget >= ctx:
            raise ConfigError(f"generating {budget} new tokens for {bench} leaves no room for the prompt in the "
                              f"context of model '{model_name}' ({key}={ctx}): set {budget_field} below {ctx} "
                              f"(e.g. {max(1, ctx // 4)})")


def check_tokenizer(tokenizer, model, model_name: str) -> None:
    """Refuse a tokenizer that cannot feed ``model``: empty vocabulary, no end-of-sequence token,
    or token ids past the model's embedding rows (a tokenizer of another model).

    Raises:
        ModelError: saying what is wrong and to set ``model.tokenizer``.
    """
    try:
        ids = tokenizer(SAMPLE_TEXT, add_special_tokens=False)["input_ids"]
    except Exception as e:  # noqa: BLE001 - a broken tokenizer is the user's input, whatever it raises
        raise ModelError(f"the tokenizer of model '{model_name}' cannot encode text ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}); {TOKENIZER_HINT}") from None
    if getattr(tokenizer, "vocab_size", 1) == 0 or len(tokenizer) == 0 or not ids:
        raise ModelError(f"the tokenizer of model '{model_name}' has an empty vocabulary (it encodes text to no "
                         f"tokens): its folder probably lacks the tokenizer files (tokenizer.json, vocab.json, "
                         f"tokenizer.model); {TOKENIZER_HINT}")
    if tokenizer.eos_token_id is None:
        raise ModelError(f"the tokenizer of model '{model_name}' has no end-of-sequence token, which ends every "
                         f"training response; {TOKENIZER_HINT}")
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    rows = getattr(emb, "num_embeddings", None)
    special = [t for t in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None]
    top = max([*ids, *special])
    if rows is not None and top >= rows:
        raise ModelError(f"the tokenizer of model '{model_name}' gives token id {top} but the model's embedding "
                         f"has {rows} rows: it is another model's tokenizer; {TOKENIZER_HINT}")
