"""DDP (issue 10): every method under torch.distributed, 2 gloo processes on the CPU.

For each method (full, lora, dora, lisa, grass) on tiny-llama, a 2-process run with batch_size 2
must match a 1-process run with batch_size 4 (the same global batch, 2 micro-batches per step):
the same loss at every step, the same final weights, the same GRASS per-step gradient RMS, the
same active layers on both ranks, and exactly one writer of result.json and metrics.jsonl.

The training data have answers of very different lengths, so the two ranks see different numbers
of label tokens: a per-rank token-mean loss would give DDP a different gradient than one process.
The layer-wise runs switch layers every 2 steps, so a DDP that keeps the buckets it built at
step 0 leaves the later layers unsynchronised; ``test_naive_ddp_is_caught`` runs exactly that
implementation and checks that the comparison fails for it.

Cost: one ``torchrun`` launch of 2 processes runs every 2-process case (imports dominate on a
2-core machine), plus one submitit local 2-task job; the 1-process references run in pytest.
This file doubles as the torchrun worker (``python test_ddp.py --worker OUT DATA``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.distributed

METHODS = ("full", "lora", "dora", "lisa", "grass")
STEPS = 6
GLOBAL_MICRO_BATCH = 4  # examples per micro-batch over all processes; 2 micro-batches per step
REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# float32 sums of two halves vs one whole differ in the last bits; Adam then amplifies noise only
# in near-zero gradient entries. The bugs this file guards against change updates by O(lr).
LOSS_RTOL = 1e-5
UPDATE_RTOL = 1e-4   # ||w2 - w1|| / ||w1 - w0|| over all weights
WEIGHT_ATOL = 5e-5   # max |w2 - w1| entry-wise (lr = 1e-3: a wrong update is ~1e-3)


def overrides(method: str, runs_dir: Path, data: Path, world: int, experiment: str | None = None) -> list[str]:
    out = [f"method.name={method}", "model.name=tiny-llama", f"train.max_steps={STEPS}",
           f"train.batch_size={GLOBAL_MICRO_BATCH // world}", "train.grad_accum=2", "train.seq_len=256",
           "train.lr=1e-3", "train.warmup_ratio=0", "train.device=cpu", "log.wandb=disabled",
           f"log.runs_dir={runs_dir}", f"log.experiment={experiment or f'world{world}'}", f"data.train={data}",
           "seed=3"]
    if method in ("lora", "dora"):
        out.append("method.dropout=0")  # dropout masks depend on how the batch is split
    if method in ("lisa", "grass"):
        out += ["method.n_active_layers=2", "method.switch_every=2"]
    if method == "grass":
        out += ["method.probe_steps=2", "method.refresh_every=2"]
    return out


def write_data(path: Path) -> Path:
    """Short prompts, answers from 1 to ~70 characters: label tokens differ a lot between ranks."""
    rows = []
    for i in range(24):
        answer = " ".join(["yes"] * (1 + (i * 7) % 17)) if i % 3 else str(i)
        rows.append({"instruction": f"Say {i}.", "input": "", "output": answer})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


class Recorder:
    """Patches grass.train to capture the trained model, the per-step active layers and GRASS's
    RMS window, and the calls of write_result -- without touching the training loop."""

    def __init__(self, train_module):
        self.tm = train_module
        self.model = None
        self.active: list[list[int]] = []
        self.rms: list[list[float] | None] = []
        self.held: list[int | None] = []
        self.result_writes = 0
        self._saved = (train_module.load_model, train_module.get_method, train_module.write_result)

    def __enter__(self) -> "Recorder":
        load_model, get_method, write_result = self._saved
        rec = self

        def load(*a, **kw):
            model, tok = load_model(*a, **kw)
            rec.model = model  # methods train it in place (PEFT injects adapters into it)
            return model, tok

        def method(name):
            cls = get_method(name)

            class Recorded(cls):
                def on_after_backward(self, step):
                    lmap = getattr(self, "lmap", None)  # decoder-layer gradients left after backward
                    rec.held.append(None if lmap is None else sum(
                        p.grad is not None for i in range(len(lmap)) for p in lmap.layer_params(i)))
                    super().on_after_backward(step)
                    rec.active.append(sorted(getattr(self, "active", [])))
                    est = getattr(self, "estimator", None)
                    rec.rms.append(None if est is None else (est.win_sum.tolist() + est.mgn.tolist()))

            return Recorded

        def write(*a, **kw):
            rec.result_writes += 1
            return write_result(*a, **kw)

        self.tm.load_model, self.tm.get_method, self.tm.write_result = load, method, write
        return self

    def __exit__(self, *exc) -> None:
        self.tm.load_model, self.tm.get_method, self.tm.write_result = self._saved

    def record(self, run_dir: Path, state: dict | None = None, **extra) -> dict:
        """What the tests compare; ``state``: the weights, if not the model's own state dict (FSDP
        gathers its shards into one)."""
        state = self.model.state_dict() if state is None else state
        return {"state": {k: v.detach().clone() for k, v in state.items()},
                "active": self.active, "rms": self.rms, "held": self.held, "result_writes": self.result_writes,
                "run_dir": str(run_dir), **extra}


def initial_state(method: str, data: Path, tmp: Path) -> dict:
    """The weights before training (same seed -> same init and adapters)."""
    from grass.config import load_config
    from grass.models.load import load_model
    from grass.registry import get_method
    from grass.train import seed_everything

    cfg = load_config(None, overrides(method, tmp, data, 1))
    seed_everything(cfg.seed)
    model, _ = load_model(cfg.model.name)
    get_method(method)(cfg.method, cfg).prepare(model)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# -- the torchrun worker --------------------------------------------------------------------------
def _worker(out: Path, data: Path) -> None:
    torch.set_num_threads(1)
    import grass.train as gt
    from grass.cli import main as cli_main
    from grass.config import load_config
    from grass.distributed import DistContext
    from grass.results import run_dir_for

    ctx = DistContext.from_env("cpu")
    assert ctx.world_size == 2 and ctx.backend == "gloo"
    for method in METHODS:
        cfg = load_config(None, overrides(method, out / "runs", data, 2))
        with Recorder(gt) as rec:
            gt.train(cfg, progress=False, dist=ctx)
        torch.save(rec.record(run_dir_for(cfg), ddp_builds=ctx.wrapped.builds), out / f"{method}.rank{ctx.rank}.pt")

    # Preempted after step 2 by a signal that only rank 1 sees, then resumed from the checkpoint.
    cfg = load_config(None, overrides("grass", out / "runs", data, 2, experiment="resume"))
    calls = []

    def stop_requested() -> bool:
        calls.append(1)
        return ctx.rank == 1 and len(calls) == 3

    try:
        gt.train(cfg, progress=False, dist=ctx, stop_requested=stop_requested)
        raise AssertionError("the run was not preempted")
    except gt.Preempted:
        pass
    preempted_at = len(calls)
    with Recorder(gt) as rec:
        gt.train(cfg, progress=False, dist=ctx)
    torch.save(rec.record(run_dir_for(cfg), preempted_at=preempted_at), out / f"resume.rank{ctx.rank}.pt")

    # The implementation the tests must catch: one DDP built when training starts.
    class NaiveDDP(DistContext):
        def wrap(self, model):
            return torch.nn.parallel.DistributedDataParallel(model)

    naive = NaiveDDP(ctx.rank, ctx.world_size, ctx.local_rank, ctx.device, ctx.backend)
    cfg = load_config(None, overrides("lisa", out / "runs", data, 2, experiment="naive"))
    with Recorder(gt) as rec:
        gt.train(cfg, progress=False, dist=naive)
    torch.save(rec.record(run_dir_for(cfg)), out / f"naive.rank{ctx.rank}.pt")

    # The command line under torchrun (the process group is reused, not re-created).
    rc = cli_main(["train", "--no-progress", *overrides("grass", out / "runs", data, 2, experiment="cli")])
    assert rc == 0
    ctx.close()


def _submitit_task(out: str, data: str) -> dict:
    """One task of a submitit job: join the group through submitit's environment, train lisa."""
    torch.set_num_threads(1)
    from grass.config import load_config
    from grass.distributed import init_distributed
    from grass.train import train

    ctx = init_distributed("cpu")
    assert ctx is not None and ctx.world_size == 2
    cfg = load_config(None, overrides("lisa", Path(out), Path(data), 2, experiment="submitit"))
    try:
        result = train(cfg, progress=False, dist=ctx)
    finally:
        ctx.close()
    return {"rank": ctx.rank, "loss": result["train/final_loss"]}


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("data") / "train.jsonl")


@contextmanager
def launch(worker: str, out: Path, data: Path, task, timeout_min: int):
    """Start ``torchrun`` with 2 processes of ``worker`` (``--worker OUT DATA``) and, where submitit is
    installed, a 2-task submitit local job of ``task(runs_dir, data)``, both at once; the 1-process
    references then run in pytest meanwhile (process start-up and imports dominate, and they overlap).

    Yields ``{"proc", "out", "log", "job", "submitit_dir"}``; kills what is still running on exit.
    """
    path = os.pathsep.join([str(Path(worker).parent), str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    cmd = [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", worker, "--worker", str(out),
           str(data)]
    log = open(out / "torchrun.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    job, sub_dir = None, out / "submitit"
    try:
        try:
            import submitit
        except ImportError:
            submitit = None
        if submitit is not None:
            saved = dict(os.environ)
            # the tasks unpickle ``task`` by reference: they must be able to import its file
            os.environ.update(PYTHONPATH=path, OMP_NUM_THREADS="1")
            try:
                ex = submitit.LocalExecutor(folder=sub_dir / "logs")
                ex.update_parameters(tasks_per_node=2, timeout_min=timeout_min)
                job = ex.submit(task, str(sub_dir / "runs"), str(data))
            finally:
                os.environ.clear()
                os.environ.update(saved)
        yield {"proc": proc, "out": out, "log": out / "torchrun.log", "job": job, "submitit_dir": sub_dir}
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
        if job is not None and not job.done():
            job.cancel()


def torchrun_output(launched: dict, timeout_s: int) -> Path:
    """Wait for the torchrun worker of :func:`launch`; its output folder, or a failure with its log."""
    try:
        rc = launched["proc"].wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        launched["proc"].kill()
        rc = "timeout"
    assert rc == 0, f"torchrun failed ({rc}):\n{launched['log'].read_text()[-10000:]}"
    return launched["out"]


@pytest.fixture(scope="module")
def launched(tmp_path_factory, data):
    with launch(__file__, tmp_path_factory.mktemp("ddp"), data, _submitit_task, timeout_min=10) as handles:
        yield handles


@pytest.fixture(scope="module")
def two_proc(launched, one_proc) -> Path:
    return torchrun_output(launched, timeout_s=600)


@pytest.fixture(scope="module")
def one_proc(tmp_path_factory, data, launched) -> dict:
    import grass.train as gt
    from grass.config import load_config
    from grass.results import run_dir_for

    out = tmp_path_factory.mktemp("single")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    refs = {}
    try:
        for method in METHODS:
            cfg = load_config(None, overrides(method, out, data, 1))
            with Recorder(gt) as rec:
                gt.train(cfg, progress=False)
            refs[method] = rec.record(run_dir_for(cfg))
    finally:
        torch.set_num_threads(n)
    return refs


def losses(run_dir: str | Path) -> list[float]:
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(STEPS)), "metrics.jsonl written by more than one rank?"
    return [r["loss"] for r in rows]


def assert_same_weights(got: dict, ref: dict, init: dict, label: str) -> None:
    assert got.keys() == ref.keys()
    num = sum(float((got[k].double() - ref[k].double()).pow(2).sum()) for k in ref)
    den = sum(float((ref[k].double() - init[k].double()).pow(2).sum()) for k in ref)
    worst = max(float((got[k] - ref[k]).abs().max()) for k in ref)
    assert den > 0, f"{label}: training changed no weight"
    rel = (num / den) ** 0.5
    assert rel < UPDATE_RTOL and worst < WEIGHT_ATOL, \
        f"{label}: weights differ (update rel. diff {rel:.2e}, max abs diff {worst:.2e})"


# -- tests ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_two_processes_match_one(method, two_proc, one_proc, data, tmp_path):
    ref = one_proc[method]
    ranks = [torch.load(two_proc / f"{method}.rank{r}.pt", weights_only=False) for r in (0, 1)]

    # The same loss at every step (rank 0's metrics.jsonl is the global token mean).
    ref_loss, got_loss = losses(ref["run_dir"]), losses(ranks[0]["run_dir"])
    assert got_loss == pytest.approx(ref_loss, rel=LOSS_RTOL), f"{method}: loss trajectories differ"

    # The same final weights, on both ranks.
    init = initial_state(method, data, tmp_path)
    for r, rec in enumerate(ranks):
        assert_same_weights(rec["state"], ref["state"], init, f"{method} rank {r} vs 1 process")

    # The same active layers on both ranks and as in one process; GRASS: the same per-step RMS
    # (window sums) and MGN, i.e. measured on the all-reduced gradient.
    assert ranks[0]["active"] == ranks[1]["active"] == ref["active"]
    if method in ("lisa", "grass"):
        assert len({tuple(a) for a in ref["active"] if a}) >= 2, "the test needs at least one layer switch"
        assert ranks[0]["ddp_builds"] >= 2, "DDP was not rebuilt after a switch"
    if method == "grass":
        for step, (a, b, c) in enumerate(zip(ranks[0]["rms"], ranks[1]["rms"], ref["rms"])):
            assert a == b, f"grass step {step}: ranks measured different gradient RMS"
            assert a == pytest.approx(c, rel=1e-4), f"grass step {step}: RMS differs from one process"

    # Exactly one result.json, written by rank 0 only.
    assert [rec["result_writes"] for rec in ranks] == [1, 0]
    run_dir = Path(ranks[0]["run_dir"])
    assert json.loads((run_dir / "result.json").read_text())["status"] == "success"
    assert len(list(run_dir.parent.glob("*/result.json"))) == len(METHODS) and \
        len(list(run_dir.glob("**/result.json"))) == 1


def test_resume_after_preemption(two_proc, one_proc, data, tmp_path):
    """A stop seen by rank 1 only stops both ranks at the same step; both resume from rank 0's
    checkpoint (GRASS mid-period: sampler, MGN window, offloaded AdamW state) and finish exactly
    where an uninterrupted 1-process run does."""
    ref = one_proc["grass"]
    ranks = [torch.load(two_proc / f"resume.rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [rec["preempted_at"] for rec in ranks] == [3, 3]
    assert losses(ranks[0]["run_dir"]) == pytest.approx(losses(ref["run_dir"]), rel=LOSS_RTOL)
    init = initial_state("grass", data, tmp_path)
    for r, rec in enumerate(ranks):
        assert_same_weights(rec["state"], ref["state"], init, f"resumed grass rank {r} vs 1 process")
        assert rec["active"] == ref["active"][3:]
        for got, want in zip(rec["rms"], ref["rms"][3:], strict=True):
            assert got == pytest.approx(want, rel=1e-4)
    assert not (Path(ranks[0]["run_dir"]) / "checkpoint").exists()


def test_naive_ddp_is_caught(two_proc, one_proc, data, tmp_path):
    """DDP built once when training starts (over the embeddings and head LISA trains at step 0)
    never all-reduces the decoder layers drawn later: the ranks drift apart and the comparison
    above fails. This proves the comparison is sensitive to the stale-bucket bug."""
    ranks = [torch.load(two_proc / f"naive.rank{r}.pt", weights_only=False) for r in (0, 1)]
    init = initial_state("lisa", data, tmp_path)
    for rec in ranks:
        with pytest.raises(AssertionError, match="weights differ"):
            assert_same_weights(rec["state"], one_proc["lisa"]["state"], init, "naive DDP")
    diverged = max(float((ranks[0]["state"][k] - ranks[1]["state"][k]).abs().max()) for k in ranks[0]["state"])
    assert diverged > 1e-4, "with stale buckets the two replicas should differ"


def test_cli_under_torchrun(two_proc, one_proc):
    """``grass train`` under torchrun: one run directory, one result.json, the reference losses."""
    dirs = list((two_proc / "runs" / "cli").iterdir())
    assert len(dirs) == 1 and (dirs[0] / "result.json").is_file()
    assert json.loads((dirs[0] / "result.json").read_text())["status"] == "success"
    assert losses(dirs[0]) == pytest.approx(losses(one_proc["grass"]["run_dir"]), rel=LOSS_RTOL)
    assert not (dirs[0] / "checkpoint").exists()


def test_submitit_two_tasks(launched, one_proc):
    """A submitit job with 2 tasks (local executor) sets up the process group by itself."""
    job, folder = launched["job"], launched["submitit_dir"]
    if job is None:
        pytest.skip("submitit is not installed (pip install grass-suite[slurm])")
    try:
        results = job.results()
    except Exception as e:  # show the tasks' logs
        logs = "\n".join(p.read_text()[-3000:] for p in (folder / "logs").glob("*.err"))
        raise AssertionError(f"submitit job failed: {e}\n{logs}") from None
    assert sorted(r["rank"] for r in results) == [0, 1]
    run_dirs = list((folder / "runs" / "submitit").iterdir())
    assert len(run_dirs) == 1 and len(list(run_dirs[0].glob("result.json"))) == 1
    assert losses(run_dirs[0]) == pytest.approx(losses(one_proc["lisa"]["run_dir"]), rel=LOSS_RTOL)


def test_single_process_needs_no_group(monkeypatch):
    """Without torchrun/submitit, or with WORLD_SIZE=1, training stays single-process."""
    from grass.distributed import init_distributed

    for var in ("RANK", "WORLD_SIZE", "SUBMITIT_EXECUTOR"):
        monkeypatch.delenv(var, raising=False)
    assert init_distributed("cpu") is None
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert init_distributed("cpu") is None


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--worker":
    sys.path.insert(0, str(REPO))
    _worker(Path(sys.argv[2]), Path(sys.argv[3]))
