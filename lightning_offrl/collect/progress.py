"""The progress bar of every dataset generator: rich, refreshed every few thousand steps, optional."""

from __future__ import annotations

from types import TracebackType


class StepProgress:
    """A ``rich`` bar over ``total`` steps, used as a context manager; does nothing when disabled.

    ``update(done)`` is cheap to call every step: the bar is redrawn every ``every`` steps only (a
    redraw costs more than an environment step of the cheap tasks). On a clean exit the bar is
    completed; on an exception it stops where it was.

    Example::

        with StepProgress("hopper-random-v2", num_steps, enabled=progress) as bar:
            for step in range(num_steps):
                ...
                bar.update(step + 1)
    """

    def __init__(self, description: str, total: int, enabled: bool = True, every: int = 2_000) -> None:
        self.description = description
        self.total = total
        self.every = every
        self._bar = None
        self._task = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
            )

    def __enter__(self) -> "StepProgress":
        if self._bar is not None:
            self._task = self._bar.add_task(self.description, total=self.total)
            self._bar.start()
        return self

    def update(self, done: int) -> None:
        """Reports ``done`` steps finished (redrawn every ``every`` steps)."""
        if self._bar is not None and done % self.every == 0:
            self._bar.update(self._task, completed=done)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is None:
            return
        if exc_type is None:
            self._bar.update(self._task, completed=self.total)
        self._bar.stop()
