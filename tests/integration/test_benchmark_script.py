"""scripts/benchmark.py end to end on a tiny model: every method through the real loop, byte
accounting equal to the planner, and GRASS's step time against LISA's paired round by round."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "benchmark.py"


def test_benchmark_pairs_grass_with_lisa_by_round(tmp_path):
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, str(SCRIPT), "--model", "tiny-llama", "--methods", "lisa,grass-reset",
                        "--steps", "8", "--rounds", "3", "--probe-steps", "2", "--switch-every", "2",
                        "--seq-len", "32", "--batch", "2", "--refresh-every", "3", "--no-probe-checkpointing",
                        "--out", str(out)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    s, paired = d["summary"], d["ratios"]["grass_round_overhead_vs_lisa"]["grass-reset"]
    assert all(v["prediction_exact"] for v in s.values())
    # one difference per round, each GRASS's round median over LISA's of the same round
    expected = [g / b - 1 for g, b in zip(s["grass-reset"]["round_medians_s"], s["lisa"]["round_medians_s"])]
    assert len(paired["diffs"]) == 3 and paired["diffs"] == expected
    assert paired["margin"] >= 2 * paired["se"] > 0
    assert "median step time paired by round" in p.stdout and "over 3 rounds (95% interval" in p.stdout
    assert s["grass-reset"]["probe_step_time_s_median"] > 0 and s["lisa"]["probe_step_time_s_median"] is None
    # each run records the config it trained, so a comparison can check it against an experiment's
    grass = next(r for r in d["runs"] if r["key"] == "grass-reset")["config"]["method"]
    assert grass["refresh_every"] == 3 and grass["probe_checkpointing"] is False and grass["state_policy"] == "reset"
    assert d["args"]["malloc"].startswith("fixed")  # glibc's thresholds, the same for every method


def test_optimizer_benchmark_pairs_the_two_optimizers_step_by_step(tmp_path):
    script = SCRIPT.parent / "benchmark_optimizer.py"
    out = tmp_path / "opt.json"
    p = subprocess.run([sys.executable, str(script), "--model", "tiny-llama", "--periods", "3", "--steps", "3",
                        "--out", str(out)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    # each period's first step apart: 3 of them, and 2 x 3 steps within the periods
    assert len(d["times_s"]["lisa_first"]) == 3 and len(d["times_s"]["grass"]) == 6
    within = d["paired"][""]
    assert within["n"] == 6 and within["ci95"][0] <= within["mean"] <= within["ci95"][1]
    assert "paired over 6 steps" in p.stdout
    bad = subprocess.run([sys.executable, str(script), "--steps", "1"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
