"""D4RL normalized-score evaluation during training.

The callback evaluates the policy every ``interval`` *module updates* (``pl_module.num_updates``,
the module's own count of gradient updates; ``trainer.global_step`` counts every optimizer step,
several per update with manual optimization, so it is not used) and once more when training ends.

Under DDP each rank runs a disjoint shard of the episode ids, the per-episode results are
gathered with ``torchmetrics.CatMetric`` (which copes with shards of unequal size) and every rank
computes the same score, so ``ModelCheckpoint(monitor="eval/normalized_score")`` works on all ranks.
"""

from __future__ import annotations

import math
import time
from typing import Any, Protocol

import lightning.pytorch as pl
import numpy as np
import rich
import torch
from torchmetrics.aggregation import CatMetric

from lightning_offrl.envs.evaluation import EvaluationResult, evaluate_policy, shard_episodes
from lightning_offrl.envs.tasks import get_task
from lightning_offrl.errors import ConfigError


class ActingModule(Protocol):
    """What evaluation needs from a module: a deterministic batched policy."""

    training: bool

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Maps raw observations (N, obs_dim) to actions (N, act_dim) within the action bounds."""
        ...

    def train(self, mode: bool = True) -> Any:
        """Sets training mode (``torch.nn.Module.train``)."""
        ...


def evaluate_checkpoint_module(
    module: ActingModule,
    dataset: str,
    episodes: int | list[int] = 10,
    seed: int = 0,
    num_envs: int | None = None,
) -> EvaluationResult:
    """Evaluates a module's deterministic policy ``module.act`` in eval mode, restoring its mode after.

    Args:
        module: any module with ``act(obs: (N, obs_dim)) -> (N, act_dim)``, e.g. a loaded checkpoint.
        dataset: the D4RL dataset (or task) name whose environment is used.
        episodes: a number of episodes or explicit episode ids; episode ``i`` uses seed ``seed + i``.
        seed: base seed of the episodes.
        num_envs: parallel environments (default: see :func:`evaluate_policy`).

    Returns:
        The episodes' returns and lengths.
    """
    was_training = module.training
    module.train(False)
    try:
        return evaluate_policy(module.act, dataset, episodes, seed=seed, num_envs=num_envs)
    finally:
        module.train(was_training)


class D4RLEvaluation(pl.Callback):
    """Evaluates the policy on the dataset's environment and logs D4RL normalized scores.

    Logged (identical on every rank): ``eval/return``, ``eval/return_se``,
    ``eval/normalized_score``, ``eval/normalized_score_se`` and ``eval/episodes``. During training
    they go through ``pl_module.log`` (so ``trainer.callback_metrics`` and checkpoint monitors see
    them) and straight to the loggers with the update count as step: Lightning forwards step
    metrics to loggers only every ``log_every_n_steps`` batches and would drop most evaluations.

    Every evaluation round resets its episodes with seeds ``seed + i``, i = 0..episodes-1, so the
    points of a learning curve compare the policy on the same starts and differ only by what it
    learned (with few episodes, start-to-start spread would otherwise move the curve as much as
    learning does). With ``fresh_seeds`` round ``k`` (counted from 0) uses ``seed + k * episodes + i``
    instead: new starts every round, which covers more of the start distribution over a run. Either
    way runs with the same seed see the same starts.

    Args:
        interval: module updates between evaluations; an evaluation runs after the batch in which
            ``num_updates`` crosses a multiple of it.
        episodes: episodes per evaluation (over all ranks together).
        seed: base seed of the evaluation episodes.
        num_envs: parallel environments per rank (default: one per episode, capped).
        dataset: D4RL dataset name; default ``trainer.datamodule.dataset``.
        at_train_end: evaluate once more when training ends unless the last update was evaluated.
        fresh_seeds: reset each round's episodes with new seeds (see above); default: the same
            episodes every round.
    """

    def __init__(
        self,
        interval: int = 10_000,
        episodes: int = 10,
        seed: int = 0,
        num_envs: int | None = None,
        dataset: str | None = None,
        at_train_end: bool = True,
        fresh_seeds: bool = False,
    ) -> None:
        if interval < 1:
            raise ConfigError(f"D4RLEvaluation.interval must be >= 1 update, got {interval}")
        if episodes < 1:
            raise ConfigError(f"D4RLEvaluation.episodes must be >= 1, got {episodes}")
        if num_envs is not None and num_envs < 1:
            raise ConfigError(f"D4RLEvaluation.num_envs must be >= 1 or None, got {num_envs}")
        self.interval = interval
        self.episodes = episodes
        self.seed = seed
        self.num_envs = num_envs
        self.dataset = dataset
        self.resolved_dataset: str | None = dataset  # ``dataset`` or the DataModule's, set in setup()
        self.at_train_end = at_train_end
        self.fresh_seeds = fresh_seeds
        self.last_result: EvaluationResult | None = None
        # Update count at the last evaluation; None until training starts (then it is the module's
        # starting count, so a run that continues from a module's weights does not evaluate at once).
        self.last_evaluated_update: int | None = None
        self.rounds_done = 0
        self.last_duration_s: float | None = None  # wall time of the last evaluation (this rank)
        # False for a task without an environment (a dataset of the user's own without data.env_id): the fit
        # trains and checkpoints, and this callback does nothing (the DataModule says so once).
        self.enabled = True
        self.has_reference_scores = True

    @property
    def state_key(self) -> str:
        # Keyed on the constructor's dataset only: a resumed run may change interval or episodes.
        return self._generate_state_key(dataset=self.dataset)

    # ------------------------------------------------------------------ Lightning hooks

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage not in ("fit", "validate", "test"):
            return
        for attribute in ("num_updates", "act"):
            if not hasattr(pl_module, attribute):
                raise ConfigError(
                    f"D4RLEvaluation needs a module with `{attribute}` (an OfflineRLModule); "
                    f"{type(pl_module).__name__} has none"
                )
        dataset = self.dataset or getattr(getattr(trainer, "datamodule", None), "dataset", None)
        if not isinstance(dataset, str):
            raise ConfigError(
                "D4RLEvaluation does not know which task to evaluate: pass dataset='hopper-medium-v2' "
                "(or the like) or train with a DataModule that has a `dataset` name"
            )
        task = get_task(dataset)  # an unknown name fails now, with the list of known tasks
        self.resolved_dataset = dataset
        self.has_reference_scores = task.has_reference_scores
        self.enabled = task.has_environment
        if not self.enabled and stage != "fit":
            raise ConfigError(
                f"{dataset} has no environment to evaluate in: pass data.env_id (a Gymnasium id) to {stage} it"
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.last_evaluated_update is None and self.enabled:
            self.last_evaluated_update = int(pl_module.num_updates)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.should_evaluate(trainer, pl_module):
            return
        result = self.evaluate(trainer, pl_module)
        self.log_result(trainer, pl_module, result, in_train_end=False)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.should_evaluate_at_train_end(trainer, pl_module):
            return
        result = self.evaluate(trainer, pl_module)
        self.log_result(trainer, pl_module, result, in_train_end=True)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # `lightning_offrl validate`: one evaluation of the loaded model (never during fit: the
        # DataModule gives the fit loop no validation batches).
        if trainer.state.fn == "validate":
            self._evaluate_in_loop(trainer, pl_module)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluate_in_loop(trainer, pl_module)

    def _evaluate_in_loop(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        result = self.evaluate(trainer, pl_module)
        for name, value in self.metrics(result).items():
            pl_module.log(name, value, on_step=False, on_epoch=True, batch_size=1, sync_dist=False)
        if trainer.is_global_zero:
            rich.get_console().print(
                self.summary(trainer, int(pl_module.num_updates), self.metrics(result)), soft_wrap=True
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_result": None if self.last_result is None else self.last_result.to_dict(),
            "last_evaluated_update": self.last_evaluated_update,
            "rounds_done": self.rounds_done,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        last = state_dict.get("last_result")
        self.last_result = None if last is None else EvaluationResult.from_dict(last)
        self.last_evaluated_update = state_dict.get("last_evaluated_update")
        self.rounds_done = int(state_dict.get("rounds_done", 0))

    # ------------------------------------------------------------------ overridable pieces

    def should_evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        """True after a batch in which ``num_updates`` crossed a multiple of ``interval``.

        A ``training_step`` may do several updates, so the test is on crossing, not equality.
        """
        if not self.enabled:
            return False
        updates = int(pl_module.num_updates)
        last = self.last_evaluated_update if self.last_evaluated_update is not None else 0
        return updates // self.interval > last // self.interval

    def should_evaluate_at_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        """True when ``at_train_end`` is set and updates happened since the last evaluation."""
        last = self.last_evaluated_update if self.last_evaluated_update is not None else 0
        return self.enabled and self.at_train_end and int(pl_module.num_updates) > last

    def episode_ids(self, trainer: pl.Trainer) -> list[int]:
        """This rank's share of the episode ids ``0..episodes-1``."""
        return shard_episodes(self.episodes, trainer.global_rank, trainer.world_size)

    def round_seed(self, round_index: int) -> int:
        """Seed of episode 0 of evaluation round ``round_index``; episode ``i`` uses this plus ``i``."""
        return self.seed + (round_index * self.episodes if self.fresh_seeds else 0)

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> EvaluationResult:
        """Runs this rank's shard of the round's episodes and gathers all ranks' episodes.

        Returns:
            The result over all ``episodes`` episodes, identical on every rank.
        """
        assert self.resolved_dataset is not None, "setup() resolves the dataset"
        round_seed = self.round_seed(self.rounds_done)
        start = time.perf_counter()
        local = evaluate_checkpoint_module(
            pl_module,  # type: ignore[arg-type]  # an OfflineRLModule has act()
            self.resolved_dataset,
            self.episode_ids(trainer),
            seed=round_seed,
            num_envs=self.num_envs,
        )
        result = _gather_over_ranks(local, pl_module.device) if trainer.world_size > 1 else local
        self.last_duration_s = time.perf_counter() - start
        self.rounds_done += 1
        self.last_evaluated_update = int(pl_module.num_updates)
        self.last_result = result
        return result

    def metrics(self, result: EvaluationResult) -> dict[str, float]:
        """The scalars logged for one evaluation (no normalized score for a task without reference returns)."""
        dataset = self.resolved_dataset
        assert dataset is not None
        metrics = {"eval/return": result.mean_return(), "eval/return_se": result.stderr_return()}
        if self.has_reference_scores:
            metrics["eval/normalized_score"] = result.mean_normalized_score(dataset)
            metrics["eval/normalized_score_se"] = result.stderr_normalized_score(dataset)
        metrics["eval/episodes"] = float(result.num_episodes)
        return metrics

    def log_result(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, result: EvaluationResult, in_train_end: bool
    ) -> None:
        """Logs the metrics of ``result`` and prints a one-line summary on rank 0.

        ``LightningModule.log`` is not allowed in ``on_train_end``; there the metrics are written to
        the loggers and to ``trainer.callback_metrics`` directly.
        """
        metrics = self.metrics(result)
        update = int(pl_module.num_updates)
        if in_train_end:
            trainer.callback_metrics.update({name: torch.tensor(value) for name, value in metrics.items()})
        else:
            for name, value in metrics.items():
                pl_module.log(
                    name, value, on_step=True, on_epoch=False, logger=False, batch_size=1,
                    prog_bar=name == "eval/normalized_score",
                )
        for logger in trainer.loggers:  # loggers write on rank 0 only
            logger.log_metrics(metrics, step=update)
            logger.save()
        if trainer.is_global_zero:
            # soft_wrap: one line however narrow the terminal (or a log file's default of 80 columns)
            rich.get_console().print(self.summary(trainer, update, metrics), soft_wrap=True)

    def summary(self, trainer: pl.Trainer, update: int, metrics: dict[str, float]) -> str:
        """One console line: ``update 10000 | return 1234.56 ± 12.34 | normalized score 38.2 ± 0.4``."""
        is_replica = bool(getattr(getattr(trainer, "datamodule", None), "is_replica", False))

        def fmt(value: float, digits: int = 1) -> str:
            return "n/a" if math.isnan(value) else f"{value:.{digits}f}"

        # Returns get two decimals: an antmaze return is a success fraction (0.02 = 2 in 100 episodes).
        score = (
            f"normalized score {fmt(metrics['eval/normalized_score'])} ± {fmt(metrics['eval/normalized_score_se'])}"
            if "eval/normalized_score" in metrics else "raw return (no reference returns)"
        )
        return (
            f"[bold]{self.resolved_dataset}[/bold] update {update} | "
            f"return {fmt(metrics['eval/return'], 2)} ± {fmt(metrics['eval/return_se'], 2)} | "
            f"{score} | {int(metrics['eval/episodes'])} episodes"
            + (f" in {self.last_duration_s:.2f} s" if self.last_duration_s is not None else "")
            + (" [yellow]\\[replica][/yellow]" if is_replica else "")
        )


def _gather_over_ranks(local: EvaluationResult, device: torch.device) -> EvaluationResult:
    """All ranks' episodes, on every rank, sorted by id.

    ``CatMetric`` all-gathers tensors of different lengths (and empty shards) across the process
    group; values are float64 so that returns and ids survive exactly (MPS has no float64).
    """
    dtype = torch.float32 if device.type == "mps" else torch.float64
    gathered: list[np.ndarray] = []
    for values in (local.episode_ids, local.returns, local.lengths):
        metric = CatMetric(nan_strategy="disable").to(device)
        metric.set_dtype(dtype)
        metric.update(torch.as_tensor(values, dtype=dtype, device=device))
        gathered.append(metric.compute().reshape(-1).cpu().numpy())
    ids, returns, lengths = gathered
    order = np.argsort(ids, kind="stable")
    return EvaluationResult(np.rint(ids[order]), returns[order], np.rint(lengths[order]))


__all__ = ["ActingModule", "D4RLEvaluation", "evaluate_checkpoint_module"]
