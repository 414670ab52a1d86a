"""One optimizer step, LISA's against GRASS's, side by side on one model's real parameter shapes.

LISA updates with torch's AdamW (``grass.optim.adamw``); GRASS, with its default state policy,
with the offload engine (``LayerwiseOffloadAdamW``; on a CPU it moves nothing). Both get the same
random gradients on the embeddings, the final norm and the same two active decoder layers, which
change every period as a switch would. Steps alternate between the two optimizers, so drift in
the machine's speed falls on both; the first step of a period is reported apart, since torch's
AdamW creates the state of newly active layers there.

    python scripts/benchmark_optimizer.py [--model smollm2-135m] [--periods 6] [--steps 5] [--out FILE]

Prints the median step time of each and GRASS / LISA - 1 paired step by step with its 95%
interval; ``--out`` writes them as JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.verdicts import Paired  # noqa: E402
from grass.layers import find_layers  # noqa: E402
from grass.models.load import load_model  # noqa: E402
from grass.optim.offload import LayerwiseOffloadAdamW  # noqa: E402


def measure(model_name: str, periods: int, steps: int, n_active: int = 2) -> dict:
    """Median seconds of an optimizer step per optimizer: within a period and at its first step."""
    torch.manual_seed(0)
    model, _ = load_model(model_name, dtype="float32", init="random" if model_name.startswith("tiny") else "pretrained")
    lmap = find_layers(model)
    layers = [list(layer.parameters()) for layer in lmap.layers]
    always = list({id(p): p for p in [*lmap.embed_params, *lmap.head_params]}.values())
    units = [("embed", always)] + [(f"layer.{i}", ps) for i, ps in enumerate(layers)]
    everything = [p for _, ps in units for p in ps]
    hp = dict(lr=3e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    optimizers = {"lisa": torch.optim.AdamW(everything, **hp),
                  "grass": LayerwiseOffloadAdamW(units, **hp, chunk_mb=None, fp32_state=True)}
    times: dict[str, list[float]] = {f"{k}{s}": [] for k in optimizers for s in ("", "_first")}
    for period in range(periods):
        active = sorted({(7 * period + 3 + 5 * j) % len(layers) for j in range(n_active)})
        for k in range(steps):
            names = list(optimizers) if (period + k) % 2 == 0 else list(reversed(optimizers))
            for name in names:
                for p in everything:
                    p.grad = None
                for p in always + [q for i in active for q in layers[i]]:
                    p.grad = torch.randn_like(p) * 1e-3
                t0 = time.perf_counter()
                optimizers[name].step()
                times[name if k else f"{name}_first"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    return {"model": model_name, "periods": periods, "steps_per_period": steps, "threads": torch.get_num_threads(),
            "median_s": med,
            "paired": {k: _paired(times[f"grass{k}"], times[f"lisa{k}"]) for k in ("", "_first")}, "times_s": times}


def _paired(grass: list[float], lisa: list[float]) -> dict:
    """GRASS / LISA - 1 over the steps paired by period and step: the mean and its 95% interval by
    the verdicts' rule (:class:`analysis.verdicts.Paired`: t(0.975, n-1) standard errors, at least two)."""
    rel = Paired("grass", "lisa", "optimizer step", "benchmark", list(range(len(grass))),
                 [g / l_ - 1 for g, l_ in zip(grass, lisa)])
    return {"n": rel.n, "mean": rel.mean, "ci95": [rel.mean - rel.margin, rel.mean + rel.margin]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--periods", type=int, default=6, help="active sets, one per period")
    p.add_argument("--steps", type=int, default=5, help="optimizer steps per period and optimizer (the first apart)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    a = p.parse_args()
    if a.periods < 1 or a.steps < 2 or a.threads < 1:
        print("error: --periods must be >= 1, --steps >= 2 and --threads >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    r = measure(a.model, a.periods, a.steps)
    m = r["median_s"]
    print(f"{a.model}, {a.periods} periods x {a.steps} steps, {a.threads} thread(s)")
    for label, k in (("within a period:  ", ""), ("first of a period:", "_first")):
        pr = r["paired"][k]
        print(f"  {label} median lisa {1000 * m['lisa' + k]:.1f} ms, grass {1000 * m['grass' + k]:.1f} ms; "
              f"grass / lisa - 1 paired over {pr['n']} steps: {100 * pr['mean']:+.1f}% "
              f"(95% interval {100 * pr['ci95'][0]:+.1f}% to {100 * pr['ci95'][1]:+.1f}%)")
    if a.out:
        Path(a.out).write_text(json.dumps(r, indent=1))
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
