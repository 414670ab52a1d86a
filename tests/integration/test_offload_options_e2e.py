"""Every advertised option of the layer-wise methods, end to end through ``grass train`` (issue 15).

One case per combination of the documented values of ``state_policy`` (reset | keep | offload),
``overlap`` (step | backward), ``offload_chunk_mb`` (null = whole layers, 64 = the default, and
0.01 so that chunks end inside parameters) and ``offload_fp32_state`` (true | false), for ``lisa``
and ``grass``, with fp32 and bf16 weights. Each case trains tiny-llama for 6 steps with a layer
switch every 2 steps, once straight through and once stopped after step 4 (a checkpoint) and
resumed, through ``grass.cli.main(["train", ...])``, and checks: only the active layers (and the
embeddings/head on update steps) change at each step, the loss is finite, the resumed run equals
the uninterrupted one bit for bit. Offloaded cases set ``GRASS_SIMULATE_OFFLOAD=1`` so that on a
CPU the engine really stages through its slots (chunks, write-backs, flush on checkpoint); on a
GPU machine they offload for real.

Left out as redundant: ``offload_fp32_state=true`` with fp32 weights (fp32 moments and no master
either way: the same code path and bytes as ``false``). Refused combinations exit 2 with one
line naming the field.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import grass.train as train_mod
from grass.cli import main

STEPS, STOP_AFTER, SWITCH = 6, 4, 2
REAL_TRAIN = train_mod.train


def _cases():
    out = []
    for method in ("lisa", "grass"):
        for dtype in ("float32", "bfloat16"):
            for policy in ("reset", "keep"):
                out.append((method, dtype, policy, "step", None, None))
            for overlap in ("step", "backward"):
                for chunk in ("null", "64", "0.01"):
                    for fp32 in (("true", "false") if dtype == "bfloat16" else ("false",)):
                        out.append((method, dtype, "offload", overlap, chunk, fp32))
    return out


def _id(case):
    method, dtype, policy, overlap, chunk, fp32 = case
    parts = [method, "bf16" if dtype == "bfloat16" else "fp32", policy]
    if policy == "offload":
        parts += [overlap, f"chunk{chunk}", f"fp32state{fp32}"]
    return "-".join(parts)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("data") / "train.json"
    p.write_text(json.dumps([{"instruction": f"Repeat {i}.", "input": "", "output": "word " * 20} for i in range(16)]))
    return p


def _argv(case, data_file: Path, runs: Path) -> list[str]:
    method, dtype, policy, overlap, chunk, fp32 = case
    argv = ["train", "--no-progress", f"log.runs_dir={runs}", "log.wandb=disabled", "model.name=tiny-llama",
            f"model.dtype={dtype}", f"method.name={method}", f"train.max_steps={STEPS}", "train.seq_len=32",
            "train.batch_size=2", "train.lr=1e-3", "train.warmup_ratio=0", "train.checkpoint_every=2",
            f"data.train={data_file}", f"method.state_policy={policy}", f"method.switch_every={SWITCH}",
            "method.n_active_layers=2"]
    if method == "grass":
        argv += ["method.probe_steps=1"]
    if policy == "offload":
        argv += [f"method.overlap={overlap}", f"method.offload_chunk_mb={chunk}", f"method.offload_fp32_state={fp32}"]
        if overlap == "backward":
            argv += ["train.max_grad_norm=0"]
    return argv


def _run(monkeypatch, argv, stop_after=None) -> dict:
    """``grass train``; returns each step's (active layers, parameters after the step)."""
    steps: dict[int, tuple] = {}

    def record(step, model, optimizer, method):
        steps[step] = (sorted(method.active), {n: p.detach().clone() for n, p in model.named_parameters()})

    def wrapped(cfg, **kw):
        stop = (lambda: len(steps) >= stop_after) if stop_after else None  # polled after every step
        return REAL_TRAIN(cfg, on_step_end=record, stop_requested=stop, **kw)

    monkeypatch.setattr(train_mod, "train", wrapped)
    if stop_after:
        with pytest.raises(train_mod.Preempted):
            main(argv)
    else:
        assert main(argv) == 0
    return steps


def _unit(name: str) -> str:
    parts = name.split(".")
    return f"layer.{parts[parts.index('layers') + 1]}" if "layers" in parts else "always"


def _check_only_active_change(steps: dict, initial: dict, probe_steps: int) -> None:
    prev = initial
    for step in sorted(steps):
        active, params = steps[step]
        changed = {_unit(n) for n, p in params.items() if not torch.equal(p, prev[n])}
        if step < probe_steps:
            assert changed == set(), f"step {step} (probe) changed {changed}"
        else:
            assert changed == {f"layer.{i}" for i in active} | {"always"}, (step, active, changed)
        prev = params


def _assert_same_trajectory(a: dict, b: dict) -> None:
    """Two straight runs of :func:`_run`: every step, the same active layers and identical weights."""
    assert sorted(a) == sorted(b) == list(range(STEPS))
    for step in range(STEPS):
        (a_active, a_params), (b_active, b_params) = a[step], b[step]
        assert a_active == b_active
        assert all(torch.equal(a_params[n], b_params[n]) for n in a_params), f"step {step}"


@pytest.mark.parametrize("case", _cases(), ids=_id)
def test_option_trains_switches_and_resumes_identically(case, data_file, tmp_path, monkeypatch):
    method, dtype, policy, overlap, chunk, fp32 = case
    if policy == "offload":
        monkeypatch.setenv("GRASS_SIMULATE_OFFLOAD", "1")
    straight = _run(monkeypatch, _argv(case, data_file, tmp_path / "a"))
    assert sorted(straight) == list(range(STEPS))
    torch.manual_seed(0)  # the model is built from the run seed; only the base weights are needed
    from grass.models.load import load_model

    base = dict(load_model("tiny-llama", dtype)[0].named_parameters())
    initial = {n: p.detach() for n, p in base.items()}
    _check_only_active_change(straight, initial, 1 if method == "grass" else 0)
    assert len({tuple(straight[s][0]) for s in straight}) >= 2, "no layer switch happened"

    runs_b = tmp_path / "b"
    first = _run(monkeypatch, _argv(case, data_file, runs_b), stop_after=STOP_AFTER)
    assert sorted(first) == list(range(STOP_AFTER))
    rest = _run(monkeypatch, _argv(case, data_file, runs_b))
    assert sorted(rest) == list(range(STOP_AFTER, STEPS))  # resumed from the checkpoint
    for step, (active, params) in {**first, **rest}.items():
        want_active, want = straight[step]
        assert active == want_active, step
        for n, p in params.items():
            assert torch.equal(p, want[n]), f"step {step}: {n} differs after resume"

    rows = [json.loads(line) for run in (tmp_path / "a", runs_b)
            for line in next(run.rglob("metrics.jsonl")).read_text().splitlines()]
    assert rows and all(math.isfinite(r["loss"]) for r in rows)


@pytest.mark.parametrize("overrides, field", [
    (["method.name=lisa", "method.state_policy=reset", "method.overlap=backward", "train.max_grad_norm=0"],
     "method.overlap=backward needs method.state_policy=offload"),
    (["method.name=grass", "method.state_policy=keep", "method.overlap=backward", "train.max_grad_norm=0"],
     "method.overlap=backward needs method.state_policy=offload"),
    (["method.name=grass", "method.overlap=backward"], "train.max_grad_norm=0"),
    (["method.name=lisa", "method.state_policy=offload", "method.overlap=backward", "train.max_grad_norm=0",
      "train.grad_accum=2"], "train.grad_accum=1"),
    (["method.name=grass", "method.overlap=sideways"], "method.overlap must be step or backward"),
    (["method.name=grass", "method.offload_chunk_mb=0"], "method.offload_chunk_mb must be positive or null"),
    (["method.name=grass", "method.overlap=backward", "train.max_grad_norm=0", "method.probe_in_hook=false"],
     "method.probe_in_hook=true"),
])
def test_refused_combination_says_why_in_one_line(overrides, field, tmp_path, capsys):
    rc = main(["train", "--no-progress", f"log.runs_dir={tmp_path}", "log.wandb=disabled", *overrides])
    err = capsys.readouterr().err
    assert rc == 2 and field in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not any(tmp_path.rglob("result.json"))  # refused before a run directory exists


@pytest.mark.parametrize("simulate", [False, True], ids=["inplace", "staged"])
@pytest.mark.parametrize("method", ["lisa", "grass"])
def test_overlap_backward_trains_like_overlap_step(method, simulate, data_file, tmp_path, monkeypatch):
    """Item 2 of issue 15: overlap=backward (updates inside backward) gives overlap=step's numbers."""
    if simulate:
        monkeypatch.setenv("GRASS_SIMULATE_OFFLOAD", "1")
    runs = {}
    for overlap in ("step", "backward"):
        case = (method, "bfloat16", "offload", overlap, "64", "false")
        argv = _argv(case, data_file, tmp_path / overlap)
        if overlap == "step":
            argv.append("train.max_grad_norm=0")  # backward cannot clip: compare like with like
        runs[overlap] = _run(monkeypatch, argv)
    _assert_same_trajectory(runs["step"], runs["backward"])


def test_probe_checkpointing_trains_identically(data_file, tmp_path, monkeypatch):
    """method.probe_checkpointing (on by default) recomputes blocks in the probe's backward: the MGN,
    the draws and every step's weights are those of a probe that keeps its activations."""
    runs = {}
    for on in ("true", "false"):
        case = ("grass", "float32", "offload", "step", "64", "false")
        argv = _argv(case, data_file, tmp_path / on) + [f"method.probe_checkpointing={on}", "method.probe_steps=2"]
        runs[on] = _run(monkeypatch, argv)
    _assert_same_trajectory(runs["true"], runs["false"])
    mgn = [[json.loads(line)["mgn"] for line in next((tmp_path / on).rglob("metrics.jsonl")).read_text().splitlines()]
           for on in ("true", "false")]
    assert mgn[0] == mgn[1] and mgn[0][2] is not None


@pytest.mark.parametrize("mode", ["adaptive", "static"])
def test_resume_right_after_the_probe_keeps_its_measurement(mode, data_file, tmp_path, monkeypatch):
    """A checkpoint taken after the last probe step holds the probe's unfinished window: the resumed
    run finishes it and draws from the measured MGN, as the uninterrupted run does."""
    case = ("grass", "float32", "reset", "step", None, None)
    extra = ["method.probe_steps=2", f"method.mode={mode}"]
    straight = _run(monkeypatch, _argv(case, data_file, tmp_path / "a") + extra)
    first = _run(monkeypatch, _argv(case, data_file, tmp_path / "b") + extra, stop_after=2)  # checkpoint_every=2
    rest = _run(monkeypatch, _argv(case, data_file, tmp_path / "b") + extra)
    assert sorted(first) == [0, 1] and sorted(rest) == list(range(2, STEPS))
    for step, (active, params) in {**first, **rest}.items():
        assert active == straight[step][0], step
        assert all(torch.equal(p, straight[step][1][n]) for n, p in params.items()), step
    mgn = [[json.loads(line)["mgn"] for line in next((tmp_path / r).rglob("metrics.jsonl")).read_text().splitlines()]
           for r in ("a", "b")]
    assert mgn[0] == mgn[1] and mgn[1][2] is not None
