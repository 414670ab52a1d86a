"""memory_throughput: the paper's Table 4 and Fig. 5 (peak memory and tokens/s)."""
from experiments.defs._paper import LAYERWISE
from experiments.spec import Experiment, Resources

EXPERIMENT = Experiment(
    name="memory_throughput",
    question="How do peak device memory and training throughput of each method scale with sequence "
             "length and batch size?",
    base={
        "model.name": "gemma3-270m",
        "data.train": "math",
        "train.max_steps": 40,
        "train.lr": 2e-5,
        "train.precision": "bf16",
        "train.warmup_ratio": 0.0,
    },
    axes={
        "method.name": ["full", "lora", "dora", {"method.name": "lisa", **LAYERWISE},
                        {"method.name": "grass", **LAYERWISE, "method.probe_steps": 5, "method.refresh_every": 50}],
        "train.seq_len": [256, 512, 1024],
        "train.batch_size": [1, 4, 8],
    },
    seeds=[0],
    resources=Resources(gpus=1, time_min=30),
    feeds=["table4", "fig5_memory", "fig5_throughput"],
    description="Short runs (40 steps; the first update step and GRASS's probe are not timed). No evaluation. "
                "Sequences are truncated to train.seq_len, not padded to it, so the longest seq_len only "
                "matters for examples that long (math_data.json chains of thought reach ~500 tokens).",
)
