#!/usr/bin/env bash
# Create .venv and install the project with every extra. Idempotent: a second run is quick.
# Torch is installed first, pinned, so that no dependency picks another version. Where the
# package index offers CUDA builds (a stock PyPI), set TORCH_INDEX_URL to PyTorch's CPU index,
# https://download.pytorch.org/whl/cpu, to get the CPU wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import torch, onnxruntime, fastapi, schemathesis, ensembles" >/dev/null 2>&1; then
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  python -m pip install --quiet -e ".[dev]"
fi
