# Sourced by the other scripts: chooses the Python environment the project installs into and runs in.
#
# An active virtualenv ($VIRTUAL_ENV) is used as it is; otherwise the project's own `.venv` in the
# repository (created by scripts/setup.sh). Never the system Python: the stack is ~1.3 GB.
# Sets VENV (the environment's folder) and PYTHON (its interpreter), and puts its bin/ first on PATH
# so that the `lightning_offrl` and `tensorboard` commands are the environment's.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${VIRTUAL_ENV:-}" ]; then
    VENV="$VIRTUAL_ENV"
else
    VENV="$ROOT/.venv"
fi
PYTHON="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"
