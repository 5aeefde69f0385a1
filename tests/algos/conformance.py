"""One conformance check for every method: fit, act, checkpoint save/load, resume.

A method's test file calls :func:`check_conformance` with a factory building a small instance; the
shared checks are the contract the CLI, the evaluation callback and ``lightning_offrl evaluate``
rely on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_offrl.algos.base import OfflineRLModule
from lightning_offrl.callbacks.checkpoint_io import AtomicCheckpointIO
from lightning_offrl.data.datamodule import D4RLDataModule
from lightning_offrl.envs.evaluation import evaluate_policy
from lightning_offrl.evaluate import load_module

ModuleFactory = Callable[[int, int, int], OfflineRLModule]  # (obs_dim, act_dim, max_updates) -> module


def small_datamodule(path: Path, batches_per_step: int = 2, steps_per_epoch: int = 5) -> D4RLDataModule:
    return D4RLDataModule(
        dataset="pointgoal-random-v0", path=str(path), batch_size=32,
        batches_per_step=batches_per_step, steps_per_epoch=steps_per_epoch,
    )


def fit(module: OfflineRLModule, datamodule: D4RLDataModule, root: Path, ckpt_path: str | None = None) -> pl.Trainer:
    trainer = pl.Trainer(
        default_root_dir=root, max_epochs=-1, accelerator="cpu", devices=1, logger=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[ModelCheckpoint(dirpath=root / "ckpt", filename="last", monitor=None, save_top_k=1,
                                   enable_version_counter=False)],
        plugins=[AtomicCheckpointIO()],
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer


def check_conformance(factory: ModuleFactory, pointgoal_file: Path, tmp_path: Path) -> None:
    """Fit 20 updates, act, reload from the checkpoint, resume to 30 updates."""
    datamodule = small_datamodule(pointgoal_file)
    module = factory(datamodule.obs_dim, datamodule.act_dim, 20)
    fit(module, datamodule, tmp_path)
    assert int(module.num_updates) == 20

    obs = np.random.default_rng(0).uniform(-1, 1, size=(7, 2)).astype(np.float32)
    actions = module.act(obs)
    assert actions.shape == (7, 2) and actions.dtype == np.float32
    assert np.all(np.isfinite(actions)) and np.all(np.abs(actions) <= 1.0)
    assert module.act(obs[0]).shape == (2,)
    # act() is deterministic and leaves the module's mode alone
    np.testing.assert_allclose(module.act(obs), actions, rtol=1e-5, atol=1e-6)

    ckpt = tmp_path / "ckpt" / "last.ckpt"
    restored, info = load_module(ckpt)
    assert type(restored) is type(module)
    assert info["dataset"] == "pointgoal-random-v0" and int(restored.num_updates) == 20
    np.testing.assert_allclose(restored.act(obs), actions, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(restored.obs_mean, module.obs_mean)

    resumed = factory(datamodule.obs_dim, datamodule.act_dim, 30)
    fit(resumed, small_datamodule(pointgoal_file), tmp_path / "resume", ckpt_path=str(ckpt))
    assert int(resumed.num_updates) == 30


def assert_beats_random(act: Callable[[np.ndarray], np.ndarray], label: object = "") -> None:
    """``act`` beats uniform random actions on 20 PointGoal episodes (seed 100) by 5 standard errors."""
    trained = evaluate_policy(act, "pointgoal", 20, seed=100)
    rng = np.random.default_rng(0)
    random = evaluate_policy(lambda o: rng.uniform(-1, 1, size=o.shape), "pointgoal", 20, seed=100)
    gap = trained.mean_return() - random.mean_return()
    assert gap > 5 * np.hypot(trained.stderr_return(), random.stderr_return()), label
