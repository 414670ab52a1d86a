"""Paper-style tables from a :class:`~analysis.collect.Collection`: accuracy, efficiency, paper vs ours.

Each builder returns a :class:`~analysis.table_format.Table` (or None when the experiment has no
data for it); :func:`write_tables` writes them all as one markdown file and one LaTeX file each.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pandas as pd

from analysis import paper
from analysis.collect import PEAK_LABEL, Collection, device_model, groups, label, memory_gib
from analysis.columns import benchmark_columns, benchmark_name
from analysis.estimates import (BEST_RULE, accuracy_estimate, average_estimate, interval_note, loss_estimate,
                                mark_best, separated)
from analysis.paired import paired_table
from analysis.projection import planned_gpu_gib
from analysis.stats import paired_t_p
from analysis.table_format import MISSING, Cell, Table, to_latex, to_markdown

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


def _mark_blocks(rows: list[list], estimates: list[list], blocks: list[tuple], first: int, header: list[str],
                 higher_is_better: bool = True) -> list[str]:
    """Mark the best (and second) per column within each model (and task) block, by
    :func:`~analysis.estimates.mark_best`; return the columns whose best is within noise."""
    noisy = []
    many = len(set(blocks)) > 1
    for j in range(len(estimates[0]) if estimates else 0):
        for block in dict.fromkeys(blocks):
            idx = [i for i, b in enumerate(blocks) if b == block]
            if mark_best([rows[i][first + j] for i in idx], [estimates[i][j] for i in idx], higher_is_better) is False:
                where = f" ({', '.join(str(b) for b in block if b != 'default')})" if many else ""
                noisy.append(header[first + j] + where)
    return noisy


def _best_note(noisy: list[str]) -> str:
    return BEST_RULE + (f" Within noise, so unmarked: {', '.join(noisy)}." if noisy else "")


def _slug(text: str) -> str:
    """``text`` as a file-name and LaTeX-label part (a task may be a path such as ``data/my.jsonl``)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "task"


def kind(table: Table) -> str:
    """What a table shows, without its task: ``accuracy`` for ``accuracy-math`` (see :func:`by_task`)."""
    return table.name.split("-", 1)[0]


def by_task(coll: Collection) -> list[tuple[str | None, Collection]]:
    """``coll`` split by task where its runs span several (each task has its own benchmarks, so one
    accuracy table over all would be mostly empty cells), else ``[(None, coll)]``."""
    tasks = sorted(coll.runs["task"].unique())
    if len(tasks) < 2:
        return [(None, coll)]
    return [(t, dataclasses.replace(coll, frame=coll.frame[coll.frame["task"] == t])) for t in tasks]


def accuracy_table(coll: Collection, prefix: str = "acc/", digits: int = 1, task: str | None = None) -> Table | None:
    """Accuracy (%) per method and model, one column per benchmark plus the average.

    One run: the accuracy and its 95% Wilson interval from the item count (the average: the normal
    approximation of a mean of proportions); seeds: mean ± std. Within each model (and task) the
    best is bold and the second underlined only where :func:`~analysis.estimates.mark_best` can tell
    them apart. None if no run recorded an accuracy under ``prefix``. ``task`` names the one task
    ``coll`` holds (see :func:`by_task`) in the table's title and, after a ``-``, its name.
    """
    runs = coll.runs
    avg = f"{prefix}avg"
    cols = benchmark_columns(runs, prefix) + ([avg] if runs.get(avg, pd.Series()).notna().any() else [])
    if not cols:
        return None
    lead, multi_task = _row_keys(coll)
    header = lead + [benchmark_name(c[len(prefix):]) for c in cols]
    rows, blocks, ests = [], [], []
    for key, g in groups(runs):
        es = [average_estimate(g, prefix) if c == avg else accuracy_estimate(g, c, prefix) for c in cols]
        rows.append(_lead(key, g, multi_task) + [Cell(e.text(digits) if e else MISSING) for e in es])
        ests.append(es)
        blocks.append((key[1], key[2]))
    noisy = _mark_blocks(rows, ests, blocks, len(lead), header)
    kinds = {e.kind for es in ests for e in es if e}
    kind = "lm-eval log-likelihood accuracy" if prefix == "acc_lmeval/" else "Accuracy"
    notes = [interval_note(kinds, f"{kind} (%)", "Wilson, from the item count")]
    if avg in cols and any(es[-1] is not None and es[-1].kind == "ci" for es in ests):
        notes.append("Avg of one run: normal approximation of the mean of independent proportions, "
                     "± 1.96 * sqrt(sum_b p_b (1 - p_b) / n_b) / B over its B benchmarks, with the Agresti-Coull "
                     "p_b = (k_b + 1.92) / (n_b + 3.84) so that 0% or 100% still has a width.")
    notes.append(_best_note(noisy))
    unparsed = unparsed_note(coll, "eval_lmeval/unparsed/" if prefix == "acc_lmeval/" else "eval/unparsed/")
    name = ("accuracy_lmeval" if prefix == "acc_lmeval/" else "accuracy") + (f"-{_slug(task)}" if task else "")
    return Table(name, f"{kind} (%) on {coll.experiment}" + (f", {task}" if task else ""), header, rows,
                 _align(lead, len(cols)),
                 notes + [n for n in [unparsed, coll.footnote()] if n])


def unparsed_note(coll: Collection, prefix: str = "eval/unparsed/") -> str | None:
    """A note on the answers that could not be extracted (scored wrong): e.g. ``PIQA 92`` (% of
    items), or ``PIQA 3–92`` when the rows (method, model) differ.

    A low accuracy is often answers in a form the protocol does not parse, not wrong answers; the
    note says where that happened. None when no run recorded the share (runs from before it was
    recorded; log-likelihood scoring, which always picks an option).
    """
    cols = benchmark_columns(coll.runs, prefix)
    if not cols:
        return None
    parts = []
    for col in cols:
        means = [m for m in (g[col].dropna().astype(float).mean() for _, g in groups(coll.runs)) if not pd.isna(m)]
        lo, hi = min(means), max(means)
        if hi > 0:
            span = f"{lo:.0f}" + (f"–{hi:.0f}" if round(hi) != round(lo) else "")
            parts.append(f"{benchmark_name(col[len(prefix):])} {span}")
    if not parts:
        return "Unparsed answers: none."
    return ("Unparsed answers (no answer could be extracted: scored wrong), % of items, mean per row (range over "
            "the rows): " + ", ".join(parts) + ".")


def heldout_loss_table(coll: Collection, digits: int = 3) -> Table | None:
    """Held-out loss per method and model (lower is better), with the held-out examples and tokens.

    One run: ±1.96 standard errors over examples; seeds: mean ± std. None if no run recorded it.
    """
    runs = coll.runs
    if "loss/heldout" not in runs or runs["loss/heldout"].isna().all():
        return None
    lead, multi_task = _row_keys(coll)
    header = lead + ["Held-out loss", "Examples", "Tokens"]
    rows, blocks, ests = [], [], []
    for key, g in groups(runs):
        e = loss_estimate(g)
        counts = [g[c].dropna().astype(float).mean() if c in g else float("nan")
                  for c in ("loss/heldout_n", "loss/heldout_tokens")]
        rows.append(_lead(key, g, multi_task) + [Cell(e.text(digits) if e else MISSING)]
                    + [f"{c:,.0f}" if pd.notna(c) else MISSING for c in counts])
        ests.append([e])
        blocks.append((key[1], key[2]))
    noisy = _mark_blocks(rows, ests, blocks, len(lead), header, higher_is_better=False)
    kinds = {es[0].kind for es in ests if es[0]}
    notes = [interval_note(kinds, "Held-out loss: token mean over the response tokens of training-data examples "
                                  "that no run trains on (the same examples for every run), lower is better",
                           "± 1.96 standard errors over examples"),
             _best_note(noisy)]
    return Table("heldout", f"Held-out loss on {coll.experiment}", header, rows, _align(lead, 3),
                 notes + [n for n in [coll.footnote()] if n])


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
    devices = sorted(device_model(runs).dropna().unique())
    if len(devices) > 1:
        notes.append(f"These runs ran on {len(devices)} kinds of device ({'; '.join(devices)}): the speed "
                     "columns average over them, so compare speed within one device only.")
    peak = runs.get("mem/peak_device_gib", pd.Series(dtype=float))
    if peak.isna().all():
        notes.append("No peak device memory column: CUDA records the peak and these runs were on CPU.")
    elif peak.isna().any():
        notes.append("Peak device memory is measured on CUDA only: – marks CPU runs.")
    if runs.get("provenance.device", pd.Series(dtype=object)).astype(str).str.startswith("cpu").any():
        notes.append("On a CPU host and device are one memory: the optimizer-state columns count bytes, they are "
                     "not a GPU memory saving; `grass memory --model llama2-7b --method all --seq-len 1024 "
                     "--batch 4 --precision bf16` projects the GPU figures.")
    return Table("efficiency", f"Efficiency on {coll.experiment}", lead + [m[1] for m in metrics], rows,
                 _align(lead, len(metrics)), notes + [n for n in [coll.footnote()] if n])


def _budget(runs: pd.DataFrame) -> str:
    """A model's training budget in words, e.g. ``tiny-llama: 60 steps, batch 4, seq 128``."""
    r = runs.iloc[0]
    parts = [f"{r.get('cfg.train.max_steps'):.0f} steps" if pd.notna(r.get("cfg.train.max_steps")) else None,
             f"batch {r.get('cfg.train.batch_size'):.0f}" if pd.notna(r.get("cfg.train.batch_size")) else None,
             f"seq {r.get('cfg.train.seq_len'):.0f}" if pd.notna(r.get("cfg.train.seq_len")) else None]
    return f"{r['model']}: " + (", ".join(p for p in parts if p) or "budget not recorded")


def _device_gib(runs: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame | None]:
    """Device memory of each of one model's runs, and the plan it came from (None: measured).

    The CUDA peak where runs recorded one; else (CPU runs, whose bytes cannot show offloading, which
    is what the paper's memory figures are about) the planner's total at each run's config.
    """
    mem, mem_label = memory_gib(runs)
    if mem_label == PEAK_LABEL:
        return mem, None
    plan = planned_gpu_gib(runs)
    return plan["total"], plan


def _ours(runs: pd.DataFrame, key: str, mem: pd.Series, planned: pd.DataFrame | None) -> str:
    """Our measurement closest to the paper figure ``key`` on one model's runs, as text.

    ``mem, planned``: :func:`_device_gib` of ``runs``.
    """
    measured = planned is None
    unit = "GiB peak" if measured else "GiB planned"
    by_method = mem.groupby(runs["method"]).mean().dropna()
    # GRASS's accuracy is the paper's GRASS: its GRASS* ablation (mode=static) is not a method to quote
    static = runs.get("cfg.method.mode", pd.Series(None, index=runs.index)).eq("static")
    acc_runs = runs[~static]
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
        if measured:
            v = layerwise.loc[want, "mem/optimizer_state_device_gib"].dropna() \
                if "mem/optimizer_state_device_gib" in layerwise else pd.Series(dtype=float)
        else:
            v = planned.loc[layerwise.index[want.to_numpy()], "optimizer_device"].dropna()
        return f"{v.mean():.3g} GiB opt. state on device{'' if measured else ' (planned)'}" if not v.empty else MISSING
    if key == "acc_gain_over_best_baseline":
        # Accuracies compare only within a task (their benchmarks differ): one gain per task.
        tasks = list(acc_runs.groupby("task")) if "task" in acc_runs else [(None, acc_runs)]
        gains = [(task, _acc_gain(t_runs)) for task, t_runs in tasks]
        gains = [(task, g) for task, g in gains if g is not None]
        if not gains:
            return MISSING
        return "; ".join(f"{task}: {g}" if task is not None and len(tasks) > 1 else g for task, g in gains)
    if key == "mem_reduction":
        if "grass" not in by_method or "lisa" not in by_method or not by_method["lisa"]:
            return MISSING
        return f"{100 * (1 - by_method['grass'] / by_method['lisa']):.1f}% vs lisa"
    raise KeyError(key)


def _acc_gain(runs: pd.DataFrame) -> str | None:
    """GRASS's average accuracy minus the best other method's on one task's runs, with whether the two
    are apart (paired by seed where seeds pair, else by their intervals); None without both."""
    acc = runs.groupby("method")["acc/avg"].mean() if "acc/avg" in runs else pd.Series(dtype=float)
    others = acc.drop("grass", errors="ignore").dropna()
    if "grass" not in acc or pd.isna(acc["grass"]) or others.empty:
        return None
    best = others.idxmax()
    by_seed = {m: runs[runs["method"] == m].groupby("seed")["acc/avg"].mean() for m in ("grass", best)}
    diffs = (by_seed["grass"] - by_seed[best]).dropna().tolist()
    if len(diffs) >= 2:  # seeds pair: the paired test decides, as the reproduction's verdicts do
        p = paired_t_p(diffs)
        apart = p is not None and p < 0.05
    else:
        apart = separated(*(average_estimate(runs[runs["method"] == m]) for m in ("grass", best)))
    return f"{acc['grass'] - others.max():+.2f} points vs {best}" + ("" if apart else " (within noise)")


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
    device = [_device_gib(runs) for _, runs in per_model]
    plans = [plan for _, plan in device]
    rows = [[q, value, models, where] + [_ours(runs, key, mem, plan) for (_, runs), (mem, plan) in zip(per_model, device)]
            for key, q, value, models, where in quotes]
    notes = [f"Paper: {paper.PAPER}, as published (GB) on {', '.join(paper.PAPER_MODELS)}. Ours: this "
             "experiment's runs (GiB) on different, much smaller models and training budgets, so only "
             "ratios and directions are comparable, not the values.",
             "Our budgets: " + "; ".join(_budget(runs) for _, runs in per_model) + "."]
    if any(plan is not None for plan in plans):
        notes.append("GiB planned: where no CUDA peak exists (CPU runs, whose host and device are one memory, "
                     "so offloading saves nothing there), the memory planner's device total for each run's own "
                     "config (weights, gradients, optimizer state on the GPU, activations): `grass memory` at "
                     "that config, with bf16 autocast where the run trained under it (train/precision bf16 "
                     "over fp32 weights; not modelled, so not planned, for LoRA, DoRA and GPT-2).")
    return Table("paper_vs_ours", f"Paper (published) vs ours ({coll.experiment}): different models and budgets",
                 ["Quantity", "Paper", "Paper model(s)", "Paper source"] + [f"Ours: {m}" for m, _ in per_model],
                 rows, "lrll" + "r" * len(per_model), notes + [n for n in [coll.footnote()] if n])


def build_tables(coll: Collection, reference: str = "lisa") -> list[Table]:
    """Every table the experiment has data for, in report order.

    Args:
        coll: the experiment's runs.
        reference: the method the paired table subtracts (see :func:`analysis.paired.paired_table`);
            why there is no paired table, where seeds would allow one, becomes a note of the table
            just before its place (the held-out loss table, else the last accuracy table), where a
            reader looks for it.
    """
    paired, why = paired_table(coll, reference)
    accuracy = [accuracy_table(sub, prefix, task=task) for prefix in ("acc/", "acc_lmeval/")
                for task, sub in by_task(coll)]
    before = [t for t in [*accuracy, heldout_loss_table(coll)] if t is not None]
    after = [t for t in [paired, efficiency_table(coll), paper_table(coll)] if t is not None]
    host = before[-1] if before else (after[0] if after else None)
    if why and host is not None:
        notes, footnotes = host.notes, {coll.footnote(), *(sub.footnote() for _, sub in by_task(coll))} - {""}
        notes.insert(len(notes) - bool(notes and notes[-1] in footnotes), why)  # before the footnote
    return before + after


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
