"""``grass quickstart``: the main job. Trains full, LoRA, LISA and GRASS on SmolLM2-135M with the same
budget, evaluates them on four commonsense benchmarks, and writes the paper-style tables, figures
and HTML report of the ``quickstart`` experiment (``experiments/defs/quickstart.py`` holds the
budget and the rule that picked it).

Finished runs are skipped, so a second invocation takes seconds and an interrupted one (Ctrl-C)
resumes with the first unfinished run.
"""
from __future__ import annotations

import time
from pathlib import Path

EXPERIMENT = "quickstart"


def _fmt_minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def run_quickstart(budget: str | None = None, runs_dir: str | None = None, out=print) -> Path:
    """Train and evaluate what is not finished, then write tables, figures and report.

    Args:
        budget: ``small`` (CPU, about 8 minutes on 2 idle cores), ``paper`` (GPU: longer training,
            more evaluation items) or ``tiny`` (a tiny random model: checks the wiring in under a
            minute); default: ``paper`` when CUDA is available, else ``small``.
        runs_dir: root of run directories (default ``$GRASS_RUNS_DIR`` or ``./runs``).
        out: where progress lines go.

    Returns:
        The path of the HTML report.
    """
    import torch

    from experiments.grid import expand
    from experiments.registry import get_experiment
    from slurm.launch import plan
    from slurm.runner import run_config

    budget = budget or ("paper" if torch.cuda.is_available() else "small")
    exp = get_experiment(EXPERIMENT)
    runs = expand(exp, budget=budget, runs_dir=runs_dir)
    todo = plan(runs, retry_failed=True).submit
    done = len(runs) - len(todo)
    device = "GPU" if torch.cuda.is_available() else "CPU"
    out(f"grass quickstart: {exp.question}")
    out(f"budget '{budget}' on the {device}: {len(runs)} runs ({done} already finished, {len(todo)} to train "
        f"and evaluate); runs under {runs[0].run_dir.parent}")
    started = time.time()
    for i, run in enumerate(todo):
        eta = ""
        if i:
            per_run = (time.time() - started) / i
            eta = f", about {_fmt_minutes(per_run * (len(todo) - i))} left"
        out(f"[{done + i + 1}/{len(runs)}] {run.label()}{eta}")
        try:
            run_config(run.cfg, progress=True)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # recorded in the run's result.json; the table counts it as failed
            out(f"  failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    if todo:
        out(f"trained and evaluated {len(todo)} run(s) in {_fmt_minutes(time.time() - started)}")
    return _analyse(runs_dir, out)


def _analyse(runs_dir: str | None, out) -> Path:
    from analysis.collect import collect
    from analysis.commands import ANALYSIS_DIR, write_all
    from analysis.projection import projection_table
    from analysis.table_format import to_markdown
    from analysis.tables import kind

    # A user's own quickstart counts even from a tree with uncommitted changes.
    coll = collect(EXPERIMENT, runs_dir, include_dirty=True)
    dest = coll.runs_dir / EXPERIMENT / ANALYSIS_DIR
    tables, report = write_all(coll, dest)
    out("")
    for t in tables:
        if kind(t) in ("accuracy", "heldout", "efficiency"):
            out(to_markdown(t))
    out(to_markdown(projection_table(list(dict.fromkeys(coll.runs["method"])) or ["full", "lora", "lisa", "grass"])))
    for line in budget_notes(coll.runs):
        out(line)
    out(f"tables and figures: {dest}")
    out(f"report: {report}")
    return report


def budget_notes(runs) -> list[str]:
    """What this budget can and cannot show, and how GRASS's probe counts, from the runs' own records.

    Args:
        runs: the collected runs frame (one row per run; ``cfg.*`` columns hold the config).

    Returns:
        Lines to print under the tables.
    """
    import math

    ok = runs[runs["status"] == "success"] if "status" in runs else runs
    if ok.empty:
        return []
    lines = []
    items = [int(v) for c in ok.columns if c.startswith("eval/n/") for v in ok[c].dropna()]
    seeds = ok["seed"].nunique() if "seed" in ok else 1
    steps = int(ok["cfg.train.max_steps"].max())
    if items:
        n = min(items)
        half = 100 * 1.96 * math.sqrt(0.25 / n)  # widest 95% interval, at 50% accuracy
        se = ok["loss/heldout_se"].dropna() if "loss/heldout_se" in ok else []
        held = (f" and held-out-loss differences beyond about +-{2 * 1.96 * float(se.median()):.3f}"
                if len(se) else "")
        lines.append(f"What this budget shows: {seeds} seed(s), {steps} steps, {n} items per benchmark. Memory "
                     f"and speed differences{held} are measurable; accuracy rankings are not: a {n}-item cell's "
                     f"95% interval is up to +-{half:.0f} points.")
    if "cfg.method.probe_steps" in ok:
        probe = ok["cfg.method.probe_steps"].dropna()
        if len(probe) and int(probe.max()) > 0:
            p = int(probe.max())
            lines.append(f"GRASS's first {p} of its {steps} steps are the probe (forward and backward, no update): "
                         f"every method gets the same {steps} forward/backward passes, and GRASS updates the "
                         f"weights on {steps - p} of them.")
    return lines


def _cmd(args) -> int:
    run_quickstart(args.budget, args.runs_dir)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("quickstart", help="the main job: GRASS vs LISA vs LoRA vs full on SmolLM2-135M, "
                                          "with tables, figures and a report",
                       description=__doc__.splitlines()[0])
    p.add_argument("--budget", choices=("small", "paper", "tiny"), default=None,
                   help="small: a CPU in ~15 min; paper: a GPU, longer training and more evaluation items; "
                        "tiny: a wiring check in under a minute on a tiny random model "
                        "(default: paper with CUDA, else small)")
    p.add_argument("--runs-dir", default=None, help="root of run directories (default $GRASS_RUNS_DIR or ./runs)")
    p.set_defaults(func=_cmd)
