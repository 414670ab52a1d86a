"""`grass tables | plots | report EXPERIMENT` through argparse, as the CLI runs them."""
from __future__ import annotations

import argparse

import pytest

from analysis.commands import add_commands
from grass.cli import main


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="grass")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_tables_prints_markdown_and_paths_to_the_default_folder(golden, capsys):
    assert _run(["tables", "golden", "--runs-dir", str(golden)]) == 0
    out = capsys.readouterr().out
    assert "### Accuracy (%) on golden" in out and "**65.0 ± 1.4**" in out
    folder = golden / "golden" / "_analysis"
    for name in ("runs.csv", "runs.parquet", "tables.md", "accuracy.tex", "efficiency.tex", "paper_vs_ours.tex"):
        assert f"wrote {folder / name}" in out and (folder / name).stat().st_size > 0


def test_plots_and_report_with_runs_dir_from_the_environment(tmp_path, write_run, monkeypatch, capsys):
    # one small full fine-tuning run keeps this fast: the figures themselves are tested elsewhere
    write_run(tmp_path / "runs", "small", "full", 0, {"boolq": 50.0}, steps=5)
    write_run(tmp_path / "runs", "small", "full", 1, finished=False)
    monkeypatch.setenv("GRASS_RUNS_DIR", str(tmp_path / "runs"))
    out = tmp_path / "out"
    assert _run(["plots", "small", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'figures' / 'loss_curves.png'}" in printed and "active_layers" not in printed
    assert _run(["report", "small", "--out", str(out), "--include-unfinished"]) == 0
    assert capsys.readouterr().out == f"wrote {out / 'report.html'}\n"
    assert "grass report small --include-unfinished" in (out / "report.html").read_text()


@pytest.mark.parametrize("command", ["tables", "plots", "report"])
def test_no_finished_runs_exits_2_with_one_line(tmp_path, write_run, capsys, command):
    write_run(tmp_path, "pending", "grass", 0, finished=False)
    assert main([command, "pending", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: experiment 'pending' has no finished runs")
    assert "`grass launch pending`" in err
