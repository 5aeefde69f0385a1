#!/usr/bin/env bash
# Installs lightning_offrl and its dependencies. torch is pinned and installed first: an unpinned
# torch would pull the CUDA build (gigabytes) on a CPU-only machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
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
"$PYTHON" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[test]"
