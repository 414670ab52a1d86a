"""Published model configurations, typed in from their public ``config.json`` files (no hub needed).

Each preset is a plain dict in the HF ``config.json`` format (``model_type`` picks the config class),
so :func:`grass.models.configs.resolve_config` turns it into the same config object
``AutoConfig.from_pretrained`` would give. Sources (the ``config.json`` of each HF repository):

* TinyLlama-1.1B: ``TinyLlama/TinyLlama-1.1B-Chat-v1.0``
* Gemma-2B: ``google/gemma-2b``
* LLaMA2-7B / 13B / 70B: ``meta-llama/Llama-2-{7,13,70}b-hf``
* SmolLM2-135M: ``HuggingFaceTB/SmolLM2-135M-Instruct`` (what ``smollm2-135m`` converts to; the
  converted cache's own ``config.json`` is preferred when present)
* Gemma3-270M: ``google/gemma-3-270m`` (text model)
"""
from __future__ import annotations

_LLAMA2 = dict(model_type="llama", hidden_act="silu", max_position_embeddings=4096, rms_norm_eps=1e-5,
               vocab_size=32000, tie_word_embeddings=False, attention_bias=False, mlp_bias=False)

PRESETS: dict[str, dict] = {
    "tinyllama-1.1b": dict(model_type="llama", hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                           num_attention_heads=32, num_key_value_heads=4, vocab_size=32000,
                           max_position_embeddings=2048, rms_norm_eps=1e-5, hidden_act="silu",
                           tie_word_embeddings=False),
    "gemma-2b": dict(model_type="gemma", hidden_size=2048, intermediate_size=16384, num_hidden_layers=18,
                     num_attention_heads=8, num_key_value_heads=1, head_dim=256, vocab_size=256000,
                     max_position_embeddings=8192, rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh",
                     tie_word_embeddings=True),
    "llama2-7b": dict(_LLAMA2, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32),
    "llama2-13b": dict(_LLAMA2, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                       num_attention_heads=40, num_key_value_heads=40),
    "llama2-70b": dict(_LLAMA2, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                       num_attention_heads=64, num_key_value_heads=8),
    "smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                         max_position_embeddings=8192, rms_norm_eps=1e-5, hidden_act="silu",
                         tie_word_embeddings=True),
    "gemma3-270m": dict(model_type="gemma3_text", hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                        num_attention_heads=4, num_key_value_heads=1, head_dim=256, vocab_size=262144,
                        max_position_embeddings=32768, sliding_window=512, query_pre_attn_scalar=256,
                        rms_norm_eps=1e-6, tie_word_embeddings=True),
}

# Display names and the paper's aliases.
ALIASES = {"tinyllama": "tinyllama-1.1b", "llama-2-7b": "llama2-7b", "llama-2-13b": "llama2-13b",
           "llama-2-70b": "llama2-70b", "meta-llama/llama-2-7b-hf": "llama2-7b",
           "meta-llama/llama-2-13b-hf": "llama2-13b", "meta-llama/llama-2-70b-hf": "llama2-70b",
           "google/gemma-2b": "gemma-2b", "tinyllama/tinyllama-1.1b-chat-v1.0": "tinyllama-1.1b"}
