"""A real one-node SLURM cluster for the tests in this folder, started by ``scripts/slurm_local.sh``.

The session fixture installs the Debian packages if ``sbatch`` is missing (``.ci/run`` installs them
first), starts munged + MariaDB + slurmdbd + slurmctld + slurmd with every file in a fresh folder
under /tmp, exports ``SLURM_CONF`` for submitit, and stops the daemons (by the PIDs they wrote) in
its finalizer. Where no cluster can be started (not root, no apt, no packages) the tests skip with
the reason; they never fail for that.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm_local.sh"


def _script(action: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), action], env=env, capture_output=True, text=True, timeout=timeout)


def _why(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    return " | ".join(lines[-3:]) or f"exit status {proc.returncode}"


@pytest.fixture(scope="session")
def slurm_cluster():
    """Start the cluster once per session; yields its state folder. Skips when it cannot start."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("SLURM tests start a local cluster and need root")
    if shutil.which("bash") is None or not SCRIPT.is_file():
        pytest.skip(f"cannot run {SCRIPT}")
    base = tempfile.mkdtemp(prefix="grass-slurm-")  # under /tmp: munge and mysql users must reach it
    env = dict(os.environ, SLURM_LOCAL_DIR=base, SLURM_LOCAL_ACCOUNTING="1",
               SLURM_LOCAL_CPUS=os.environ.get("SLURM_LOCAL_CPUS", "8"))
    if shutil.which("sbatch") is None:
        try:
            proc = _script("install", env, timeout=600)
        except subprocess.TimeoutExpired:
            pytest.skip("installing SLURM took more than 10 minutes")
        if proc.returncode != 0 or shutil.which("sbatch") is None:
            shutil.rmtree(base, ignore_errors=True)
            pytest.skip(f"SLURM is not installed and cannot be: {_why(proc)}")
    try:
        proc = _script("start", env, timeout=300)
        started = proc.returncode == 0
    except subprocess.TimeoutExpired as e:
        proc, started = subprocess.CompletedProcess(e.cmd, 1, "", "start timed out after 300 s"), False
    if not started:
        _script("stop", env, timeout=120)
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"cannot start the local SLURM cluster: {_why(proc)}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = f"{base}/etc/slurm.conf"  # submitit's sbatch/sacct/scancel and the jobs read it
    try:
        yield base
    finally:
        _script("stop", env, timeout=180)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        shutil.rmtree(base, ignore_errors=True)
