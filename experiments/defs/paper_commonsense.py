"""paper_commonsense: the paper's grid for commonsense on its own models (TinyLlama-1.1B, Gemma-2B, LLaMA2-7B), for
users with GPUs and the hub (or local copies of the models)."""
from experiments.defs._paper import COMMONSENSE, METHODS, PAPER_MODELS, PAPER_RESOURCES, PAPER_SETTING
from experiments.spec import Experiment, Resources

EXPERIMENT = Experiment(
    name="paper_commonsense",
    question="At the paper's scale, does GRASS match or beat full fine-tuning, LoRA, DoRA and LISA on "
             "commonsense at lower memory?",
    base={**COMMONSENSE, **PAPER_SETTING},
    axes={"model.name": PAPER_MODELS, "method.name": METHODS},
    seeds=[0, 1, 2],
    resources=Resources(**PAPER_RESOURCES),
    feeds=["table3", "table4", "fig_acc_vs_memory"],
    description="3 models x 5 methods x 3 seeds = 45 runs, one 80 GB GPU each: "
                "grass launch paper_commonsense --cluster slurm --profile P --dry-run lists them.",
)
