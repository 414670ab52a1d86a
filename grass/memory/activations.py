"""Analytic activation memory of a fine-tuning step (bytes saved for backward), per method.

Used by :mod:`grass.memory.model`, which calls :func:`activation_bytes`; docs/memory.md gives
the formulas and :class:`grass.memory.tracker.ActivationTracker` measures the same quantity.
"""
from __future__ import annotations

from grass.errors import GrassError
from grass.memory.arch import ALL_LINEAR, Arch, adapted_linears

F32 = 4  # bytes of a float32


# Which tensor feeds each block linear, for LoRA without dropout in fp32: there lora_A's input IS
# that tensor, saved once however many adapters read it; the attention output (o_proj's input)
# is saved by attention itself. Sizes per token in elements, by Arch field.
_LINEAR_INPUT = {"q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in", "o_proj": None,
                 "gate_proj": "mlp_in", "up_proj": "mlp_in", "down_proj": "mlp_mid",
                 "c_attn": "attn_in", "attn.c_proj": None, "c_fc": "mlp_in", "mlp.c_proj": "mlp_mid"}


def _layer_act(a: Arch, mode: str, w: int, s: int, masked: bool, device: str,
               lora: tuple[int, float, tuple[str, ...]], c: int | None = None) -> float:
    """Bytes saved for backward by ONE decoder block, per token (see docs/memory.md).

    Args:
        mode: ``train`` (weights trainable), ``frozen`` (weights frozen, gradient flows through),
            ``lora`` / ``dora`` (frozen base + adapters on the targeted linears), ``none`` (no gradient).
        w: bytes per element of the weights/activations (4 fp32, 2 bf16).
        s: sequence length; masked: the attention gets a mask (padding or a sliding window),
            so SDPA saves a float copy of it and GQA keys/values are repeated to every head.
        device: ``cpu`` | ``cuda`` (dropout masks: float on CPU, 1 byte on CUDA; GPT-2's
            attention dropout takes the math path on CPU).
        lora: ``(rank, dropout, target_modules)``.
        c: bytes per element of what the block's linears compute (``w``; 2 under bf16 autocast of
            fp32 weights: each linear's output, and the bf16 copy of its input it keeps for its
            weight's gradient, one copy per linear; norms and the residual stay fp32).
    """
    if mode == "none":
        return 0.0
    c = w if c is None else c
    h, i, q, kv, nh = a.hidden, a.intermediate, a.q_dim, a.kv_dim, a.heads
    train = mode == "train"
    mask_b = w if device == "cpu" else 1  # a dropout mask element
    if a.family == "gpt2":
        attn_drop = a.dropout > 0
        b = 2 * (w * h + 8) + w * (3 * h + h) + 4 * w * i  # LN x/mean/rstd, qkv (one tensor), out, GELU(new)
        if device == "cpu" and attn_drop:  # CPU SDPA with dropout: math path keeps softmax, mask, dropped probs
            b += nh * s * (3 * w if w == F32 else 13.5)  # bf16: measured (fp32 softmax kept as well)
        else:
            b += 4 * nh + (w * s if masked else 0)
        b += 2 * h * mask_b if attn_drop else 0  # residual dropout masks
        if train:
            b += w * (2 * h + i)  # inputs of c_attn, c_fc, mlp.c_proj
    else:
        kvs = q if (masked and kv != q) else kv  # repeat_kv copies when a mask is passed to SDPA
        attn = c * (2 * q + 2 * kvs) + F32 * nh + (c * s if masked else 0)  # q, k (RoPE'd), v, out; lse; mask
        norm_frozen = F32 * h + F32  # x upcast to fp32 (x itself in fp32) + rsqrt
        norm_train = w * h if a.family == "llama" else F32 * h  # normalized x kept for the weight's grad
        b = a.norms_per_layer * norm_frozen + attn + 3 * c * i  # gate, act(gate), up
        if a.qk_norm:
            b += F32 * (q + kv) + F32 * (nh + a.kv_heads)
            if train:
                b += (c if a.family == "llama" else F32) * (q + kv)
        if train:
            b += a.norms_per_layer * norm_train
            # linear inputs: the two norm outputs and act*up, each once; under autocast every
            # linear keeps its own bf16 cast of its input (q, k, v; gate, up), act*up is bf16 already
            b += (2 * w * h if c == w else 5 * c * h) + c * i
    if mode in ("lora", "dora"):
        rank, p, targets = lora
        adapted = adapted_linears(a, targets)
        ins = [t.linear[0] for t in adapted]
        outs = [t.linear[1] for t in adapted]
        if p > 0:  # each adapter: dropout(x cast to fp32) kept for lora_A, its mask, lora_A's output
            b += sum(n * (F32 + (F32 if device == "cpu" else 1)) for n in ins) + F32 * rank * len(ins)
        elif w != F32:  # no dropout: each lora_A keeps its own fp32 cast of its input
            b += F32 * sum(ins) + F32 * rank * len(ins)
        else:  # fp32: the cast is the block's own tensor, kept once (see _LINEAR_INPUT)
            size = {"attn_in": h, "mlp_in": h, "mlp_mid": i}
            b += F32 * sum(size[g] for g in {_LINEAR_INPUT[t.name] for t in adapted} - {None}) + F32 * rank * len(ins)
        if mode == "dora":  # (m/||W||-1) * base_out + m/||W|| * lora_out keep both outputs, fp32
            b += 2 * F32 * sum(outs)
    return float(b)


def _layer_const(a: Arch, mode: str, w: int, targets: tuple[str, ...], c: int | None = None) -> int:
    """Per-block bytes that do not scale with tokens: DoRA on bf16 weights keeps an fp32 copy of
    every adapted base weight (``weight.to(x.dtype)`` feeds ``F.linear``, saved for the input grad);
    under bf16 autocast (``c`` < ``w``) every linear of a block that gradient flows through keeps
    the bf16 cast of its weight for its input's gradient, trainable or frozen."""
    if mode == "dora" and w != F32:
        return F32 * sum(t.numel for t in adapted_linears(a, targets))
    if c is not None and c < w and mode != "none":
        return c * sum(t.numel for t in adapted_linears(a, ALL_LINEAR))
    return 0


def activation_bytes(a: Arch, modes: list[str], *, w: int, seq_len: int, batch: int, grad_ckpt: bool,
                     head_trainable: bool, norm_trainable: bool, embed_trainable: bool = False, padded: bool = True,
                     device: str = "cuda",
                     lora: tuple[int, float, tuple[str, ...]] = (8, 0.05, ALL_LINEAR),
                     autocast: bool = False) -> dict[str, int]:
    """Peak bytes of activations during one forward+backward (parameters and gradients excluded).

    ``peak = sum_l saved_l * T + final_norm * T + rope + max(12 V T, T_block)`` with ``T = batch *
    seq_len`` tokens: every block's saved tensors are alive when backward starts, and the loss's
    backward holds three fp32 ``[T, V]`` tensors at once (log-softmax output, its gradient, the
    logits' gradient). With gradient checkpointing a block keeps only its input (``w*h`` per token)
    and one block is recomputed at a time during backward. A trainable TIED embedding adds
    in-flight gradient buffers: autograd holds the LM head's ``[V, h]`` weight gradient until the
    embedding's dense gradient arrives at the end of backward and sums the two out of place, so
    ``V h w`` is alive through backward and ``3 V h w`` at its very end.

    Args:
        modes: one mode per decoder block (see :func:`_layer_act`).
        head_trainable: the LM head weight gets a gradient; norm_trainable: the final norm does.

        embed_trainable: the input embeddings get a gradient (matters for tied embeddings).
        autocast: bf16 autocast over fp32 weights (``train.precision=bf16``, ``model.dtype=float32``):
            the linears compute in bf16 and keep bf16 casts of their weights (:func:`_layer_const`);
            the loss still runs in fp32. Not modelled for GPT-2 or LoRA/DoRA.

    Returns:
        ``{"layers", "head", "loss", "tied_grad", "peak"}`` in bytes.
    """
    h, s, toks = a.hidden, seq_len, batch * seq_len
    c = 2 if autocast and w == F32 else w  # autocast over bf16 weights casts nothing
    if c != w and (a.family == "gpt2" or any(m in ("lora", "dora") for m in modes)):
        raise GrassError("the memory planner does not model bf16 autocast of fp32 weights for GPT-2 or "
                         "LoRA/DoRA; plan with precision bf16 (bf16 weights) or fp32 (no autocast)")
    sliding_masked = a.sliding_window and s > a.sliding_window
    per_layer = []
    for k, m in enumerate(modes):
        masked = padded or (sliding_masked and k < a.n_sliding)
        per_layer.append(_layer_act(a, m, w, s, bool(masked), device, lora, c) * toks
                         + _layer_const(a, m, w, lora[2], c))
    t_block = 2 * w * h * toks  # backward temporaries of one block (gradients of its input/output)
    if grad_ckpt:
        layers = sum(w * h * toks for m in modes if m != "none")
        recompute = max(per_layer) + t_block
    else:
        layers = sum(per_layer)
        recompute = t_block
    if a.family == "gpt2":
        head = (w * h + 8 + (w * h if head_trainable else 0)) * toks
        head += h * (w if device == "cpu" else 1) * toks if a.dropout > 0 else 0  # embedding dropout mask
    else:
        head = (F32 * h + F32) * toks
        head += (w * h if a.family == "llama" else F32 * h) * toks if norm_trainable else 0
        head += c * h * toks if head_trainable else 0
        head += a.rope_sets * 2 * s * a.head_dim * w  # cos, sin: [1, s, head_dim]
        head += c * a.vocab * h if c != w else 0  # the LM head's bf16 weight cast, kept for the hidden's grad
    loss = 3 * F32 * a.vocab * toks
    tied = a.vocab * h * w if (a.tied and embed_trainable) else 0
    peak = max(layers + head + max(loss, recompute + tied), 3 * tied)
    if c != w:
        # Under autocast the forward can set the peak: its cast cache holds the bf16 copy of every
        # trainable weight until the autocast region ends (with checkpointing nothing else keeps
        # them), while the loss holds the bf16 logits, their fp32 copy and the log-softmax output.
        cached = c * sum(t.numel for t in adapted_linears(a, ALL_LINEAR)) * modes.count("train") if grad_ckpt else 0
        peak = max(peak, layers + head + cached + (c + 2 * F32) * a.vocab * toks)
    return {"layers": int(layers), "head": int(head), "loss": int(loss), "tied_grad": int(tied), "peak": int(peak)}


# -------------------------------------------------------------------------------------- optimizer
