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

# The paper's own models, by HF id (they need the hub, or a local copy named by its folder), at the
# paper's memory setting (sequence 1024, micro-batch 4; Table 4), weights in bf16 and gradient
# checkpointing so that full fine-tuning of LLaMA2-7B fits one 80 GB GPU (`grass memory` predicts
# 52.8 GiB for it). Global batch 16 as in ARITH / COMMONSENSE.
PAPER_MODELS = ["TinyLlama/TinyLlama-1.1B-Chat-v1.0", "google/gemma-2b", "meta-llama/Llama-2-7b-hf"]
PAPER_SETTING = {
    "model.dtype": "bfloat16",
    "train.seq_len": 1024,
    "train.batch_size": 4,
    "train.grad_accum": 4,
    "train.gradient_checkpointing": True,
}
# One 80 GB GPU per run, sized for the largest model (LLaMA2-7B); a job requeues itself after its
# time limit and resumes from its checkpoint, so the limit bounds one job, not the run.
PAPER_RESOURCES = {"gpus": 1, "cpus": 8, "mem_gb": 128, "time_min": 720}
