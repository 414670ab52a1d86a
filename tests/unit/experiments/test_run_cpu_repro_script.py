"""scripts/run_cpu_repro.sh: the sweep, then the grid, N at a time; clear refusals on bad input."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "run_cpu_repro.sh"


def _run(args, tmp_path, **env):
    venv_bin = str(Path(sys.executable).parent)  # the script needs the project's python first on PATH
    full = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ["PATH"],
            "GRASS_REPRO_RUNS_DIR": str(tmp_path), **env}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full, timeout=300)


def test_dry_run_lists_the_sweep_then_the_grid_in_order(tmp_path):
    p = _run(["--parallel", "3", "--dry-run"], tmp_path, GRASS_DATA_DIR=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert p.stdout.index("experiment cpu_lr_sweep") < p.stdout.index("experiment cpu_repro")
    assert p.stdout.count("at most 3 at once") == 2
    grid = p.stdout.split("experiment cpu_repro", 1)[1]
    assert grid.index("method.name=lisa seed=0") < grid.index("method.mode=static seed=0") \
        < grid.index("method.name=lisa seed=1") < grid.index("method.name=full seed=0")
    assert "cpu_lr_sweep" not in _run(["--no-sweep", "--dry-run"], tmp_path, GRASS_DATA_DIR=str(tmp_path)).stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    p = _run([], tmp_path, GRASS_DATA_DIR="")
    assert p.returncode == 2 and "GRASS_DATA_DIR" in p.stderr and "Traceback" not in p.stderr
    p = _run(["--budget", "nope"], tmp_path, GRASS_DATA_DIR=str(tmp_path))
    assert p.returncode == 2 and "Traceback" not in p.stderr and not list(tmp_path.rglob("config.yaml"))
