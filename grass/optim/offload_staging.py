"""The transfer pipeline behind :class:`grass.optim.offload.LayerwiseOffloadAdamW` (DESIGN section 2.7).

:class:`StagingPipeline` moves a unit's (or a chunk's, :mod:`grass.optim.offload_state`) state
host->device before its update, through a fixed set of preallocated device staging slots (two
sized to the largest layer plus one per embeddings/head unit; chunked: two chunk-sized slots, see
:func:`slot_capacities`), on a persistent side stream, ordered by CUDA events only. The slots are
a write-back cache: after an update the slot holds the newest state and is only copied back to
host memory when the slot is needed for another unit (a layer switch), or on
:meth:`StagingPipeline.flush` (checkpoints). While the active layers fit in the slots (GRASS's
default of two), steps between switches move nothing; each switch moves the drawn layers in and
the dropped ones out. On a CPU-only machine it hands out the host buffer itself, so every copy
is a no-op.

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

import torch

from grass.errors import ConfigError
from grass.optim.offload_state import Chunk


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
        copy_stream: the side stream for the copies (CUDA; default: a new one). The engine
            creates it first, so that its pinned host buffers can wait on it before release.

    Attributes:
        bytes_h2d, bytes_d2h: state bytes copied host->device and device->host so far.
    """

    def __init__(self, stores: list[Chunk], device: torch.device, mode: str | None, chunked: bool = False,
                 copy_stream=None):
        self.device, self.mode = device, mode
        self.cuda = mode == "cuda"
        self.slots: list[_Slot] = []
        self.active = False
        self._clock = 0
        self.bytes_h2d = 0
        self.bytes_d2h = 0
        self.copy_stream = (copy_stream or torch.cuda.Stream(device)) if self.cuda else None
        staged = [s for s in stores if s.staged and s.size > 0]
        if not staged or mode is None:
            return
        dtypes = {s.unit.home.dtype for s in staged}
        if len(dtypes) > 1:
            raise ConfigError(f"offloaded units keep state in several dtypes {sorted(map(str, dtypes))} (the model "
                              "mixes parameter dtypes); the staging slots need one: set method.offload_fp32_state=true")
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

    def holds(self, chunk: Chunk | None) -> bool:
        """Whether ``chunk``'s state sits in a slot now (the next use of it copies nothing)."""
        return chunk is not None and self._find(chunk) is not None

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
