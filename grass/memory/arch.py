"""A decoder LM's architecture as the memory planner sees it: shape facts and parameter tensors.

:func:`arch_from_config` normalizes an HF config; :func:`param_tensors` and :func:`adapter_tensors`
list the tensors by unit exactly as the model (and PEFT's ``all-linear`` LoRA/DoRA) creates them.
:mod:`grass.memory.model` and :mod:`grass.memory.activations` both build on this module.
"""
from __future__ import annotations

from dataclasses import dataclass

from grass.errors import GrassError

LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3")
# Gemma 2 is left out: its eager attention (logit softcapping, fp32 s x s probabilities) is not modelled
GEMMA_LIKE = ("gemma", "gemma3_text")
GPT2_LIKE = ("gpt2",)

@dataclass(frozen=True)
class Arch:
    """The shape facts of a decoder LM that memory depends on."""

    family: str  # llama | gemma | gpt2
    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    positions: int = 0  # GPT-2's learned position embeddings
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    norms_per_layer: int = 2
    qk_norm: bool = False
    sliding_window: int = 0
    n_sliding: int = 0  # layers that attend through a sliding-window mask
    rope_sets: int = 1  # Gemma 3 has a local and a global RoPE table
    dropout: float = 0.0  # GPT-2's attention / residual / embedding dropout in training

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


def arch_from_config(cfg) -> Arch:
    """Normalize an HF config (text part of a multimodal one) into an :class:`Arch`.

    Raises:
        GrassError: an architecture family the model does not describe.
    """
    if hasattr(cfg, "get_text_config"):
        cfg = cfg.get_text_config()
    mt = cfg.model_type
    tied = bool(getattr(cfg, "tie_word_embeddings", True))
    if mt in GPT2_LIKE:
        h = cfg.n_embd
        return Arch("gpt2", mt, h, cfg.n_layer, cfg.n_head, cfg.n_head, h // cfg.n_head, cfg.n_inner or 4 * h,
                    cfg.vocab_size, tied, positions=cfg.n_positions, qkv_bias=True, o_bias=True, mlp_bias=True,
                    dropout=float(max(cfg.attn_pdrop, cfg.resid_pdrop, cfg.embd_pdrop)))
    if mt in LLAMA_LIKE or mt in GEMMA_LIKE:
        h, nh = cfg.hidden_size, cfg.num_attention_heads
        nkv = getattr(cfg, "num_key_value_heads", None) or nh
        hd = getattr(cfg, "head_dim", None) or h // nh
        attn_bias = bool(getattr(cfg, "attention_bias", False))
        qkv_bias, o_bias = (True, False) if mt == "qwen2" else (attn_bias, attn_bias)
        types = list(getattr(cfg, "layer_types", None) or [])
        window = getattr(cfg, "sliding_window", None) or 0
        n_sliding = sum(t == "sliding_attention" for t in types) if window else 0
        fam = "gemma" if mt in GEMMA_LIKE else "llama"
        return Arch(fam, mt, h, cfg.num_hidden_layers, nh, nkv, hd, cfg.intermediate_size, cfg.vocab_size, tied,
                    qkv_bias=qkv_bias, o_bias=o_bias, mlp_bias=bool(getattr(cfg, "mlp_bias", False)),
                    norms_per_layer=2 if mt in ("gemma", *LLAMA_LIKE) else 4,
                    qk_norm=mt in ("qwen3", "gemma3_text"), sliding_window=window, n_sliding=n_sliding,
                    rope_sets=2 if mt == "gemma3_text" else 1)
    raise GrassError(f"the memory model does not know model_type '{mt}'; supported: "
                     f"{', '.join(LLAMA_LIKE + GEMMA_LIKE + GPT2_LIKE)}")


@dataclass(frozen=True)
class Tensor:
    """One parameter tensor: ``linear=(in, out)`` marks a weight that ``all-linear`` LoRA adapts;
    ``rows`` is its dim 0 (what FSDP shards; 0 = a 1-D tensor, ``rows == numel``)."""

    name: str
    numel: int
    linear: tuple[int, int] | None = None
    rows: int = 0


def _lin(name: str, n_in: int, n_out: int, bias: bool, conv1d: bool = False) -> list[Tensor]:
    # nn.Linear stores (out, in); GPT-2's Conv1D stores (in, out)
    w = Tensor(name, n_in * n_out, (n_in, n_out), rows=n_in if conv1d else n_out)
    return [w] + ([Tensor(name + ".bias", n_out)] if bias else [])


def param_tensors(arch: Arch) -> dict[str, list[Tensor]]:
    """Parameter tensors by unit: ``embed`` (input + position embeddings), ``layer`` (ONE decoder
    block; all blocks are alike), ``head`` (final norm and an untied LM head), as
    :func:`grass.layers.find_layers` splits them."""
    h, i, a = arch.hidden, arch.intermediate, arch
    embed = [Tensor("embed", a.vocab * h, rows=a.vocab)]
    if a.family == "gpt2":
        embed.append(Tensor("wpe", a.positions * h, rows=a.positions))
        layer = [Tensor("ln_1.weight", h), Tensor("ln_1.bias", h), *_lin("c_attn", h, 3 * h, True, True),
                 *_lin("attn.c_proj", h, h, True, True), Tensor("ln_2.weight", h), Tensor("ln_2.bias", h),
                 *_lin("c_fc", h, i, True, True), *_lin("mlp.c_proj", i, h, True, True)]
        head = [Tensor("ln_f.weight", h), Tensor("ln_f.bias", h)]
    else:
        layer = [*_lin("q_proj", h, a.q_dim, a.qkv_bias), *_lin("k_proj", h, a.kv_dim, a.qkv_bias),
                 *_lin("v_proj", h, a.kv_dim, a.qkv_bias), *_lin("o_proj", a.q_dim, h, a.o_bias),
                 *_lin("gate_proj", h, i, a.mlp_bias), *_lin("up_proj", h, i, a.mlp_bias),
                 *_lin("down_proj", i, h, a.mlp_bias)]
        layer += [Tensor(f"norm{k}", h) for k in range(a.norms_per_layer)]
        if a.qk_norm:
            layer += [Tensor("q_norm", a.head_dim), Tensor("k_norm", a.head_dim)]
        head = [Tensor("norm", h)]
    if not a.tied:
        head.append(Tensor("lm_head", a.vocab * h, rows=a.vocab))
    return {"embed": embed, "layer": layer, "head": head}


ALL_LINEAR = ("all-linear",)


# A block linear's path inside its decoder block, as PEFT sees the module name
# (``model.layers.3.self_attn.q_proj``, ``transformer.h.3.mlp.c_fc``).
_IN_BLOCK = {"q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
             "o_proj": "self_attn.o_proj", "gate_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj",
             "down_proj": "mlp.down_proj", "c_attn": "attn.c_attn", "attn.c_proj": "attn.c_proj",
             "c_fc": "mlp.c_fc", "mlp.c_proj": "mlp.c_proj"}


def _non_linear_paths(arch: Arch) -> tuple[str, ...]:
    """Module paths that are not linear layers (blocks' containers, norms, activations, dropouts, the
    model's trunk): PEFT refuses a target that names one ("Target module ... is not supported")."""
    if arch.family == "gpt2":
        return ("attn", "attn.attn_dropout", "attn.resid_dropout", "mlp", "mlp.act", "mlp.dropout", "ln_1", "ln_2",
                "transformer", "transformer.h", "transformer.drop", "transformer.ln_f")
    block = ["self_attn", "mlp", "mlp.act_fn", "input_layernorm", "post_attention_layernorm"]
    if arch.norms_per_layer == 4:
        block += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
    if arch.qk_norm:
        block += ["self_attn.q_norm", "self_attn.k_norm"]
    return (*block, "model", "model.layers", "model.norm", "model.rotary_emb")


def _module_names(arch: Arch) -> tuple[list[str], tuple[str, ...]]:
    """Full names of the modules inside the decoder blocks, with each block's index
    (``model.layers.3.self_attn.q_proj``), and of the adaptable modules outside the blocks."""
    if arch.family == "gpt2":
        prefix, outside = "transformer.h", ("lm_head", "transformer.wte", "transformer.wpe")
    else:
        prefix, outside = "model.layers", ("lm_head", "model.embed_tokens")
    paths = ["", *_IN_BLOCK.values(), *_non_linear_paths(arch)]
    blocks = [f"{prefix}.{i}" + (f".{path}" if path else "") for i in range(arch.layers) for path in paths]
    return blocks, outside


def _matches(target: str, path: str) -> bool:
    # PEFT's rule for a list of names: the full module name equals the target or ends with "." + it
    return path == target or path.endswith("." + target)


def target_names(targets: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    """``target_modules`` as a tuple of names; the string ``all-linear`` is :data:`ALL_LINEAR`.

    Raises:
        GrassError: any other string: PEFT reads it as a regular expression over full module names,
            which the planner does not model.
    """
    if isinstance(targets, str):
        if targets != ALL_LINEAR[0]:
            raise GrassError(f"target_modules '{targets}' is a string, which PEFT reads as a regular expression; "
                             f"the memory planner models a list of module names: pass [{targets}] or all-linear")
        return ALL_LINEAR
    return tuple(targets)


def adapted_linears(arch: Arch, targets: tuple[str, ...] | list[str] = ALL_LINEAR) -> list[Tensor]:
    """The weights of ONE decoder block that PEFT adapts for ``target_modules=targets`` (a list of names).

    ``all-linear``: every block linear (PEFT leaves the LM head out). Otherwise PEFT's rule: a
    module is adapted when its full name equals a target or ends with ``.`` + the target, so
    ``c_proj`` adapts GPT-2's ``attn.c_proj`` and ``mlp.c_proj``, ``self_attn.q_proj`` adapts
    ``q_proj``, ``attn.q_proj`` adapts nothing; a target that matches nothing is ignored, as PEFT
    ignores it, as long as another one matches.

    Raises:
        GrassError: no target matches a block linear (PEFT refuses such a config too); a target names a
            module that is not a linear layer (``mlp``, ``input_layernorm``: PEFT refuses it); a target
            names one layer (``model.layers.0.self_attn.q_proj``: the planner counts all blocks alike)
            or a module outside the decoder blocks (``lm_head``): neither is modelled; ``targets`` is a
            string other than ``all-linear`` (PEFT reads it as a regular expression over full module
            names, which the planner does not model).
    """
    targets = target_names(targets)
    linears = [t for t in param_tensors(arch)["layer"] if t.linear]
    if targets == ALL_LINEAR:
        return linears
    hint = f"name block linears ({', '.join(w.name for w in linears)}) or all-linear"
    non_linear = [t for t in targets if any(_matches(t, path) for path in _non_linear_paths(arch))]
    if non_linear:
        raise GrassError(f"target_modules names {', '.join(non_linear)}, which is not a linear layer (PEFT adapts "
                         f"linear layers and refuses it): {hint}")
    # Full module names, as PEFT matches them: a target that names nothing in this model is ignored
    blocks, outside_names = _module_names(arch)
    one_layer = [t for t in targets if any(part.isdigit() for part in t.split("."))
                 and any(_matches(t, name) for name in blocks)]
    outside = [t for t in targets if any(_matches(t, name) for name in outside_names)]
    if one_layer or outside:
        raise GrassError(f"the memory planner models adapters on every decoder block's linears alike; target_modules "
                         f"names {', '.join(one_layer + outside)} ({'one layer' if one_layer else 'outside the blocks'}): "
                         f"{hint}")
    adapted = [w for w in linears if any(_matches(t, _IN_BLOCK[w.name]) for t in targets)]
    if not adapted:
        raise GrassError(f"target_modules names {', '.join(targets) or 'nothing'}, which matches no linear of the "
                         f"decoder blocks ({', '.join(_IN_BLOCK[w.name] for w in linears)}); name one of them or "
                         f"all-linear")
    return adapted


def adapter_tensors(arch: Arch, rank: int = 8, dora: bool = False,
                    targets: tuple[str, ...] | list[str] = ALL_LINEAR) -> list[Tensor]:
    """LoRA (DoRA) tensors PEFT adds to ONE decoder block for ``target_modules=targets``."""
    out = []
    for t in adapted_linears(arch, targets):
        n_in, n_out = t.linear
        out += [Tensor(t.name + ".lora_A", rank * n_in, rows=rank),
                Tensor(t.name + ".lora_B", n_out * rank, rows=n_out)]
        if dora:
            out.append(Tensor(t.name + ".lora_magnitude_vector", n_out))
    return out


def count_params(arch: Arch) -> int:
    """Distinct parameters of the base model (tied weights once)."""
    p = param_tensors(arch)
    return sum(t.numel for t in p["embed"] + p["head"]) + arch.layers * sum(t.numel for t in p["layer"])
