#!/usr/bin/env bash
# The main job end to end on built-in defaults: install, train an ensemble on digits with every
# default (repeat, budget and learning rate from the data) into model_store/, then serve it on
# http://127.0.0.1:8000 (Ctrl-C stops the server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python scripts/train.py --dataset digits --store model_store
exec python -m serving --store model_store --host 127.0.0.1 --port "${PORT:-8000}"
