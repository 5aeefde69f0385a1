"""AntMaze / Maze2D tasks: D4RL's observation frame, goals, sparse reward, termination, temp files."""

from __future__ import annotations

import os
import tempfile

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from lightning_offrl.envs.evaluation import evaluate_policy
from lightning_offrl.envs.mazes import GOAL_RADIUS, MAZE_TASKS, MazeTaskEnv, goal_reached, maze_task
from lightning_offrl.envs.tasks import get_task, make_env

ANTMAZE = ["antmaze-umaze-v2", "antmaze-medium-play-v2", "antmaze-large-diverse-v2"]
MAZE2D = ["maze2d-umaze-v1", "maze2d-medium-v1", "maze2d-large-v1"]


def inner(env: gym.Env) -> MazeTaskEnv:
    while not isinstance(env, MazeTaskEnv):
        env = env.env  # type: ignore[attr-defined]
    return env


@pytest.mark.parametrize("name", ANTMAZE + MAZE2D)
def test_walls_stand_on_the_wall_cells_of_d4rls_map_in_d4rls_frame(name: str) -> None:
    env = make_env(name)
    task = maze_task(name)
    model = env.unwrapped.model
    blocks = [gid for gid in range(model.ngeom)
              if (mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, gid) or "").startswith("block_")]
    walls = {cell for cell in np.ndindex(*task.maze.shape) if not task.maze.is_free(cell)}
    placed = set()
    for gid in blocks:
        xy = model.geom_pos[gid][:2] + inner(env).world_to_d4rl
        cell = task.geometry.cell_of(xy)
        np.testing.assert_allclose(task.geometry.cell_center(cell), xy, atol=1e-9)
        placed.add(cell)
    assert placed == walls
    env.close()


def test_d4rl_frames_of_both_families() -> None:
    # antmaze: the start cell R = (1, 1) is the origin, x along columns, y along rows, 4 per cell.
    ant = MAZE_TASKS["antmaze-umaze"].geometry
    np.testing.assert_allclose(ant.cell_center((1, 1)), [0.0, 0.0])
    np.testing.assert_allclose(ant.cell_center((3, 1)), [0.0, 8.0])
    np.testing.assert_allclose(ant.cell_center((1, 3)), [8.0, 0.0])
    # maze2d: x is the row, y the column; D4RL's targets sit at integers, 0.2 past the cell centres.
    point = MAZE_TASKS["maze2d-large"].geometry
    np.testing.assert_allclose(point.cell_anchor((7, 9)), [7.0, 9.0])
    np.testing.assert_allclose(point.cell_center((7, 9)), [6.8, 8.8])
    assert point.cell_of(np.array([6.55, 9.25])) == (7, 9)


@pytest.mark.parametrize("name", ANTMAZE + MAZE2D)
def test_observation_is_d4rls_layout(name: str) -> None:
    env = make_env(name)
    obs, info = env.reset(seed=3)
    ant = name.startswith("antmaze")
    assert obs.shape == ((29,) if ant else (4,)) and env.observation_space.shape == obs.shape
    data = env.unwrapped.data
    np.testing.assert_allclose(obs[:2], data.qpos[:2] + inner(env).world_to_d4rl)
    np.testing.assert_allclose(obs[2:len(data.qpos)], data.qpos[2:])
    np.testing.assert_allclose(obs[len(data.qpos):], data.qvel[: obs.size - len(data.qpos)])
    assert set(info) >= {"success", "goal"}
    if ant:  # D4RL's evaluation start: the R cell, at the origin, with qpos noise U(-0.1, 0.1)
        assert np.all(np.abs(obs[:2]) <= 0.1 + 1e-9) and 0.6 < obs[2] < 0.9
    env.close()


@pytest.mark.parametrize("name", ANTMAZE)
def test_antmaze_goal_is_redrawn_every_episode_in_the_eval_goal_cell(name: str) -> None:
    task = maze_task(name)
    env = make_env(name)
    goals = np.stack([env.reset(seed=seed)[1]["goal"] for seed in range(40)])
    # D4RL's goal_sampler: centre of the eval cell + U(0, 1) + U(0, 0.5) per coordinate (v2: every reset).
    offsets = goals - task.geometry.cell_center(task.eval_goal_cell)
    assert offsets.min() >= 0.0 and offsets.max() <= 1.5
    assert len(np.unique(goals[:, 0])) == len(goals)
    assert abs(offsets.mean() - 0.75) < 0.15
    env.close()


@pytest.mark.parametrize("name, goal", zip(MAZE2D, [(1.0, 1.0), (6.0, 6.0), (7.0, 9.0)]))
def test_maze2d_goal_is_d4rls_fixed_goal_and_starts_cover_the_maze(
    name: str, goal: tuple[float, float],
) -> None:
    task = maze_task(name)
    env = make_env(name)
    starts = []
    for seed in range(60):
        obs, info = env.reset(seed=seed)
        np.testing.assert_allclose(info["goal"], goal)
        starts.append(task.geometry.cell_of(obs[:2]))
        # start = a free cell's integer point + U(-0.1, 0.1)
        assert np.all(np.abs(obs[:2] - task.geometry.cell_anchor(starts[-1])) <= 0.1 + 1e-9)
    assert all(task.maze.is_free(cell) for cell in starts)
    assert len(set(starts)) >= min(len(task.maze.free_cells()) // 2, 5)
    env.close()


def test_goal_reached_is_d4rls_half_unit_test() -> None:
    goal = np.array([1.0, 2.0])
    assert goal_reached(np.array([1.0, 2.5]), goal) and goal_reached(np.array([1.3, 2.4]), goal)
    assert not goal_reached(np.array([1.0, 2.5001]), goal)
    obs = np.array([[1.0, 2.0, 9.0, 9.0], [3.0, 3.0, 0.0, 0.0]])  # only x-y count
    np.testing.assert_array_equal(goal_reached(obs, goal), [True, False])
    assert GOAL_RADIUS == 0.5


def test_antmaze_sparse_reward_ends_the_evaluation_episode_at_the_goal() -> None:
    env = make_env("antmaze-umaze-v2")
    goal = np.array([0.5, 8.5])
    obs, info = env.reset(seed=0, options={"start": goal + [0.2, 0.0], "goal": goal})
    assert info["success"]
    _, reward, terminated, truncated, info = env.step(np.zeros(8))
    assert reward == 1.0 and terminated and not truncated and info["success"]

    env.reset(seed=0, options={"start": goal + [2.0, 0.0], "goal": goal})
    rewards = [env.step(np.zeros(8))[1] for _ in range(5)]
    assert rewards == [0.0] * 5
    # The data collectors keep going past the goal.
    collector = make_env("antmaze-umaze-v2", terminate_at_goal=False, time_limit=False)
    collector.reset(seed=0, options={"start": goal, "goal": goal})
    assert all(collector.step(np.zeros(8))[1:3] == (1.0, False) for _ in range(3))
    env.close()
    collector.close()


def test_maze2d_pays_every_step_at_the_goal_and_only_the_time_limit_ends_it() -> None:
    spec = get_task("maze2d-umaze-v1")
    assert spec.max_episode_steps == 300
    result = evaluate_policy(lambda obs: np.zeros((len(obs), 2)), "maze2d-umaze-v1", 3, seed=0)
    np.testing.assert_array_equal(result.lengths, [300, 300, 300])
    env = make_env("maze2d-umaze-v1")
    obs, _ = env.reset(seed=0, options={"start": np.array([1.0, 1.0])})
    steps = []
    for _ in range(300):  # hold the point on the goal with a PD law
        steps.append(env.step(np.clip(10.0 * (np.array([1.0, 1.0]) - obs[:2]) - obs[2:], -1.0, 1.0)))
        obs = steps[-1][0]
    assert all(reward == 1.0 and not terminated for _, reward, terminated, _, _ in steps)
    assert steps[-1][3] and not any(truncated for *_, truncated, _ in steps[:-1])
    env.close()


@pytest.mark.parametrize("name, steps", [("antmaze-umaze-v2", 700), ("antmaze-umaze-diverse-v2", 700),
                                         ("antmaze-medium-play-v2", 1000), ("antmaze-large-diverse-v2", 1000)])
def test_antmaze_evaluation_has_d4rls_time_limits_and_success_rate_scores(name: str, steps: int) -> None:
    # d4rl/locomotion/__init__.py registers antmaze-umaze(-diverse) with 700 steps, medium and large with 1000.
    env = make_env(name)
    assert isinstance(env, gym.wrappers.TimeLimit) and env._max_episode_steps == steps
    spec = get_task("antmaze-medium-diverse-v2")
    np.testing.assert_allclose(spec.normalized_score(np.array([0.0, 1.0, 1.0, 0.0])).mean(), 50.0)
    env.close()


def test_evaluation_results_do_not_depend_on_the_number_of_environments() -> None:
    def toward_goal(obs: np.ndarray) -> np.ndarray:
        return np.clip(10.0 * (np.array([1.0, 1.0]) - obs[:, :2]) - obs[:, 2:], -1.0, 1.0)

    one = evaluate_policy(toward_goal, "maze2d-umaze-v1", 4, seed=5, num_envs=1)
    three = evaluate_policy(toward_goal, "maze2d-umaze-v1", 4, seed=5, num_envs=3)
    np.testing.assert_array_equal(one.returns, three.returns)
    np.testing.assert_array_equal(one.lengths, [300] * 4)


def test_construction_leaves_no_xml_in_the_temporary_folder() -> None:
    folder = tempfile.gettempdir()
    before = set(os.listdir(folder))
    for name in ("antmaze-umaze-v2", "maze2d-medium-v1", "antmaze-large-play-v2"):
        make_env(name).close()
    assert tempfile.tempdir is None or tempfile.gettempdir() == folder
    new = {name for name in set(os.listdir(folder)) - before if name.endswith(".xml") or "maze" in name}
    assert not new
