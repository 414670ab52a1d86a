"""`grass data list` and the argument errors of `grass eval`."""
from __future__ import annotations

from grass.cli import main


def test_data_list_shows_every_benchmark(capsys, no_data_dir):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("boolq", "hellaswag", "obqa", "gsm8k", "svamp", "aqua"):
        assert f"\n{name} " in out
    assert "set GRASS_DATA_DIR" in out and "commonsense" in out


def test_eval_bad_input_exits_2(capsys, tmp_path, olmo_data):
    assert main(["eval", "--model", "tiny-llama", "--benchmarks", "boolq,nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
    assert main(["eval", "--model", "tiny-llama", "--benchmarks", "boolq", "--limit", "0"]) == 2
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model:\n  name: tiny-llama\n")
    assert main(["eval", "--model", str(run), "--benchmarks", "boolq"]) == 2
    assert "train.save_model=full" in capsys.readouterr().err
    # a saved adapter whose run config cannot name the base model: one line, not a traceback
    (run / "model").mkdir()
    (run / "model" / "adapter_config.json").write_text("{}")
    for text, says in (("0\n", "does not name the base model"), ("- a\n", "does not name the base model"),
                       ("model: [unclosed\n", "is not readable YAML")):
        (run / "config.yaml").write_text(text)
        assert main(["eval", "--model", str(run), "--benchmarks", "boolq"]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
