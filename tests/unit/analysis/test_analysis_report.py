"""The report is one self-contained HTML file holding every table, figure and config."""
from __future__ import annotations

import re

from analysis.collect import collect
from analysis.report import write_report
from analysis.tables import build_tables


def test_report_is_self_contained_and_complete(golden, golden_figures, tmp_path):
    coll = collect("golden", golden)
    tables = build_tables(coll)
    figures = golden_figures
    html = write_report(coll, tables, figures, tmp_path).read_text()
    # every src/href is inline data: nothing refers to another file
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    assert "<link" not in html and "<script" not in html
    for t in tables:
        assert f'<table id="{t.name}">' in html
    assert len(refs) == len(figures)
    assert "Left out: 1 unfinished, 1 failed, 1 from a dirty tree" in html
    assert html.count("<details>") == len(coll.frame)  # every run's config, included or not
    assert "n_active_layers: 2" in html
