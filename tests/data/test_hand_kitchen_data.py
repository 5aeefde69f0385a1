"""Adroit and Kitchen data: D4RL's names and files, local Minari datasets in D4RL's layout, no replicas."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from lightning_offrl.data.commands import datasets_list, datasets_make
from lightning_offrl.data.d4rl_hdf5 import write_d4rl_hdf5
from lightning_offrl.data.registry import get_dataset_spec
from lightning_offrl.data.sources import resolve_dataset
from lightning_offrl.envs.kitchen import ELEMENT_GOALS, ELEMENT_QPOS, INIT_QPOS, KITCHEN_TASKS
from lightning_offrl.errors import DatasetError

# name -> (obs_dim, act_dim) of D4RL's files.
FAMILIES = {
    "pen-human-v1": (45, 24), "door-human-v1": (39, 28), "hammer-cloned-v1": (46, 26),
    "relocate-expert-v1": (39, 30), "kitchen-complete-v0": (60, 9), "kitchen-mixed-v0": (60, 9),
}


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LIGHTNING_OFFRL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path


def episodes(obs_dim: int, act_dim: int, num_episodes: int = 3, length: int = 10, seed: int = 0,
             timeouts: bool = True) -> dict[str, np.ndarray]:
    """D4RL-layout rows of ``num_episodes`` episodes; Adroit files end episodes with timeouts, D4RL's kitchen
    files with terminals and no ``timeouts`` key."""
    rng = np.random.default_rng(seed)
    rows = num_episodes * length
    ends = np.zeros(rows, dtype=bool)
    ends[length - 1::length] = True
    arrays = {
        "observations": rng.normal(size=(rows, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(rows, act_dim)).astype(np.float32),
        "rewards": rng.normal(size=rows).astype(np.float32),
        "terminals": np.zeros(rows, dtype=bool) if timeouts else ends,
    }
    if timeouts:
        arrays["timeouts"] = ends
    return arrays


def test_registry_holds_d4rls_names_files_and_minari_ids() -> None:
    for domain, gym_id in (("pen", "AdroitHandPen-v1"), ("door", "AdroitHandDoor-v1"),
                           ("hammer", "AdroitHandHammer-v1"), ("relocate", "AdroitHandRelocate-v1")):
        for level in ("human", "cloned", "expert"):
            spec = get_dataset_spec(f"{domain}-{level}-v1")
            assert (spec.domain, spec.level, spec.task.gym_id) == (domain, level, gym_id)
            assert spec.d4rl_url.endswith(f"/hand_dapg_v1/{domain}-{level}-v1.hdf5")
            assert spec.minari_ids == (f"D4RL/{domain}/{level}-v2",)
    door = get_dataset_spec("door-human-v1")
    assert (door.num_steps, door.d4rl_episodes) == (6_729, 25)
    files = {"complete": "mini_kitchen_microwave_kettle_light_slider-v0.hdf5",
             "partial": "kitchen_microwave_kettle_light_slider-v0.hdf5",
             "mixed": "kitchen_microwave_kettle_bottomburner_light-v0.hdf5"}
    for level, filename in files.items():
        spec = get_dataset_spec(f"kitchen-{level}-v0")
        assert (spec.domain, spec.d4rl_filename, spec.minari_ids) == (
            f"kitchen-{level}", filename, (f"D4RL/kitchen/{level}-v2",))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_d4rl_file_of_each_family_loads_from_d4rls_folder(tmp_path: Path, name: str) -> None:
    obs_dim, act_dim = FAMILIES[name]
    kitchen = name.startswith("kitchen")
    spec = get_dataset_spec(name)
    write_d4rl_hdf5(tmp_path / "d4rl" / spec.d4rl_filename, episodes(obs_dim, act_dim, timeouts=not kitchen))
    resolved = resolve_dataset(name)
    assert (resolved.source, resolved.is_replica) == ("d4rl", False)
    assert resolved.arrays["observations"].shape == (30, obs_dim)
    assert resolved.arrays["actions"].shape == (30, act_dim)


def put_minari(dataset_id: str, observations: list, actions_dim: int, space: gym.Space,
               rewards: list[list[float]]) -> None:
    import minari
    from minari.data_collector import EpisodeBuffer

    buffers = [
        EpisodeBuffer(id=i, observations=obs, actions=np.zeros((len(reward), actions_dim), np.float32),
                      rewards=reward, terminations=[False] * len(reward),
                      truncations=[False] * (len(reward) - 1) + [True])
        for i, (obs, reward) in enumerate(zip(observations, rewards))
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(dataset_id, buffers, observation_space=space,
                                           action_space=gym.spaces.Box(-1, 1, (actions_dim,), np.float32))


def test_minari_adroit_dataset_loads_as_is() -> None:
    rng = np.random.default_rng(0)
    observations = [rng.normal(size=(6, 39)), rng.normal(size=(4, 39))]
    put_minari("D4RL/door/human-v2", observations, 28, gym.spaces.Box(-np.inf, np.inf, (39,), np.float64),
               [[1.0] * 5, [2.0] * 3])
    resolved = resolve_dataset("door-human-v1")
    assert resolved.source == "minari" and resolved.arrays["observations"].shape == (8, 39)
    np.testing.assert_allclose(resolved.arrays["observations"][:5], observations[0][:5], rtol=1e-6)
    assert resolved.arrays["timeouts"].sum() == 2


def test_minari_kitchen_dataset_becomes_d4rls_60_value_rows_and_rewards() -> None:
    # Minari's kitchen: a 59-value 'observation' (robot qpos, robot qvel, object qpos, object qvel) and
    # per-sub-task goal dictionaries; its rewards count sub-tasks completed at each step.
    elements = KITCHEN_TASKS["kitchen-complete"].elements
    steps = 4
    robotics = np.zeros((steps + 1, 59))
    robotics[:, :9] = INIT_QPOS[:9]
    robotics[:, 18:39] = INIT_QPOS[9:]
    robotics[2:, 18 + 22 - 9] = -0.75  # the microwave is open from observation 2 on
    achieved = {e: np.tile(np.asarray(INIT_QPOS[list(ELEMENT_QPOS[e])]), (steps + 1, 1)) for e in elements}
    desired = {e: np.tile(np.asarray(ELEMENT_GOALS[e]), (steps + 1, 1)) for e in elements}
    box = lambda n: gym.spaces.Box(-np.inf, np.inf, (n,), np.float64)  # noqa: E731
    space = gym.spaces.Dict({
        "observation": box(59),
        "achieved_goal": gym.spaces.Dict({e: box(len(ELEMENT_QPOS[e])) for e in elements}),
        "desired_goal": gym.spaces.Dict({e: box(len(ELEMENT_QPOS[e])) for e in elements}),
    })
    put_minari("D4RL/kitchen/complete-v2", [{"observation": robotics, "achieved_goal": achieved,
                                              "desired_goal": desired}], 9, space, [[0.0, 1.0, 0.0, 0.0]])
    arrays = resolve_dataset("kitchen-complete-v0").arrays
    assert arrays["observations"].shape == arrays["next_observations"].shape == (steps, 60)
    np.testing.assert_allclose(arrays["observations"][:, 30:], np.tile(KITCHEN_TASKS["kitchen-complete"].goal_vector(),
                                                                      (steps, 1)), rtol=1e-6)
    # D4RL's dataset reward: the sub-tasks each row's observation satisfies (the microwave from row 2 on).
    np.testing.assert_array_equal(arrays["rewards"], [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(arrays["infos/minari_rewards"], [0.0, 1.0, 0.0, 0.0])


@pytest.mark.parametrize("name, why", [
    ("door-human-v1", "human demonstrations"),
    ("pen-cloned-v1", "cloned data"),
    ("relocate-expert-v1", "expert policies"),
    ("kitchen-mixed-v0", "human teleoperation"),
])
def test_no_replica_is_built_and_the_message_says_where_to_get_the_data(name: str, why: str) -> None:
    spec = get_dataset_spec(name)
    with pytest.raises(DatasetError) as error:
        datasets_make(name, progress=False)
    message = str(error.value)
    assert "\n" not in message and why in message and "no replica can be built" in message
    assert spec.d4rl_url in message and spec.minari_ids[0] in message
    row = next(row for row in datasets_list() if row["name"] == name)
    assert row["never"] and not row["buildable"]
