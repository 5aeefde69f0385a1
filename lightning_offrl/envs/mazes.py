"""AntMaze and Maze2D with D4RL's task semantics on gymnasium-robotics' maze environments.

D4RL (Fu et al. 2020) built its mazes on mujoco-py; gymnasium-robotics rebuilt them on the official
``mujoco`` bindings with its own conventions (a goal-conditioned dictionary observation, the maze
centred on the origin with rows running towards -y, a goal drawn from every free cell). This module
wraps gymnasium-robotics' ``AntMazeEnv`` and ``PointMazeEnv`` so that an episode is D4RL's evaluation
episode and an observation is a row of D4RL's datasets:

* **Observation frame.** D4RL's antmaze places the start cell ``R`` at the origin with x along the
  columns and y along the rows of its map (``maze_env._rowcol_to_xy``); D4RL's maze2d puts the point
  at ``(row, column)`` in cell units, and because its particle body sits at ``(1.2, 1.2)`` while its
  walls sit at ``(row + 1, column + 1)`` (``pointmaze/maze_model.py``), the centre of cell ``(i, j)``
  is at ``(i - 0.2, j - 0.2)``. gymnasium-robotics draws row ``r`` of its map at
  ``y = H/2 - (r + 1/2)``, which would mirror D4RL's antmaze and rotate D4RL's maze2d. The map is
  therefore handed to gymnasium-robotics rearranged (rows reversed for antmaze; transposed and
  reversed for maze2d) so that the physical maze is D4RL's up to a translation, and the wrapper adds
  that translation to the x-y position. Velocities and actions need no change.
* **Observation layout.** antmaze: ``qpos (15) + qvel (14)`` = 29 values, x-y first (D4RL's
  ``expose_all_qpos``); maze2d: ``(x, y, vx, vy)``. The goal is not part of the observation, as in
  D4RL's evaluation environments.
* **Goals.** antmaze: the goal cell of D4RL's ``*_TEST`` map (umaze ``(3, 1)``, medium ``(6, 6)``,
  large ``(7, 9)``) plus D4RL's goal noise ``U(0, 1) + U(0, 0.5)`` per coordinate, drawn again at
  every reset (D4RL's ``v2_resets``); the start is the ``R`` cell. maze2d: the fixed ``G`` cell of
  D4RL's map (no noise) and a start drawn uniformly from every free cell.
* **Reset noise** (both robots, as D4RL): ``qpos += U(-0.1, 0.1)``, ``qvel = N(0, 0.1^2)``.
* **Reward and termination.** Sparse: ``1`` when the x-y position is within ``0.5`` of the goal,
  else ``0``. antmaze evaluation episodes end when the goal is reached (D4RL's ``GoalReachingEnv``
  with ``eval=True``), so a return is 0 or 1 and the normalized score is the success rate x 100;
  maze2d episodes never terminate and the return counts the steps spent at the goal. Time limits are
  D4RL's registrations (antmaze-umaze 700 steps, medium and large 1000; maze2d 300 / 600 / 800).
* **Physics.** The ant is D4RL's (:mod:`lightning_offrl.envs.d4rl_ant`: 0.1 s per step, torque 30,
  D4RL's contact parameters), not gymnasium-robotics' default ``Ant-v5`` body.

gymnasium-robotics writes a new XML file into ``$TMPDIR`` at every construction and never deletes
it; :func:`private_tempdir` gives each construction its own folder and removes it afterwards.
Importing this module registers :func:`make_maze_env` as the ``env_factory`` of the antmaze and
maze2d tasks of :mod:`lightning_offrl.envs.tasks`.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import gymnasium as gym
import numpy as np

from lightning_offrl.envs.d4rl_ant import D4RL_ANT, write_d4rl_ant_xml
from lightning_offrl.envs.tasks import TASKS, TaskSpec, _ensure_registered, register_task
from lightning_offrl.errors import ConfigError

Cell = tuple[int, int]
Robot = Literal["ant", "point"]

# D4RL: a goal counts as reached within 0.5 of the robot's x-y position (both maze families).
GOAL_RADIUS = 0.5
# D4RL's reset noise of both robots: qpos + U(-0.1, 0.1), qvel ~ N(0, 0.1^2).
RESET_QPOS_NOISE = 0.1
RESET_QVEL_STD = 0.1


# ------------------------------------------------------------------------------------------ maps
@dataclass(frozen=True)
class MazeMap:
    """A maze grid in D4RL's notation: ``#`` wall, ``O`` free, ``R`` start cell, ``G`` goal cell.

    Row ``i``, column ``j`` is cell ``(i, j)``. ``G`` marks D4RL's hand-picked goals of the data
    collection maps (antmaze "play"), or the single evaluation goal (maze2d).

    Attributes:
        name: short name (``umaze``, ``medium``, ``large``).
        rows: the map, one string per row, all of the same length.
    """

    name: str
    rows: tuple[str, ...]

    def __post_init__(self) -> None:
        widths = {len(row) for row in self.rows}
        if len(widths) != 1 or set("".join(self.rows)) - set("#ORG"):
            raise ValueError(f"maze {self.name!r}: rows must be equally long strings of '#', 'O', 'R', 'G'")

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``."""
        return len(self.rows), len(self.rows[0])

    @property
    def free(self) -> np.ndarray:
        """``(H, W)`` bool, True where a robot may be."""
        return np.array([[tile != "#" for tile in row] for row in self.rows], dtype=bool)

    def cells(self, marker: str) -> list[Cell]:
        """The cells marked ``marker`` (``R`` or ``G``), row-major."""
        return [(i, j) for i, row in enumerate(self.rows) for j, tile in enumerate(row) if tile == marker]

    def free_cells(self) -> list[Cell]:
        """Every free cell (``O``, ``R`` and ``G``), row-major."""
        return [(i, j) for i, row in enumerate(self.rows) for j, tile in enumerate(row) if tile != "#"]

    def is_free(self, cell: Cell) -> bool:
        """Whether ``cell`` lies in the grid and is not a wall."""
        i, j = cell
        height, width = self.shape
        return 0 <= i < height and 0 <= j < width and self.rows[i][j] != "#"


# D4RL's antmaze data-collection maps (d4rl/locomotion/maze_env.py: U_MAZE, BIG_MAZE, HARDEST_MAZE);
# the G cells are the hand-picked goals of the "play" datasets.
ANT_UMAZE = MazeMap("umaze", (
    "#####",
    "#ROO#",
    "###O#",
    "#GOO#",
    "#####",
))
ANT_MEDIUM = MazeMap("medium", (
    "########",
    "#RO##OO#",
    "#OO#OOG#",
    "##OOO###",
    "#OO#OOO#",
    "#G#OO#O#",
    "#OOO#GO#",
    "########",
))
ANT_LARGE = MazeMap("large", (
    "############",
    "#ROOO#GOOOO#",
    "#O##O#O#O#O#",
    "#OOOOGO#OOG#",
    "#O####O###O#",
    "#OG#O#OOOOO#",
    "##O#O#O#O###",
    "#OO#GOG#OGO#",
    "############",
))
# D4RL's maze2d maps (d4rl/pointmaze/maze_model.py); G is the evaluation goal.
POINT_UMAZE = MazeMap("umaze", (
    "#####",
    "#GOO#",
    "###O#",
    "#OOO#",
    "#####",
))
POINT_MEDIUM = MazeMap("medium", (
    "########",
    "#OO##OO#",
    "#OO#OOO#",
    "##OOO###",
    "#OO#OOO#",
    "#O#OO#O#",
    "#OOO#OG#",
    "########",
))
POINT_LARGE = MazeMap("large", (
    "############",
    "#OOOO#OOOOO#",
    "#O##O#O#O#O#",
    "#OOOOOO#OOO#",
    "#O####O###O#",
    "#OO#O#OOOOO#",
    "##O#O#O#O###",
    "#OO#OOO#OGO#",
    "############",
))


# -------------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class MazeGeometry:
    """Where the cells of a maze lie in D4RL's observation frame.

    Attributes:
        cell_size: side of a cell (antmaze 4, maze2d 1).
        origin: D4RL-frame ``(x, y)`` of the centre of cell ``(0, 0)``.
        rows_along_x: False when x follows the columns and y the rows (antmaze), True when x follows
            the rows and y the columns (maze2d).
        anchor_offset: D4RL's reference point of a cell (where its starts and targets sit) minus the
            cell's centre, per coordinate: 0 for antmaze, 0.2 for maze2d (its particle body is offset
            by 0.2 from the wall grid, so D4RL's integer targets lie 0.2 past the centres).
    """

    cell_size: float
    origin: tuple[float, float]
    rows_along_x: bool
    anchor_offset: float = 0.0

    def cell_center(self, cell: Cell) -> np.ndarray:
        """``(2,)`` D4RL-frame centre of cell ``(i, j)``."""
        i, j = cell
        along_x, along_y = (i, j) if self.rows_along_x else (j, i)
        offset = self.cell_size * np.array([along_x, along_y], dtype=np.float64)
        return np.array(self.origin, dtype=np.float64) + offset

    def cell_anchor(self, cell: Cell) -> np.ndarray:
        """``(2,)`` D4RL's reference point of a cell: where D4RL puts starts and targets in it."""
        return self.cell_center(cell) + self.anchor_offset

    def cell_of(self, xy: np.ndarray) -> Cell:
        """The cell whose square contains ``xy`` (nearest centre), walls included."""
        along = (np.asarray(xy, dtype=np.float64)[:2] - np.asarray(self.origin)) / self.cell_size
        first, second = int(np.rint(along[0])), int(np.rint(along[1]))
        return (first, second) if self.rows_along_x else (second, first)


# ------------------------------------------------------------------------------------------ tasks
@dataclass(frozen=True)
class MazeTask:
    """One maze task of D4RL.

    Attributes:
        domain: the task's domain in :mod:`lightning_offrl.envs.tasks` (``antmaze-umaze``, ...).
        robot: ``ant`` (antmaze) or ``point`` (maze2d).
        maze: D4RL's map.
        geometry: the cells in D4RL's observation frame.
        eval_goal_cell: the cell of the evaluation goal (D4RL's ``*_TEST`` map for antmaze, the ``G``
            cell for maze2d).
        goal_noise: antmaze: D4RL's goal noise ``U(0, 1) + U(0, 0.5)`` per coordinate is added to the
            goal cell's centre at every reset; maze2d: the goal is the cell's reference point itself.
    """

    domain: str
    robot: Robot
    maze: MazeMap
    geometry: MazeGeometry
    eval_goal_cell: Cell
    goal_noise: bool

    def free_cell_of(self, xy: np.ndarray) -> Cell:
        """The free cell containing ``xy``, or the free cell with the nearest centre when ``xy`` is in
        a wall (a robot pressed into a wall's margin)."""
        cell = self.geometry.cell_of(xy)
        if self.maze.is_free(cell):
            return cell
        cells = self.maze.free_cells()
        centers = np.stack([self.geometry.cell_center(c) for c in cells])
        return cells[int(np.argmin(np.linalg.norm(centers - np.asarray(xy)[:2], axis=1)))]

    def goal_in_cell(self, cell: Cell, rng: np.random.Generator) -> np.ndarray:
        """``(2,)`` a goal in ``cell`` drawn as D4RL draws one (see ``goal_noise``)."""
        if not self.goal_noise:
            return self.geometry.cell_anchor(cell)
        # d4rl/locomotion/maze_env.py goal_sampler: cell centre + U(0, size/4) + U(0, 0.5) * size/4.
        quarter = 0.25 * self.geometry.cell_size
        noise = rng.uniform(0.0, quarter, size=2) + rng.uniform(0.0, 0.5, size=2) * quarter
        return self.geometry.cell_center(cell) + noise

    def mean_eval_goal(self) -> np.ndarray:
        """``(2,)`` the expected evaluation goal: the point D4RL-style datasets are rewarded for.

        D4RL relabelled each antmaze dataset with one goal drawn once from the evaluation
        environment; the replicas use that draw's expectation (centre + 0.75 per coordinate).
        """
        if not self.goal_noise:
            return self.geometry.cell_anchor(self.eval_goal_cell)
        return self.geometry.cell_center(self.eval_goal_cell) + 0.75 * 0.25 * self.geometry.cell_size

    def eval_goal(self, rng: np.random.Generator) -> np.ndarray:
        """``(2,)`` the goal of an evaluation episode."""
        return self.goal_in_cell(self.eval_goal_cell, rng)

    def eval_start(self, rng: np.random.Generator) -> np.ndarray:
        """``(2,)`` the start of an evaluation episode before reset noise: antmaze the ``R`` cell,
        maze2d a uniformly drawn free cell's reference point (D4RL's ``reset_model``)."""
        if self.robot == "ant":
            return self.geometry.cell_anchor(self.maze.cells("R")[0])
        cells = self.maze.free_cells()
        return self.geometry.cell_anchor(cells[int(rng.integers(len(cells)))])


def _antmaze_task(domain: str, maze: MazeMap, eval_goal_cell: Cell) -> MazeTask:
    start_i, start_j = maze.cells("R")[0]
    size = 4.0  # D4RL's maze_size_scaling for every antmaze
    geometry = MazeGeometry(size, (-size * start_j, -size * start_i), rows_along_x=False)
    return MazeTask(domain, "ant", maze, geometry, eval_goal_cell, goal_noise=True)


def _maze2d_task(domain: str, maze: MazeMap) -> MazeTask:
    geometry = MazeGeometry(1.0, (-0.2, -0.2), rows_along_x=True, anchor_offset=0.2)
    return MazeTask(domain, "point", maze, geometry, maze.cells("G")[0], goal_noise=False)


# Evaluation goal cells: the G of D4RL's U_MAZE_TEST, BIG_MAZE_TEST and HARDEST_MAZE_TEST.
MAZE_TASKS: dict[str, MazeTask] = {
    "antmaze-umaze": _antmaze_task("antmaze-umaze", ANT_UMAZE, (3, 1)),
    "antmaze-medium": _antmaze_task("antmaze-medium", ANT_MEDIUM, (6, 6)),
    "antmaze-large": _antmaze_task("antmaze-large", ANT_LARGE, (7, 9)),
    "maze2d-umaze": _maze2d_task("maze2d-umaze", POINT_UMAZE),
    "maze2d-medium": _maze2d_task("maze2d-medium", POINT_MEDIUM),
    "maze2d-large": _maze2d_task("maze2d-large", POINT_LARGE),
}


def maze_task(name: str) -> MazeTask:
    """The :class:`MazeTask` of a maze domain or dataset name (``antmaze-umaze-diverse-v2``).

    Raises:
        ConfigError: ``name`` is not a maze task.
    """
    from lightning_offrl.envs.tasks import domain_of

    domain = domain_of(name)
    if domain not in MAZE_TASKS:
        raise ConfigError(f"{name!r} is not a maze task: maze domains are {', '.join(MAZE_TASKS)}")
    return MAZE_TASKS[domain]


def goal_reached(xy: np.ndarray, goal: np.ndarray, radius: float = GOAL_RADIUS) -> np.ndarray:
    """D4RL's sparse success test ``||xy - goal|| <= radius``.

    Args:
        xy: ``(..., 2)`` positions (observations may be passed whole: only the first two values of
            the last axis are used).
        goal: ``(2,)`` or ``(..., 2)`` goals.
        radius: success radius (D4RL: 0.5).

    Returns:
        ``(...)`` bool.
    """
    xy = np.asarray(xy)[..., :2]
    return np.linalg.norm(xy - np.asarray(goal), axis=-1) <= radius


# ------------------------------------------------------------------------------ temporary folder
_TEMPDIR_LOCK = threading.Lock()


@contextmanager
def private_tempdir(prefix: str = "lightning_offrl_maze_") -> Iterator[Path]:
    """Points :mod:`tempfile` at a fresh folder for the duration of the block, then deletes it.

    gymnasium-robotics' mazes write their generated MJCF file next to ``tempfile.gettempdir()`` and
    never remove it (AntMaze v5 names it after the clock, so concurrent constructions may also
    collide); MuJoCo has read the file once the environment exists. The lock keeps two threads of
    one process from swapping the folder under each other.

    Yields:
        The private folder.
    """
    with _TEMPDIR_LOCK:
        folder = tempfile.mkdtemp(prefix=prefix)
        previous = tempfile.tempdir
        tempfile.tempdir = folder
        try:
            yield Path(folder)
        finally:
            tempfile.tempdir = previous
            shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------------- environment
def robotics_map(task: MazeTask) -> list[list[int]]:
    """The ``1``/``0`` wall map to give gymnasium-robotics so that its maze is D4RL's, translated.

    gymnasium-robotics puts map cell ``(r, c)`` at ``x ~ c``, ``y ~ -r``. antmaze wants
    ``x ~ j, y ~ i`` (rows reversed); maze2d wants ``x ~ i, y ~ j`` (transposed, then rows reversed).
    """
    walls = (~task.maze.free).astype(int)
    arranged = walls.T[::-1] if task.geometry.rows_along_x else walls[::-1]
    return arranged.tolist()


def _robotics_cell(task: MazeTask, cell: Cell) -> np.ndarray:
    i, j = cell
    height, width = task.maze.shape
    return np.array([width - 1 - j, i] if task.geometry.rows_along_x else [height - 1 - i, j])


class MazeTaskEnv(gym.Wrapper):
    """A gymnasium-robotics maze with D4RL's observations, goals, rewards and terminations.

    Args:
        env: the unwrapped gymnasium-robotics ``AntMazeEnv`` or ``PointMazeEnv``, built on
            :func:`robotics_map` of ``task``.
        task: the D4RL task.
        terminate_at_goal: end the episode when the goal is reached (D4RL's antmaze evaluation);
            the data collectors keep going past the goal.

    ``reset(options=...)`` accepts ``start`` (``(2,)`` x-y before reset noise) and ``goal``
    (``(2,)``), both in D4RL's frame, instead of the evaluation's draws; :meth:`set_goal` changes the
    goal during an episode. ``info`` carries ``success`` (the goal is reached) and ``goal``.
    """

    def __init__(self, env: gym.Env, task: MazeTask, terminate_at_goal: bool) -> None:
        super().__init__(env)
        self.task = task
        self.terminate_at_goal = terminate_at_goal
        self._robot = env.ant_env if task.robot == "ant" else env.point_env  # type: ignore[attr-defined]
        self._init_qpos = np.array(self._robot.init_qpos, dtype=np.float64)
        model = self._robot.model
        self._nq, self._nv = int(model.nq), int(model.nv)
        # D4RL's antmaze observation is qpos[:15] + qvel[:14] (the ant's own joints); the point has 2 + 2.
        self._obs_qpos = min(self._nq, 15)
        self._obs_qvel = min(self._nv, 14)
        self.observation_space = gym.spaces.Box(
            -np.inf, np.inf, shape=(self._obs_qpos + self._obs_qvel,), dtype=np.float64
        )
        self.world_to_d4rl = self._translation(env)
        self._goal = task.mean_eval_goal()

    def _translation(self, env: gym.Env) -> np.ndarray:
        maze = env.maze  # type: ignore[attr-defined]
        if abs(maze.maze_size_scaling - self.task.geometry.cell_size) > 1e-9:
            raise ConfigError(
                f"{self.task.domain}: gymnasium-robotics scales cells by {maze.maze_size_scaling}, D4RL by "
                f"{self.task.geometry.cell_size}"
            )
        cells = self.task.maze.free_cells()
        shifts = [
            self.task.geometry.cell_center(cell) - maze.cell_rowcol_to_xy(_robotics_cell(self.task, cell))
            for cell in (cells[0], cells[-1])
        ]
        if not np.allclose(shifts[0], shifts[1]):  # the rearranged map must be a pure translation
            raise AssertionError(f"{self.task.domain}: maze frames differ by more than a translation")
        return shifts[0]

    # -- state in D4RL's frame --
    @property
    def goal(self) -> np.ndarray:
        """``(2,)`` the current goal."""
        return self._goal.copy()

    @property
    def position(self) -> np.ndarray:
        """``(2,)`` the robot's x-y position."""
        return np.asarray(self._robot.data.qpos[:2]) + self.world_to_d4rl

    def set_goal(self, goal: np.ndarray) -> None:
        """Moves the goal (and gymnasium-robotics' target marker) to ``goal`` ``(2,)``."""
        self._goal = np.asarray(goal, dtype=np.float64).reshape(2).copy()
        unwrapped: Any = self.env.unwrapped
        unwrapped.goal = self._goal - self.world_to_d4rl
        unwrapped.update_target_site_pos()

    def observation(self) -> np.ndarray:
        """The D4RL observation: ``qpos`` with x-y in D4RL's frame, then ``qvel``."""
        data = self._robot.data
        obs = np.concatenate([data.qpos[: self._obs_qpos], data.qvel[: self._obs_qvel]])
        obs[:2] += self.world_to_d4rl
        return obs

    def state_d4rl(self) -> tuple[np.ndarray, np.ndarray]:
        """``(qpos (nq,), qvel (nv,))`` of the simulator with x-y in D4RL's frame (D4RL's ``infos``)."""
        qpos = np.array(self._robot.data.qpos)
        qpos[:2] += self.world_to_d4rl
        return qpos, np.array(self._robot.data.qvel)

    def place_robot(self, start: np.ndarray, rng: np.random.Generator) -> None:
        """Puts the robot at ``start`` ``(2,)`` with D4RL's reset noise, at rest otherwise."""
        qpos = self._init_qpos.copy()
        qpos[:2] = np.asarray(start, dtype=np.float64)[:2] - self.world_to_d4rl
        qpos += rng.uniform(-RESET_QPOS_NOISE, RESET_QPOS_NOISE, size=self._nq)
        if self.task.robot == "ant":
            qpos[3:7] /= np.linalg.norm(qpos[3:7])  # D4RL left the noisy quaternion unnormalised
        qvel = rng.normal(0.0, RESET_QVEL_STD, size=self._nv)
        self._robot.set_state(qpos, qvel)

    # -- gymnasium API --
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        # The inner reset seeds the generator and draws gymnasium-robotics' own start and goal, which
        # are replaced here; every draw below comes from that seeded generator.
        self.env.reset(seed=seed)
        options = options or {}
        rng: np.random.Generator = self.env.unwrapped.np_random
        start = options.get("start")
        start = self.task.eval_start(rng) if start is None else np.asarray(start, dtype=np.float64)
        goal = options.get("goal")
        goal = self.task.eval_goal(rng) if goal is None else np.asarray(goal, dtype=np.float64)
        self.place_robot(start, rng)
        self.set_goal(goal)
        reached = bool(goal_reached(self.position, self._goal))
        return self.observation(), {"success": reached, "goal": self.goal}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.env.step(action)
        reached = bool(goal_reached(self.position, self._goal))
        terminated = reached and self.terminate_at_goal
        return self.observation(), float(reached), terminated, False, {"success": reached, "goal": self.goal}


def make_maze_env(
    spec: TaskSpec,
    *,
    terminate_at_goal: bool | None = None,
    time_limit: bool = True,
    render_mode: str | None = None,
    width: int | None = None,
    height: int | None = None,
) -> gym.Env:
    """The ``env_factory`` of the maze tasks: D4RL's evaluation episode of ``spec``'s maze.

    Args:
        spec: an antmaze or maze2d task.
        terminate_at_goal: end episodes at the goal; default D4RL's evaluation rule (antmaze yes,
            maze2d no).
        time_limit: wrap in ``TimeLimit(spec.max_episode_steps)``; the collectors count steps
            themselves.
        render_mode: passed to gymnasium-robotics.
        width: width of rendered frames in pixels (gymnasium's default when ``None``).
        height: height of rendered frames in pixels (gymnasium's default when ``None``).

    Returns:
        The environment; ``env.unwrapped`` is gymnasium-robotics' (MuJoCo ``model``/``data``).
    """
    task = MAZE_TASKS[spec.domain]
    _ensure_registered(spec.gym_id)
    kwargs: dict[str, Any] = {
        "maze_map": robotics_map(task),
        "continuing_task": True,  # no termination or goal change of its own: the wrapper decides
        "reset_target": False,
        "render_mode": render_mode,
    }
    kwargs.update({k: v for k, v in (("width", width), ("height", height)) if v is not None})
    with private_tempdir() as folder:
        if task.robot == "ant":
            kwargs["include_cfrc_ext_in_observation"] = False  # contact forces: costly and unused
            # D4RL's ant (0.1 s steps, torque 30, D4RL's contacts); the maze's walls inherit its geom defaults.
            kwargs["xml_file"] = str(write_d4rl_ant_xml(folder))
            kwargs["frame_skip"] = D4RL_ANT.frame_skip
        robotics = gym.make(spec.gym_id, disable_env_checker=True, **{**spec.gym_kwargs, **kwargs}).unwrapped
    terminate = task.robot == "ant" if terminate_at_goal is None else terminate_at_goal
    env: gym.Env = MazeTaskEnv(robotics, task, terminate)
    if time_limit:
        env = gym.wrappers.TimeLimit(env, max_episode_steps=spec.max_episode_steps)
    return env


def _register_maze_tasks() -> None:
    for domain in MAZE_TASKS:
        register_task(dataclasses.replace(TASKS[domain], env_factory=make_maze_env), overwrite=True)


_register_maze_tasks()
