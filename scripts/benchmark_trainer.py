#!/usr/bin/env python
"""Side by side in ONE process: BAdam vs our LISA on equal update sets, and GRASS through
``transformers.Trainer`` (``grass.integrations.hf.LayerwiseCallback``) vs through ``grass train``.

    nice python scripts/benchmark_trainer.py                 # SmolLM2-135M, 4 x 128 tokens, 1 thread, fp32
    python scripts/benchmark_trainer.py --steps 12 --rounds 2 --out /tmp/bench.json

Setups (all fp32, the same synthetic examples, each truncated to ``seq_len`` so a step is exactly
``batch x seq_len`` tokens):

* ``lisa-1``: our loop, ``lisa`` with one active layer, embeddings and head frozen, state reset,
  one draw for the whole run;
* ``badam-1``: our loop, ``badam`` (badam's BlockOptimizer, one decoder layer per block) fixed on
  the layer LISA draws: the same update set, and so the same backward depth (a step's cost depends
  on how deep the trained layer sits);
* ``grass-loop``: our loop, ``grass`` (2 active layers, offload state policy);
* ``grass-trainer``: the same GRASS config through a ``transformers.Trainer`` and the callback.
  Both GRASS runs read the data in order with a constant LR, so they draw the same layers (checked
  and printed).

A step's time is the time between two consecutive step ends (so data loading, the hooks, the
optimizer and the loop's bookkeeping all count), as wall time and as this process's CPU time
(which does not count the time other processes hold the core of a one-thread run on a shared
machine). Counted: update steps after the first (GRASS's probe and the warm-up step are left out).
Rounds alternate the order. Prints medians and ratios; writes JSON (``benchmarks/results/`` or ``--out``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402

from benchmark import write_data  # noqa: E402  (scripts/benchmark.py: examples of exactly seq_len tokens)

SETUPS = {
    "lisa-1": ["method.name=lisa", "method.n_active_layers=1", "method.train_embeddings=false",
               "method.train_head=false", "method.state_policy=reset"],
    "badam-1": ["method.name=badam", "method.switch_mode=fixed"],
    "grass-loop": ["method.name=grass", "method.n_active_layers=2"],
    "grass-trainer": ["method.name=grass", "method.n_active_layers=2"],
}
CONSTANT_LR = ["train.warmup_ratio=0.0", "train.min_lr_ratio=1.0", "data.shuffle=false"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--setups", default=",".join(SETUPS), help=f"comma list of {', '.join(SETUPS)}")
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per run (GRASS's probe included)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--switch-every", type=int, default=3, help="GRASS's switch_every and refresh_every")
    p.add_argument("--probe-steps", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


class StepClock:
    """(step, wall, cpu) at every step end."""

    def __init__(self):
        self.ends: list[tuple[int, float, float]] = []

    def tick(self, step: int) -> None:
        self.ends.append((step, time.perf_counter(), time.process_time()))

    def durations(self, first_counted: int) -> tuple[list[float], list[float]]:
        wall, cpu = [], []
        for (_, w0, c0), (s, w1, c1) in zip(self.ends, self.ends[1:]):
            if s >= first_counted:
                wall.append(w1 - w0)
                cpu.append(c1 - c0)
        return wall, cpu


def _config(key: str, args, data: Path, runs_dir: Path, rnd: int):
    from grass.config import load_config

    ov = [f"model.name={args.model}", f"train.max_steps={args.steps}", f"train.seq_len={args.seq_len}",
          f"train.batch_size={args.batch}", f"train.device={args.device}", f"data.train={data}", "log.wandb=disabled",
          f"log.runs_dir={runs_dir}", f"log.experiment={key}-r{rnd}", *SETUPS[key]]
    if key == "lisa-1":
        ov += [f"method.switch_every={args.steps}"]
    elif key == "badam-1":
        ov += [f"method.switch_block_every={args.steps + 1}", f"method.start_block={lisa_layer(args)}"]
    else:
        ov += [f"method.switch_every={args.switch_every}", f"method.probe_steps={args.probe_steps}",
               f"method.refresh_every={args.switch_every}", *CONSTANT_LR]
    return load_config(None, ov)


def lisa_layer(args) -> int:
    """The layer ``lisa-1`` draws (LISA's own draw, from its generator seeded by the run seed)."""
    from grass.config import load_config
    from grass.models.configs import resolve_config
    from grass.registry import get_method

    cfg = load_config(None, ["method.name=lisa", "method.n_active_layers=1"])
    lisa = get_method("lisa")(cfg.method, cfg)
    lisa.lmap = range(resolve_config(args.model).num_hidden_layers)  # draw() needs only the layer count
    (layer,) = lisa.draw()
    return layer


def run_loop(key, cfg) -> dict:
    from grass.train import train

    clock = StepClock()
    result = train(cfg, progress=False, on_step_end=lambda step, *_: clock.tick(step))
    probe = getattr(cfg.method, "probe_steps", 0)
    wall, cpu = clock.durations(probe + 1)
    rows = [json.loads(x) for x in (Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    return {"key": key, "wall_s": wall, "cpu_s": cpu, "final_loss": result["train/final_loss"],
            "active_layers": [r["active_layers"] for r in rows],
            "optimizer_state_device_bytes": round(result["mem/optimizer_state_device_gib"] * 2**30),
            "optimizer_state_host_bytes": round(result["mem/optimizer_state_host_gib"] * 2**30)}


def run_trainer(key, cfg, tmp: Path) -> dict:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from grass.data import load_train_examples
    from grass.data.format import Collator, TrainDataset
    from grass.integrations.hf import LayerwiseCallback
    from grass.measure import optimizer_state_bytes
    from grass.models.load import load_model
    from grass.train import seed_everything

    seed_everything(cfg.seed)
    model, tok = load_model(cfg.model.name, cfg.model.dtype, cfg.model.cache_dir, cfg.model.init)
    m = cfg.method
    cb = LayerwiseCallback(model, "grass", n_active_layers=m.n_active_layers, switch_every=m.switch_every,
                           probe_steps=m.probe_steps, refresh_every=m.refresh_every, state_policy=m.state_policy)
    clock, peak = StepClock(), {"device": 0, "host": 0}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.tick(state.global_step - 1)
            b = optimizer_state_bytes(cb.optimizer.inner, args.device)
            peak.update({k: max(peak[k], b[k]) for k in peak})

    tc = cfg.train
    targs = TrainingArguments(output_dir=str(tmp / key), max_steps=tc.max_steps, per_device_train_batch_size=tc.batch_size,
                              learning_rate=tc.lr, lr_scheduler_type="constant", max_grad_norm=tc.max_grad_norm,
                              seed=cfg.seed, logging_steps=1, report_to=[], save_strategy="no",
                              use_cpu=cfg.train.device == "cpu", disable_tqdm=True, dataloader_num_workers=0,
                              train_sampling_strategy="sequential")
    trainer = Trainer(model=model, args=targs, train_dataset=TrainDataset(load_train_examples(cfg.data), tok, tc.seq_len),
                      data_collator=Collator(tok.pad_token_id), callbacks=[cb, Clock()],
                      optimizers=(cb.optimizer, None))
    out = trainer.train()
    wall, cpu = clock.durations(m.probe_steps + 1)
    logged = [r for r in trainer.state.log_history if "loss" in r]
    return {"key": key, "wall_s": wall, "cpu_s": cpu, "final_loss": logged[-1]["loss"],
            "active_layers": [r["active_layers"] for r in logged],
            "train_loss": out.training_loss, "optimizer_state_device_bytes": peak["device"],
            "optimizer_state_host_bytes": peak["host"]}


def summarize(runs: list[dict]) -> tuple[dict, dict]:
    s = {}
    for key in dict.fromkeys(r["key"] for r in runs):
        rs = [r for r in runs if r["key"] == key]
        wall = [t for r in rs for t in r["wall_s"]]
        cpu = [t for r in rs for t in r["cpu_s"]]
        s[key] = {"step_wall_s_median": statistics.median(wall), "step_cpu_s_median": statistics.median(cpu),
                  "counted_steps": len(wall), "optimizer_state_device_mib": rs[-1]["optimizer_state_device_bytes"] / 2**20,
                  "optimizer_state_host_mib": rs[-1]["optimizer_state_host_bytes"] / 2**20,
                  "final_loss": rs[-1]["final_loss"], "active_layers": rs[-1]["active_layers"]}
    pairs = {"badam-1 / lisa-1": ("badam-1", "lisa-1"), "grass-trainer / grass-loop": ("grass-trainer", "grass-loop")}
    ratios = {name: {m: s[a][f"step_{m}_s_median"] / s[b][f"step_{m}_s_median"] for m in ("wall", "cpu")}
              for name, (a, b) in pairs.items() if a in s and b in s}
    return s, ratios


def main(argv=None) -> int:
    args = parse_args(argv)
    keys = [k.strip() for k in args.setups.split(",") if k.strip()]
    if any(k not in SETUPS for k in keys):
        print(f"error: unknown setup in {args.setups}; valid: {', '.join(SETUPS)}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out) if args.out else (ROOT / "benchmarks" / "results" /
                                           f"{dt.datetime.now():%Y%m%d-%H%M%S}-{args.device}-{args.model}-trainer.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="grass-bench-trainer-") as tmp:
        tmp = Path(tmp)
        write_data(tmp / "bench.json")
        for rnd in range(args.rounds):
            for key in (keys if rnd % 2 == 0 else keys[::-1]):
                cfg = _config(key, args, tmp / "bench.json", tmp / "runs", rnd)
                r = run_trainer(key, cfg, tmp) if key == "grass-trainer" else run_loop(key, cfg)
                r["round"] = rnd
                runs.append(r)
                print(f"round {rnd} {key}: median step {statistics.median(r['wall_s']):.3f} s wall, "
                      f"{statistics.median(r['cpu_s']):.3f} s CPU", flush=True)
    s, ratios = summarize(runs)
    print(f"\n{args.model}, {args.batch} x {args.seq_len} tokens, fp32, {args.steps} steps x {args.rounds} round(s), "
          f"device {args.device}, threads {torch.get_num_threads()}")
    print(f"{'setup':<16}{'step s (wall)':>14}{'step s (CPU)':>14}{'opt state dev MiB':>19}{'host MiB':>10}{'loss':>8}")
    for k, v in s.items():
        print(f"{k:<16}{v['step_wall_s_median']:>14.3f}{v['step_cpu_s_median']:>14.3f}"
              f"{v['optimizer_state_device_mib']:>19.1f}{v['optimizer_state_host_mib']:>10.1f}{v['final_loss']:>8.3f}")
    for name, r in ratios.items():
        print(f"{name}: {r['wall']:.3f} (wall), {r['cpu']:.3f} (CPU)")
    for k, v in s.items():
        print(f"{k} active layers per step: {v['active_layers']}")
    record = {"args": vars(args), "load_avg": os.getloadavg(), "torch": torch.__version__, "summary": s,
              "ratios": ratios, "runs": runs}
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_text(json.dumps(record, indent=2))
    os.replace(tmp_out, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
