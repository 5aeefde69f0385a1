#!/usr/bin/env bash
# Installs what is needed and runs the quick start: IQL on the hopper random replica (built on
# first use), with evaluation and a printed D4RL normalized score. About 15 minutes on an idle 2-core
# machine, most of it the 30,000 updates (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
lightning_offrl fit --config conf/quickstart.yaml "$@"
