"""Which result columns hold benchmark accuracies, in which order, and how tables name them."""
from __future__ import annotations

import json

import pandas as pd

BENCHMARK_NAMES = {
    "boolq": "BoolQ", "piqa": "PIQA", "siqa": "SIQA", "social_iqa": "SIQA", "hellaswag": "HellaSwag",
    "winogrande": "WinoGrande", "arc_e": "ARC-e", "arc_easy": "ARC-e", "arc_c": "ARC-c",
    "arc_challenge": "ARC-c", "obqa": "OBQA", "openbookqa": "OBQA", "gsm8k": "GSM8K", "addsub": "AddSub",
    "multiarith": "MultiArith", "singleeq": "SingleEq", "svamp": "SVAMP", "aqua": "AQuA",
}


def benchmark_name(benchmark: str) -> str:
    """A benchmark's display name (``arc_e`` -> ``ARC-e``; ``avg`` -> ``Avg``)."""
    return "Avg" if benchmark == "avg" else BENCHMARK_NAMES.get(benchmark, benchmark)


def benchmark_columns(runs: pd.DataFrame, prefix: str) -> list[str]:
    """``prefix<benchmark>`` columns holding data, in the order the runs' eval config lists them."""
    cols = [c for c in runs.columns if c.startswith(prefix) and c != f"{prefix}avg" and runs[c].notna().any()]
    order: list[str] = []
    for v in runs.get("cfg.eval.benchmarks", pd.Series(dtype=object)).dropna():
        order += [b for b in json.loads(v) if b not in order]
    return sorted(cols, key=lambda c: (order.index(c[len(prefix):]) if c[len(prefix):] in order else len(order), c))
