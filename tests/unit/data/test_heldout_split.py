"""The held-out split: a function of the data and data.heldout_seed only, disjoint from training."""
import json

import pytest

from grass.cli import main
from grass.config import load_config
from grass.data.heldout import heldout_count, split_heldout
from grass.errors import ConfigError


def _examples(n: int) -> list[dict]:
    return [{"instruction": f"What is {i} plus 1?", "input": "", "output": f"It is {i + 1}.", "answer": str(i + 1)}
            for i in range(n)]


def test_count_and_fraction():
    assert heldout_count(None, 100) == 0
    assert heldout_count(10, 100) == 10
    assert heldout_count(0.25, 100) == 25
    for bad in (0, -1, 2.5, 100, 1000):
        with pytest.raises(ConfigError, match="data.heldout"):
            heldout_count(bad, 100)


def test_split_is_disjoint_and_depends_on_the_data_only():
    ex = _examples(200)
    train, held = split_heldout(ex, 30, seed=0)
    assert len(held) == 30 and len(train) == 170
    key = lambda e: (e["instruction"], e["output"])
    assert not {key(e) for e in train} & {key(e) for e in held}
    # The same held-out set whatever the order of the data (membership is by content, not position).
    _, held_rev = split_heldout(list(reversed(ex)), 30, seed=0)
    assert [key(e) for e in held] == [key(e) for e in held_rev]
    # Another salt gives another split; the same salt the same one.
    assert [key(e) for e in split_heldout(ex, 30, seed=1)[1]] != [key(e) for e in held]
    assert [key(e) for e in split_heldout(ex, 30, seed=0)[1]] == [key(e) for e in held]


def test_duplicates_of_a_heldout_example_never_train():
    ex = _examples(50)
    ex += [dict(e) for e in ex[:50]]  # every example twice
    train, held = split_heldout(ex, 10, seed=0)
    held_keys = {(e["instruction"], e["output"]) for e in held}
    assert len(held_keys) == 10
    assert not any((e["instruction"], e["output"]) in held_keys for e in train)
    assert len(train) == 80




def test_same_heldout_for_every_method_and_seed_and_never_trained_on(tmp_path, monkeypatch):
    """Spy on the training dataset: no held-out example reaches a batch, for any method or seed."""
    import grass.train as loop

    data = tmp_path / "d.json"
    data.write_text(json.dumps(_examples(40)))
    _, held = split_heldout(_examples(40), 8, seed=0)
    held_prompts = {e["instruction"] for e in held}
    trained: list[set] = []
    real = loop.TrainDataset

    class Spy(real):
        def __init__(self, examples, *a, **k):
            trained.append({e["instruction"] for e in examples})
            super().__init__(examples, *a, **k)

    monkeypatch.setattr(loop, "TrainDataset", Spy)
    for method, seed in (("full", 0), ("lisa", 1), ("grass", 2)):
        extra = ["method.probe_steps=1"] if method == "grass" else []
        code = main(["train", f"method.name={method}", "model.name=tiny-llama", f"data.train={data}",
                     "data.heldout=8", "eval.heldout_loss=true", "train.max_steps=3", "train.batch_size=4",
                     "train.seq_len=64", f"seed={seed}", *extra])
        assert code == 0
    assert len(trained) == 3
    for t in trained:
        assert len(t) == 32 and not t & held_prompts
