"""Local Minari datasets, converted to D4RL's layout. Never touches the network.

Minari stores episodes, each with ``T + 1`` observations (the reset observation included) and ``T``
actions, rewards, terminations and truncations. Converted to D4RL rows, step ``t`` of an episode is
``observations = obs[t]``, ``next_observations = obs[t + 1]``, ``terminals = terminations[t]``,
``timeouts = truncations[t]``; episodes are concatenated in Minari's order.

Goal-conditioned mazes have dictionary observations ``{observation, achieved_goal, desired_goal}``.
The D4RL observation is the ``observation`` entry, with the agent's position (``achieved_goal``)
put in front when the entry lacks it: gymnasium-robotics' AntMaze leaves the ant's x-y out of
``observation`` (27 values) while D4RL's antmaze observation is the full ``qpos + qvel`` (29 values,
x-y first); PointMaze's ``observation`` already starts with the position and is used as is.
``desired_goal`` is kept as ``infos/goal`` (D4RL's name for it). Franka Kitchen's goals are dictionaries
per sub-task: there the ``observation`` entry is returned as is and the dataset's spec converts it
(:attr:`lightning_offrl.data.registry.DatasetSpec.minari_adapter`). Numeric per-step ``infos`` are kept
as ``infos/<key>``, aligned with the observation they were returned with.

Minari's remote listing retries for ~23 s without network and listing creates ``~/.minari``, so
this module only looks at folders: ``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets``, and
only if that folder exists.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from lightning_offrl.errors import DatasetError

log = logging.getLogger(__name__)


def minari_root() -> Path:
    """Where Minari keeps local datasets: ``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets``.

    The folder is not created.
    """
    configured = os.environ.get("MINARI_DATASETS_PATH")
    return Path(configured) if configured else Path.home() / ".minari" / "datasets"


def minari_dataset_dir(dataset_id: str) -> Path:
    """The folder of a local Minari dataset (it holds ``data/main_data.hdf5``)."""
    return minari_root() / dataset_id


def find_local_minari(ids: Sequence[str]) -> str | None:
    """The first of ``ids`` present locally, or ``None``."""
    root = minari_root()
    if not root.is_dir():
        return None
    for dataset_id in ids:
        if (root / dataset_id / "data" / "metadata.json").is_file():
            return dataset_id
    return None


def _import_minari() -> Any:
    # Minari imports huggingface_hub for its remote storage; offline mode stops any network call
    # (we only read local folders, but a stray call would hang for ~23 s without network).
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import minari
    except ImportError as error:  # pragma: no cover - minari is a dependency
        raise DatasetError(
            f"reading Minari datasets needs the minari package ({error}); pip install minari"
        ) from error
    return minari


def load_minari_arrays(dataset_id: str) -> dict[str, np.ndarray]:
    """Reads a local Minari dataset into D4RL-layout arrays.

    Args:
        dataset_id: e.g. ``mujoco/hopper/medium-v0`` or ``D4RL/antmaze/umaze-v1``.

    Returns:
        ``observations (N, obs_dim)``, ``actions (N, act_dim)``, ``rewards (N,)``,
        ``next_observations (N, obs_dim)`` float32, ``terminals (N,)`` and ``timeouts (N,)`` bool,
        plus ``infos/...`` per-step arrays (``infos/goal`` for goal-conditioned mazes).

    Raises:
        DatasetError: the dataset is not present locally or its episodes are malformed.
    """
    data_dir = minari_dataset_dir(dataset_id) / "data"
    if not (data_dir / "metadata.json").is_file():
        raise DatasetError(
            f"Minari dataset {dataset_id!r} is not present under {minari_root()} (looked for {data_dir}). "
            f"Download it with `minari download {dataset_id}` or set MINARI_DATASETS_PATH to the folder "
            "that holds it."
        )
    minari = _import_minari()
    # MinariDataset(path) reads the folder directly; minari.load_dataset would create the root folder.
    dataset = minari.MinariDataset(str(data_dir))
    columns: dict[str, list[np.ndarray]] = {}
    num_episodes = 0
    for episode in dataset.iterate_episodes():
        num_episodes += 1
        for key, value in _episode_rows(episode, dataset_id).items():
            columns.setdefault(key, []).append(value)
    if num_episodes == 0:
        raise DatasetError(f"Minari dataset {dataset_id!r} at {data_dir} has no episodes.")
    # An info key missing from some episodes cannot be aligned with the rows: leave it out.
    arrays = {
        key: np.concatenate(parts, axis=0) for key, parts in columns.items() if len(parts) == num_episodes
    }
    for key, value in arrays.items():
        if np.issubdtype(value.dtype, np.floating):
            arrays[key] = value.astype(np.float32, copy=False)
    log.info("read Minari dataset %s: %d transitions", dataset_id, len(arrays["rewards"]))
    return arrays


def _episode_rows(episode: Any, dataset_id: str) -> dict[str, np.ndarray]:
    """One Minari episode as D4RL rows (``T`` of them)."""
    num_steps = len(episode.rewards)
    observations, goals = _flat_observations(episode.observations, dataset_id)
    if len(observations) != num_steps + 1:
        raise DatasetError(
            f"Minari dataset {dataset_id!r}, episode {episode.id}: {len(observations)} observations for "
            f"{num_steps} steps (expected {num_steps + 1}); the dataset is malformed, download it again."
        )
    rows: dict[str, np.ndarray] = {
        "observations": observations[:-1],
        "actions": np.asarray(episode.actions).reshape(num_steps, -1),
        "rewards": np.asarray(episode.rewards, dtype=np.float64).reshape(num_steps),
        "next_observations": observations[1:],
        "terminals": np.asarray(episode.terminations, dtype=bool).reshape(num_steps),
        "timeouts": np.asarray(episode.truncations, dtype=bool).reshape(num_steps),
    }
    if goals is not None:
        rows["infos/goal"] = goals[:-1]
    for key, value in _flat_infos(episode.infos).items():
        # Infos come from reset() and every step(): T + 1 rows, row t belongs with obs[t].
        if len(value) in (num_steps, num_steps + 1):
            rows[f"infos/{key}"] = value[:num_steps]
    return rows


def _flat_observations(observations: Any, dataset_id: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(T + 1, obs_dim)`` observations and, for goal-conditioned mazes, ``(T + 1, goal_dim)`` goals."""
    if not isinstance(observations, Mapping):
        observations = np.asarray(observations)
        return observations.reshape(len(observations), -1), None
    if "observation" not in observations:
        raise DatasetError(
            f"Minari dataset {dataset_id!r} has dictionary observations with keys {sorted(observations)}; "
            "only goal-conditioned ones with an 'observation' entry can be converted to D4RL's layout."
        )
    state = np.asarray(observations["observation"])
    state = state.reshape(len(state), -1)
    position = observations.get("achieved_goal")
    goal = observations.get("desired_goal")
    if isinstance(position, Mapping) or isinstance(goal, Mapping):
        # Per-sub-task goals (Franka Kitchen): the state is the 'observation' entry; the dataset's spec
        # turns it into D4RL's layout (DatasetSpec.minari_adapter).
        return state, None
    if position is not None:
        position = np.asarray(position).reshape(len(state), -1)
        if not np.allclose(state[:, : position.shape[1]], position):
            state = np.concatenate([position, state], axis=1)
    return state, (None if goal is None else np.asarray(goal).reshape(len(state), -1))


def _flat_infos(infos: Mapping[str, Any] | None, prefix: str = "") -> dict[str, np.ndarray]:
    """Numeric info arrays, nested dictionaries flattened as ``"a/b"``."""
    flat: dict[str, np.ndarray] = {}
    for key, value in (infos or {}).items():
        if isinstance(value, Mapping):
            flat.update(_flat_infos(value, f"{prefix}{key}/"))
            continue
        value = np.asarray(value)
        if value.ndim >= 1 and value.dtype.kind in "biuf":
            flat[f"{prefix}{key}"] = value
    return flat
