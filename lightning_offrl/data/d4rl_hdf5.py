"""D4RL's HDF5 dataset format: reading with validation, atomic writing, q-learning transitions.

A D4RL file holds one row per environment step, in collection order, with the keys

* ``observations``: ``(N, obs_dim)`` the observation the action was taken in,
* ``actions``: ``(N, act_dim)``,
* ``rewards``: ``(N,)``,
* ``terminals``: ``(N,)`` True where the episode *ended by failure* (no bootstrapping),
* ``timeouts``: ``(N,)`` True where the episode was cut by a time limit (bootstrapping is right),
* optionally ``next_observations`` ``(N, obs_dim)`` and per-step ``infos/...`` (``infos/qpos``, ...).

Episodes are consecutive rows; an episode ends at a row whose ``terminals`` or ``timeouts`` is set.
Nested HDF5 groups appear as ``"group/name"`` keys (``"infos/qpos"``, ``"metadata/algorithm"``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from lightning_offrl.errors import DatasetError

if TYPE_CHECKING:
    import h5py

log = logging.getLogger(__name__)

REQUIRED_KEYS: tuple[str, ...] = ("observations", "actions", "rewards", "terminals")
# Keys with one row per environment step (besides everything under ``infos/``).
PER_STEP_KEYS: tuple[str, ...] = (*REQUIRED_KEYS, "timeouts", "next_observations")
# Keys whose values feed the learner directly: a NaN/inf there poisons every update.
FINITE_KEYS: tuple[str, ...] = ("observations", "actions", "rewards", "next_observations")


# --------------------------------------------------------------------------------------- reading
def read_d4rl_hdf5(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Reads every dataset of a D4RL-format HDF5 file and validates the per-step arrays.

    Args:
        path: the ``.hdf5`` file.

    Returns:
        ``{key: array}`` with nested groups flattened as ``"infos/qpos"``. Floating arrays are
        float32, ``terminals``/``timeouts`` are bool ``(N,)``, ``rewards`` is ``(N,)``. A file
        without ``timeouts`` (old D4RL versions) gets all-False timeouts and a logged warning.

    Raises:
        DatasetError: the file is missing or not HDF5, a required key is missing, per-step arrays
            disagree in length, or a learner-facing array holds NaN/inf.
    """
    import h5py  # here: listing datasets needs no HDF5 library

    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"{path}: no such file. Give the path of a D4RL-format .hdf5 file, or leave the path out "
            "to use a dataset found by name (see `lightning_offrl datasets list`)."
        )
    if not h5py.is_hdf5(path):
        raise DatasetError(
            f"{path}: not an HDF5 file (a partial download or a different format?). Download the "
            "file again, or convert it to D4RL's layout with lightning_offrl.data.d4rl_hdf5.write_d4rl_hdf5."
        )
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda key, item: _collect_dataset(key, item, arrays))
    return _validate_and_convert(arrays, path)


def _collect_dataset(key: str, item: h5py.Dataset | h5py.Group, out: dict[str, np.ndarray]) -> None:
    import h5py

    if isinstance(item, h5py.Dataset):
        # Text datasets (D4RL's ``metadata/...``) come back as ``str`` rather than ``bytes``.
        is_text = h5py.check_string_dtype(item.dtype) is not None
        out[key] = np.asarray(item.asstr()[()] if is_text else item[()])


def _validate_and_convert(arrays: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise DatasetError(
            f"{path}: missing required key(s) {', '.join(missing)}; the file has "
            f"{', '.join(sorted(arrays)) or 'no datasets'}. A D4RL file needs "
            f"{', '.join(REQUIRED_KEYS)} (+ timeouts); rewrite it with write_d4rl_hdf5."
        )
    # D4RL stores rewards/terminals as (N,) but some converters write (N, 1).
    for key in ("rewards", "terminals", "timeouts"):
        if key in arrays and arrays[key].ndim == 2 and arrays[key].shape[1] == 1:
            arrays[key] = arrays[key][:, 0]
    num_rows = len(arrays["observations"])
    for key in sorted(arrays):
        if key in PER_STEP_KEYS or key.startswith("infos/"):
            if arrays[key].ndim == 0 or len(arrays[key]) != num_rows:
                length = "a scalar" if arrays[key].ndim == 0 else f"{len(arrays[key])} rows"
                raise DatasetError(
                    f"{path}: per-step array {key!r} has {length} but 'observations' has {num_rows}; "
                    "every per-step array needs one row per environment step (is the file truncated?)."
                )
    for key in ("rewards", "terminals", "timeouts"):
        if key in arrays and arrays[key].ndim != 1:
            raise DatasetError(f"{path}: {key!r} must be 1-D (N,), got shape {arrays[key].shape}.")
    if "timeouts" not in arrays:
        log.warning(
            "%s has no 'timeouts' (an old D4RL version): treating every row as not time-limited, so "
            "episodes cut by the time limit are merged with the next one. Use the -v2 files if you can.",
            path,
        )
        arrays["timeouts"] = np.zeros(num_rows, dtype=bool)
    for key in FINITE_KEYS:
        if key in arrays:
            _check_finite(arrays[key], key, path)
    for key, value in arrays.items():
        if np.issubdtype(value.dtype, np.floating) and value.dtype != np.float32:
            arrays[key] = value.astype(np.float32)
    arrays["rewards"] = arrays["rewards"].astype(np.float32)
    arrays["terminals"] = arrays["terminals"].astype(bool)
    arrays["timeouts"] = arrays["timeouts"].astype(bool)
    return arrays


def _check_finite(values: np.ndarray, key: str, path: Path) -> None:
    finite = np.isfinite(values)
    if finite.all():
        return
    bad_rows = ~finite.reshape(len(values), -1).all(axis=1)
    raise DatasetError(
        f"{path}: {key!r} has NaN/inf values in {int(bad_rows.sum())} row(s), the first at row "
        f"{int(np.argmax(bad_rows))}. Remove those rows (or regenerate the dataset) before training."
    )


def read_d4rl_shapes(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """``(rows, obs_dim, act_dim)`` of a D4RL-format file, read from its headers without loading the data.

    Raises:
        DatasetError: the file is missing, not HDF5, or lacks 2-D ``observations``/``actions``.
    """
    import h5py

    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        raise DatasetError(f"{path}: not an existing HDF5 file; give the path of a D4RL-format .hdf5 file.")
    with h5py.File(path, "r") as f:
        shapes = {key: f[key].shape for key in ("observations", "actions") if isinstance(f.get(key), h5py.Dataset)}
    if len(shapes) < 2 or any(len(shape) != 2 for shape in shapes.values()):
        raise DatasetError(
            f"{path}: needs 2-D 'observations' and 'actions' datasets (N, obs_dim) and (N, act_dim), found "
            f"{shapes or 'neither'}; rewrite it with write_d4rl_hdf5."
        )
    return int(shapes["observations"][0]), int(shapes["observations"][1]), int(shapes["actions"][1])


def read_d4rl_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The file-level attributes of an HDF5 file as plain Python values (``str``, ``int``, ...)."""
    import h5py

    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        raise DatasetError(f"{path}: not an existing HDF5 file; give the path of a D4RL-format .hdf5 file.")
    with h5py.File(path, "r") as f:
        return {key: _to_python(value) for key, value in f.attrs.items()}


def _to_python(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_to_python(v) for v in value.tolist()] if value.dtype.kind in "OS" else value
    return value


# --------------------------------------------------------------------------------------- writing
def write_d4rl_hdf5(
    path: str | os.PathLike[str],
    arrays: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any] | None = None,
    compression: str | None = None,
) -> Path:
    """Writes arrays in D4RL's layout, atomically.

    The data goes to a temporary file in the destination folder, which is flushed and fsynced and
    then renamed over ``path`` (``os.replace`` is atomic on one file system). A reader therefore
    sees either the old file or the complete new one; if anything fails, the temporary file is
    removed and ``path`` is untouched.

    Args:
        path: destination ``.hdf5`` file; its folder is created if needed.
        arrays: ``{key: array}``; a key ``"a/b"`` is stored as dataset ``b`` in group ``a``.
        attrs: file attributes (``str``, ``int``, ``float``, ``bool``); ``None`` values are skipped.
        compression: an h5py filter (``"gzip"``, ``"lzf"``) or ``None`` (fastest, the default).

    Returns:
        The written path.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name in the same folder (so os.replace stays on one file system); h5py creates it
    # with the usual umask permissions, unlike mkstemp's owner-only ones.
    tmp_path = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with h5py.File(tmp_path, "w-") as f:
            for key, value in arrays.items():
                value = np.asarray(value)
                if value.dtype.kind == "U":  # HDF5 has no fixed-width unicode: store as UTF-8 text
                    value = value.astype(object)
                    f.create_dataset(key, data=value, dtype=h5py.string_dtype())
                    continue
                chunked = compression is not None and value.ndim > 0
                f.create_dataset(key, data=value, compression=compression if chunked else None)
            for key, value in (attrs or {}).items():
                if value is not None:
                    f.attrs[key] = value
            f.flush()
        _fsync(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(folder: Path) -> None:
    # Makes the rename itself durable; some file systems refuse to open a folder, which is harmless.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------ q-learning transitions
def qlearning_transitions(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``(s, a, r, s', terminal)`` tuples for TD learning, following D4RL's ``qlearning_dataset``.

    With ``next_observations`` in ``arrays`` every row is a complete transition and is kept. Without
    it, the next observation of row ``i`` is ``observations[i + 1]``, which is only right inside an
    episode, so:

    * a row with ``timeouts[i]`` set (and not terminal) is dropped: its successor is the next
      episode's first observation and the true next observation was never stored (D4RL drops these
      rows too);
    * the file's last row is dropped unless it is terminal (no successor at all);
    * a terminal row is kept with ``next_observations[i] = observations[i]``. D4RL used the next
      episode's first observation there; either value is multiplied by ``1 - terminal = 0`` in the
      TD target, and using the row's own observation keeps any transition from crossing an
      episode boundary (which matters to models of the dynamics, e.g. world models).

    Args:
        arrays: D4RL-layout arrays, ``observations (N, obs_dim)``, ``actions (N, act_dim)``,
            ``rewards (N,)``, ``terminals (N,)``, optionally ``timeouts (N,)`` and
            ``next_observations (N, obs_dim)``.

    Returns:
        ``observations (M, obs_dim)``, ``actions (M, act_dim)``, ``rewards (M,)``,
        ``next_observations (M, obs_dim)`` (float32), ``terminals (M,)`` float32 0/1 and
        ``timeouts (M,)`` bool, with ``M <= N``.
    """
    observations = np.asarray(arrays["observations"], dtype=np.float32)
    num_rows = len(observations)
    terminals = np.asarray(arrays["terminals"]).reshape(num_rows).astype(bool)
    timeouts = (
        np.asarray(arrays["timeouts"]).reshape(num_rows).astype(bool)
        if "timeouts" in arrays else np.zeros(num_rows, dtype=bool)
    )
    if "next_observations" in arrays:
        keep = np.ones(num_rows, dtype=bool)
        next_observations = np.asarray(arrays["next_observations"], dtype=np.float32)
    else:
        next_observations = np.empty_like(observations)
        next_observations[:-1] = observations[1:]
        next_observations[terminals] = observations[terminals]
        keep = terminals | ~timeouts
        if num_rows and not terminals[-1]:
            keep[-1] = False
    return {
        "observations": observations[keep],
        "actions": np.asarray(arrays["actions"], dtype=np.float32)[keep],
        "rewards": np.asarray(arrays["rewards"], dtype=np.float32).reshape(num_rows)[keep],
        "next_observations": next_observations[keep],
        "terminals": terminals[keep].astype(np.float32),
        "timeouts": timeouts[keep],
    }


# ---------------------------------------------------------------------------------- statistics
def episode_returns(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Undiscounted return of every episode, in file order.

    Episodes end at rows with ``terminals | timeouts``; rows after the last end form a trailing
    (partial) episode, which is counted too.

    Args:
        arrays: D4RL-layout arrays with ``rewards (N,)``, ``terminals (N,)``, optionally ``timeouts``.

    Returns:
        ``(num_episodes,)`` float64 returns.
    """
    rewards = np.asarray(arrays["rewards"], dtype=np.float64).reshape(-1)
    if len(rewards) == 0:
        return np.zeros(0, dtype=np.float64)
    ends = np.asarray(arrays["terminals"]).reshape(-1).astype(bool)
    if "timeouts" in arrays:
        ends = ends | np.asarray(arrays["timeouts"]).reshape(-1).astype(bool)
    starts = np.concatenate([[0], np.flatnonzero(ends[:-1]) + 1])
    return np.add.reduceat(rewards, starts)


FINGERPRINT_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def data_fingerprint(arrays: Mapping[str, np.ndarray], keys: Sequence[str] = FINGERPRINT_KEYS) -> str:
    """12 hex digits identifying a dataset's contents: BLAKE2b over the shapes, dtypes and bytes of
    its observations, actions, rewards, terminals and timeouts (those present; ``keys``: these instead).

    Two builds of a replica from the same recipe and seed get the same fingerprint only when their
    arrays are equal bit for bit (a policy-based replica built on another kind of CPU usually is not),
    so result rows that carry it can be compared build with build.
    """
    digest = hashlib.blake2b(digest_size=6)
    for key in keys:
        if key not in arrays:
            continue
        values = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}:{values.dtype.str}:{values.shape};".encode())
        digest.update(memoryview(values).cast("B"))
    return digest.hexdigest()


def dataset_summary(arrays: Mapping[str, np.ndarray]) -> dict[str, float | int]:
    """Size and return statistics of a D4RL-layout dataset.

    Returns:
        ``transitions`` (rows), ``episodes``, ``return_mean``/``return_std``/``return_min``/
        ``return_max`` over :func:`episode_returns`, ``terminals``/``timeouts`` (counts),
        ``obs_dim`` and ``act_dim``.
    """
    returns = episode_returns(arrays)
    has_returns = len(returns) > 0
    timeouts = arrays.get("timeouts")
    return {
        "transitions": int(len(arrays["rewards"])),
        "episodes": int(len(returns)),
        "return_mean": float(returns.mean()) if has_returns else float("nan"),
        "return_std": float(returns.std()) if has_returns else float("nan"),
        "return_min": float(returns.min()) if has_returns else float("nan"),
        "return_max": float(returns.max()) if has_returns else float("nan"),
        "terminals": int(np.count_nonzero(arrays["terminals"])),
        "timeouts": int(np.count_nonzero(timeouts)) if timeouts is not None else 0,
        "obs_dim": int(np.asarray(arrays["observations"]).shape[1]),
        "act_dim": int(np.asarray(arrays["actions"]).shape[1]),
    }
