"""Adroit (pen, door, hammer, relocate) with D4RL's task semantics on Gymnasium-Robotics' Adroit hands.

D4RL's ``{pen,door,hammer,relocate}-{human,cloned,expert}-v1`` evaluate on ``d4rl/hand_manipulation_suite``
(mujoco-py). Gymnasium-Robotics rebuilt those environments as ``AdroitHand{Pen,Door,Hammer,Relocate}-v1``
on the official ``mujoco`` bindings with the same models, actuator gains, action scaling (``[-1, 1]``
mapped to each actuator's range), frame skip (5 x 0.002 s) and observations:

==========  ===========  ======  ======================================================================
task        obs / act    steps   observation (both D4RL's ``get_obs`` and Gymnasium-Robotics' ``_get_obs``)
==========  ===========  ======  ======================================================================
pen         45 / 24      100     qpos[:-6] (24), pen position (3), pen velocity (6), pen and target
                                 orientations (3 + 3), position and orientation errors (3 + 3)
door        39 / 28      200     qpos[1:-2] (27), latch, hinge angle, palm (3), handle (3), palm - handle
                                 (3), door open flag (+-1)
hammer      46 / 26      200     qpos[:-6] (27), clipped object velocities (6), palm (3), hammer position
                                 (3) and Euler angles (3), nail (3), clipped nail impact sensor
relocate    39 / 30      200     qpos[:-6] (30), palm - ball, palm - target, ball - target (3 each)
==========  ===========  ======  ======================================================================

Two things differ, and :class:`D4RLAdroitEnv` puts D4RL's back:

* **Rewards.** Gymnasium-Robotics 1.2.1 changed the dense rewards of door, hammer and relocate without a
  new version number: the first term (palm to handle / hammer / ball) is ``+0.1 * distance`` there and
  ``-0.1 * distance`` in D4RL. The wrapper computes D4RL's reward of every task from the simulator state
  (``door_v0.py``, ``hammer_v0.py``, ``relocate_v0.py``, ``pen_v0.py``), so returns are on the scale of
  D4RL's reference returns whatever Gymnasium-Robotics version is installed.
* **Pen termination.** D4RL ends a pen episode when the pen falls (its centre below z = 0.075);
  Gymnasium-Robotics never terminates. The wrapper ends the episode there, so a dropped pen stops
  collecting the ``-5`` per-step penalty, as in D4RL's evaluation.

Episode lengths are D4RL's registrations (``hand_manipulation_suite/__init__.py``: pen 100, the others
200; Gymnasium-Robotics registers 200 for all four). Reference returns are D4RL's (``infos.py``).
Importing this module registers the four tasks in :mod:`lightning_offrl.envs.tasks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from lightning_offrl.envs.tasks import TaskSpec, _ensure_registered, register_task

# D4RL ends a pen episode once the pen's centre is this low (pen_v0.py: obj_pos[2] < 0.075).
PEN_DROP_HEIGHT = 0.075


@dataclass(frozen=True)
class AdroitTask:
    """One Adroit task of D4RL.

    Attributes:
        domain: D4RL's prefix (``pen``, ``door``, ``hammer``, ``relocate``).
        gym_id: the Gymnasium-Robotics environment.
        ref_min_score: D4RL's random-policy return.
        ref_max_score: D4RL's expert return.
        max_episode_steps: D4RL's time limit.
        obs_dim: observation size of D4RL's files and of the environment.
        act_dim: action size.
    """

    domain: str
    gym_id: str
    ref_min_score: float
    ref_max_score: float
    max_episode_steps: int
    obs_dim: int
    act_dim: int


# Reference returns: d4rl/hand_manipulation_suite/__init__.py (and infos.py); lengths: its MAX_STEPS.
ADROIT_TASKS: dict[str, AdroitTask] = {
    "pen": AdroitTask("pen", "AdroitHandPen-v1", 96.262799, 3076.8331017826877, 100, 45, 24),
    "door": AdroitTask("door", "AdroitHandDoor-v1", -56.512833, 2880.5693087298737, 200, 39, 28),
    "hammer": AdroitTask("hammer", "AdroitHandHammer-v1", -274.856578, 12794.134825156867, 200, 46, 26),
    "relocate": AdroitTask("relocate", "AdroitHandRelocate-v1", -6.425911, 4233.877797728884, 200, 39, 30),
}


# ---------------------------------------------------------------------------------- D4RL rewards
def pen_reward(env: Any) -> tuple[float, bool]:
    """D4RL's pen reward (``pen_v0.py``) and whether the pen has fallen.

    Args:
        env: the unwrapped ``AdroitHandPenEnv`` after a step.

    Returns:
        ``(reward, dropped)``.
    """
    data = env.data
    obj_pos = data.xpos[env.obj_body_id]
    dist = float(np.linalg.norm(obj_pos - data.site_xpos[env.eps_ball_site_id]))
    obj_orien = (data.site_xpos[env.obj_t_site_id] - data.site_xpos[env.obj_b_site_id]) / env.pen_length
    target_orien = (data.site_xpos[env.tar_t_site_id] - data.site_xpos[env.tar_b_site_id]) / env.tar_length
    similarity = float(np.dot(obj_orien, target_orien))
    reward = -dist + similarity
    if dist < 0.075 and similarity > 0.9:  # close to the target orientation
        reward += 10.0
    if dist < 0.075 and similarity > 0.95:
        reward += 50.0
    dropped = bool(obj_pos[2] < PEN_DROP_HEIGHT)
    if dropped:
        reward -= 5.0
    return reward, dropped


def door_reward(env: Any) -> tuple[float, bool]:
    """D4RL's door reward (``door_v0.py``); the door never ends an episode."""
    data = env.data
    hinge = float(data.qpos[env.door_hinge_addrs])
    reward = -0.1 * float(np.linalg.norm(data.site_xpos[env.grasp_site_id] - data.site_xpos[env.handle_site_id]))
    reward += -0.1 * (hinge - 1.57) ** 2  # open the door
    reward += -1e-5 * float(np.sum(data.qvel**2))  # velocity cost
    reward += 2.0 * (hinge > 0.2) + 8.0 * (hinge > 1.0) + 10.0 * (hinge > 1.35)  # D4RL's bonuses
    return reward, False


def hammer_reward(env: Any) -> tuple[float, bool]:
    """D4RL's hammer reward (``hammer_v0.py``)."""
    data = env.data
    hammer = data.xpos[env.obj_body_id]
    head = data.site_xpos[env.tool_site_id]
    nail = data.site_xpos[env.target_obj_site_id]
    nail_depth = float(np.linalg.norm(nail - data.site_xpos[env.goal_site_id]))
    reward = -0.1 * float(np.linalg.norm(data.site_xpos[env.S_grasp_site_id] - hammer))  # grasp the hammer
    reward -= float(np.linalg.norm(head - nail))  # head to the nail
    reward -= 10.0 * nail_depth  # nail into the board
    reward -= 1e-2 * float(np.linalg.norm(data.qvel))  # velocity penalty
    if hammer[2] > 0.04 and head[2] > 0.04:  # hammer lifted
        reward += 2.0
    reward += 25.0 * (nail_depth < 0.020) + 75.0 * (nail_depth < 0.010)
    return reward, False


def relocate_reward(env: Any) -> tuple[float, bool]:
    """D4RL's relocate reward (``relocate_v0.py``)."""
    data = env.data
    ball = data.xpos[env.obj_body_id]
    palm = data.site_xpos[env.S_grasp_site_id]
    target = data.site_xpos[env.target_obj_site_id]
    to_target = float(np.linalg.norm(ball - target))
    reward = -0.1 * float(np.linalg.norm(palm - ball))  # hand to the ball
    if ball[2] > 0.04:  # ball lifted off the table
        reward += 1.0 - 0.5 * float(np.linalg.norm(palm - target)) - 0.5 * to_target
    reward += 10.0 * (to_target < 0.1) + 20.0 * (to_target < 0.05)
    return reward, False


REWARDS: dict[str, Callable[[Any], tuple[float, bool]]] = {
    "pen": pen_reward, "door": door_reward, "hammer": hammer_reward, "relocate": relocate_reward,
}


class D4RLAdroitEnv(gym.Wrapper):
    """A Gymnasium-Robotics Adroit hand with D4RL's reward and termination (see the module docstring).

    Args:
        env: ``AdroitHand*-v1`` (dense rewards), unwrapped or wrapped.
        domain: ``pen``, ``door``, ``hammer`` or ``relocate``.

    ``info`` keeps Gymnasium-Robotics' ``success`` and adds ``robotics_reward`` (the reward the inner
    environment returned).
    """

    def __init__(self, env: gym.Env, domain: str) -> None:
        super().__init__(env)
        self.domain = domain
        self._reward = REWARDS[domain]

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, robotics_reward, terminated, truncated, info = self.env.step(action)
        reward, ended = self._reward(self.env.unwrapped)
        info = {**info, "robotics_reward": float(robotics_reward)}
        return obs, float(reward), bool(terminated or ended), bool(truncated), info


def make_adroit_env(spec: TaskSpec, *, render_mode: str | None = None) -> gym.Env:
    """The ``env_factory`` of the Adroit tasks: D4RL's evaluation episode of ``spec``.

    Args:
        spec: an Adroit task.
        render_mode: passed to Gymnasium-Robotics.

    Returns:
        ``TimeLimit(D4RLAdroitEnv(AdroitHand*-v1), D4RL's length)``.
    """
    _ensure_registered(spec.gym_id)
    inner = gym.make(spec.gym_id, max_episode_steps=None, disable_env_checker=True, render_mode=render_mode,
                     **spec.gym_kwargs).unwrapped
    return gym.wrappers.TimeLimit(D4RLAdroitEnv(inner, spec.domain), max_episode_steps=spec.max_episode_steps)


def _register_adroit_tasks() -> None:
    for task in ADROIT_TASKS.values():
        register_task(
            TaskSpec(task.domain, task.gym_id, task.ref_min_score, task.ref_max_score, task.max_episode_steps,
                     {"reward_type": "dense"}, env_factory=make_adroit_env),
            overwrite=True,
        )


_register_adroit_tasks()
