"""Where :class:`grass.optim.offload.LayerwiseOffloadAdamW` keeps its state (DESIGN section 2.7).

* :class:`UnitStore` -- one unit's (one decoder layer's, or the embeddings') AdamW state in ONE
  flat buffer allocated once: ``[exp_avg (N) | exp_avg_sq (N) | master (M)]`` where N is the
  unit's parameter count and M the count of its bf16/fp16 parameters (their fp32 master weights).
  fp32 by default; with ``fp32_state=False`` the state of bf16 weights is bf16 and has no master
  (torch AdamW's numerics on bf16 weights, a third of the bytes). Per-parameter step counts live
  in a small CPU tensor, as in ``torch.optim.AdamW``. Offloaded buffers are page-locked at their
  exact size (:func:`grass.optim.host_memory.pinned_zeros`).
* :class:`Chunk` -- a contiguous element range of a unit: what one staging slot holds and
  :mod:`grass.optim.offload_staging` moves (the whole unit unless the engine is chunked).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from grass.errors import ConfigError
from grass.optim.host_memory import CopyFence, pinned_zeros
from grass.distributed.shards import local_tensor

LOW_PRECISION = (torch.bfloat16, torch.float16)
# What the layer-wise configs and the memory planner default to (docs/offload.md, "Defaults"):
# 64 MiB chunks (clamped to one decoder layer's state by the engine) keep the device-resident
# state at most two layers' whatever the model; state in the weights' dtype is LISA's numerics
# at a third of the bytes of fp32 moments + masters.
DEFAULT_CHUNK_MB = 64.0
DEFAULT_FP32_STATE = False


@dataclass
class UnitStore:
    """One unit's AdamW state, flat, allocated once.

    Attributes:
        name: unit name, e.g. ``"layer.3"``.
        params: the unit's parameters, in order.
        offsets: start of each parameter's slice in the exp_avg / exp_avg_sq sections.
        master_offsets: start of each parameter's fp32 master slice (None for fp32 parameters).
        numel: N, total elements of the unit's parameters.
        n_master: M, total elements of its low-precision parameters.
        home: ``[2N + M]`` of the state dtype -- pinned host memory when offloaded, device memory
            when resident.
        steps: ``[len(params)]`` fp32 CPU step counts (one per parameter, like torch's ``step``).
        staged: True when ``home`` is host memory streamed through the staging slots.
        is_embedding: True for the units named in ``embedding_units``.
        chunks: the pieces the unit is streamed in (one :class:`Chunk` unless chunked).
    """

    name: str
    params: list[torch.nn.Parameter]
    offsets: list[int]
    master_offsets: list[int | None]
    numel: int
    n_master: int
    home: torch.Tensor
    steps: torch.Tensor
    staged: bool
    is_embedding: bool
    step_views: list[torch.Tensor] = field(default_factory=list)
    home_views: tuple = ()
    chunks: list["Chunk"] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Elements of the flat buffer, ``2N + M``."""
        return 2 * self.numel + self.n_master

    @classmethod
    def build(cls, name: str, params: list[torch.nn.Parameter], *, home_device: torch.device,
              pin: bool, staged: bool, is_embedding: bool, chunk_bytes: int | None = None,
              max_chunk_numel: int | None = None, fp32_state: bool = True,
              fence: CopyFence | None = None) -> "UnitStore":
        """Lay out and allocate (once) the flat state of one unit.

        Args:
            name: unit name.
            params: its parameters (float32, bfloat16 or float16; contiguous).
            home_device: where ``home`` lives (CPU for offloaded or CPU-only units).
            pin: pin ``home`` (only when CUDA exists: pinned memory makes the copies asynchronous).
            staged: whether the unit is streamed through device staging slots.
            is_embedding: whether the unit is an embeddings/head unit.
            chunk_bytes: stream the unit in chunks of at most this many bytes of state (AdamW is
                elementwise, so a chunk may end inside a parameter); None = one chunk.
            max_chunk_numel: chunks hold at most this many parameter elements (the engine passes
                a decoder layer's size, so a chunk never outgrows one layer's state).
            fp32_state: fp32 moments (+ fp32 masters of bf16/fp16 weights); False: moments in
                the parameters' dtype and no master (the unit's parameters must share a dtype).
            fence: the copy stream's fence a pinned ``home`` waits on before it is released.

        Returns:
            The store, zero-initialised (zero moments and steps, as torch's lazy state init).
        """
        dtypes = {p.dtype for p in params}
        state_dtype = torch.float32
        if not fp32_state and dtypes:
            if len(dtypes) > 1:
                raise ConfigError(f"unit {name!r} mixes parameter dtypes {sorted(map(str, dtypes))}; state in the "
                                  "parameters' dtype needs one dtype per unit: set method.offload_fp32_state=true")
            state_dtype = dtypes.pop()
        offsets, master_offsets, n, m = [], [], 0, 0
        for p in params:
            offsets.append(n)
            n += local_tensor(p).numel()  # FSDP: this rank's shard only (each rank owns its shards' state)
            if p.dtype in LOW_PRECISION and state_dtype == torch.float32:
                master_offsets.append(m)
                m += local_tensor(p).numel()
            else:
                master_offsets.append(None)
        if pin and home_device.type == "cpu":
            home = pinned_zeros(2 * n + m, state_dtype, fence)
        else:
            home = torch.zeros(2 * n + m, dtype=state_dtype, device=home_device)
        steps = torch.zeros(len(params), dtype=torch.float32)
        store = cls(name, list(params), offsets, master_offsets, n, m, home, steps, staged, is_embedding)
        store.step_views = [steps[j] for j in range(len(params))]  # 0-dim views, updated in place
        store.home_views = store.views(home)
        per_elem = (3 if m else 2) * home.element_size()
        chunk_numel = None if chunk_bytes is None else max(1, chunk_bytes // per_elem)
        if chunk_numel is not None and max_chunk_numel:
            chunk_numel = min(chunk_numel, max_chunk_numel)
        store.chunks = _split(store, chunk_numel)
        return store

    def views(self, buf: torch.Tensor) -> tuple[list, list, list]:
        """Per-parameter views into a flat buffer laid out like ``home``.

        Args:
            buf: ``[>= 2N + M]`` fp32 (``home``).

        Returns:
            ``(exp_avgs, exp_avg_sqs, masters)``, each a list with one tensor of the parameter's
            shape per parameter (``masters[j]`` is None for fp32 parameters).
        """
        n = self.numel
        ea, eas, ms = [], [], []
        for p, o, mo in zip(self.params, self.offsets, self.master_offsets):
            shape = local_tensor(p).shape
            k = shape.numel()
            ea.append(buf[o:o + k].view(shape))
            eas.append(buf[n + o:n + o + k].view(shape))
            ms.append(None if mo is None else buf[2 * n + mo:2 * n + mo + k].view(shape))
        return ea, eas, ms

    def nbytes(self) -> int:
        """Bytes of the flat state buffer (steps excluded)."""
        return self.size * self.home.element_size()


@dataclass
class Chunk:
    """A contiguous range ``[start, end)`` of a unit's parameter elements: what one slot holds.

    Its state is three ranges of the unit's ``home`` (exp_avg, exp_avg_sq, master sections); in a
    staging slot it is laid out ``[exp_avg (n) | exp_avg_sq (n) | master (m)]``.

    Attributes:
        unit: the owning unit.
        name: ``"layer.3"``, or ``"layer.3[k]"`` when the unit has several chunks.
        pieces: ``(j, s, e)``: elements ``s:e`` of the unit's parameter ``j``, in order.
        start, end: the range in the unit's concatenated parameter elements.
        m_start, m_end: the matching range of the unit's master section.
    """

    unit: UnitStore
    name: str
    pieces: list[tuple[int, int, int]]
    start: int
    end: int
    m_start: int
    m_end: int

    @property
    def size(self) -> int:
        """Elements of the chunk's state, ``2n + m``."""
        return 2 * (self.end - self.start) + (self.m_end - self.m_start)

    @property
    def staged(self) -> bool:
        return self.unit.staged

    @property
    def is_embedding(self) -> bool:
        return self.unit.is_embedding

    def nbytes(self) -> int:
        """Bytes of the chunk's state."""
        return self.size * self.unit.home.element_size()

    def home_parts(self) -> list[torch.Tensor]:
        """The chunk's state in the unit's ``home``: 2 or 3 flat views (moments, then masters)."""
        u, n = self.unit, self.unit.numel
        parts = [u.home[self.start:self.end], u.home[n + self.start:n + self.end]]
        if self.m_end > self.m_start:
            parts.append(u.home[2 * n + self.m_start:2 * n + self.m_end])
        return parts

    def slot_parts(self, buf: torch.Tensor) -> list[torch.Tensor]:
        """The same parts in a staging slot ``buf`` (laid out back to back)."""
        out, o = [], 0
        for h in self.home_parts():
            out.append(buf[o:o + h.numel()])
            o += h.numel()
        return out

    def views(self, buf: torch.Tensor | None) -> list[tuple]:
        """Per piece: ``(j, s, e, exp_avg, exp_avg_sq, master or None)`` flat views.

        Args:
            buf: a staging slot holding this chunk, or None for the unit's ``home``.
        """
        u = self.unit
        c = self.end - self.start
        out = []
        for j, s, e in self.pieces:
            a = u.offsets[j] + s - self.start  # position inside the chunk
            mo = u.master_offsets[j]
            if buf is None:
                ea = u.home_views[0][j].view(-1)[s:e]
                eas = u.home_views[1][j].view(-1)[s:e]
                ms = None if mo is None else u.home_views[2][j].view(-1)[s:e]
            else:
                ea, eas = buf[a:a + e - s], buf[c + a:c + a + e - s]
                ms = None if mo is None else buf[2 * c + mo + s - self.m_start:2 * c + mo + e - self.m_start]
            out.append((j, s, e, ea, eas, ms))
        return out

    def trainable(self) -> bool:
        """Whether any of its parameters requires grad now (i.e. may be updated this step)."""
        return any(self.unit.params[j].requires_grad for j, _, _ in self.pieces)

    def has_grad(self) -> bool:
        """Whether any of its parameters has a gradient now."""
        return any(self.unit.params[j].grad is not None for j, _, _ in self.pieces)


def _split(unit: UnitStore, chunk_numel: int | None) -> list[Chunk]:
    """Cut a unit's parameter elements into chunks of at most ``chunk_numel`` (None = one chunk)."""
    bounds = [(0, unit.numel)] if chunk_numel is None else \
        [(a, min(a + chunk_numel, unit.numel)) for a in range(0, unit.numel, chunk_numel)]
    chunks = []
    for k, (a, b) in enumerate(bounds):
        pieces, m_start, m_end = [], None, None
        for j, p in enumerate(unit.params):
            o, n = unit.offsets[j], local_tensor(p).numel()
            s, e = max(a, o) - o, min(b, o + n) - o
            if s >= e:
                continue
            pieces.append((j, s, e))
            mo = unit.master_offsets[j]
            if mo is not None:
                m_start = mo + s if m_start is None else m_start
                m_end = mo + e
        name = unit.name if len(bounds) == 1 else f"{unit.name}[{k}]"
        m_start = m_start or 0
        chunks.append(Chunk(unit, name, pieces, a, b, m_start, m_end if m_end is not None else m_start))
    return chunks


def validate_units(units, device) -> tuple[list[tuple[str, list[torch.nn.Parameter]]], torch.device]:
    """Check the optimizer's units and resolve its device.

    Args:
        units: ``[(name, params), ...]``.
        device: requested device, or None for the parameters' device.

    Returns:
        ``(units as lists, device)`` with a CUDA device's index filled in.

    Raises:
        ValueError: a parameter in two units (tied weights must be given once), a dtype other
            than float32/bfloat16/float16, a parameter off the device, CUDA requested but absent.
    """
    units = [(str(name), list(ps)) for name, ps in units]
    owner: dict[int, str] = {}
    for name, ps in units:
        for p in ps:
            if id(p) in owner:
                raise ValueError(f"parameter of shape {tuple(p.shape)} is in unit {owner[id(p)]!r} and in "
                                 f"unit {name!r}; give each parameter (tied weights included) to one unit")
            owner[id(p)] = name
            if p.dtype not in (torch.float32, *LOW_PRECISION):
                raise ValueError(f"unit {name!r}: parameters must be float32, bfloat16 or float16, not {p.dtype}")
            if not local_tensor(p).is_contiguous():
                raise ValueError(f"unit {name!r}: parameter of shape {tuple(p.shape)} is not contiguous; "
                                 "the engine updates flat views of parameters")
    first = next((p for _, ps in units for p in ps), None)
    dev = torch.device(device) if device is not None else (first.device if first is not None else torch.device("cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"optimizer device {dev} requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    for name, ps in units:
        for p in ps:
            if p.device != dev:
                raise ValueError(f"unit {name!r} has a parameter on {p.device}, optimizer device is {dev}; "
                                 "move the model to the device before building the optimizer")
    return units, dev
