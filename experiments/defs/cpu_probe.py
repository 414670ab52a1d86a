"""cpu_probe: GRASS's probe alone, per task and seed, for claim (a) (layer importance depends on the task).

Claim (a) needs MGN profiles of several seeds on both tasks; in ``cpu_repro`` they come only with
full 200-step runs, and its commonsense runs come last. The profile is measured in the probe,
the first 8 steps, before any weight changes, so this experiment runs exactly that: cpu_repro's
GRASS config (same model, batch, sequence length, held-out split and so data order per seed,
``probe_steps`` 8) stopped after the probe and one update step, with no evaluation. Each run
takes a few minutes.

It trains in fp32, set explicitly: it runs on any CPU (cpu_repro's bf16 needs native bf16; a CPU
without it emulates bf16 some 20x slower). So its profiles pair with one another, not with
cpu_repro's bf16 runs; the report sets the two side by side for the seeds both have, as a check of
what precision does to a profile.
"""
from experiments.defs.cpu_repro import EXPERIMENT as CPU_REPRO
from experiments.defs.cpu_repro import GRASS
from experiments.spec import Experiment, Resources

PROBE_STEPS = GRASS["method.probe_steps"]

EXPERIMENT = Experiment(
    name="cpu_probe",
    question="On SmolLM2-135M, do GRASS's probe MGN profiles differ more between arithmetic and commonsense "
             "than between seeds of one task?",
    base={**CPU_REPRO.base, **GRASS, "method.mode": "adaptive", "train.precision": "fp32",
          "train.max_steps": PROBE_STEPS + 1,  # the probe, then the one update step a GRASS run must have
          "eval.heldout_loss": False, "eval.heldout_every": 0, "eval.benchmarks": []},
    axes={"data.train": ["math", "commonsense"]},
    seeds=list(range(8)),
    resources=Resources(cpus=1, time_min=30),
    feeds=["docs/reproduction.md"],
    description="2 tasks x 8 seeds of the probe (9 steps of 4 x 256 tokens, fp32, no evaluation). "
                "`grass reproduction cpu_repro --probe-experiment cpu_probe` takes claim (a) from it.",
)
