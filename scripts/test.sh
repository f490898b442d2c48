#!/usr/bin/env bash
# Install (if needed), lint, and run the whole test suite twice: once with the BLAS kernel
# OpenBLAS picks on this machine, once forced to another one the CPU supports, so that no
# test depends on the last bits a kernel computes (CI's CPU may pick another kernel).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check .
ruff format --check .
python -m pytest "$@"
if kernel=$(python scripts/other_blas_kernel.py); then
  echo "again with OPENBLAS_CORETYPE=$kernel"
  OPENBLAS_CORETYPE=$kernel python -m pytest "$@"
else
  echo "no second BLAS kernel on this machine; the suite ran once"
fi
