"""Test-wide isolation: nothing a test does touches the user's caches, and no hub is ever asked."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("offrl_home")
    os.environ["LIGHTNING_OFFRL_CACHE"] = str(root / "cache")
    os.environ["D4RL_DATASET_DIR"] = str(root / "d4rl")
    os.environ["MINARI_DATASETS_PATH"] = str(root / "minari")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("MUJOCO_GL", "egl")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _own_datasets_forgotten() -> None:
    """A dataset of the user's own that a test registers (and its task) is gone after that test; tasks that
    modules register when imported stay."""
    from lightning_offrl.data import registry
    from lightning_offrl.envs import tasks

    before = set(registry.DATASETS)
    yield
    for name in set(registry.DATASETS) - before:
        spec = registry.DATASETS[name]
        if spec.custom:
            del registry.DATASETS[name]
            tasks.TASKS.pop(spec.domain, None)


def pointgoal_random_arrays(num_steps: int = 5000, seed: int = 0) -> dict[str, np.ndarray]:
    """Uniform-action transitions of the PointGoal toy task in D4RL layout (50-step episodes)."""
    from lightning_offrl.envs.tasks import make_env

    env = make_env("pointgoal", seed=seed)
    rng = np.random.default_rng(seed)
    keys = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
    out: dict[str, list] = {k: [] for k in keys}
    obs, _ = env.reset(seed=seed)
    episode = 0
    for _ in range(num_steps):
        action = rng.uniform(-1, 1, size=2).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(keys, (obs, action, reward, next_obs, terminated, truncated)):
            out[key].append(value)
        obs = next_obs
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
    out["timeouts"][-1] = True
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.fixture(scope="session")
def pointgoal_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A D4RL-format HDF5 file of 5,000 random PointGoal transitions."""
    from lightning_offrl.data.d4rl_hdf5 import write_d4rl_hdf5

    path = tmp_path_factory.mktemp("pointgoal") / "pointgoal-random-v0.hdf5"
    write_d4rl_hdf5(path, pointgoal_random_arrays())
    return path
