#!/usr/bin/env bash
# Installs lightning_offrl and its dependencies into a virtualenv: the active one if there is one,
# else `.venv` in the repository (created here with the first python3 on PATH, or $BASE_PYTHON).
# torch is pinned and installed first: an unpinned torch would pull the CUDA build (gigabytes) on a
# CPU-only machine. Afterwards: `source .venv/bin/activate` to use `lightning_offrl` in a shell.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
if [ ! -x "$PYTHON" ]; then
    echo "creating the virtualenv $VENV"
    "${BASE_PYTHON:-python3}" -m venv "$VENV"
fi
echo "installing into $VENV"
"$PYTHON" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[test]"
