"""Bad input a new user meets, through ``grass.cli.main``: each ends in exit 2 and one line that names
what to change, never a traceback, and never a result.json that looks finished.

- a model whose context is shorter than train.seq_len or the generation budget (an OPT folder
  with 256 learned positions, built here);
- a model folder without tokenizer files (empty vocabulary), fixed by model.tokenizer;
- a batch without a label token;
- a diverging loss (train.lr=1e30): result.json is written as failed with the traceback inside;
- LoRA target modules the model does not have;
- an unknown WANDB_MODE.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from grass.cli import main

FAST = ["train.max_steps=2", "train.batch_size=2", "train.seq_len=64", "train.warmup_ratio=0", "--no-progress"]


@pytest.fixture(scope="module")
def opt_dirs(tmp_path_factory) -> dict[str, Path]:
    """A random OPT model with 256 learned positions, saved with and without its (byte) tokenizer."""
    from transformers import OPTConfig, OPTForCausalLM

    from grass.models.load import byte_tokenizer

    root = tmp_path_factory.mktemp("opt")
    cfg = OPTConfig(vocab_size=320, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                    max_position_embeddings=256, word_embed_proj_dim=32, pad_token_id=256, bos_token_id=257,
                    eos_token_id=258)
    model = OPTForCausalLM(cfg)
    dirs = {"with_tok": root / "opt256", "no_tok": root / "opt256-no-tokenizer"}
    model.save_pretrained(dirs["with_tok"])
    byte_tokenizer().save_pretrained(dirs["with_tok"])
    model.save_pretrained(dirs["no_tok"])
    return dirs


def user_error(capsys, rc: int, *names: str) -> str:
    """Assert exit 2, exactly one ``error:`` line naming every one of ``names``, and no traceback."""
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def need_piqa() -> None:
    from grass.data import availability

    ok, reason = availability("piqa")
    if not ok:
        pytest.skip(f"PIQA's evaluation items are not available here: {reason}")


def no_run_dir(runs_dir: Path) -> bool:
    return not any(runs_dir.rglob("config.yaml"))


def no_finished_result(runs_dir: Path) -> bool:
    return all(json.loads(p.read_text())["status"] != "success" for p in runs_dir.rglob("result.json"))


def test_seq_len_longer_than_learned_positions(opt_dirs, fixed_batch_file, runs_dir, capsys):
    # the default train.seq_len=512 on a 256-position model: was IndexError deep inside the embedding
    rc = main(["train", f"model.name={opt_dirs['with_tok']}", f"data.train={fixed_batch_file}",
               "train.max_steps=2", "--no-progress"])
    line = user_error(capsys, rc, "train.seq_len=512", "256", "max_position_embeddings")
    assert "train.seq_len=256 or less" in line
    assert no_run_dir(runs_dir)


def test_generation_budget_longer_than_context(opt_dirs, fixed_batch_file, runs_dir, capsys):
    need_piqa()
    rc = main(["train", f"model.name={opt_dirs['with_tok']}", f"data.train={fixed_batch_file}",
               "eval.benchmarks=[piqa]", "eval.max_new_tokens=300", *FAST])
    user_error(capsys, rc, "eval.max_new_tokens", "256")
    assert no_run_dir(runs_dir)


def test_grass_eval_budget_longer_than_context(opt_dirs, capsys):
    need_piqa()
    rc = main(["eval", "--model", str(opt_dirs["with_tok"]), "--benchmarks", "piqa", "--limit", "1",
               "--max-new-tokens", "300", "--device", "cpu"])
    user_error(capsys, rc, "--max-new-tokens", "256")


def test_a_model_that_fits_trains(opt_dirs, fixed_batch_file, runs_dir, capsys):
    assert main(["train", f"model.name={opt_dirs['with_tok']}", f"data.train={fixed_batch_file}", *FAST]) == 0
    assert json.loads(next(runs_dir.rglob("result.json")).read_text())["status"] == "success"


def test_missing_tokenizer_files_then_model_tokenizer(opt_dirs, fixed_batch_file, runs_dir, capsys):
    # transformers builds an empty GPT-2 tokenizer for an OPT folder without tokenizer files: every
    # example became no tokens and the loss NaN at step 0, with a traceback
    args = ["train", f"model.name={opt_dirs['no_tok']}", f"data.train={fixed_batch_file}", *FAST]
    user_error(capsys, main(args), "empty vocabulary", "model.tokenizer=")
    assert no_run_dir(runs_dir)
    assert main(args[:-1] + [f"model.tokenizer={opt_dirs['with_tok']}", "--no-progress"]) == 0
    run = next(runs_dir.rglob("result.json")).parent
    assert json.loads((run / "result.json").read_text())["status"] == "success"
    assert f"tokenizer: {opt_dirs['with_tok']}" in (run / "config.yaml").read_text()


def test_model_tokenizer_that_does_not_load(opt_dirs, fixed_batch_file, runs_dir, tmp_path, capsys):
    rc = main(["train", f"model.name={opt_dirs['no_tok']}", f"model.tokenizer={tmp_path / 'nope'}",
               f"data.train={fixed_batch_file}", *FAST])
    user_error(capsys, rc, "model.tokenizer=")
    assert no_run_dir(runs_dir)


def test_batch_without_label_tokens(monkeypatch, fixed_batch_file, runs_dir, capsys):
    import grass.train

    class Unlabelled(grass.train.TrainDataset):
        def __getitem__(self, i):
            item = super().__getitem__(i)
            return {"input_ids": item["input_ids"], "labels": [-100] * len(item["labels"])}

    monkeypatch.setattr(grass.train, "TrainDataset", Unlabelled)
    rc = main(["train", f"data.train={fixed_batch_file}", *FAST])
    user_error(capsys, rc, "no response token", "model.tokenizer", "train.seq_len")
    assert no_finished_result(runs_dir)


def test_diverging_loss_is_a_user_error_with_the_traceback_in_result_json(fixed_batch_file, runs_dir, capsys):
    rc = main(["train", f"data.train={fixed_batch_file}", "train.lr=1e30", "train.max_steps=4", "train.batch_size=2",
               "train.seq_len=64", "train.warmup_ratio=0", "--no-progress"])
    user_error(capsys, rc, "train.lr", "diverged")
    result = json.loads(next(runs_dir.rglob("result.json")).read_text())
    assert result["status"] == "failed" and result["error"].startswith("TrainingDiverged: the loss is")
    assert "Traceback" in result["traceback"] and "TrainingDiverged" in result["traceback"]


def test_diverging_without_clipping_in_bf16_names_both(fixed_batch_file, capsys):
    rc = main(["train", f"data.train={fixed_batch_file}", "train.lr=1e30", "train.max_steps=4", "train.batch_size=2",
               "train.seq_len=64", "train.warmup_ratio=0", "train.max_grad_norm=0", "train.precision=bf16",
               "--no-progress"])
    user_error(capsys, rc, "train.lr", "train.max_grad_norm", "train.precision=fp32")


def test_lora_target_modules_the_model_lacks(fixed_batch_file, runs_dir, capsys):
    rc = main(["train", f"data.train={fixed_batch_file}", "method.name=lora", "method.target_modules=[nonexistent]",
               *FAST])
    user_error(capsys, rc, "method.target_modules=['nonexistent']")
    assert no_finished_result(runs_dir)


def test_unknown_wandb_mode(monkeypatch, fixed_batch_file, runs_dir, capsys):
    monkeypatch.setenv("WANDB_MODE", "offlne")
    rc = main(["train", f"data.train={fixed_batch_file}", *FAST])
    user_error(capsys, rc, "WANDB_MODE='offlne'", "log.wandb")
    assert no_run_dir(runs_dir)


@pytest.mark.parametrize("build, expected", [
    (lambda t: t.OPTConfig(max_position_embeddings=256), ("max_position_embeddings", 256)),
    (lambda t: t.GPT2Config(n_positions=77), ("n_positions", 77)),  # the name its config.json uses
    (lambda t: t.LlamaConfig(max_position_embeddings=4096), ("max_position_embeddings", 4096)),
    (lambda t: t.Gemma3TextConfig(max_position_embeddings=32768), ("max_position_embeddings", 32768)),
    (lambda t: t.MptConfig(max_seq_len=2048), ("max_seq_len", 2048)),
    (lambda t: t.BloomConfig(), None),  # ALiBi: no trained limit in the config
])
def test_context_length_across_architectures(build, expected):
    import transformers

    from grass.models.checks import context_length

    assert context_length(build(transformers)) == expected
