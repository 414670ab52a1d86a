"""Does stopping generation at the template's next block save time without changing a response?

The paper's protocol cuts each response where the model starts a new '### ' block
(:func:`grass.eval.protocol._cut`); :class:`grass.eval.protocol.StopAtNextBlock` stops the row
there instead of generating the rest of the budget. This script generates the same items twice,
side by side in one process, without and with the stop (after one untimed warm-up batch), and
prints both times, their ratio, and how many responses differ (it must be 0). Writes the JSON to
``--out``.

    python scripts/benchmark_generation_stop.py                         # base SmolLM2, 32 GSM8K items
    python scripts/benchmark_generation_stop.py --weights RUN/checkpoint/weights.pt --limit 64

``--weights`` takes the trained parameters of a full-parameter run in progress (its periodic
checkpoint; a finished run keeps no checkpoint, and a LoRA checkpoint holds adapter parameters).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from grass.data import load_benchmark
from grass.checkpoint import copy_weights
from grass.errors import GrassError
from grass.eval.protocol import generate
from grass.models.load import load_model
from grass.results import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--weights", type=Path, help="a checkpoint's weights.pt to load over the model (a trained run)")
    ap.add_argument("--benchmark", default="gsm8k")
    ap.add_argument("--limit", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/generation_stop.json"))
    args = ap.parse_args(argv)
    if args.weights is not None and not args.weights.is_file():
        print(f"--weights {args.weights}: no such file (give a run's checkpoint/weights.pt)", file=sys.stderr)
        return 2
    if args.limit < 1 or args.batch_size < 1 or args.max_new_tokens < 1:
        print("--limit, --batch-size and --max-new-tokens must be at least 1", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    try:
        model, tok = load_model(args.model)
        items = load_benchmark(args.benchmark, "eval", limit=args.limit)
        if args.weights is not None:
            copy_weights(model, torch.load(args.weights, map_location="cpu", weights_only=True),
                         f"--weights {args.weights} (a full-parameter run's checkpoint of this model)")
        model.eval()
        generate(model, tok, items[:1], batch_size=1, max_new_tokens=2, device="cpu")  # warm-up, untimed
        report = {"model": args.model, "weights": str(args.weights) if args.weights else None,
                  "benchmark": args.benchmark, "items": len(items), "batch_size": args.batch_size,
                  "max_new_tokens": args.max_new_tokens}
        responses = {}
        for stop in (False, True):
            t = time.perf_counter()
            responses[stop] = generate(model, tok, items, batch_size=args.batch_size,
                                       max_new_tokens=args.max_new_tokens, device="cpu", stop_at_next_block=stop)
            report[f"seconds_{'stop' if stop else 'full_budget'}"] = time.perf_counter() - t
    except GrassError as e:
        print(e, file=sys.stderr)
        return 2
    report["speedup"] = report["seconds_full_budget"] / report["seconds_stop"]
    report["responses_differing"] = sum(a != b for a, b in zip(responses[False], responses[True]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"{report['items']} {args.benchmark} items, batch {args.batch_size}, {args.max_new_tokens} new tokens: "
          f"full budget {report['seconds_full_budget']:.1f} s, stop at the next block {report['seconds_stop']:.1f} s "
          f"(x{report['speedup']:.2f}); responses differing: {report['responses_differing']}")
    return 1 if report["responses_differing"] else 0


if __name__ == "__main__":
    sys.exit(main())
