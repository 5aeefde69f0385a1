"""D4RL HDF5 reading/writing, validation messages, q-learning transitions and statistics."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from lightning_offrl.data import d4rl_hdf5
from lightning_offrl.data.d4rl_hdf5 import (
    data_fingerprint,
    dataset_summary,
    episode_returns,
    qlearning_transitions,
    read_d4rl_attrs,
    read_d4rl_hdf5,
    write_d4rl_hdf5,
)
from lightning_offrl.errors import DatasetError


def make_arrays(
    num_rows: int = 12, obs_dim: int = 3, act_dim: int = 2, seed: int = 0
) -> dict[str, np.ndarray]:
    """Rows 0-3: episode ending in a terminal; rows 4-8: episode ending in a timeout; rows 9-11: a
    trailing episode cut by the end of the file."""
    rng = np.random.default_rng(seed)
    terminals = np.zeros(num_rows, dtype=bool)
    timeouts = np.zeros(num_rows, dtype=bool)
    terminals[3] = True
    timeouts[8] = True
    return {
        # Observation i is (i, i, i) so every transition can be traced back to its rows.
        "observations": np.repeat(np.arange(num_rows, dtype=np.float32)[:, None], obs_dim, axis=1),
        "actions": rng.uniform(-1, 1, (num_rows, act_dim)).astype(np.float32),
        "rewards": np.arange(num_rows, dtype=np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
        "infos/qpos": rng.standard_normal((num_rows, 4)).astype(np.float32),
    }


def write_raw(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)


# ----------------------------------------------------------------------------------- round trip
def test_write_read_round_trip_keeps_groups_and_attrs(tmp_path: Path) -> None:
    arrays = make_arrays()
    arrays["metadata/algorithm"] = np.asarray("uniform random")
    attrs = {"replica": True, "seed": 7, "gym_id": "Hopper-v5", "build_seconds": 1.25}
    path = write_d4rl_hdf5(tmp_path / "sub" / "data.hdf5", arrays, attrs)

    with h5py.File(path, "r") as f:
        assert isinstance(f["infos"], h5py.Group) and "qpos" in f["infos"]
    read = read_d4rl_hdf5(path)
    assert set(read) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(read[key], value)
        assert read[key].dtype == value.dtype, key
    assert read_d4rl_attrs(path) == attrs
    assert [p.name for p in path.parent.iterdir()] == ["data.hdf5"]  # no temporary file left


def test_read_converts_dtypes_and_shapes(tmp_path: Path) -> None:
    arrays = make_arrays()
    raw = {**arrays, "observations": arrays["observations"].astype(np.float64),
           "rewards": arrays["rewards"][:, None].astype(np.float64),
           "terminals": arrays["terminals"].astype(np.float32)}
    write_raw(tmp_path / "raw.hdf5", raw)
    read = read_d4rl_hdf5(tmp_path / "raw.hdf5")
    assert read["observations"].dtype == np.float32
    assert read["rewards"].shape == (12,) and read["rewards"].dtype == np.float32
    assert read["terminals"].dtype == bool and read["terminals"].sum() == 1


def test_missing_timeouts_become_false_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    arrays = make_arrays()
    del arrays["timeouts"]
    write_raw(tmp_path / "old.hdf5", arrays)
    with caplog.at_level(logging.WARNING):
        read = read_d4rl_hdf5(tmp_path / "old.hdf5")
    assert read["timeouts"].dtype == bool and not read["timeouts"].any()
    assert "timeouts" in caplog.text and "old.hdf5" in caplog.text


# ---------------------------------------------------------------------------------- validation
def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nope.hdf5: no such file"):
        read_d4rl_hdf5(tmp_path / "nope.hdf5")


def test_not_hdf5_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "text.hdf5").write_text("not hdf5")
    with pytest.raises(DatasetError, match="text.hdf5: not an HDF5 file"):
        read_d4rl_hdf5(tmp_path / "text.hdf5")


def test_missing_key_lists_the_keys_present(tmp_path: Path) -> None:
    arrays = make_arrays()
    del arrays["actions"]
    write_raw(tmp_path / "d.hdf5", arrays)
    with pytest.raises(DatasetError) as info:
        read_d4rl_hdf5(tmp_path / "d.hdf5")
    message = str(info.value)
    assert "missing required key(s) actions" in message
    assert "infos/qpos" in message and "observations" in message and "d.hdf5" in message


def test_length_mismatch_names_key_and_lengths(tmp_path: Path) -> None:
    arrays = make_arrays()
    arrays["rewards"] = arrays["rewards"][:10]
    write_raw(tmp_path / "d.hdf5", arrays)
    with pytest.raises(DatasetError, match=r"'rewards' has 10 rows but 'observations' has 12"):
        read_d4rl_hdf5(tmp_path / "d.hdf5")


def test_length_mismatch_in_infos_is_caught(tmp_path: Path) -> None:
    arrays = make_arrays()
    arrays["infos/qpos"] = arrays["infos/qpos"][:5]
    write_raw(tmp_path / "d.hdf5", arrays)
    with pytest.raises(DatasetError, match=r"'infos/qpos' has 5 rows but 'observations' has 12"):
        read_d4rl_hdf5(tmp_path / "d.hdf5")


def test_nan_names_key_count_and_first_row(tmp_path: Path) -> None:
    arrays = make_arrays()
    arrays["observations"][5, 1] = np.nan
    arrays["observations"][9, 0] = np.inf
    write_raw(tmp_path / "d.hdf5", arrays)
    expected = r"'observations' has NaN/inf values in 2 row\(s\), the first at row 5"
    with pytest.raises(DatasetError, match=expected):
        read_d4rl_hdf5(tmp_path / "d.hdf5")


# ------------------------------------------------------------------------------------- atomicity
def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = h5py.Group.create_dataset

    def failing_create_dataset(self: h5py.Group, name: str, *args: object, **kwargs: object) -> h5py.Dataset:
        calls["n"] += 1
        if calls["n"] == 3:  # fail midway, after some data is already in the temporary file
            raise OSError("disk full")
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing_create_dataset)
    with pytest.raises(OSError, match="disk full"):
        write_d4rl_hdf5(tmp_path / "out.hdf5", make_arrays())
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_d4rl_hdf5(tmp_path / "out.hdf5", make_arrays(seed=1), {"version": 1})
    before = path.read_bytes()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("interrupted")

    monkeypatch.setattr(d4rl_hdf5.os, "replace", failing_replace)
    with pytest.raises(OSError, match="interrupted"):
        write_d4rl_hdf5(path, make_arrays(seed=2), {"version": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.hdf5"]
    assert read_d4rl_attrs(path) == {"version": 1}


def test_interrupted_write_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # KeyboardInterrupt is not an Exception: the temporary file must go anyway.
    def interrupted_fsync(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(d4rl_hdf5.os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        write_d4rl_hdf5(tmp_path / "out.hdf5", make_arrays())
    assert list(tmp_path.iterdir()) == []
    assert os.path.exists(tmp_path)


# ----------------------------------------------------------------------------------- q-learning
def test_qlearning_derived_next_obs_never_crosses_episodes() -> None:
    arrays = make_arrays()
    out = qlearning_transitions(arrays)
    # Row 8 (timeout, successor unknown) and row 11 (last row, not terminal) are dropped.
    rows = out["observations"][:, 0].astype(int)
    assert rows.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 9, 10]
    next_rows = out["next_observations"][:, 0].astype(int)
    # Inside an episode the next observation is the next row's; the terminal row keeps its own.
    assert next_rows.tolist() == [1, 2, 3, 3, 5, 6, 7, 8, 10, 11]
    assert out["terminals"].dtype == np.float32
    assert out["terminals"].tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert out["timeouts"].dtype == bool and not out["timeouts"].any()
    np.testing.assert_array_equal(out["rewards"], arrays["rewards"][rows])
    np.testing.assert_array_equal(out["actions"], arrays["actions"][rows])
    # Episode membership: start rows of episodes are 0, 4, 9; no pair spans two of them.
    episode_of = np.searchsorted([0, 4, 9], np.arange(12), side="right")
    assert (episode_of[rows] == episode_of[next_rows]).all()


def test_qlearning_last_row_kept_when_terminal() -> None:
    arrays = make_arrays()
    arrays["terminals"][-1] = True
    out = qlearning_transitions(arrays)
    assert out["observations"][-1, 0] == 11 and out["next_observations"][-1, 0] == 11
    assert out["terminals"][-1] == 1.0


def test_qlearning_uses_stored_next_observations() -> None:
    arrays = make_arrays()
    arrays["next_observations"] = arrays["observations"] + 100.0
    out = qlearning_transitions(arrays)
    assert len(out["observations"]) == 12  # every row is complete, timeouts included
    np.testing.assert_array_equal(out["next_observations"], arrays["next_observations"])
    assert out["timeouts"].tolist() == arrays["timeouts"].tolist()
    assert out["terminals"].tolist() == arrays["terminals"].astype(np.float32).tolist()


def test_qlearning_terminal_and_timeout_on_same_row_is_kept_as_terminal() -> None:
    arrays = make_arrays()
    arrays["timeouts"][3] = True  # the env failed on the step the time limit hit
    out = qlearning_transitions(arrays)
    row = int(np.flatnonzero(out["observations"][:, 0] == 3)[0])
    assert out["terminals"][row] == 1.0 and out["timeouts"][row]


# ----------------------------------------------------------------------------------- statistics
def test_episode_returns_counts_trailing_partial_episode() -> None:
    arrays = make_arrays()
    returns = episode_returns(arrays)
    np.testing.assert_allclose(returns, [0 + 1 + 2 + 3, 4 + 5 + 6 + 7 + 8, 9 + 10 + 11])


def test_dataset_summary() -> None:
    arrays = make_arrays()
    summary = dataset_summary(arrays)
    returns = np.array([6.0, 30.0, 30.0])
    assert summary["transitions"] == 12 and summary["episodes"] == 3
    assert summary["return_mean"] == pytest.approx(returns.mean())
    assert summary["return_std"] == pytest.approx(returns.std())
    assert (summary["return_min"], summary["return_max"]) == (6.0, 30.0)
    assert (summary["obs_dim"], summary["act_dim"]) == (3, 2)
    assert (summary["terminals"], summary["timeouts"]) == (1, 1)


# ----------------------------------------------------------------------------------- fingerprint
def test_fingerfingerprintnames_the_contents_not_the_file(tmp_path: Path) -> None:
    arrays = make_arrays()
    write_d4rl_hdf5(tmp_path / "a.hdf5", arrays)
    reread = read_d4rl_hdf5(tmp_path / "a.hdf5")
    fingerprint = data_fingerprint(arrays)
    assert len(fingerprint) == 12 and int(fingerprint, 16) >= 0
    # the same contents, re-read or in another key order, give the same fingerprint
    assert data_fingerprint(reread) == data_fingerprint(dict(reversed(list(reread.items())))) == fingerprint
    # infos do not count; one changed reward or observation does
    assert data_fingerprint({k: v for k, v in arrays.items() if k != "infos/qpos"}) == fingerprint
    for key in ("rewards", "observations"):
        changed = {k: v.copy() for k, v in arrays.items()}
        changed[key].flat[5] += 1e-3
        assert data_fingerprint(changed) != fingerprint
    # a reshaped array with the same bytes is a different dataset
    reshaped = dict(arrays, observations=arrays["observations"].reshape(-1, 1))
    assert data_fingerprint(reshaped) != fingerprint
