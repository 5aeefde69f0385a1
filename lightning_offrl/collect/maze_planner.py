"""Grid planner of D4RL's maze datasets: tabular Q-iteration on the maze's cells, and waypoints.

D4RL's maze2d controller (``pointmaze/waypoint_controller.py``) runs Q-iteration on the grid with
reward at the target cell and follows the greedy rollout's cells; its antmaze collector
(``locomotion/maze_env.py``) asks, at every step, for the next cell on a shortest path from the
robot's cell to the goal's. Both are the same question of the same grid MDP, answered here once
per goal cell and cached:

* states: the free cells; actions: up, down, left, right (a move into a wall stays put);
* reward 1 for entering the goal cell, which is terminal; discount ``gamma``;
* Q-iteration ``Q(s, a) <- r(s, a) + gamma * max_a' Q(s', a')`` (Bellman optimality) until the values
  stop changing. Values propagate one cell per sweep, so at most one sweep per free cell is needed;
  ``V(s) = gamma^(d(s) - 1)`` for a cell ``d(s)`` moves from the goal, so the greedy action follows a
  shortest path. Ties go to the first action in ``MOVES`` order (deterministic).
"""

from __future__ import annotations

import numpy as np

from lightning_offrl.envs.mazes import Cell, MazeTask

# (row, column) steps of the four actions: up, down, left, right.
MOVES: tuple[Cell, ...] = ((-1, 0), (1, 0), (0, -1), (0, 1))


class GridPlanner:
    """Shortest paths on a maze grid by tabular Q-iteration.

    Args:
        free: ``(H, W)`` bool, True for free cells.
        discount: the grid MDP's discount (D4RL: 0.99); any value in ``(0, 1)`` gives shortest paths.
    """

    def __init__(self, free: np.ndarray, discount: float = 0.99) -> None:
        if not 0.0 < discount < 1.0:
            raise ValueError(f"discount must lie in (0, 1), got {discount}")
        self.free = np.asarray(free, dtype=bool)
        self.discount = discount
        height, width = self.free.shape
        self.cells: list[Cell] = [(i, j) for i in range(height) for j in range(width) if self.free[i, j]]
        self.index = {cell: k for k, cell in enumerate(self.cells)}
        # successor[s, a]: the state reached from s by action a (s itself when a wall is in the way).
        successor = [
            [self.index.get((i + di, j + dj), s) for di, dj in MOVES] for s, (i, j) in enumerate(self.cells)
        ]
        self.successor = np.array(successor, dtype=np.int64).reshape(len(self.cells), len(MOVES))
        self._q_cache: dict[Cell, np.ndarray] = {}
        self._distance_cache: dict[Cell, dict[Cell, int]] = {}

    def _state(self, cell: Cell) -> int:
        cell = (int(cell[0]), int(cell[1]))
        if cell not in self.index:
            raise ValueError(f"cell {cell} is a wall or outside the maze")
        return self.index[cell]

    def q_values(self, goal: Cell) -> np.ndarray:
        """``(S, 4)`` optimal Q-values for reaching ``goal``; state ``s`` is ``self.cells[s]``."""
        goal = (int(goal[0]), int(goal[1]))
        if goal not in self._q_cache:
            goal_state = self._state(goal)
            reward = (self.successor == goal_state).astype(np.float64)  # entering the goal pays 1
            values = np.zeros(len(self.cells))
            for _ in range(len(self.cells) + 1):
                q = reward + self.discount * values[self.successor]
                new_values = q.max(axis=1)
                new_values[goal_state] = 0.0  # terminal
                if np.array_equal(new_values, values):
                    break
                values = new_values
            self._q_cache[goal] = q
        return self._q_cache[goal]

    def distances(self, goal: Cell) -> dict[Cell, int]:
        """Shortest path lengths in moves from every free cell that can reach ``goal`` (breadth-first
        over the same moves; ``goal`` itself is 0)."""
        goal = (int(goal[0]), int(goal[1]))
        if goal not in self._distance_cache:
            goal_state = self._state(goal)
            steps = np.full(len(self.cells), -1, dtype=np.int64)
            steps[goal_state] = 0
            frontier = [goal_state]
            while frontier:
                # the states one move from the frontier that have no length yet (moves are symmetric)
                following = [int(s) for s in np.unique(self.successor[frontier]) if steps[s] < 0]
                steps[following] = steps[frontier[0]] + 1
                frontier = following
            self._distance_cache[goal] = {self.cells[s]: int(n) for s, n in enumerate(steps) if n >= 0}
        return self._distance_cache[goal]

    def next_cell(self, cell: Cell, goal: Cell) -> Cell:
        """The neighbour of ``cell`` on a shortest path to ``goal`` (``goal`` itself when there).

        Raises:
            ValueError: a cell is a wall, or ``goal`` cannot be reached from ``cell``.
        """
        state, goal_state = self._state(cell), self._state(goal)
        if state == goal_state:
            return self.cells[goal_state]
        q = self.q_values(goal)[state]
        if q.max() <= 0.0:
            raise ValueError(f"no path from cell {tuple(cell)} to cell {tuple(goal)}")
        return self.cells[int(self.successor[state, int(np.argmax(q))])]

    def path(self, start: Cell, goal: Cell) -> list[Cell]:
        """The greedy rollout from ``start``: the cells entered, ending with ``goal`` (empty if
        ``start == goal``)."""
        cells: list[Cell] = []
        cell = (int(start[0]), int(start[1]))
        goal = (int(goal[0]), int(goal[1]))
        while cell != goal:
            cell = self.next_cell(cell, goal)
            cells.append(cell)
            if len(cells) > len(self.cells):  # cannot happen on converged values; guards the loop
                raise RuntimeError(f"planning from {start} to {goal} did not converge")
        return cells


def plan_waypoints(
    task: MazeTask, planner: GridPlanner, start: np.ndarray, goal: np.ndarray,
    rng: np.random.Generator | None = None, jitter: float = 0.0,
) -> list[np.ndarray]:
    """Waypoints in D4RL's frame from ``start`` to ``goal``: the reference points of the cells on a
    shortest path, then ``goal`` itself.

    Args:
        task: the maze task (its map and geometry).
        planner: a planner of ``task.maze.free``.
        start: ``(2,)`` x-y of the robot.
        goal: ``(2,)`` x-y of the goal.
        rng: draws the jitter.
        jitter: intermediate waypoints move by ``-U(0, jitter)`` per coordinate (D4RL's maze2d
            controller uses 0.2); 0 keeps them on the reference points.

    Returns:
        ``[(2,), ...]``, at least one waypoint (the goal).
    """
    cells = planner.path(task.free_cell_of(start), task.free_cell_of(goal))
    waypoints = [task.geometry.cell_anchor(cell) for cell in cells[:-1]]
    if jitter > 0.0:
        if rng is None:
            raise ValueError("jittered waypoints need an rng")
        waypoints = [point - rng.uniform(0.0, jitter, size=2) for point in waypoints]
    return [*waypoints, np.asarray(goal, dtype=np.float64).reshape(2).copy()]
