"""The ``random`` level: D4RL's recipe of uniformly random actions.

D4RL's ``*-random-v2`` files hold 1M steps of actions drawn uniformly from the action space,
episodes ending at the environment's own termination (``terminals``) or at the 1000-step time
limit (``timeouts``). This builder runs the same loop on the task's Gymnasium environment.

Determinism: the actions come from a ``numpy`` Generator seeded with ``seed`` and the first
``reset`` is seeded with ``seed``; every later reset continues the environment's own generator,
so the same seed gives identical arrays and different seeds give different ones.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from lightning_offrl.collect.progress import StepProgress
from lightning_offrl.data.registry import DatasetSpec
from lightning_offrl.envs.tasks import make_env

# Progress-bar refresh interval in steps; redrawing every step would cost more than the physics.
_PROGRESS_EVERY = 2_000


def build_random(
    spec: DatasetSpec, seed: int, num_steps: int, progress: bool = True
) -> dict[str, np.ndarray]:
    """Collects ``num_steps`` transitions of uniformly random actions.

    Args:
        spec: the dataset; its task gives the environment (and time limit).
        seed: seeds the actions and the first reset.
        num_steps: number of rows.
        progress: show a rich progress bar.

    Returns:
        D4RL-layout arrays with ``N = num_steps`` rows: ``observations``/``next_observations``
        ``(N, obs_dim)``, ``actions (N, act_dim)``, ``rewards (N,)`` float32, ``terminals (N,)``
        (Gymnasium's ``terminated``), ``timeouts (N,)`` (``truncated``, and the last row when the
        budget cuts an episode) bool, ``infos/qpos (N, nq)`` and ``infos/qvel (N, nv)``: the MuJoCo
        state in which the row's action was taken.
    """
    if num_steps <= 0:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    env = make_env(spec.name)
    try:
        return _collect(env, seed, num_steps, progress, description=f"{spec.name} (random, seed {seed})")
    finally:
        env.close()


def _collect(
    env: gym.Env, seed: int, num_steps: int, progress: bool, description: str
) -> dict[str, np.ndarray]:
    action_space = env.action_space
    obs_dim = int(np.prod(env.observation_space.shape))
    act_dim = int(np.prod(action_space.shape))
    # MuJoCo environments expose their simulator state; others (toy tasks) have no qpos/qvel to log.
    mujoco_data = getattr(env.unwrapped, "data", None)
    if not (hasattr(mujoco_data, "qpos") and hasattr(mujoco_data, "qvel")):
        mujoco_data = None

    rng = np.random.default_rng(seed)
    # Drawn up front (one vectorized call): identical to per-step draws from the same generator.
    actions = rng.uniform(action_space.low, action_space.high, size=(num_steps, act_dim)).astype(np.float32)
    observations = np.empty((num_steps, obs_dim), dtype=np.float32)
    next_observations = np.empty((num_steps, obs_dim), dtype=np.float32)
    rewards = np.empty(num_steps, dtype=np.float32)
    terminals = np.zeros(num_steps, dtype=bool)
    timeouts = np.zeros(num_steps, dtype=bool)
    qpos = np.empty((num_steps, mujoco_data.qpos.size), dtype=np.float32) if mujoco_data is not None else None
    qvel = np.empty((num_steps, mujoco_data.qvel.size), dtype=np.float32) if mujoco_data is not None else None

    observation, _ = env.reset(seed=seed)
    with StepProgress(description, num_steps, enabled=progress, every=_PROGRESS_EVERY) as bar:
        for step in range(num_steps):
            observations[step] = observation
            if mujoco_data is not None:
                qpos[step] = mujoco_data.qpos
                qvel[step] = mujoco_data.qvel
            observation, reward, terminated, truncated, _ = env.step(actions[step])
            next_observations[step] = observation
            rewards[step] = reward
            terminals[step] = terminated
            timeouts[step] = truncated
            if terminated or truncated:
                observation, _ = env.reset()
            bar.update(step + 1)
    return d4rl_arrays(observations, actions, rewards, next_observations, terminals, timeouts, qpos, qvel)


def d4rl_arrays(
    observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_observations: np.ndarray,
    terminals: np.ndarray, timeouts: np.ndarray, qpos: np.ndarray | None = None,
    qvel: np.ndarray | None = None, **infos: np.ndarray,
) -> dict[str, np.ndarray]:
    """A locomotion recipe's rows in D4RL's layout (``infos`` become ``infos/<name>``).

    The step budget ends mid-episode: the last row is marked like a time limit (in place, unless it
    is a terminal) so that no episode runs into nothing.
    """
    if not terminals[-1]:
        timeouts[-1] = True
    arrays = {
        "observations": observations,
        "actions": actions,
        "rewards": rewards,
        "next_observations": next_observations,
        "terminals": terminals,
        "timeouts": timeouts,
        **{f"infos/{name}": values for name, values in infos.items()},
    }
    if qpos is not None and qvel is not None:
        arrays["infos/qpos"] = qpos
        arrays["infos/qvel"] = qvel
    return arrays


