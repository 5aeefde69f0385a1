"""The ``python -m lightning_offrl.collect.<module>`` commands that docs/data.md gives start cleanly."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["antmaze", "policies", "sac_online"])
def test_module_command_line_runs_once_and_without_warnings(module):
    # The package import must not load the module before runpy executes it as __main__: that ran the
    # module twice (registering its replica builders twice, which raised) and made runpy warn.
    done = subprocess.run([sys.executable, "-m", f"lightning_offrl.collect.{module}", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: python -m lightning_offrl.collect." in done.stdout
    assert "Traceback" not in done.stderr and "RuntimeWarning" not in done.stderr, done.stderr
