#!/usr/bin/env python
"""Side-by-side benchmark of every method in ONE process, through the real training loop.

    nice python scripts/benchmark.py                       # SmolLM2-135M, seq 128, batch 4, CPU
    python scripts/benchmark.py --model smollm2-135m --seq-len 1024 --batch 4 --device cuda \
        --methods full,lora,lisa,grass-offload,grass-reset --out $OUT/bench.json

Each method is a normal ``grass.train.train`` run (``log.wandb=disabled``, a temporary runs dir,
synthetic examples long enough that every batch is exactly ``batch x seq_len`` tokens). Methods run
in rounds whose order alternates (round 2 runs them in reverse), so a slow phase of the machine
does not favour one method; medians are over all counted steps of all rounds. Counted steps are
the loop's: update steps after the first one (GRASS's probe steps are never counted).

Printed and written as JSON (``benchmarks/results/<timestamp>.json`` or ``--out``): tokens/s,
median step time, the loop's byte accounting (params, peak grads, optimizer state on device/host)
next to the memory model's prediction, the peak gradient bytes held during backward (measured in
post-accumulate-grad hooks: for GRASS's probe it should be about one tensor, not all layers),
ratios to full fine-tuning and to LISA, and GRASS's step-time overhead over LISA outside the
probe. On CUDA also ``torch.cuda.max_memory_allocated`` per phase (probe / update).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from grass.measure import fix_malloc  # noqa: E402
from grass.memory.model import GIB, predict  # noqa: E402

# benchmark key -> (method name, config overrides, memory-model kwargs)
SETUPS = {
    "full": ("full", [], {}),
    "lora": ("lora", [], {}),
    "dora": ("dora", [], {}),
    "lisa": ("lisa", ["method.state_policy=reset"], {"state_policy": "reset"}),
    "lisa-offload": ("lisa", ["method.state_policy=offload"], {"state_policy": "offload"}),
    # GRASS's default offload: 64 MiB chunks (at most one layer each), state in the weights' dtype
    "grass-offload": ("grass", ["method.state_policy=offload"], {"state_policy": "offload"}),
    "grass-reset": ("grass", ["method.state_policy=reset"], {"state_policy": "reset"}),
    # fp32 moments + fp32 masters for bf16 weights: 3x the bytes on the wire and in host memory
    "grass-offload-fp32": ("grass", ["method.state_policy=offload", "method.offload_fp32_state=true"],
                           {"state_policy": "offload", "offload_fp32_state": True}),
    # whole layers cached on the device (+ a slot each for embeddings and head): state moves only at
    # switches, more device memory (the default before issue 15 also had fp32 state: -whole-fp32)
    "grass-offload-whole": ("grass", ["method.state_policy=offload", "method.offload_chunk_mb=null"],
                            {"state_policy": "offload", "offload_chunk_mb": None}),
    "grass-offload-whole-fp32": ("grass", ["method.state_policy=offload", "method.offload_chunk_mb=null",
                                           "method.offload_fp32_state=true"],
                                 {"state_policy": "offload", "offload_chunk_mb": None, "offload_fp32_state": True}),
}
DEFAULT_METHODS = "full,lora,dora,lisa,grass-offload,grass-reset"
WORDS = ("the model learns which layers matter most for the task and trains only a few of them at a time "
         "while the optimizer state of the others waits in host memory until they are drawn again").split()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma list of {', '.join(SETUPS)}")
    p.add_argument("--steps", type=int, default=25, help="optimizer steps per run (GRASS probe included)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--probe-steps", type=int, default=5)
    p.add_argument("--switch-every", type=int, default=10)
    p.add_argument("--n-active-layers", type=int, default=2)
    p.add_argument("--refresh-every", type=int, default=None, help="GRASS's MGN refresh period (default: --switch-every)")
    p.add_argument("--probe-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                   help="GRASS's probe recomputes blocks in backward (default, as method.probe_checkpointing); "
                        "runs that predate the field ran without it")
    p.add_argument("--init", default="pretrained", choices=("pretrained", "random"),
                   help="model.init: random = same architecture, random weights (memory and speed only)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="model weights dtype")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="autocast (train.precision)")
    p.add_argument("--grad-ckpt", action="store_true")
    p.add_argument("--rounds", type=int, default=2, help="rounds over the methods, alternating order")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (0 = torch's default). 1 by default: on a small shared machine "
                        "spinning OpenMP threads can make a step many times slower")
    p.add_argument("--dynamic-malloc", action="store_true",
                   help="leave glibc's dynamic mmap threshold on (default on a CPU: fixed, see grass.measure.fix_malloc)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/<timestamp>.json)")
    return p.parse_args(argv)


class GradPeak:
    """Peak bytes of gradients alive at once during backward, per step (probe vs update).

    Installed on the method instance the loop builds (its ``build_optimizer`` is wrapped), so the
    loop itself is untouched. Each post-accumulate-grad hook runs after the method's own hooks
    (GRASS's probe hook frees the gradient at once), so the bytes held at that moment are the
    other live gradients plus the one just produced.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.live: dict[int, torch.Tensor] = {}
        self.step_peak = 0
        self.probe_peak = 0
        self.update_peak = 0
        self.cuda_probe_peak = None
        self._in_probe = False
        self.cpu_s: dict[int, float] = {}  # step -> process CPU seconds from on_step_start to stats()
        self._cpu0: tuple[int, float] | None = None

    def install(self, method_cls):
        tracker, orig = self, method_cls.build_optimizer

        def build_optimizer(method, model):
            opt = orig(method, model)
            tracker._attach(method, model)
            return opt

        return _patched(method_cls, "build_optimizer", build_optimizer)

    def _attach(self, method, model):
        # Hooks go on every parameter the method may ever train (requires_grad flips over time).
        for p in {id(q): q for q in model.parameters()}.values():
            was = p.requires_grad
            p.requires_grad_(True)
            p.register_post_accumulate_grad_hook(self._hook)
            p.requires_grad_(was)
        start, stats = method.on_step_start, method.stats

        def on_step_start(step):
            self._close_step()
            self._cpu0 = (step, time.process_time())
            start(step)
            probe = not method.is_update_step(step)
            if self._in_probe and not probe and self.device.type == "cuda":
                self.cuda_probe_peak = torch.cuda.max_memory_allocated(self.device)
                torch.cuda.reset_peak_memory_stats(self.device)
            self._in_probe = probe

        def method_stats():
            # The loop calls stats() right after the timed part of a step (speed.stop): the end of
            # the step's CPU-time window. CPU time of a 1-thread run does not count the time other
            # processes hold the core, so it compares methods fairly on a shared machine.
            if self._cpu0 is not None:
                self.cpu_s[self._cpu0[0]] = time.process_time() - self._cpu0[1]
                self._cpu0 = None
            return stats()

        method.on_step_start = on_step_start
        method.stats = method_stats

    def _hook(self, p: torch.Tensor) -> None:
        size = p.numel() * p.element_size()
        held = size + sum(q.grad.numel() * q.grad.element_size() for k, q in self.live.items()
                          if k != id(p) and q.grad is not None)
        self.step_peak = max(self.step_peak, held)
        if p.grad is not None:
            self.live[id(p)] = p
        self.live = {k: q for k, q in self.live.items() if q.grad is not None}

    def _close_step(self):
        if self._in_probe:
            self.probe_peak = max(self.probe_peak, self.step_peak)
        else:
            self.update_peak = max(self.update_peak, self.step_peak)
        self.step_peak = 0
        self.live = {}


@contextlib.contextmanager
def _patched(cls, name, fn):
    had = name in cls.__dict__
    old = cls.__dict__.get(name)
    setattr(cls, name, fn)
    try:
        yield
    finally:
        if had:
            setattr(cls, name, old)
        else:
            delattr(cls, name)


def write_data(path: Path, n: int = 64) -> None:
    """Examples long enough that every one is truncated to seq_len: fixed tokens per step."""
    recs = []
    for i in range(n):
        words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(1200)]
        recs.append({"instruction": f"Continue the text, part {i}.", "input": "", "output": " ".join(words)})
    path.write_text(json.dumps(recs))


def overrides(key: str, args, data: Path, runs_dir: Path, round_idx: int, device: torch.device) -> list[str]:
    """The ``grass train`` overrides of one benchmark run of setup ``key``."""
    method, extra, _ = SETUPS[key]
    ov = [f"model.name={args.model}", f"model.dtype={args.dtype}", f"model.init={args.init}", f"method.name={method}",
          f"train.max_steps={args.steps}", f"train.seq_len={args.seq_len}", f"train.batch_size={args.batch}",
          f"train.precision={args.precision}", f"train.device={device}", f"train.gradient_checkpointing={args.grad_ckpt}",
          f"data.train={data}", "log.wandb=disabled", f"log.runs_dir={runs_dir}", f"log.experiment=r{round_idx}",
          *extra]
    if method in ("lisa", "grass"):
        ov += [f"method.n_active_layers={args.n_active_layers}", f"method.switch_every={args.switch_every}"]
    if method == "grass":
        ov += [f"method.probe_steps={args.probe_steps}", f"method.refresh_every={args.refresh_every or args.switch_every}",
               f"method.probe_checkpointing={args.probe_checkpointing}"]
    return ov


def run_one(key: str, args, data: Path, runs_dir: Path, round_idx: int, device: torch.device) -> dict:
    from grass.config import load_config, to_dict
    from grass.registry import get_method
    from grass.train import train

    method = SETUPS[key][0]
    cfg = load_config(None, overrides(key, args, data, runs_dir, round_idx, device))
    grads = GradPeak(device)
    t0 = time.time()
    with grads.install(get_method(method)):
        result = train(cfg, progress=False)
    grads._close_step()
    rows = [json.loads(x) for x in (Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    updates = [r for r in rows if r["updated"]]
    counted = updates[1:]  # the loop's rule: the first update step is warm-up
    probe = [r for r in rows if not r["updated"]]
    out = {"key": key, "round": round_idx, "wall_s": time.time() - t0,
           "tokens_per_s": result["speed/tokens_per_s"], "step_time_s_median": result["speed/step_time_s_median"],
           "step_times_s": [r["step_time_s"] for r in counted], "tokens": [r["tokens"] for r in counted],
           "step_cpu_s": [grads.cpu_s[r["step"]] for r in counted if r["step"] in grads.cpu_s],
           "probe_step_times_s": [r["step_time_s"] for r in probe],
           "bytes": {k: round(result[f"mem/{k}_gib"] * GIB) for k in
                     ("params", "grads", "optimizer_state_device", "optimizer_state_host")},
           "grad_peak_during_backward": {"probe": grads.probe_peak if probe else None, "update": grads.update_peak},
           "active_layers": sorted({i for r in updates for i in r.get("active_layers", [])}),
           "final_loss": result["train/final_loss"],
           "offload_mib_per_step": _traffic(updates),
           # the whole resolved config and precision, so a comparison can check it ran another's config
           "config": to_dict(cfg), "train/precision": result["train/precision"]}
    if device.type == "cuda":
        peak = result["mem/peak_device_gib"]  # after the probe the loop's peak covers the update phase only
        out["cuda_max_memory_allocated"] = {"probe": grads.cuda_probe_peak,
                                            "update": None if peak is None else round(peak * GIB)}
    return out


def _traffic(updates: list[dict]) -> dict | None:
    """Offload engine's state traffic per counted step (MiB host->device / device->host), or None."""
    if len(updates) < 2 or "offload/h2d_mib" not in updates[-1]:
        return None
    n = len(updates) - 1
    return {d: (updates[-1][f"offload/{d}_mib"] - updates[0][f"offload/{d}_mib"]) / n for d in ("h2d", "d2h")}


def summarize(keys, runs, args, device) -> dict:
    s = {}
    for key in keys:
        rs = [r for r in runs if r["key"] == key]
        times = [t for r in rs for t in r["step_times_s"]]
        toks = sum(sum(r["tokens"]) for r in rs)
        med = statistics.median(times) if times else float("nan")
        cpu = [t for r in rs for t in r["step_cpu_s"]]
        kw = SETUPS[key][2]
        pred = predict(args.model, SETUPS[key][0], precision="fp32" if args.dtype == "float32" else "bf16",
                       seq_len=args.seq_len, batch=args.batch, grad_ckpt=args.grad_ckpt,
                       n_active_layers=args.n_active_layers, device=device.type, **kw)
        b = rs[-1]["bytes"]
        predicted = {"params": pred.weights, "grads": pred.grads, "optimizer_state_device": pred.optimizer_device,
                     "optimizer_state_host": pred.optimizer_host}
        s[key] = {"step_time_s_median": med, "tokens_per_s": toks / sum(times) if times else 0.0,
                  "step_cpu_s_median": statistics.median(cpu) if cpu else None,
                  "tokens_per_cpu_s": toks / sum(cpu) if cpu and len(cpu) == len(times) else None,
                  "round_medians_s": [statistics.median(r["step_times_s"]) for r in rs if r["step_times_s"]],
                  "probe_step_time_s_median": (statistics.median([t for r in rs for t in r["probe_step_times_s"]])
                                               if rs[0]["probe_step_times_s"] else None),
                  "bytes": b, "predicted_bytes": predicted, "prediction_exact": b == predicted,
                  "predicted_activations": pred.activations,
                  "grad_peak_during_backward": rs[-1]["grad_peak_during_backward"],
                  "layer_grads_bytes": pred.details.get("layer_grads"),
                  "cuda_max_memory_allocated": rs[-1].get("cuda_max_memory_allocated"),
                  "offload_mib_per_step": rs[-1].get("offload_mib_per_step")}
    return s


def ratios(s: dict) -> dict:
    out = {}
    for base in ("full", "lisa"):
        if base in s:
            out[f"vs_{base}"] = {k: {"tokens_per_s": v["tokens_per_s"] / s[base]["tokens_per_s"],
                                     "step_time": v["step_time_s_median"] / s[base]["step_time_s_median"],
                                     "tokens_per_cpu_s": _div(v["tokens_per_cpu_s"], s[base]["tokens_per_cpu_s"]),
                                     "step_cpu": _div(v["step_cpu_s_median"], s[base]["step_cpu_s_median"])}
                                 for k, v in s.items()}
    if "lisa" in s:
        out["grass_step_overhead_vs_lisa"] = {k: s[k]["step_time_s_median"] / s["lisa"]["step_time_s_median"] - 1
                                              for k in s if k.startswith("grass")}
        out["grass_cpu_overhead_vs_lisa"] = {k: _div(s[k]["step_cpu_s_median"], s["lisa"]["step_cpu_s_median"], -1)
                                             for k in s if k.startswith("grass")}
        out["grass_round_overhead_vs_lisa"] = {k: _paired_rounds(s[k]["round_medians_s"], s["lisa"]["round_medians_s"])
                                               for k in s if k.startswith("grass")}
    return out


def _paired_rounds(method: list[float], lisa: list[float]) -> dict:
    """``method / lisa - 1`` of the median step time, paired round by round (a round runs every
    method once, in alternating order, so slow spells of a shared machine hit both), with the mean,
    its standard error and the 95% interval (:class:`analysis.verdicts.Paired`'s rule)."""
    from analysis.verdicts import Paired

    diffs = [m / b - 1 for m, b in zip(method, lisa)]
    if len(diffs) < 2:
        return {"diffs": diffs, "mean": diffs[0] if diffs else None, "se": None, "margin": None}
    rel = Paired("grass", "lisa", "step time", "benchmark", list(range(len(diffs))), diffs)
    return {"diffs": diffs, "mean": rel.mean, "se": rel.se, "margin": rel.margin}


def _div(a, b, shift=0.0):
    return None if a is None or not b else a / b + shift


def print_report(s, r, args, device) -> None:
    mb = 2 ** 20
    print(f"\n{args.model}{' (random weights)' if args.init == 'random' else ''} seq {args.seq_len} x batch {args.batch}, {args.dtype}/{args.precision}, {args.steps} steps x "
          f"{args.rounds} rounds, device {device}, threads {torch.get_num_threads()}, malloc {args.malloc}")
    print(f"{'method':<22}{'tok/s':>9}{'step s':>9}{'x full':>8}{'x lisa':>8}{'cpu s':>8}{'xfull':>7}{'xlisa':>7}"
          f"{'params MiB':>11}{'grads MiB':>10}"
          f"{'opt dev':>9}{'opt host':>9}{'=model':>7}{'bwd grad peak MiB':>21}")
    for k, v in s.items():
        b, g = v["bytes"], v["grad_peak_during_backward"]
        gp = f"{g['update'] / mb:.1f}" + (f" (probe {g['probe'] / mb:.2f})" if g.get("probe") is not None else "")
        xf = r.get("vs_full", {}).get(k, {}).get("tokens_per_s", float("nan"))
        xl = r.get("vs_lisa", {}).get(k, {}).get("tokens_per_s", float("nan"))
        cf = r.get("vs_full", {}).get(k, {}).get("tokens_per_cpu_s") or float("nan")
        cl = r.get("vs_lisa", {}).get(k, {}).get("tokens_per_cpu_s") or float("nan")
        cs = v["step_cpu_s_median"] if v["step_cpu_s_median"] is not None else float("nan")
        print(f"{k:<22}{v['tokens_per_s']:>9.1f}{v['step_time_s_median']:>9.3f}{xf:>8.2f}{xl:>8.2f}"
              f"{cs:>8.3f}{cf:>7.2f}{cl:>7.2f}"
              f"{b['params'] / mb:>11.1f}{b['grads'] / mb:>10.1f}{b['optimizer_state_device'] / mb:>9.1f}"
              f"{b['optimizer_state_host'] / mb:>9.1f}{'yes' if v['prediction_exact'] else 'NO':>7}{gp:>21}")
    for k, o in r.get("grass_step_overhead_vs_lisa", {}).items():
        print(f"{k} median step time vs lisa outside the probe: {o * 100:+.1f}%  (round medians: "
              f"{', '.join(f'{x:.3f}' for x in s[k]['round_medians_s'])} vs lisa "
              f"{', '.join(f'{x:.3f}' for x in s['lisa']['round_medians_s'])})")
    for k, o in r.get("grass_cpu_overhead_vs_lisa", {}).items():
        if o is not None:
            print(f"{k} median step CPU time vs lisa outside the probe: {o * 100:+.1f}%")
    for k, o in r.get("grass_round_overhead_vs_lisa", {}).items():
        if o["se"] is not None:
            print(f"{k} / lisa - 1, median step time paired by round: {o['mean'] * 100:+.2f}% ± {o['se'] * 100:.2f}% "
                  f"s.e. over {len(o['diffs'])} rounds (95% interval {(o['mean'] - o['margin']) * 100:+.2f}% to "
                  f"{(o['mean'] + o['margin']) * 100:+.2f}%)")
        if s[k]["probe_step_time_s_median"] is not None:
            print(f"{k} probe step (every block's backward, no update): median {s[k]['probe_step_time_s_median']:.3f} s")
    for k, v in s.items():
        c = v.get("cuda_max_memory_allocated")
        if c:
            print(f"{k}: cuda max_memory_allocated " + ", ".join(f"{ph} {x / GIB:.2f} GiB" for ph, x in c.items() if x))
    for k, v in s.items():
        t = v.get("offload_mib_per_step")
        if t:
            print(f"{k}: offloaded state moved per step (switch every {args.switch_every}): "
                  f"{t['h2d']:.1f} MiB host->device, {t['d2h']:.1f} MiB device->host")
    if any(v["layer_grads_bytes"] for v in s.values()):
        lg = next(v["layer_grads_bytes"] for v in s.values() if v["layer_grads_bytes"])
        print(f"(one decoder layer's gradients: {lg / mb:.1f} MiB)")


def main(argv=None) -> int:
    args = parse_args(argv)
    keys = [k.strip() for k in args.methods.split(",") if k.strip()]
    bad = [k for k in keys if k not in SETUPS]
    if bad:
        print(f"error: unknown method key(s) {', '.join(bad)}; valid: {', '.join(SETUPS)}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    from grass.train import resolve_device

    device = resolve_device(args.device)
    args.malloc = "dynamic" if args.dynamic_malloc or device.type != "cpu" else fix_malloc()
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="grass-bench-") as tmp:
        data = Path(tmp) / "bench.json"
        write_data(data)
        for rnd in range(args.rounds):
            order = keys if rnd % 2 == 0 else keys[::-1]
            for key in order:
                r = run_one(key, args, data, Path(tmp) / "runs", rnd, device)
                print(f"round {rnd} {key}: median step {statistics.median(r['step_times_s']):.3f} s, "
                      f"{r['wall_s']:.0f} s wall", flush=True)
                runs.append(r)
                # after every run, so a time limit or a crash keeps what was measured
                _write(out, args, device, keys, runs, complete=False)
    s, r = _write(out, args, device, keys, runs, complete=True)
    print_report(s, r, args, device)
    print(f"wrote {out}")
    return 0


def _write(out: Path, args, device, keys, runs, complete: bool):
    """Summarize the runs so far and write the JSON record atomically; return (summary, ratios)."""
    done = [k for k in keys if any(r["key"] == k for r in runs)]
    s = summarize(done, runs, args, device)
    r = ratios(s)
    record = {"args": vars(args), "complete": complete, "device": str(device), "threads": torch.get_num_threads(),
              "load_avg": os.getloadavg(), "git_sha": _git_sha(), "torch": torch.__version__,
              "platform": platform.platform(),
              "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "summary": s, "ratios": r, "runs": runs}
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, out)
    return s, r


def _git_sha() -> str | None:
    try:
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
