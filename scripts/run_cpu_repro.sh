#!/usr/bin/env bash
# The reproduction's runs into the committed results folder: the learning-rate sweep
# (cpu_lr_sweep: each method family's rate, by held-out loss), then the cpu_repro grid in its
# run_order (the arithmetic LISA / GRASS / GRASS* triple seed by seed, then full and LoRA on
# arithmetic, then commonsense). N processes at once (default 2, one thread each): whenever one run
# ends the next starts. Finished runs are skipped, so this resumes after any interruption (Ctrl-C,
# or `kill -- -PGID` when it runs in the background, stops the runs at their next step boundary,
# checkpoint saved); commit results/ as runs finish. The runs train in bf16 (train.precision=auto
# on a CPU with native bf16, as the committed ones did): on a CPU without it the launch refuses
# (exit 2) rather than train fp32 runs that would pair with them.
#
#   bash scripts/run_cpu_repro.sh [--parallel N] [--no-sweep] [grass launch options...]
#   e.g. bash scripts/run_cpu_repro.sh --parallel 3 --no-sweep --budget gpu     (one GPU)
#
# Run inside the project's virtual environment (. .venv/bin/activate). GRASS_REPRO_RUNS_DIR
# overrides the runs dir (default results/); GRASS_DATA_DIR must name the LLM-Adapters data (the
# arithmetic task reads math_data.json from it).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code, whatever is pip-installed
python -c "import omegaconf, torch" 2>/dev/null || { echo "error: run inside the project's venv: . .venv/bin/activate" >&2; exit 2; }
[[ -n "${GRASS_DATA_DIR:-}" ]] || { echo "error: set GRASS_DATA_DIR to the LLM-Adapters data folder (DESIGN.md section 5)" >&2; exit 2; }
parallel=2
sweep=1
passthrough=()
while (($#)); do
  case "$1" in
    --parallel) parallel="${2:?--parallel needs a number}"; shift 2 ;;
    --no-sweep) sweep=0; shift ;;
    *) passthrough+=("$1"); shift ;;
  esac
done
launch() {
  python -m grass.cli launch "$1" --cluster local --runs-dir "${GRASS_REPRO_RUNS_DIR:-results}" \
    --max-parallel "$parallel" --set train.checkpoint_every=10 "${passthrough[@]}"
}
# A failed sweep run does not hold the grid back (the launcher reported it); bad input (2) and an
# interruption (Ctrl-C: 130) stop here.
rc=0
if ((sweep)); then launch cpu_lr_sweep || rc=$?; fi
if ((rc == 2 || rc >= 128)); then exit "$rc"; fi
launch cpu_repro || rc=$?
exit "$rc"
