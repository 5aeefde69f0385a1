"""Dataset resolution order, cache locations, replica caching and the ``datasets`` commands."""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from rich.console import Console

from lightning_offrl.collect.policies import POLICY_DIR_ENV
from lightning_offrl.data import registry, sources
from lightning_offrl.data.commands import (
    add_datasets_parser,
    datasets_info,
    datasets_list,
    datasets_make,
    main,
    print_datasets_list,
    run_datasets_command,
)
from lightning_offrl.data.d4rl_hdf5 import read_d4rl_attrs, read_d4rl_hdf5, write_d4rl_hdf5
from lightning_offrl.data.registry import DatasetSpec, get_dataset_spec
from lightning_offrl.data.sources import (
    available_sources,
    cache_dir,
    d4rl_dataset_dir,
    replica_path,
    resolve_dataset,
)
from lightning_offrl.errors import ConfigError, DatasetError

NAME = "hopper-medium-v2"  # has a D4RL file name, a Minari id and (in these tests) a fake builder


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every location the sources look at lives under tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LIGHTNING_OFFRL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return tmp_path


def small_arrays(value: float, num_rows: int = 20, obs_dim: int = 11) -> dict[str, np.ndarray]:
    """D4RL-layout arrays whose observations are all ``value`` (to tell sources apart)."""
    timeouts = np.zeros(num_rows, dtype=bool)
    timeouts[num_rows // 2 - 1] = timeouts[-1] = True
    return {
        "observations": np.full((num_rows, obs_dim), value, dtype=np.float32),
        "actions": np.zeros((num_rows, 3), dtype=np.float32),
        "rewards": np.ones(num_rows, dtype=np.float32),
        "terminals": np.zeros(num_rows, dtype=bool),
        "timeouts": timeouts,
    }


@pytest.fixture
def fake_builder(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """Registers a fast builder for the ``medium`` level; returns the list of its calls."""
    calls: list[tuple[str, int, int]] = []

    def build(spec: DatasetSpec, seed: int, num_steps: int, progress: bool) -> dict[str, np.ndarray]:
        calls.append((spec.name, seed, num_steps))
        return small_arrays(3.0 + seed, num_rows=num_steps)

    registry.buildable_levels()  # import the real builders first so they are restored afterwards
    monkeypatch.setitem(registry._REPLICA_BUILDERS, "medium", build)
    return calls


def put_d4rl_file(tmp_path: Path, filename: str = "hopper_medium-v2.hdf5") -> Path:
    return write_d4rl_hdf5(tmp_path / "d4rl" / filename, small_arrays(1.0))


def put_minari_dataset(dataset_id: str = "mujoco/hopper/medium-v0") -> None:
    import minari
    from minari.data_collector import EpisodeBuffer

    buffers = [
        EpisodeBuffer(id=i, observations=np.full((6, 11), 2.0), actions=np.zeros((5, 3), np.float32),
                      rewards=[1.0] * 5, terminations=[False] * 4 + [i == 0],
                      truncations=[False] * 4 + [i == 1])
        for i in range(2)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            dataset_id, buffers, observation_space=gym.spaces.Box(-np.inf, np.inf, (11,), np.float64),
            action_space=gym.spaces.Box(-1, 1, (3,), np.float32),
        )


def source_value(resolved: sources.ResolvedDataset) -> float:
    return float(resolved.arrays["observations"][0, 0])


# ------------------------------------------------------------------------------------ locations
def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("LIGHTNING_OFFRL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "lightning_offrl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "lightning_offrl"
    monkeypatch.delenv("D4RL_DATASET_DIR")
    assert d4rl_dataset_dir() == tmp_path / "home" / ".d4rl" / "datasets"
    assert replica_path(NAME, 3, 500) == cache_dir() / "replicas" / "hopper-medium-v2-seed3-500.hdf5"


@pytest.mark.parametrize("filename", ["hopper_medium-v2.hdf5", "hopper-medium-v2.hdf5"])
def test_d4rl_file_found_under_either_name(tmp_path: Path, filename: str) -> None:
    path = put_d4rl_file(tmp_path, filename)
    resolved = resolve_dataset(NAME, source="d4rl")
    assert (resolved.source, resolved.path, resolved.is_replica) == ("d4rl", path, False)


# ------------------------------------------------------------------------------ resolution order
def test_auto_prefers_d4rl_then_minari_then_replica(tmp_path: Path, fake_builder: list) -> None:
    put_d4rl_file(tmp_path)
    put_minari_dataset()
    assert source_value(resolve_dataset(NAME)) == 1.0  # D4RL file wins
    (tmp_path / "d4rl" / "hopper_medium-v2.hdf5").unlink()
    resolved = resolve_dataset(NAME)
    assert (resolved.source, source_value(resolved)) == ("minari", 2.0)  # then Minari
    assert len(resolved.arrays["rewards"]) == 10 and "next_observations" in resolved.arrays
    for path in sorted((tmp_path / "minari").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    resolved = resolve_dataset(NAME, num_steps=40)
    assert (resolved.source, resolved.is_replica, source_value(resolved)) == ("replica", True, 3.0)
    assert fake_builder == [(NAME, 0, 40)]


def test_explicit_path_wins(tmp_path: Path, fake_builder: list) -> None:
    put_d4rl_file(tmp_path)
    elsewhere = write_d4rl_hdf5(tmp_path / "mine.hdf5", small_arrays(9.0))
    resolved = resolve_dataset(NAME, path=elsewhere)
    assert (resolved.source, resolved.path, source_value(resolved)) == ("d4rl", elsewhere, 9.0)
    with pytest.raises(ConfigError, match="source='minari'"):
        resolve_dataset(NAME, path=elsewhere, source="minari")


def test_explicit_source_is_honoured(tmp_path: Path, fake_builder: list) -> None:
    put_d4rl_file(tmp_path)
    put_minari_dataset()
    assert resolve_dataset(NAME, source="minari").source == "minari"
    assert resolve_dataset(NAME, source="replica", num_steps=30).source == "replica"
    assert fake_builder == [(NAME, 0, 30)]
    with pytest.raises(ConfigError, match="unknown data source 'web'"):
        resolve_dataset(NAME, source="web")  # type: ignore[arg-type]


def test_missing_explicit_sources_say_how_to_supply(fake_builder: list) -> None:
    with pytest.raises(DatasetError, match=r"no D4RL file .*hopper_medium-v2.hdf5.*Download http"):
        resolve_dataset(NAME, source="d4rl")
    with pytest.raises(DatasetError, match="minari download mujoco/hopper/medium-v0"):
        resolve_dataset(NAME, source="minari")
    with pytest.raises(DatasetError, match="Minari has no dataset"):
        resolve_dataset("hopper-random-v2", source="minari")


def test_no_source_and_no_recipe_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    registry.buildable_levels()
    monkeypatch.delitem(registry._REPLICA_BUILDERS, "medium", raising=False)
    with pytest.raises(DatasetError, match=r"no replica recipe for hopper-medium-v2.*levels .*random"):
        resolve_dataset(NAME)


# ------------------------------------------------------------------------------------- replicas
def test_replica_is_cached_labelled_and_read_back(tmp_path: Path, fake_builder: list,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lightning_offrl"):
        first = resolve_dataset(NAME, seed=2, num_steps=24)
    assert first.path == replica_path(NAME, 2, 24) and first.path.is_file()
    assert "REPLICA" in caplog.text and "not comparable" in caplog.text
    attrs = read_d4rl_attrs(first.path)
    assert attrs["replica"] is True and attrs["recipe"] == "medium" and attrs["seed"] == 2
    assert attrs["num_steps"] == 24 and attrs["gym_id"] == "Hopper-v5" and attrs["dataset"] == NAME
    for key in ("gymnasium_version", "mujoco_version", "created", "build_seconds"):
        assert key in attrs
    assert first.attrs == attrs
    second = resolve_dataset(NAME, seed=2, num_steps=24)
    assert fake_builder == [(NAME, 2, 24)]  # built once, then read from the cache
    for key, value in first.arrays.items():
        np.testing.assert_array_equal(second.arrays[key], value)
    np.testing.assert_array_equal(first.arrays["observations"], read_d4rl_hdf5(first.path)["observations"])


def test_a_cached_replica_of_another_recipe_version_is_refused_then_rebuilt(
    fake_builder: list, monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = resolve_dataset(NAME, seed=1, num_steps=24)
    assert read_d4rl_attrs(first.path)["recipe_version"] == 1  # the level's registered version
    # The recipe changes: version 2 makes other data, so the version-1 file must not stand for it.
    monkeypatch.setitem(registry._RECIPE_VERSIONS, "medium", (2, "version 2 walks differently"))
    with pytest.raises(DatasetError) as error:
        resolve_dataset(NAME, seed=1, num_steps=24)
    message = str(error.value)
    for expected in (str(first.path), "version 1 of the 'medium' recipe", "builds version 2",
                     "walks differently", "Delete it", f"datasets make {NAME} --seed 1", "data.path"):
        assert expected in message
    assert first.path.is_file() and fake_builder == [(NAME, 1, 24)]  # refused, neither deleted nor rebuilt
    first.path.unlink()  # as the message says
    rebuilt = resolve_dataset(NAME, seed=1, num_steps=24)
    assert read_d4rl_attrs(rebuilt.path)["recipe_version"] == 2 and len(fake_builder) == 2


def test_the_antmaze_recipe_is_version_3() -> None:
    # Version 1 ran Gymnasium's Ant-v5 body, version 2 centred the waypoints: files they made must be
    # refused, not trained on.
    for level in ("fixed", "diverse", "play"):
        version, note = registry.recipe_version(level)
        assert version == 3 and "navigates as D4RL's collector did" in note


def test_failed_build_leaves_no_cache_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(spec: DatasetSpec, seed: int, num_steps: int, progress: bool) -> dict[str, np.ndarray]:
        raise RuntimeError("simulator crashed")

    registry.buildable_levels()
    monkeypatch.setitem(registry._REPLICA_BUILDERS, "medium", broken)
    with pytest.raises(RuntimeError, match="simulator crashed"):
        resolve_dataset(NAME, num_steps=10)
    folder = replica_path(NAME, 0, 10).parent
    assert not folder.exists() or list(folder.iterdir()) == []


def test_real_random_replica_end_to_end() -> None:
    resolved = resolve_dataset("hopper-random-v2", num_steps=300, progress=False)
    assert resolved.source == "replica" and len(resolved.arrays["rewards"]) == 300
    assert resolved.arrays["observations"].shape == (300, 11)
    assert resolved.attrs["recipe"] == "random" and resolved.attrs["gym_id"] == "Hopper-v5"


def test_ant_observations_cut_to_the_environment(tmp_path: Path) -> None:
    arrays = small_arrays(1.0, obs_dim=111)
    arrays["observations"][:, 27:] = 5.0  # D4RL's contact forces
    write_d4rl_hdf5(tmp_path / "d4rl" / "ant_medium-v2.hdf5", arrays)
    resolved = resolve_dataset("ant-medium-v2")
    assert resolved.arrays["observations"].shape == (20, 27)
    assert (resolved.arrays["observations"] == 1.0).all()


def test_available_sources(tmp_path: Path, fake_builder: list) -> None:
    assert available_sources(NAME) == {"d4rl": None, "minari": None, "replica": None}
    d4rl_file = put_d4rl_file(tmp_path)
    put_minari_dataset()
    resolve_dataset(NAME, source="replica", seed=1, num_steps=20)
    assert available_sources(NAME) == {
        "d4rl": str(d4rl_file), "minari": "mujoco/hopper/medium-v0",
        "replica": str(replica_path(NAME, 1, 20)),
    }


# ------------------------------------------------------------------------------------- commands
def test_datasets_list_says_which_replicas_can_be_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv(POLICY_DIR_ENV, str(tmp_path))  # no behaviour policy shipped
    rows = {row["name"]: row for row in datasets_list()}
    assert rows["hopper-random-v2"]["buildable"] and rows["hopper-random-v2"]["unbuildable_why"] is None
    for level in ("medium", "expert", "medium-expert", "medium-replay"):
        row = rows[f"hopper-{level}-v2"]
        assert not row["buildable"], level
        assert "is not shipped yet" in row["unbuildable_why"] and "--data.path" in row["unbuildable_why"]
    print_datasets_list(list(rows.values()), Console(width=200))
    lines = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if "-v2 " in line}
    assert "policy not shipped" in lines["hopper-expert-v2"]
    assert "policy not shipped" not in lines["hopper-random-v2"]


def test_datasets_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = {row["name"]: row for row in datasets_list()}
    assert rows["hopper-random-v2"]["buildable"] and rows["hopper-random-v2"]["replica"] is None

    with pytest.raises(DatasetError, match="datasets make hopper-random-v2"):
        datasets_info("hopper-random-v2")  # info never builds
    path = datasets_make("hopper-random-v2", steps=200, seed=1, progress=False)
    assert path == replica_path("hopper-random-v2", 1, 200)
    info = datasets_info("hopper-random-v2", seed=1)
    assert info["source"] == "replica" and info["is_replica"] and info["transitions"] == 200
    task = get_dataset_spec("hopper-random-v2").task
    assert info["normalized_score"] == pytest.approx(float(task.normalized_score(info["return_mean"])))
    assert datasets_info(path)["return_mean"] == pytest.approx(info["return_mean"])
    # the fingerprint result rows carry for these arrays; the 150-step build below holds others
    assert info["fingerprint"] == datasets_info(path)["fingerprint"] and len(info["fingerprint"]) == 12
    # D4RL's published figures for the same name sit beside the replica's own
    assert info["d4rl"] == {"transitions": 1_000_000, "episodes": 45_240,
                            "ref_min_score": task.ref_min_score, "ref_max_score": task.ref_max_score}

    out = datasets_make("hopper-random-v2", steps=150, seed=1, out=tmp_path / "x.hdf5", progress=False)
    assert out == tmp_path / "x.hdf5" and datasets_info(out)["transitions"] == 150
    assert datasets_info(out)["fingerprint"] != info["fingerprint"]

    parser = argparse.ArgumentParser(prog="lightning_offrl")
    add_datasets_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["datasets", "info", "hopper-random-v2", "--seed", "1"])
    assert run_datasets_command(args) == 0
    printed = capsys.readouterr().out
    assert "replica" in printed and "45,240" in printed and "D4RL's hopper-random-v2" in printed
    assert main(["list"]) == 0  # what `lightning_offrl datasets list` runs
    assert "antmaze-umaze-v2" in capsys.readouterr().out
