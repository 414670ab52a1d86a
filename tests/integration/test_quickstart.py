"""``grass quickstart`` end to end, at the ``tiny`` budget (a tiny random model): four runs trained
and evaluated, tables and report written, and a second call that only re-reads the results."""
from __future__ import annotations

import json
from pathlib import Path

from grass.cli import main


def test_quickstart_tiny_budget_end_to_end_then_cached(tmp_path, capsys):
    assert main(["quickstart", "--budget", "tiny", "--runs-dir", str(tmp_path)]) == 0
    first = capsys.readouterr().out
    assert "4 runs (0 already finished, 4 to train and evaluate)" in first
    assert "| Model | Method | n | BoolQ | PIQA | ARC-e | ARC-c | Avg |" in first  # the accuracy table
    assert "Tokens/s" in first and "Opt. state device (GiB)" in first  # the efficiency table
    # the planner's projection at the paper's GPU setting, and what the budget can and cannot show
    assert "Projected GPU memory at the paper's setting (llama2-7b, seq 1024 x batch 4" in first
    assert "accuracy rankings are not: a 4-item cell's 95% interval is up to +-49 points" in first
    assert "GRASS's first 2 of its 4 steps are the probe" in first
    results = [json.loads(p.read_text()) for p in (tmp_path / "quickstart").glob("*/result.json")]
    assert sorted(r["method"] for r in results) == ["full", "grass", "lisa", "lora"]
    assert all(r["status"] == "success" and "acc/avg" in r for r in results)
    assert all(r["loss/heldout_n"] == 128 and r["loss/heldout_se"] > 0 for r in results)
    report = Path(first.strip().splitlines()[-1].removeprefix("report: "))
    assert report.is_file() and report.suffix == ".html"

    assert main(["quickstart", "--budget", "tiny", "--runs-dir", str(tmp_path)]) == 0
    second = capsys.readouterr().out
    assert "4 runs (4 already finished, 0 to train and evaluate)" in second
    assert "trained and evaluated" not in second
