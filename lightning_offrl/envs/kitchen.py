"""Franka Kitchen with D4RL's observation, reward and episode on Gymnasium-Robotics' kitchen model.

D4RL's ``kitchen-{complete,partial,mixed}-v0`` (``d4rl/kitchen``, on adept_envs and mujoco-py) ask a
9-joint Franka arm to finish four sub-tasks in one 280-step episode:

* ``complete`` and ``partial``: microwave, kettle, light switch, slide cabinet
  (``KitchenMicrowaveKettleLightSliderV0``);
* ``mixed``: microwave, kettle, bottom burner, light switch (``KitchenMicrowaveKettleBottomBurnerLightV0``).

The datasets differ (``complete``: demonstrations of exactly these four; ``partial``: all demonstrations, some
of which do them; ``mixed``: all demonstrations, none doing all four), the evaluation tasks are the above.

**Observation** (60 values, D4RL's ``KitchenV0._get_obs``): the 9 robot joint positions ``qpos[0:9]``, the 21
object joint positions ``qpos[9:30]`` (burner knobs and plates, light switch and light, slide cabinet,
left and right hinge doors, microwave door, kettle position and quaternion), then a 30-value goal vector: zero
except at the task's elements, which hold D4RL's goal values (:data:`ELEMENT_QPOS`, :data:`ELEMENT_GOALS`).
Both position blocks carry D4RL's observation noise, ``0.1 * amp * U(-1, 1)`` with the per-joint
amplitudes of ``franka_config.xml`` (robot 0.1, most objects 0.005 or 0.0005, kettle orientation 0.1).

**Reward** (D4RL's ``KitchenBase``): at every step, the number of not-yet-completed sub-tasks whose observed
joint values come within 0.3 (Euclidean) of their goal; a completed sub-task is removed, so an episode's
return is the number of sub-tasks completed, 0 to 4, and D4RL's reference returns are 0 and 4 (the
normalized score is 25 per sub-task). The episode terminates when all four are done, else at 280 steps.
D4RL's *datasets* label rows differently (``generate_kitchen_datasets.py`` turns task removal off): a row's
reward is the number of sub-tasks whose goal its observation satisfies (:func:`markovian_rewards`).

**Dynamics** (D4RL's ``Robot_VelAct``): an action in ``[-1, 1]^9`` is a joint velocity scaled by 2, clipped
to the joints' velocity bounds, integrated over one step (40 x 0.002 s = 0.08 s) from the last *observed*
(noisy) joint positions, clipped to the position bounds and sent to the position actuators.

**Simulator.** The model is Gymnasium-Robotics' ``FrankaKitchen-v1`` (``kitchen_env_model.xml``,
``franka_config.xml``: object joints in D4RL's order, the same 30 start values). Its environment class is not
used: with mujoco 4 its constructor fails (``robot_get_obs`` compares joint types to MuJoCo enums with ``in``,
which mujoco 4's enums no longer satisfy), its default observation noise is 10x smaller than D4RL's, its
observation is a 59-value dictionary with velocities, and it does not carry D4RL's goal vector. The MuJoCo
model itself is Gymnasium-Robotics' port of D4RL's ``franka_kitchen_jntpos_act_ab.xml``; whether the two
files simulate identically was not checked (D4RL's needs mujoco-py, which cannot run here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

from lightning_offrl.envs.tasks import TaskSpec, register_task

# qpos indices of each sub-task's joints and their goals (d4rl/kitchen/kitchen_envs.py).
ELEMENT_QPOS: dict[str, tuple[int, ...]] = {
    "bottom burner": (11, 12),
    "top burner": (15, 16),
    "light switch": (17, 18),
    "slide cabinet": (19,),
    "hinge cabinet": (20, 21),
    "microwave": (22,),
    "kettle": (23, 24, 25, 26, 27, 28, 29),
}
ELEMENT_GOALS: dict[str, tuple[float, ...]] = {
    "bottom burner": (-0.88, -0.01),
    "top burner": (-0.92, -0.01),
    "light switch": (-0.69, -0.05),
    "slide cabinet": (0.37,),
    "hinge cabinet": (0.0, 1.45),
    "microwave": (-0.75,),
    "kettle": (-0.23, 0.75, 1.62, 0.99, 0.0, 0.0, -0.06),
}
COMPLETION_THRESHOLD = 0.3  # D4RL's BONUS_THRESH
NUM_ROBOT_JOINTS = 9
NUM_OBJECT_QPOS = 21
OBS_DIM = 60  # 9 robot + 21 object positions + 30 goal values
ACT_DIM = 9
EPISODE_STEPS = 280  # d4rl/kitchen/__init__.py
NOISE_RATIO = 0.1  # D4RL's robot_noise_ratio, applied to robot and object positions
ACTION_SCALE = 2.0  # D4RL's act_amp: an action of 1 asks for 2 rad/s (or m/s)
FRAME_SKIP = 40  # D4RL's frame_skip: 40 x 0.002 s per step
# D4RL's start state (kitchen_multitask_v0.py, "for the microwave kettle slide hinge").
INIT_QPOS = np.array([
    1.48388023e-01, -1.76848573e00, 1.84390296e00, -2.47685760e00, 2.60252026e-01, 7.12533105e-01,
    1.59515394e00, 4.79267505e-02, 3.71350919e-02, -2.66279850e-04, -5.18043486e-05, 3.12877220e-05,
    -4.51199853e-05, -3.90842156e-06, -4.22629655e-05, 6.28065475e-05, 4.04984708e-05, 4.62730939e-04,
    -2.26906415e-04, -4.65501369e-04, -6.44129196e-03, -1.77048263e-03, 1.08009684e-03, -2.69397440e-01,
    3.50383255e-01, 1.61944683e00, 1.00618764e00, 4.06395120e-03, -6.62095997e-03, -2.68278933e-04,
])


@dataclass(frozen=True)
class KitchenTask:
    """One kitchen task of D4RL.

    Attributes:
        domain: ``kitchen-complete``, ``kitchen-partial`` or ``kitchen-mixed``.
        elements: the four sub-tasks, in D4RL's order.
    """

    domain: str
    elements: tuple[str, ...]

    def goal_vector(self) -> np.ndarray:
        """``(30,)`` D4RL's goal part of the observation: the elements' goals at their qpos indices, else 0."""
        goal = np.zeros(NUM_ROBOT_JOINTS + NUM_OBJECT_QPOS)
        for element in self.elements:
            goal[list(ELEMENT_QPOS[element])] = ELEMENT_GOALS[element]
        return goal


KITCHEN_TASKS: dict[str, KitchenTask] = {
    "kitchen-complete": KitchenTask("kitchen-complete", ("microwave", "kettle", "light switch", "slide cabinet")),
    "kitchen-partial": KitchenTask("kitchen-partial", ("microwave", "kettle", "light switch", "slide cabinet")),
    "kitchen-mixed": KitchenTask("kitchen-mixed", ("microwave", "kettle", "bottom burner", "light switch")),
}


def completed_elements(observations: np.ndarray, elements: tuple[str, ...]) -> np.ndarray:
    """Which sub-tasks each observation satisfies (D4RL's test: joint values within 0.3 of the goal).

    Args:
        observations: ``(..., 60)`` D4RL kitchen observations (only ``[..., :30]`` is read).
        elements: the sub-tasks to test.

    Returns:
        ``(..., len(elements))`` bool.
    """
    observations = np.asarray(observations)
    done = [
        np.linalg.norm(observations[..., list(ELEMENT_QPOS[e])] - np.asarray(ELEMENT_GOALS[e]), axis=-1)
        < COMPLETION_THRESHOLD
        for e in elements
    ]
    return np.stack(done, axis=-1)


def markovian_rewards(observations: np.ndarray, elements: tuple[str, ...]) -> np.ndarray:
    """D4RL's dataset reward of each row: how many of ``elements`` its observation satisfies.

    ``generate_kitchen_datasets.py`` labels every row of D4RL's files this way (task removal off).

    Args:
        observations: ``(N, 60)``.
        elements: the task's sub-tasks.

    Returns:
        ``(N,)`` float32 in ``0..len(elements)``.
    """
    return completed_elements(observations, elements).sum(axis=-1).astype(np.float32)


def d4rl_observations_from_robotics(observations: np.ndarray, task: KitchenTask) -> np.ndarray:
    """D4RL's 60-value observations from Gymnasium-Robotics' 59-value ``observation`` entries.

    Gymnasium-Robotics (and Minari's ``D4RL/kitchen/*-v2``) store robot positions (9), robot velocities (9),
    object positions (21) and object velocities (20); D4RL keeps the positions and appends the goal vector.

    Args:
        observations: ``(N, 59)``.
        task: gives the goal vector.

    Returns:
        ``(N, 60)`` float32.
    """
    observations = np.asarray(observations)
    robot = observations[:, :NUM_ROBOT_JOINTS]
    objects = observations[:, 2 * NUM_ROBOT_JOINTS: 2 * NUM_ROBOT_JOINTS + NUM_OBJECT_QPOS]
    goal = np.broadcast_to(task.goal_vector(), (len(observations), NUM_ROBOT_JOINTS + NUM_OBJECT_QPOS))
    return np.concatenate([robot, objects, goal], axis=1).astype(np.float32)


def _robotics_asset(relative: str) -> str:
    from lightning_offrl.envs.tasks import import_gymnasium_robotics

    gymnasium_robotics = import_gymnasium_robotics()

    return os.path.join(os.path.dirname(gymnasium_robotics.__file__), "envs", "assets", "kitchen_franka", relative)


def _read_joint_config() -> dict[str, np.ndarray]:
    """Position/velocity bounds and noise amplitudes of the 30 joints, from ``franka_config.xml``."""
    from lightning_offrl.envs.tasks import import_gymnasium_robotics

    import_gymnasium_robotics()
    from gymnasium_robotics.envs.franka_kitchen.utils import get_config_root_node, read_config_from_node

    root, _ = get_config_root_node(config_file_name=_robotics_asset("franka_assets/franka_config.xml"))
    size = NUM_ROBOT_JOINTS + NUM_OBJECT_QPOS
    out = {key: np.zeros((size, 2) if "bound" in key else size) for key in ("pos_bound", "vel_bound")}
    out["pos_noise_amp"] = np.zeros(size)
    for i in range(size):
        node = f"qpos{i}"
        out["pos_bound"][i] = read_config_from_node(root, node, "pos_bound", float)
        out["vel_bound"][i] = read_config_from_node(root, node, "vel_bound", float)
        out["pos_noise_amp"][i] = read_config_from_node(root, node, "pos_noise_amp", float)[0]
    return out


class D4RLKitchenEnv(MujocoEnv):
    """D4RL's kitchen task on Gymnasium-Robotics' kitchen model (see the module docstring).

    Args:
        task: the D4RL task (its four sub-tasks).
        render_mode: MuJoCo renderer mode.

    ``info`` carries ``completed`` (the sub-tasks completed so far, in completion order) and
    ``num_completed``.
    """

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 12}

    def __init__(self, task: KitchenTask, render_mode: str | None = None) -> None:
        observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float64)
        super().__init__(
            _robotics_asset("kitchen_assets/kitchen_env_model.xml"), FRAME_SKIP, observation_space,
            render_mode=render_mode,
        )
        self.task = task
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(ACT_DIM,), dtype=np.float32)
        config = _read_joint_config()
        self._pos_bound = config["pos_bound"][:NUM_ROBOT_JOINTS]
        self._vel_bound = config["vel_bound"][:NUM_ROBOT_JOINTS]
        self._noise_amp = NOISE_RATIO * config["pos_noise_amp"]
        self._goal = task.goal_vector()
        self._remaining: list[str] = list(task.elements)
        self._completed: list[str] = []
        self._observed_robot_qpos = INIT_QPOS[:NUM_ROBOT_JOINTS].copy()

    # -- observation and reward --
    def _get_obs(self) -> np.ndarray:
        positions = self.data.qpos[: NUM_ROBOT_JOINTS + NUM_OBJECT_QPOS].copy()
        positions += self._noise_amp * self.np_random.uniform(-1.0, 1.0, size=positions.shape)
        # D4RL's velocity controller integrates from the last observed (noisy) robot positions.
        self._observed_robot_qpos = positions[:NUM_ROBOT_JOINTS].copy()
        return np.concatenate([positions, self._goal])

    @property
    def completed(self) -> list[str]:
        """The sub-tasks completed in this episode, in completion order."""
        return list(self._completed)

    def _complete_tasks(self, obs: np.ndarray) -> float:
        done = completed_elements(obs, tuple(self._remaining))
        newly = [element for element, hit in zip(self._remaining, done) if hit]
        for element in newly:
            self._remaining.remove(element)
            self._completed.append(element)
        return float(len(newly))

    # -- gymnasium API --
    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        velocity = ACTION_SCALE * np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        velocity = np.clip(velocity, self._vel_bound[:, 0], self._vel_bound[:, 1])
        target = self._observed_robot_qpos + velocity * self.dt
        target = np.clip(target, self._pos_bound[:, 0], self._pos_bound[:, 1])
        self.do_simulation(target, self.frame_skip)
        obs = self._get_obs()
        reward = self._complete_tasks(obs)
        if self.render_mode == "human":
            self.render()
        info = {"completed": self.completed, "num_completed": len(self._completed)}
        return obs, reward, not self._remaining, False, info

    def reset_model(self) -> np.ndarray:
        self._remaining = list(self.task.elements)
        self._completed = []
        self.set_state(INIT_QPOS.copy(), np.zeros(self.model.nv))
        return self._get_obs()

    def _get_reset_info(self) -> dict[str, Any]:
        return {"completed": [], "num_completed": 0}


def make_kitchen_env(spec: TaskSpec, *, render_mode: str | None = None) -> gym.Env:
    """The ``env_factory`` of the kitchen tasks: ``TimeLimit(D4RLKitchenEnv, 280)``."""
    env = D4RLKitchenEnv(KITCHEN_TASKS[spec.domain], render_mode=render_mode)
    return gym.wrappers.TimeLimit(env, max_episode_steps=spec.max_episode_steps)


def _register_kitchen_tasks() -> None:
    for domain in KITCHEN_TASKS:
        # D4RL's reference returns: 0 and 4 sub-tasks (d4rl/kitchen/__init__.py).
        register_task(TaskSpec(domain, "FrankaKitchen-v1", 0.0, 4.0, EPISODE_STEPS, env_factory=make_kitchen_env),
                      overwrite=True)


_register_kitchen_tasks()
