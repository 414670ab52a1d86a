"""main_commonsense: the paper's Table 3 (eight commonsense benchmarks) on the offline models."""
from experiments.defs._paper import COMMONSENSE, METHODS, MODELS
from experiments.spec import Experiment, Resources

EXPERIMENT = Experiment(
    name="main_commonsense",
    question="On commonsense reasoning (eight benchmarks, Commonsense170K-style mixture), does GRASS match "
             "or beat full fine-tuning, LoRA, DoRA and LISA at lower memory?",
    base=COMMONSENSE,
    axes={"model.name": MODELS, "method.name": METHODS},
    seeds=[0, 1, 2],
    resources=Resources(gpus=1, time_min=480),
    feeds=["table3", "fig_acc_vs_memory", "fig_loss_curves", "fig_layer_heatmap"],
    description="5 methods x 2 models x 3 seeds = 30 runs on the full evaluation splits.",
)
