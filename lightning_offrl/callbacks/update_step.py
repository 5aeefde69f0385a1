"""Every logged scalar against the module's update count, so losses and scores share one x axis.

Lightning writes ``self.log`` values at ``trainer.fit_loop.epoch_loop._batches_that_stepped`` (one per
``training_step``, which runs ``data.batches_per_step`` updates here), ``LearningRateMonitor`` at the
same count, and :class:`~lightning_offrl.callbacks.evaluation.D4RLEvaluation` at the update count;
``trainer.global_step`` would be a fourth axis (every optimizer step: IQL makes three per update).
In TensorBoard the curves of one run would then sit on different scales.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import Logger

from lightning_offrl.errors import ConfigError

# Marks a logger whose ``log_metrics`` this callback has wrapped (so a second fit does not wrap twice).
_WRAPPED = "_lightning_offrl_update_step"


class UpdateStepLogging(pl.Callback):
    """Writes every scalar at step ``pl_module.num_updates``, whoever logs it.

    At ``setup`` each of the trainer's loggers gets its ``log_metrics`` wrapped so that the step it is
    given is replaced by the module's update count at that moment; ``teardown`` restores it. This
    covers ``self.log``, Lightning's own ``epoch`` value, ``LearningRateMonitor`` and any callback a
    config adds, with any logger (TensorBoard, CSV, ...).
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not hasattr(pl_module, "num_updates"):
            raise ConfigError(
                f"UpdateStepLogging needs a module with a `num_updates` counter (an OfflineRLModule); "
                f"{type(pl_module).__name__} has none"
            )
        for logger in trainer.loggers:
            if getattr(logger, _WRAPPED, False):
                continue
            logger.log_metrics = _at_update_count(logger, pl_module)  # type: ignore[method-assign]
            setattr(logger, _WRAPPED, True)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for logger in trainer.loggers:
            if getattr(logger, _WRAPPED, False):
                # The instance attribute shadowed the class's method; removing it brings that back.
                del logger.log_metrics
                delattr(logger, _WRAPPED)


def _at_update_count(logger: Logger, pl_module: pl.LightningModule) -> Any:
    """``logger.log_metrics`` with the step replaced by ``pl_module.num_updates``."""
    log_metrics = logger.log_metrics

    def log_metrics_at_update(metrics: dict[str, float], step: int | None = None) -> None:
        log_metrics(metrics, step=int(pl_module.num_updates))

    return log_metrics_at_update


__all__ = ["UpdateStepLogging"]
