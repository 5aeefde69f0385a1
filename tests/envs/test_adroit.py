"""Adroit tasks: D4RL's shapes, episode lengths, rewards and pen termination on Gymnasium-Robotics' hands."""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from lightning_offrl.envs.adroit import ADROIT_TASKS, D4RLAdroitEnv, pen_reward
from lightning_offrl.envs.evaluation import evaluate_policy
from lightning_offrl.envs.tasks import get_task, make_env

# D4RL's files: observation / action sizes and time limits (hand_manipulation_suite/__init__.py MAX_STEPS).
D4RL_LAYOUT = {"pen": (45, 24, 100), "door": (39, 28, 200), "hammer": (46, 26, 200), "relocate": (39, 30, 200)}


def inner(env: gym.Env) -> D4RLAdroitEnv:
    while not isinstance(env, D4RLAdroitEnv):
        env = env.env  # type: ignore[attr-defined]
    return env


@pytest.mark.parametrize("domain", sorted(D4RL_LAYOUT))
def test_shapes_lengths_and_references_are_d4rls(domain: str) -> None:
    obs_dim, act_dim, steps = D4RL_LAYOUT[domain]
    for level in ("human", "cloned", "expert"):
        task = get_task(f"{domain}-{level}-v1")
        assert (task.domain, task.max_episode_steps) == (domain, steps)
    env = make_env(f"{domain}-human-v1", seed=0)
    try:
        obs, _ = env.reset(seed=0)
        assert obs.shape == env.observation_space.shape == (obs_dim,)
        assert env.action_space.shape == (act_dim,)
        assert float(env.action_space.low.min()) == -1.0 and float(env.action_space.high.max()) == 1.0
        assert env._max_episode_steps == steps  # type: ignore[attr-defined]
    finally:
        env.close()
    spec = ADROIT_TASKS[domain]
    assert (get_task(domain).ref_min_score, get_task(domain).ref_max_score) == (spec.ref_min_score, spec.ref_max_score)


def test_reference_returns_are_d4rls() -> None:
    expected = {"pen": (96.262799, 3076.8331), "hammer": (-274.856578, 12794.1348),
                "door": (-56.512833, 2880.5693), "relocate": (-6.425911, 4233.8778)}
    for domain, (low, high) in expected.items():
        task = get_task(domain)
        assert task.ref_min_score == low and abs(task.ref_max_score - high) < 1e-3


def test_pen_reward_is_the_robotics_reward_and_door_differs_by_the_sign_of_the_grasp_term() -> None:
    # Pen's dense reward is D4RL's in Gymnasium-Robotics too; door (and hammer, relocate) flipped the sign of
    # the first distance term in Gymnasium-Robotics 1.2.1: +0.1 |palm - handle| there, -0.1 in D4RL.
    rng = np.random.default_rng(0)
    pen = make_env("pen-human-v1", seed=0)
    pen.reset(seed=0)
    for _ in range(5):
        _, reward, _, _, info = pen.step(rng.uniform(-0.2, 0.2, size=24))
        assert reward == pytest.approx(info["robotics_reward"], abs=1e-9)
    pen.close()
    door = make_env("door-human-v1", seed=0)
    door.reset(seed=0)
    robot = door.unwrapped
    for _ in range(5):
        _, reward, _, _, info = door.step(rng.uniform(-1, 1, size=28))
        grasp = np.linalg.norm(robot.data.site_xpos[robot.grasp_site_id] - robot.data.site_xpos[robot.handle_site_id])
        assert reward == pytest.approx(info["robotics_reward"] - 0.2 * grasp, abs=1e-9)
    door.close()


def test_a_dropped_pen_ends_the_episode_with_d4rls_penalty() -> None:
    env = make_env("pen-human-v1", seed=0)
    env.reset(seed=0)
    robot = env.unwrapped
    reward_up, dropped_up = pen_reward(robot)
    assert not dropped_up
    # Move the pen 0.5 m down along whichever of its slide joints points down in the world (its body frame is
    # rotated, so that is not OBJTz).
    start_z = robot.data.xpos[robot.obj_body_id][2]
    for name in ("OBJTx", "OBJTy", "OBJTz"):
        address = robot.model.jnt_qposadr[mujoco.mj_name2id(robot.model, mujoco.mjtObj.mjOBJ_JOINT, name)]
        saved = robot.data.qpos[address]
        for sign in (1.0, -1.0):
            robot.data.qpos[address] = saved + sign * 0.5
            mujoco.mj_forward(robot.model, robot.data)
            if robot.data.xpos[robot.obj_body_id][2] < start_z - 0.4:
                break
        else:
            robot.data.qpos[address] = saved
            continue
        break
    mujoco.mj_forward(robot.model, robot.data)
    reward_down, dropped = pen_reward(robot)
    assert dropped and reward_down < reward_up - 4.0
    _, _, terminated, truncated, _ = env.step(np.zeros(24))
    assert terminated and not truncated
    env.close()


def test_evaluation_episode_gets_a_normalized_score() -> None:
    result = evaluate_policy(lambda obs: np.zeros((len(obs), 28), np.float32), "door-human-v1", 1, seed=0)
    assert result.lengths.tolist() == [200]
    score = result.mean_normalized_score("door-human-v1")
    expected = 100 * (result.returns[0] + 56.512833) / (2880.5693087298737 + 56.512833)
    assert np.isfinite(score) and score == pytest.approx(expected)
