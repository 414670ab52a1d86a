"""THE training loop: one loop for every method, so comparisons are fair by construction.

``train(cfg)`` loads the model and data, lets the method prepare the model and build its
optimizer, runs ``train.max_steps`` optimizer steps (AdamW, linear warm-up then cosine decay,
clipping, accumulation, autocast), evaluates, and writes the run directory. Methods plug in
through the hooks of :class:`grass.interface.FinetuneMethod`; they never own a loop.
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from grass import checkpoint as ckpt
from grass.config import RunConfig, run_id, to_yaml
from grass.data import check_run_data, load_train_examples
from grass.data.heldout import split_heldout
from grass.data.format import IGNORE_INDEX, Collator, TrainDataset
from grass.errors import DataError, GrassError, TrainingDiverged
from grass.eval.protocol import generation_budgets
from grass.layers import find_layers
from grass.measure import GIB, Speedometer, byte_accounting, peak_device_bytes
from grass.models.checks import check_context
from grass.models.load import count_params, load_model
from grass.precision import check_auto_precision, resolve_precision
from grass.registry import get_method
from grass.results import (CONFIG, MetricsWriter, atomic_write_text, code_version, provenance, read_result, run_dir_for,
                           write_result)
from grass.wandb_log import resolve_mode as resolve_wandb_mode

log = logging.getLogger(__name__)


class Preempted(Exception):
    """Raised after a checkpoint was saved because ``stop_requested()`` said so (SLURM preemption)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GrassError(f"train.device={name} but no CUDA device is visible; use train.device=auto or cpu")
    return dev


def lr_lambda(num_updates: int, warmup_ratio: float, min_lr_ratio: float) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_ratio * num_updates`` updates, then cosine to ``min_lr_ratio``."""
    warmup = int(round(warmup_ratio * num_updates))

    def f(update: int) -> float:
        if update < warmup:
            return (update + 1) / (warmup + 1)
        progress = (update - warmup) / max(1, num_updates - warmup)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


class BatchStream:
    """Deterministic, resumable stream of batches: epoch ``e`` visits the examples in a
    permutation seeded by ``(seed, e)``. ``position`` counts examples consumed globally, so under
    DDP rank ``r`` of ``world`` takes its slice of each global batch."""

    def __init__(self, dataset, batch_size: int, seed: int, shuffle: bool, collate, rank: int = 0,
                 world: int = 1, position: int = 0):
        if len(dataset) == 0:
            raise DataError("the training set is empty; check data.train and data.max_examples")
        self.dataset, self.batch_size, self.seed, self.shuffle = dataset, batch_size, seed, shuffle
        self.collate, self.rank, self.world, self.position = collate, rank, world, position
        self._perm_epoch, self._perm = -1, None

    def _index(self, k: int) -> int:
        n = len(self.dataset)
        epoch, offset = divmod(k, n)
        if epoch != self._perm_epoch:
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
                self._perm = torch.randperm(n, generator=g).tolist()
            else:
                self._perm = list(range(n))
            self._perm_epoch = epoch
        return self._perm[offset]

    def next(self) -> dict[str, torch.Tensor]:
        start = self.position + self.rank * self.batch_size
        items = [self.dataset[self._index(k)] for k in range(start, start + self.batch_size)]
        self.position += self.batch_size * self.world
        return self.collate(items)


def _subset(examples: list[dict], n: int | None, seed: int) -> list[dict]:
    if n is None or n >= len(examples):
        return examples
    idx = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()[:n]
    return [examples[i] for i in sorted(idx)]


def train(cfg: RunConfig, *, progress: bool = True, stop_requested: Callable[[], bool] | None = None,
          dist=None, return_model: bool = False, on_step_end: Callable | None = None):
    """Run (or resume, or skip when finished) one fine-tuning run.

    Args:
        cfg: the resolved run config.
        progress: show a progress bar.
        stop_requested: polled after every step; when it returns True a checkpoint is saved and
            :class:`Preempted` is raised (the SLURM job requeues and resumes from it).
        dist: a :class:`grass.distributed.DistContext` under torch.distributed, else None.
        return_model: also return the trained model (for notebooks and tests).
        on_step_end: called as ``on_step_end(step, model, optimizer, method)`` after every
            optimizer step (custom probes, tests).

    Returns:
        The result dict written to ``result.json``; with ``return_model``, ``(result, model)``
        (``model`` is None when the run was already finished).

    Raises:
        GrassError: bad input, found before the run directory is created.
    """
    run_dir = run_dir_for(cfg)
    world = dist.world_size if dist is not None else 1
    done = read_result(run_dir)
    if done is not None and done.get("status") == "success":
        _check_same_world(run_dir, done.get("train/world_size", 1), world, "finished")
        log.info("run %s is already finished: %s", run_id(cfg), run_dir)
        return (done, None) if return_model else done
    is_main = dist is None or dist.rank == 0
    device = dist.device if dist is not None else resolve_device(cfg.train.device)
    # Everything that can fail because of the user's input fails here, before the run directory exists.
    check_auto_precision(cfg, run_dir, device)
    check_run_data(cfg)
    if dist is not None:
        dist.configure(cfg)  # train.parallel (ddp | fsdp) and what it cannot run
    # The held-out split depends on the data alone (never on the run seed), so every run is paired.
    examples, heldout = split_heldout(load_train_examples(cfg.data), cfg.data.heldout, cfg.data.heldout_seed)
    examples = _subset(examples, cfg.data.max_examples, cfg.seed)
    method_cls = get_method(cfg.method.name)
    seed_everything(cfg.seed)
    model, tokenizer = load_model(cfg.model.name, cfg.model.dtype, cfg.model.cache_dir, cfg.model.init,
                                  tokenizer=cfg.model.tokenizer)
    check_context(model.config, cfg.model.name, cfg.train.seq_len,
                  generation_budgets(cfg.eval.benchmarks, cfg.eval.max_new_tokens))
    find_layers(model)
    method = method_cls(cfg.method, cfg)
    resolve_wandb_mode(cfg.log.wandb)  # an unknown WANDB_MODE is refused here, not after the run started

    run_dir.mkdir(parents=True, exist_ok=True)
    if is_main:
        atomic_write_text(run_dir / CONFIG, to_yaml(cfg))
        (run_dir / "result.json").unlink(missing_ok=True)  # a failed attempt's result; this one is new
    wandb = _wandb_logger(cfg, run_dir) if is_main else None
    attempt: dict = {}  # what _run learns that a failed attempt's result needs too (its code segments)
    try:
        result, model = _run(cfg, run_dir, model, tokenizer, method, examples, device, progress, stop_requested, dist,
                             attempt, on_step_end, wandb, heldout)
    except Preempted:
        if wandb is not None:
            wandb.finish(exit_code=1)  # a requeued job resumes the run; W&B sees a new attempt
        raise
    except (Exception, KeyboardInterrupt) as e:
        if wandb is not None:
            wandb.finish(exit_code=1)
        if is_main:
            status = "canceled" if isinstance(e, KeyboardInterrupt) else "failed"
            write_result(run_dir, _identity(cfg) | {"status": status, "error": f"{type(e).__name__}: {e}",
                                                    "traceback": traceback.format_exc(),
                                                    "provenance": provenance(device, attempt.get("code_segments"))})
        raise
    return (result, model) if return_model else result


def _identity(cfg: RunConfig) -> dict:
    return {"run_id": run_id(cfg), "experiment": cfg.log.experiment, "method": cfg.method.name,
            "model": cfg.model.name, "task": cfg.data.train or "default", "seed": cfg.seed}


def _run(cfg, run_dir: Path, model, tokenizer, method, examples, device, progress, stop_requested, dist, attempt: dict,
         on_step_end=None, wandb=None, heldout=()):
    tc = cfg.train
    is_main = dist is None or dist.rank == 0
    world = dist.world_size if dist else 1
    sharded = dist is not None and dist.sharded
    if not sharded:  # FSDP moves each unit to the device as it shards it: no full copy there
        model.to(device)
    if tc.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model = method.prepare(model)
    if sharded:
        dist.shard(model)  # new (DTensor) parameters: the optimizer is built over them
        method.on_sharded(model)
    optimizer = method.build_optimizer(model)
    num_updates = max(1, tc.max_steps - method.num_probe_steps())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(num_updates, tc.warmup_ratio, tc.min_lr_ratio))
    train_model = dist.wrap(model) if dist is not None else model

    dataset = TrainDataset(examples, tokenizer, tc.seq_len)
    stream = BatchStream(dataset, tc.batch_size, cfg.seed, cfg.data.shuffle, Collator(tokenizer.pad_token_id),
                         rank=dist.rank if dist else 0, world=world)

    precision = resolve_precision(tc.precision, device)
    start_step = 0
    if ckpt.has_checkpoint(run_dir):
        _check_same_world(run_dir, ckpt.checkpoint_extra(run_dir).get("world_size", 1), world, "checkpointed")
        state = ckpt.load_checkpoint(run_dir, model=model, optimizer=optimizer, scheduler=scheduler, method=method,
                                     dist=dist)
        start_step, stream.position = state["step"], state["data_position"]
        log.info("resumed %s at step %d", run_dir.name, start_step)
    # The code each part of the run ran: a resume across a code change shows in the provenance; a
    # resume on the same clean commit continues its part (two dirty checkouts of one sha may differ).
    segments = [{"from_step": start_step, **code_version()}]
    if start_step:
        before = state.get("extra", {}).get("code_segments") or [{"from_step": 0, "git_sha": None, "git_dirty": None}]
        last, now = before[-1], segments[0]
        if last["git_sha"] != now["git_sha"]:
            log.warning("resuming %s on code %s; its steps before %d ran %s", run_dir.name, now["git_sha"],
                        start_step, last["git_sha"] or "code from before runs recorded it")
        same = last["git_sha"] == now["git_sha"] and last["git_dirty"] is False and now["git_dirty"] is False
        segments = before if same else before + segments
    attempt["code_segments"] = segments
    metrics = MetricsWriter(run_dir, resume_step=start_step if start_step else None) if is_main else None
    speed = Speedometer(device)
    peaks = {"grads_bytes": 0, "optimizer_state_device_bytes": 0, "optimizer_state_host_bytes": 0}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if is_main:
        log.info("global batch = %d x %d processes x %d accumulation = %d examples", tc.batch_size, world,
                 tc.grad_accum, tc.batch_size * world * tc.grad_accum)

    bar = tqdm(total=tc.max_steps, initial=start_step, disable=not (progress and is_main),
               desc=f"{cfg.method.name} {run_dir.name}", unit="step", dynamic_ncols=True)
    model.train()
    loss_value = float("nan")
    for step in range(start_step, tc.max_steps):
        speed.start()  # the step's time includes the method's layer switch and offload swap-in
        method.on_step_start(step)
        loss_sum = 0.0
        # The step's loss is the mean over every label token of the global batch (all micro-batches,
        # all ranks), so the gradient does not depend on how the batch is split. HF's loss is a
        # per-micro-batch token mean; averaging those (over micro-batches here, over ranks by DDP)
        # would weight a micro-batch with few label tokens like one with many. Each micro-batch's
        # mean is rescaled by n_micro / n_global (= sum of its token losses / n_global), and by
        # world for backward because DDP averages gradients over ranks. Same formula for one process.
        micro_batches = [stream.next() for _ in range(tc.grad_accum)]
        n_labels = [int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in micro_batches]
        counts = torch.tensor([sum(n_labels), sum(int(b["attention_mask"].sum()) for b in micro_batches)])
        if dist is not None:
            counts = dist.sum(counts)
        n_global, tokens = int(counts[0]), int(counts[1])  # label tokens, tokens: whole global batch
        if n_global == 0:
            raise DataError(f"the batch of step {step} has no response token to train on (every label is masked): "
                            f"the tokenizer encodes the responses to nothing or train.seq_len={tc.seq_len} cuts them "
                            f"off; set model.tokenizer to the model's tokenizer or raise train.seq_len")
        for micro, batch in enumerate(micro_batches):
            batch = {k: v.to(device) for k, v in batch.items()}
            method.before_backward(step, micro == tc.grad_accum - 1)
            sync = dist.no_sync(train_model) if dist and micro < tc.grad_accum - 1 else contextlib.nullcontext()
            with sync:
                with autocast:
                    loss = train_model(**batch).loss
                value = loss.item()  # the one host sync per micro-batch: logged loss and finiteness check
                if not math.isfinite(value):
                    raise TrainingDiverged(_diverged(tc, value, step, precision))
                share = n_labels[micro] / n_global
                (loss * (share * world)).backward()
            loss_sum += value * share
        method.on_after_backward(step)
        updated = method.is_update_step(step)
        grad_norm = None
        if updated:
            if tc.max_grad_norm > 0:
                params = [p for p in model.parameters() if p.grad is not None]
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, tc.max_grad_norm))
            optimizer.step()
            scheduler.step()
        acct = byte_accounting(model, optimizer, device)
        for k in peaks:
            peaks[k] = max(peaks[k], acct[k])
        optimizer.zero_grad(set_to_none=True)
        if on_step_end is not None:
            on_step_end(step, model, optimizer, method)
        # The first update step (allocator warm-up, lazy state) and probe steps are not throughput.
        dt = speed.stop(tokens, count=updated and step > start_step + method.num_probe_steps())
        loss_value = loss_sum
        if dist is not None:
            loss_value = dist.mean(loss_value) * world  # the sum over ranks: the global token mean
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tokens / dt:.0f}")
        every = cfg.eval.heldout_every
        held = (_heldout_loss(cfg, model, tokenizer, heldout, device)
                if (is_main or sharded) and every and (step + 1) % every == 0 and step + 1 < tc.max_steps else {})
        if is_main and (step % tc.log_every == 0 or step == tc.max_steps - 1 or held):
            row = {"step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0], "tokens": tokens,
                   "tokens_per_s": tokens / dt, "step_time_s": dt, "grad_norm": grad_norm,
                   "updated": updated, "mem/optimizer_state_device_gib": acct["optimizer_state_device_bytes"] / GIB,
                   "mem/optimizer_state_host_gib": acct["optimizer_state_host_bytes"] / GIB,
                   "mem/grads_gib": acct["grads_bytes"] / GIB, **method.stats(), **held}
            metrics.write(row)
            if wandb is not None:
                wandb.log(row, step)
        next_step = step + 1
        save_now = tc.checkpoint_every and next_step % tc.checkpoint_every == 0 and next_step < tc.max_steps
        stop = stop_requested is not None and stop_requested() and next_step < tc.max_steps
        if dist is not None and stop_requested is not None:
            stop = dist.any(stop)  # a signal seen by one rank stops all of them at the same step
        if (save_now or stop) and (is_main or sharded):  # FSDP: every rank writes its shards
            ckpt.save_checkpoint(run_dir, model=model, optimizer=optimizer, scheduler=scheduler, method=method,
                                 step=next_step, data_position=stream.position,
                                 extra={"world_size": world, "precision": precision, "code_segments": segments},
                                 dist=dist)
        if stop:
            if dist is not None:
                dist.barrier()
            bar.close()
            raise Preempted(f"stopped at step {next_step}; checkpoint saved")
    bar.close()
    if dataset.num_truncated:
        log.info("%d of the %d training examples used were longer than train.seq_len=%d and truncated",
                 dataset.num_truncated, dataset.num_seen, tc.seq_len)

    result = _identity(cfg) | {
        "status": "success", "error": None, "run_dir": str(run_dir),
        "train/final_loss": loss_value, "train/steps": tc.max_steps,
        "train/world_size": world, "train/precision": precision, "train/global_batch": tc.batch_size * world * tc.grad_accum,
        "train/parallel": (dist.parallel if dist is not None else None),
        "data/train_examples": len(examples), "data/heldout_examples": len(heldout),
        "data/examples_seen": dataset.num_seen,
        "data/truncated": dataset.num_truncated,
        "speed/tokens_per_s": speed.tokens_per_s, "speed/step_time_s_median": speed.median_step_s,
        "params/trainable": count_params(model, trainable_only=True), "params/total": count_params(model),
        "mem/params_gib": byte_accounting(model, None)["params_bytes"] / GIB,
        "mem/grads_gib": peaks["grads_bytes"] / GIB,
        "mem/optimizer_state_device_gib": peaks["optimizer_state_device_bytes"] / GIB,
        "mem/optimizer_state_host_gib": peaks["optimizer_state_host_bytes"] / GIB,
        "mem/peak_device_gib": (lambda b: None if b is None else b / GIB)(peak_device_bytes(device)),
        **{f"method/{k}": v for k, v in method.summary().items()},
    }
    # A sharded model's forward needs every rank: under FSDP all ranks evaluate (and gather the
    # model to save), in lockstep on the same items; rank 0 records.
    evaluated = {}
    if (is_main or sharded) and heldout and (cfg.eval.heldout_loss or cfg.eval.heldout_every):
        evaluated.update(_heldout_loss(cfg, model, tokenizer, heldout, device))
    if is_main or sharded:
        evaluated.update(_evaluate(cfg, model, tokenizer, device))
    if sharded and tc.save_model != "none":
        from grass.distributed.fsdp import save_full_model

        save_full_model(model, run_dir / "model", dist)
    if is_main:
        result.update(evaluated)
        if tc.save_model != "none":
            out = run_dir / "model"
            if not sharded:
                method.save_model(model, str(out), tc.save_model)
            tokenizer.save_pretrained(out)
        result["provenance"] = provenance(device, segments)
        metrics.close()
        if wandb is not None:
            wandb.log_summary(result)
            wandb.finish()
        # last: a run with result.json 'success' is complete; return exactly what a re-run reads
        result = write_result(run_dir, result)
        ckpt.remove_checkpoint(run_dir)
    if dist is not None:
        dist.barrier()
    return result, model


def _heldout_loss(cfg: RunConfig, model, tokenizer, heldout: list[dict], device) -> dict:
    from grass.eval.heldout import heldout_loss

    out = heldout_loss(model, tokenizer, heldout, seq_len=cfg.train.seq_len, batch_size=cfg.eval.batch_size,
                       device=device, precision=resolve_precision(cfg.train.precision, device))
    log.info("held-out loss %.4f +- %.4f (standard error) on %d examples", out["loss/heldout"],
             out["loss/heldout_se"], out["loss/heldout_n"])
    return out


def _evaluate(cfg: RunConfig, model, tokenizer, device) -> dict:
    if not cfg.eval.benchmarks:
        return {}
    from grass.eval.protocol import evaluate

    e = cfg.eval
    out = evaluate(model, tokenizer, list(e.benchmarks), limit=e.limit, batch_size=e.batch_size,
                   max_new_tokens=e.max_new_tokens, device=device)
    if e.lm_eval:
        from grass.eval.lmeval import evaluate_lmeval

        out.update(evaluate_lmeval(model, tokenizer, list(e.benchmarks), limit=e.limit, batch_size=e.batch_size,
                                   device=device))
    return out


def _diverged(tc, value: float, step: int, precision: str) -> str:
    """What to change when the loss is not finite (the user's settings, not a bug)."""
    fixes = [f"lower train.lr (now {tc.lr:g})"]
    if tc.max_grad_norm == 0:
        fixes.append("enable clipping (train.max_grad_norm=1.0)")
    if precision != "fp32":
        fixes.append("use train.precision=fp32")
    return f"the loss is {value} at step {step}: training diverged; " + " or ".join(fixes)


def _wandb_logger(cfg: RunConfig, run_dir: Path):
    if resolve_wandb_mode(cfg.log.wandb) == "disabled":
        return None
    from grass.wandb_log import WandbLogger

    return WandbLogger(cfg, run_dir)


def _check_same_world(run_dir: Path, recorded: int, world: int, what: str) -> None:
    """A run id does not include the process count (``train.batch_size`` is per process), so a
    finished or checkpointed run from another world size must not be reused silently.

    Raises:
        GrassError: the recorded world size differs from this launch's.
    """
    if int(recorded) != world:
        raise GrassError(f"run {run_dir.name} in {run_dir.parent} was {what} with {recorded} process(es) and this "
                         f"launch has {world}: the global batch differs. Use another log.experiment or "
                         f"log.run_id to keep both, or launch with {recorded} process(es)")
