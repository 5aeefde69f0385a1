#!/usr/bin/env bash
# Installs lightning_offrl and its dependencies into a virtualenv: the active one if there is one,
# else `.venv` in the repository (created here with the first python3 on PATH, or $BASE_PYTHON).
# torch is pinned and installed first: an unpinned torch would pull the CUDA build (gigabytes) on a
# CPU-only machine. Afterwards: `source .venv/bin/activate` to use `lightning_offrl` in a shell.
set -euo pipefail
cd "$(dirname "$0")/.."
# Videos (`evaluate --video`) render offscreen through EGL; Mesa's software EGL needs no GPU. Install it
# where it is missing and can be installed (root with apt-get); otherwise the video command names it.
if [ "$(uname -s)" = "Linux" ] && ! ldconfig -p 2>/dev/null | grep -q "libEGL.so.1"; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 >/dev/null \
            || echo "setup.sh: could not install the EGL libraries; videos will not render" >&2
    else
        echo "setup.sh: no libEGL; for videos run: apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1" >&2
    fi
fi
source scripts/venv.sh
if [ ! -x "$PYTHON" ]; then
    echo "creating the virtualenv $VENV"
    "${BASE_PYTHON:-python3}" -m venv "$VENV"
fi
echo "installing into $VENV"
"$PYTHON" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[test]"
