"""Memory model: predicted bytes of a fine-tuning run from the model's config alone (no weights).

The config comes from :func:`grass.models.configs.resolve_config` (presets, tiny models, folders, HF ids).

``predict(model, method, ...)`` returns weights, gradients, optimizer state (on the device and in
host memory), activations and their total for ``full``, ``lora``, ``dora``, ``lisa`` and ``grass``.
docs/memory.md states every formula; in short:

* Parameters are counted exactly from the architecture (LLaMA / Mistral / Qwen2 / Qwen3, Gemma 1-3,
  GPT-2: biases, norms, tied embeddings), LoRA/DoRA adapters exactly as PEFT creates them for
  ``target_modules`` (default ``all-linear``: every decoder linear, not the LM head; A ``r x in``, B
  ``out x r``, DoRA magnitude ``out``; always fp32, PEFT's ``autocast_adapter_dtype``).
* Weights, gradients and optimizer state are what :func:`grass.measure.byte_accounting` reports
  in a real run, peak over update steps as ``grass.train`` records them (after
  ``optimizer.step()``, before ``zero_grad``): exact, not estimates (tests/unit/memory/test_memory_model.py).
  ``torch.optim.AdamW``: ``exp_avg`` + ``exp_avg_sq`` in the parameter's dtype, created at a
  parameter's first update, plus a 4-byte float32 ``step`` tensor per parameter tensor (on the
  host on CUDA). The offload engine (:mod:`grass.optim.offload`): every unit's state allocated
  at construction, in the weights' dtype or fp32 with masters; on CUDA its staging slots are on
  the device and the rest in pinned host memory (docs/offload.md has the layout and defaults).
* Activations are an analytic estimate (bytes saved for backward per token and layer, plus the
  fp32 log-softmax peak of the loss); see :func:`activation_bytes` and docs/memory.md.

:class:`grass.memory.tracker.ActivationTracker` measures the same quantity on any device (live tensor bytes created
inside a forward+backward, parameters and gradients excluded), so the estimate is checked on a CPU.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from grass.errors import GrassError
from grass.memory.activations import activation_bytes
from grass.memory.arch import (ALL_LINEAR, Arch, Tensor, adapter_tensors, arch_from_config, count_params, param_tensors,
                               target_names)
from grass.memory.fsdp import shard_all, working_set
from grass.models.configs import resolve_config
from grass.optim.offload_state import DEFAULT_CHUNK_MB, DEFAULT_FP32_STATE

GIB = 1024 ** 3
METHODS = ("full", "lora", "dora", "lisa", "grass")
PRECISIONS = ("fp32", "bf16")
STATE_POLICIES = ("reset", "keep", "offload")
DEFAULT_POLICY = {"lisa": "reset", "grass": "offload"}
F32 = 4


def resolve_policy(method: str, offload: bool | None, state_policy: str | None) -> str:
    """LISA's or GRASS's optimizer-state policy: ``state_policy`` if given, else ``offload`` (True:
    offload, False: reset), else the method's default (:data:`DEFAULT_POLICY`)."""
    policy = "offload" if offload else ("reset" if offload is False and state_policy is None else None)
    return state_policy or policy or DEFAULT_POLICY[method]


def _adamw(sizes: list[tuple[int, int]], device: str) -> tuple[int, int]:
    """``torch.optim.AdamW`` state of tensors ``(numel, bytes per element)``: ``(device, host)`` bytes.

    ``exp_avg`` and ``exp_avg_sq`` share the parameter's dtype and device; ``step`` is a float32
    CPU tensor (not capturable, not fused), so it is host memory when training on CUDA.
    """
    moments = sum(2 * n * e for n, e in sizes)
    steps = F32 * len(sizes)
    return (moments, steps) if device != "cpu" else (moments + steps, 0)


def _offload(units: list[tuple[list[Tensor], bool]], w: int, device: str, offload_embeddings: bool,
             chunk_mb: float | None = DEFAULT_CHUNK_MB, fp32_state: bool = DEFAULT_FP32_STATE,
             gamma: int = 2, overlap: str = "step") -> dict:
    """:class:`grass.optim.offload.LayerwiseOffloadAdamW` state and its copies per step.

    Every unit owns ``2N + M`` fp32 (M = N for bf16 weights: the fp32 master copy), allocated at
    construction; ``fp32_state=False``: ``2N`` in the weights' dtype. Steps are 4 bytes per tensor
    in host memory. CPU: nothing is offloaded, all counts as device. CUDA: staged units live in
    pinned host memory and pass through two staging slots sized to the largest layer plus one
    slot per embeddings/head unit; with ``chunk_mb``, through two slots of one chunk each, a
    chunk being at most ``chunk_mb`` MiB and at most one layer's state (the engine's clamp).

    Returns:
        ``{"device", "host"}`` bytes, ``"layer_state"`` (one decoder layer's state bytes),
        ``"slots"``, and the steady-state copies of an update step without a layer switch,
        ``"h2d_per_step"`` / ``"d2h_per_step"`` (bytes, a mean over two steps; see
        :func:`_steady_traffic`) and ``"switch_max"`` (whole layers: the most one switch moves
        each way; chunked: 0, since every step streams anyway).
    """
    from grass.optim.offload_staging import slot_capacities  # the engine's own rule

    # state bytes per parameter element: fp32 moments (+ fp32 master of bf16 weights), or two
    # moments in the weights' dtype
    per = (2 * F32 + (F32 if w != F32 else 0)) if fp32_state else 2 * w
    sizes = [(sum(t.numel for t in ts), emb, len(ts)) for ts, emb in units]  # elements
    layer = max((z for z, emb, _ in sizes if not emb), default=0)
    chunk = None if chunk_mb is None else max(1, int(chunk_mb * 2**20) // per)
    if chunk is not None and layer:
        chunk = min(chunk, layer)
    steps = F32 * sum(n for _, _, n in sizes)
    total = per * sum(z for z, _, _ in sizes)
    out = {"layer_state": per * layer, "slots": 0, "h2d_per_step": 0, "d2h_per_step": 0, "switch_max": 0}
    if device == "cpu":
        return out | {"device": total + steps, "host": 0}
    staged = [(z, emb) for z, emb, _ in sizes if offload_embeddings or not emb]
    resident = per * sum(z for z, emb, _ in sizes if not (offload_embeddings or not emb))
    # a slot holds a whole unit, or its largest chunk: min(chunk, unit) elements
    live = [(z if chunk is None else min(chunk, z), emb) for z, emb in staged if z > 0]
    caps = slot_capacities(live, chunked=chunk is not None)
    # The update sequence of one step through the two shared slots: the active units' chunks in
    # forward order (whole units: the active layers only; embeddings/head have slots of their own).
    seq, n_layers = [], 0
    for z, emb in staged:
        if z == 0 or (not emb and n_layers >= gamma):
            continue
        n_layers += not emb
        if chunk is None:
            seq += [] if emb else [z]
        else:
            seq += [chunk] * (z // chunk) + ([z % chunk] if z % chunk else [])
    moved = round(per * _steady_traffic(seq, overlap))
    return out | {"device": per * sum(caps) + resident, "host": per * sum(z for z, _ in staged) + steps,
                  "slots": len(caps), "h2d_per_step": moved, "d2h_per_step": moved,
                  "switch_max": per * gamma * layer if chunk is None else 0}


def _steady_traffic(seq: list[int], overlap: str) -> float:
    """Elements copied each way per step by a sequence of chunks through two slots.

    With three chunks or more every chunk is loaded and written back once per step, except what
    the slots carry over: ``step()`` alternates the order, so one step's last two chunks start
    the next and are never copied; over two steps the first two and the last two are each saved
    once, hence ``S - (first two + last two) / 2`` per step (exact over an even number of steps).
    With ``overlap=backward`` the order is backward's, the same every step: nothing carries over.
    Two chunks or fewer stay in the slots: nothing moves.
    """
    if len(seq) <= 2:
        return 0
    if overlap == "backward":
        return sum(seq)
    return sum(seq) - (seq[0] + seq[1] + seq[-2] + seq[-1]) / 2


# ------------------------------------------------------------------------------------- prediction
@dataclass
class Prediction:
    """Predicted memory of one configuration, in bytes (``gib()`` for GiB).

    ``grads`` and ``optimizer_*`` are peaks over update steps as :mod:`grass.train` records them;
    ``activations`` is the forward+backward peak estimate; ``total`` = weights + grads +
    optimizer_device + activations (for GRASS the larger of the probe and the update phase), a
    slight over-estimate since the gradients of full fine-tuning grow while activations are freed.
    """

    model: str
    method: str
    label: str
    precision: str
    seq_len: int
    batch: int
    grad_ckpt: bool
    n_active_layers: int | None
    state_policy: str | None
    device: str
    params: int
    trainable_params: int
    weights: int
    grads: int
    optimizer_device: int
    optimizer_host: int
    activations: int
    total: int
    details: dict = field(default_factory=dict)
    fsdp: int = 1  # world size of an FSDP run: the bytes are per rank
    autocast: bool = False  # bf16 autocast over fp32 weights

    BYTE_FIELDS = ("weights", "grads", "optimizer_device", "optimizer_host", "activations", "total")

    def gib(self) -> dict[str, float]:
        return {k: getattr(self, k) / GIB for k in self.BYTE_FIELDS}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gib"] = {k: round(v, 4) for k, v in self.gib().items()}
        return d


def _numel(ts: list[Tensor]) -> int:
    return sum(t.numel for t in ts)


def _bytes(ts: list[Tensor], e: int) -> int:
    return _numel(ts) * e


def predict(model, method: str, *, precision: str = "bf16", seq_len: int = 1024, batch: int = 4,
            grad_ckpt: bool = False, n_active_layers: int = 2, state_policy: str | None = None,
            offload: bool | None = None, device: str = "cuda", lora_rank: int = 8, lora_dropout: float = 0.05,
            lora_targets: tuple[str, ...] = ALL_LINEAR, train_embeddings: bool = True, train_head: bool = True, visited_layers: int | None = None,
            offload_embeddings: bool = True, offload_chunk_mb: float | None = DEFAULT_CHUNK_MB,
            offload_fp32_state: bool = DEFAULT_FP32_STATE, overlap: str = "step", padded: bool = True,
            fsdp: int = 1, probe_checkpointing: bool = True, autocast: bool = False,
            cache_dir: str | None = None) -> Prediction:
    """Predict the memory of fine-tuning ``model`` with ``method`` (no weights are loaded).

    Args:
        model: a name for :func:`~grass.models.configs.resolve_config`, an HF config object, or an :class:`Arch`.
        method: full | lora | dora | lisa | grass.
        precision: ``fp32`` (fp32 weights) or ``bf16`` (bf16 weights, ``model.dtype=bfloat16``;
            torch AdamW then keeps bf16 moments, the offload engine fp32 moments + fp32 master).
        seq_len, batch: tokens per micro-batch (padded batches assumed, as training batches are).
        grad_ckpt: gradient checkpointing of every decoder block.
        n_active_layers: gamma of lisa / grass.
        state_policy: reset | keep | offload (lisa/grass; default: lisa reset, grass offload);
            ``offload=True/False`` is a shorthand (False means reset).
        device: cuda (planning) or cpu (what a CPU run measures: step counters and offload split).
        lora_rank, lora_dropout, lora_targets: the adapters (``method.rank``, ``method.dropout``,
            ``method.target_modules``: ``all-linear`` or names of decoder-block linears).
        train_embeddings, train_head: the layer-wise methods' always-trained pieces.
        visited_layers: for ``keep``, how many distinct layers were ever active (default: all, the
            worst case the state grows to).
        offload_embeddings: the offload engine streams embeddings/head state too.
        offload_chunk_mb: the offload engine streams state in chunks of at most this many MiB and
            one decoder layer's state (None: whole units); default: the configs' default (64).
        offload_fp32_state: the offload engine keeps fp32 moments + masters (False, the default:
            the weights' dtype).
        overlap: the offload engine's ``step`` or ``backward`` (only the copies per step differ).
        fsdp: world size of ``train.parallel=fsdp``: weights, gradients and optimizer state are
            rank 0's shards (dim 0 split in ``ceil(rows / fsdp)`` rows, as FSDP2 does), and the
            total adds FSDP's transient unsharded working set (:func:`grass.memory.fsdp.working_set`).
            1: one process, or DDP (every rank holds all of it).
        probe_checkpointing: grass's probe steps recompute each block in backward (the method's
            ``probe_checkpointing``); False: the probe keeps every block's activations, and often
            sets the run's peak.
        autocast: bf16 autocast over fp32 weights (``train.precision=bf16`` with ``model.dtype=float32``):
            activations in bf16 plus every block's bf16 weight casts (docs/memory.md); weights,
            gradients and optimizer state stay fp32. No effect with ``precision="bf16"``.

    Raises:
        GrassError: unknown method / precision / policy, gamma out of range, ``fsdp < 1``, LoRA targets the
            planner does not model (see :func:`~grass.memory.arch.adapted_linears`).
    """
    if method not in METHODS:
        raise GrassError(f"unknown method '{method}'; valid methods: {', '.join(METHODS)}, all")
    if precision not in PRECISIONS:
        raise GrassError(f"unknown precision '{precision}'; valid: {', '.join(PRECISIONS)}")
    if isinstance(model, Arch):
        arch, name = model, model.model_type
    else:
        cfg = resolve_config(model, cache_dir) if isinstance(model, str) else model
        arch, name = arch_from_config(cfg), model if isinstance(model, str) else cfg.model_type
    if fsdp < 1:
        raise GrassError(f"fsdp must be a world size >= 1, got {fsdp}")
    lora_targets = target_names(lora_targets)
    w = F32 if precision == "fp32" else 2
    G, L = param_tensors(arch), arch.layers  # G: global tensors (counts); P: this rank's (bytes)
    P = {k: shard_all(v, fsdp) for k, v in G.items()}
    layer_sz = [(t.numel, w) for t in P["layer"]]
    n_params = count_params(arch)
    weights = (_numel(P["embed"] + P["head"]) + L * _numel(P["layer"])) * w
    act_kw = dict(w=w, seq_len=seq_len, batch=batch, grad_ckpt=grad_ckpt, padded=padded, device=device,
                  lora=(lora_rank, lora_dropout, lora_targets), autocast=autocast)
    details: dict = {"arch": asdict(arch), "layer_params": _numel(G["layer"]), "embed_params": _numel(G["embed"]),
                     "head_params": _numel(G["head"])}
    gamma, policy, label = None, None, method
    if method == "full":
        sizes = [(t.numel, w) for t in P["embed"] + P["head"]] + layer_sz * L
        trainable, grads = n_params, weights
        grad_unit = max(_bytes(G["embed"] + G["head"], w), _bytes(G["layer"], w))
        opt = _adamw(sizes, device)
        act = activation_bytes(arch, ["train"] * L, head_trainable=True, norm_trainable=True, embed_trainable=True,
                               **act_kw)
    elif method in ("lora", "dora"):
        ad_global = adapter_tensors(arch, lora_rank, method == "dora", lora_targets)
        ad = shard_all(ad_global, fsdp)
        trainable = L * _numel(ad_global)
        weights += F32 * L * _numel(ad)  # PEFT keeps adapters in fp32 even on bf16 weights
        grads = F32 * L * _numel(ad)
        grad_unit = F32 * _numel(ad_global)
        opt = _adamw([(t.numel, F32) for t in ad] * L, device)
        act = activation_bytes(arch, [method] * L, head_trainable=False, norm_trainable=False, **act_kw)
        details["adapter_params_per_layer"] = sum(t.numel for t in ad)
    else:
        gamma = n_active_layers
        if not 1 <= gamma <= L:
            raise GrassError(f"n_active_layers={gamma} must be between 1 and the model's {L} layers")
        policy = resolve_policy(method, offload, state_policy)
        if policy not in STATE_POLICIES:
            raise GrassError(f"unknown state policy '{policy}'; valid: {', '.join(STATE_POLICIES)}")
        label = f"{method} ({policy})"
        always = (P["embed"] if train_embeddings else []) + (P["head"] if train_head else [])
        always_g = (G["embed"] if train_embeddings else []) + (G["head"] if train_head else [])
        layer_b = _bytes(P["layer"], w)
        trainable = _numel(always_g) + gamma * _numel(G["layer"])
        grads = _bytes(always, w) + gamma * layer_b
        grad_unit = max(_bytes(always_g, w), _bytes(G["layer"], w))
        if policy == "offload":
            units = ([(P["embed"], True)] if train_embeddings else []) + [(P["layer"], False)] * L
            units += [(P["head"], True)] if train_head else []
            plan = _offload(units, w, device, offload_embeddings, offload_chunk_mb, offload_fp32_state, gamma,
                            overlap)
            opt = (plan.pop("device"), plan.pop("host"))
            details["offload"] = plan | {"chunk_mb": offload_chunk_mb, "fp32_state": offload_fp32_state,
                                         "device_state_in_layers": opt[0] / plan["layer_state"]}
        else:
            n_state = gamma if policy == "reset" else min(L, max(gamma, visited_layers or L))
            opt = _adamw([(t.numel, w) for t in always] + layer_sz * n_state, device)
            details["layers_with_state"] = n_state
        head_tr = (train_head if not arch.tied else train_embeddings) if arch.family != "gpt2" else train_embeddings
        act = activation_bytes(arch, ["train"] * gamma + ["frozen"] * (L - gamma), head_trainable=head_tr,
                               norm_trainable=train_head, embed_trainable=train_embeddings, **act_kw)
        if method == "grass":  # probe: every block trainable, embeddings/head frozen, grads freed in hooks
            probe_kw = act_kw | ({"grad_ckpt": True} if probe_checkpointing else {})
            probe = activation_bytes(arch, ["train"] * L, head_trainable=False, norm_trainable=False, **probe_kw)
            details["probe_activations"] = probe["peak"]
            details["update_activations"] = act["peak"]
            details["probe_grads_peak"] = max(t.numel for t in P["layer"]) * w
            details["probe_total"] = weights + details["probe_grads_peak"] + opt[0] + probe["peak"]
            if probe["peak"] > act["peak"]:
                act = dict(probe, phase="probe")
        details["layer_grads"] = layer_b
    activations = act["peak"]
    total = weights + grads + opt[0] + activations
    if method == "grass":
        total = max(weights + grads + opt[0] + details["update_activations"], details["probe_total"])
    if fsdp > 1:
        adapters = F32 * _numel(ad_global) if method in ("lora", "dora") else 0
        details["fsdp_working_set"] = working_set(_bytes(G["embed"] + G["head"], w), _bytes(G["layer"], w) + adapters,
                                                  grad_unit)
        total += details["fsdp_working_set"]
    details["activation_parts"] = {k: v for k, v in act.items() if k != "peak"}
    return Prediction(model=name, method=method, label=label, precision=precision, seq_len=seq_len, batch=batch,
                      grad_ckpt=grad_ckpt, n_active_layers=gamma, state_policy=policy, device=device,
                      params=n_params + (trainable if method in ("lora", "dora") else 0),
                      trainable_params=trainable, weights=weights, grads=grads, optimizer_device=opt[0],
                      optimizer_host=opt[1], activations=activations, total=total, details=details, fsdp=fsdp,
                      autocast=autocast and precision == "fp32")


def predict_all(model, **kw) -> list[Prediction]:
    """Every method: full, lora, dora, lisa (reset), grass (offload) and grass (reset); under
    ``autocast`` of fp32 weights without lora and dora, which the planner does not model there."""
    kw = {k: v for k, v in kw.items() if k not in ("offload", "state_policy")}
    # The planner does not model LoRA/DoRA under autocast of fp32 weights: leave them out.
    adapters = kw.get("autocast") and kw.get("precision", "bf16") == "fp32"
    return [predict(model, "full", **kw), *([] if adapters else [predict(model, m, **kw) for m in ("lora", "dora")]),
            predict(model, "lisa", **kw), predict(model, "grass", state_policy="offload", **kw),
            predict(model, "grass", state_policy="reset", **kw)]
