"""cpu_lr_sweep: the learning rate of each method family at cpu_repro's budget, picked by held-out loss.

cpu_repro runs every full-parameter method (full, lisa, grass) at one rate and LoRA at another.
This sweep measures three or more rates per family at exactly cpu_repro's training budget (200
steps of 4 x 256 tokens on arithmetic, the same layer-wise settings), one seed, and scores each run only by
held-out loss on a *different* 256-example split (``data.heldout_seed=1``) from the one cpu_repro
reports: the rate is chosen on examples that no reported figure uses, and no benchmark item is
looked at, so the choice selects nothing on the test sets.

LISA stands for the full-parameter family: GRASS updates the same layers with the same optimizer
(only which layers differs), and the paper's central comparison is GRASS against LISA. Full
fine-tuning updates all 30 layers every step and may prefer a lower rate; sweeping it too would
cost three more of the slowest runs (a full step takes ~1.7x a LISA step here).

Read it with ``grass tables cpu_lr_sweep --runs-dir results`` (the held-out table lists one row per
rate); the family's rate is the lowest loss, unless the losses are within noise, in which case
cpu_repro keeps its prior rates (1e-4 and 1e-3). A lowest loss at the edge of the range adds the
next rate beyond it (half a decade): LISA's first three rates gave 0.673 / 0.588 / 0.553 at
3e-5 / 1e-4 / 3e-4 (± 0.016 s.e. over the same 256 examples, one seed), so 1e-3 was added (0.606:
3e-4 stays). LoRA's gave 0.545 / 0.511 / 0.501 at 3e-4 / 1e-3 / 3e-3 (± 0.015), so 1e-2 was added (0.760 ± 0.021: LoRA keeps 1e-3, within noise of 3e-3).

The sweep keeps the evaluation batch size its runs were launched with (16; cpu_repro now uses 64
for its generation): no generation happens here, the held-out loss does not depend on it beyond
float rounding, and keeping it keeps the committed runs' ids.
"""
from experiments.defs.cpu_repro import EXPERIMENT as REPRO
from experiments.defs.cpu_repro import LAYERWISE
from experiments.spec import Experiment

RATES = {"lisa": (3e-5, 1e-4, 3e-4, 1e-3), "lora": (3e-4, 1e-3, 3e-3, 1e-2)}
POINTS = [{"method.name": "lisa", **LAYERWISE, "train.lr": lr} for lr in RATES["lisa"]] + \
         [{"method.name": "lora", "train.lr": lr} for lr in RATES["lora"]]

EXPERIMENT = Experiment(
    name="cpu_lr_sweep",
    question="Which learning rate does each method family need at cpu_repro's budget, by held-out loss?",
    base={**REPRO.base, "data.train": "math", "data.heldout_seed": 1, "eval.benchmarks": [],
          "eval.heldout_every": 100, "eval.batch_size": 16},
    axes={"method.name": POINTS},
    seeds=[0],
    resources=REPRO.resources,
    feeds=["experiments/defs/cpu_repro.py"],
    description="LISA at 4 rates, LoRA at 4: 8 runs, ~55 min each on one fp32 core of the 2-core CPU (no "
                "generation evaluation). `bash scripts/run_cpu_repro.sh` runs them before the grid.",
)
