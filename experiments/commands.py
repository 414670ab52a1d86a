"""``grass launch``, ``grass status`` and ``grass experiments``.

    grass launch smoke --cluster debug
    grass launch main_commonsense --cluster slurm --profile mycluster --only model.name=smollm2-135m
    grass status main_commonsense
"""
from __future__ import annotations

import argparse

from grass.errors import GrassError
from grass.results import runs_root

CLUSTERS = ("slurm", "local", "debug")


def _runs(args) -> tuple:
    from experiments.grid import expand
    from experiments.registry import get_experiment

    exp = get_experiment(args.experiment)
    runs = expand(exp, budget=args.budget, overrides=[*args.overrides, *args.set_], runs_dir=str(runs_root(args.runs_dir)),
                  only=args.only)
    return exp, runs


def _profile(args, exp):
    from slurm.profiles import load_profile, profile_names

    name = args.profile or exp.resources.profile
    if not name:
        raise GrassError(f"--cluster slurm needs --profile NAME; valid profiles: {', '.join(profile_names())}")
    return load_profile(name).with_resources(exp.resources.overrides())


def _launch(args) -> int:
    from slurm.launch import plan, run_debug, run_local, submit_slurm
    from slurm.status import counts

    exp, runs = _runs(args)
    profile = _profile(args, exp) if args.cluster == "slurm" else None
    if args.max_parallel is not None and args.max_parallel <= 0:
        raise GrassError(f"--max-parallel must be positive, got {args.max_parallel}")
    p = plan(runs, retry_failed=args.retry_failed)
    c = counts(p.statuses)
    print(f"experiment {exp.name}: {exp.question}")
    print(f"{len(runs)} run(s): {len(p.submit)} to submit; " + ", ".join(f"{n} {s}" for s, n in c.items() if n))
    for line in p.describe(args.retry_failed):
        print(line)
    if profile is not None:
        params = profile.executor_parameters(job_name=f"grass-{exp.name}", max_parallel=args.max_parallel)
        print(f"SLURM parameters (profile {profile.name}): "
              + " ".join(f"{k}={v}" for k, v in params.items()))
    elif args.cluster == "local":
        print(f"local processes, at most {args.max_parallel or 1} at once")
    else:
        print("in this process, one run after another")
    if args.dry_run:
        print("dry run: nothing submitted")
        return 0
    if not p.submit:
        print("nothing to submit")
        return 0
    if args.cluster != "slurm":  # the runs train on this machine: refuse before any starts
        from grass.precision import check_auto_precision
        from grass.train import resolve_device

        for run in p.submit:
            check_auto_precision(run.cfg, run.run_dir, resolve_device(run.cfg.train.device))
    if args.cluster == "slurm":
        submit_slurm(p.submit, profile, exp.name, max_parallel=args.max_parallel)
        print(f"follow with: grass status {exp.name}" + (f" --runs-dir {args.runs_dir}" if args.runs_dir else ""))
        return 0
    bad = run_local(p.submit, args.max_parallel or 1) if args.cluster == "local" else run_debug(p.submit)
    print(f"{len(p.submit) - bad} of {len(p.submit)} run(s) finished" + (f"; {bad} did not (see grass status "
                                                                          f"{exp.name})" if bad else ""))
    return 1 if bad else 0


def _status(args) -> int:
    from slurm.status import collect, format_table

    exp, runs = _runs(args)
    print(f"experiment {exp.name}: {len(runs)} run(s) in {runs_root(args.runs_dir).resolve() / exp.name}")
    print(format_table(collect(runs)))
    return 0


def _experiments(args) -> int:
    from experiments.registry import experiment_names, get_experiment

    for name in experiment_names():
        exp = get_experiment(name)
        budgets = f" [budgets: {', '.join(exp.budgets)}]" if exp.budgets else ""
        print(f"{name:<18} {exp.grid_size:>3} runs  {exp.question}{budgets}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", metavar="EXPERIMENT", help="experiment name (see `grass experiments`)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides for every run, right after EXPERIMENT (not a key the experiment varies)")
    p.add_argument("--set", action="append", default=[], dest="set_", metavar="key=value",
                   help="a config override anywhere on the line (same as a positional key=value)")
    p.add_argument("--only", action="append", default=[], metavar="key=value",
                   help="keep runs whose config has this value (repeat; same key = alternatives)")
    p.add_argument("--budget", help="a named variant of the experiment, e.g. paper")
    p.add_argument("--runs-dir", help="root of run directories (default $GRASS_RUNS_DIR or ./runs)")


def add_commands(sub) -> None:
    """Register ``launch``, ``status`` and ``experiments``."""
    p = sub.add_parser("launch", help="run an experiment grid on SLURM, as local processes, or in-process",
                       description="Expand an experiment into runs, skip finished ones, and run the rest. "
                                   "Example: grass launch smoke --cluster local --max-parallel 2")
    _common(p)
    p.add_argument("--cluster", required=True, choices=CLUSTERS,
                   help="slurm: one submitit job array; local: processes on this machine; debug: in this process")
    p.add_argument("--profile", help="SLURM profile name (slurm/profiles/*.yaml) or YAML path")
    p.add_argument("--dry-run", action="store_true", help="show the runs and SLURM parameters; submit nothing")
    p.add_argument("--retry-failed", action="store_true", help="also resubmit runs that failed")
    p.add_argument("--max-parallel", type=int, help="at most N runs at once (local default 1; slurm: array limit)")
    p.set_defaults(func=_launch)

    s = sub.add_parser("status", help="done / failed / running / pending / missing runs of an experiment")
    _common(s)
    s.set_defaults(func=_status)

    e = sub.add_parser("experiments", help="list the experiments")
    e.set_defaults(func=_experiments)
