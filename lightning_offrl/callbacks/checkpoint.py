"""The ``checkpoint`` section's callback: keeps the best policy by evaluation score."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info


class BestScoreCheckpoint(ModelCheckpoint):
    """:class:`ModelCheckpoint` for a score that exists only on evaluation epochs.

    ``eval/normalized_score`` is logged every ``evaluation.interval`` updates, not every epoch, so on
    most epochs the monitored key is absent. Lightning's callback warns about that on every run (and
    raises once a validation loop has run); this one skips those epochs silently and ranks the
    checkpoints of the epochs that were evaluated. A monitored key that never appears is still
    reported at the end of ``fit``.
    """

    _seen_monitor = False  # set on the first epoch that logged the monitored key

    def _save_topk_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        if self.monitor is not None and self.monitor not in monitor_candidates:
            return
        self._seen_monitor = True
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_fit_end(trainer, pl_module)
        if self.monitor is not None and not self._seen_monitor:
            rank_zero_info(
                f"checkpoint: no '{self.monitor}' was logged during this fit (no evaluation ran: "
                "evaluation.interval is larger than the run), so no best checkpoint was written; "
                "last.ckpt holds the final policy."
            )
