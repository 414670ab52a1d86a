"""Paper-style tables from a :class:`~analysis.collect.Collection`: accuracy, efficiency, paper vs ours.

Each builder returns a :class:`~analysis.table_format.Table` (or None when the experiment has no
data for it); :func:`write_tables` writes them all as one markdown file and one LaTeX file each.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis import paper
from analysis.collect import Collection, groups, label, memory_gib
from analysis.table_format import MISSING, Cell, Table, to_latex, to_markdown

BENCHMARK_NAMES = {
    "boolq": "BoolQ", "piqa": "PIQA", "siqa": "SIQA", "social_iqa": "SIQA", "hellaswag": "HellaSwag",
    "winogrande": "WinoGrande", "arc_e": "ARC-e", "arc_easy": "ARC-e", "arc_c": "ARC-c",
    "arc_challenge": "ARC-c", "obqa": "OBQA", "openbookqa": "OBQA", "gsm8k": "GSM8K", "addsub": "AddSub",
    "multiarith": "MultiArith", "singleeq": "SingleEq", "svamp": "SVAMP", "aqua": "AQuA",
}
# (result key, column header, formatter) of the efficiency table.
EFFICIENCY = (
    ("mem/peak_device_gib", "Peak device (GiB)", "{:.3g}"),
    ("mem/optimizer_state_device_gib", "Opt. state device (GiB)", "{:.3g}"),
    ("mem/optimizer_state_host_gib", "Opt. state host (GiB)", "{:.3g}"),
    ("speed/tokens_per_s", "Tokens/s", "{:,.0f}"),
    ("speed/step_time_s_median", "Step time (s)", "{:.3g}"),
    ("params/trainable", "Trainable params", "params"),
)


def _params(n: float) -> str:
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{suffix}"
    return f"{n:.0f}"


def _benchmarks(runs: pd.DataFrame, prefix: str) -> list[str]:
    """``prefix<benchmark>`` columns holding data, in the order the runs' eval config lists them."""
    cols = [c for c in runs.columns if c.startswith(prefix) and c != f"{prefix}avg" and runs[c].notna().any()]
    order: list[str] = []
    for v in runs.get("cfg.eval.benchmarks", pd.Series(dtype=object)).dropna():
        order += [b for b in json.loads(v) if b not in order]
    return sorted(cols, key=lambda c: (order.index(c[len(prefix):]) if c[len(prefix):] in order else len(order), c))


def _mean_std(values: pd.Series, digits: int) -> tuple[float | None, str]:
    """Mean (for ranking) and ``mean ± std`` text (sample std; mean alone for one value)."""
    v = values.dropna().astype(float)
    if v.empty:
        return None, MISSING
    if len(v) == 1:
        return round(v.iloc[0], digits), f"{v.iloc[0]:.{digits}f}"
    return round(v.mean(), digits), f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _mark_best(cells: list[Cell], means: list[float | None]) -> None:
    """Bold the best (highest) mean and underline the second; ties share the mark.

    The second is marked only among three or more values: with two it is just the worst.
    """
    present = sorted({m for m in means if m is not None}, reverse=True)
    if len(present) < 2:
        return
    styles = {present[0]: "best"}
    if len([m for m in means if m is not None]) >= 3:
        styles[present[1]] = "second"
    for cell, m in zip(cells, means):
        cell.style = styles.get(m)


def _row_keys(coll: Collection) -> tuple[list[str], bool]:
    multi_task = coll.runs["task"].nunique() > 1
    return (["Model", "Task", "Method", "n"] if multi_task else ["Model", "Method", "n"]), multi_task


def _align(lead: list[str], n_values: int) -> str:
    """Text columns left, the run count ``n`` and the values right."""
    return "l" * (len(lead) - 1) + "r" * (1 + n_values)


def _lead(key: tuple, rows: pd.DataFrame, multi_task: bool) -> list[Cell | str]:
    method, model, task, variant = key
    marked = bool(rows["state"].ne("ok").any())
    return [str(model)] + ([str(task)] if multi_task else []) + [label(method, variant, marked), str(len(rows))]


def accuracy_table(coll: Collection, prefix: str = "acc/", digits: int = 2) -> Table | None:
    """Accuracy (%) per method and model, one column per benchmark plus the average.

    Cells are mean ± std over the runs (seeds) of the row; within each model (and task) the best
    mean is bold and the second underlined. None if no run recorded an accuracy under ``prefix``.
    """
    runs = coll.runs
    cols = _benchmarks(runs, prefix) + ([f"{prefix}avg"] if runs.get(f"{prefix}avg", pd.Series()).notna().any()
                                        else [])
    if not cols:
        return None
    lead, multi_task = _row_keys(coll)
    names = [c[len(prefix):] for c in cols]
    header = lead + ["Avg" if n == "avg" else BENCHMARK_NAMES.get(n, n) for n in names]
    rows, block_of, means = [], [], []
    for key, g in groups(runs):
        ms, cells = zip(*(_mean_std(g[c], digits) for c in cols))
        rows.append(_lead(key, g, multi_task) + [Cell(t) for t in cells])
        means.append(ms)
        block_of.append((key[1], key[2]))
    for j in range(len(cols)):
        for block in dict.fromkeys(block_of):
            idx = [i for i, b in enumerate(block_of) if b == block]
            _mark_best([rows[i][len(lead) + j] for i in idx], [means[i][j] for i in idx])
    kind = "lm-eval log-likelihood accuracy" if prefix == "acc_lmeval/" else "Accuracy"
    notes = [f"{kind} (%), mean ± std over the n runs (seeds) of each row; best per model in bold, "
             "second underlined."]
    unparsed = unparsed_note(coll, "eval_lmeval/unparsed/" if prefix == "acc_lmeval/" else "eval/unparsed/")
    return Table("accuracy_lmeval" if prefix == "acc_lmeval/" else "accuracy",
                 f"{kind} (%) on {coll.experiment}", header, rows, _align(lead, len(cols)),
                 notes + [n for n in [unparsed, coll.footnote()] if n])


def unparsed_note(coll: Collection, prefix: str = "eval/unparsed/") -> str | None:
    """A note on the answers that could not be extracted (scored wrong): e.g. ``PIQA 92`` (% of
    items), or ``PIQA 3–92`` when the rows (method, model) differ.

    A low accuracy is often answers in a form the protocol does not parse, not wrong answers; the
    note says where that happened. None when no run recorded the share (runs from before it was
    recorded; log-likelihood scoring, which always picks an option).
    """
    cols = _benchmarks(coll.runs, prefix)
    if not cols:
        return None
    parts = []
    for col in cols:
        means = [m for m in (g[col].dropna().astype(float).mean() for _, g in groups(coll.runs)) if not pd.isna(m)]
        lo, hi = min(means), max(means)
        if hi > 0:
            span = f"{lo:.0f}" + (f"–{hi:.0f}" if round(hi) != round(lo) else "")
            parts.append(f"{BENCHMARK_NAMES.get(col[len(prefix):], col[len(prefix):])} {span}")
    if not parts:
        return "Unparsed answers: none."
    return ("Unparsed answers (no answer could be extracted: scored wrong), % of items, mean per row (range over "
            "the rows): " + ", ".join(parts) + ".")


def efficiency_table(coll: Collection) -> Table:
    """Memory, speed and trainable parameters per method, each relative to full fine-tuning (×)."""
    runs = coll.runs
    lead, multi_task = _row_keys(coll)
    metrics = [m for m in EFFICIENCY if m[0] in runs and runs[m[0]].notna().any()]
    rows = []
    for key, g in groups(runs):
        block = runs[(runs["model"] == key[1]) & (runs["task"] == key[2]) & (runs["method"] == "full")]
        ref = block[block["variant"] == ""] if (block["variant"] == "").any() else block
        row = _lead(key, g, multi_task)
        for col, _, fmt in metrics:
            v = g[col].dropna().astype(float)
            if v.empty:
                row.append(MISSING)
                continue
            text = _params(v.mean()) if fmt == "params" else fmt.format(v.mean())
            base = ref[col].dropna().astype(float).mean() if not ref.empty else float("nan")
            row.append(f"{text} ({v.mean() / base:.2f}×)" if base > 0 else text)
        rows.append(row)
    notes = ["Means over the n runs of each row; (×) is relative to full fine-tuning of the same model."]
    if any(m[0] == "speed/tokens_per_s" for m in metrics) and any(m[0] == "speed/step_time_s_median" for m in metrics):
        notes.append("Tokens/s is all tokens over all timed steps (slow steps count); step time is the median step, "
                     "so the two need not agree on a noisy machine.")
    peak = runs.get("mem/peak_device_gib", pd.Series(dtype=float))
    if peak.isna().all():
        notes.append("No peak device memory column: CUDA records the peak and these runs were on CPU.")
    elif peak.isna().any():
        notes.append("Peak device memory is measured on CUDA only: – marks CPU runs.")
    return Table("efficiency", f"Efficiency on {coll.experiment}", lead + [m[1] for m in metrics], rows,
                 _align(lead, len(metrics)), notes + [n for n in [coll.footnote()] if n])


def _budget(runs: pd.DataFrame) -> str:
    """A model's training budget in words, e.g. ``tiny-llama: 60 steps, batch 4, seq 128``."""
    r = runs.iloc[0]
    parts = [f"{r.get('cfg.train.max_steps'):.0f} steps" if pd.notna(r.get("cfg.train.max_steps")) else None,
             f"batch {r.get('cfg.train.batch_size'):.0f}" if pd.notna(r.get("cfg.train.batch_size")) else None,
             f"seq {r.get('cfg.train.seq_len'):.0f}" if pd.notna(r.get("cfg.train.seq_len")) else None]
    return f"{r['model']}: " + (", ".join(p for p in parts if p) or "budget not recorded")


def _ours(runs: pd.DataFrame, key: str) -> str:
    """Our measurement closest to the paper figure ``key`` on one model's runs, as text."""
    mem, mem_label = memory_gib(runs)
    unit = "GiB peak" if mem_label.startswith("peak") else "GiB w+g+opt"
    by_method = mem.groupby(runs["method"]).mean()
    acc = runs.groupby("method")["acc/avg"].mean() if "acc/avg" in runs else pd.Series(dtype=float)
    if key.startswith("peak_mem/"):
        m = key.split("/")[1]
        return f"{by_method[m]:.3g} {unit}" if m in by_method else MISSING
    if key.startswith("ratio/"):
        a, b = key.split("/")[1:]
        return f"{by_method[a] / by_method[b]:.2f}×" if a in by_method and b in by_method and by_method[b] else MISSING
    if key.startswith("extra_mem/"):
        layerwise = runs[runs["method"].isin(["lisa", "grass"])]
        pol = layerwise.get("cfg.method.state_policy")
        if pol is None or pol.isna().all():
            return MISSING
        want = pol.eq("offload") if key.endswith("/offload") else pol.ne("offload")
        v = layerwise.loc[want, "mem/optimizer_state_device_gib"].dropna() \
            if "mem/optimizer_state_device_gib" in layerwise else pd.Series(dtype=float)
        return f"{v.mean():.3g} GiB opt. state on device" if not v.empty else MISSING
    others = acc.drop("grass", errors="ignore").dropna()
    if key == "acc_gain_over_best_baseline":
        if "grass" not in acc or pd.isna(acc["grass"]) or others.empty:
            return MISSING
        return f"{acc['grass'] - others.max():+.2f} points vs {others.idxmax()}"
    if key == "mem_reduction":
        if "grass" not in by_method or "lisa" not in by_method or not by_method["lisa"]:
            return MISSING
        return f"{100 * (1 - by_method['grass'] / by_method['lisa']):.1f}% vs lisa"
    raise KeyError(key)


def paper_table(coll: Collection) -> Table:
    """The paper's published figures beside the closest of ours, per model we ran.

    The two are different models and budgets (labelled so); ratios show whether the direction holds.
    """
    quotes = [(f.key, f.quantity, ("≈" if f.approx else "") + f"{f.value:g}{'' if f.unit == '%' else ' '}{f.unit}",
               f.models,
               f.source.removeprefix(paper.PAPER + ", ")) for f in paper.FIGURES]
    lisa, full, grass = (paper.figure(f"peak_mem/{m}").value for m in ("lisa", "full", "grass"))
    quotes[4:4] = [("ratio/grass/full", "peak memory, GRASS / full", f"{grass / full:.2f}×", "LLaMA2-7B",
                    "derived from Table 4"),
                   ("ratio/grass/lisa", "peak memory, GRASS / LISA", f"{grass / lisa:.2f}×", "LLaMA2-7B",
                    "derived from Table 4")]
    per_model = list(coll.runs.groupby("model", sort=False))
    rows = [[q, value, models, where] + [_ours(runs, key) for _, runs in per_model]
            for key, q, value, models, where in quotes]
    notes = [f"Paper: {paper.PAPER}, as published (GB) on {', '.join(paper.PAPER_MODELS)}. Ours: this "
             "experiment's runs (GiB) on different, much smaller models and training budgets, so only "
             "ratios and directions are comparable, not the values.",
             "Our budgets: " + "; ".join(_budget(runs) for _, runs in per_model) + ".",
             "GiB w+g+opt = weights + gradients + optimizer state on device, shown where no CUDA peak exists."]
    return Table("paper_vs_ours", f"Paper (published) vs ours ({coll.experiment}): different models and budgets",
                 ["Quantity", "Paper", "Paper model(s)", "Paper source"] + [f"Ours: {m}" for m, _ in per_model],
                 rows, "lrll" + "r" * len(per_model), notes + [n for n in [coll.footnote()] if n])


def build_tables(coll: Collection) -> list[Table]:
    """Every table the experiment has data for, in report order."""
    tables = [accuracy_table(coll), accuracy_table(coll, "acc_lmeval/"), efficiency_table(coll), paper_table(coll)]
    return [t for t in tables if t is not None]


def write_tables(tables: list[Table], out_dir: str | Path) -> list[Path]:
    """Write ``tables.md`` (all tables) and ``<name>.tex`` per table; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "tables.md"]
    paths[0].write_text("\n".join(to_markdown(t) for t in tables))
    for t in tables:
        paths.append(out / f"{t.name}.tex")
        paths[-1].write_text(to_latex(t))
    return paths
