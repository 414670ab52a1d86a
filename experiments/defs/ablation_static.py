"""ablation_static: GRASS (adaptive MGN refresh) vs GRASS* (static importance after the probe)."""
from experiments.defs._paper import COMMONSENSE, LAYERWISE
from experiments.spec import Experiment, Resources

EXPERIMENT = Experiment(
    name="ablation_static",
    question="Does refreshing the layer importance during training (GRASS) beat fixing it after the "
             "probing phase (GRASS*)?",
    base={**COMMONSENSE, "model.name": "smollm2-135m", "method.name": "grass", "train.lr": 5e-5, **LAYERWISE,
          "method.probe_steps": 10, "method.refresh_every": 50},
    axes={"method.mode": ["adaptive", "static"]},
    seeds=[0, 1, 2],
    resources=Resources(gpus=1, time_min=480),
    feeds=["table_ablation_static"],
    description="2 modes x 3 seeds; everything else as in main_commonsense's GRASS runs.",
)
