#!/usr/bin/env bash
# Run the cpu_repro grid in the order that decides the paper's claims soonest, into the committed
# results folder: per seed, the arithmetic LISA / GRASS / GRASS* triple (claims b and c), then full
# and LoRA on arithmetic, then commonsense. Finished runs are skipped, so this resumes after any
# interruption; commit results/ as runs finish. One thread per process.
#   bash scripts/run_cpu_repro.sh [--max-parallel 2]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
runs="${GRASS_REPRO_RUNS_DIR:-results}"
# A checkpoint every 10 steps: a killed run (not only a signalled one) resumes; it is not part of the run id.
launch() { grass launch cpu_repro --cluster local --runs-dir "$runs" --set train.checkpoint_every=10 "$@"; }
for seed in 0 1 2 3 4 5 6 7; do
  launch --only data.train=math --only method.name=lisa,grass --only seed=$seed "${@}"
done
launch --only data.train=math --only method.name=full,lora "${@}"
launch --only data.train=commonsense "${@}"
