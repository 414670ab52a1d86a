"""The golden run set turns into exactly the expected table text."""
from __future__ import annotations

import pytest

from analysis.collect import collect
from analysis.table_format import to_html, to_latex, to_markdown
from analysis.projection import planned_gpu_gib
from analysis.tables import (accuracy_table, build_tables, efficiency_table, heldout_loss_table, paper_table,
                             write_tables)

from grass.memory.model import GIB, predict

FOOTNOTE = "Left out: 1 unfinished, 1 failed, 1 from a dirty tree (use --include-unfinished to include them)."

ACCURACY_MD = """\
### Accuracy (%) on golden

| Model | Method | n | BoolQ | PIQA | Avg |
|:--|:--|--:|--:|--:|--:|
| tiny-llama | full | 2 | 61.0 ± 1.4 | 70.0 ± 0.0 | 65.5 ± 0.7 |
| tiny-llama | lisa | 3 | 60.0 ± 2.0 | 74.0 ± 2.0 | 67.0 ± 2.0 |
| tiny-llama | grass | 2 | **65.0 ± 1.4** | 72.0 ± 1.4 | 68.5 ± 1.4 |

Accuracy (%); n ≥ 2 runs (seeds): mean ± sample std.

Bold marks the best and underline the second only where its interval (or mean ± std) does not overlap the next \
one's. Within noise, so unmarked: PIQA, Avg.

""" + FOOTNOTE + "\n"

# grass's BoolQ band [63.6, 66.4] clears full's [59.6, 62.4]; full and lisa overlap, so no second.
ACCURACY_TEX_ROWS = r"""
tiny-llama & full & 2 & 61.0 $\pm$ 1.4 & 70.0 $\pm$ 0.0 & 65.5 $\pm$ 0.7 \\
tiny-llama & lisa & 3 & 60.0 $\pm$ 2.0 & 74.0 $\pm$ 2.0 & 67.0 $\pm$ 2.0 \\
tiny-llama & grass & 2 & \textbf{65.0 $\pm$ 1.4} & 72.0 $\pm$ 1.4 & 68.5 $\pm$ 1.4 \\
"""

HELDOUT_MD = """\
### Held-out loss on golden

| Model | Method | n | Held-out loss | Examples | Tokens |
|:--|:--|--:|--:|--:|--:|
| tiny-llama | full | 2 | **1.210 ± 0.014** | 64 | 4,096 |
| tiny-llama | lisa | 3 | 1.300 ± 0.010 | 64 | 4,096 |
| tiny-llama | grass | 2 | <u>1.265 ± 0.021</u> | 64 | 4,096 |
"""

EFFICIENCY_MD = """\
### Efficiency on golden

| Model | Method | n | Opt. state device (GiB) | Opt. state host (GiB) | Tokens/s | Step time (s) | Trainable params |
|:--|:--|--:|--:|--:|--:|--:|--:|
| tiny-llama | full | 2 | 1 (1.00×) | 0 | 1,050 (1.00×) | 0.5 (1.00×) | 135.00M (1.00×) |
| tiny-llama | lisa | 3 | 0.25 (0.25×) | 0 | 1,500 (1.43×) | 0.5 (1.00×) | 20.00M (0.15×) |
| tiny-llama | grass | 2 | 0.125 (0.12×) | 0.75 | 1,400 (1.33×) | 0.5 (1.00×) | 20.00M (0.15×) |

Means over the n runs of each row; (×) is relative to full fine-tuning of the same model.

Tokens/s is all tokens over all timed steps (slow steps count); step time is the median step, so the two need not agree on a noisy machine.

No peak device memory column: CUDA records the peak and these runs were on CPU.

On a CPU host and device are one memory: the optimizer-state columns count bytes, they are not a GPU memory \
saving; `grass memory --model llama2-7b --method all --seq-len 1024 --batch 4 --precision bf16` projects the \
GPU figures.

""" + FOOTNOTE + "\n"


def test_accuracy_markdown_is_exact(golden):
    assert to_markdown(accuracy_table(collect("golden", golden))) == ACCURACY_MD


def test_accuracy_latex_marks_best_and_second(golden):
    tex = to_latex(accuracy_table(collect("golden", golden)))
    assert ACCURACY_TEX_ROWS.strip() in tex
    assert r"\begin{tabular}{llrrrr}" in tex and r"\toprule" in tex and r"\label{tab:accuracy}" in tex
    assert r"Left out: 1 unfinished, 1 failed, 1 from a dirty tree" in tex


def test_efficiency_markdown_is_exact(golden):
    assert to_markdown(efficiency_table(collect("golden", golden))) == EFFICIENCY_MD


def test_paper_table_keeps_published_figures_apart_from_ours(golden):
    md = to_markdown(paper_table(collect("golden", golden)))
    assert "### Paper (published) vs ours (golden): different models and budgets" in md
    for published in ("| 51.3 GB |", "| ≈20 GB |", "| 22.3 GB |", "| 19.1 GB |", "| 1.63 GB |", "| 0.14 GB |",
                      "| 4.38 points |", "| 20% |", "| 0.37× |", "| 0.86× |"):
        assert published in md
    assert "Ours: tiny-llama" in md and "TinyLlama, Gemma-2B, LLaMA2-7B" in md
    assert "Our budgets: tiny-llama: 60 steps, batch 4, seq 128." in md
    assert "arXiv:2604.07808" in md
    # ours: grass 68.5 vs the best baseline lisa 67.0
    assert "+1.50 points vs lisa (within noise)" in md
    # CPU runs (no CUDA peak): memory is the planner's GPU figure at the runs' own config, not their bytes
    # (which on a CPU count an offloading run's whole state as "device")
    # (the golden runs' configs predate the offload fields and probe_checkpointing: they ran as before those)
    before = dict(offload_chunk_mb=None, offload_fp32_state=True, probe_checkpointing=False)
    grass, lisa = (predict("tiny-llama", m, precision="fp32", seq_len=128, batch=4, state_policy=pol, **before).total
                   / GIB for m, pol in (("grass", "offload"), ("lisa", "reset")))
    assert f"| peak memory, GRASS | 19.1 GB | LLaMA2-7B | Table 4 | {grass:.3g} GiB planned |" in md
    assert f"| {grass / lisa:.2f}× |" in md and f"{100 * (1 - grass / lisa):.1f}% vs lisa" in md
    assert "w+g+opt" not in md
    # LoRA was not run: no invented number
    assert "| peak memory, LoRA | ≈20 GB | LLaMA2-7B | Table 4 | – |" in md


def test_paper_table_uses_the_cuda_peak_where_every_run_has_one(tmp_path, write_run):
    for method, peak in (("lisa", 4.0), ("grass", 3.0)):
        write_run(tmp_path, "gpu", method, 0, {"boolq": 50.0}, device="cuda", mem={"mem/peak_device_gib": peak})
    md = to_markdown(paper_table(collect("gpu", tmp_path)))
    assert "| 3 GiB peak |" in md and "| 0.75× |" in md and "25.0% vs lisa" in md and "planned" not in md


def test_planned_gpu_memory_follows_each_runs_config(tmp_path, write_run):
    """Offloading shows in the plan (a CPU's bytes cannot show it), gamma counts, unknown models are blank."""
    for method, seed, fields in [("grass", 0, {"state_policy": "offload"}), ("grass", 1, {"state_policy": "keep"}),
                                 ("grass", 2, {"state_policy": "offload", "probe_checkpointing": True}),
                                 ("lisa", 0, {"n_active_layers": 2}), ("lisa", 1, {"n_active_layers": 4}),
                                 ("lora", 0, {"target_modules": ["all-linear"]}),
                                 ("lora", 1, {"target_modules": ["q_proj", "v_proj"]}),
                                 ("lora", 2, {"target_modules": ["lm_head"]})]:
        write_run(tmp_path, "plan", method, seed, {"boolq": 50.0}, method_cfg=fields, model="smollm2-135m")
    write_run(tmp_path, "plan", "full", 0, {"boolq": 50.0}, model="no-such-model")
    runs = collect("plan", tmp_path).runs
    plan = planned_gpu_gib(runs).set_axis(runs["method"] + runs["seed"].astype(str))
    assert plan.loc["grass0", "optimizer_device"] < plan.loc["grass1", "optimizer_device"]
    assert runs["mem/optimizer_state_device_gib"].nunique() == 1  # what the CPU accounting recorded for all
    assert plan.loc["lisa0", "total"] < plan.loc["lisa1", "total"]
    # a config without the field predates it (the probe kept its activations); one that records it counts
    assert plan.loc["grass2", "total"] < plan.loc["grass0", "total"]
    assert plan.loc["grass0", "total"] == pytest.approx(
        predict("smollm2-135m", "grass", precision="fp32", seq_len=128, batch=4, state_policy="offload",
                offload_chunk_mb=None, offload_fp32_state=True, probe_checkpointing=False).total / GIB)
    assert plan.loc["full0"].isna().all()
    assert plan.loc["lora1", "total"] < plan.loc["lora0", "total"]  # two adapted linears a block, not seven
    assert plan.loc["lora2"].isna().all()  # an adapter outside the blocks: not modelled, so no number


def test_planned_gpu_memory_of_autocast_runs(tmp_path, write_run):
    """bf16 autocast over fp32 weights (train.precision bf16, or auto where the run resolved it to
    bf16, or recorded nothing: bf16 on a GPU) is planned as such; auto that the run resolved to fp32
    is fp32; LoRA under autocast is not modelled, so it gets no number rather than fp32's."""
    for method, seed, precision, resolved in [("lisa", 0, "fp32", "fp32"), ("lisa", 1, "bf16", "bf16"),
                                              ("lisa", 2, "auto", None), ("lisa", 3, "auto", "fp32"),
                                              ("lisa", 4, "auto", "bf16"), ("lora", 0, "bf16", "bf16")]:
        write_run(tmp_path, "amp", method, seed, {"boolq": 50.0}, model="smollm2-135m",
                  train_cfg={"precision": precision}, mem={"train/precision": resolved} if resolved else None)
    runs = collect("amp", tmp_path).runs
    plan = planned_gpu_gib(runs).set_axis(runs["method"] + runs["seed"].astype(str))
    planned = {ac: predict("smollm2-135m", "lisa", precision="fp32", seq_len=128, batch=4, state_policy="reset",
                           autocast=ac).total / GIB for ac in (False, True)}
    assert plan.loc["lisa0", "total"] == pytest.approx(planned[False])
    assert plan.loc["lisa1", "total"] == plan.loc["lisa2", "total"] == pytest.approx(planned[True])
    assert plan.loc["lisa4", "total"] == pytest.approx(planned[True])
    assert plan.loc["lisa3", "total"] == pytest.approx(planned[False])
    assert planned[True] != pytest.approx(planned[False])  # more here: the weight casts outweigh the bf16 savings
    assert plan.loc["lora0"].isna().all()


def test_paper_accuracy_gain_is_grass_not_its_static_ablation_and_paired_by_seed(tmp_path, write_run):
    for seed, (grass, static, lisa) in enumerate([(50.0, 90.0, 49.0), (52.0, 90.0, 50.0), (51.0, 90.0, 51.5)]):
        write_run(tmp_path, "gain", "grass", seed, {"boolq": grass}, method_cfg={"mode": "adaptive"})
        write_run(tmp_path, "gain", "grass", seed, {"boolq": static}, method_cfg={"mode": "static"})
        write_run(tmp_path, "gain", "lisa", seed, {"boolq": lisa})
    md = to_markdown(paper_table(collect("gain", tmp_path)))
    # +0.83 = mean(50, 52, 51) - mean(49, 50, 51.5); paired diffs +1, +2, -0.5: p = 0.32, within noise
    assert "+0.83 points vs lisa (within noise)" in md


def test_paper_accuracy_gain_compares_within_a_task(tmp_path, write_run):
    # math: GRASS 10 vs LISA 8; commonsense: only LISA (60). Across tasks GRASS would lose by 24 points.
    for seed in range(2):
        write_run(tmp_path, "tasks", "grass", seed, {"gsm8k": 10.0 + seed}, task="math")
        write_run(tmp_path, "tasks", "lisa", seed, {"gsm8k": 8.0 + 2 * seed}, task="math")
        write_run(tmp_path, "tasks", "lisa", seed, {"boolq": 60.0}, task="commonsense")
    md = to_markdown(paper_table(collect("tasks", tmp_path)))
    assert "math: +1.50 points vs lisa (within noise)" in md, md
    assert "commonsense:" not in md  # no GRASS there: no gain to quote
    write_run(tmp_path, "tasks", "grass", 0, {"boolq": 70.0}, task="commonsense")
    md = to_markdown(paper_table(collect("tasks", tmp_path)))
    assert "commonsense: +10.00 points vs lisa (within noise); math: +1.50 points vs lisa (within noise)" in md, md


def test_accuracy_tables_split_by_task(tmp_path, write_run):
    # Each task has its own benchmarks: one table per task, not one mostly-empty table over both.
    for seed in range(2):
        write_run(tmp_path, "split", "lisa", seed, {"gsm8k": 8.0 + seed}, task="math", benchmarks=("gsm8k",))
        write_run(tmp_path, "split", "lisa", seed, {"boolq": 60.0, "piqa": 70.0 + seed}, task="commonsense")
    write_run(tmp_path, "split", "grass", 0, {"gsm8k": 9.0}, task="math", finished=False, benchmarks=("gsm8k",))
    tables = {t.name: t for t in build_tables(collect("split", tmp_path))}
    assert {"accuracy-commonsense", "accuracy-math"} <= set(tables) and "accuracy" not in tables
    math, cs = tables["accuracy-math"], tables["accuracy-commonsense"]
    assert math.title == "Accuracy (%) on split, math" and math.header == ["Model", "Method", "n", "GSM8K", "Avg"]
    assert cs.header == ["Model", "Method", "n", "BoolQ", "PIQA", "Avg"]
    # each table's footnote counts its own task's left-out runs
    assert math.notes[-1].startswith("Left out: 1 unfinished") and not cs.notes[-1].startswith("Left out")
    # the tables that have no per-task columns keep one table with a Task column
    assert tables["efficiency"].header[:3] == ["Model", "Task", "Method"]


def test_tables_and_report_of_several_tasks_end_to_end(tmp_path, write_run, capsys):
    from grass.cli import main

    for seed in range(2):  # a task may be a data file: its table's file name must still be one file
        write_run(tmp_path, "split", "lisa", seed, {"gsm8k": 8.0 + seed}, task="math", benchmarks=("gsm8k",))
        write_run(tmp_path, "split", "lisa", seed, {"boolq": 60.0 + seed}, task="data/mine.jsonl",
                  benchmarks=("boolq",))
    out = tmp_path / "out"
    assert main(["tables", "split", "--runs-dir", str(tmp_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "no accuracy table" not in printed and "Accuracy (%) on split, data/mine.jsonl" in printed
    assert (out / "accuracy-math.tex").is_file() and (out / "accuracy-data_mine_jsonl.tex").is_file()
    assert "\\label{tab:accuracy-data_mine_jsonl}" in (out / "accuracy-data_mine_jsonl.tex").read_text()
    assert main(["report", "split", "--runs-dir", str(tmp_path), "--out", str(out)]) == 0
    assert "No accuracy table" not in (out / "report.html").read_text()


def test_planned_memory_of_a_run_does_not_depend_on_the_other_runs(tmp_path, write_run):
    """A run recorded before the offload fields existed is planned as it ran (whole layers, fp32
    state), alone or beside a run whose config records them (its cell is NaN there)."""
    write_run(tmp_path, "alone", "grass", 0, {"boolq": 50.0}, model="smollm2-135m")
    write_run(tmp_path, "mixed", "grass", 0, {"boolq": 50.0}, model="smollm2-135m")
    write_run(tmp_path, "mixed", "grass", 1, {"boolq": 50.0}, model="smollm2-135m", method_cfg={"offload_chunk_mb": 8})
    alone = planned_gpu_gib(collect("alone", tmp_path).runs).iloc[0]
    runs = collect("mixed", tmp_path).runs
    mixed = planned_gpu_gib(runs)[runs["seed"] == 0].iloc[0]
    assert alone.tolist() == mixed.tolist()
    as_ran = predict("smollm2-135m", "grass", precision="fp32", seq_len=128, batch=4, offload_chunk_mb=None,
                     offload_fp32_state=True, probe_checkpointing=False)
    assert alone["optimizer_device"] == pytest.approx(as_ran.optimizer_device / GIB)


def test_include_unfinished_marks_rows(golden):
    md = to_markdown(accuracy_table(collect("golden", golden, include_unfinished=True)))
    assert "| tiny-llama | full† | 3 |" in md and "| tiny-llama | lisa† | 4 |" in md
    assert "| tiny-llama | grass† | 3 |" in md
    assert "† 3 run(s) that failed, are unfinished or come from a dirty tree are included." in md


def test_heldout_loss_table_marks_lower_as_better_when_separated(golden):
    md = to_markdown(heldout_loss_table(collect("golden", golden)))
    assert md.startswith(HELDOUT_MD)
    assert "lower is better; n ≥ 2 runs (seeds): mean ± sample std." in md


def test_write_tables_and_html(golden, tmp_path):
    tables = build_tables(collect("golden", golden))
    assert [t.name for t in tables] == ["accuracy", "heldout", "paired", "efficiency", "paper_vs_ours"]
    paths = write_tables(tables, tmp_path)
    assert sorted(p.name for p in paths) == ["accuracy.tex", "efficiency.tex", "heldout.tex", "paired.tex",
                                             "paper_vs_ours.tex", "tables.md"]
    assert (tmp_path / "tables.md").read_text().count("### ") == 5
    html = to_html(tables[0])
    assert "<b>65.0 ± 1.4</b>" in html and "<u>" not in html


QUICK = {"full": ((56.25, 50.0), (1.60, 0.04)), "lora": ((50.0, 43.75), (1.95, 0.04)),
         "lisa": ((37.5, 31.25), (1.90, 0.04)), "grass": ((43.75, 37.5), (1.88, 0.04))}

# Avg of full: Agresti-Coull p 10.92 / 19.84 = 0.5504 and 0.5 over 19.84 items;
# 53.1 +- 1.96 sqrt((0.5504 * 0.4496 + 0.25) / 19.84) / 2 = 53.1 +- 15.5
QUICK_ACCURACY_MD = """\
| Model | Method | n | BoolQ | PIQA | Avg |
|:--|:--|--:|--:|--:|--:|
| tiny-llama | full | 1 | 56.2 [33.2, 76.9] | 50.0 [28.0, 72.0] | 53.1 [37.6, 68.6] |
| tiny-llama | lora | 1 | 50.0 [28.0, 72.0] | 43.8 [23.1, 66.8] | 46.9 [31.4, 62.4] |
| tiny-llama | lisa | 1 | 37.5 [18.5, 61.4] | 31.2 [14.2, 55.6] | 34.4 [19.3, 49.4] |
| tiny-llama | grass | 1 | 43.8 [23.1, 66.8] | 37.5 [18.5, 61.4] | 40.6 [25.3, 56.0] |

Accuracy (%); one run: value [95% interval; Wilson, from the item count; it covers the sampling of items, not the \
variation between seeds].

Avg of one run: normal approximation of the mean of independent proportions, ± 1.96 * sqrt(sum_b p_b (1 - p_b) / \
n_b) / B over its B benchmarks, with the Agresti-Coull p_b = (k_b + 1.92) / (n_b + 3.84) so that 0% or 100% \
still has a width.

Bold marks the best and underline the second only where its interval (or mean ± std) does not overlap the next \
one's. Within noise, so unmarked: BoolQ, PIQA, Avg.
"""


@pytest.fixture(scope="module")
def quick(tmp_path_factory, write_run):
    """As the quickstart budget: one seed per method, 16 items per benchmark, held-out loss."""
    root = tmp_path_factory.mktemp("runs")
    for method, ((boolq, piqa), heldout) in QUICK.items():
        write_run(root, "quick", method, 0, {"boolq": boolq, "piqa": piqa}, n_items=16, steps=5, heldout=heldout)
    return root


def test_one_seed_on_16_items_shows_intervals_and_marks_no_best(quick):
    md = to_markdown(accuracy_table(collect("quick", quick)))
    assert QUICK_ACCURACY_MD in md and "**" not in md and "<u>" not in md


def test_one_seed_heldout_loss_can_still_tell_methods_apart(quick):
    md = to_markdown(heldout_loss_table(collect("quick", quick)))
    # full [1.522, 1.678] clears grass [1.802, 1.958]; grass and lisa overlap, so no second
    assert "| tiny-llama | full | 1 | **1.600 [1.522, 1.678]** | 64 | 4,096 |" in md
    assert "| tiny-llama | grass | 1 | 1.880 [1.802, 1.958] | 64 | 4,096 |" in md and "<u>" not in md
    assert "one run: value [95% interval; ± 1.96 standard errors over examples; it covers the sampling" in md


def test_efficiency_cpu_note_only_for_cpu_runs(tmp_path, write_run):
    for method in ("full", "lisa"):
        write_run(tmp_path, "gpu", method, 0, {"boolq": 50.0}, steps=5, device="cuda:0",
                  mem={"mem/peak_device_gib": 3.0})
    notes = " ".join(efficiency_table(collect("gpu", tmp_path)).notes)
    assert "host and device are one memory" not in notes and "grass memory" not in notes
