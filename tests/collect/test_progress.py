from __future__ import annotations

import pytest

from lightning_offrl.collect.progress import StepProgress


def test_disabled_progress_is_a_no_op() -> None:
    with StepProgress("x", 10, enabled=False) as bar:
        for step in range(10):
            bar.update(step + 1)
    assert bar._bar is None


def test_bar_completes_on_success_and_stops_where_it_was_on_error() -> None:
    with StepProgress("make", 10, every=4) as bar:
        for step in range(9):
            bar.update(step + 1)
        assert bar._bar.tasks[0].completed == 8  # redrawn at 4 and 8 only
    assert bar._bar.tasks[0].completed == 10 and bar._bar.finished

    with pytest.raises(RuntimeError):
        with StepProgress("make", 10, every=1) as failing:
            failing.update(3)
            raise RuntimeError("env crashed")
    assert failing._bar.tasks[0].completed == 3
