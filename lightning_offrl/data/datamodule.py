"""The DataModule of every method: a D4RL-named dataset as device-resident transitions."""

from __future__ import annotations

import logging
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt

from lightning_offrl.data.buffer import BatchStream, TransitionBuffer
from lightning_offrl.data.normalization import (
    ObservationStats,
    RewardTransform,
    normalize_transitions,
    transform_rewards,
)
from lightning_offrl.errors import ConfigError, DatasetError, UnknownDatasetError

log = logging.getLogger("lightning_offrl")

Source = Literal["auto", "d4rl", "minari", "replica"]


class D4RLDataModule(pl.LightningDataModule):
    """Offline transitions of a D4RL-named dataset, sampled on the training device.

    The dataset is resolved in DESIGN.md's order (a D4RL file, a local Minari dataset, the project's
    replica generated on first use) unless ``source``/``path`` say otherwise. ``prepare_data`` builds a
    missing replica once (rank 0 under DDP); ``setup`` loads it on every rank.

    Args:
        dataset: D4RL name, e.g. ``hopper-medium-v2`` or ``antmaze-umaze-v2``.
        source: where to take the data from; ``auto`` follows the resolution order.
        path: an explicit D4RL-format HDF5 file (overrides ``source``).
        replica_seed: seed of the replica's generation (a different seed is a different dataset).
        replica_steps: size of the replica; ``None`` uses D4RL's size for that name.
        batch_size: transitions per gradient update.
        batches_per_step: updates per ``training_step``; several amortise Lightning's per-step cost.
        steps_per_epoch: ``training_step`` calls per epoch (an epoch is
            ``steps_per_epoch * batches_per_step`` updates).
        normalize_observations: standardise observations with the dataset's mean/std (the statistics
            are stored in the model, so ``act()`` applies them to raw environment observations).
        reward_transform: ``none``, ``return_range`` (IQL's locomotion scaling) or ``affine``.
        reward_scale: multiplier of the ``affine`` transform.
        reward_shift: offset of the ``affine`` transform (antmaze: ``-1``).
        seed: base seed of the batch sampler; rank ``r`` uses ``seed + r``.
        env_id: for a dataset of your own (any ``dataset`` name that is not a known one, read from
            ``path``): the Gymnasium environment to evaluate in. Without it the fit trains and checkpoints
            with evaluation off.
        ref_min_score: for a dataset of your own: the return that scores 0 (with ``ref_max_score``; without
            them evaluation reports raw returns).
        ref_max_score: the return that scores 100.
    """

    def __init__(
        self,
        dataset: str = "hopper-random-v2",
        source: Source = "auto",
        path: str | None = None,
        replica_seed: NonNegativeInt = 0,
        replica_steps: PositiveInt | None = None,
        batch_size: PositiveInt = 256,
        batches_per_step: PositiveInt = 1,
        steps_per_epoch: PositiveInt = 1000,
        normalize_observations: bool = True,
        reward_transform: RewardTransform = "none",
        reward_scale: float = 1.0,
        reward_shift: float = 0.0,
        seed: NonNegativeInt = 0,
        env_id: str | None = None,
        ref_min_score: float | None = None,
        ref_max_score: float | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("batches_per_step", batches_per_step),
                            ("steps_per_epoch", steps_per_epoch)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"data.{name} must be a positive integer, got {value!r}")
        if not np.isfinite(reward_scale) or not np.isfinite(reward_shift):
            raise ConfigError(f"data.reward_scale/reward_shift must be finite, got {reward_scale}, {reward_shift}")
        self.save_hyperparameters()
        self.dataset = dataset
        self.source = source
        self.path = path
        self.replica_seed = replica_seed
        self.replica_steps = replica_steps
        self.batch_size = batch_size
        self.batches_per_step = batches_per_step
        self.steps_per_epoch = steps_per_epoch
        self.normalize_observations = normalize_observations
        self.reward_transform = reward_transform
        self.reward_scale = reward_scale
        self.reward_shift = reward_shift
        self.seed = seed

        self.env_id = env_id
        self.ref_min_score = ref_min_score
        self.ref_max_score = ref_max_score
        self.task = self._task_of(dataset, path, env_id, ref_min_score, ref_max_score)
        self.buffer: TransitionBuffer | None = None
        self.obs_stats: ObservationStats | None = None
        self.resolved_source: str | None = None
        self.is_replica: bool = False
        self.data_fingerprint: str | None = None  # d4rl_hdf5.data_fingerprint of the arrays trained on
        self.generator: torch.Generator | None = None
        self._generator_state: torch.Tensor | None = None
        self._extra_sources: list[tuple[TransitionBuffer, float]] = []
        self._dims: tuple[int, int] | None = None
        self._prepared: Any = None  # what prepare_data resolved, handed to setup in the same process

    @staticmethod
    def _task_of(dataset: str, path: str | None, env_id: str | None, ref_min_score: float | None,
                 ref_max_score: float | None) -> Any:
        """The dataset's task; a name that is not a known dataset, read from ``path``, gets a task of its own.

        Fails early, with the known names, on an unknown name without a file.
        """
        from lightning_offrl.data.registry import is_d4rl_dataset, register_custom_dataset
        from lightning_offrl.envs.tasks import get_task

        own = (env_id, ref_min_score, ref_max_score) != (None, None, None)
        if path is not None and not is_d4rl_dataset(dataset):
            from lightning_offrl.data.d4rl_hdf5 import read_d4rl_shapes

            rows = read_d4rl_shapes(path)[0]
            spec = register_custom_dataset(dataset, env_id, ref_min_score, ref_max_score, num_steps=rows)
            if not spec.task.has_environment:
                from lightning.pytorch.utilities import rank_zero_only

                if rank_zero_only.rank == 0:  # said once, not once per DDP process
                    log.warning("%s: no data.env_id, so training and checkpointing run with evaluation off", dataset)
            return spec.task
        if own and is_d4rl_dataset(dataset):
            raise ConfigError(
                f"{dataset!r} is a known dataset with its own environment and reference returns; "
                "data.env_id/ref_min_score/ref_max_score only apply to a dataset of your own: give your file "
                "another data.dataset name and pass it as data.path"
            )
        if own:
            raise ConfigError(
                "data.env_id/ref_min_score/ref_max_score describe a dataset of your own, read from its file: "
                f"pass the file of {dataset!r} as data.path"
            )
        try:
            return get_task(dataset)
        except UnknownDatasetError as error:
            raise UnknownDatasetError(
                f"{error} To train on a file of your own under any name, pass it as data.path (and "
                "data.env_id to evaluate in a Gymnasium environment)."
            ) from None

    # ----------------------------------------------------------------------------------- sizes
    def _env_dims(self) -> tuple[int, int]:
        """Observation/action sizes from the environment (or, for a task without one, from the file's
        headers), so the model can be built before the data."""
        if self._dims is None and not self.task.has_environment:
            from lightning_offrl.data.d4rl_hdf5 import read_d4rl_shapes

            assert self.path is not None, "a task without an environment is a dataset read from data.path"
            self._dims = read_d4rl_shapes(self.path)[1:]
        if self._dims is None:
            from lightning_offrl.envs.tasks import make_env

            env = make_env(self.dataset)
            try:
                self._dims = (int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape)))
            finally:
                env.close()
        return self._dims

    @property
    def obs_dim(self) -> int:
        return self.buffer.obs_dim if self.buffer is not None else self._env_dims()[0]

    @property
    def act_dim(self) -> int:
        return self.buffer.act_dim if self.buffer is not None else self._env_dims()[1]

    # ------------------------------------------------------------------------------- loading
    def _resolve(self, progress: bool = True) -> Any:
        from lightning_offrl.data.sources import resolve_dataset

        return resolve_dataset(
            self.dataset, source=self.source, path=self.path, seed=self.replica_seed,
            num_steps=self.replica_steps, progress=progress,
        )

    def prepare_data(self) -> None:
        # Rank 0 only: builds and caches a missing replica so the other ranks just read it.
        # Kept for setup() in this process, so the file is read (and the replica notice logged) once;
        # ranks that did not run prepare_data resolve for themselves in setup().
        self._prepared = self._resolve(progress=True)

    def setup(self, stage: str | None = None) -> None:
        prepared, self._prepared = self._prepared, None
        if self.buffer is not None or stage in ("validate", "test"):
            return  # validate/test evaluate in the environment; the model carries its statistics
        from lightning_offrl.data.d4rl_hdf5 import data_fingerprint, episode_returns, qlearning_transitions

        resolved = prepared if prepared is not None else self._resolve(progress=False)
        self.resolved_source = resolved.source
        self.is_replica = bool(resolved.is_replica)
        self.data_fingerprint = data_fingerprint(resolved.arrays)
        transitions = qlearning_transitions(resolved.arrays)
        obs_dim, act_dim = transitions["observations"].shape[1], transitions["actions"].shape[1]
        if (obs_dim, act_dim) != self._env_dims():
            env_obs, env_act = self._env_dims()
            check = "data.env_id and data.path" if self.env_id else "data.dataset and data.path"
            raise DatasetError(
                f"{resolved.path or self.dataset}: observations {(len(transitions['observations']), obs_dim)} and "
                f"actions {(len(transitions['actions']), act_dim)} do not fit the {self.task.gym_id} environment, "
                f"which observes ({env_obs},) and acts in ({env_act},); the file does not belong to this "
                f"environment (check {check})"
            )
        if self.obs_stats is None:
            self.obs_stats = (
                ObservationStats.fit(transitions["observations"]) if self.normalize_observations
                else ObservationStats.identity(obs_dim)
            )
        transitions = normalize_transitions(transitions, self.obs_stats)
        transitions["rewards"], self.reward_scale_applied, self.reward_shift_applied = transform_rewards(
            transitions["rewards"], self.reward_transform, episode_returns(resolved.arrays),
            self.reward_scale, self.reward_shift,
        )
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.buffer = TransitionBuffer.from_arrays(transitions, device=device)
        rank = self.trainer.global_rank if self.trainer is not None else 0
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(self.seed + rank)
        if self._generator_state is not None:
            self._restore_generator()
        label = "replica (scores are not D4RL's)" if self.is_replica else resolved.source
        log.info("%s: %d transitions from %s", self.dataset, len(self.buffer), label)

    def add_source(self, buffer: TransitionBuffer, fraction: float) -> None:
        """Mixes another buffer (e.g. synthetic rollouts) into every batch with weight ``fraction``.

        The real data keeps weight ``1 - sum(fractions)``. The buffer object may grow or be refilled
        in place; each batch samples its current contents. Adding the same buffer object again only
        sets its fraction (a module may register its buffer in every ``setup``).
        """
        if not 0.0 <= fraction < 1.0:
            raise ConfigError(f"a mixed-in source's fraction must be in [0, 1), got {fraction}")
        others = [(source, share) for source, share in self._extra_sources if source is not buffer]
        if sum(share for _, share in others) + fraction >= 1.0:
            raise ConfigError(
                f"mixed-in sources would take {sum(share for _, share in others) + fraction:.3g} of every batch, "
                "leaving no real data; lower their fractions so they sum to less than 1"
            )
        self._extra_sources = [*others, (buffer, fraction)]

    def train_dataloader(self) -> BatchStream:
        if self.buffer is None or self.generator is None:
            self.setup("fit")
        assert self.buffer is not None and self.generator is not None
        real_fraction = 1.0 - sum(f for _, f in self._extra_sources)
        return BatchStream(
            [(self.buffer, real_fraction), *self._extra_sources],
            self.batch_size, self.batches_per_step, self.steps_per_epoch, self.generator,
        )

    def val_dataloader(self) -> list[int]:
        # Evaluation happens in the environment (the D4RLEvaluation callback), not on batches: one
        # placeholder batch lets `lightning_offrl validate` run its loop; none during fit, where the
        # callback evaluates every `interval` updates instead.
        fitting = self.trainer is not None and self.trainer.state.fn == "fit"
        return [] if fitting else [0]

    def test_dataloader(self) -> list[int]:
        return [0]

    # ------------------------------------------------------------------- checkpointed state
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"dataset": self.dataset, "source": self.resolved_source, "is_replica": self.is_replica,
                                 "fingerprint": self.data_fingerprint}
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        if self.obs_stats is not None:
            # Tensors, not numpy arrays: checkpoints must load with torch.load(weights_only=True).
            state["obs_mean"] = torch.as_tensor(self.obs_stats.mean)
            state["obs_std"] = torch.as_tensor(self.obs_stats.std)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "obs_mean" in state_dict:
            self.obs_stats = ObservationStats(
                np.asarray(state_dict["obs_mean"], dtype=np.float32), np.asarray(state_dict["obs_std"], dtype=np.float32)
            )
        if "generator" in state_dict:
            self._generator_state = state_dict["generator"]
            if self.generator is not None:
                self._restore_generator()

    def _restore_generator(self) -> None:
        assert self.generator is not None and self._generator_state is not None
        world_size = self.trainer.world_size if self.trainer is not None else 1
        if world_size == 1:
            self.generator.set_state(self._generator_state)  # exact continuation
        else:
            # Only rank 0's state is saved; every rank derives a distinct stream from it.
            digest = int(self._generator_state.to(torch.int64).mul(31).sum()) % (2**61)
            self.generator.manual_seed(digest + self.trainer.global_rank)
