"""`grass launch` / `grass status` without SLURM: --dry-run, --cluster debug and local, relaunch,
failures, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from grass.cli import main
from grass.results import read_result
from slurm.runner import StopOnSignal


def launch(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["launch", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def status(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(["status", *args]) == 0
    return capsys.readouterr().out


def run_dirs(root, experiment="smoke"):
    d = root / experiment
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")) if d.exists() else []


def test_dry_run_prints_runs_and_slurm_parameters_and_submits_nothing(capsys, tmp_path):
    rc, out, _ = launch(capsys, "smoke", "--cluster", "slurm", "--profile", "local", "--dry-run",
                        "--runs-dir", str(tmp_path), "--max-parallel", "3")
    assert rc == 0
    assert out.count("  submit  ") == 4 and "4 run(s): 4 to submit; 4 missing" in out
    assert "SLURM parameters (profile local):" in out and "partition=debug" in out and "array_parallelism=3" in out
    assert "time=10" in out and "cpus_per_task=1" in out  # the experiment's resources over the profile's
    assert out.rstrip().endswith("dry run: nothing submitted")
    assert run_dirs(tmp_path) == []
    rc, out, _ = launch(capsys, "smoke", "--cluster", "local", "--dry-run", "--only", "seed=1", "--runs-dir",
                        str(tmp_path))
    assert rc == 0 and out.count("  submit  ") == 2 and "local processes, at most 1 at once" in out


@pytest.mark.parametrize("args, message", [
    (["smok", "--cluster", "debug"], "unknown experiment 'smok'; valid experiments: "),
    (["smoke", "--cluster", "slurm", "--profile", "nope", "--dry-run"], "unknown profile 'nope'; valid profiles:"),
    (["quickstart", "--cluster", "slurm", "--dry-run"], "--cluster slurm needs --profile NAME; valid profiles:"),
    (["smoke", "--cluster", "debug", "--only", "method.name=full"], "matches none of the 4 runs"),
    (["smoke", "method.name=full", "--cluster", "debug"], "'method.name' is varied by experiment 'smoke'"),
    (["smoke", "train.max_step=3", "--cluster", "debug"], "did you mean 'train.max_steps'"),
    (["smoke", "--cluster", "local", "--max-parallel", "0"], "--max-parallel must be positive"),
])
def test_bad_input_is_one_line_and_exit_2_before_anything_runs(capsys, tmp_path, args, message):
    rc, out, err = launch(capsys, *args, "--runs-dir", str(tmp_path))
    assert rc == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert run_dirs(tmp_path) == []


def test_debug_and_local_run_the_smoke_grid_alike_and_relaunch_runs_nothing(capsys, tmp_path):
    rc, out, _ = launch(capsys, "smoke", "--cluster", "debug", "--runs-dir", str(tmp_path / "debug"))
    assert rc == 0 and "4 of 4 run(s) finished" in out
    rc, out, _ = launch(capsys, "smoke", "--cluster", "local", "--max-parallel", "2", "--runs-dir",
                        str(tmp_path / "local"))
    assert rc == 0 and "4 of 4 run(s) finished" in out, out
    losses = {}
    for mode in ("debug", "local"):
        dirs = run_dirs(tmp_path / mode)
        assert len(dirs) == 4
        for d in dirs:
            result = read_result(d)
            assert result["status"] == "success", result.get("error")
            job = json.loads((d / "job.json").read_text())
            assert job["cluster"] == mode and job["submitted_at"]
            losses.setdefault(d.name, []).append(result["train/final_loss"])
        if mode == "local":
            assert all((d / "local.log").is_file() for d in dirs)
    assert all(a == pytest.approx(b, rel=1e-5) for a, b in losses.values())  # same run ids, same numbers

    before = {d: (d / "result.json").stat().st_mtime_ns for d in run_dirs(tmp_path / "local")}
    rc, out, _ = launch(capsys, "smoke", "--cluster", "local", "--runs-dir", str(tmp_path / "local"))
    assert rc == 0 and "0 to submit" in out and out.rstrip().endswith("nothing to submit")
    assert before == {d: (d / "result.json").stat().st_mtime_ns for d in run_dirs(tmp_path / "local")}
    table = status(capsys, "smoke", "--runs-dir", str(tmp_path / "local"))
    assert "4 done, 0 failed, 0 missing" in table and table.count(" done ") == 4


def test_a_failed_run_shows_its_error_and_is_retried_only_on_request(capsys, tmp_path):
    bad = ["smoke", "data.train=/nonexistent/train.json", "--only", "method.name=lisa", "--only", "seed=0",
           "--runs-dir", str(tmp_path)]
    rc, out, _ = launch(capsys, *bad, "--cluster", "debug")
    assert rc == 1 and "FAILED" in out and "'/nonexistent/train.json' does not exist" in out
    table = status(capsys, *bad)
    assert "1 done" not in table and "0 done, 1 failed, 0 missing" in table
    assert "DataError: " in table and "'/nonexistent/train.json' does not exist" in table
    rc, out, _ = launch(capsys, *bad, "--cluster", "debug")
    assert rc == 0 and "use --retry-failed" in out and "nothing to submit" in out
    rc, out, _ = launch(capsys, *bad, "--cluster", "debug", "--retry-failed")
    assert rc == 1 and "1 to submit" in out
    (d,) = run_dirs(tmp_path)
    assert (d / "result.prev.json").is_file() and read_result(d)["status"] == "failed"


def test_a_grid_is_refused_where_precision_auto_would_resolve_unlike_its_finished_runs(capsys, tmp_path,
                                                                                     monkeypatch):
    """Relaunched on a CPU without native bf16, a bf16 grid's remaining runs would train in fp32
    under ids that pair with the finished ones: nothing starts, one line says what to do."""
    import grass.precision as precision

    grid = ["smoke", "train.precision=auto", "--runs-dir", str(tmp_path)]
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    rc, out, _ = launch(capsys, *grid, "--only", "seed=0", "--cluster", "debug")
    assert rc == 0 and "2 of 2 run(s) finished" in out
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    for cluster in ("local", "debug"):
        rc, out, err = launch(capsys, *grid, "--cluster", cluster)
        assert rc == 2 and err.count("\n") == 1 and "2 finished run(s) of experiment smoke got bf16" in err, err
        assert "started" not in out and len(run_dirs(tmp_path)) == 2


def test_a_run_whose_process_died_is_canceled_and_resubmitted(capsys, tmp_path):
    rc, out, _ = launch(capsys, "smoke", "--cluster", "debug", "--dry-run", "--only", "seed=0", "--only",
                        "method.name=lisa", "--runs-dir", str(tmp_path))
    run_id = out.split("  submit  ")[1].split()[0]
    d = tmp_path / "smoke" / run_id
    d.mkdir(parents=True)
    (d / "job.json").write_text(json.dumps({"cluster": "local", "pid": 2 ** 22 + 7, "log": str(d / "local.log")}))
    table = status(capsys, "smoke", "--only", "seed=0", "--only", "method.name=lisa", "--runs-dir", str(tmp_path))
    assert "canceled" in table and "process ended without a result.json" in table
    rc, out, _ = launch(capsys, "smoke", "--cluster", "debug", "--dry-run", "--only", "seed=0", "--only",
                        "method.name=lisa", "--runs-dir", str(tmp_path))
    assert "1 to submit" in out and "resumes" in out


def test_stop_on_signal_defers_then_forwards_to_the_previous_handler():
    calls = []
    previous = signal.signal(signal.SIGUSR1, lambda s, f: calls.append(s))
    try:
        with StopOnSignal((signal.SIGUSR1,), forward=True, grace_s=30) as stop:
            assert not stop.requested()
            os.kill(os.getpid(), signal.SIGUSR1)
            assert stop.requested() and calls == []  # deferred to the next step boundary
            stop.forward()
            assert calls == [signal.SIGUSR1]
        assert signal.alarm(0) == 0  # the grace alarm was disarmed
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_experiments_lists_every_definition(capsys):
    assert main(["experiments"]) == 0
    out = capsys.readouterr().out
    for name in ("smoke", "quickstart", "main_arith", "main_commonsense", "memory_throughput", "ablation_static",
                 "sensitivity", "lr_sweep"):
        assert f"\n{name} " in "\n" + out
    assert "[budgets: small, paper, tiny]" in out


class _FakeRun:
    """A local run's process: records the signals it gets; it ends after ``busy`` waits (a run in a
    held-out evaluation), or its wait is interrupted (a second Ctrl-C)."""

    def __init__(self, busy: int = 0, interrupt_wait: bool = False):
        self.signals, self.killed, self.busy, self.interrupt_wait, self.done = [], False, busy, interrupt_wait, False

    def send_signal(self, signum):
        self.signals.append(signum)
        self.done = not (self.busy or self.interrupt_wait)  # at a step boundary already: it ends

    def poll(self):
        return 0 if self.done or self.killed else None

    def wait(self, timeout=None):
        if self.interrupt_wait:
            raise KeyboardInterrupt
        if self.busy:
            self.busy -= 1
            raise subprocess.TimeoutExpired("runner", timeout)
        self.done = True

    def kill(self):
        self.killed = True


def test_local_runs_stop_at_their_step_boundary_and_a_second_ctrl_c_kills():
    from slurm.launch import _stop_local

    lines = []
    procs = [_FakeRun(busy=3), _FakeRun()]
    _stop_local(procs, lines.append)
    assert [p.signals for p in procs] == [[signal.SIGTERM]] * 2
    assert all(p.done for p in procs) and not any(p.killed for p in procs)  # waited through 3 time-outs
    assert "Ctrl-C again" in lines[0] and sum("still waiting for 1 run" in x for x in lines) == 3
    procs = [_FakeRun(interrupt_wait=True), _FakeRun()]
    _stop_local(procs, lines.append)
    assert all(p.killed for p in procs) and "last periodic checkpoint" in lines[-1]


def test_stop_signals_work_even_when_sigint_was_inherited_ignored():
    """A launcher started in the background by a script inherits SIGINT as ignored: inside
    stop_signals both SIGINT and SIGTERM still raise KeyboardInterrupt (so the runs are stopped at a
    step boundary), and the previous handlers come back afterwards."""
    import os
    import signal

    from slurm.launch import stop_signals

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `bash script.sh &` hands down
    term = signal.getsignal(signal.SIGTERM)
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with pytest.raises(KeyboardInterrupt), stop_signals():
                os.kill(os.getpid(), sig)
                for _ in range(1000):  # the handler runs between bytecodes
                    pass
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) is term
    finally:
        signal.signal(signal.SIGINT, before)


def test_the_job_runner_refuses_a_run_folder_whose_config_is_not_a_runs(tmp_path, capsys):
    from slurm.runner import main as runner_main

    (tmp_path / "config.yaml").write_text("seed: 3\n")  # defaults would make it a full fine-tuning run
    assert runner_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "names no model" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "result.json").exists()
