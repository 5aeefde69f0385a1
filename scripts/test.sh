#!/usr/bin/env bash
# Installs what is needed (scripts/setup.sh: the active virtualenv, else .venv) and runs the test
# suite with that environment's Python. Arguments go to pytest (e.g. tests/test_cli.py); without
# any, pytest runs its testpaths (tests/, setup.cfg).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/venv.sh
export HF_HUB_OFFLINE=1
"$PYTHON" -m pytest -q "$@"
