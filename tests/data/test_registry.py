"""The D4RL dataset registry and the replica-builder registry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lightning_offrl.data import registry
from lightning_offrl.data.registry import (
    DatasetSpec,
    buildable_levels,
    get_dataset_spec,
    get_replica_builder,
    list_dataset_names,
    register_dataset,
    register_replica_builder,
)
from lightning_offrl.envs import tasks
from lightning_offrl.envs.tasks import TaskSpec, get_task
from lightning_offrl.errors import DatasetError, UnknownDatasetError


def test_all_d4rl_names_are_known() -> None:
    names = list_dataset_names()
    # locomotion 4 x 5, antmaze 6, maze2d 3, adroit 4 x 3, kitchen 3
    assert len(names) == 4 * 5 + 6 + 3 + 4 * 3 + 3 == len(set(names))
    for domain in ("hopper", "halfcheetah", "walker2d", "ant"):
        for level in ("random", "medium", "medium-replay", "medium-expert", "expert"):
            spec = get_dataset_spec(f"{domain}-{level}-v2")
            assert (spec.domain, spec.level) == (domain, level)
            assert spec.task == get_task(domain)
    for maze in ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse"):
        spec = get_dataset_spec(f"antmaze-{maze}-v2")
        assert spec.domain == "antmaze-" + maze.split("-")[0]
        assert spec.minari_ids == (f"D4RL/antmaze/{maze}-v1",)
    for maze in ("umaze", "medium", "large"):
        spec = get_dataset_spec(f"maze2d-{maze}-v1")
        assert spec.level == "planner" and spec.minari_ids == (f"D4RL/pointmaze/{maze}-v2",)


@pytest.mark.parametrize(
    ("name", "num_steps"),
    [("hopper-random-v2", 1_000_000), ("hopper-medium-replay-v2", 402_000),
     ("walker2d-medium-replay-v2", 302_000), ("halfcheetah-medium-replay-v2", 202_000),
     ("ant-medium-replay-v2", 302_000),
     ("hopper-medium-expert-v2", 2_000_000), ("antmaze-large-diverse-v2", 1_000_000),
     ("maze2d-umaze-v1", 1_000_000), ("maze2d-medium-v1", 2_000_000), ("maze2d-large-v1", 4_000_000)],
)
def test_sizes_follow_d4rl(name: str, num_steps: int) -> None:
    assert get_dataset_spec(name).num_steps == num_steps


def test_levels_of_mazes_and_file_names() -> None:
    assert get_dataset_spec("antmaze-umaze-v2").level == "fixed"
    assert get_dataset_spec("antmaze-medium-play-v2").level == "play"
    assert get_dataset_spec("antmaze-large-diverse-v2").level == "diverse"
    assert get_dataset_spec("hopper-medium-replay-v2").d4rl_filename == "hopper_medium_replay-v2.hdf5"
    assert get_dataset_spec("antmaze-medium-play-v2").d4rl_filename == (
        "Ant_maze_big-maze_noisy_multistart_True_multigoal_False_sparse_fixed.hdf5"
    )
    assert get_dataset_spec("maze2d-large-v1").d4rl_filename == "maze2d-large-sparse-v1.hdf5"


def test_minari_ids_only_where_minari_has_the_level() -> None:
    assert get_dataset_spec("hopper-medium-v2").minari_ids == ("mujoco/hopper/medium-v0",)
    assert get_dataset_spec("ant-expert-v2").minari_ids == ("mujoco/ant/expert-v0",)
    assert get_dataset_spec("hopper-random-v2").minari_ids == ()
    assert get_dataset_spec("walker2d-medium-replay-v2").minari_ids == ()


def test_spec_is_frozen() -> None:
    spec = get_dataset_spec("hopper-medium-v2")
    with pytest.raises(AttributeError):
        spec.num_steps = 3  # type: ignore[misc]


def test_unknown_name_lists_closest_first() -> None:
    with pytest.raises(UnknownDatasetError) as info:
        get_dataset_spec("hoper-medium-v2")
    message = str(info.value)
    assert message.startswith("unknown dataset 'hoper-medium-v2': did you mean hopper-medium-v2")
    assert "maze2d-large-v1" in message  # every known name is listed
    assert isinstance(info.value, KeyError)


def test_random_builder_is_registered_on_demand() -> None:
    assert "random" in buildable_levels()
    from lightning_offrl.collect import build_random

    assert get_replica_builder("random") is build_random


def test_missing_builder_says_what_can_be_built_and_how_to_supply(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = get_dataset_spec("hopper-medium-v2")
    monkeypatch.delitem(registry._REPLICA_BUILDERS, "medium", raising=False)
    with pytest.raises(DatasetError) as info:
        get_replica_builder("medium", spec)
    message = str(info.value)
    assert "hopper-medium-v2" in message and "random" in message
    assert "hopper_medium-v2.hdf5" in message and "D4RL_DATASET_DIR" in message
    assert "minari download mujoco/hopper/medium-v0" in message


def test_register_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REPLICA_BUILDERS", dict(registry._REPLICA_BUILDERS))

    def builder(spec: DatasetSpec, seed: int, num_steps: int, progress: bool) -> dict[str, np.ndarray]:
        return {}

    register_replica_builder("test-level", builder)
    assert get_replica_builder("test-level") is builder
    register_replica_builder("test-level", builder)  # the same function again is fine
    with pytest.raises(ValueError, match="already registered"):
        register_replica_builder("test-level", lambda *args: {})
    register_replica_builder("test-level", dict, overwrite=True)
    assert get_replica_builder("test-level") is dict


def test_names_of_added_tasks_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    toy = TaskSpec("toyreach", "Pendulum-v1", -1500.0, 0.0, 200)
    monkeypatch.setitem(tasks.TASKS, "toyreach", toy)
    spec = get_dataset_spec("toyreach-random-v0")
    assert (spec.domain, spec.level, spec.task, spec.minari_ids) == ("toyreach", "random", toy, ())
    assert spec.num_steps == registry.DEFAULT_NUM_STEPS
    with pytest.raises(UnknownDatasetError):
        get_dataset_spec("toyreach")  # no level, no version
    with pytest.raises(UnknownDatasetError, match="did you mean hopper-medium-v2"):
        get_dataset_spec("hopper-mediun-v2")  # D4RL's domains accept D4RL's names only


def test_register_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "DATASETS", dict(registry.DATASETS))
    spec = dataclasses.replace(get_dataset_spec("hopper-random-v2"), name="hopper-random-small-v0",
                               num_steps=5)
    register_dataset(spec)
    assert get_dataset_spec("hopper-random-small-v0") is spec
    assert "hopper-random-small-v0" in list_dataset_names()
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(spec)
