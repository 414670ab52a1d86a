"""lr_sweep: each method at several learning rates, so each is compared at its own best rate."""
from experiments.defs._paper import COMMONSENSE, METHODS
from experiments.spec import Experiment, Resources

RATES = {
    "full": (5e-6, 1e-5, 2e-5, 5e-5),
    "lora": (5e-5, 1e-4, 2e-4, 5e-4),
    "dora": (5e-5, 1e-4, 2e-4, 5e-4),
    "lisa": (1e-5, 2e-5, 5e-5, 1e-4),
    "grass": (1e-5, 2e-5, 5e-5, 1e-4),
}
POINTS = [{**m, "train.lr": lr} for m in METHODS for lr in RATES[m["method.name"]]]

EXPERIMENT = Experiment(
    name="lr_sweep",
    question="What is each method's best learning rate at our budget?",
    base={**COMMONSENSE, "model.name": "smollm2-135m", "train.max_steps": 500, "eval.limit": 300},
    axes={"method.name": POINTS},
    seeds=[0],
    resources=Resources(gpus=1, time_min=120),
    feeds=["table_lr_sweep"],
    description="5 methods x 4 rates, a quarter of the main budget, evaluated on the first 300 items of "
                "each benchmark. Those items are part of the test splits the main tables report: picking "
                "a rate here is mild test-set selection; say so when you quote the main tables.",
)
