"""Fake run directories, written the way grass.results writes real ones, for the analysis tests."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

N_LAYERS = 8
LOSS_SHAPE = {"full": (0.45, 25), "lora": (0.65, 35), "dora": (0.62, 33), "lisa": (0.55, 30), "grass": (0.5, 28)}
METHOD_FIELDS = {
    "full": {},
    "lisa": {"n_active_layers": 2, "switch_every": 10, "state_policy": "reset"},
    "grass": {"n_active_layers": 2, "switch_every": 10, "temperature": 1.0, "probe_steps": 5,
              "state_policy": "offload"},
}


def _metrics(method: str, seed: int, steps: int, heldout: float | None = None, heldout_every: int = 20) -> list[dict]:
    """Plausible per-step rows: a decaying loss; active layers and probabilities for lisa/grass; with
    ``heldout`` (the final held-out loss), a held-out loss decaying towards it every ``heldout_every`` steps."""
    rows = []
    for step in range(steps):
        floor, tau = LOSS_SHAPE.get(method, (0.6, 30))
        row = {"step": step, "loss": 2.5 * math.exp(-step / tau) + floor + 0.08 * math.sin(1.7 * step + seed),
               "lr": 1e-4, "tokens_per_s": 1000.0, "step_time_s": 0.5}
        if method in ("lisa", "grass"):
            probe = method == "grass" and step < 5
            block = (step // 10 + seed) % (N_LAYERS // 2)
            row["active_layers"] = [] if probe else [2 * block, (2 * block + 3) % N_LAYERS]
            weights = [1.0 + 0.2 * i for i in range(N_LAYERS)] if method == "grass" else [1.0] * N_LAYERS
            row["layer_probs"] = [w / sum(weights) for w in weights]
        if method == "grass":
            row["mgn"] = [0.01 * (i + 1) * (1 + 0.1 * math.cos(step / 7)) for i in range(N_LAYERS)]
            row["probe"] = step < 5
        if heldout is not None and (step + 1) % heldout_every == 0 and step + 1 < steps:
            # as the trainer logs it: on the training row of the step it was measured after
            row["loss/heldout"] = heldout + 1.5 * math.exp(-step / 20)
            row["loss/heldout_se"] = 0.03
        rows.append(row)
    return rows


def _write_run(root: Path, experiment: str, method: str, seed: int, acc: dict | None = None, *,
              status: str = "success", dirty: bool = False, finished: bool = True, mem: dict | None = None,
              tokens_per_s: float = 1000.0, trainable: int = 1_000_000, steps: int = 60,
              method_cfg: dict | None = None, model: str = "tiny-llama",
              benchmarks: tuple[str, ...] = ("boolq", "piqa"), n_items: int | None = None,
              heldout: tuple[float, float] | None = None, device: str = "cpu",
              train_cfg: dict | None = None, task: str = "default") -> Path:
    """One run directory with config.yaml, metrics.jsonl and (if finished) result.json.

    ``n_items`` records ``eval/n/<benchmark>`` (the item count intervals come from); ``heldout`` is the
    final ``(loss/heldout, loss/heldout_se)``, also logged on the way in metrics.jsonl; ``train_cfg``
    adds or overrides ``train`` fields of the config.
    """
    fields = {**METHOD_FIELDS.get(method, {}), **(method_cfg or {})}
    run_id = f"{method}-{model}-s{seed}" + "".join(f"-{k}{v}" for k, v in sorted((method_cfg or {}).items()))
    run_id += "" if task == "default" else "-" + task.replace("/", "_")
    run_dir = root / experiment / run_id
    run_dir.mkdir(parents=True)
    cfg = {"seed": seed, "model": {"name": model, "dtype": "float32", "cache_dir": None},
           "data": {"train": None if task == "default" else task, "max_examples": None, "shuffle": True},
           "train": {"max_steps": steps, "batch_size": 4, "seq_len": 128, "lr": 1e-4, "device": "cpu",
                     **(train_cfg or {})},
           "eval": {"benchmarks": list(benchmarks), "limit": 20},
           "log": {"wandb": "disabled", "experiment": experiment, "tags": []},
           "method": {"name": method, **fields}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    rows = _metrics(method, seed, steps, heldout[0] if heldout else None)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if not finished:
        return run_dir
    acc = acc or {}
    result = {"schema_version": 1, "run_id": run_id, "experiment": experiment, "method": method, "model": model,
              "task": task, "seed": seed, "status": status,
              "error": None if status == "success" else "RuntimeError: boom",
              **{f"acc/{k}": v for k, v in acc.items()},
              "mem/peak_device_gib": None, "mem/optimizer_state_device_gib": 1.0, "mem/optimizer_state_host_gib": 0.0,
              "mem/params_gib": 0.5, "mem/grads_gib": 0.5, "speed/tokens_per_s": tokens_per_s,
              "speed/step_time_s_median": 0.5, "params/trainable": trainable, "train/final_loss": 0.6,
              "train/steps": steps,
              "provenance": {"git_sha": "abc1234def5678", "git_dirty": dirty, "versions": {"torch": "2.13.0"},
                             "device": device, "device_name": "x86_64", "slurm_job_id": None}}
    if acc:
        result["acc/avg"] = sum(acc.values()) / len(acc)
        if n_items:
            result.update({f"eval/n/{k}": n_items for k in acc})
    if heldout:
        result.update({"loss/heldout": heldout[0], "loss/heldout_se": heldout[1], "loss/heldout_n": 64,
                       "loss/heldout_tokens": 4096})
    result.update(mem or {})
    (run_dir / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    return run_dir


@pytest.fixture(scope="session")
def write_run():
    """The run-directory writer, for tests that build their own experiment."""
    return _write_run


GOLDEN = {  # method -> per-seed (boolq, piqa)
    "full": [(60.0, 70.0), (62.0, 70.0)],
    "lisa": [(58.0, 72.0), (60.0, 74.0), (62.0, 76.0)],
    "grass": [(64.0, 71.0), (66.0, 73.0)],
}
GOLDEN_MEM = {
    "full": {"mem/optimizer_state_device_gib": 1.0, "params/trainable": 135_000_000},
    "lisa": {"mem/optimizer_state_device_gib": 0.25, "params/trainable": 20_000_000},
    "grass": {"mem/optimizer_state_device_gib": 0.125, "mem/optimizer_state_host_gib": 0.75,
              "params/trainable": 20_000_000},
}
GOLDEN_SPEED = {"full": (1000.0, 1100.0), "lisa": (1500.0,) * 3, "grass": (1400.0,) * 2}
GOLDEN_HELDOUT = {"full": (1.20, 1.22), "lisa": (1.30, 1.31, 1.29), "grass": (1.25, 1.28)}


@pytest.fixture(scope="session")
def golden(tmp_path_factory) -> Path:
    """Experiment 'golden': full x2, lisa x3, grass x2 seeds, plus one failed (grass), one unfinished
    (lisa) and one dirty (full) run that the tables must leave out. Returns the runs root.

    Shared by every test (building figures is the slow part): tests must not change these runs.
    """
    tmp_path = tmp_path_factory.mktemp("runs")
    for method, seeds in GOLDEN.items():
        for seed, (boolq, piqa) in enumerate(seeds):
            _write_run(tmp_path, "golden", method, seed, {"boolq": boolq, "piqa": piqa}, mem=GOLDEN_MEM[method],
                      tokens_per_s=GOLDEN_SPEED[method][seed], n_items=50,
                      heldout=(GOLDEN_HELDOUT[method][seed], 0.02))
    _write_run(tmp_path, "golden", "grass", 2, status="failed")
    _write_run(tmp_path, "golden", "lisa", 3, {"boolq": 0.0, "piqa": 0.0}, finished=False)
    _write_run(tmp_path, "golden", "full", 2, {"boolq": 99.0, "piqa": 99.0}, dirty=True)
    return tmp_path


@pytest.fixture(scope="session")
def golden_figures(golden):
    """The golden experiment's figures, built once (rendering is the slow part of these tests)."""
    from analysis.collect import collect
    from analysis.plots import make_figures

    return make_figures(collect("golden", golden))
