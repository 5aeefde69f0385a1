"""D4RL's antmaze ant: its physics constants in the maze and goal-reaching tasks, and the upright measure."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from lightning_offrl.collect.antmaze import REACH_TASK, TRAIN_TASK
from lightning_offrl.envs.d4rl_ant import D4RL_ANT, is_flipped, torso_up
from lightning_offrl.envs.tasks import make_env


def _ant_geoms(model: mujoco.MjModel) -> list[int]:
    torso = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "torso")
    return [g for g in range(model.ngeom) if model.body_rootid[model.geom_bodyid[g]] == torso]


@pytest.mark.parametrize("name", ["antmaze-umaze-v2", "antmaze-medium-play-v2", "antmaze-large-diverse-v2",
                                  TRAIN_TASK, REACH_TASK])
def test_ant_tasks_simulate_d4rls_ant(name: str) -> None:
    # d4rl/locomotion/assets/ant.xml: <option timestep="0.02" integrator="RK4">, motors ctrlrange +-30 reached
    # through NormalizedBoxEnv (30 a), geom defaults solref=".02 1" solimp=".8 .8 .01" friction="1 0.5 0.5";
    # d4rl/locomotion/ant.py: frame_skip 5.
    env = make_env(name)
    unwrapped = env.unwrapped
    model = unwrapped.model
    assert model.opt.timestep == pytest.approx(0.02)
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    ant = getattr(unwrapped, "ant_env", unwrapped)
    assert ant.frame_skip == 5 and ant.dt == pytest.approx(0.1) == pytest.approx(D4RL_ANT.dt)
    assert model.nu == 8
    torque_at_full_action = model.actuator_gear[:, 0] * model.actuator_ctrlrange[:, 1]
    np.testing.assert_allclose(torque_at_full_action, 30.0)
    np.testing.assert_allclose(model.actuator_ctrlrange, [[-1.0, 1.0]] * 8)
    assert env.action_space.low.min() == -1.0 and env.action_space.high.max() == 1.0
    geoms = _ant_geoms(model)
    assert len(geoms) == 13  # the torso sphere and three capsules per leg
    walls = [g for g in range(model.ngeom) if model.geom_bodyid[g] == 0 and model.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX]
    for geom in geoms + walls:  # the maze's walls inherit D4RL's geom defaults too
        np.testing.assert_allclose(model.geom_solref[geom], [0.02, 1.0])
        np.testing.assert_allclose(model.geom_solimp[geom][:3], [0.8, 0.8, 0.01])
        np.testing.assert_allclose(model.geom_friction[geom], [1.0, 0.5, 0.5])
    if name.startswith("antmaze"):
        assert walls, "the maze has walls"
    env.close()


def test_d4rls_ant_does_not_flip_under_random_actions() -> None:
    # The behaviour that separates D4RL's ant from Ant-v5 (gear 150, 0.05 s steps), which flips within a
    # few hundred uniform-random steps: at a fifth of the torque, uniform actions keep it on its feet.
    env = make_env("antmaze-umaze-v2")
    rng = np.random.default_rng(0)
    lowest = 1.0
    for episode in range(3):
        env.reset(seed=episode)
        for _ in range(300):
            env.step(rng.uniform(-1.0, 1.0, size=8))
            lowest = min(lowest, float(torso_up(env.unwrapped.data.qpos)))
    env.close()
    assert lowest > 0.0


def test_torso_up_reads_the_quaternion() -> None:
    def qpos(angle: float, axis: tuple[float, float, float]) -> np.ndarray:
        half = angle / 2.0
        return np.array([0.0, 0.0, 0.5, math.cos(half), *(math.sin(half) * np.array(axis))])

    assert torso_up(qpos(0.0, (1, 0, 0))) == pytest.approx(1.0)
    assert torso_up(qpos(math.pi / 2, (1, 0, 0))) == pytest.approx(0.0, abs=1e-12)
    assert torso_up(qpos(math.pi, (0, 1, 0))) == pytest.approx(-1.0)
    assert torso_up(qpos(1.3, (0, 0, 1))) == pytest.approx(1.0)  # turning on the spot is upright
    batch = np.stack([qpos(0.2, (1, 0, 0)), qpos(2.0, (0, 1, 0))])
    np.testing.assert_array_equal(is_flipped(batch), [False, True])
    unnormalised = qpos(2.5, (1, 0, 0))
    unnormalised[3:7] *= 1.7  # D4RL's reset noise leaves quaternions unnormalised
    assert torso_up(unnormalised) == pytest.approx(math.cos(2.5))
