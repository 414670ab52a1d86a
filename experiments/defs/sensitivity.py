"""sensitivity: GRASS's accuracy as gamma, the switching period and the temperature vary."""
from experiments.defs._paper import COMMONSENSE
from experiments.spec import Experiment, Resources

# One knob at a time around the default (gamma 2, T_s 50, tau 1); the default point appears once.
KNOBS = [{}]
KNOBS += [{"method.n_active_layers": g} for g in (1, 4, 8)]
KNOBS += [{"method.switch_every": s} for s in (10, 25, 100)]
KNOBS += [{"method.temperature": t} for t in (0.25, 0.5, 2.0, 4.0)]

EXPERIMENT = Experiment(
    name="sensitivity",
    question="How sensitive is GRASS to the number of active layers, the switching period and the "
             "sampling temperature?",
    base={**COMMONSENSE, "model.name": "smollm2-135m", "method.name": "grass", "train.lr": 5e-5,
          "train.max_steps": 1000, "method.n_active_layers": 2, "method.switch_every": 50,
          "method.temperature": 1.0, "method.probe_steps": 10, "method.refresh_every": 50},
    axes={"knob": KNOBS},
    seeds=[0, 1, 2],
    resources=Resources(gpus=1, time_min=240),
    feeds=["fig_sensitivity_gamma", "fig_sensitivity_switch", "fig_sensitivity_temperature"],
    description="11 settings (default + 3 gammas + 3 periods + 4 temperatures) x 3 seeds, half the "
                "main_commonsense budget.",
)
