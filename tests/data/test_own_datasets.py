"""Training on Adroit / Kitchen files and on datasets of the user's own, in one process: a few updates each."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest

from lightning_offrl.algos import BC, IQL
from lightning_offrl.callbacks.evaluation import D4RLEvaluation
from lightning_offrl.data.d4rl_hdf5 import write_d4rl_hdf5
from lightning_offrl.data.datamodule import D4RLDataModule
from lightning_offrl.envs.tasks import get_task
from lightning_offrl.errors import ConfigError, DatasetError
from tests.data.test_hand_kitchen_data import episodes


def fit(datamodule: D4RLDataModule, tmp_path: Path, module_cls: type = BC, episodes: int = 1) -> pl.Trainer:
    module = module_cls(datamodule.obs_dim, datamodule.act_dim, hidden_dims=(16, 16), max_updates=6, log_every=3)
    evaluation = D4RLEvaluation(interval=6, episodes=episodes, at_train_end=False)
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, callbacks=[evaluation])
    trainer.fit(module, datamodule=datamodule)
    assert int(module.num_updates) == 6
    return trainer


def data(path: Path, dataset: str, **kwargs) -> D4RLDataModule:  # noqa: ANN003
    return D4RLDataModule(dataset=dataset, path=str(path), batch_size=8, batches_per_step=3, steps_per_epoch=2,
                          **kwargs)


def test_adroit_file_trains_and_evaluates_with_d4rls_normalized_score(tmp_path: Path) -> None:
    path = write_d4rl_hdf5(tmp_path / "door-human.hdf5", episodes(39, 28))
    trainer = fit(data(path, "door-human-v1"), tmp_path, IQL)
    score, ret = (float(trainer.callback_metrics[k]) for k in ("eval/normalized_score", "eval/return"))
    assert score == pytest.approx(float(get_task("door").normalized_score(ret)))


@pytest.mark.slow
def test_kitchen_file_trains_and_evaluates(tmp_path: Path) -> None:
    path = write_d4rl_hdf5(tmp_path / "kitchen.hdf5", episodes(60, 9, timeouts=False))
    trainer = fit(data(path, "kitchen-partial-v0"), tmp_path)
    assert 0.0 <= float(trainer.callback_metrics["eval/normalized_score"]) <= 100.0


def test_own_dataset_with_an_environment_and_reference_returns(tmp_path: Path) -> None:
    path = write_d4rl_hdf5(tmp_path / "mine.hdf5", episodes(39, 28))
    datamodule = data(path, "my-door-demos-v3", env_id="AdroitHandDoor-v1", ref_min_score=-100.0,
                      ref_max_score=100.0)
    task = get_task("my-door-demos-v3")
    assert (task.domain, task.gym_id, task.max_episode_steps) == ("my-door-demos", "AdroitHandDoor-v1", 200)
    trainer = fit(datamodule, tmp_path)
    ret = float(trainer.callback_metrics["eval/return"])
    assert float(trainer.callback_metrics["eval/normalized_score"]) == pytest.approx(100 * (ret + 100) / 200)


def test_own_dataset_with_an_environment_reports_raw_returns(tmp_path: Path) -> None:
    path = write_d4rl_hdf5(tmp_path / "mine.hdf5", episodes(39, 28))
    trainer = fit(data(path, "raw-door", env_id="AdroitHandDoor-v1"), tmp_path)
    assert "eval/return" in trainer.callback_metrics
    assert "eval/normalized_score" not in trainer.callback_metrics


def test_own_dataset_without_an_environment_trains_with_evaluation_off(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    path = write_d4rl_hdf5(tmp_path / "mine.hdf5", episodes(7, 3))
    with caplog.at_level("WARNING", logger="lightning_offrl"):
        datamodule = data(path, "sensor-logs")
    assert [r.message for r in caplog.records if "evaluation off" in r.message] == [
        "sensor-logs: no data.env_id, so training and checkpointing run with evaluation off"]
    assert (datamodule.obs_dim, datamodule.act_dim) == (7, 3)  # from the file, there is no environment
    trainer = fit(datamodule, tmp_path)
    assert not any(key.startswith("eval/") for key in trainer.callback_metrics)


def test_file_that_does_not_fit_the_environment_gets_one_error_naming_both_shapes(tmp_path: Path) -> None:
    path = write_d4rl_hdf5(tmp_path / "pen-shaped.hdf5", episodes(45, 24))
    for datamodule in (data(path, "door-human-v1"), data(path, "mine", env_id="AdroitHandDoor-v1")):
        with pytest.raises(DatasetError, match=r"observations \(27, 45\) and actions \(27, 24\) do not fit the "
                                               r"AdroitHandDoor-v1 environment, which observes \(39,\) and acts "
                                               r"in \(28,\)"):
            datamodule.setup("fit")


@pytest.mark.parametrize("kwargs, message", [
    ({"dataset": "door-human-v1", "env_id": "Hopper-v5"}, "known dataset"),
    ({"dataset": "mine", "ref_min_score": 0.0}, "give both"),
    ({"dataset": "mine", "ref_min_score": 0.0, "ref_max_score": 1.0}, "without data.env_id"),
    ({"dataset": "mine", "env_id": "NoSuchEnv-v9"}, "unknown Gymnasium environment 'NoSuchEnv-v9'"),
])
def test_inconsistent_own_dataset_options_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = write_d4rl_hdf5(tmp_path / "mine.hdf5", episodes(39, 28))
    with pytest.raises(ConfigError, match=message):
        D4RLDataModule(path=str(path), **kwargs)


def test_env_id_without_a_file_is_refused() -> None:
    with pytest.raises(ConfigError, match="pass the file of 'mine' as data.path"):
        D4RLDataModule(dataset="mine", env_id="Hopper-v5")
