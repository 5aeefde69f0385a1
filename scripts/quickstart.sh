#!/usr/bin/env bash
# Installs what is needed and runs the quick start: IQL on the hopper random replica (built on
# first use), with evaluation and a printed D4RL normalized score. 27 minutes measured on a fresh
# clone with other jobs sharing 2 cores, most of it the 30,000 updates (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
lightning_offrl fit --config conf/quickstart.yaml "$@"
