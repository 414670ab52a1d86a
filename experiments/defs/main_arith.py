"""main_arith: the paper's Table 2 (arithmetic reasoning) on the offline models."""
from experiments.defs._paper import ARITH, METHODS, MODELS
from experiments.spec import Experiment, Resources

EXPERIMENT = Experiment(
    name="main_arith",
    question="On arithmetic reasoning (LLM-Adapters math_data.json, six test sets), does GRASS match or "
             "beat full fine-tuning, LoRA, DoRA and LISA at lower memory?",
    base=ARITH,
    axes={"model.name": MODELS, "method.name": METHODS},
    seeds=[0, 1, 2],
    resources=Resources(gpus=1, time_min=240),
    feeds=["table2", "fig_acc_vs_memory"],
    description="5 methods x 2 models x 3 seeds = 30 runs; needs $GRASS_DATA_DIR (LLM-Adapters layout). "
                "Evaluation on the held-out 20% of each test set (never an item in the training file).",
)
