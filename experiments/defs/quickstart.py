"""quickstart: the main job (``grass quickstart``): four methods, same budget, on SmolLM2-135M."""
from experiments.spec import Experiment, Resources

# Budget rule (not tuned for any method): every method gets the same steps, batch, sequence length
# and evaluation items. Learning rates follow one rule: the full-parameter methods (full, lisa,
# grass) share one rate; the low-rank adapter (lora) gets 10x, the usual ratio for adapters. The
# rate itself is high for fine-tuning (1e-4) because twelve steps at 2e-5 leave every model as it
# was: the budget, not any method, picked it.
LR_FULL = 1e-4
LR_ADAPTER = 1e-3

EXPERIMENT = Experiment(
    name="quickstart",
    question="At an equal small budget, how do GRASS, LISA, LoRA and full fine-tuning compare in "
             "accuracy, memory and speed on commonsense reasoning?",
    base={
        "model.name": "smollm2-135m",
        "data.train": "commonsense",
        "train.max_steps": 12,
        "train.batch_size": 4,
        "train.seq_len": 128,
        "train.warmup_ratio": 0.1,
        "train.precision": "auto",  # bf16 autocast where the CPU has native bf16 (scripts/check_bf16_cpu.py)
        # Held-out loss has far more power than 16 accuracy items: the same 128 examples for every run.
        "data.heldout": 128,
        "eval.heldout_loss": True,
        "eval.benchmarks": ["boolq", "piqa", "arc_e", "arc_c"],
        "eval.limit": 16,
        "eval.batch_size": 16,
        "eval.max_new_tokens": 10,  # enough for "the correct answer is answer3"
        "log.wandb": "disabled",  # W&B is not part of the timing budget; `grass quickstart` may turn it on
    },
    axes={
        "method.name": [
            {"method.name": "full", "train.lr": LR_FULL},
            {"method.name": "lora", "train.lr": LR_ADAPTER},
            {"method.name": "lisa", "train.lr": LR_FULL, "method.n_active_layers": 4, "method.switch_every": 4},
            {"method.name": "grass", "train.lr": LR_FULL, "method.n_active_layers": 4, "method.switch_every": 4,
             "method.probe_steps": 2, "method.refresh_every": 4},
        ],
    },
    seeds=[0],
    resources=Resources(time_min=60),
    feeds=["quickstart_table", "quickstart_report"],
    description="Sized for about 8 minutes for all four runs plus evaluation on an idle 2-core CPU "
                "(budget 'small', the default; 7 min 55 s measured from a warm cache): a SmolLM2-135M "
                "full-parameter step on 4 x 128 tokens takes ~5 s there, the held-out loss ~30 s a run "
                "and greedy evaluation ~0.5 s per item. Budget 'paper' is for a GPU: "
                "50x the steps, a longer sequence and 25x the evaluation items. Accuracy at the small "
                "budget is near chance for every method; the table shows memory and speed differences "
                "more than accuracy.",
    budgets={
        "small": {},
        "paper": {"train.max_steps": 600, "train.batch_size": 8, "train.grad_accum": 2, "train.seq_len": 256,
                  "eval.limit": 400, "eval.batch_size": 32, "eval.max_new_tokens": 16},
        # a wiring check in well under a minute: a tiny random model, so accuracy means nothing
        "tiny": {"model.name": "tiny-llama", "train.max_steps": 4, "train.seq_len": 64, "eval.limit": 4,
                 "eval.max_new_tokens": 4},
    },
)
