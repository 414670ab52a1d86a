#!/usr/bin/env bash
# Run the learning-rate sweep (cpu_lr_sweep: each method family's rate, by held-out loss), then the
# cpu_repro grid in the order that decides the paper's claims soonest, into the committed results
# folder: per seed, the arithmetic LISA / GRASS / GRASS* triple (claims b and c), then full
# and LoRA on arithmetic, then commonsense. Runs are dealt round-robin to LANES sequential lanes
# (default 2: two processes, one thread each), so no core idles while a seed's triple finishes.
# Finished runs are skipped, so this resumes after any interruption; commit results/ as runs finish.
#   bash scripts/run_cpu_repro.sh [LANES [LANE]]   (LANE: run only that lane, e.g. to start the
#                                                  second one later on a core that was busy)
# GRASS_REPRO_RUNS_DIR overrides the runs dir (default results/); GRASS_DATA_DIR must name the
# LLM-Adapters data (the arithmetic task reads math_data.json from it).
set -euo pipefail
# Run inside the project's virtual environment (. .venv/bin/activate).
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code, whatever is pip-installed
: "${GRASS_DATA_DIR:?set GRASS_DATA_DIR to the LLM-Adapters data folder (see DESIGN.md section 5)}"
python -c "import omegaconf, torch" 2>/dev/null || { echo "run inside the project's venv: . .venv/bin/activate" >&2; exit 2; }
runs="${GRASS_REPRO_RUNS_DIR:-results}"
lanes="${1:-2}"
only="${2:-}"

math_layerwise=("method.name=lisa" "method.name=grass --only method.mode=adaptive"
                "method.name=grass --only method.mode=static")
# Each entry: an experiment and its --only filters (one run, or a few that run one after another).
order=("cpu_lr_sweep --only method.name=lisa" "cpu_lr_sweep --only method.name=lora")
for seed in 0 1 2 3 4 5 6 7; do
  for m in "${math_layerwise[@]}"; do order+=("cpu_repro --only data.train=math --only $m --only seed=$seed"); done
done
for seed in 0 1 2; do
  for m in full lora; do order+=("cpu_repro --only data.train=math --only method.name=$m --only seed=$seed"); done
done
for seed in 0 1 2; do
  for m in method.name=full method.name=lora "${math_layerwise[@]}"; do
    order+=("cpu_repro --only data.train=commonsense --only $m --only seed=$seed")
  done
done

lane() {
  for ((k = $1; k < ${#order[@]}; k += lanes)); do
    # shellcheck disable=SC2086  # each entry is several --only words on purpose
    rc=0
    python -m grass.cli launch ${order[k]} --cluster local --runs-dir "$runs" --set train.checkpoint_every=10 \
      || rc=$?
    # 2 is bad input (the same for every run): stop; anything else is this run's failure: go on.
    if ((rc == 2)); then echo "lane $1: stopped by bad input" >&2; return 2; fi
    ((rc == 0)) || echo "lane $1: run $k (${order[k]}) did not finish; rerun this script to resume" >&2
  done
}
for ((i = 0; i < lanes; i++)); do [[ -z "$only" || "$only" == "$i" ]] && lane "$i" & done
wait
