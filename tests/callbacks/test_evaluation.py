from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_offrl.callbacks.evaluation import D4RLEvaluation, evaluate_checkpoint_module
from lightning_offrl.envs.evaluation import EvaluationResult
from lightning_offrl.envs.tasks import register_task
from lightning_offrl.errors import ConfigError
from tests.envs.toy_tasks import COUNTDOWN, COUNTDOWN_DATASET, expected_countdown_length, registered_toy_tasks

EVAL_KEYS = (
    "eval/return", "eval/return_se", "eval/normalized_score", "eval/normalized_score_se", "eval/episodes"
)


@pytest.fixture(autouse=True)
def toy_tasks() -> Iterator[None]:
    with registered_toy_tasks():
        yield


class ToyPolicyModule(pl.LightningModule):
    """The two things evaluation relies on: a ``num_updates`` buffer and ``act``; several manual
    updates per ``training_step`` (so ``global_step`` and ``num_updates`` differ from batch counts)."""

    def __init__(self, updates_per_step: int = 3) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.updates_per_step = updates_per_step
        self.policy = nn.Linear(2, 1)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))
        self.modes_seen_by_act: list[bool] = []

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        optimizer = self.optimizers()
        (inputs,) = batch
        for _ in range(self.updates_per_step):
            loss = (self.policy(inputs) - 0.5).pow(2).mean()
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            self.num_updates += 1

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)

    def act(self, obs: np.ndarray) -> np.ndarray:
        self.modes_seen_by_act.append(self.training)
        with torch.no_grad():
            scaled = torch.as_tensor(obs, dtype=torch.float32, device=self.device) / 10.0
            return torch.tanh(self.policy(scaled)).cpu().numpy()


class ToyDataModule(pl.LightningDataModule):
    def __init__(self, dataset: str = COUNTDOWN_DATASET, is_replica: bool = True) -> None:
        super().__init__()
        self.dataset = dataset
        self.is_replica = is_replica

    def train_dataloader(self) -> DataLoader:
        inputs = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
        return DataLoader(TensorDataset(inputs), batch_size=4)


class RecordingEvaluation(D4RLEvaluation):
    """Remembers when it evaluated and in which mode the module was left afterwards."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.evaluated_at: list[int] = []
        self.training_after_evaluation: list[bool] = []

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> EvaluationResult:
        result = super().evaluate(trainer, pl_module)
        self.evaluated_at.append(int(pl_module.num_updates))
        self.training_after_evaluation.append(pl_module.training)
        return result


def make_trainer(tmp_path: Path, batches: int, callbacks: list[pl.Callback], **kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = dict(
        default_root_dir=tmp_path, max_epochs=1, limit_train_batches=batches, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, accelerator="cpu", devices=1,
    )
    options.update(kwargs)
    return pl.Trainer(callbacks=callbacks, **options)


def tensorboard_scalars(log_dir: str, tag: str) -> list[tuple[int, float]]:
    # imported here: the DDP test's spawned processes import this module and do not need it
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(log_dir)
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def test_evaluates_when_updates_cross_the_interval_and_at_train_end(tmp_path: Path, capsys) -> None:
    # 3 updates per batch, 8 batches: updates 3, 6, ..., 24; multiples of 7 are crossed at 9, 15, 21
    # (21 itself) and 28 is never reached, so the final score is taken at 24 in on_train_end.
    evaluation = RecordingEvaluation(interval=7, episodes=4, seed=5)
    model = ToyPolicyModule(updates_per_step=3)
    trainer = make_trainer(tmp_path, batches=8, callbacks=[evaluation])

    trainer.fit(model, datamodule=ToyDataModule())

    assert trainer.global_step == 24  # optimizer steps, not batches
    assert evaluation.evaluated_at == [9, 15, 21, 24]
    assert evaluation.rounds_done == 4
    assert model.modes_seen_by_act and not any(model.modes_seen_by_act)  # act ran in eval mode...
    assert all(evaluation.training_after_evaluation)  # ...and training mode came back

    # every round uses seeds seed + i: the final (4th) round's episodes are known exactly
    result = evaluation.last_result
    assert result is not None
    expected_lengths = [expected_countdown_length(5 + i) for i in range(4)]
    np.testing.assert_array_equal(result.lengths, expected_lengths)
    again = evaluate_checkpoint_module(model, COUNTDOWN_DATASET, 4, seed=5)
    np.testing.assert_allclose(again.returns, result.returns)

    # the final score (logged in on_train_end) is in callback_metrics and in TensorBoard at update 24
    metrics = trainer.callback_metrics
    assert set(EVAL_KEYS) <= set(metrics)
    final_score = result.mean_normalized_score(COUNTDOWN_DATASET)
    assert math.isclose(float(metrics["eval/normalized_score"]), final_score, rel_tol=1e-6)
    assert float(metrics["eval/episodes"]) == 4
    for key in EVAL_KEYS:
        assert [step for step, _ in tensorboard_scalars(trainer.logger.log_dir, key)] == [9, 15, 21, 24]
    logged = dict(tensorboard_scalars(trainer.logger.log_dir, "eval/return"))
    assert math.isclose(logged[24], result.mean_return(), rel_tol=1e-6)

    printed = capsys.readouterr().out
    assert "update 24 | return" in printed and "normalized score" in printed and "[replica]" in printed


def test_score_logged_in_batch_end_reaches_callback_metrics_and_checkpoint(tmp_path: Path) -> None:
    # 7 batches: evaluations at 9, 15, 21; the last update was evaluated, so none at train end.
    evaluation = RecordingEvaluation(interval=7, episodes=3)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="eval/normalized_score", mode="max")
    model = ToyPolicyModule(updates_per_step=3)
    trainer = make_trainer(tmp_path, batches=7, callbacks=[evaluation, checkpoint], enable_checkpointing=True)

    trainer.fit(model, datamodule=ToyDataModule())

    assert evaluation.evaluated_at == [9, 15, 21]
    result = evaluation.last_result
    assert result is not None
    score = result.mean_normalized_score(COUNTDOWN_DATASET)
    assert math.isclose(float(trainer.callback_metrics["eval/normalized_score"]), score, rel_tol=1e-6)
    assert math.isclose(float(checkpoint.best_model_score), score, rel_tol=1e-6)

    # the callback's state travels in the checkpoint and is restored on resume
    saved = torch.load(checkpoint.best_model_path, weights_only=False)
    state = saved["callbacks"][evaluation.state_key]
    assert state["rounds_done"] == 3 and state["last_evaluated_update"] == 21
    np.testing.assert_allclose(state["last_result"]["returns"], result.returns)

    resumed = RecordingEvaluation(interval=7, episodes=3)
    trainer = make_trainer(tmp_path, batches=7, callbacks=[resumed], max_epochs=2)
    trainer.fit(
        ToyPolicyModule(updates_per_step=3), datamodule=ToyDataModule(), ckpt_path=checkpoint.best_model_path
    )
    # updates continue from 21: 24, 27, 30 (28 crossed), 33, 36 (35 crossed), 39, 42 (42)
    assert resumed.evaluated_at == [30, 36, 42]
    assert resumed.rounds_done == 6


@pytest.mark.parametrize("fresh_seeds", [False, True])
def test_rounds_reuse_the_same_episodes_unless_fresh_seeds(fresh_seeds: bool) -> None:
    """Two rounds of a fixed deterministic policy: identical returns by default (a learning curve
    compares like with like); with ``fresh_seeds`` round 1 resets with seeds ``seed + episodes + i``."""
    evaluation = D4RLEvaluation(episodes=4, seed=5, dataset=COUNTDOWN_DATASET, fresh_seeds=fresh_seeds)
    evaluation.resolved_dataset = COUNTDOWN_DATASET
    trainer = SimpleNamespace(global_rank=0, world_size=1)
    model = ToyPolicyModule()
    first = evaluation.evaluate(trainer, model)  # type: ignore[arg-type]
    second = evaluation.evaluate(trainer, model)  # type: ignore[arg-type]

    expected_first = [expected_countdown_length(5 + i) for i in range(4)]
    np.testing.assert_array_equal(first.lengths, expected_first)
    if fresh_seeds:
        expected_second = [expected_countdown_length(5 + 4 + i) for i in range(4)]
        assert expected_second != expected_first  # these seeds draw other episodes
        np.testing.assert_array_equal(second.lengths, expected_second)
        assert not np.array_equal(first.returns, second.returns)
    else:
        np.testing.assert_array_equal(second.lengths, expected_first)
        np.testing.assert_array_equal(second.returns, first.returns)


def test_explicit_dataset_without_datamodule_attribute_and_bad_arguments(tmp_path: Path) -> None:
    evaluation = RecordingEvaluation(interval=5, episodes=2, dataset=COUNTDOWN_DATASET, at_train_end=False)
    model = ToyPolicyModule(updates_per_step=2)
    trainer = make_trainer(tmp_path, batches=4, callbacks=[evaluation], logger=False)
    inputs = TensorDataset(torch.randn(16, 2))

    trainer.fit(model, train_dataloaders=DataLoader(inputs, batch_size=4))

    assert evaluation.evaluated_at == [6]  # 2, 4, 6 (5 crossed), 8; no final evaluation asked for

    with pytest.raises(ConfigError, match="dataset"):
        make_trainer(tmp_path, batches=1, callbacks=[D4RLEvaluation()], logger=False).fit(
            ToyPolicyModule(), train_dataloaders=DataLoader(inputs, batch_size=4)
        )
    with pytest.raises(ConfigError):
        D4RLEvaluation(interval=0)
    with pytest.raises(ConfigError):
        D4RLEvaluation(episodes=0)


def test_state_dict_round_trip() -> None:
    evaluation = D4RLEvaluation(episodes=2)
    evaluation.last_result = EvaluationResult([0, 1], [1.0, 3.0], [5, 7])
    evaluation.last_evaluated_update = 20_000
    evaluation.rounds_done = 2

    restored = D4RLEvaluation(episodes=2)
    restored.load_state_dict(evaluation.state_dict())

    assert restored.last_evaluated_update == 20_000 and restored.rounds_done == 2
    assert restored.last_result is not None
    np.testing.assert_array_equal(restored.last_result.returns, [1.0, 3.0])


class RankReportingEvaluation(D4RLEvaluation):
    """Writes what each DDP rank evaluated and logged to ``<report_dir>/rank<k>.json``."""

    def __init__(self, report_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.report_dir = report_dir
        self.records: list[dict[str, Any]] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        register_task(COUNTDOWN, overwrite=True)  # spawned processes start with the default registry
        super().setup(trainer, pl_module, stage)

    def log_result(self, trainer: pl.Trainer, pl_module: pl.LightningModule, result: EvaluationResult,
                   in_train_end: bool) -> None:
        super().log_result(trainer, pl_module, result, in_train_end)
        self.records.append({
            "update": int(pl_module.num_updates),
            "local_episodes": self.episode_ids(trainer),
            "episode_ids": result.episode_ids.tolist(),
            "returns": result.returns.tolist(),
            "logged": {key: float(trainer.callback_metrics[key]) for key in EVAL_KEYS},
        })
        path = Path(self.report_dir) / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.records))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ddp_ranks_shard_episodes_and_log_the_same_score(tmp_path: Path) -> None:
    # 2 updates per batch, 4 batches per rank: updates 2, 4, 6, 8; interval 5 -> evaluation at 6 in
    # on_train_batch_end, final evaluation at 8 in on_train_end. 5 episodes: shards of 3 and 2.
    evaluation = RankReportingEvaluation(str(tmp_path), interval=5, episodes=5, seed=3)
    model = ToyPolicyModule(updates_per_step=2)
    trainer = pl.Trainer(
        default_root_dir=tmp_path, max_epochs=1, limit_train_batches=4, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, accelerator="cpu", devices=2,
        strategy="ddp_spawn", callbacks=[evaluation],
    )

    trainer.fit(model, datamodule=ToyDataModule())

    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [record["update"] for record in reports[0]] == [6, 8]
    # identical on both ranks except for which episodes each ran itself
    for record_0, record_1 in zip(*reports):
        assert {**record_1, "local_episodes": record_0["local_episodes"]} == record_0
    assert [record["local_episodes"] for record in reports[0]] == [[0, 2, 4]] * 2
    assert [record["local_episodes"] for record in reports[1]] == [[1, 3]] * 2

    # the score every rank logged at the end is that of all 5 episodes of the final model (round 1)
    final = reports[0][-1]
    assert final["episode_ids"] == [0, 1, 2, 3, 4] and final["logged"]["eval/episodes"] == 5
    unsharded = evaluate_checkpoint_module(model, COUNTDOWN_DATASET, 5, seed=3)
    np.testing.assert_allclose(final["returns"], unsharded.returns, rtol=1e-6)
    assert math.isclose(final["logged"]["eval/normalized_score"],
                        unsharded.mean_normalized_score(COUNTDOWN_DATASET), rel_tol=1e-6)


def test_summary_keeps_a_success_fraction_visible() -> None:
    """An antmaze return is a success fraction: 2 successes in 100 episodes must not print as 0.0."""
    evaluation = D4RLEvaluation(episodes=100, dataset="antmaze-umaze-v2")
    evaluation.resolved_dataset = "antmaze-umaze-v2"
    metrics = {"eval/return": 0.02, "eval/return_se": 0.014, "eval/normalized_score": 2.0,
               "eval/normalized_score_se": 1.4, "eval/episodes": 100.0}
    line = evaluation.summary(SimpleNamespace(datamodule=None), 20_000, metrics)
    assert "return 0.02 ± 0.01" in line and "normalized score 2.0 ± 1.4" in line
