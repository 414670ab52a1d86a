"""Model configs without weights: a name resolved to the HF config object a run would build.

:func:`resolve_config` knows the tiny random test models (:func:`tiny_config`), the typed-in
published configs of :mod:`grass.models.presets` (and the converted GGUF models' cached
``config.json``), local folders / ``config.json`` files and HF ids. :func:`grass.models.load.load_model`
builds ``model.init=random`` models from it, and the memory planner (:mod:`grass.memory.model`)
predicts from it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from grass.errors import GrassError, ModelError
from grass.models.presets import ALIASES, PRESETS

TINY_MODELS = ("tiny-llama", "tiny-qwen2", "tiny-gemma", "tiny-gpt2")
TINY_LAYERS = 6
TINY_HIDDEN = 64


def cache_root(cache_dir: str | None = None) -> Path:
    """Root of the model cache (``$GRASS_CACHE``, default ``~/.cache/grass``); converted GGUF models
    live in its ``models/<name>`` folders."""
    return Path(cache_dir or os.environ.get("GRASS_CACHE") or Path.home() / ".cache" / "grass")


def tiny_config(name: str):
    """A 6-layer, hidden-64 random config of the named architecture family."""
    from transformers import Gemma3TextConfig, GPT2Config, LlamaConfig, Qwen2Config

    # initializer_range 0.1 (not 0.02): logits of a hidden-64 model are otherwise so small that an
    # adapter cannot move them, and a fixed batch cannot be fitted by LoRA in a test.
    common = dict(vocab_size=320, bos_token_id=257, eos_token_id=258, pad_token_id=256, initializer_range=0.1)
    if name == "tiny-llama":
        return LlamaConfig(hidden_size=TINY_HIDDEN, intermediate_size=128, num_hidden_layers=TINY_LAYERS,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                           tie_word_embeddings=False, **common)
    if name == "tiny-qwen2":
        return Qwen2Config(hidden_size=TINY_HIDDEN, intermediate_size=128, num_hidden_layers=TINY_LAYERS,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                           tie_word_embeddings=True, **common)
    if name == "tiny-gemma":
        return Gemma3TextConfig(hidden_size=TINY_HIDDEN, intermediate_size=128, num_hidden_layers=TINY_LAYERS,
                                num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                max_position_embeddings=1024, sliding_window=64, **common)
    if name == "tiny-gpt2":
        return GPT2Config(n_embd=TINY_HIDDEN, n_layer=TINY_LAYERS, n_head=4, n_positions=1024, **common)
    raise ModelError(f"unknown tiny model '{name}'; valid: {', '.join(TINY_MODELS)}")


def model_names() -> list[str]:
    """Names :func:`resolve_config` knows without a path: presets, GGUF models and tiny test models."""
    return [*PRESETS, *TINY_MODELS]


def _config_from_dict(d: dict):
    from transformers import AutoConfig

    d = dict(d)
    mt = d.pop("model_type", None)
    if mt is None:
        raise GrassError("config has no 'model_type'; give a config.json written by transformers")
    try:
        return AutoConfig.for_model(mt, **d)
    except (ValueError, KeyError) as e:
        raise GrassError(f"cannot build a config of model_type '{mt}': {str(e).splitlines()[0]}") from None


def resolve_config(name: str, cache_dir: str | None = None):
    """An HF config object for a preset, tiny model, GGUF model key, local folder / config.json, or HF id.

    ``smollm2-135m`` / ``gemma3-270m`` read the converted cache's ``config.json`` when present
    (exactly what a run loads), else their typed-in preset. Never loads weights.

    Raises:
        GrassError: unknown name (the message lists the valid names) or unreadable config.
    """
    key = ALIASES.get(name.lower(), name.lower())
    if name in TINY_MODELS:
        return tiny_config(name)
    if key in ("smollm2-135m", "gemma3-270m"):
        cached = cache_root(cache_dir) / "models" / key / "config.json"
        if cached.is_file():
            return _config_from_dict(json.loads(cached.read_text()))
    if key in PRESETS:
        return _config_from_dict(PRESETS[key])
    p = Path(name).expanduser()
    if p.is_dir() and (p / "config.json").is_file():
        p = p / "config.json"
    if p.is_file():
        try:
            return _config_from_dict(json.loads(p.read_text()))
        except json.JSONDecodeError as e:
            raise GrassError(f"'{p}' is not valid JSON: {e}") from None
    if "/" in name and not name.startswith((".", "/", "~")):
        try:  # an HF id: only config.json is fetched (needs the hub)
            from transformers import AutoConfig

            return AutoConfig.from_pretrained(name)
        except Exception as e:  # noqa: BLE001 - any hub/network failure is the user's to fix
            raise GrassError(f"cannot read the config of '{name}': {str(e).splitlines()[0]}") from None
    raise GrassError(f"unknown model '{name}': give a local folder or config.json, an HF id (org/name), "
                     f"or one of {', '.join(model_names())}")
