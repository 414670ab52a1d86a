"""Importance sampling of the active layers (DESIGN.md 2.4)."""
from __future__ import annotations

import torch


def layer_probs(mgn: torch.Tensor, temperature: float, normalize: str = "mean") -> torch.Tensor:
    """``p = softmax(normalize(m) / tau)``.

    Args:
        mgn: ``[L]`` MGN estimate (non-negative).
        temperature: tau > 0; large tau -> uniform (LISA), small tau -> greedy.
        normalize: ``mean`` divides by mean(m) so tau does not depend on the gradient scale;
            ``none`` is the paper's literal formula.

    Returns:
        ``[L]`` float64 probabilities summing to 1.
    """
    m = mgn.double()
    if normalize == "mean":
        m = m / m.mean().clamp(min=torch.finfo(torch.float64).tiny)
    return torch.softmax(m / temperature, dim=0)


def draw_layers(probs: torch.Tensor, k: int, generator: torch.Generator) -> list[int]:
    """``k`` distinct layers drawn from ``probs`` without replacement (sorted)."""
    return sorted(torch.multinomial(probs.float(), k, replacement=False, generator=generator).tolist())
