"""The policy-based levels with D4RL's recipe: ``medium``, ``expert``, ``medium-replay``, ``medium-expert``.

Importing this module registers the four builders with :mod:`lightning_offrl.data.registry`.

* ``medium`` / ``expert``: ``num_steps`` environment steps (D4RL: 1M) whose actions are *sampled* from the
  shipped tanh-Gaussian policy (:mod:`lightning_offrl.collect.policies`), not its mode, as D4RL did.
* ``medium-replay``: the data the SAC run collected before its medium checkpoint, regenerated from the
  shipped actor sequence. The run's first ``random_steps`` took uniform actions; after them each shipped
  actor acts for the share of rows equal to its share of the run's steps (the run's steps up to the medium
  checkpoint are scaled to ``num_steps``, D4RL's size: hopper 402k, walker2d 302k, halfcheetah 202k). The
  environment runs on across the hand-overs, so an episode may span two actors, as in a replay buffer.
  Differences from the raw buffer: the actor changes every ``snapshot_every`` steps instead of after every
  gradient step, the number of rows follows D4RL rather than our run's length, and the trajectories are
  new draws from those policies (the buffer's own states are not shipped).
* ``medium-expert``: ``medium`` followed by ``expert`` (``num_steps // 2`` rows each, same seed), D4RL's
  concatenation; a half whose replica is cached (same seed, size and shipped policy) is read, not generated.

Episode semantics follow D4RL: ``terminals`` marks true failures only (Gymnasium's ``terminated``),
``timeouts`` the 1000-step limit (``truncated`` without ``terminated``) and the final row when the budget
cuts an episode. ``infos/qpos``/``infos/qvel`` hold the MuJoCo state in which a row's action was taken and
``infos/action_log_probs`` the log-density of that action under the acting policy (``-act_dim * log 2`` for
the uniform actions of medium-replay's first rows).

Determinism: the first reset is seeded with ``seed``, later resets continue the environment's generator,
and the policy noise comes from a ``torch.Generator`` seeded with ``seed``; rollouts run on one thread. The
same seed gives identical arrays on the same kind of CPU (another instruction set may round the network's
matmuls differently, after which the trajectories drift apart).
"""

from __future__ import annotations

import logging
import math
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Callable, Sequence

import gymnasium as gym
import numpy as np

from lightning_offrl.collect.policies import (
    MEDIUM_REPLAY,
    PolicyInfo,
    action_to_env,
    load_behaviour_policy,
    load_replay_actors,
    policy_files,
)
from lightning_offrl.collect.progress import StepProgress
from lightning_offrl.collect.random import d4rl_arrays
from lightning_offrl.data.d4rl_hdf5 import read_d4rl_attrs, read_d4rl_hdf5
from lightning_offrl.data.registry import (
    DatasetSpec,
    get_dataset_spec,
    register_replica_builder,
    replica_inputs,
)
from lightning_offrl.data.sources import INPUTS_ATTR, inputs_digest, replica_path
from lightning_offrl.envs.tasks import make_env
from lightning_offrl.errors import DatasetError

if TYPE_CHECKING:
    from lightning_offrl.networks import TanhGaussianActor

# torch (and the networks built on it) is imported inside the functions that run policies: importing
# this module registers the recipes, which `lightning_offrl datasets list` needs without torch.

log = logging.getLogger(__name__)

# Progress-bar refresh interval in rows.
_PROGRESS_EVERY = 2_000
# Rows of policy noise drawn per generator call.
_NOISE_BLOCK = 4_096
# Rows per batch when computing the action log-densities after a rollout.
_LOG_PROB_CHUNK = 65_536

# One acting policy and the number of rows it generates; ``None`` acts uniformly at random.
Segment = tuple["TanhGaussianActor | None", int]


def rollout(
    env: gym.Env, segments: Sequence[Segment], seed: int, progress: bool = False, description: str = ""
) -> dict[str, np.ndarray]:
    """Runs the environment continuously, the acting policy changing at the segment boundaries.

    Args:
        env: a time-limited environment of the task (not yet reset).
        segments: ``(actor or None, rows)`` in order; ``None`` means uniform actions in ``[-1, 1]``.
        seed: seeds the first reset and the action noise.
        progress: show a rich progress bar.
        description: the progress bar's label.

    Returns:
        D4RL-layout arrays with ``N = sum(rows)`` rows: ``observations``/``next_observations (N, obs_dim)``,
        ``actions (N, act_dim)`` in ``[-1, 1]``, ``rewards (N,)`` float32, ``terminals``/``timeouts (N,)`` bool,
        ``infos/action_log_probs (N,)`` float32 and, for MuJoCo tasks, ``infos/qpos (N, nq)``/``infos/qvel (N, nv)``.
    """
    import torch

    num_rows = sum(rows for _, rows in segments)
    if num_rows <= 0:
        raise ValueError(f"a rollout needs at least one row, got segments of {[rows for _, rows in segments]} rows")
    space = env.action_space
    obs_dim = int(np.prod(env.observation_space.shape))
    act_dim = int(np.prod(space.shape))
    for actor, _ in segments:
        if actor is not None and actor.net.in_dim != obs_dim:
            raise DatasetError(
                f"the behaviour policy reads {actor.net.in_dim} observation values but {env.spec.id if env.spec else env} "
                f"gives {obs_dim}; the shipped policy belongs to another environment version (export it again)"
            )
    mujoco_data = getattr(env.unwrapped, "data", None)
    observations = np.empty((num_rows, obs_dim), dtype=np.float32)
    next_observations = np.empty((num_rows, obs_dim), dtype=np.float32)
    actions = np.empty((num_rows, act_dim), dtype=np.float32)
    rewards = np.empty(num_rows, dtype=np.float32)
    terminals = np.zeros(num_rows, dtype=bool)
    timeouts = np.zeros(num_rows, dtype=bool)
    qpos = np.empty((num_rows, mujoco_data.qpos.size), dtype=np.float32) if mujoco_data is not None else None
    qvel = np.empty((num_rows, mujoco_data.qvel.size), dtype=np.float32) if mujoco_data is not None else None
    uniform_log_prob = -act_dim * math.log(2.0)  # density of U([-1, 1]^act_dim)

    # Per step only the network runs; the noise is drawn in blocks and the log-densities are computed for
    # all rows at the end (from the stored pre-tanh sample, mean and log std), which is several times
    # cheaper than ``actor.sample`` row by row and gives the same numbers.
    generator = torch.Generator().manual_seed(seed)
    pre_tanh = np.zeros((num_rows, act_dim), dtype=np.float32)
    means = np.zeros((num_rows, act_dim), dtype=np.float32)
    log_stds = np.zeros((num_rows, act_dim), dtype=np.float32)
    uniform_rows = np.zeros(num_rows, dtype=bool)
    previous_threads = torch.get_num_threads()
    # One thread: a single-row forward gains nothing from more, and a fixed count keeps the rounding fixed.
    torch.set_num_threads(1)
    obs, _ = env.reset(seed=seed)
    row = 0
    bar = StepProgress(description, num_rows, enabled=progress, every=_PROGRESS_EVERY)
    try:
        with bar, torch.inference_mode():
            for actor, rows in segments:
                noise = np.empty((0, act_dim), dtype=np.float32)
                for i in range(rows):
                    if i % _NOISE_BLOCK == 0:
                        block = min(_NOISE_BLOCK, rows - i)
                        if actor is None:
                            noise = (torch.rand((block, act_dim), generator=generator) * 2.0 - 1.0).numpy()
                        else:
                            noise = torch.randn((block, act_dim), generator=generator).numpy()
                    observations[row] = obs
                    if mujoco_data is not None:
                        qpos[row] = mujoco_data.qpos
                        qvel[row] = mujoco_data.qvel
                    if actor is None:
                        action = noise[i % _NOISE_BLOCK]
                        uniform_rows[row] = True
                    else:
                        mean, log_std = actor(torch.from_numpy(observations[row : row + 1]))
                        means[row], log_stds[row] = mean[0].numpy(), log_std[0].numpy()
                        pre_tanh[row] = means[row] + np.exp(log_stds[row]) * noise[i % _NOISE_BLOCK]
                        action = np.tanh(pre_tanh[row])
                    actions[row] = action
                    obs, reward, terminated, truncated, _ = env.step(action_to_env(actions[row], space))
                    next_observations[row] = obs
                    rewards[row] = reward
                    terminals[row] = terminated
                    # A failure on the last allowed step is a failure, not a time-out.
                    timeouts[row] = truncated and not terminated
                    if terminated or truncated:
                        obs, _ = env.reset()
                    row += 1
                    bar.update(row)
    finally:
        torch.set_num_threads(previous_threads)
    log_probs = _tanh_gaussian_log_probs(pre_tanh, means, log_stds)
    log_probs[uniform_rows] = uniform_log_prob
    return d4rl_arrays(observations, actions, rewards, next_observations, terminals, timeouts, qpos, qvel,
                       action_log_probs=log_probs)


def _tanh_gaussian_log_probs(pre_tanh: np.ndarray, means: np.ndarray, log_stds: np.ndarray) -> np.ndarray:
    """Log-density of ``tanh(u)`` for ``u ~ N(mean, exp(log_std)^2)``, as :meth:`TanhGaussianActor.sample`.

    Shapes: ``(N, act_dim)`` each ``-> (N,)`` float32.
    """
    import torch
    
    from lightning_offrl.networks.actors import gaussian_log_prob, tanh_log_det_jacobian

    out = np.empty(len(pre_tanh), dtype=np.float32)
    for start in range(0, len(pre_tanh), _LOG_PROB_CHUNK):
        stop = start + _LOG_PROB_CHUNK
        u = torch.from_numpy(pre_tanh[start:stop])
        log_prob = gaussian_log_prob(u, torch.from_numpy(means[start:stop]), torch.from_numpy(log_stds[start:stop]))
        out[start:stop] = (log_prob - tanh_log_det_jacobian(u)).numpy()
    return out


def replay_rows(segment_steps: Sequence[int], num_steps: int) -> list[int]:
    """Splits ``num_steps`` rows over segments in proportion to their steps in the run (largest remainders).

    Args:
        segment_steps: environment steps each acting policy had in the SAC run.
        num_steps: rows of the replica.

    Returns:
        Rows per segment, summing to ``num_steps``.
    """
    total = sum(segment_steps)
    if total <= 0:
        raise DatasetError("the medium-replay schedule covers no steps; export the policies again")
    exact = [num_steps * steps / total for steps in segment_steps]
    rows = [math.floor(value) for value in exact]
    # Hand the rows lost to flooring to the largest remainders (ties to the earlier segment).
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - rows[i]), i))
    for i in order[: num_steps - sum(rows)]:
        rows[i] += 1
    return rows


def _warn_if_provisional(spec: DatasetSpec, info: PolicyInfo) -> None:
    """Logs a warning when the shipped medium policy comes from a run that had not reached the medium level."""
    if info.role == "medium" and info.reached_target is False:
        log.warning(
            "%s: the shipped %s medium policy is provisional: its SAC run had not reached the medium level "
            "(target return %.0f, this policy %.0f deterministic / %.0f sampled at step %d); the data is weaker "
            "than D4RL's medium level until the run is trained further and exported again",
            spec.name, spec.domain, info.target_return or float("nan"), info.eval_return, info.sampled_return,
            info.train_steps,
        )


def _check_rows(num_steps: int) -> None:
    if num_steps <= 0:
        raise ValueError(f"num_steps must be positive, got {num_steps}")


def _policy_level(spec: DatasetSpec, role: str, seed: int, num_steps: int, progress: bool) -> dict[str, np.ndarray]:
    _check_rows(num_steps)
    actor, info = load_behaviour_policy(spec.domain, role)
    _warn_if_provisional(spec, info)
    env = make_env(spec.name)
    try:
        return rollout(env, [(actor, num_steps)], seed, progress,
                       description=f"{spec.name} ({role} policy of step {info.train_steps:,}, seed {seed})")
    finally:
        env.close()


def build_medium(spec: DatasetSpec, seed: int, num_steps: int, progress: bool = True) -> dict[str, np.ndarray]:
    """``num_steps`` rows of actions sampled from the shipped medium policy of ``spec.domain``."""
    return _policy_level(spec, "medium", seed, num_steps, progress)


def build_expert(spec: DatasetSpec, seed: int, num_steps: int, progress: bool = True) -> dict[str, np.ndarray]:
    """``num_steps`` rows of actions sampled from the shipped expert policy of ``spec.domain``."""
    return _policy_level(spec, "expert", seed, num_steps, progress)


def build_medium_replay(spec: DatasetSpec, seed: int, num_steps: int, progress: bool = True) -> dict[str, np.ndarray]:
    """The SAC run up to its medium checkpoint, regenerated from the shipped actor sequence (``num_steps`` rows)."""
    _check_rows(num_steps)
    actors, schedule = load_replay_actors(spec.domain)
    _warn_if_provisional(spec, load_behaviour_policy(spec.domain, "medium")[1])
    rows = replay_rows(schedule.segment_lengths(), num_steps)
    segments: list[Segment] = [(None, rows[0])] + list(zip(actors, rows[1:]))
    env = make_env(spec.name)
    try:
        return rollout(env, segments, seed, progress,
                       description=f"{spec.name} ({len(actors)} actors up to step {schedule.end_step:,}, seed {seed})")
    finally:
        env.close()


def build_medium_expert(spec: DatasetSpec, seed: int, num_steps: int, progress: bool = True) -> dict[str, np.ndarray]:
    """``medium`` (``num_steps // 2`` rows) followed by ``expert`` (the rest), both with ``seed``."""
    _check_rows(num_steps)
    if num_steps < 2:
        raise ValueError(f"medium-expert needs at least 2 rows (one per half), got {num_steps}")
    # Both policies are loaded first so a missing expert fails before the medium half is generated.
    load_behaviour_policy(spec.domain, "medium")
    load_behaviour_policy(spec.domain, "expert")
    halves = []
    for role, rows in (("medium", num_steps // 2), ("expert", num_steps - num_steps // 2)):
        cached = _cached_half(spec, role, seed, rows)
        halves.append(cached if cached is not None else _policy_level(spec, role, seed, rows, progress))
    medium, expert = halves
    return {key: np.concatenate([medium[key], expert[key]]) for key in medium}


def _cached_half(spec: DatasetSpec, role: str, seed: int, num_steps: int) -> dict[str, np.ndarray] | None:
    """The cached ``<domain>-<role>`` replica of this seed and size, if built from the policy shipped now.

    Each half of medium-expert is the medium or expert replica of the same seed and size, row for row, so
    a cached one is read instead of generated again; a replica built from another policy file (its recorded
    SHA-256 differs) is not used.
    """
    half = get_dataset_spec(spec.name.replace(f"-{spec.level}-", f"-{role}-"))
    path = replica_path(half.name, seed, num_steps)
    if not path.is_file():
        return None
    if read_d4rl_attrs(path).get(INPUTS_ATTR) != inputs_digest(replica_inputs(half)):
        return None
    log.info("%s: the %s half is the cached replica %s", spec.name, role, path)
    return read_d4rl_hdf5(path)


def _reads(*roles: str) -> Callable[[DatasetSpec], list[Traversable]]:
    """The registry's ``inputs`` of a level whose recipe reads the shipped policies of ``roles``."""
    return lambda spec: policy_files(spec.domain, roles)


register_replica_builder("medium", build_medium, inputs=_reads("medium"))
register_replica_builder("expert", build_expert, inputs=_reads("expert"))
register_replica_builder("medium-replay", build_medium_replay, inputs=_reads(MEDIUM_REPLAY, "medium"))
register_replica_builder("medium-expert", build_medium_expert, inputs=_reads("medium", "expert"))
