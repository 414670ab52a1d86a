"""The GRASS sampler and MGN estimator in isolation."""
from __future__ import annotations

import pytest
import torch

from grass.method.importance import MGNEstimator
from grass.method.sampler import draw_layers, layer_probs


def test_probs_softmax_of_normalized_mgn():
    m = torch.tensor([1.0, 2.0, 3.0])
    p = layer_probs(m, temperature=0.5, normalize="mean")
    assert p.sum().item() == pytest.approx(1.0)
    assert torch.allclose(p, torch.softmax(m / 2.0 / 0.5, 0).double())
    assert torch.allclose(layer_probs(m * 1000, 0.5), p)  # scale-free with mean normalization
    assert torch.allclose(layer_probs(m, 1e6), torch.full((3,), 1 / 3, dtype=torch.float64))
    assert torch.allclose(layer_probs(m, 1.0, "none"), torch.softmax(m, 0).double())


def test_empirical_frequencies_match_p():
    """Chi-square goodness of fit over 20,000 single-layer draws with a fixed seed."""
    p = layer_probs(torch.tensor([0.5, 1.0, 1.5, 2.0, 0.8, 1.2]), temperature=0.7)
    g = torch.Generator().manual_seed(1234)
    n = 20000
    counts = torch.bincount(torch.tensor([draw_layers(p, 1, g)[0] for _ in range(n)]), minlength=6).double()
    chi2 = float(((counts - n * p) ** 2 / (n * p)).sum())
    assert chi2 < 20.52  # chi-square critical value, 5 degrees of freedom, p = 0.001


def test_draws_are_distinct():
    g = torch.Generator().manual_seed(0)
    p = layer_probs(torch.rand(8), 1.0)
    for _ in range(100):
        d = draw_layers(p, 3, g)
        assert len(set(d)) == 3


def test_refresh_blends_only_seen_layers():
    e = MGNEstimator(3, alpha=0.5)
    for step in range(2):
        for layer, rms in enumerate([1.0, 2.0, 4.0]):
            e.add(layer, rms)
    e.finish_probe()
    assert e.mgn.tolist() == [1.0, 2.0, 4.0]
    e.add(1, 4.0)
    e.add(1, 6.0)
    assert e.refresh() == [1]
    assert e.mgn.tolist() == [1.0, 0.5 * 5.0 + 0.5 * 2.0, 4.0]
