"""Checkpoints of :class:`grass.optim.offload.LayerwiseOffloadAdamW`: its state in torch's layout.

:func:`state_dict_of` writes the host copy of every unit's state as ``torch.optim.AdamW`` lays
it out (plus the fp32 ``master`` of low-precision weights and the unit names); :func:`load_into`
reads that back, and also a plain ``torch.optim.AdamW`` state dict or one saved by an engine with
the other ``fp32_state``. It never leaves a master at zero: a step from a zero master would write
weights of about +-lr into the model (issue 15).
"""
from __future__ import annotations

import copy

from grass.distributed.shards import local_tensor
from grass.optim.offload_state import UnitStore


def state_dict_of(stores: list[UnitStore], group: dict) -> dict:
    """All state, on CPU (the caller flushed the staging slots).

    Args:
        stores: the engine's units, in order.
        group: its single parameter group.

    Returns:
        ``{"state": {i: {"step", "exp_avg", "exp_avg_sq"[, "master"]}}, "param_groups": [...],
        "units": [(name, n_params), ...]}``; ``i`` numbers parameters across units in order;
        parameters never updated have no entry (as in torch).
    """
    state, i = {}, 0
    for s in stores:
        ea, eas, ms = s.home_views
        for j in range(len(s.params)):
            if s.steps[j].item() > 0:
                entry = {"step": s.steps[j].clone(), "exp_avg": ea[j].to("cpu", copy=True),
                         "exp_avg_sq": eas[j].to("cpu", copy=True)}
                if ms[j] is not None:
                    entry["master"] = ms[j].to("cpu", copy=True)
                state[i] = entry
            i += 1
    saved = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
    saved["params"] = list(range(i))
    return {"state": state, "param_groups": [saved], "units": [(s.name, len(s.params)) for s in stores]}


def load_into(stores: list[UnitStore], group: dict, state_dict: dict) -> None:
    """Restore ``state_dict`` into the units' host state (the caller invalidated the slots).

    Moments are cast to the engine's state dtype. An entry without ``master`` (``torch.optim.AdamW``,
    or an engine with ``fp32_state=False``) gets its fp32 master from the parameter's current
    weights; a ``master`` the engine has no room for (``fp32_state=False``) is dropped: the
    weights are its rounding.

    Args:
        stores: the engine's units, in order.
        group: its parameter group (hyper-parameters are updated in place).
        state_dict: as :func:`state_dict_of` returns, or ``torch.optim.AdamW.state_dict()`` over
            the same parameters in the same order.

    Raises:
        ValueError: the units, parameter count or a shape differ.
    """
    units = [(s.name, len(s.params)) for s in stores]
    saved_units = [tuple(u) for u in state_dict.get("units", units)]
    if saved_units != units:
        raise ValueError(f"optimizer state was saved for units {saved_units}, this optimizer has {units}")
    n_params = sum(len(s.params) for s in stores)
    groups = state_dict["param_groups"]
    if len(groups) != 1 or len(groups[0]["params"]) != n_params:
        raise ValueError(f"saved state has {[len(g['params']) for g in groups]} parameters in its groups, "
                         f"this optimizer has one group of {n_params}")
    saved, i = state_dict["state"], 0
    for s in stores:
        s.home.zero_()
        s.steps.zero_()
        ea, eas, ms = s.home_views
        for j, p in enumerate(s.params):
            entry = saved.get(i, saved.get(str(i)))
            i += 1
            if entry is None:
                continue
            shape = tuple(local_tensor(p).shape)  # FSDP: this rank's shard
            if tuple(entry["exp_avg"].shape) != shape:
                raise ValueError(f"unit {s.name!r} parameter {j}: saved shape {tuple(entry['exp_avg'].shape)} "
                                 f"!= {shape}")
            s.steps[j] = entry["step"]
            ea[j].copy_(entry["exp_avg"])
            eas[j].copy_(entry["exp_avg_sq"])
            if ms[j] is not None:
                # no saved master: the weights are the best value there is (a zero master would
                # overwrite the weights with ~lr at the next step)
                ms[j].copy_(entry["master"] if "master" in entry else local_tensor(p).detach())
    group.update({k: copy.deepcopy(v) for k, v in groups[0].items() if k != "params"})
