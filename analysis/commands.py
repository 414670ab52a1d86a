"""``grass tables | plots | report EXPERIMENT``: the analysis subcommands of the ``grass`` CLI.

Outputs go to ``<runs_dir>/<experiment>/_analysis/`` by default (the underscore keeps the folder
from ever being read as a run).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from analysis.collect import Collection, collect, save_frame
from analysis.table_format import to_markdown

ANALYSIS_DIR = "_analysis"
NO_ACCURACY = "no accuracy table: no run recorded acc/<benchmark>; evaluate with eval.benchmarks=[...]"


def _collect(args: argparse.Namespace) -> tuple[Collection, Path]:
    coll = collect(args.experiment, args.runs_dir, args.include_unfinished, getattr(args, "include_dirty", False))
    out = Path(args.out) if args.out else coll.runs_dir / coll.experiment / ANALYSIS_DIR
    return coll, out


def _print_paths(paths: list[Path]) -> None:
    for p in paths:
        print(f"wrote {p}")


def cmd_tables(args: argparse.Namespace) -> int:
    """Collect the runs, save the frame (CSV, Parquet), write and print the tables."""
    from analysis.tables import build_tables, kind, write_tables

    coll, out = _collect(args)
    tables = build_tables(coll, args.reference)
    if not any(kind(t) == "accuracy" for t in tables):
        print(f"note: {NO_ACCURACY}\n")
    for t in tables:
        print(to_markdown(t))
    _print_paths(save_frame(coll, out) + write_tables(tables, out))
    return 0


def cmd_plots(args: argparse.Namespace) -> int:
    """Write every figure the experiment has data for as PNG and PDF."""
    from analysis.plots import make_figures, write_plots  # matplotlib only when plotting

    coll, out = _collect(args)
    figures = make_figures(coll)
    if not figures:
        print(f"no figure: the runs of '{coll.experiment}' hold no accuracy, speed or per-step metrics")
    _print_paths(write_plots(figures, out / "figures"))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write one self-contained HTML report with every table, figure and config."""
    from analysis.plots import make_figures
    from analysis.report import write_report
    from analysis.tables import build_tables

    coll, out = _collect(args)
    _print_paths([write_report(coll, build_tables(coll, args.reference), make_figures(coll), out)])
    return 0


def write_all(coll: Collection, out: Path, reference: str = "lisa") -> tuple[list, Path]:
    """Everything the three commands write, at once (used by ``grass quickstart``).

    Args:
        coll: the experiment's runs.
        out: the output folder.
        reference: the method the paired table subtracts.

    Returns:
        The tables and the path of the HTML report.
    """
    from analysis.plots import make_figures, write_plots
    from analysis.report import write_report
    from analysis.tables import build_tables, write_tables

    tables, figures = build_tables(coll, reference), make_figures(coll)
    save_frame(coll, out)
    write_tables(tables, out)
    write_plots(figures, out / "figures")
    return tables, write_report(coll, tables, figures, out)


def add_commands(subparsers) -> None:
    """Register ``tables``, ``plots`` and ``report`` on the ``grass`` CLI's subparsers."""
    specs = (
        ("tables", cmd_tables, "paper-style tables (markdown + LaTeX) and the runs as CSV/Parquet"),
        ("plots", cmd_plots, "figures (PNG + PDF): accuracy vs memory, throughput, loss, layer heatmaps"),
        ("report", cmd_report, "one self-contained HTML file with every table, figure and config"),
    )
    for name, handler, help_ in specs:
        p = subparsers.add_parser(name, help=help_, description=help_.capitalize() + ".")
        p.add_argument("experiment", metavar="EXPERIMENT", help="experiment name (a folder under the runs dir)")
        p.add_argument("--runs-dir", default=None,
                       help="root of run directories (default $GRASS_RUNS_DIR or ./runs)")
        p.add_argument("--out", default=None,
                       help=f"output folder (default <runs-dir>/<experiment>/{ANALYSIS_DIR})")
        p.add_argument("--include-unfinished", action="store_true",
                       help="also use failed, unfinished and dirty-tree runs (marked † in tables)")
        p.add_argument("--include-dirty", action="store_true",
                       help="also use finished runs made from a git tree with uncommitted changes")
        if name != "plots":
            p.add_argument("--reference", default="lisa", metavar="METHOD",
                           help="with several seeds, the paired table shows each method minus this one, seed by "
                                "seed (default: lisa)")
        p.set_defaults(func=handler)
