#!/usr/bin/env bash
# Download into .whl/ the wheels that scripts/gpu_check.sh needs on the GPU machine, which cannot
# reach a package registry. Run it HERE (with network) before the device run; the device side
# installs them without network and puts them ahead of its own site-packages:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
#
# Why these (the GPU machine has torch 2.11, transformers 5.17, tokenizers 0.23.2, huggingface_hub
# 1.33, safetensors 0.8.0, accelerate 1.15.0, numpy, pyyaml, tqdm, pytest, requests, ...):
#   omegaconf    grass/config.py imports it at top level; every run and test needs it. 2.4.0 vendors
#                its ANTLR runtime (omegaconf.vendor.antlr4), so no antlr4-python3-runtime wheel.
#   transformers our pin (pyproject). Its Requires-Dist (huggingface-hub>=1.31,<3; tokenizers
#                >=0.23.1,<0.24; safetensors>=0.8.0; regex>=2025.10.22) is met by the device's own
#                packages, so only the pure-python wheel travels.
#   peft         our pin, for lora/dora (baselines/lora/method.py imports it lazily); the device's
#                peft version is unknown.
#   gguf         only for the one-off GGUF -> safetensors conversion of smollm2-135m/gemma3-270m
#                (transformers' GGUF loader); harmless when no GGUF model package is present.
# Not carried: datasets (grass/data/sources.py imports it only for hub data), wandb (only when
# log.wandb != disabled), submitit (SLURM only), lm-eval (eval.lm_eval only): none is on the GPU path.
# All four wheels are py3-none-any, so the platform/Python flags below only matter for safety.
#
# Usage: bash scripts/fetch_device_wheels.sh        (PYTHON=... to pick the pip interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(
  "omegaconf==2.4.0"
  "transformers==5.23.0"
  "peft==0.21.2"
  "gguf==0.19.0"
)
LIMIT_MIB=60
DEST=.whl

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi

mkdir -p "$DEST"
rm -f "$DEST"/*.whl  # exactly the list above, no stale versions
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DEST" "${WHEELS[@]}"

n=$(ls "$DEST"/*.whl | wc -l)
if [ "$n" -ne "${#WHEELS[@]}" ]; then
  echo "error: expected ${#WHEELS[@]} wheels in $DEST, found $n" >&2
  exit 1
fi
ls -l "$DEST"/*.whl | awk '{printf "%10d  %s\n", $5, $NF}'
total=$(cat "$DEST"/*.whl | wc -c)
echo "total: $total bytes ($(( (total + 1048575) / 1048576 )) MiB, limit $LIMIT_MIB MiB)"
if [ "$total" -gt $((LIMIT_MIB * 1024 * 1024)) ]; then
  echo "error: wheels exceed $LIMIT_MIB MiB" >&2
  exit 1
fi
