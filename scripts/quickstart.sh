#!/usr/bin/env bash
# Installs what is needed (scripts/setup.sh: the active virtualenv, else .venv) and runs the quick
# start: DTQL on the hopper-medium-v2 replica (built on first use, ~14 minutes on 2 CPU cores), 6,000
# updates with an evaluation every 2,000. It ends by printing the final D4RL normalized score, the run
# folder and the TensorBoard command. Extra arguments go to `lightning_offrl fit` (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/venv.sh
export HF_HUB_OFFLINE=1
"$PYTHON" -m lightning_offrl.cli fit --config conf/quickstart.yaml "$@"
