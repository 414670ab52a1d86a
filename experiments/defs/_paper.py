"""Shared settings of the paper-scale experiments (Tables 2-4, ablations): one place for the budget
and the per-method hyper-parameters so every experiment compares methods the same way.

The paper does not list every hyper-parameter for our models; where it is silent these are our
choices, and ``lr_sweep`` measures each method at several rates so the tables can use each
method's best rate (feed it back here).
"""
MODELS = ["smollm2-135m", "gemma3-270m"]

# Layer-wise defaults: gamma = 2 active layers, switch every 50 steps (the paper: 25-50 best).
LAYERWISE = {"method.n_active_layers": 2, "method.switch_every": 50}

METHODS = [
    {"method.name": "full", "train.lr": 2e-5},
    {"method.name": "lora", "train.lr": 2e-4, "method.rank": 32, "method.alpha": 64.0},
    {"method.name": "dora", "train.lr": 2e-4, "method.rank": 32, "method.alpha": 64.0},
    {"method.name": "lisa", "train.lr": 5e-5, **LAYERWISE},
    {"method.name": "grass", "train.lr": 5e-5, **LAYERWISE, "method.probe_steps": 10, "method.refresh_every": 50},
]

# LLM-Adapters-style budget: global batch 16, 3 epochs of math_data.json (3,260 examples) ~ 600 steps.
ARITH = {
    "data.train": "math",
    "train.max_steps": 600,
    "train.batch_size": 4,
    "train.grad_accum": 4,
    "train.seq_len": 512,
    "train.warmup_ratio": 0.03,
    "train.precision": "bf16",
    "eval.benchmarks": ["math"],
    "eval.max_new_tokens": 256,
    "eval.batch_size": 32,
}

# Commonsense170K-style mixture (147,580 examples); 2,000 steps of global batch 16 (~32k examples).
COMMONSENSE = {
    "data.train": "commonsense",
    "train.max_steps": 2000,
    "train.batch_size": 4,
    "train.grad_accum": 4,
    "train.seq_len": 256,
    "train.warmup_ratio": 0.03,
    "train.precision": "bf16",
    "eval.benchmarks": ["commonsense"],
    "eval.max_new_tokens": 32,
    "eval.batch_size": 32,
}
