"""The ``planner`` level: D4RL's maze2d recipe, a PD controller following Q-iteration waypoints.

D4RL's ``scripts/generation/generate_maze2d_datasets.py`` drives the point mass with
``pointmaze/waypoint_controller.py`` through ``num_samples`` steps of **one continuous trajectory**:

* a navigation target is drawn uniformly from the free cells (D4RL's integer cell points) plus
  ``U(-0.1, 0.1)`` per coordinate; the grid planner (:mod:`lightning_offrl.collect.maze_planner`) turns
  it into waypoints (the path's cells, each moved by ``-U(0, 0.2)``, then the target);
* the PD law ``a = 10 (waypoint - x) - 1 * v`` (p-gain 10, d-gain -1), clipped to ``[-1, 1]``, moves to
  the next waypoint once within 0.1 of the current one;
* the action gets Gaussian noise ``N(0, 0.5^2)`` and is clipped again;
* when the target is reached (within 0.1) or after the task's episode length (umaze 300, medium 600,
  large 800 steps) a new target is drawn and the point carries on from where it is: it is never reset.

Rows follow D4RL's files: ``terminals`` are all false (nothing ends the trajectory), ``timeouts``
mark the rows where a navigation target was reached or given up (D4RL's repurposed field: it splits the
trajectory into goal-directed pieces), ``infos/goal`` holds the navigation target and ``rewards`` are
the sparse evaluation reward, 1 within 0.5 of the task's fixed goal. Two deliberate differences from
D4RL's files: the reward is that of the row's *next* observation, as the environment pays it (D4RL's
relabelling used the row's own observation, one step early; D4RL issue #194), and an observation is
always the true state (D4RL's loop kept the previous observation on the row after a target change).
``infos/qpos``/``infos/qvel`` hold the state the action was taken in, x-y in D4RL's frame.

Determinism: the environment's first reset is seeded with ``seed`` and every other draw (targets,
waypoint jitter, action noise) comes from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lightning_offrl.collect.maze_planner import GridPlanner, plan_waypoints
from lightning_offrl.collect.progress import StepProgress
from lightning_offrl.data.registry import DatasetSpec, register_replica_builder
from lightning_offrl.envs.mazes import MazeTask, MazeTaskEnv, goal_reached, maze_task
from lightning_offrl.envs.tasks import make_env

# D4RL's maze2d recipe (waypoint_controller.py and generate_maze2d_datasets.py).
P_GAIN = 10.0
D_GAIN = -1.0
SOLVE_THRESHOLD = 0.1
WAYPOINT_JITTER = 0.2
TARGET_NOISE = 0.1
ACTION_NOISE_STD = 0.5
# Progress-bar refresh interval in rows.
_PROGRESS_EVERY = 5_000


class WaypointController:
    """D4RL's maze2d PD controller: proportional on the next waypoint, damping on the velocity.

    Args:
        task: the maze2d task (map and geometry).
        planner: grid planner of ``task.maze``.
        p_gain: gain on ``waypoint - position``.
        d_gain: gain on the velocity (negative: damping).
        solve_threshold: distance at which a waypoint, and finally the target, counts as reached.
        waypoint_jitter: intermediate waypoints move by ``-U(0, jitter)`` per coordinate.
    """

    def __init__(
        self, task: MazeTask, planner: GridPlanner, p_gain: float = P_GAIN, d_gain: float = D_GAIN,
        solve_threshold: float = SOLVE_THRESHOLD, waypoint_jitter: float = WAYPOINT_JITTER,
    ) -> None:
        self.task = task
        self.planner = planner
        self.p_gain = p_gain
        self.d_gain = d_gain
        self.solve_threshold = solve_threshold
        self.waypoint_jitter = waypoint_jitter
        self.target = np.zeros(2)
        self.waypoints: list[np.ndarray] = []
        self.waypoint_index = 0

    def set_target(self, position: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> None:
        """Plans waypoints from ``position`` ``(2,)`` to ``target`` ``(2,)``."""
        self.target = np.asarray(target, dtype=np.float64).reshape(2).copy()
        self.waypoints = plan_waypoints(
            self.task, self.planner, position, self.target, rng, self.waypoint_jitter
        )
        self.waypoint_index = 0

    def action(self, position: np.ndarray, velocity: np.ndarray) -> tuple[np.ndarray, bool]:
        """The PD action towards the current waypoint.

        Args:
            position: ``(2,)`` x-y.
            velocity: ``(2,)`` x-y velocity.

        Returns:
            ``(action (2,) in [-1, 1], solved)``; ``solved`` is True once within ``solve_threshold``
            of the target (the action then holds the point on the target).
        """
        solved = bool(np.linalg.norm(position - self.target) < self.solve_threshold)
        waypoint = self.target if solved else self.waypoints[self.waypoint_index]
        action = self.p_gain * (waypoint - position) + self.d_gain * velocity
        last = len(self.waypoints) - 1
        at_waypoint = np.linalg.norm(waypoint - position) < self.solve_threshold
        if not solved and self.waypoint_index < last and at_waypoint:
            self.waypoint_index += 1
        return np.clip(action, -1.0, 1.0), solved


def draw_target(task: MazeTask, rng: np.random.Generator) -> np.ndarray:
    """D4RL's ``set_target``: a free cell's point plus ``U(-0.1, 0.1)`` per coordinate. ``(2,)``."""
    cells = task.maze.free_cells()
    cell = cells[int(rng.integers(len(cells)))]
    return task.geometry.cell_anchor(cell) + rng.uniform(-TARGET_NOISE, TARGET_NOISE, size=2)


def collect_maze2d(
    env: MazeTaskEnv, task: MazeTask, seed: int, num_steps: int, segment_steps: int,
    progress: bool = False, description: str = "",
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Runs D4RL's maze2d collection loop on ``env`` (no time limit, no goal termination).

    Args:
        env: the maze2d environment, not reset yet.
        task: its task.
        seed: seeds the first reset and every random draw.
        num_steps: rows to collect.
        segment_steps: steps after which an unreached target is replaced (D4RL: the episode length).
        progress: show a progress bar.
        description: the progress bar's label.

    Returns:
        ``(arrays, stats)``: D4RL-layout arrays of ``num_steps`` rows and ``targets`` (number of
        navigation targets finished), ``targets_reached`` (of those, reached within
        ``segment_steps``).
    """
    rng = np.random.default_rng(seed)
    controller = WaypointController(task, GridPlanner(task.maze.free))
    eval_goal = task.mean_eval_goal()
    obs_dim = int(env.observation_space.shape[0])
    observations = np.empty((num_steps, obs_dim), np.float32)
    next_observations = np.empty((num_steps, obs_dim), np.float32)
    actions = np.empty((num_steps, 2), np.float32)
    timeouts = np.zeros(num_steps, bool)
    goals = np.empty((num_steps, 2), np.float32)
    qpos = np.empty((num_steps, 2), np.float32)
    qvel = np.empty((num_steps, 2), np.float32)
    noise = rng.normal(0.0, ACTION_NOISE_STD, size=(num_steps, 2))

    obs, _ = env.reset(seed=seed)
    controller.set_target(obs[:2], draw_target(task, rng), rng)
    env.set_goal(controller.target)
    segment_length, targets, reached = 0, 0, 0
    with StepProgress(description, num_steps, enabled=progress, every=_PROGRESS_EVERY) as bar:
        for step in range(num_steps):
            action, solved = controller.action(obs[:2], obs[2:4])
            action = np.clip(action + noise[step], -1.0, 1.0)
            done = solved or segment_length >= segment_steps
            observations[step] = obs
            actions[step] = action
            goals[step] = controller.target
            qpos[step], qvel[step] = obs[:2], obs[2:4]
            timeouts[step] = done
            obs, _, _, _, _ = env.step(action)
            next_observations[step] = obs
            segment_length += 1
            if done:
                targets += 1
                reached += int(solved)
                controller.set_target(obs[:2], draw_target(task, rng), rng)
                env.set_goal(controller.target)
                segment_length = 0
            bar.update(step + 1)
    timeouts[-1] = True  # the budget cuts the last piece
    arrays = {
        "observations": observations,
        "actions": actions,
        "rewards": goal_reached(next_observations, eval_goal).astype(np.float32),
        "next_observations": next_observations,
        "terminals": np.zeros(num_steps, bool),
        "timeouts": timeouts,
        "infos/goal": goals,
        "infos/qpos": qpos,
        "infos/qvel": qvel,
    }
    return arrays, {"targets": targets, "targets_reached": reached}


def build_maze2d(
    spec: DatasetSpec, seed: int, num_steps: int, progress: bool = True,
) -> dict[str, np.ndarray]:
    """Builds a maze2d replica (level ``planner``) with D4RL's recipe.

    Args:
        spec: a ``maze2d-*-v1`` dataset.
        seed: seeds everything (same seed, same arrays).
        num_steps: rows (D4RL: umaze 1M, medium 2M, large 4M).
        progress: show a progress bar.

    Returns:
        D4RL-layout arrays, ``num_steps`` rows: ``observations``/``next_observations (N, 4)``,
        ``actions (N, 2)``, ``rewards (N,)``, ``terminals``/``timeouts (N,)``, ``infos/goal (N, 2)``,
        ``infos/qpos (N, 2)``, ``infos/qvel (N, 2)``.
    """
    if num_steps <= 0:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    task = maze_task(spec.name)
    env = make_env(spec.name, time_limit=False)
    try:
        arrays, _ = collect_maze2d(env, task, seed, num_steps, spec.task.max_episode_steps, progress,
                                   f"{spec.name} (planner, seed {seed})")
    finally:
        env.close()
    return arrays


register_replica_builder("planner", build_maze2d)
