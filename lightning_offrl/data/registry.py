"""The D4RL dataset names, their sizes, where else they exist, and how to build replicas of them.

A dataset name is ``<domain>-<level>-v<k>`` (``hopper-medium-replay-v2``). The *domain* selects the
task (:mod:`lightning_offrl.envs.tasks`: environment and reference returns); the *level* selects
the recipe that produced the data. The maze names of D4RL carry no level word, so they get one here:

* ``antmaze-umaze-v2`` -> level ``fixed`` (one start and one goal), ``antmaze-*-diverse-v2`` ->
  ``diverse`` (random starts and goals), ``antmaze-*-play-v2`` -> ``play`` (hand-picked ones);
* ``maze2d-*-v1`` -> level ``planner`` (waypoints from a Q-iteration planner, PD controller);
* ``kitchen-{complete,partial,mixed}-v0`` -> levels ``complete``, ``partial``, ``mixed`` (each its own task).

Adroit names carry their level: ``door-human-v1`` is domain ``door``, level ``human``.

A *replica builder* generates a dataset of one level with D4RL's recipe on the Gymnasium
environments; builders register themselves per level when :mod:`lightning_offrl.collect` is
imported.
"""

from __future__ import annotations

import difflib
import importlib
import re
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from lightning_offrl.envs.tasks import TASKS, TaskSpec, custom_task, get_task, register_task
from lightning_offrl.errors import ConfigError, DatasetError, UnknownDatasetError

_D4RL_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl"


@dataclass(frozen=True)
class DatasetSpec:
    """One D4RL dataset.

    Attributes:
        name: D4RL's name, e.g. ``hopper-medium-replay-v2``.
        domain: the task's domain, e.g. ``hopper`` or ``antmaze-umaze``.
        level: the data recipe, e.g. ``medium-replay`` (see the module docstring for mazes).
        task: environment and reference returns of the domain.
        num_steps: number of transitions (rows) of D4RL's file, the default replica size.
        minari_ids: Minari dataset ids holding the same kind of data, most faithful first (empty
            when Minari has none).
        d4rl_url: where D4RL downloads the file from; d4rl saves it under the URL's file name.
        d4rl_episodes: number of episodes in D4RL's file, where published (``None`` otherwise).
        minari_adapter: turns the arrays read from a Minari dataset into D4RL's layout where Minari's
            differs (kitchen's dictionary observations); ``None`` where it does not.
        custom: a dataset named by the user outside D4RL's families (its own file, its own task).
        no_replica_reason: why no replica of this dataset can ever be built here (human demonstrations,
            unshipped expert policies); ``None`` where a recipe may exist.
    """

    name: str
    domain: str
    level: str
    task: TaskSpec
    num_steps: int
    minari_ids: tuple[str, ...] = ()
    d4rl_url: str = ""
    d4rl_episodes: int | None = None
    minari_adapter: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None
    custom: bool = False
    no_replica_reason: str | None = None

    @property
    def d4rl_filename(self) -> str:
        """The file name d4rl gives the download (``hopper_medium-v2.hdf5``)."""
        return self.d4rl_url.rsplit("/", 1)[-1]


LOCOMOTION_LEVELS: tuple[str, ...] = ("random", "medium", "medium-replay", "medium-expert", "expert")
# D4RL's medium-replay sizes (the SAC replay buffer up to the medium checkpoint); other levels are
# 1M rows, medium-expert 2M (medium followed by expert).
_MEDIUM_REPLAY_STEPS = {"hopper": 402_000, "walker2d": 302_000, "halfcheetah": 202_000, "ant": 302_000}
# Episodes in D4RL's v2 locomotion files, as published in the TensorFlow Datasets catalog
# (``d4rl_mujoco_<domain>``, configs ``v2-<level>``: one 'train' example per episode). No published
# mean return of D4RL's files was found, so none is recorded.
_D4RL_EPISODES = {
    "hopper": {"random": 45_240, "medium": 2_187, "medium-replay": 2_041, "expert": 1_028,
               "medium-expert": 3_214},
    "halfcheetah": {"random": 1_000, "medium": 1_000, "medium-replay": 202, "expert": 1_000,
                    "medium-expert": 2_000},
    "walker2d": {"random": 48_908, "medium": 1_191, "medium-replay": 1_093, "expert": 1_001,
                 "medium-expert": 2_191},
}
# Minari's MuJoCo datasets (Gymnasium v5 environments) cover these levels only; they are Minari's
# own collections, not conversions of D4RL's files.
_MINARI_MUJOCO_LEVELS = ("medium", "expert")

# name -> (Minari's maze name, level, D4RL's maze name, multistart, multigoal); D4RL's file name
# encodes the last three, Minari's conversions are D4RL/antmaze/<maze>-v1.
_ANTMAZE = {
    "antmaze-umaze-v2": ("umaze", "fixed", "u-maze", False, False),
    "antmaze-umaze-diverse-v2": ("umaze-diverse", "diverse", "u-maze", True, True),
    "antmaze-medium-play-v2": ("medium-play", "play", "big-maze", True, False),
    "antmaze-medium-diverse-v2": ("medium-diverse", "diverse", "big-maze", True, True),
    "antmaze-large-play-v2": ("large-play", "play", "hardest-maze", True, False),
    "antmaze-large-diverse-v2": ("large-diverse", "diverse", "hardest-maze", True, True),
}
# Maze2D v1 sizes from D4RL; Minari's conversions are D4RL/pointmaze/<maze>-v2.
_MAZE2D_STEPS = {"umaze": 1_000_000, "medium": 2_000_000, "large": 4_000_000}


def _build_specs() -> dict[str, DatasetSpec]:
    specs: dict[str, DatasetSpec] = {}
    for domain in ("hopper", "halfcheetah", "walker2d", "ant"):
        for level in LOCOMOTION_LEVELS:
            name = f"{domain}-{level}-v2"
            num_steps = {"medium-replay": _MEDIUM_REPLAY_STEPS[domain], "medium-expert": 2_000_000}.get(
                level, 1_000_000
            )
            minari_ids = (
                (f"mujoco/{domain}/{level}-v0",) if level in _MINARI_MUJOCO_LEVELS else ()
            )
            url = f"{_D4RL_URL}/gym_mujoco_v2/{domain}_{level.replace('-', '_')}-v2.hdf5"
            episodes = _D4RL_EPISODES.get(domain, {}).get(level)
            specs[name] = DatasetSpec(
                name, domain, level, get_task(domain), num_steps, minari_ids, url, d4rl_episodes=episodes
            )
    for name, (minari_name, level, maze_file, multistart, multigoal) in _ANTMAZE.items():
        domain = get_task(name).domain
        url = (
            f"{_D4RL_URL}/ant_maze_v2/Ant_maze_{maze_file}_noisy_multistart_{multistart}"
            f"_multigoal_{multigoal}_sparse_fixed.hdf5"
        )
        specs[name] = DatasetSpec(
            name, domain, level, get_task(domain), 1_000_000, (f"D4RL/antmaze/{minari_name}-v1",), url
        )
    for maze, num_steps in _MAZE2D_STEPS.items():
        name = f"maze2d-{maze}-v1"
        url = f"{_D4RL_URL}/maze2d/maze2d-{maze}-sparse-v1.hdf5"
        specs[name] = DatasetSpec(
            name, f"maze2d-{maze}", "planner", get_task(name), num_steps, (f"D4RL/pointmaze/{maze}-v2",), url
        )
    return specs


# Adroit (d4rl/hand_manipulation_suite/__init__.py, V1 datasets) and Kitchen (d4rl/kitchen/__init__.py).
ADROIT_LEVELS: tuple[str, ...] = ("human", "cloned", "expert")
# Rows of D4RL's v1 files: human = DAPG's 25 teleoperated demonstrations per task; cloned = 500k (pen) or 1M
# rows, half demonstrations and half rollouts of a policy cloned from them; expert = 5,000 episodes of DAPG's
# expert policy (pen 100 steps, the others 200). door-human: 6,729 rows in 25 episodes.
_ADROIT_STEPS = {
    "pen": {"human": 5_000, "cloned": 500_000, "expert": 500_000},
    "door": {"human": 6_729, "cloned": 1_000_000, "expert": 1_000_000},
    "hammer": {"human": 11_310, "cloned": 1_000_000, "expert": 1_000_000},
    "relocate": {"human": 9_942, "cloned": 1_000_000, "expert": 1_000_000},
}
_ADROIT_EPISODES = {"human": 25, "expert": 5_000}
# name -> (D4RL's file, rows); kitchen-complete: the demonstrations of exactly its four sub-tasks;
# partial and mixed: every demonstration (the rows and terminals D4RL's files hold).
_KITCHEN = {
    "complete": ("mini_kitchen_microwave_kettle_light_slider-v0.hdf5", 3_680),
    "partial": ("kitchen_microwave_kettle_light_slider-v0.hdf5", 136_950),
    "mixed": ("kitchen_microwave_kettle_bottomburner_light-v0.hdf5", 136_950),
}


# Why no recipe can ever replicate the Adroit and Kitchen levels here (``datasets make`` and the resolver say so).
_NO_REPLICA: dict[str, str] = {
    "human": "human demonstrations (DAPG's teleoperated episodes) cannot be regenerated",
    "cloned": "cloned data is half DAPG's human demonstrations and half rollouts of a policy cloned from them, "
              "so it cannot be regenerated without them",
    "expert": "expert data needs DAPG's expert policies, which are not shipped, and no expert policy can be "
              "trained honestly here (DAPG trains from the human demonstrations)",
    "complete": "kitchen demonstrations are human teleoperation (Relay Policy Learning) and cannot be regenerated",
    "partial": "kitchen demonstrations are human teleoperation (Relay Policy Learning) and cannot be regenerated",
    "mixed": "kitchen demonstrations are human teleoperation (Relay Policy Learning) and cannot be regenerated",
}


def _kitchen_minari_adapter(domain: str) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    from functools import partial

    from lightning_offrl.envs.kitchen import KITCHEN_TASKS

    return partial(_kitchen_from_minari, task_domain=domain, elements=KITCHEN_TASKS[domain].elements)


def _kitchen_from_minari(arrays: dict[str, np.ndarray], task_domain: str,
                         elements: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Minari's kitchen rows (59-value observations, per-step completion rewards) in D4RL's layout.

    Observations become D4RL's 60 values (positions + the task's goal vector); rewards become D4RL's
    dataset labels, the number of the task's sub-tasks each row's observation satisfies. Minari's own
    rewards are kept as ``infos/minari_rewards``.
    """
    from lightning_offrl.envs.kitchen import KITCHEN_TASKS, d4rl_observations_from_robotics, markovian_rewards

    task = KITCHEN_TASKS[task_domain]
    out = dict(arrays)
    if arrays["observations"].shape[1] == 60:  # already D4RL's layout
        return out
    for key in ("observations", "next_observations"):
        if key in out:
            out[key] = d4rl_observations_from_robotics(out[key], task)
    out["infos/minari_rewards"] = np.asarray(arrays["rewards"], dtype=np.float32)
    out["rewards"] = markovian_rewards(out["observations"], elements)
    return out


def _build_hand_and_kitchen_specs() -> dict[str, DatasetSpec]:
    specs: dict[str, DatasetSpec] = {}
    for domain, sizes in _ADROIT_STEPS.items():
        for level in ADROIT_LEVELS:
            name = f"{domain}-{level}-v1"
            specs[name] = DatasetSpec(
                name, domain, level, get_task(domain), sizes[level], (f"D4RL/{domain}/{level}-v2",),
                f"{_D4RL_URL}/hand_dapg_v1/{name}.hdf5", d4rl_episodes=_ADROIT_EPISODES.get(level),
                no_replica_reason=_NO_REPLICA[level],
            )
    for level, (filename, num_steps) in _KITCHEN.items():
        name, domain = f"kitchen-{level}-v0", f"kitchen-{level}"
        specs[name] = DatasetSpec(
            name, domain, level, get_task(domain), num_steps, (f"D4RL/kitchen/{level}-v2",),
            f"{_D4RL_URL}/kitchen/{filename}", minari_adapter=_kitchen_minari_adapter(domain),
            no_replica_reason=_NO_REPLICA[level],
        )
    return specs


DATASETS: dict[str, DatasetSpec] = {**_build_specs(), **_build_hand_and_kitchen_specs()}




# Size of a dataset of a task registered outside D4RL's families when nobody registered its size.
DEFAULT_NUM_STEPS = 1_000_000
_VERSIONED = re.compile(r"(?P<stem>.+)-v\d+")


def register_dataset(spec: DatasetSpec, overwrite: bool = False) -> None:
    """Adds a dataset (or replaces one with ``overwrite=True``) to the registry."""
    if spec.name in DATASETS and not overwrite:
        raise ValueError(f"dataset {spec.name!r} is already registered; pass overwrite=True")
    DATASETS[spec.name] = spec


def is_known_dataset(name: str) -> bool:
    """Whether ``name`` is a registered dataset or a dataset of a task registered outside D4RL's families."""
    try:
        get_dataset_spec(name)
    except UnknownDatasetError:
        return False
    return True


def is_d4rl_dataset(name: str) -> bool:
    """Whether ``name`` is a dataset the project knows by itself (D4RL's or an added task's), not one of the
    user's own registered with :func:`register_custom_dataset`."""
    return is_known_dataset(name) and not get_dataset_spec(name).custom


def register_custom_dataset(
    name: str,
    env_id: str | None = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    num_steps: int = DEFAULT_NUM_STEPS,
) -> DatasetSpec:
    """Registers a dataset of the user's own (read from its file), with its own task.

    The task's domain is ``name`` without its ``-v<k>`` suffix; it is evaluated in ``env_id`` (with a
    normalized score when both reference returns are given), or not at all without ``env_id``. Registering
    the same name again replaces the earlier registration (every process of a DDP run registers it).

    Args:
        name: any dataset name that is not a known dataset.
        env_id: Gymnasium environment for evaluation, or ``None``.
        ref_min_score: return scoring 0.
        ref_max_score: return scoring 100.
        num_steps: rows of the file (informational).

    Returns:
        The registered spec.

    Raises:
        ConfigError: ``name`` is a known dataset or its domain is a built-in task, or the references are
            inconsistent (:func:`lightning_offrl.envs.tasks.custom_task`).
    """
    domain = re.sub(r"-v\d+$", "", name)
    existing = DATASETS.get(name)
    if (existing is not None and not existing.custom) or (
        domain in TASKS and not any(spec.custom and spec.domain == domain for spec in DATASETS.values())
    ):
        raise ConfigError(
            f"{name!r} is a known dataset or task; data.env_id and data.ref_min_score/ref_max_score only apply "
            "to a dataset of your own: give it another name (data.dataset) and pass its file as data.path"
        )
    task = custom_task(domain, env_id, ref_min_score, ref_max_score)
    register_task(task, overwrite=True)
    spec = DatasetSpec(name, domain, "custom", task, int(num_steps), custom=True)
    register_dataset(spec, overwrite=True)
    return spec


def list_dataset_names() -> list[str]:
    """All registered dataset names (D4RL's: locomotion, antmaze, maze2d; then any added ones)."""
    return list(DATASETS)


def get_dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of a dataset name.

    Registered names resolve to their spec. A name ``<domain>-<level>-v<k>`` whose domain is a task
    registered outside D4RL's families (:func:`lightning_offrl.envs.tasks.register_task`, e.g. the
    ``pointgoal`` toy task) gets a spec on the fly with :data:`DEFAULT_NUM_STEPS` rows; D4RL's own
    domains accept only D4RL's names, so a typo there is reported rather than guessed at.

    Raises:
        UnknownDatasetError: ``name`` is not known; the message lists the closest names first.
    """
    if name in DATASETS:
        return DATASETS[name]
    spec = _spec_of_added_task(name)
    if spec is not None:
        return spec
    names = list_dataset_names()
    close = difflib.get_close_matches(name, names, n=5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    others = [n for n in names if n not in close]
    raise UnknownDatasetError(
        f"unknown dataset {name!r}: {hint}known datasets are {', '.join(close + others)}."
    ) from None


def _spec_of_added_task(name: str) -> DatasetSpec | None:
    match = _VERSIONED.fullmatch(name)
    if match is None:
        return None
    try:
        task = get_task(name)
    except UnknownDatasetError:
        return None
    if any(spec.domain == task.domain for spec in DATASETS.values()):
        return None
    level = match.group("stem")[len(task.domain) + 1:]
    return DatasetSpec(name, task.domain, level, task, DEFAULT_NUM_STEPS) if level else None


# --------------------------------------------------------------------------------- replicas
class ReplicaBuilder(Protocol):
    """Generates a dataset of one level with D4RL's recipe.

    Args:
        spec: the dataset to replicate (its task gives the environment).
        seed: seeds every random choice; the same seed gives identical arrays.
        num_steps: number of rows to generate.
        progress: show a progress bar.

    Returns:
        D4RL-layout arrays (:mod:`lightning_offrl.data.d4rl_hdf5`), ``num_steps`` rows.
    """

    def __call__(
        self, spec: DatasetSpec, seed: int, num_steps: int, progress: bool
    ) -> dict[str, np.ndarray]: ...


_REPLICA_BUILDERS: dict[str, ReplicaBuilder] = {}
# What a level's recipe reads besides the code (the shipped policy files), per level.
ReplicaInputs = Callable[[DatasetSpec], Sequence[Traversable]]
_REPLICA_INPUTS: dict[str, ReplicaInputs] = {}
# The version of each level's recipe and what its latest version changed (recorded in every replica built).
_RECIPE_VERSIONS: dict[str, tuple[int, str]] = {}


def register_replica_builder(level: str, builder: ReplicaBuilder | Callable[..., dict[str, np.ndarray]],
                             overwrite: bool = False, inputs: ReplicaInputs | None = None,
                             version: int = 1, version_note: str = "") -> None:
    """Registers the builder of a level (``random``, ``medium``, ``diverse``, ...).

    Args:
        level: the dataset level.
        builder: the recipe.
        overwrite: replace a builder already registered for the level.
        inputs: for recipes that read files (shipped policies), ``spec -> files``: their contents are
            recorded in each replica built, and a cached replica built from other contents is refused
            (:func:`lightning_offrl.data.sources.resolve_dataset`). It may raise
            :class:`~lightning_offrl.errors.DatasetError` when the files are not shipped.
        version: the recipe's version, recorded in each replica built (``recipe_version``); a cached
            replica of another version is refused. Raise it whenever the recipe makes other data.
        version_note: what the current version changed, for the message that refuses an old file.
    """
    if level in _REPLICA_BUILDERS and _REPLICA_BUILDERS[level] is not builder and not overwrite:
        raise ValueError(f"a replica builder for level {level!r} is already registered; pass overwrite=True")
    if version < 1:
        raise ValueError(f"a recipe version is a positive integer, got {version}")
    _REPLICA_BUILDERS[level] = builder  # type: ignore[assignment]
    _RECIPE_VERSIONS[level] = (int(version), version_note)
    if inputs is None:
        _REPLICA_INPUTS.pop(level, None)
    else:
        _REPLICA_INPUTS[level] = inputs


def replica_inputs(spec: DatasetSpec) -> list[Traversable]:
    """The files the recipe of ``spec``'s level reads (empty for recipes that read none).

    Raises:
        DatasetError: the recipe reads files that are not shipped.
    """
    _load_builders()
    inputs = _REPLICA_INPUTS.get(spec.level)
    return [] if inputs is None else list(inputs(spec))


def recipe_version(level: str) -> tuple[int, str]:
    """``(version, what that version changed)`` of ``level``'s recipe; ``(1, "")`` for unversioned ones."""
    _load_builders()
    return _RECIPE_VERSIONS.get(level, (1, ""))


def buildable_levels() -> list[str]:
    """The levels a replica can be built for now."""
    _load_builders()
    return sorted(_REPLICA_BUILDERS)


def get_replica_builder(level: str, spec: DatasetSpec | None = None) -> ReplicaBuilder:
    """The builder registered for ``level``.

    Args:
        level: the dataset level.
        spec: the dataset being asked for; only used to make the error message specific.

    Raises:
        DatasetError: no builder exists for ``level``; the message says which levels can be built
            and how to supply the data instead.
    """
    if spec is not None and spec.custom:
        raise DatasetError(f"{spec.name} is your own dataset: it is read from data.path, never built")
    _load_builders()
    if level in _REPLICA_BUILDERS and (spec is None or spec.no_replica_reason is None):
        return _REPLICA_BUILDERS[level]
    what = spec.name if spec is not None else f"level {level!r}"
    supply = (
        f"put D4RL's file {spec.d4rl_filename} (from {spec.d4rl_url}) in $D4RL_DATASET_DIR "
        f"(default ~/.d4rl/datasets) or pass its path as data.path"
        if spec is not None and spec.d4rl_url else "pass a D4RL-format HDF5 file as data.path"
    )
    if spec is not None and spec.minari_ids:
        minari_id = spec.minari_ids[0]
        supply += f", or download the Minari dataset {minari_id} (`minari download {minari_id}`)"
    if spec is not None and spec.no_replica_reason is not None:
        raise DatasetError(f"{what}: no replica can be built ({spec.no_replica_reason}). To use it, {supply}.")
    raise DatasetError(
        f"no replica recipe for {what} (level {level!r}) yet: replicas can be built now for levels "
        f"{', '.join(sorted(_REPLICA_BUILDERS)) or 'none'}. To use this dataset, {supply}."
    )


def _load_builders() -> None:
    # Imported here, not at module import: lightning_offrl.collect imports this module.
    importlib.import_module("lightning_offrl.collect").load_recipes()
