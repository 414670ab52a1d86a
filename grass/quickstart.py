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
        budget: ``small`` (CPU, about 15 minutes on 2 cores), ``paper`` (GPU: longer training,
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
    from analysis.table_format import to_markdown

    # A user's own quickstart counts even from a tree with uncommitted changes.
    coll = collect(EXPERIMENT, runs_dir, include_dirty=True)
    dest = coll.runs_dir / EXPERIMENT / ANALYSIS_DIR
    tables, report = write_all(coll, dest)
    out("")
    for t in tables:
        if t.name in ("accuracy", "efficiency"):
            out(to_markdown(t))
    out(f"tables and figures: {dest}")
    out(f"report: {report}")
    return report


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
