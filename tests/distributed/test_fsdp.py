"""FSDP2 (issue 19): every method sharded over 2 gloo processes on the CPU (``train.parallel=fsdp``).

For each method (full, lora, dora, lisa, grass) on tiny-llama, a 2-process FSDP run with
batch_size 2 must match a 1-process run with batch_size 4 (the same global batch): the same loss at
every step, the same final weights (gathered from the shards), the same GRASS gradient RMS (the
all-reduced sum of the shards' squares), the same active layers on both ranks, one result.json,
and per rank half the parameter, gradient and optimizer-state bytes of one process, exactly what
``grass memory --fsdp 2`` predicts. A run preempted by a signal only rank 1 sees resumes from its
sharded checkpoint to the uninterrupted trajectory (grass: the offload engine's local shards;
lisa: torch AdamW's DTensor state); resuming it with another world size is refused in one line.
A 2-task submitit job runs ``train.precision=bf16`` (the mixed-precision policy through layer
switches), and ``grass train`` under torchrun saves a Hugging Face model and evaluates on both
ranks. What FSDP refuses without processes: tests/unit/test_parallel.py.

Helpers (data, overrides, the Recorder, weight comparison) are test_ddp's. One ``torchrun`` launch
runs the other 2-process cases while the submitit job and the 1-process references run; this file
doubles as the worker (``python test_fsdp.py --worker OUT DATA``).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_ddp import (LOSS_RTOL, METHODS, REPO, Recorder, assert_same_weights, initial_state, launch,  # noqa: E402
                      losses, overrides, torchrun_output, write_data)

pytestmark = pytest.mark.distributed

FSDP = ["train.parallel=fsdp"]
SAVE = {"full": ["train.save_model=full"], "lora": ["train.save_model=adapter"]}
RESUMED = ("grass", "lisa")  # the offload engine's local shards; torch AdamW's DTensor state
BF16 = ["train.precision=bf16"]
BF16_RTOL = 2e-2  # bf16 all-gathers (FSDP's policy) vs autocast alone: not bit-comparable
CLI_EVAL = ["eval.benchmarks=[boolq]", "eval.limit=4", "eval.max_new_tokens=4", "eval.batch_size=4"]


def fsdp_overrides(method: str, runs_dir: Path, data: Path, experiment: str | None = None) -> list[str]:
    return overrides(method, runs_dir, data, 2, experiment) + FSDP


class BytePeaks:
    """``on_step_end`` callback: the peak byte accounting of this rank over the run's steps."""

    def __init__(self):
        self.peak: dict[str, int] = {}

    def __call__(self, step, model, optimizer, method) -> None:
        from grass.measure import byte_accounting

        for k, v in byte_accounting(model, optimizer, "cpu").items():
            self.peak[k] = max(self.peak.get(k, 0), v)


def full_state(model) -> dict:
    """Every rank: the whole weights, gathered from the shards (a collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


def offload_units(model) -> list:
    """The layer-wise units of the offload engine: embeddings, each decoder layer, head."""
    from grass.layers import find_layers

    lmap = find_layers(model)
    return [("embed", lmap.embed_params), *[(f"layer.{i}", lmap.layer_params(i)) for i in range(len(lmap))],
            ("head", lmap.head_params)]


def engine_vs_adamw(ctx=None) -> dict:
    """Three AdamW steps on tiny-llama by the offload engine through its staging slots (simulated on
    the CPU) and by torch.optim.AdamW; sharded over ``ctx`` when given. Returns the engine's
    weights, the largest difference to torch's, and the engine's state bytes."""
    import copy

    from grass.models.load import load_model
    from grass.optim.offload import LayerwiseOffloadAdamW

    torch.manual_seed(0)
    a, _ = load_model("tiny-llama")
    b = copy.deepcopy(a)
    if ctx is not None:
        from grass.distributed.fsdp import shard_model

        shard_model(a, ctx)
        shard_model(b, ctx)
    engine = LayerwiseOffloadAdamW(offload_units(a), lr=1e-2, weight_decay=0.1, _simulate_offload=True)
    adamw = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    ids = torch.randint(3, 250, (2, 16), generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        for model, opt in ((a, engine), (b, adamw)):
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    wa, wb = (full_state(m) if ctx is not None else m.state_dict() for m in (a, b))
    return {"weights": {k: v.detach().clone() for k, v in wa.items()},
            "max_diff": max(float((wa[k] - wb[k]).abs().max()) for k in wa), "state_bytes": engine.state_bytes()}


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

    def run(name: str, ov: list[str], **kw) -> None:
        cfg = load_config(None, ov)
        peaks = BytePeaks()
        with Recorder(gt) as rec:
            gt.train(cfg, progress=False, dist=ctx, on_step_end=peaks)
        record = rec.record(run_dir_for(cfg), state=full_state(rec.model), bytes=peaks.peak,
                            changes=ctx.wrapped.changes, **kw)
        torch.save(record, out / f"{name}.rank{ctx.rank}.pt")

    for method in METHODS:
        run(method, fsdp_overrides(method, out / "runs", data) + SAVE.get(method, []))

    # Preempted after step 3 by a signal that only rank 1 sees, then resumed from the checkpoint.
    for method in RESUMED:
        cfg = load_config(None, fsdp_overrides(method, out / "runs", data, experiment=f"resume-{method}"))
        calls = []

        def stop_requested() -> bool:
            calls.append(1)
            return ctx.rank == 1 and len(calls) == 3

        try:
            gt.train(cfg, progress=False, dist=ctx, stop_requested=stop_requested)
            raise AssertionError("the run was not preempted")
        except gt.Preempted:
            pass
        if ctx.rank == 0 and method == "grass":  # kept for the world-size test in pytest
            shutil.copytree(run_dir_for(cfg), out / "stale" / f"resume-{method}" / run_dir_for(cfg).name)
        ctx.barrier()
        run(f"resume-{method}", fsdp_overrides(method, out / "runs", data, experiment=f"resume-{method}"),
            preempted_at=len(calls))

    # The offload engine's staging path (simulated on the CPU) on the local shards of DTensors.
    torch.save(engine_vs_adamw(ctx), out / f"engine.rank{ctx.rank}.pt")

    # The command line under torchrun: save the model (gathered to rank 0), evaluate on both ranks.
    rc = cli_main(["train", "--no-progress", *fsdp_overrides("grass", out / "runs", data, experiment="cli"),
                   "train.save_model=full", *CLI_EVAL])
    assert rc == 0
    ctx.close()


def _submitit_task(out: str, data: str) -> dict:
    """One task of a 2-task submitit job: FSDP lisa in bf16, where units frozen at FSDP's lazy init
    are trained after a switch (the mixed-precision refresh)."""
    torch.set_num_threads(1)
    from grass.config import load_config
    from grass.distributed import init_distributed
    from grass.train import train

    ctx = init_distributed("cpu")
    assert ctx is not None and ctx.world_size == 2
    cfg = load_config(None, fsdp_overrides("lisa", Path(out), Path(data), experiment="bf16") + BF16)
    try:
        result = train(cfg, progress=False, dist=ctx)
        changes = ctx.wrapped.changes
    finally:
        ctx.close()
    return {"rank": ctx.rank, "changes": changes, "run_dir": result["run_dir"]}


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("data") / "train.jsonl")


@pytest.fixture(scope="module")
def launched(tmp_path_factory, data):
    with launch(__file__, tmp_path_factory.mktemp("fsdp"), data, _submitit_task, timeout_min=15) as handles:
        yield handles


@pytest.fixture(scope="module")
def one_proc(tmp_path_factory, data, launched) -> dict:
    """1-process references (batch 4 = the 2-process global batch), run while torchrun works."""
    import grass.train as gt
    from grass.config import load_config
    from grass.results import run_dir_for

    out = tmp_path_factory.mktemp("single")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    refs = {}
    try:
        for name, method, extra in [*[(m, m, []) for m in METHODS], ("bf16", "lisa", BF16)]:
            cfg = load_config(None, overrides(method, out, data, 1, experiment=name) + extra)
            peaks = BytePeaks()
            with Recorder(gt) as rec:
                gt.train(cfg, progress=False, on_step_end=peaks)
            refs[name] = rec.record(run_dir_for(cfg), bytes=peaks.peak)
    finally:
        torch.set_num_threads(n)
    return refs


@pytest.fixture(scope="module")
def two_proc(launched, one_proc) -> Path:
    return torchrun_output(launched, timeout_s=900)


def ranks(two_proc: Path, name: str) -> list[dict]:
    return [torch.load(two_proc / f"{name}.rank{r}.pt", weights_only=False) for r in (0, 1)]


# -- tests ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_fsdp_two_processes_match_one(method, two_proc, one_proc, data, tmp_path):
    from grass.memory.model import GIB, predict

    ref, (r0, r1) = one_proc[method], ranks(two_proc, method)

    # The same loss at every step and the same final weights (gathered from the shards).
    assert losses(r0["run_dir"]) == pytest.approx(losses(ref["run_dir"]), rel=LOSS_RTOL), f"{method}: losses differ"
    init = initial_state(method, data, tmp_path)
    assert_same_weights(r0["state"], ref["state"], init, f"fsdp {method} vs 1 process")

    # The same active layers on both ranks and as in one process; GRASS: the same per-step RMS
    # and MGN on both ranks and as one process measures on the whole gradient.
    assert r0["active"] == r1["active"] == ref["active"]
    if method in ("lisa", "grass"):
        assert len({tuple(a) for a in ref["active"] if a}) >= 2, "the test needs at least one layer switch"
        assert r0["changes"] >= 2, "the trainable set never changed under FSDP"
    if method == "grass":
        for step, (a, b, c) in enumerate(zip(r0["rms"], r1["rms"], ref["rms"], strict=True)):
            assert a == b, f"grass step {step}: ranks measured different gradient RMS"
            assert a == pytest.approx(c, rel=1e-4), f"grass step {step}: RMS differs from one process"
        # The probe's hooks ran on the sharded parameters and freed each layer's shard as it came:
        # no decoder-layer gradient is left when backward ends (updates: the active layers' are).
        assert r0["held"][:2] == r1["held"][:2] == ref["held"][:2] == [0, 0]
        assert all(h > 0 for h in r0["held"][2:])

    # Exactly one result.json, written by rank 0 only.
    assert [r0["result_writes"], r1["result_writes"]] == [1, 0]
    run_dir = Path(r0["run_dir"])
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "success" and result["train/parallel"] == "fsdp"
    assert len(list(run_dir.glob("**/result.json"))) == 1

    # Per rank: half the bytes of one process (tiny-llama's dims are even, so the halves are exact;
    # optimizer state but for AdamW's 4-byte step counter per tensor, which every rank keeps).
    for rec in (r0, r1):
        got, one = rec["bytes"], ref["bytes"]
        assert 2 * got["params_bytes"] == one["params_bytes"]
        assert 2 * got["grads_bytes"] == one["grads_bytes"]
        assert got["optimizer_state_device_bytes"] == pytest.approx(one["optimizer_state_device_bytes"] / 2, rel=1e-2)
    # ... and what the planner predicts for rank 0 of 2 (result.json holds rank 0's peaks).
    p = predict("tiny-llama", method, precision="fp32", device="cpu", n_active_layers=2, fsdp=2)
    measured = {k: round(result[f"mem/{m}"] * GIB) for k, m in
                (("weights", "params_gib"), ("grads", "grads_gib"), ("optimizer_device", "optimizer_state_device_gib"),
                 ("optimizer_host", "optimizer_state_host_gib"))}
    assert measured == {k: getattr(p, k) for k in measured}, f"{method}: per-rank bytes differ from the planner"
    assert result["params/trainable"] == p.trainable_params


def test_fsdp_saved_models(two_proc):
    """train.save_model under FSDP: rank 0 writes the gathered weights in Hugging Face format."""
    from safetensors.torch import load_file

    full = ranks(two_proc, "full")[0]
    saved = load_file(Path(full["run_dir"]) / "model" / "model.safetensors")
    assert saved.keys() == full["state"].keys()
    assert all(torch.equal(saved[k], full["state"][k]) for k in saved)
    lora = ranks(two_proc, "lora")[0]
    adapter = load_file(Path(lora["run_dir"]) / "model" / "adapter_model.safetensors")
    trained = {k: v for k, v in lora["state"].items() if "lora_" in k}
    assert len(adapter) == len(trained) > 0
    for k, v in adapter.items():  # PEFT drops the adapter name: '...lora_A.weight' for '...lora_A.default.weight'
        assert torch.equal(v, trained[k.replace("base_model.model.", "").replace(".weight", ".default.weight")])


@pytest.mark.parametrize("method", RESUMED)
def test_fsdp_resume_after_preemption(method, two_proc, one_proc, data, tmp_path):
    """Both ranks stop at the same step, save their shards, and resume to the uninterrupted run."""
    ref, recs = one_proc[method], ranks(two_proc, f"resume-{method}")
    assert [rec["preempted_at"] for rec in recs] == [3, 3]
    assert losses(recs[0]["run_dir"]) == pytest.approx(losses(ref["run_dir"]), rel=LOSS_RTOL)
    assert_same_weights(recs[0]["state"], ref["state"], initial_state(method, data, tmp_path),
                        f"resumed fsdp {method} vs 1 process")
    for rec in recs:
        assert rec["active"] == ref["active"][3:]
        if method == "grass":  # the MGN window and estimate were restored
            for got, want in zip(rec["rms"], ref["rms"][3:], strict=True):
                assert got == pytest.approx(want, rel=1e-4)
    assert not (Path(recs[0]["run_dir"]) / "checkpoint").exists()


def test_fsdp_checkpoint_refused_elsewhere(two_proc, data, capsys):
    """A sharded checkpoint of 2 processes is not resumed by 1 process (one line, exit 2), nor
    loaded without FSDP."""
    from grass import checkpoint as ckpt
    from grass.cli import main
    from grass.errors import GrassError

    stale = two_proc / "stale"
    (run_dir,) = (stale / "resume-grass").iterdir()
    assert (run_dir / "checkpoint" / "sharded").is_dir()
    rc = main(["train", "--no-progress", *fsdp_overrides("grass", stale, data, experiment="resume-grass")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(lines) == 1 and "checkpointed with 2 process(es)" in lines[0] and "Traceback" not in err
    with pytest.raises(GrassError, match="train.parallel=fsdp"):
        ckpt.load_checkpoint(run_dir, model=None, optimizer=None, scheduler=None, method=None)


def test_fsdp_bf16_under_submitit(launched, one_proc):
    """A 2-task submitit job sets up the process group by itself and runs FSDP with
    train.precision=bf16 (bf16 all-gathers, fp32 reduce-scatters) through layer switches, training
    like one bf16-autocast process; a unit frozen at FSDP's lazy init would otherwise assign bf16
    gradients to fp32 parameters and fail."""
    job, folder = launched["job"], launched["submitit_dir"]
    if job is None:
        pytest.skip("submitit is not installed (pip install grass-suite[slurm])")
    try:
        results = job.results()
    except Exception as e:  # show the tasks' logs
        logs = "\n".join(p.read_text()[-3000:] for p in (folder / "logs").glob("*.err"))
        raise AssertionError(f"submitit job failed: {e}\n{logs}") from None
    assert sorted(r["rank"] for r in results) == [0, 1] and min(r["changes"] for r in results) >= 2
    run_dir = Path(results[0]["run_dir"])
    assert len(list(run_dir.parent.glob("*/result.json"))) == 1
    assert losses(run_dir) == pytest.approx(losses(one_proc["bf16"]["run_dir"]), rel=BF16_RTOL)


def test_fsdp_offload_engine_on_shards(two_proc):
    """The offload engine, staging its state through (simulated) device slots, updates each rank's
    local shards exactly as torch AdamW updates the DTensor parameters, and matches the unsharded
    engine; each rank's host state is half of one process's (each rank offloads its own shards)."""
    one = engine_vs_adamw()
    for rec in ranks(two_proc, "engine"):
        assert rec["max_diff"] < 1e-6 and one["max_diff"] < 1e-6
        assert max(float((rec["weights"][k] - one["weights"][k]).abs().max()) for k in one["weights"]) < 1e-5
        host, host_one = rec["state_bytes"]["host"], one["state_bytes"]["host"]
        assert host > 0 and host == pytest.approx(host_one / 2, rel=1e-2)
        assert rec["state_bytes"]["device"] * 2 == pytest.approx(one["state_bytes"]["device"], rel=1e-2)


def test_fsdp_cli_under_torchrun(two_proc, one_proc):
    """``grass train train.parallel=fsdp`` under torchrun: the reference losses, one result with
    the evaluation both ranks ran, the saved model."""
    (run_dir,) = (two_proc / "runs" / "cli").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "success" and result["train/parallel"] == "fsdp"
    assert 0 <= result["acc/boolq"] <= 1
    assert losses(run_dir) == pytest.approx(losses(one_proc["grass"]["run_dir"]), rel=LOSS_RTOL)
    assert (run_dir / "model" / "model.safetensors").is_file() and (run_dir / "model" / "tokenizer.json").is_file()
    assert not (run_dir / "checkpoint").exists()


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--worker":
    sys.path.insert(0, str(REPO))
    _worker(Path(sys.argv[2]), Path(sys.argv[3]))
