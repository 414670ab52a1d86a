"""The paired table (each method minus a reference, seed by seed) on a synthetic set of result files,
and `grass tables | report --reference` end to end."""
from __future__ import annotations

import pytest

from analysis.collect import collect
from analysis.paired import paired_table
from analysis.table_format import to_markdown
from analysis.tables import build_tables
from grass.cli import main

LISA_BOOLQ = (50.0, 52.0, 48.0, 51.0, 49.0)
GRASS_GAIN = (2.0, 3.0, 1.0, 4.0, 2.0)  # mean 2.4, sample std 1.14; t = 4.71 on 4 df: p = 0.0093
LISA_LOSS = (1.30, 1.32, 1.29, 1.31, 1.30)


@pytest.fixture(scope="module")
def paired_runs(tmp_path_factory, write_run):
    """lisa and grass on seeds 0-4 (grass better on every seed), full on seeds 0, 1 and 7 (lisa has no 7)."""
    root = tmp_path_factory.mktemp("runs")
    for seed in range(5):
        for method, boolq, loss in (("lisa", LISA_BOOLQ[seed], LISA_LOSS[seed]),
                                    ("grass", LISA_BOOLQ[seed] + GRASS_GAIN[seed], LISA_LOSS[seed] - 0.05)):
            write_run(root, "pairs", method, seed, {"boolq": boolq, "piqa": 60.0}, n_items=100, steps=5,
                      heldout=(loss, 0.02))
    for seed, boolq in ((0, 40.0), (1, 45.0), (7, 99.0)):
        write_run(root, "pairs", "full", seed, {"boolq": boolq, "piqa": 60.0}, n_items=100, steps=5,
                  heldout=(1.5, 0.02))
    return root


def test_paired_rows_hold_mean_std_pairs_and_both_tests(paired_runs):
    table, why = paired_table(collect("pairs", paired_runs), "lisa")
    assert why is None
    md = to_markdown(table)
    assert "### Paired differences vs lisa on pairs" in md
    assert "| Model | Method | Quantity | Δ vs lisa | Pairs | Sign test p | Paired t p |" in md
    # five positive differences: sign p = 2/32; t p by the closed-form t CDF (test_analysis_stats)
    assert "| tiny-llama | grass | BoolQ (points) | +2.4 ± 1.1 | 5 | 0.062 | 0.009 |" in md
    assert "| tiny-llama | grass | Avg acc. (points) | +1.2 ± 0.6 | 5 | 0.062 | 0.009 |" in md
    # a constant difference has no spread: no t-test, the sign test still speaks
    assert "| tiny-llama | grass | Held-out loss | -0.050 ± 0.000 | 5 | 0.062 | – |" in md
    assert "| tiny-llama | grass | PIQA (points) | +0.0 ± 0.0 | 5 | 1.000 | – |" in md
    # full pairs with lisa on seeds 0 and 1 only (seed 7 has no partner): -10 and -7 points; t = 8.5 / 1.5 on 1 df, p = 1 - (2/pi) atan(t)
    assert "| tiny-llama | full | BoolQ (points) | -8.5 ± 2.1 | 2 | 0.500 | 0.111 |" in md
    assert "| lisa |" not in md


def test_no_reference_no_table_but_a_note(paired_runs):
    assert paired_table(collect("pairs", paired_runs), "dora") == (
        None, "No paired table: no runs of the reference method 'dora' (methods here: full, lisa, grass; "
              "choose one with --reference).")
    tables = build_tables(collect("pairs", paired_runs), reference="dora")
    assert "paired" not in [t.name for t in tables]
    # the note sits where the table would have been: under the held-out loss table, not the first one
    host = [t.name for t in tables if any("no runs of the reference method 'dora'" in n for n in t.notes)]
    assert host == ["heldout"], host


def test_one_seed_per_method_has_nothing_to_pair(tmp_path, write_run):
    for method in ("full", "lisa"):
        write_run(tmp_path, "one", method, 0, {"boolq": 50.0}, n_items=16, steps=5)
    tables = build_tables(collect("one", tmp_path))
    assert "paired" not in [t.name for t in tables]
    assert not any("paired" in n.lower() for t in tables for n in t.notes)


def test_grass_tables_reference_full_end_to_end(paired_runs, capsys):
    assert main(["tables", "pairs", "--runs-dir", str(paired_runs), "--reference", "full"]) == 0
    out = capsys.readouterr().out
    assert "### Paired differences vs full on pairs" in out
    assert "| tiny-llama | lisa | BoolQ (points) | +8.5 ± 2.1 | 2 | 0.500 | 0.111 |" in out
    assert (paired_runs / "pairs" / "_analysis" / "paired.tex").is_file()
    assert main(["tables", "pairs", "--runs-dir", str(paired_runs), "--reference", "dora"]) == 0
    assert "No paired table: no runs of the reference method 'dora'" in capsys.readouterr().out


def test_grass_report_shows_the_paired_table(paired_runs, tmp_path, capsys):
    argv = ["report", "pairs", "--runs-dir", str(paired_runs), "--out", str(tmp_path), "--reference", "full"]
    assert main(argv) == 0
    html = (tmp_path / "report.html").read_text()
    assert '<table id="paired"><caption>Paired differences vs full on pairs</caption>' in html
