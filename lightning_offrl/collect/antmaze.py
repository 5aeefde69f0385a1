"""The antmaze levels ``fixed``, ``diverse`` and ``play``: D4RL's goal-reaching ant following waypoints.

D4RL made its antmaze datasets in two stages (``scripts/generation/generate_ant_maze_datasets.py``):

1. **A goal-reaching ant.** SAC (rlkit) trained the ant in open space to reach goals drawn in a disk of
   radius 10 around it (``locomotion/goal_reaching_env.py``); the policy sees the ant's own state
   ``qpos[2:15] + qvel[:14]`` and the goal relative to its position.
2. **Navigation.** At every step the robot's cell and the goal's cell give the next cell of a
   shortest path on the maze grid; the waypoint is that cell's centre plus ``U(0, 1)`` per
   coordinate, drawn again at every step (the goal itself once the next cell is the goal's). Cells
   are looked up as D4RL's ``_xy_to_rowcol`` did (the floor of the position in cells, half a cell
   behind the nearest centre): :class:`AntNavigator`, style ``d4rl``. The relative waypoint is
   rescaled to norm 10 ("in-distribution values"), the policy's sampled action gets ``N(0, 0.2^2)``
   noise and is clipped to ``[-1, 1]``. Episodes hold 1001 rows (D4RL's step counter starts at 0 and
   times out at 1000); 1M rows in all.

Start and goal of each episode follow D4RL's ``_get_reset_location`` and ``goal_sampler`` on the
generation maps (G cells are the hand-picked goals; a reset never lands in one):

* ``fixed`` (``antmaze-umaze-v2``): start at the ``R`` cell, goal in the ``G`` cell (the evaluation
  goal's cell);
* ``diverse``: start in a uniformly drawn free cell, goal in a uniformly drawn free cell; umaze's map
  designates one goal cell, so ``antmaze-umaze-diverse-v2`` starts anywhere but in it, commands it,
  and ends each episode at its first rewarded row, as D4RL's file does
  (:func:`diverse_commands_goal_cells`);
* ``play``: start in a free cell that is not a hand-picked goal, goal in a hand-picked ``G`` cell.

Starts away from ``R`` sit at the cell centre plus ``U(0, 1)`` per coordinate and goals at the centre
plus ``U(0, 1) + U(0, 0.5)``; the robot gets D4RL's reset noise (:mod:`lightning_offrl.envs.mazes`).

Rows follow D4RL's v2 files (``scripts/generation/relabel_antmaze_rewards.py``): ``rewards`` and
``terminals`` are 1 where the *next* observation is within 0.5 of the task's evaluation goal (whatever
goal the ant was sent to; the replicas use the evaluation goal's expected position), the episode goes on
after such a row (except in umaze-diverse), ``timeouts`` mark the last row of every episode that did not
end at its goal, ``infos/goal`` is the commanded goal and ``infos/qpos``/``infos/qvel`` the state the
action was taken in (x-y in D4RL's frame). Observations are 29 values in D4RL's frame (start cell at the
origin), without the goal.

Differences from D4RL, on purpose:

* the goal-reaching ant is this project's (D4RL's was not published), trained on D4RL's ant physics
  (:mod:`lightning_offrl.envs.d4rl_ant`) with a dense *progress* reward (the decrease of the distance to
  the goal per second, like Ant's forward reward) plus Ant's survival bonus and control cost, and sees
  the goal direction in its heading frame, already at norm 10 (the form it is given while navigating),
  and its torso's horizontal velocity in the same frame, instead of D4RL's ``-distance`` reward and
  world-frame goal: the skill is the same, walking towards a commanded direction;
* an episode ends on the row where the ant flips over (D4RL's collector recorded a fallen ant until the
  timeout); with the shipped walker this almost never happens.

The goal-reaching policy is trained by :func:`train_goal_reaching_ant` (online SAC of
:mod:`lightning_offrl.collect.sac_online`, resumable, SIGTERM-safe) and shipped by
:func:`export_goal_reaching_policy` as ``<policy dir>/antgoal/goal_reaching.pt``::

    python -m lightning_offrl.collect.antmaze train --out runs/antgoal --steps 1000000 --resume
    python -m lightning_offrl.collect.antmaze export --run runs/antgoal

Importing this module registers the training tasks ``antgoal`` (open space, dense reward) and
``antgoal-reach`` (one goal per episode, reward 1 on reaching it: its normalized score is the reach
success rate in percent) and the three replica builders.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from contextlib import contextmanager
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import gymnasium as gym
import numpy as np

from lightning_offrl.collect.maze_planner import GridPlanner
from lightning_offrl.collect.policies import (
    ACTORS_DIR,
    actor_checkpoint,
    actor_from_state,
    deterministic_policy,
    load_evals,
    policy_dir,
)
from lightning_offrl.collect.progress import StepProgress
from lightning_offrl.data.registry import DatasetSpec, register_replica_builder
from lightning_offrl.envs.d4rl_ant import D4RL_ANT, is_flipped, write_d4rl_ant_xml
from lightning_offrl.envs.evaluation import Policy, evaluate_policy
from lightning_offrl.envs.mazes import Cell, MazeTask, MazeTaskEnv, goal_reached, maze_task, private_tempdir
from lightning_offrl.envs.tasks import TaskSpec, make_env, register_task
from lightning_offrl.errors import ConfigError, DatasetError, OffRLError

if TYPE_CHECKING:
    from lightning_offrl.collect.sac_online import SACConfig, TrainResult
    from lightning_offrl.networks import TanhGaussianActor

# torch (and the networks built on it) is imported inside the functions that run policies: importing
# this module registers the recipes, which `lightning_offrl datasets list` needs without torch.

log = logging.getLogger(__name__)

TRAIN_TASK = "antgoal"
REACH_TASK = "antgoal-reach"
POLICY_SUBDIR = "antgoal"
POLICY_FILE = "goal_reaching.pt"
DEFAULT_RUN_DIR = "runs/antgoal"
TRAIN_COMMAND = (
    f"python -m lightning_offrl.collect.antmaze train --out {DEFAULT_RUN_DIR} --steps 1000000 --resume"
)
EXPORT_COMMAND = f"python -m lightning_offrl.collect.antmaze export --run {DEFAULT_RUN_DIR}"

# D4RL's recipe.
GOAL_DIRECTION_NORM = 10.0  # the relative waypoint is rescaled to this norm before the policy sees it
ACTION_NOISE_STD = 0.2
# generate_ant_maze_datasets.py marks a timeout where its step counter, starting at 0, reaches
# max_episode_steps = 1000: every episode holds 1001 rows.
EPISODE_STEPS = 1001
TRAIN_EPISODE_STEPS = 1000  # the goal-reaching ant's training episodes
GOAL_DISK_RADIUS = 10.0  # disk_goal_sampler: training goals within 10 of the ant
# The reach test of a trained policy: one goal at distance U(4, 10), 500 steps (50 s) to get within 0.5.
REACH_MIN_DISTANCE = 4.0
REACH_EPISODE_STEPS = 500
REACH_RADIUS = 0.5
# Ant-v5's survival bonus and control-cost weight, kept in the goal-reaching reward.
HEALTHY_REWARD = 1.0
CTRL_COST_WEIGHT = 0.5
# The ant's own state in D4RL's antmaze observation: qpos[:15] + qvel[:14].
ANT_QPOS, ANT_QVEL = 15, 14
POLICY_OBS_DIM = (ANT_QPOS - 2) + ANT_QVEL + 2
# What the policy's 29 inputs mean and which body it drives; recorded in the policy file and the run folder,
# whose loaders refuse another version. 1 had the torso's velocity in the world frame, 2 turns it into the
# heading frame like the goal, 3 keeps 2's inputs on D4RL's ant physics (lightning_offrl.envs.d4rl_ant).
POLICY_INPUT = 3
POLICY_INPUT_MEANING = "version 2's inputs on D4RL's ant physics (0.1 s steps, torque 30)"
RUN_INPUT_FILE = "policy_input"  # a training run's record of the version its actors see
ACT_DIM = 8
_PROGRESS_EVERY = 2_000
# The version of the antmaze replica recipe, recorded in every replica built; a cached replica of another
# version is refused (lightning_offrl.data.sources). 1: Gymnasium's Ant-v5 body, 1000-step episodes whatever
# happened; 2: D4RL's ant physics and a walker trained on it under the data's action noise, an episode ends
# where the ant flips over; 3: D4RL's navigation as its collector ran it (its cell lookup and noisy
# waypoints), 1001-row episodes, starts and goals drawn by D4RL's rules (umaze-diverse: random starts to the
# evaluation goal's cell, ending there).
RECIPE_VERSION = 3
RECIPE_CHANGES = ("version 3 navigates as D4RL's collector did (its cell lookup, waypoints re-drawn with "
                  "noise at every step), records 1001-row episodes and draws starts and goals by D4RL's "
                  "rules (umaze-diverse: random starts, the evaluation goal's cell, episodes end there)")


# ------------------------------------------------------------------------------- policy inputs
def _yaw(qpos: np.ndarray) -> np.ndarray:
    """``(N,)`` the torso's heading angle from its quaternion ``w, x, y, z`` at ``qpos[:, 3:7]``."""
    w, x, y, z = qpos[:, 3], qpos[:, 4], qpos[:, 5], qpos[:, 6]
    return np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def _turn_into_heading(vectors: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """``(N, 2)`` world-frame (or D4RL-frame) vectors seen from a frame turned by ``yaw``."""
    cos, sin = np.cos(yaw), np.sin(yaw)
    dx, dy = vectors[:, 0], vectors[:, 1]
    return np.stack([cos * dx + sin * dy, -sin * dx + cos * dy], axis=1)


def heading_frame(qpos: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Rotates world-frame vectors into the ant's heading frame and rescales them to norm 10.

    Args:
        qpos: ``(N, >=7)`` ant ``qpos`` (torso quaternion ``w, x, y, z`` at ``3:7``).
        offset: ``(N, 2)`` goal minus position, in the world (or D4RL) frame.

    Returns:
        ``(N, 2)`` the direction to the goal in the frame turned by the torso's yaw, at norm
        :data:`GOAL_DIRECTION_NORM` (D4RL's rescaling; zero offsets stay zero).
    """
    return _goal_direction(offset, _yaw(qpos))


def _goal_direction(offset: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """:func:`heading_frame` for a known ``yaw``."""
    local = _turn_into_heading(offset, yaw)
    norm = np.linalg.norm(local, axis=1, keepdims=True)
    return np.where(norm > 1e-8, local * (GOAL_DIRECTION_NORM / np.maximum(norm, 1e-8)), 0.0)


def policy_observation(qpos: np.ndarray, qvel: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """The goal-reaching policy's input: ``qpos[2:15] (13) + qvel[:14] (14) + heading-frame goal (2)``.

    MuJoCo gives the torso's linear velocity (``qvel[0:3]``) in the world frame; its horizontal part is
    turned into the heading frame like the goal (:data:`POLICY_INPUT`), so that the speed towards the
    goal, which the training reward pays, is a product of two inputs given in one frame.

    Args:
        qpos: ``(N, >=15)``; qvel: ``(N, >=14)``; offset: ``(N, 2)`` goal minus position.

    Returns:
        ``(N, 29)`` float32.
    """
    yaw = _yaw(qpos)
    velocity = np.array(qvel[:, :ANT_QVEL], dtype=np.float64)
    velocity[:, :2] = _turn_into_heading(velocity[:, :2], yaw)
    features = np.concatenate([qpos[:, 2:ANT_QPOS], velocity, _goal_direction(offset, yaw)], axis=1)
    return features.astype(np.float32)


# ------------------------------------------------------------------------- goal-reaching tasks
class GoalReachingAntEnv(gym.Wrapper):
    """Gymnasium's ant in open space, sent towards goals (the skill D4RL's antmaze collector uses).

    The goal lives in MuJoCo's ``data.userdata``, part of the state that
    :func:`lightning_offrl.collect.sac_online.capture_env_state` saves, so a resumed SAC run continues
    its episode, goal included, bit for bit.

    Args:
        env: an unwrapped ``Ant-v5`` on D4RL's ant model whose model has ``nuserdata >= 2``.
        reach_test: False: training (a goal at ``GOAL_DISK_RADIUS * U(0, 1)``, replaced when reached;
            reward ``progress/s + 1 (healthy) - 0.5 |a|^2``); True: the reach test (one goal at
            ``U(REACH_MIN_DISTANCE, GOAL_DISK_RADIUS)``; reward 1 and the end of the episode on
            reaching it). Falling (Ant's unhealthy height, or a torso tilted past the horizontal) ends
            an episode in both.
        action_noise: standard deviation of Gaussian noise added to every action before it is
            applied (clipped to ``[-1, 1]``); training uses the data's ``ACTION_NOISE_STD``, so the
            policy learns to walk under the noise the collector adds. Drawn from the environment's
            own generator, so a resumed run continues bit for bit.
    """

    def __init__(self, env: gym.Env, reach_test: bool, action_noise: float = 0.0) -> None:
        super().__init__(env)
        self.reach_test = reach_test
        self.action_noise = float(action_noise)
        self._data: Any = env.unwrapped.data  # type: ignore[attr-defined]
        if self._data.userdata.size < 2:
            raise ConfigError("the goal-reaching ant needs a MuJoCo model with nuserdata >= 2")
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(POLICY_OBS_DIM,), dtype=np.float32)

    @property
    def goal(self) -> np.ndarray:
        """``(2,)`` world-frame goal."""
        return np.array(self._data.userdata[:2])

    def _draw_goal(self) -> None:
        rng: np.random.Generator = self.env.unwrapped.np_random
        angle = rng.uniform(0.0, 2.0 * math.pi)
        if self.reach_test:
            radius = rng.uniform(REACH_MIN_DISTANCE, GOAL_DISK_RADIUS)
        else:  # d4rl/locomotion/goal_reaching_env.py disk_goal_sampler
            radius = GOAL_DISK_RADIUS * rng.uniform()
        self._data.userdata[:2] = self._data.qpos[:2] + radius * np.array([math.cos(angle), math.sin(angle)])

    def _observation(self) -> np.ndarray:
        qpos, qvel = self._data.qpos[None], self._data.qvel[None]
        return policy_observation(qpos, qvel, (self.goal - qpos[0, :2])[None])[0]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self.env.reset(seed=seed)  # Ant-v5's reset noise is D4RL's: qpos + U(-0.1, 0.1), qvel + 0.1 N(0, 1)
        self._draw_goal()
        return self._observation(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        goal = self.goal
        distance_before = float(np.linalg.norm(goal - self._data.qpos[:2]))
        action = np.asarray(action, dtype=np.float64)
        applied = action
        if self.action_noise > 0.0:
            rng: np.random.Generator = self.env.unwrapped.np_random
            applied = np.clip(action + rng.normal(0.0, self.action_noise, size=action.shape), -1.0, 1.0)
        _, _, unhealthy, _, _ = self.env.step(applied)
        fell = bool(unhealthy) or bool(is_flipped(self._data.qpos))
        distance = float(np.linalg.norm(goal - self._data.qpos[:2]))
        reached = distance <= REACH_RADIUS
        if self.reach_test:
            return self._observation(), float(reached), bool(fell or reached), False, {"reached": reached}
        dt = float(self.env.unwrapped.dt)  # type: ignore[attr-defined]
        reward = (distance_before - distance) / dt + (0.0 if fell else HEALTHY_REWARD) \
            - CTRL_COST_WEIGHT * float(np.square(action).sum())
        if reached:
            self._draw_goal()
        return self._observation(), reward, bool(fell), False, {"reached": reached}


def make_goal_reaching_ant_env(spec: TaskSpec, *, time_limit: bool = True) -> gym.Env:
    """The ``env_factory`` of the ``antgoal`` and ``antgoal-reach`` tasks: D4RL's ant
    (:mod:`lightning_offrl.envs.d4rl_ant`) with two ``userdata`` slots for the goal."""
    with private_tempdir("lightning_offrl_antgoal_") as folder:
        ant = gym.make(spec.gym_id, xml_file=str(write_d4rl_ant_xml(folder, nuserdata=2)),
                       frame_skip=D4RL_ANT.frame_skip, disable_env_checker=True,
                       include_cfrc_ext_in_observation=False).unwrapped
    reach_test = spec.domain == REACH_TASK
    env: gym.Env = GoalReachingAntEnv(ant, reach_test=reach_test,
                                      action_noise=0.0 if reach_test else ACTION_NOISE_STD)
    if time_limit:
        env = gym.wrappers.TimeLimit(env, max_episode_steps=spec.max_episode_steps)
    return env


# Reference returns: antgoal's 1000 is the survival bonus of a whole episode, so its normalized score
# (a training curve only) passes 100 once the ant gains ground towards its goals without falling;
# antgoal-reach's 0 and 1 make its normalized score the reach success rate in percent.
register_task(TaskSpec(TRAIN_TASK, "Ant-v5", 0.0, HEALTHY_REWARD * TRAIN_EPISODE_STEPS, TRAIN_EPISODE_STEPS,
                       env_factory=make_goal_reaching_ant_env), overwrite=True)
register_task(TaskSpec(REACH_TASK, "Ant-v5", 0.0, 1.0, REACH_EPISODE_STEPS,
                       env_factory=make_goal_reaching_ant_env), overwrite=True)


# ------------------------------------------------------------------------ training and export
def goal_reaching_config(
    total_steps: int = 1_000_000, seed: int = 0, num_threads: int = 1, **overrides: Any,
) -> SACConfig:
    """The SAC run of the goal-reaching ant: rlkit's SAC as D4RL used it (2x256, batch 256, 3e-4).

    Args:
        total_steps: environment steps of the run.
        seed: seeds the run.
        num_threads: torch threads.
        **overrides: any other :class:`SACConfig` field (small networks for tests, ...).
    """
    from lightning_offrl.collect.sac_online import SACConfig

    settings: dict[str, Any] = {"eval_every": 20_000, "eval_episodes": 5, "actor_checkpoint_every": 20_000,
                                "state_every": 20_000}
    settings.update(overrides)
    return SACConfig(env=TRAIN_TASK, total_steps=total_steps, seed=seed, num_threads=num_threads, **settings)


def train_goal_reaching_ant(
    config: SACConfig, out_dir: str | Path, resume: bool = True, progress: bool = True,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Trains (or continues) the goal-reaching ant with online SAC on the ``antgoal`` task.

    Args:
        config: from :func:`goal_reaching_config`; its ``env`` must be ``antgoal``.
        out_dir: the run folder (``state.pt``, ``evals.json``, ``actors/``).
        resume: continue the run in ``out_dir`` if there is one.
        progress: show a progress bar.
        stop_after_steps: stop (state saved) after this many steps of this call.

    Returns:
        sac_online's :class:`TrainResult`.
    """
    from lightning_offrl.collect.sac_online import train

    if config.env != TRAIN_TASK:
        raise ConfigError(f"the goal-reaching ant trains on the {TRAIN_TASK!r} task, got env={config.env!r}")
    out = Path(out_dir)
    if resume and (out / "state.pt").exists():
        _check_run_inputs(out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / RUN_INPUT_FILE).write_text(f"{POLICY_INPUT}\n")
    return train(config, out_dir, resume=resume, progress=progress, stop_after_steps=stop_after_steps)


def _check_run_inputs(run: Path) -> None:
    """Refuses a run whose actors were trained on another version of the policy's inputs."""
    marker = run / RUN_INPUT_FILE
    version = int(marker.read_text()) if marker.is_file() else 1
    if version != POLICY_INPUT:
        raise ConfigError(
            f"{run} was trained on version {version} of the goal-reaching ant's inputs; this lightning_offrl "
            f"feeds version {POLICY_INPUT} ({POLICY_INPUT_MEANING}), so the run can be "
            f"neither continued nor exported. Start a new run in another folder: `{TRAIN_COMMAND}`."
        )


def numpy_policy(actor: TanhGaussianActor, noise_std: float, seed: int) -> Policy:
    """The actor as an ``antgoal-reach`` policy: its mode (``noise_std < 0``) or, as while collecting,
    a sampled action plus ``N(0, noise_std^2)``, clipped to ``[-1, 1]``."""
    import torch

    space = gym.spaces.Box(-1.0, 1.0, shape=(ACT_DIM,))
    if noise_std < 0:
        return deterministic_policy(actor, space)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            action = actor.sample(torch.as_tensor(obs, dtype=torch.float32), generator)[0].numpy()
        return np.clip(action + rng.normal(0.0, noise_std, size=action.shape), -1.0, 1.0)

    return policy


def measure_reach_success(
    actor: TanhGaussianActor, episodes: int, seed: int, noise_std: float = -1.0,
) -> float:
    """Fraction of ``antgoal-reach`` episodes in which the ant gets within 0.5 of its goal.

    Args:
        actor: the goal-reaching actor (29 inputs, 8 actions).
        episodes: number of episodes (episode ``i`` is reset with seed ``seed + i``).
        seed: evaluation seed.
        noise_std: negative: the actor's mode; otherwise sampled actions plus this Gaussian noise
            (``ACTION_NOISE_STD`` is how the replicas act).

    Returns:
        The success rate in ``[0, 1]``.
    """
    returns = evaluate_policy(numpy_policy(actor, noise_std, seed), REACH_TASK, episodes, seed=seed).returns
    return float(returns.mean())


def goal_reaching_policy_file(directory: Traversable | None = None) -> Traversable:
    """Where the shipped goal-reaching policy lives: ``<policy dir>/antgoal/goal_reaching.pt``."""
    return (directory or policy_dir()).joinpath(POLICY_SUBDIR, POLICY_FILE)


def save_goal_reaching_policy(
    actor: TanhGaussianActor, hidden_dims: Sequence[int], meta: dict[str, Any], path: str | Path,
) -> Path:
    """Writes the policy file atomically: float32 weights, sizes and ``meta`` (plain values).

    Args:
        actor: a goal-reaching actor (29 inputs, 8 actions).
        hidden_dims: its hidden widths.
        meta: what is known about it (training steps, reach success, ...).
        path: the file to write.

    Returns:
        ``path``.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = actor_checkpoint(actor, {**meta, "obs_dim": POLICY_OBS_DIM, "act_dim": ACT_DIM,
                                          "policy_input": POLICY_INPUT,
                                          "hidden_dims": [int(width) for width in hidden_dims]})
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)
    return path


def _shipped_policy_file(spec: DatasetSpec | None, directory: Traversable | None = None) -> Traversable:
    """The goal-reaching policy's file; :class:`DatasetError` with the commands that make it if missing."""
    location = goal_reaching_policy_file(directory)
    if not location.is_file():
        raise _missing_policy_error(location, spec)
    return location


def _missing_policy_error(location: Traversable, spec: DatasetSpec | None) -> DatasetError:
    what = f"{spec.name}: the antmaze replica" if spec is not None else "Building an antmaze replica"
    message = (
        f"{what} needs the goal-reaching ant policy {location}, which does not exist yet. Train it with "
        f"`{TRAIN_COMMAND}` (online SAC, resumable; many hours on a CPU) and ship it with `{EXPORT_COMMAND}`"
    )
    if spec is not None and spec.d4rl_url:
        message += (f", or use D4RL's file instead: put {spec.d4rl_filename} (from {spec.d4rl_url}) in "
                    "$D4RL_DATASET_DIR or pass its path as data.path")
    if spec is not None and spec.minari_ids:
        message += f", or download the Minari dataset {spec.minari_ids[0]}"
    return DatasetError(message + ".")


def load_goal_reaching_policy(
    directory: Traversable | None = None, spec: DatasetSpec | None = None,
) -> tuple[TanhGaussianActor, dict[str, Any]]:
    """The shipped goal-reaching actor (eval mode, frozen) and its metadata.

    Args:
        directory: the policy folder (default :func:`lightning_offrl.collect.policies.policy_dir`).
        spec: the dataset being built, to name it and its alternatives in the error message.

    Raises:
        DatasetError: the file is missing; the message gives the commands that make it.
    """
    import torch

    location = _shipped_policy_file(spec, directory)
    with location.open("rb") as handle:
        checkpoint = torch.load(handle, weights_only=True, map_location="cpu")
    if checkpoint["obs_dim"] != POLICY_OBS_DIM or checkpoint["act_dim"] != ACT_DIM:
        raise DatasetError(
            f"{location} maps {checkpoint['obs_dim']} inputs to {checkpoint['act_dim']} actions; the "
            f"goal-reaching ant needs {POLICY_OBS_DIM} -> {ACT_DIM}. Export it again with `{EXPORT_COMMAND}`."
        )
    if checkpoint.get("policy_input", 1) != POLICY_INPUT:
        raise DatasetError(
            f"{location} was trained on version {checkpoint.get('policy_input', 1)} of the goal-reaching "
            f"ant's inputs; this lightning_offrl feeds version {POLICY_INPUT} ({POLICY_INPUT_MEANING}), so "
            f"the policy would not walk where it is sent. Train a new run with "
            f"`{TRAIN_COMMAND}` (in a new --out folder) and ship it with `{EXPORT_COMMAND}`."
        )
    actor = actor_from_state(checkpoint["state_dict"], POLICY_OBS_DIM, ACT_DIM, checkpoint["hidden_dims"])
    meta = {key: value for key, value in checkpoint.items() if key != "state_dict"}
    return actor, meta


def export_goal_reaching_policy(
    run_dir: str | Path, out_dir: str | Path | None = None, episodes: int = 100, candidates: int = 3,
    seed: int = 1_000_003, step: int | None = None,
) -> dict[str, Any]:
    """Ships the best actor of a goal-reaching SAC run as ``<out_dir>/antgoal/goal_reaching.pt``.

    The ``candidates`` checkpoints with the highest training evaluation are measured again with
    :func:`measure_reach_success` (their mode, ``episodes`` episodes); the best is saved with its reach
    success both as its mode and as the replicas use it (sampled + ``N(0, 0.2^2)``).

    Args:
        run_dir: the SAC run folder.
        out_dir: the policy folder (default: ``$LIGHTNING_OFFRL_POLICY_DIR``, else the package's
            ``assets/policies``).
        episodes: reach-test episodes per measurement.
        candidates: how many checkpoints to measure.
        seed: seed of the reach-test episodes.
        step: export the checkpoint of this training step instead of choosing among the best
            ``candidates`` (a choice made by another measurement, e.g. the collector's success in the
            maze; its reach success is still measured and recorded).

    Returns:
        The metadata written with the policy.

    Raises:
        DatasetError: the run has no evaluated actor checkpoints yet, or none at ``step``.
        ConfigError: the run was trained on another version of the policy's inputs.
    """
    import torch

    run = Path(run_dir)
    evals = [r for r in load_evals(run) if (run / ACTORS_DIR / f"actor_{r['step']:08d}.pt").is_file()]
    if not evals:
        raise DatasetError(
            f"{run} has no evaluated actor checkpoints yet; train it with `{TRAIN_COMMAND}` first"
        )
    _check_run_inputs(run)
    config = json.loads((run / "config.json").read_text())
    if step is None:
        chosen = sorted(evals, key=lambda r: r["eval_return"], reverse=True)[:candidates]
    else:
        chosen = [r for r in evals if r["step"] == step]
        if not chosen:
            raise DatasetError(f"{run} has no evaluated actor checkpoint at step {step}; it has steps "
                               f"{', '.join(str(r['step']) for r in evals)}")
    best: tuple[float, dict[str, Any], TanhGaussianActor] | None = None
    for record in chosen:
        checkpoint = torch.load(run / ACTORS_DIR / f"actor_{record['step']:08d}.pt", weights_only=True,
                                map_location="cpu")
        actor = actor_from_state(checkpoint["state_dict"], checkpoint["obs_dim"], checkpoint["act_dim"],
                                 checkpoint["hidden_dims"])
        success = measure_reach_success(actor, episodes, seed)
        log.info("antgoal checkpoint at step %d: reach success %.3f", record["step"], success)
        if best is None or success > best[0]:
            best = (success, {**checkpoint, "step": int(record["step"])}, actor)
    assert best is not None
    success, checkpoint, actor = best
    meta = {
        "train_steps": checkpoint["step"],
        "train_wall_time_s": float(checkpoint.get("wall_time_s", math.nan)),
        "seed": int(config["seed"]),
        "reach_success": round(success, 4),
        "reach_success_with_noise": round(measure_reach_success(actor, episodes, seed, ACTION_NOISE_STD), 4),
        "reach_episodes": episodes,
        "reach_test": f"one goal at distance U({REACH_MIN_DISTANCE:g}, {GOAL_DISK_RADIUS:g}), "
                      f"{REACH_EPISODE_STEPS} steps to get within {REACH_RADIUS}",
        "observation": "qpos[2:15] + qvel[:14] (torso x-y velocity in the heading frame) + goal direction "
                       "in the heading frame at norm 10",
        "physics": f"D4RL's antmaze ant: {D4RL_ANT.dt:g} s per step, torque {D4RL_ANT.torque_limit:g}, D4RL's "
                   "contacts; trained under N(0, 0.2^2) action noise, a flip ends a training episode",
    }
    target = Path(out_dir) if out_dir is not None else Path(str(policy_dir()))
    save_goal_reaching_policy(actor, checkpoint["hidden_dims"], meta, target / POLICY_SUBDIR / POLICY_FILE)
    return meta


# ----------------------------------------------------------------------------------- navigation
NAVIGATION_STYLES = ("d4rl", "centres")


class AntNavigator:
    """D4RL's ``create_navigation_policy``: the next waypoint on a shortest path to the goal.

    Two styles:

    * ``d4rl`` (the replicas' recipe): exactly what D4RL's collector did. The robot's and the goal's
      cells come from D4RL's ``_xy_to_rowcol``, ``int(1 + max(y, 1e-4) / size)`` per coordinate (the
      floor of the position in cells, which counts a robot as still in a cell until it has crossed
      the next cell's centre line, and may put it in a wall cell); the next cell is the free neighbour
      of that cell nearest the goal (D4RL's breadth-first ``_get_best_next_rowcol``); the waypoint is
      that cell's centre plus ``U(0, size/4)`` per coordinate, drawn again at every step
      (``_rowcol_to_xy(..., add_random_noise=True)``), or the goal itself once the next cell is the
      goal's. The noise's mean of ``+size/8`` and the late cell change steer the ant through each
      cell's far corner: along a path that passes the evaluation goal's cell (whose goal sits at the
      centre ``+ U(0, 1.5)``), the ant passes the evaluation goal itself.
    * ``centres``: the robot's cell is the one it is in (nearest centre) and waypoints sit at cell
      centres; smoother paths that cut corners, kept for comparison.

    Args:
        task: the antmaze task.
        planner: grid planner of ``task.maze``.
        style: ``d4rl`` or ``centres``.
        rng: draws the ``d4rl`` waypoint noise (default: a generator seeded with 0).
    """

    def __init__(self, task: MazeTask, planner: GridPlanner, style: str = "d4rl",
                 rng: np.random.Generator | None = None) -> None:
        if style not in NAVIGATION_STYLES:
            raise ConfigError(f"unknown navigation style {style!r}: use one of {', '.join(NAVIGATION_STYLES)}")
        self.task = task
        self.planner = planner
        self.style = style
        self.rng = rng if rng is not None else np.random.default_rng(0)

    def d4rl_cell(self, xy: np.ndarray) -> Cell:
        """D4RL's ``_xy_to_rowcol``: ``(int(1 + max(y, 1e-4) / size), int(1 + max(x, 1e-4) / size))`` for
        a start cell at ``(1, 1)``, written for any start cell (the map's origin)."""
        geometry = self.task.geometry
        origin = np.asarray(geometry.origin, dtype=np.float64)  # centre of cell (0, 0), here (-size, -size)
        x, y = max(float(xy[0]), 1e-4), max(float(xy[1]), 1e-4)
        return int((y - origin[1]) / geometry.cell_size), int((x - origin[0]) / geometry.cell_size)

    def _d4rl_next_cell(self, cell: Cell, goal: Cell) -> Cell:
        if cell == goal:
            return goal
        distances = self.planner.distances(goal)
        row, col = cell
        # D4RL's breadth-first search from the goal returns the free neighbour of the robot's cell (which
        # may be a wall cell) nearest the goal
        neighbours = [(row + d_row, col + d_col) for d_row, d_col in ((0, -1), (0, 1), (1, 0), (-1, 0))]
        reachable = [c for c in neighbours if c in distances]
        if not reachable:  # deep inside a wall block (D4RL raised here): fall back to the nearest free cell
            return self.planner.next_cell(self.task.free_cell_of(self.task.geometry.cell_center(cell)), goal)
        return min(reachable, key=lambda c: distances[c])

    def waypoint(self, position: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """``(2,)``: the waypoint towards ``goal`` for a robot at ``position`` (see the styles above)."""
        geometry = self.task.geometry
        if self.style == "centres":
            goal_cell = self.task.free_cell_of(goal)
            next_cell = self.planner.next_cell(self.task.free_cell_of(position), goal_cell)
            if next_cell == goal_cell:
                return np.asarray(goal, dtype=np.float64)
            return geometry.cell_center(next_cell)
        goal_cell = self.d4rl_cell(goal)
        if not self.task.maze.is_free(goal_cell):
            goal_cell = self.task.free_cell_of(goal)
        next_cell = self._d4rl_next_cell(self.d4rl_cell(position), goal_cell)
        if next_cell == goal_cell:
            return np.asarray(goal, dtype=np.float64)
        return geometry.cell_center(next_cell) + self.rng.uniform(0.0, 0.25 * geometry.cell_size, size=2)


LEVELS = ("fixed", "diverse", "play")


def diverse_commands_goal_cells(task: MazeTask) -> bool:
    """Whether ``diverse`` episodes of ``task``'s maze command the map's ``G`` cells (and end there).

    D4RL's ``goal_sampler`` draws from the generation map's ``G`` cells when it has any, from every free
    cell otherwise. Its ``U_MAZE`` has one, the evaluation goal's cell, and D4RL's
    ``antmaze-umaze-diverse`` file shows it: behaviour cloning on it reaches the evaluation goal (45.6%
    in the IQL paper, where random goals would teach nothing of the sort), and its episodes hold a
    single rewarded row each, where every other antmaze file holds runs of them (D4RL issue #199: its
    episodes ended on reaching the goal). The medium and large diverse files command random goals
    (behaviour cloning scores 0-1% there).
    """
    return task.maze.name == "umaze"


def draw_start_and_goal(
    task: MazeTask, level: str, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """An episode's start (before reset noise) and commanded goal, ``(2,)`` each, for ``level``.

    Starts away from ``R`` are D4RL's ``_get_reset_location``: a free cell (never a ``G`` cell of the
    generation map, which D4RL's reset treats as a wall) with ``U(0, size/4)`` per coordinate; goals are
    D4RL's ``goal_sampler``: the map's ``G`` cells if it designates any, else any free cell (the
    start's own included), with D4RL's goal noise.
    """
    geometry = task.geometry
    quarter = 0.25 * geometry.cell_size
    goal_cells = task.maze.cells("G")
    free = task.maze.free_cells()

    def pick(cells: Sequence[Cell]) -> Cell:
        return cells[int(rng.integers(len(cells)))]

    if level == "fixed":
        return geometry.cell_center(task.maze.cells("R")[0]), task.goal_in_cell(goal_cells[0], rng)
    if level == "play" or (level == "diverse" and diverse_commands_goal_cells(task)):
        start_cell = pick([cell for cell in free if cell not in goal_cells])
        goal_cell = pick(goal_cells)
    elif level == "diverse":
        start_cell = pick(free)
        goal_cell = pick(free)
    else:
        raise ConfigError(f"unknown antmaze level {level!r}: use one of {', '.join(LEVELS)}")
    start = geometry.cell_center(start_cell) + rng.uniform(0.0, quarter, size=2)
    return start, task.goal_in_cell(goal_cell, rng)


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def collect_antmaze(
    env: MazeTaskEnv, task: MazeTask, actor: TanhGaussianActor, level: str, seed: int, num_steps: int,
    episode_steps: int = EPISODE_STEPS, progress: bool = False, description: str = "",
    navigation: str = "d4rl", end_at_goal: bool | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Runs D4RL's antmaze collection loop.

    Args:
        env: the antmaze environment without time limit or goal termination.
        task: its task.
        actor: the goal-reaching actor.
        level: ``fixed``, ``diverse`` or ``play`` (how starts and goals are drawn).
        seed: seeds the first reset, the draws (``numpy``) and the policy's sampling (``torch``).
        num_steps: rows to collect.
        episode_steps: episode length (D4RL: 1001 rows, see ``EPISODE_STEPS``).
        progress: show a progress bar.
        description: the progress bar's label.
        navigation: the waypoints' style (:class:`AntNavigator`; the recipe: ``d4rl``).
        end_at_goal: end an episode at its first rewarded row (its next observation within 0.5 of the
            evaluation goal), as D4RL's umaze-diverse file does; default: for ``diverse`` episodes that
            command the map's ``G`` cells (:func:`diverse_commands_goal_cells`).

    Returns:
        ``(arrays, stats)``: D4RL-layout arrays of ``num_steps`` rows, and ``episodes`` (finished),
        ``reached_commanded`` (of those, episodes that got within 0.5 of their commanded goal),
        ``reached_eval_goal`` (episodes with a rewarded row), ``flipped_episodes`` (episodes cut short
        by a flip), ``flipped_rows`` (rows whose observation or next observation shows a flipped ant) and
        ``first_reward_steps`` (per rewarded episode, the step of its first rewarded row).

    An episode ends after ``episode_steps`` steps, or on the row where the ant flips over
    (:func:`lightning_offrl.envs.d4rl_ant.is_flipped`); both rows are marked ``timeouts``. With
    ``end_at_goal`` it also ends at its first rewarded row (a ``terminals`` row, not a timeout).
    """
    import torch

    if level not in LEVELS:
        raise ConfigError(f"unknown antmaze level {level!r}: use one of {', '.join(LEVELS)}")
    if end_at_goal is None:
        end_at_goal = level == "diverse" and diverse_commands_goal_cells(task)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    navigator = AntNavigator(task, GridPlanner(task.maze.free), navigation, np.random.default_rng([seed, 1]))
    eval_goal = task.mean_eval_goal()
    obs_dim = int(env.observation_space.shape[0])
    nq, nv = env.state_d4rl()[0].size, env.state_d4rl()[1].size
    observations = np.empty((num_steps, obs_dim), np.float32)
    next_observations = np.empty((num_steps, obs_dim), np.float32)
    actions = np.empty((num_steps, ACT_DIM), np.float32)
    timeouts = np.zeros(num_steps, bool)
    goal_ends = np.zeros(num_steps, bool)
    goals = np.empty((num_steps, 2), np.float32)
    qpos_rows = np.empty((num_steps, nq), np.float32)
    qvel_rows = np.empty((num_steps, nv), np.float32)
    noise = rng.normal(0.0, ACTION_NOISE_STD, size=(num_steps, ACT_DIM))

    def new_episode(reset_seed: int | None) -> tuple[np.ndarray, np.ndarray]:
        start, goal = draw_start_and_goal(task, level, rng)
        obs, _ = env.reset(seed=reset_seed, options={"start": start, "goal": goal})
        return obs, goal

    obs, goal = new_episode(seed)
    episode_length, episodes, reached_commanded, reached_eval, flipped = 0, 0, 0, 0, 0
    episode_reached, episode_rewarded = False, False
    first_reward_steps: list[int] = []
    with StepProgress(description, num_steps, enabled=progress, every=_PROGRESS_EVERY) as bar:
        with _torch_threads(1), torch.inference_mode():
            for step in range(num_steps):
                qpos, qvel = env.state_d4rl()
                waypoint = navigator.waypoint(obs[:2], goal)
                features = policy_observation(qpos[None], qvel[None], (waypoint - obs[:2])[None])
                # A tanh-Gaussian draw as rlkit's exploration policy makes it (actor.sample without the
                # log-density nobody needs here).
                mean, log_std = actor(torch.from_numpy(features))
                pre_tanh = mean + log_std.exp() * torch.randn(mean.shape, generator=generator)
                action = np.clip(torch.tanh(pre_tanh)[0].numpy() + noise[step], -1.0, 1.0)
                observations[step], actions[step], goals[step] = obs, action, goal
                qpos_rows[step], qvel_rows[step] = qpos, qvel
                obs, _, _, _, _ = env.step(action)
                next_observations[step] = obs
                episode_length += 1
                episode_reached |= bool(goal_reached(obs, goal))
                if not episode_rewarded and goal_reached(obs, eval_goal):
                    episode_rewarded = True
                    first_reward_steps.append(episode_length)
                    goal_ends[step] = end_at_goal
                fell = bool(is_flipped(obs))
                if episode_length >= episode_steps or fell or goal_ends[step]:
                    # A flipped ant cannot get up: its episode ends on the row that shows the fall (a
                    # timeout, not a terminal: the task itself never ends), instead of filling the rest of
                    # the episode with a wiggling, fallen ant.
                    timeouts[step] = not goal_ends[step]
                    episodes += 1
                    flipped += int(fell)
                    reached_commanded += int(episode_reached)
                    reached_eval += int(episode_rewarded)
                    obs, goal = new_episode(None)
                    episode_length, episode_reached, episode_rewarded = 0, False, False
                bar.update(step + 1)
    timeouts[-1] = not goal_ends[-1]  # the budget cuts the last episode
    rewards = goal_reached(next_observations, eval_goal).astype(np.float32)
    arrays = {
        "observations": observations,
        "actions": actions,
        "rewards": rewards,
        "next_observations": next_observations,
        # D4RL's v2 antmaze files mark the rewarded rows as terminals (relabel_antmaze_rewards.py).
        "terminals": rewards > 0.0,
        "timeouts": timeouts,
        "infos/goal": goals,
        "infos/qpos": qpos_rows,
        "infos/qvel": qvel_rows,
    }
    stats = {"episodes": episodes, "reached_commanded": reached_commanded, "reached_eval_goal": reached_eval,
             "flipped_episodes": flipped, "flipped_rows": int((is_flipped(observations) | is_flipped(next_observations)).sum()),
             "first_reward_steps": first_reward_steps}
    return arrays, stats


def replica_statistics(arrays: dict[str, np.ndarray], time_limit: int) -> dict[str, Any]:
    """What an antmaze dataset's episodes do: how often the ant falls, reaches the goal, and when.

    Episodes are the rows up to each ``timeouts`` row or break in the observations (antmaze ``terminals``
    mark rewarded rows, inside an episode or at its end). A row "shows a fall" when its observation or next observation has a flipped torso
    (:func:`lightning_offrl.envs.d4rl_ant.is_flipped`).

    Args:
        arrays: D4RL-layout antmaze arrays (``observations``, ``next_observations``, ``rewards``,
            ``timeouts``), a replica's or D4RL's own.
        time_limit: the evaluation's step limit (umaze 700, medium and large 1000): an episode "reaches
            the goal in time" when its first rewarded row comes within it.

    Returns:
        ``rows``, ``episodes``, ``reward_fraction`` (rewarded rows / rows), ``flipped_episodes``,
        ``flipped_rows``, ``rewarded_episodes``, ``rewarded_in_time`` (episodes), ``median_first_reward_step``
        (over rewarded episodes; ``nan`` if none) and ``median_episode_length``.
    """
    rewards = np.asarray(arrays["rewards"]).reshape(-1) > 0.0
    rows = rewards.size
    # An episode ends at a timeout, or where the next row does not continue from this row's next
    # observation (an episode that ended at its goal, as in umaze-diverse).
    observations, next_observations = np.asarray(arrays["observations"]), np.asarray(arrays["next_observations"])
    breaks = np.append(np.any(next_observations[:-1] != observations[1:], axis=1), False)
    ends = np.flatnonzero(np.asarray(arrays["timeouts"]).reshape(-1) | breaks)
    if ends.size == 0 or ends[-1] != rows - 1:
        ends = np.append(ends, rows - 1)  # a trailing partial episode counts as one
    starts = np.concatenate([[0], ends[:-1] + 1])
    fallen = is_flipped(arrays["observations"]) | is_flipped(arrays["next_observations"])
    first_reward: list[int] = []
    flipped_episodes = 0
    for start, end in zip(starts, ends):
        flipped_episodes += int(fallen[start:end + 1].any())
        hits = np.flatnonzero(rewards[start:end + 1])
        if hits.size:
            first_reward.append(int(hits[0]) + 1)
    return {
        "rows": int(rows),
        "episodes": int(ends.size),
        "reward_fraction": float(rewards.mean()),
        "flipped_episodes": flipped_episodes,
        "flipped_rows": int(fallen.sum()),
        "rewarded_episodes": len(first_reward),
        "rewarded_in_time": int(sum(step <= time_limit for step in first_reward)),
        "median_first_reward_step": float(np.median(first_reward)) if first_reward else math.nan,
        "median_episode_length": float(np.median(ends - starts + 1)),
    }


def build_antmaze(
    spec: DatasetSpec, seed: int, num_steps: int, progress: bool = True,
) -> dict[str, np.ndarray]:
    """Builds an antmaze replica (levels ``fixed``, ``diverse``, ``play``) with D4RL's recipe.

    Args:
        spec: an ``antmaze-*-v2`` dataset.
        seed: seeds everything (same seed, same arrays on the same kind of CPU).
        num_steps: rows (D4RL: 1M).
        progress: show a progress bar.

    Returns:
        D4RL-layout arrays, ``num_steps`` rows: ``observations``/``next_observations (N, 29)``,
        ``actions (N, 8)``, ``rewards (N,)``, ``terminals``/``timeouts (N,)``, ``infos/goal (N, 2)``,
        ``infos/qpos (N, 15)``, ``infos/qvel (N, 14)``.

    Raises:
        DatasetError: the goal-reaching policy is not shipped (the message says how to make it).
    """
    if num_steps <= 0:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    actor, meta = load_goal_reaching_policy(spec=spec)
    task = maze_task(spec.name)
    env = make_env(spec.name, terminate_at_goal=False, time_limit=False)
    try:
        arrays, stats = collect_antmaze(
            env, task, actor, spec.level, seed, num_steps, EPISODE_STEPS, progress,
            f"{spec.name} ({spec.level}, seed {seed})",
        )
    finally:
        env.close()
    log.info("%s: %d episodes, %d reached their commanded goal, %d reached the evaluation goal, %d ended "
             "by a flip (policy trained %s steps)", spec.name, stats["episodes"], stats["reached_commanded"],
             stats["reached_eval_goal"], stats["flipped_episodes"], meta.get("train_steps", "?"))
    return arrays


def _antmaze_inputs(spec: DatasetSpec) -> list[Traversable]:
    """What the antmaze recipe reads: the shipped goal-reaching policy (the registry's ``inputs``)."""
    return [_shipped_policy_file(spec)]


# Run as ``python -m lightning_offrl.collect.antmaze``, this file executes as ``__main__`` and the command
# line then imports it under its own name (bottom of the file): only that copy registers the builders,
# once, as any other import does.
if __name__ != "__main__":
    for _level in LEVELS:
        register_replica_builder(_level, build_antmaze, inputs=_antmaze_inputs, version=RECIPE_VERSION,
                                 version_note=RECIPE_CHANGES)


# ------------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> None:
    """``python -m lightning_offrl.collect.antmaze {train,export,info}``."""
    import torch

    from lightning_offrl.collect.sac_online import EXIT_INTERRUPTED

    parser = argparse.ArgumentParser(prog="python -m lightning_offrl.collect.antmaze",
                                     description="The goal-reaching ant behind the antmaze replicas.")
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="online SAC on the antgoal task (resumable)")
    train_parser.add_argument("--out", default=DEFAULT_RUN_DIR, help="run folder")
    train_parser.add_argument("--steps", type=int, default=1_000_000, help="total environment steps")
    train_parser.add_argument("--seed", type=int, default=0)
    train_parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    train_parser.add_argument("--resume", action="store_true", help="continue the run in --out, if any")
    train_parser.add_argument("--no-progress", action="store_true")
    export_parser = commands.add_parser("export", help="measure the best checkpoints and ship the best one")
    export_parser.add_argument("--run", default=DEFAULT_RUN_DIR, help="the SAC run folder")
    export_parser.add_argument("--out", default=None,
                               help="policy folder (default: $LIGHTNING_OFFRL_POLICY_DIR or assets/policies)")
    export_parser.add_argument("--episodes", type=int, default=100, help="reach-test episodes per checkpoint")
    export_parser.add_argument("--candidates", type=int, default=3, help="checkpoints to measure")
    export_parser.add_argument("--step", type=int, default=None,
                               help="export this training step's checkpoint instead of choosing among candidates")
    commands.add_parser("info", help="the shipped policy's metadata")
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            config = goal_reaching_config(args.steps, args.seed, args.threads)
            result = train_goal_reaching_ant(config, args.out, resume=args.resume,
                                             progress=not args.no_progress)
            print(f"{'finished' if result.finished else 'stopped (continue with --resume)'}: "
                  f"{result.env_steps:,} steps, {result.wall_time_s / 3600:.2f} h, last eval return "
                  f"{result.last_eval_return:.1f}", flush=True)
            if result.interrupted:
                sys.exit(EXIT_INTERRUPTED)
            return
        torch.set_num_threads(1)
        if args.command == "export":
            meta = export_goal_reaching_policy(args.run, args.out, args.episodes, args.candidates, step=args.step)
            print(json.dumps(meta, indent=2))
            return
        _, meta = load_goal_reaching_policy()
        print(json.dumps(meta, indent=2, default=str))
    except OffRLError as error:
        raise SystemExit(str(error)) from None


if __name__ == "__main__":
    from lightning_offrl.collect import antmaze as _registered

    _registered.main()
