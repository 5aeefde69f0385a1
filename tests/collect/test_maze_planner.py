"""Grid Q-iteration planner: shortest paths on every maze map, waypoints from start to goal."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from lightning_offrl.collect.maze_planner import GridPlanner, plan_waypoints
from lightning_offrl.envs.mazes import MAZE_TASKS, Cell, MazeMap, MazeTask


def bfs_distances(maze: MazeMap, goal: Cell) -> dict[Cell, int]:
    """Moves from every free cell to ``goal`` (independent of the planner)."""
    distances = {goal: 0}
    queue = deque([goal])
    while queue:
        i, j = queue.popleft()
        for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            cell = (i + di, j + dj)
            if maze.is_free(cell) and cell not in distances:
                distances[cell] = distances[(i, j)] + 1
                queue.append(cell)
    return distances


@pytest.mark.parametrize("domain", list(MAZE_TASKS))
def test_paths_lead_from_every_start_to_every_goal_by_a_shortest_route(domain: str) -> None:
    maze = MAZE_TASKS[domain].maze
    planner = GridPlanner(maze.free)
    cells = maze.free_cells()
    for goal in cells:
        distances = bfs_distances(maze, goal)
        for start in cells:
            path = planner.path(start, goal)
            assert len(path) == distances[start]
            assert (path[-1] if path else start) == goal
            previous = start
            for cell in path:
                assert maze.is_free(cell)
                assert abs(cell[0] - previous[0]) + abs(cell[1] - previous[1]) == 1
                previous = cell
        assert planner.distances(goal) == distances


def test_values_are_discounted_distances() -> None:
    maze = MAZE_TASKS["maze2d-umaze"].maze
    planner = GridPlanner(maze.free, discount=0.9)
    goal = (1, 1)
    values = planner.q_values(goal).max(axis=1)
    for cell, distance in bfs_distances(maze, goal).items():
        if cell != goal:
            np.testing.assert_allclose(values[planner.index[cell]], 0.9 ** (distance - 1))


def test_unreachable_goals_and_walls_are_reported() -> None:
    split = MazeMap("split", ("#####", "#O#O#", "#####"))
    planner = GridPlanner(split.free)
    with pytest.raises(ValueError, match="no path"):
        planner.next_cell((1, 1), (1, 3))
    with pytest.raises(ValueError, match="wall"):
        planner.next_cell((0, 0), (1, 1))


@pytest.mark.parametrize("domain", ["antmaze-large", "maze2d-medium"])
def test_waypoints_walk_the_maze_from_start_to_goal(domain: str) -> None:
    task: MazeTask = MAZE_TASKS[domain]
    planner = GridPlanner(task.maze.free)
    rng = np.random.default_rng(0)
    cells = task.maze.free_cells()
    size = task.geometry.cell_size
    for _ in range(20):
        start_cell, goal_cell = (cells[int(k)] for k in rng.choice(len(cells), size=2, replace=False))
        start = task.geometry.cell_center(start_cell) + rng.uniform(-0.2, 0.2, 2) * size
        goal = task.geometry.cell_anchor(goal_cell) + rng.uniform(-0.1, 0.1, 2)
        waypoints = plan_waypoints(task, planner, start, goal)
        np.testing.assert_allclose(waypoints[-1], goal)
        assert len(waypoints) == len(planner.path(start_cell, goal_cell))
        # Consecutive points are one cell apart, the first one next to the start, all in free cells.
        anchor = task.geometry.cell_anchor
        points = [anchor(start_cell), *waypoints[:-1], anchor(goal_cell)]
        steps = np.linalg.norm(np.diff(np.stack(points), axis=0), axis=1)
        np.testing.assert_allclose(steps[: len(waypoints)], size)
        assert all(task.maze.is_free(task.geometry.cell_of(p)) for p in waypoints)

        jittered = plan_waypoints(task, planner, start, goal, rng, jitter=0.2)
        shift = np.stack(waypoints[:-1]) - np.stack(jittered[:-1]) if len(waypoints) > 1 else np.zeros((0, 2))
        assert np.all((shift >= 0.0) & (shift <= 0.2))
        np.testing.assert_allclose(jittered[-1], goal)
