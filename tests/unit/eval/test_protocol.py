"""The paper's answer extraction (cases that trip naive code) and batched left-padded generation."""
from __future__ import annotations

import pytest
import torch

from grass.eval.protocol import extract_keyword, extract_letter, extract_number, generate, numbers_match, score


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two OpenMP threads competing with other
    processes make tiny-model generation ~50x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("text, expected", [
    ("The total is 1,234.5 dollars.", 1234.5),
    ("She pays $12 in total.", 12.0),
    ("The temperature drops to -3 degrees.", -3.0),
    ("3 + 4 = 7. The answer is 12.0", 12.0),
    ("The answer is 12.", 12.0),                     # a sentence-final period is not a decimal point
    ("First 5 apples, then 6, so 11 in all", 11.0),  # several numbers: the last one
    ("From 3-4 we get", 4.0),                        # a hyphen between numbers is not a minus sign
    ("1,000,000 people", 1_000_000.0),
    ("€7.50 each", 7.5),
    ("I do not know.", None),
    ("", None),
])
def test_extract_number(text, expected):
    assert extract_number(text) == expected


def test_numbers_match_with_tolerance():
    assert numbers_match(12.0, "12") and numbers_match(12.0, "12.0") and numbers_match(1234.5, "1,234.5")
    assert numbers_match(0.3333, "0.333") and not numbers_match(12.01, "12")
    assert not numbers_match(None, "12") and not numbers_match(3.0, "abc")


@pytest.mark.parametrize("text, expected", [
    ("(C)", "C"),
    ("The answer is (D).", "D"),
    ("The answer is B", "B"),
    ("the answer is: e", "E"),
    ("Options (A) 1 (B) 2 ... so the answer is (C).", "C"),   # the stated answer, not the first option
    ("Between (A) and (B), (B) is right", "B"),
    ("C) 23.65", "C"),
    ("A train leaves at 5 pm", None),                        # the article 'A' is not an option
    ("no idea", None),
])
def test_extract_letter(text, expected):
    assert extract_letter(text) == expected


@pytest.mark.parametrize("text, keywords, expected", [
    ("the correct answer is solution2", ["solution1", "solution2"], "solution2"),
    ("The correct answer is True", ["true", "false"], "true"),
    ("answer3, not answer1", ["answer1", "answer2", "answer3"], "answer3"),  # the first keyword given
    ("ending4", ["ending1", "ending2", "ending3", "ending4"], "ending4"),
    ("option22", ["option1", "option2"], None),                              # whole words only
    ("I think it is untrue", ["true", "false"], None),
    ("nothing here", ["option1", "option2"], None),
])
def test_extract_keyword(text, keywords, expected):
    assert extract_keyword(text, keywords) == expected


def test_score_by_benchmark_kind():
    piqa = {"instruction": "Q\n\nAnswer format: solution1/solution2", "answer": "solution1"}
    assert score("piqa", "the correct answer is solution1", piqa) == (True, "solution1")
    assert score("piqa", "solution2", piqa)[0] is False
    assert score("gsm8k", "so 18 dollars. The answer is 18.", {"answer": "18.0"}) == (True, 18.0)
    assert score("aqua", "The answer is (A).", {"answer": "A"}) == (True, "A")


def test_batched_left_padded_generation_equals_one_by_one(one_thread):
    """Left padding + attention mask: each prompt's greedy response is the same in any batch."""
    from grass.models.load import load_model

    torch.manual_seed(0)
    model, tok = load_model("tiny-llama")
    model.train()
    exs = [{"instruction": "Hi", "input": ""}, {"instruction": "A much longer instruction with many words."},
           {"instruction": "Mid length", "input": "with input"}]
    batched = generate(model, tok, exs, batch_size=3, max_new_tokens=5, device="cpu")
    single = [generate(model, tok, [e], batch_size=1, max_new_tokens=5, device="cpu")[0] for e in exs]
    assert batched == single
    assert tok.padding_side == "right"


def test_generation_stops_where_the_response_is_cut(one_thread, monkeypatch):
    """Stopping at the next block gives exactly the responses that the full budget gives after the
    cut, in a batch where only some rows reach the marker, and stops sooner. A random model never
    writes '### ', so the marker is set to a character one row writes late (mostly it writes
    incomplete UTF-8, decoded as U+FFFD)."""
    from grass.eval import protocol
    from grass.models.load import load_model

    torch.manual_seed(0)
    model, tok = load_model("tiny-llama")
    exs = [{"instruction": "Hi", "input": ""}, {"instruction": "A much longer instruction with many words."},
           {"instruction": "Mid length", "input": "with input"}]
    full = generate(model, tok, exs, batch_size=3, max_new_tokens=16, device="cpu", stop_at_next_block=False)
    found = next(((r, c) for r, text in enumerate(full) for i, c in enumerate(text)
                  if i >= 2 and c != "\ufffd" and text.index(c) == i), None)
    assert found is not None, f"no usable marker character in {full!r}"
    row, marker = found
    monkeypatch.setattr(protocol, "NEXT_BLOCK", marker)
    stopped = generate(model, tok, exs, batch_size=3, max_new_tokens=16, device="cpu")
    assert stopped == [protocol._cut(r) for r in full]
    assert any(marker not in r for r in full)  # a row that does not stop: the others stop on their own

    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    generate(model, tok, exs[row:row + 1], batch_size=1, max_new_tokens=16, device="cpu")
    assert len(calls) < 16


def test_stop_criterion_waits_for_the_whole_marker():
    """'### ' spans tokens ('###' then ' Instruction'): a row stops only once the space is there,
    and each row of a batch on its own."""
    from grass.eval.protocol import StopAtNextBlock
    from grass.models.load import byte_tokenizer

    tok = byte_tokenizer()
    prompt = tok("### Response:\n", add_special_tokens=False)["input_ids"]
    rows = ["The answer is 5.\n\n###", "The answer is 5.\n\n### I", "no marker at all here!"]
    ids = [tok(r, add_special_tokens=False)["input_ids"] for r in rows]
    width = max(map(len, ids))
    batch = torch.tensor([prompt + i + [tok.pad_token_id] * (width - len(i)) for i in ids])
    assert StopAtNextBlock(tok, len(prompt))(batch, None).tolist() == [False, True, False]


def test_prompts_longer_than_the_context_are_cut(one_thread):
    """tiny-gpt2 has 1,024 learned positions; a longer prompt must not index past them."""
    from grass.models.load import load_model

    model, tok = load_model("tiny-gpt2")
    out = generate(model, tok, [{"instruction": "word " * 300}], batch_size=1, max_new_tokens=3, device="cpu")
    assert isinstance(out[0], str)


def test_generation_benchmark_script(one_thread, tmp_path, capsys):
    """scripts/benchmark_generation.py: the stop's two passes and a batch-size comparison, a JSON
    report whose differing-response counts are what generate() itself gives, exit 2 on bad input."""
    import importlib.util
    import json
    from pathlib import Path

    from grass.data import load_benchmark
    from grass.models.load import load_model

    path = Path(__file__).resolve().parents[3] / "scripts" / "benchmark_generation.py"
    spec = importlib.util.spec_from_file_location("benchmark_generation", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "gen.json"
    assert script.main(["--weights", str(tmp_path / "none.pt"), "--out", str(out)]) == 2
    assert "--weights" in capsys.readouterr().err and not out.exists()
    alien = tmp_path / "alien.pt"
    torch.save({"model.not_a_layer.weight": torch.zeros(2)}, alien)
    assert script.main(["--model", "tiny-llama", "--weights", str(alien), "--out", str(out)]) == 2
    assert "does not fit" in capsys.readouterr().err and not out.exists()
    assert script.main(["--compare", "batch", "--batch-sizes", "4", "--out", str(out)]) == 2
    assert "two --batch-sizes" in capsys.readouterr().err and not out.exists()

    assert script.main(["--model", "tiny-llama", "--limit", "3", "--batch-size", "2", "--max-new-tokens", "6",
                        "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["items"] == 3 and [p["stop"] for p in report["passes"]] == [False, True]
    assert all(p["responses_differing"] == 0 and p["seconds"] > 0 for p in report["passes"])

    torch.manual_seed(0)  # the script's random tiny model, and the same one below
    rc = script.main(["--model", "tiny-llama", "--compare", "batch", "--batch-sizes", "1", "3", "--limit", "3",
                      "--max-new-tokens", "6", "--out", str(out)])
    report = json.loads(out.read_text())
    assert [p["batch_size"] for p in report["passes"]] == [1, 3] and all(p["stop"] for p in report["passes"])
    torch.manual_seed(0)
    model, tok = load_model("tiny-llama")
    items = load_benchmark("gsm8k", "eval", limit=3)
    by_size = [generate(model.eval(), tok, items, batch_size=b, max_new_tokens=6, device="cpu") for b in (1, 3)]
    differing = sum(a != b for a, b in zip(*by_size))
    assert report["passes"][1]["responses_differing"] == differing and rc == (1 if differing else 0)
