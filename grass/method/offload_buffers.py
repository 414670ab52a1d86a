"""Storage and transfer pipeline behind :class:`grass.method.offload.LayerwiseOffloadAdamW`.

Two pieces (DESIGN section 2.7):

* :class:`UnitStore` -- one unit's (one decoder layer's, or the embeddings') AdamW state in ONE
  flat buffer allocated once: ``[exp_avg (N) | exp_avg_sq (N) | master (M)]`` where N is the
  unit's parameter count and M the count of its bf16/fp16 parameters (their fp32 master weights).
  fp32 by default; with ``fp32_state=False`` the state of bf16 weights is bf16 and has no master
  (torch AdamW's numerics on bf16 weights, a third of the bytes).
  Per-parameter step counts live in a small CPU tensor, as in ``torch.optim.AdamW``.
* :class:`StagingPipeline` -- moves a unit's (or a chunk's) state host->device before its update,
  through a fixed set of preallocated device staging slots (two sized to the largest layer plus
  one per embeddings/head unit; chunked: two chunk-sized slots, see :func:`slot_capacities`), on
  a persistent side stream, ordered by CUDA events only. The slots are a write-back cache: after an update the slot holds the newest state
  and is only copied back to host memory when the slot is needed for another unit (a layer
  switch), or on :meth:`StagingPipeline.flush` (checkpoints). While the active layers fit in the
  slots (GRASS's default of two), steps between switches move nothing; each switch moves the
  drawn layers in and the dropped ones out. On a CPU-only machine it hands out the host buffer
  itself, so every copy is a no-op.

The three stream races DeepSpeed's offload hit (deepspeedai/DeepSpeed#8186) and where each is
handled here: (1) a device->host copy must wait for the optimizer's writes -> every write-back
(eviction or flush) makes the copy stream wait on the slot's ``free`` event, recorded on the
compute stream after the update; (2) a reload buffer must not be reused early -> staging slots
are allocated once, ``record_stream``-ed on the copy stream, and a slot is only refilled after
the copy stream waited on its ``free`` event; (3) the copy stream must wait for compute before
overwriting a buffer -> ``begin`` makes the copy stream wait for the compute stream (the slots
come from the compute stream's pool) and every refill waits on the slot's ``free`` event.
A write-back and the refill of the same slot are both on the copy stream, so they are ordered.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch

LOW_PRECISION = (torch.bfloat16, torch.float16)


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
              fp32_state: bool = True) -> "UnitStore":
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
            fp32_state: fp32 moments (+ fp32 masters of bf16/fp16 weights); False: moments in
                the parameters' dtype and no master (the unit's parameters must share a dtype).

        Returns:
            The store, zero-initialised (zero moments and steps, as torch's lazy state init).
        """
        dtypes = {p.dtype for p in params}
        state_dtype = torch.float32
        if not fp32_state and dtypes:
            if len(dtypes) > 1:
                raise ValueError(f"unit {name!r} mixes parameter dtypes {sorted(map(str, dtypes))}; state in the "
                                 "parameters' dtype needs one dtype per unit (use fp32 state)")
            state_dtype = dtypes.pop()
        offsets, master_offsets, n, m = [], [], 0, 0
        for p in params:
            offsets.append(n)
            n += p.numel()
            if p.dtype in LOW_PRECISION and state_dtype == torch.float32:
                master_offsets.append(m)
                m += p.numel()
            else:
                master_offsets.append(None)
        if pin and home_device.type == "cpu":
            home = pinned_zeros(2 * n + m, state_dtype)
        else:
            home = torch.zeros(2 * n + m, dtype=state_dtype, device=home_device)
        steps = torch.zeros(len(params), dtype=torch.float32)
        store = cls(name, list(params), offsets, master_offsets, n, m, home, steps, staged, is_embedding)
        store.step_views = [steps[j] for j in range(len(params))]  # 0-dim views, updated in place
        store.home_views = store.views(home)
        per_elem = (3 if m else 2) * home.element_size()
        chunk_numel = None if chunk_bytes is None else max(1, chunk_bytes // per_elem)
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
            k = p.numel()
            ea.append(buf[o:o + k].view(p.shape))
            eas.append(buf[n + o:n + o + k].view(p.shape))
            ms.append(None if mo is None else buf[2 * n + mo:2 * n + mo + k].view(p.shape))
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
            o, n = unit.offsets[j], p.numel()
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


def pinned_zeros(numel: int, dtype: torch.dtype) -> torch.Tensor:
    """A zeroed host tensor in page-locked memory of exactly its size.

    ``torch.zeros(..., pin_memory=True)`` goes through torch's caching host allocator, which
    rounds every block up to a power of two (pytorch/pytorch#171662): a 2.4 GB LLaMA2-7B layer
    would pin 4 GiB. So plain host memory is registered with ``cudaHostRegister`` instead (and
    unregistered when the tensor is collected); if that call fails, the caching allocator is used.
    """
    t = torch.zeros(numel, dtype=dtype)
    nbytes = t.numel() * t.element_size()
    if nbytes == 0:
        return t
    try:
        cudart = torch.cuda.cudart()
        err = cudart.cudaHostRegister(t.data_ptr(), nbytes, 0)
    except (AssertionError, AttributeError, RuntimeError):  # no CUDA runtime bindings
        err = -1
    if int(err) != 0:
        return torch.zeros(numel, dtype=dtype, pin_memory=True)
    # Runs when the tensor object is collected, before its memory is freed (views keep the
    # storage alive, never the registration: a copy from it is then merely synchronous).
    weakref.finalize(t, cudart.cudaHostUnregister, t.data_ptr())
    return t


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
            if not p.is_contiguous():
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


def slot_capacities(sizes: list[tuple[int, bool]], chunked: bool) -> list[int]:
    """Floats of each device staging slot, from the staged chunks' ``(size, is_embedding)``.

    Two slots sized to the largest layer chunk give double buffering (prefetch i+1 while i
    updates, the paper's overlap). Whole units: each embeddings/head unit gets a slot of its own,
    so the trained-every-step units never evict the active layers and nothing moves between
    layer switches. Chunked: the embeddings/head chunks share the layer slots (one slot of their
    own only when larger), so the device holds two chunks.
    """
    cap_layer = max((z for z, emb in sizes if not emb), default=0)
    embed = [z for z, emb in sizes if emb]
    if not chunked:
        return ([cap_layer, cap_layer] if cap_layer else []) + embed
    cap_embed = max(embed, default=0)
    caps = [cap_layer, cap_layer] if cap_layer else ([cap_embed, cap_embed] if cap_embed else [])
    if cap_layer and cap_embed > cap_layer:
        caps.append(cap_embed)
    return caps


class _Slot:
    """A preallocated device staging buffer, what it holds, and the events that order its reuse."""

    def __init__(self, buf: torch.Tensor, cuda: bool):
        self.buf = buf
        self.capacity = buf.numel()
        self.unit: Chunk | None = None  # the chunk it holds
        self.dirty = False  # holds state newer than the unit's host copy
        self.last_used = 0
        # loaded: recorded on the copy stream after a host->device fill (compute waits on it).
        # free: recorded on the compute stream after an update used the slot (copies wait on it).
        self.loaded = torch.cuda.Event() if cuda else None
        self.free = torch.cuda.Event() if cuda else None
        self.free_recorded = False


class StagingPipeline:
    """Streams staged chunks' state through the device staging slots; see the module docstring.

    Args:
        stores: every unit's chunks; only those of staged units go through the slots.
        device: the compute device.
        mode: ``"cuda"`` (streams and events), ``"simulate"`` (CPU slots with synchronous
            copies, used by the CPU tests to exercise the slot logic) or ``None`` (nothing staged).
        chunked: the units are streamed in chunks (slot sizes: :func:`slot_capacities`).

    Attributes:
        bytes_h2d, bytes_d2h: state bytes copied host->device and device->host so far.
    """

    def __init__(self, stores: list[Chunk], device: torch.device, mode: str | None, chunked: bool = False):
        self.device, self.mode = device, mode
        self.cuda = mode == "cuda"
        self.slots: list[_Slot] = []
        self.active = False
        self._clock = 0
        self.bytes_h2d = 0
        self.bytes_d2h = 0
        self.copy_stream = torch.cuda.Stream(device) if self.cuda else None
        staged = [s for s in stores if s.staged and s.size > 0]
        if not staged or mode is None:
            return
        dtypes = {s.unit.home.dtype for s in staged}
        if len(dtypes) > 1:
            raise ValueError(f"offloaded units keep state in several dtypes {sorted(map(str, dtypes))}; the staging "
                             "slots need one (use fp32 state, or give every unit the same parameter dtype)")
        dtype = dtypes.pop()
        caps = slot_capacities([(s.size, s.is_embedding) for s in staged], chunked)
        slot_device = device if self.cuda else torch.device("cpu")
        for cap in caps:
            # NaN-filled so that reading a slot before its fill completes shows up in the tests.
            buf = torch.full((cap,), float("nan"), dtype=dtype, device=slot_device)
            if self.cuda:
                buf.record_stream(self.copy_stream)  # race (2): used on the copy stream too
            self.slots.append(_Slot(buf, self.cuda))
        if self.cuda:
            # The NaN fills ran on the stream current now; training may use another compute
            # stream, so the first refills (copy stream) must not overtake them.
            self.copy_stream.wait_stream(torch.cuda.current_stream(device))

    @property
    def staging_bytes(self) -> int:
        """Bytes of device memory held by the staging slots."""
        return sum(s.capacity * s.buf.element_size() for s in self.slots)

    def units_on_device(self) -> list[str]:
        """Names of the staged chunks whose state currently sits in a slot."""
        return [s.unit.name for s in self.slots if s.unit is not None]

    def begin(self) -> None:
        """Open a step: the copy stream first waits for all compute issued so far (race 3)."""
        if self.active:
            return
        self.active = True
        if self.cuda:
            self.copy_stream.wait_stream(torch.cuda.current_stream(self.device))

    def _find(self, store: Chunk) -> _Slot | None:
        return next((s for s in self.slots if s.unit is store), None)

    def _write_back(self, slot: _Slot) -> None:
        """Copy a dirty slot's state to its unit's host buffer (queued on the copy stream)."""
        store = slot.unit
        if store is None or not slot.dirty:
            return
        if self.cuda:
            with torch.cuda.stream(self.copy_stream):
                self.copy_stream.wait_event(slot.free)  # race (1): after the optimizer's writes
                for dst, src in zip(store.home_parts(), store.slot_parts(slot.buf)):
                    dst.copy_(src, non_blocking=True)
        else:
            for dst, src in zip(store.home_parts(), store.slot_parts(slot.buf)):
                dst.copy_(src)
        slot.dirty = False
        self.bytes_d2h += store.nbytes()

    def _load(self, store: Chunk, protect: Chunk | None, required: bool) -> _Slot | None:
        self._clock += 1
        slot = self._find(store)
        if slot is None:
            free = [s for s in self.slots if s.capacity >= store.size and (protect is None or s.unit is not protect)]
            if not free:
                if required:
                    raise RuntimeError(f"no staging slot fits unit {store.name!r} ({store.size} floats)")
                return None
            # Smallest slot that fits (keeps the embeddings slot for embeddings), then an empty
            # one, then one whose unit is frozen now (it will not be updated this step: the
            # layer-wise methods set requires_grad only on the active layers), then the least
            # recently used.
            slot = min(free, key=lambda s: (s.capacity, s.unit is not None,
                                     s.unit is not None and s.unit.trainable(), s.last_used))
            self._write_back(slot)  # evict: the previous occupant's newest state goes home first
            slot.unit = None  # in case a copy below raises: never leave a half-filled slot named
            if self.cuda:
                with torch.cuda.stream(self.copy_stream):
                    if slot.free_recorded:
                        # races (2)+(3): compute must be done with the previous occupant.
                        self.copy_stream.wait_event(slot.free)
                    for dst, src in zip(store.slot_parts(slot.buf), store.home_parts()):
                        dst.copy_(src, non_blocking=True)
                    slot.loaded.record(self.copy_stream)
            else:
                for dst, src in zip(store.slot_parts(slot.buf), store.home_parts()):
                    dst.copy_(src)
            slot.unit = store
            self.bytes_h2d += store.nbytes()
        slot.last_used = self._clock
        return slot

    def prefetch(self, store: Chunk | None, protect: Chunk | None) -> None:
        """Start loading ``store``'s state into a slot other than ``protect``'s; no-op if unstaged."""
        if store is not None and store.staged and self.slots:
            self._load(store, protect, required=False)

    def acquire(self, store: Chunk) -> torch.Tensor | None:
        """The staging slot to update ``store`` in, ready for the compute stream.

        Returns:
            A slot view of ``store.size`` floats, or None when the chunk is not staged (update
            it in its unit's ``home``).
        """
        if not store.staged or not self.slots:
            return None
        slot = self._load(store, None, required=True)
        if self.cuda:
            cur = torch.cuda.current_stream(self.device)
            # A slot filled in an earlier step has its loaded event long done; waiting is free.
            cur.wait_event(slot.loaded)
            if slot.free_recorded:
                # The previous update of a slot that stayed cached may have run on another
                # compute stream; on the same stream this wait costs nothing.
                cur.wait_event(slot.free)
        return slot.buf[:store.size]

    def release(self, store: Chunk) -> None:
        """After ``store``'s update was issued: its slot now holds the newest state (write-back later)."""
        if not store.staged or not self.slots:
            return
        slot = self._find(store)
        if self.cuda:
            slot.free.record(torch.cuda.current_stream(self.device))
            slot.free_recorded = True
        slot.dirty = True

    def finish(self) -> None:
        """Close a step. Nothing waits here: dirty slots stay on the device until evicted or flushed."""
        self.active = False

    def flush(self) -> None:
        """Write every dirty slot back and wait for the copies: host state is then complete.

        One event wait on the copy stream (never a device-wide synchronize). The slots keep their
        units, so the next step still finds them on the device.
        """
        for slot in self.slots:
            self._write_back(slot)
        self._wait_copies()

    def invalidate(self) -> None:
        """Forget what the slots hold, dirty or not (host state is being replaced, e.g. by ``load_state_dict``)."""
        self._wait_copies()
        self.active = False
        for s in self.slots:
            s.unit, s.dirty = None, False

    def _wait_copies(self) -> None:
        if self.cuda:
            done = torch.cuda.Event()
            done.record(self.copy_stream)
            done.synchronize()
