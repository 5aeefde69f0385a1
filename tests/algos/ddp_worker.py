"""Run as a script by ``test_ddp.py``: a 2-process DDP fit on CPU that saves what each rank ends with.

    python tests/algos/ddp_worker.py DATA.hdf5 OUT_DIR

Each rank writes ``OUT_DIR/rank<r>.pt``: its final state dict and the first batch it trained on.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_offrl.algos import ADEPT, IQL
from lightning_offrl.data.datamodule import D4RLDataModule


class SaveRankState(pl.Callback):
    def __init__(self, out: Path) -> None:
        self.out = out
        self.first_batch: torch.Tensor | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if self.first_batch is None:
            self.first_batch = batch.observations.detach().clone()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        path = self.out / f"rank{trainer.global_rank}.pt"
        torch.save({"state": state, "first_batch": self.first_batch}, path)


def main(data: str, out: str) -> None:
    pl.seed_everything(0)
    datamodule = D4RLDataModule(dataset="pointgoal-random-v0", path=data, batch_size=32, batches_per_step=2,
                                steps_per_epoch=5)
    module = ADEPT(
        datamodule.obs_dim, datamodule.act_dim, learner=functools.partial(IQL, hidden_dims=(32, 32)),
        hidden_dim=32, depth=2, reward_hidden_dims=(32, 32), behavior_hidden_dims=(32, 32),
        world_model_batch_size=64, world_model_pretrain_updates=10, round_updates=10, importance_updates=2,
        rollout_starts=32, rollout_horizon=3, max_updates=20,
    )
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_find_unused_parameters_true", max_epochs=-1, logger=False,
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
        callbacks=[SaveRankState(Path(out))],
    )
    trainer.fit(module, datamodule=datamodule)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
