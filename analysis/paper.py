"""The GRASS paper's published figures, kept as data with their source.

Only figures we actually have are here: the paper's Table 4 peak memory on LLaMA2-7B, the extra
memory of layer-wise training with and without offloading, and the headline claims. No
per-benchmark accuracies are recorded, so the paper-vs-ours table compares only these.
"""
from __future__ import annotations

from dataclasses import dataclass

PAPER = "Tian et al. 2026, GRASS, arXiv:2604.07808"
PAPER_MODELS = ("TinyLlama", "Gemma-2B", "LLaMA2-7B")


@dataclass(frozen=True)
class PaperFigure:
    """One published number.

    Attributes:
        key: stable identifier that :mod:`analysis.tables` matches with our measurement.
        quantity: what the number is, in words.
        value: the number as published.
        unit: its unit as published ("GB" is the paper's unit; ours are GiB).
        models: the model(s) the number was measured on.
        source: where in the paper it comes from.
        approx: True where the paper gives the value only approximately.
    """

    key: str
    quantity: str
    value: float
    unit: str
    models: str
    source: str
    approx: bool = False


FIGURES: tuple[PaperFigure, ...] = (
    PaperFigure("peak_mem/full", "peak memory, full fine-tuning", 51.3, "GB", "LLaMA2-7B",
                f"{PAPER}, Table 4"),
    PaperFigure("peak_mem/lora", "peak memory, LoRA", 20.0, "GB", "LLaMA2-7B",
                f"{PAPER}, Table 4", approx=True),
    PaperFigure("peak_mem/lisa", "peak memory, LISA", 22.3, "GB", "LLaMA2-7B",
                f"{PAPER}, Table 4"),
    PaperFigure("peak_mem/grass", "peak memory, GRASS", 19.1, "GB", "LLaMA2-7B",
                f"{PAPER}, Table 4"),
    PaperFigure("extra_mem/no_offload", "extra memory of layer-wise training, no offloading", 1.63, "GB",
                "LLaMA2-7B", f"{PAPER}, layer-wise optimizer-state offloading"),
    PaperFigure("extra_mem/offload", "extra memory of layer-wise training, with offloading", 0.14, "GB",
                "LLaMA2-7B", f"{PAPER}, layer-wise optimizer-state offloading"),
    PaperFigure("acc_gain_over_best_baseline", "avg accuracy gain of GRASS over the strongest baseline (up to)",
                4.38, "points", ", ".join(PAPER_MODELS), f"{PAPER}, abstract"),
    PaperFigure("mem_reduction", "memory reduction of GRASS (up to)", 20.0, "%",
                ", ".join(PAPER_MODELS), f"{PAPER}, abstract"),
)


def figure(key: str) -> PaperFigure:
    """The published figure stored under ``key`` (KeyError if there is none)."""
    for f in FIGURES:
        if f.key == key:
            return f
    raise KeyError(key)
