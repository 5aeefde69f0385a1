"""Kitchen tasks: D4RL's 60-value observation, sub-task completion reward, termination and episode length."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from lightning_offrl.envs.evaluation import evaluate_policy
from lightning_offrl.envs.kitchen import (
    ELEMENT_GOALS,
    ELEMENT_QPOS,
    INIT_QPOS,
    KITCHEN_TASKS,
    d4rl_observations_from_robotics,
    markovian_rewards,
)
from lightning_offrl.envs.tasks import get_task, make_env


def test_tasks_are_d4rls() -> None:
    assert KITCHEN_TASKS["kitchen-complete"].elements == ("microwave", "kettle", "light switch", "slide cabinet")
    assert KITCHEN_TASKS["kitchen-partial"].elements == KITCHEN_TASKS["kitchen-complete"].elements
    assert KITCHEN_TASKS["kitchen-mixed"].elements == ("microwave", "kettle", "bottom burner", "light switch")
    for level in ("complete", "partial", "mixed"):
        task = get_task(f"kitchen-{level}-v0")
        assert (task.ref_min_score, task.ref_max_score, task.max_episode_steps) == (0.0, 4.0, 280)


def test_observation_is_positions_and_goal_vector() -> None:
    env = make_env("kitchen-mixed-v0", seed=0)
    obs, info = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == (60,) and env.action_space.shape == (9,)
    assert info == {"completed": [], "num_completed": 0}
    # Positions are the start state up to D4RL's noise (0.1 x amplitude <= 0.01); the goal part is exact.
    np.testing.assert_allclose(obs[:30], INIT_QPOS, atol=0.0101)
    goal = np.zeros(30)
    for element in ("microwave", "kettle", "bottom burner", "light switch"):
        goal[list(ELEMENT_QPOS[element])] = ELEMENT_GOALS[element]
    np.testing.assert_array_equal(obs[30:], goal)
    assert env._max_episode_steps == 280  # type: ignore[attr-defined]
    env.close()


def set_joint(env, qpos_index: int, value: float) -> None:  # noqa: ANN001
    robot = env.unwrapped
    robot.data.qpos[qpos_index] = value
    robot.data.qvel[:] = 0.0
    mujoco.mj_forward(robot.model, robot.data)


def test_opening_the_microwave_completes_one_subtask_once() -> None:
    env = make_env("kitchen-complete-v0", seed=0)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.zeros(9))
    assert (reward, info["num_completed"], terminated) == (0.0, 0, False)
    set_joint(env, ELEMENT_QPOS["microwave"][0], ELEMENT_GOALS["microwave"][0])
    _, reward, terminated, _, info = env.step(np.zeros(9))
    assert (reward, info["num_completed"], info["completed"], terminated) == (1.0, 1, ["microwave"], False)
    # D4RL removes a completed sub-task: it is not rewarded again while the door stays open.
    _, reward, _, _, info = env.step(np.zeros(9))
    assert (reward, info["num_completed"]) == (0.0, 1)
    # The other three at once: reward 3, all four done, the episode ends.
    for element in ("light switch", "slide cabinet", "kettle"):
        for index, value in zip(ELEMENT_QPOS[element], ELEMENT_GOALS[element]):
            env.unwrapped.data.qpos[index] = value
    set_joint(env, ELEMENT_QPOS["microwave"][0], ELEMENT_GOALS["microwave"][0])
    _, reward, terminated, _, info = env.step(np.zeros(9))
    assert (reward, info["num_completed"], terminated) == (3.0, 4, True)
    env.close()


def test_dataset_rewards_count_satisfied_subtasks_per_row() -> None:
    elements = KITCHEN_TASKS["kitchen-complete"].elements
    rows = np.tile(np.concatenate([INIT_QPOS, KITCHEN_TASKS["kitchen-complete"].goal_vector()]), (3, 1))
    rows[1, 22] = -0.75  # microwave open
    rows[2, 22], rows[2, 19] = -0.75, 0.37  # and the slide cabinet
    np.testing.assert_array_equal(markovian_rewards(rows, elements), [0.0, 1.0, 2.0])


def test_robotics_observations_become_d4rls_layout() -> None:
    robotics = np.arange(2 * 59, dtype=np.float64).reshape(2, 59)
    task = KITCHEN_TASKS["kitchen-mixed"]
    d4rl = d4rl_observations_from_robotics(robotics, task)
    assert d4rl.shape == (2, 60)
    np.testing.assert_array_equal(d4rl[:, :9], robotics[:, :9])
    np.testing.assert_array_equal(d4rl[:, 9:30], robotics[:, 18:39])
    np.testing.assert_allclose(d4rl[0, 30:], task.goal_vector(), rtol=1e-6)  # stored as float32


@pytest.mark.slow
def test_evaluation_episode_gets_a_normalized_score() -> None:
    result = evaluate_policy(lambda obs: np.zeros((len(obs), 9), np.float32), "kitchen-complete-v0", 1, seed=0)
    assert result.lengths.tolist() == [280] and result.returns.tolist() == [0.0]
    assert result.mean_normalized_score("kitchen-complete-v0") == 0.0
