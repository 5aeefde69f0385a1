"""D4RL task names mapped to Gymnasium environments and D4RL's reference returns.

A *task* is an environment plus the two reference returns that define D4RL's normalized score
(``d4rl/infos.py``): ``score = 100 * (R - min) / (max - min)``. Dataset levels (random, medium,
...) live in :mod:`lightning_offrl.data.registry`; every dataset of a domain shares its task.

The D4RL names stay the user-facing names; the environments are Gymnasium's MuJoCo ``v5``
locomotion tasks and gymnasium-robotics' mazes (see ``docs/data.md`` for how they differ from
the mujoco-py originals).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np

from lightning_offrl.errors import ConfigError, UnknownDatasetError


@dataclass(frozen=True)
class TaskSpec:
    """One environment family of D4RL.

    Attributes:
        domain: D4RL's prefix (``hopper``, ``antmaze-umaze``, ``maze2d-medium``, ...).
        gym_id: the Gymnasium environment id (empty for a task without an environment: it trains and
            checkpoints, but cannot be evaluated).
        ref_min_score: D4RL's reference return of a random policy (``None`` for a task without
            reference returns: its returns are reported raw).
        ref_max_score: D4RL's reference return of an expert policy (``None`` likewise).
        max_episode_steps: episode length limit used for data and evaluation.
        gym_kwargs: extra keyword arguments for ``gym.make``.
        env_factory: optional ``(spec, **kwargs) -> gym.Env`` for tasks that need wrappers
            (mazes); when ``None`` the environment is ``gym.make(gym_id, **gym_kwargs)``.
    """

    domain: str
    gym_id: str
    ref_min_score: float | None
    ref_max_score: float | None
    max_episode_steps: int = 1000
    gym_kwargs: Mapping[str, Any] = field(default_factory=dict)
    env_factory: Callable[..., gym.Env] | None = None

    @property
    def has_environment(self) -> bool:
        """Whether the task names an environment to evaluate in."""
        return bool(self.gym_id)

    @property
    def has_reference_scores(self) -> bool:
        """Whether the task has reference returns, i.e. a normalized score."""
        return self.ref_min_score is not None and self.ref_max_score is not None

    def normalized_score(self, returns: float | np.ndarray) -> np.ndarray:
        """D4RL normalized score in percent: ``100 * (R - min) / (max - min)``.

        Raises:
            ConfigError: the task has no reference returns.
        """
        if self.ref_min_score is None or self.ref_max_score is None:
            raise ConfigError(
                f"task {self.domain!r} has no reference returns, so it has no normalized score; pass "
                "data.ref_min_score and data.ref_max_score to get one"
            )
        returns = np.asarray(returns, dtype=np.float64)
        return 100.0 * (returns - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)


# Reference returns from d4rl/infos.py (REF_MIN_SCORE / REF_MAX_SCORE).
_LOCOMOTION: dict[str, tuple[str, float, float, dict[str, Any]]] = {
    "hopper": ("Hopper-v5", -20.272305, 3234.3, {}),
    "halfcheetah": ("HalfCheetah-v5", -280.178953, 12135.0, {}),
    "walker2d": ("Walker2d-v5", 1.629008, 4592.3, {}),
    # D4RL's ant observed 111 values (contact forces included but all zero under MuJoCo 2);
    # we keep the 27 informative ones.
    "ant": ("Ant-v5", -325.6, 3879.7, {"include_cfrc_ext_in_observation": False}),
}

# AntMaze: success-rate tasks, reference returns 0 and 1. Time limits are D4RL's registrations
# (d4rl/locomotion/__init__.py: antmaze-umaze(-diverse) 700 steps, medium and large 1000), at D4RL's
# 0.1 s per step (lightning_offrl.envs.d4rl_ant): 70 s and 100 s of simulated time.
_ANTMAZE: dict[str, tuple[str, int]] = {
    "antmaze-umaze": ("AntMaze_UMaze-v5", 700),
    "antmaze-medium": ("AntMaze_Medium-v5", 1000),
    "antmaze-large": ("AntMaze_Large-v5", 1000),
}

# Maze2D (v1 datasets): reference returns of d4rl/infos.py.
_MAZE2D: dict[str, tuple[str, float, float, int]] = {
    "maze2d-umaze": ("PointMaze_UMaze-v3", 23.85, 161.86, 300),
    "maze2d-medium": ("PointMaze_Medium-v3", 13.13, 277.39, 600),
    "maze2d-large": ("PointMaze_Large-v3", 6.7, 273.99, 800),
}

TASKS: dict[str, TaskSpec] = {}
for _domain, (_gid, _lo, _hi, _kw) in _LOCOMOTION.items():
    TASKS[_domain] = TaskSpec(_domain, _gid, _lo, _hi, 1000, dict(_kw))
for _domain, (_gid, _steps) in _ANTMAZE.items():
    TASKS[_domain] = TaskSpec(_domain, _gid, 0.0, 1.0, _steps)
for _domain, (_gid, _lo, _hi, _steps) in _MAZE2D.items():
    TASKS[_domain] = TaskSpec(_domain, _gid, _lo, _hi, _steps)

# A D4RL dataset name is "<domain>-<level>-v<k>"; the domain is the longest registered prefix.
_VERSION = re.compile(r"-v\d+$")


def register_task(spec: TaskSpec, overwrite: bool = False) -> None:
    """Adds a task (or replaces one with ``overwrite=True``) to the registry."""
    if spec.domain in TASKS and not overwrite:
        raise ValueError(f"task {spec.domain!r} is already registered; pass overwrite=True")
    TASKS[spec.domain] = spec


def domain_of(name: str) -> str:
    """``'hopper-medium-replay-v2'`` -> ``'hopper'``; ``'antmaze-umaze-diverse-v2'`` -> ``'antmaze-umaze'``."""
    stem = _VERSION.sub("", name)
    for domain in sorted(TASKS, key=len, reverse=True):
        if stem == domain or stem.startswith(domain + "-"):
            return domain
    raise UnknownDatasetError(
        f"unknown task in {name!r}: known domains are {', '.join(sorted(TASKS))} "
        "(names look like 'hopper-medium-v2' or 'antmaze-umaze-diverse-v2')"
    )


def get_task(name: str) -> TaskSpec:
    """The task of a domain or of any D4RL dataset name of that domain."""
    return TASKS[domain_of(name)]


def normalized_score(name: str, returns: float | np.ndarray) -> np.ndarray:
    """D4RL normalized score of ``returns`` for the task of dataset ``name``."""
    return get_task(name).normalized_score(returns)


def make_env(name: str, seed: int | None = None, **kwargs: Any) -> gym.Env:
    """Creates the Gymnasium environment of a task or dataset name, reset with ``seed``."""
    spec = get_task(name)
    if spec.env_factory is not None:
        env = spec.env_factory(spec, **kwargs)
    else:
        _ensure_registered(spec.gym_id)
        env = gym.make(spec.gym_id, max_episode_steps=spec.max_episode_steps, **{**spec.gym_kwargs, **kwargs})
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def import_gymnasium_robotics() -> Any:
    """``import gymnasium_robotics``, without the notice it prints on import about its Adroit ``*Dense-v1``
    rewards: the project's Adroit tasks compute D4RL's rewards themselves (:mod:`lightning_offrl.envs.adroit`),
    so the notice does not apply. Anything else printed during the import is passed on."""
    import contextlib
    import io
    import sys

    if "gymnasium_robotics" in sys.modules:
        return sys.modules["gymnasium_robotics"]
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):
        import gymnasium_robotics
    notice = "environment's reward functions were updated"
    other = [line for line in captured.getvalue().splitlines() if line and notice not in line]
    if other:
        print("\n".join(other), file=sys.stderr)
    return gymnasium_robotics


def _ensure_registered(gym_id: str) -> None:
    # gymnasium-robotics registers its mazes, Adroit hands and kitchen only when it is imported.
    if gym_id not in gym.registry and ("Maze" in gym_id or "Adroit" in gym_id or "Kitchen" in gym_id):
        gym.register_envs(import_gymnasium_robotics())


# ---------------------------------------------------------------------------------- custom tasks
def make_custom_env(spec: TaskSpec, **kwargs: Any) -> gym.Env:
    """The ``env_factory`` of a task named by the user (:func:`custom_task`): ``gym.make(spec.gym_id)``.

    The environment keeps its own registered time limit; Gymnasium-Robotics ids are registered on demand.

    Raises:
        ConfigError: the task has no environment, or Gymnasium does not know the id.
    """
    if not spec.gym_id:
        raise ConfigError(
            f"task {spec.domain!r} has no environment to evaluate in; pass data.env_id (a Gymnasium id) to "
            "evaluate it"
        )
    return gym.make(resolve_env_id(spec.gym_id), **{**spec.gym_kwargs, **kwargs})


def resolve_env_id(env_id: str) -> str:
    """Checks that Gymnasium knows ``env_id`` (registering Gymnasium-Robotics' environments if needed).

    Returns:
        ``env_id``.

    Raises:
        ConfigError: no such environment.
    """
    for attempt in range(2):
        try:
            gym.spec(env_id)
            return env_id
        except gym.error.Error as error:
            if attempt == 1 or ":" in env_id:
                raise ConfigError(
                    f"unknown Gymnasium environment {env_id!r} ({error}); pass a registered id such as "
                    "'Hopper-v5' or 'AdroitHandDoor-v1', or 'module:EnvName-v0' to import one"
                ) from None
            gym.register_envs(import_gymnasium_robotics())
    return env_id  # pragma: no cover - the loop returns or raises


def custom_task(domain: str, env_id: str | None = None, ref_min_score: float | None = None,
                ref_max_score: float | None = None) -> TaskSpec:
    """A task for a dataset outside D4RL's families, evaluated in ``env_id`` (or not evaluated at all).

    Args:
        domain: the task's name (a dataset name without its ``-v<k>`` suffix).
        env_id: the Gymnasium environment to evaluate in; ``None`` for none.
        ref_min_score: the return that scores 0 (with ``ref_max_score``, or neither).
        ref_max_score: the return that scores 100.

    Returns:
        The spec (not registered; see :func:`register_task`).

    Raises:
        ConfigError: only one reference return, equal ones, or references without an environment.
    """
    if (ref_min_score is None) != (ref_max_score is None):
        raise ConfigError("give both data.ref_min_score and data.ref_max_score (the returns scoring 0 and 100), "
                          "or neither")
    if ref_min_score is not None and ref_min_score == ref_max_score:
        raise ConfigError(f"data.ref_min_score and data.ref_max_score are both {ref_min_score}: they must differ")
    if ref_min_score is not None and not env_id:
        raise ConfigError("data.ref_min_score/ref_max_score normalize evaluation returns, but without data.env_id "
                          "nothing is evaluated; pass data.env_id or drop the reference returns")
    max_steps = 0
    if env_id:
        max_steps = int(gym.spec(resolve_env_id(env_id)).max_episode_steps or 0)
    return TaskSpec(domain, env_id or "", ref_min_score, ref_max_score, max_steps, env_factory=make_custom_env)
