"""Which precision a run trains in: ``train.precision=auto`` resolved per device, and the check
that keeps one experiment's ``auto`` runs (and a run and its checkpoint) in one precision."""
from __future__ import annotations

from pathlib import Path

import torch
import yaml

from grass import checkpoint as ckpt
from grass.config import RunConfig
from grass.errors import GrassError
from grass.results import CONFIG, read_result


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: a bf16 GPU, or a CPU with AVX512-BF16 or AMX.

    On a CPU without them torch emulates bf16 matmuls and autocast is slower than fp32.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(name: str, device: torch.device) -> str:
    """``train.precision`` as run: ``auto`` becomes ``bf16`` where :func:`native_bf16`, else ``fp32``."""
    if name != "auto":
        return name
    return "bf16" if native_bf16(device) else "fp32"


def check_auto_precision(cfg: RunConfig, run_dir: Path, device: torch.device) -> None:
    """``train.precision=auto`` is not resolved in the run id but depends on the device (bf16 only
    where it is native), so a grid relaunched on another machine would train runs under the same
    ids in another precision and pair them with the finished ones, and a resume would mix the two
    in one run. Refuse both, before anything is written.

    Raises:
        GrassError: the run's checkpoint, or a finished run of the same experiment that also asked
            for ``auto`` on the same model, device setting and budget, got another precision than
            this device gives.
    """
    if cfg.train.precision != "auto":
        return
    here = resolve_precision("auto", device)
    if ckpt.has_checkpoint(run_dir):
        then = ckpt.checkpoint_extra(run_dir).get("precision", here)
        if then != here:
            raise GrassError(f"run {run_dir.name} was checkpointed training in {then} and train.precision=auto is "
                             f"{here} on this {device.type}: resuming would mix the two in one run. Resume it on a "
                             f"device where it is {then}, or set train.precision={then} explicitly (a new run)")
    others = [(name, got) for name, got in _auto_siblings(cfg, run_dir) if got != here]
    if others:
        name, other = others[0]
        raise GrassError(f"train.precision=auto is {here} on this {device.type} ("
                         f"{'native bf16' if here == 'bf16' else 'no native bf16'}), but {len(others)} finished "
                         f"run(s) of experiment {run_dir.parent.name} got {other} from it (e.g. {name}): runs here "
                         f"would not pair with them. Run on a device where it is {other}, or set "
                         f"train.precision={here} explicitly (new run ids)")


# What makes two runs comparable enough that their precisions must agree (seed, method, task may differ).
_COMPARABLE = (("model", "name"), ("train", "device"), ("train", "max_steps"), ("train", "batch_size"),
               ("train", "seq_len"))


def _auto_siblings(cfg: RunConfig, run_dir: Path) -> list[tuple[str, str]]:
    """``(run id, precision it ran in)`` of the finished ``auto`` runs beside ``run_dir`` that are
    comparable with ``cfg``; an unreadable sibling is no evidence either way and is skipped."""
    mine = {(sec, key): getattr(getattr(cfg, sec), key) for sec, key in _COMPARABLE}
    out = []
    for sibling in sorted(run_dir.parent.glob("*/result.json")):
        if sibling.parent == run_dir:
            continue
        try:
            done = read_result(sibling.parent)
            theirs = yaml.safe_load((sibling.parent / CONFIG).read_text())
            asked = {(sec, key): theirs[sec][key] for sec, key in _COMPARABLE} | \
                {("train", "precision"): theirs["train"]["precision"]}
            ok, got = done.get("status") == "success", done.get("train/precision")
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
            continue
        if ok and got and asked.pop(("train", "precision")) == "auto" and asked == mine:
            out.append((sibling.parent.name, got))
    return out
