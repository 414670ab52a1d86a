"""Layer-wise AdamW with optimizer state offloaded to host memory (DESIGN section 2.6-2.7).

GRASS (Tian et al. 2026) trains a changing subset of decoder layers and keeps the AdamW state of
every layer in host memory, streaming only the layers being updated through the accelerator; the
paper reports the extra memory of layer-wise training on LLaMA2-7B falling from 1.63 GB to
0.14 GB with throughput kept. This module is that engine, used by ``state_policy: offload`` of
both ``grass`` and ``lisa``. It is a drop-in ``torch.optim.Optimizer``:

* the state policy across layer switches is "keep" -- a frozen layer's moments and step count
  stay in host memory and resume when the layer is drawn again;
* the math is ``torch.optim.AdamW`` (it calls torch's functional ``adam`` with
  ``decoupled_weight_decay=True``), per-parameter step counts, parameters whose ``.grad`` is None
  untouched; bf16/fp16 parameters are updated through an fp32 master copy kept with the state
  (``fp32_state=False``: bf16 moments and no master, torch AdamW's numerics on bf16 weights);
* on CUDA, ``step()`` prefetches chunk i+1's state on a side stream while chunk i updates,
  ordered by events only (:mod:`grass.optim.offload_staging`). The staging slots are a write-back
  cache: a chunk's state goes back to host memory when its slot is needed for another chunk, or
  on :meth:`LayerwiseOffloadAdamW.flush`. ``chunk_mb`` (GRASS's default, 64) streams every unit
  in chunks of at most one decoder layer through two slots, so at most two layers' state is on
  the device, and ``step()`` alternates the unit order so the two chunks left in the slots by
  one step start the next; without it whole units are cached (two layer slots plus one per
  embeddings/head unit) and steps between layer switches copy nothing;
* ``overlap="backward"`` (beyond the paper) updates each unit from
  ``register_post_accumulate_grad_hook`` as soon as its gradients are complete
  (:mod:`grass.optim.offload_overlap`);
* on a CPU-only machine nothing is offloaded: the state is used in place, same numbers;
* under FSDP (``DTensor`` parameters) every size, view and update is of this rank's local shard
  (:func:`grass.distributed.shards.local_tensor`), so each rank holds and streams its own state.
"""
from __future__ import annotations

import logging

import torch
from torch.optim.adam import adam as _functional_adam

from grass.distributed.shards import local_tensor
from grass.errors import ConfigError
from grass.optim.host_memory import CopyFence
from grass.optim.offload_checkpoint import load_into, state_dict_of
from grass.optim.offload_overlap import BackwardOverlap, check_overlap
from grass.optim.offload_staging import StagingPipeline
from grass.optim.offload_state import Chunk, UnitStore, validate_units

log = logging.getLogger(__name__)


class LayerwiseOffloadAdamW(BackwardOverlap, torch.optim.Optimizer):
    """AdamW whose per-unit state lives in pinned host memory and streams through the device.

    Args:
        units: ``[(name, params), ...]`` in forward order, e.g. ``("embed", [...])``,
            ``("layer.0", [...])``, ..., ``("head", [...])``. Each parameter in exactly one unit
            (drop tied duplicates before calling). Units may be empty.
        lr, betas, eps, weight_decay: as ``torch.optim.AdamW`` (note weight_decay defaults to 0).
        device: the compute device; default: the parameters' device. State is offloaded only when
            it is a CUDA device.
        offload_embeddings: when False, the units named in ``embedding_units`` keep their state
            resident on the device (no transfers for them).
        overlap: ``"step"`` (update in ``step()``) or ``"backward"`` (update each unit during
            backward; call :meth:`attach_backward_hooks`).
        embedding_units: names of the embeddings/head units.
        grad_accum, max_grad_norm: the training loop's settings, checked against ``overlap``.
        chunk_mb: stream offloaded state in chunks of at most this many MiB and at most one
            decoder layer's state (the largest unit not in ``embedding_units``): two chunks on
            the device at once, so device-resident state never exceeds two layers' state,
            however large the embeddings are; every step then moves its units' state both ways,
            less the two chunks that stay in the slots from one step to the next (``step()``
            alternates the unit order to reuse them). None: whole units, and the slots act as a
            write-back cache (state moves only at layer switches while the active layers fit in
            two slots) plus one slot per embeddings/head unit.
        fp32_state: fp32 moments and fp32 master weights for bf16/fp16 parameters (12 B per
            parameter); False: moments in the parameters' dtype, no master, i.e. exactly
            ``torch.optim.AdamW`` on the parameters as they are (4 B per bf16 parameter).
        foreach: use torch's multi-tensor AdamW kernels; default: on CUDA only (on CPU the
            single-tensor path matches ``torch.optim.AdamW(foreach=False)`` bit for bit).
        _simulate_offload: tests only -- on a CPU, stage units through CPU "device" slots with
            synchronous copies, to exercise the slot logic without CUDA.

    Note:
        ``self.state[p]`` holds views of the HOST copy of the state, for introspection; call
        :meth:`flush` first when offloading, since the slots on the device may hold newer state.
        :meth:`state_dict` flushes by itself.

        The backward hooks hold the optimizer by a weak reference and are removed when it is
        collected, so a discarded optimizer never keeps updating the model.

        The fp32 master of a bf16 parameter is taken from the parameter at its first update and
        is authoritative after that; to change such weights later, restore the optimizer state
        with them (``load_state_dict``), as a resume does.

    Raises:
        ConfigError: unknown ``overlap``; ``overlap="backward"`` with ``grad_accum > 1`` or
            ``max_grad_norm > 0``.
        ValueError: a parameter in two units, unsupported dtype, parameters off ``device``,
            invalid hyper-parameters.
    """

    def __init__(self, units: list[tuple[str, list[torch.nn.Parameter]]], *, lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 device: torch.device | str | None = None, offload_embeddings: bool = True,
                 overlap: str = "step", embedding_units: tuple[str, ...] = ("embed", "head"),
                 grad_accum: int = 1, max_grad_norm: float = 0.0, foreach: bool | None = None,
                 chunk_mb: float | None = None, fp32_state: bool = True, _simulate_offload: bool = False):
        check_overlap(overlap, grad_accum, max_grad_norm)
        if chunk_mb is not None and not chunk_mb > 0:
            raise ConfigError(f"method.offload_chunk_mb must be positive or null, got {chunk_mb}")
        if not 0.0 <= float(lr) or not 0.0 <= eps or not all(0.0 <= b < 1.0 for b in betas) or weight_decay < 0:
            raise ValueError(f"invalid AdamW hyper-parameters: lr={lr} betas={betas} eps={eps} "
                             f"weight_decay={weight_decay}")
        units, dev = validate_units(units, device)
        all_params = [p for _, ps in units for p in ps]
        super().__init__(all_params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

        self.device, self.overlap = dev, overlap
        self.grad_accum, self.max_grad_norm = grad_accum, max_grad_norm
        self.embedding_units = tuple(embedding_units)
        self.offload_embeddings = offload_embeddings
        cuda = dev.type == "cuda"
        mode = "cuda" if cuda else ("simulate" if _simulate_offload else None)
        self.offloading: bool = mode is not None
        self._foreach = cuda if foreach is None else foreach
        copy_stream = torch.cuda.Stream(dev) if cuda else None
        fence = CopyFence(copy_stream)  # pinned buffers wait on it before they are released
        # a chunk never holds more than one decoder layer: two slots <= two layers' state
        layer_numel = max((sum(p.numel() for p in ps) for name, ps in units if name not in self.embedding_units),
                          default=0)
        self._stores: list[UnitStore] = []
        for name, ps in units:
            is_emb = name in self.embedding_units
            staged = self.offloading and (offload_embeddings or not is_emb)
            home = torch.device("cpu") if (staged or not cuda) else dev
            chunk_bytes = int(chunk_mb * 2**20) if (chunk_mb is not None and staged) else None
            self._stores.append(UnitStore.build(name, ps, home_device=home, pin=cuda and staged,
                                                staged=staged, is_embedding=is_emb, chunk_bytes=chunk_bytes,
                                                max_chunk_numel=layer_numel or None, fp32_state=fp32_state,
                                                fence=fence))
        self.chunk_mb = chunk_mb
        self._pipe = StagingPipeline([c for s in self._stores for c in s.chunks], dev, mode,
                                     chunked=chunk_mb is not None, copy_stream=copy_stream)
        for s in self._stores:  # torch-style per-parameter views of the home state, for introspection
            for j, (p, a, b2, w) in enumerate(zip(s.params, *s.home_views)):
                self.state[p] = {"step": s.step_views[j], "exp_avg": a, "exp_avg_sq": b2,
                                 **({"master": w} if w is not None else {})}
        self._hooks: list = []  # the same list for the object's life (a finalizer removes them)
        self._ready: list[set[int]] = [set() for _ in self._stores]
        self._done: set[int] = set()
        # Test hook: called on the compute stream right before each unit's update (the GPU race
        # tests put a long kernel there so that a missing wait shows up as wrong numbers).
        self._before_update_hook = None
        b = self.state_bytes()
        self.max_device_state_bytes = b["device"]  # slots and resident state are allocated once: constant
        if self.offloading:
            log.info("optimizer state offloaded to %s host memory: %.1f MiB on host, %.1f MiB on %s "
                     "(%d staging slots)", "pinned" if cuda else "(simulated)", b["host"] / 2**20,
                     b["device"] / 2**20, dev, len(self._pipe.slots))
        else:
            log.info("CPU-only run (device=%s): optimizer state stays in place, nothing is offloaded; "
                     "the offload engine's copies are no-ops here (%.1f MiB of state)", dev, b["device"] / 2**20)

    # ------------------------------------------------------------------ bookkeeping
    def unit_names(self) -> list[str]:
        """Names of the units, in the order given to the constructor."""
        return [s.name for s in self._stores]

    def add_param_group(self, param_group: dict) -> None:
        """Only the constructor's single group is supported (units fix the state layout).

        Raises:
            NotImplementedError: when called after construction.
        """
        if hasattr(self, "_stores"):
            raise NotImplementedError("LayerwiseOffloadAdamW has one parameter group, fixed at construction")
        super().add_param_group(param_group)

    def state_bytes(self) -> dict[str, int]:
        """Bytes of optimizer state by where it lives now.

        Returns:
            ``{"device": n, "host": n}``. Offloading: device = staging slots + resident
            embeddings/head state; host = offloaded flat buffers + step counts. CPU-only:
            everything is "device" (the CPU is the training device) and host is 0.
        """
        steps = sum(s.steps.numel() * 4 for s in self._stores)
        if not self.offloading:
            return {"device": sum(s.nbytes() for s in self._stores) + steps, "host": 0}
        resident = sum(s.nbytes() for s in self._stores if not s.staged)
        host = sum(s.nbytes() for s in self._stores if s.staged)
        return {"device": self._pipe.staging_bytes + resident, "host": host + steps}

    def flush(self) -> None:
        """Copy the newest state from the device staging slots back to host memory and wait for it.

        After this, ``self.state`` (host views) and the pinned host buffers are complete. A no-op
        when nothing is offloaded. :meth:`state_dict` calls it.
        """
        self._pipe.flush()

    def transfer_bytes(self) -> dict[str, int]:
        """State bytes copied so far: ``{"h2d": host->device, "d2h": device->host}`` (0 when not offloading)."""
        return {"h2d": self._pipe.bytes_h2d, "d2h": self._pipe.bytes_d2h}

    # ------------------------------------------------------------------ update
    def _update_unit(self, store: UnitStore, next_chunk: Chunk | None, reverse: bool = False) -> list[int]:
        """Run AdamW on ``store``'s parameters that have a gradient, chunk by chunk.

        Args:
            store: the unit.
            next_chunk: what to prefetch while the unit's last chunk updates.
            reverse: go through the unit's chunks last to first.

        Returns:
            Indices of the parameters updated.
        """
        idx = [j for j, p in enumerate(store.params) if p.grad is not None]
        if not idx:
            return idx
        if any(store.params[j].grad.is_sparse for j in idx):  # before any kernel touches a slot
            raise RuntimeError("LayerwiseOffloadAdamW does not support sparse gradients")
        todo = _grad_chunks(store, reverse)
        whole = len(store.chunks) == 1
        self._pipe.begin()
        for k, chunk in enumerate(todo):
            buf = self._pipe.acquire(chunk)
            # overlaps the next chunk's (or unit's) load with this update
            self._pipe.prefetch(todo[k + 1] if k + 1 < len(todo) else next_chunk, protect=chunk)
            self._update_chunk(store, chunk, buf, whole)
            self._pipe.release(chunk)
        if not whole:
            for j in idx:  # once per parameter, however many chunks it spans
                store.steps[j] += 1
        return idx

    def _update_chunk(self, store: UnitStore, chunk: Chunk, buf: torch.Tensor | None, whole: bool) -> None:
        group = self.param_groups[0]
        params, grads, exp_avgs, exp_avg_sqs, steps, low = [], [], [], [], [], []
        for j, s, e, ea, eas, ms in chunk.views(buf):
            p = store.params[j]
            if p.grad is None:
                continue
            weights = local_tensor(p).detach().view(-1)[s:e]  # FSDP: this rank's shard
            grad = local_tensor(p.grad).reshape(-1)[s:e]
            if ms is not None:
                if store.steps[j].item() == 0:
                    # Lazy master init at the first update (like torch's lazy state init), so a
                    # model loaded after the optimizer was built is picked up.
                    ms.copy_(weights)
                params.append(ms)
                grads.append(grad.float())
                low.append((weights, ms))
            else:
                params.append(weights)
                grads.append(grad)
            exp_avgs.append(ea)
            exp_avg_sqs.append(eas)
            # torch's adam increments the step it is given: a whole unit hands over its counters;
            # a parameter split over chunks gets a copy per piece and moves once in _update_unit
            steps.append(store.step_views[j] if whole else store.steps[j].clone())
        if self._before_update_hook is not None:
            self._before_update_hook(chunk.name)
        beta1, beta2 = group["betas"]
        _functional_adam(params, grads, exp_avgs, exp_avg_sqs, [], steps, foreach=self._foreach,
                         capturable=False, differentiable=False, fused=None, decoupled_weight_decay=True,
                         amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
                         weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)
        for weights, ms in low:
            weights.copy_(ms)  # bf16 weights = rounded fp32 master

    @torch.no_grad()
    def step(self, closure=None):
        """Update every parameter whose ``.grad`` is not None, unit by unit.

        Args:
            closure: optional, re-evaluates the model and returns the loss.

        Returns:
            The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # With overlap="backward" the units finished during backward have no grads left; what
        # remains (unused parameters, hooks not attached) is done here.
        todo = [s for s in self._stores if any(p.grad is not None for p in s.params)]
        # The slots still hold the last chunks of the previous step. When more of them sit at the
        # end of this step's sequence than at its start, go through it backwards: they are used
        # again without a copy (AdamW is per element: the order never changes a number).
        reverse = self._reuse_from_end(todo)
        if reverse:
            todo.reverse()
        for k, s in enumerate(todo):
            nxt = _grad_chunks(todo[k + 1], reverse)[0] if k + 1 < len(todo) else None
            self._update_unit(s, nxt, reverse)
        self._pipe.finish()
        self._ready = [set() for _ in self._stores]
        self._done = set()
        return loss

    def _reuse_from_end(self, todo: list[UnitStore]) -> bool:
        seq = [c for s in todo for c in _grad_chunks(s, False)]
        held = [self._pipe.holds(c) for c in seq]
        prefix = next((k for k, h in enumerate(held) if not h), len(held))
        suffix = next((k for k, h in enumerate(reversed(held)) if not h), len(held))
        return suffix > prefix

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict:
        """All state, on CPU, in torch's layout plus the unit names (see
        :func:`grass.optim.offload_checkpoint.state_dict_of`). Flushes the staging slots first."""
        self.flush()
        return state_dict_of(self._stores, self.param_groups[0])

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a :meth:`state_dict`, or a ``torch.optim.AdamW`` state dict over the same
        parameters in the same order (see :func:`grass.optim.offload_checkpoint.load_into`:
        entries without an fp32 master take it from the parameters' current weights, so load the
        model weights first, as a resume does).

        Raises:
            ValueError: the units, parameter count or a shape differ.
        """
        self._pipe.invalidate()  # waits for pending copies; slots no longer mirror host state
        load_into(self._stores, self.param_groups[0], state_dict)


def _grad_chunks(store: UnitStore, reverse: bool) -> list[Chunk]:
    """The unit's chunks that have a gradient now, in update order."""
    todo = [c for c in store.chunks if c.has_grad()]
    return todo[::-1] if reverse else todo
