"""AntMaze replicas: the goal-reaching ant (training, resume, export), navigation, D4RL's rows, a tiny fit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mujoco
import numpy as np
import pytest
import torch

from lightning_offrl.collect.antmaze import (
    ACT_DIM,
    EXPORT_COMMAND,
    POLICY_OBS_DIM,
    TRAIN_COMMAND,
    AntNavigator,
    build_antmaze,
    collect_antmaze,
    draw_start_and_goal,
    export_goal_reaching_policy,
    goal_reaching_config,
    heading_frame,
    policy_observation,
    load_goal_reaching_policy,
    replica_statistics,
    save_goal_reaching_policy,
    train_goal_reaching_ant,
)
from lightning_offrl.collect.maze_planner import GridPlanner
from lightning_offrl.collect.policies import POLICY_DIR_ENV
from lightning_offrl.data.registry import get_dataset_spec, replica_inputs
from lightning_offrl.data.sources import resolve_dataset
from lightning_offrl.envs.d4rl_ant import is_flipped
from lightning_offrl.envs.mazes import goal_reached, maze_task
from lightning_offrl.envs.tasks import make_env
from lightning_offrl.errors import ConfigError, DatasetError
from lightning_offrl.networks import TanhGaussianActor

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.fixture()
def tiny_policy_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A policy folder holding an untrained 29 -> 8 actor with one hidden layer of 8."""
    torch.manual_seed(0)
    folder = tmp_path / "policies"
    save_goal_reaching_policy(TanhGaussianActor(POLICY_OBS_DIM, ACT_DIM, (8,)), [8], {"train_steps": 0},
                              folder / "antgoal" / "goal_reaching.pt")
    monkeypatch.setenv(POLICY_DIR_ENV, str(folder))
    return folder


def test_builder_fails_clearly_without_the_goal_reaching_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(POLICY_DIR_ENV, str(tmp_path / "empty"))
    with pytest.raises(DatasetError) as error:
        resolve_dataset("antmaze-umaze-diverse-v2", source="replica", num_steps=100, progress=False)
    message = str(error.value)
    for expected in ("goal-reaching ant policy", str(tmp_path / "empty" / "antgoal" / "goal_reaching.pt"),
                     TRAIN_COMMAND, EXPORT_COMMAND, "D4RL/antmaze/umaze-diverse-v1", "data.path"):
        assert expected in message


def test_replicas_record_the_goal_reaching_policy_they_use(
    tiny_policy_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    spec = get_dataset_spec("antmaze-umaze-diverse-v2")
    shipped = tiny_policy_dir / "antgoal" / "goal_reaching.pt"
    assert [str(file) for file in replica_inputs(spec)] == [str(shipped)]
    monkeypatch.setenv(POLICY_DIR_ENV, str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="goal-reaching ant policy"):
        replica_inputs(spec)


def test_heading_frame_turns_with_the_ant_and_has_d4rls_norm() -> None:
    rng = np.random.default_rng(0)
    offset = rng.normal(size=(16, 2)) * 5
    yaw = rng.uniform(-np.pi, np.pi, size=16)
    qpos = np.zeros((16, 15))
    qpos[:, 3], qpos[:, 6] = np.cos(yaw / 2), np.sin(yaw / 2)  # a rotation about z
    features = heading_frame(qpos, offset)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 10.0)
    # Turning both the ant and the goal leaves the input unchanged.
    turn = 0.7
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    turned = qpos.copy()
    turned[:, 3], turned[:, 6] = np.cos((yaw + turn) / 2), np.sin((yaw + turn) / 2)
    np.testing.assert_allclose(heading_frame(turned, offset @ rotation.T), features, atol=1e-9)
    # An ant facing +x sees a goal straight ahead as (10, 0).
    ahead = heading_frame(np.array([[0, 0, 0.75, 1, 0, 0, 0] + [0] * 8]), np.array([[3.0, 0.0]]))
    np.testing.assert_allclose(ahead, [[10.0, 0.0]], atol=1e-12)


def test_policy_inputs_give_goal_and_torso_velocity_in_the_heading_frame() -> None:
    rng = np.random.default_rng(1)
    yaw = rng.uniform(-np.pi, np.pi, size=8)
    qpos = rng.normal(size=(8, 15))
    qpos[:, 3:7] = np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], axis=1)
    qvel, offset = rng.normal(size=(8, 14)), rng.normal(size=(8, 2)) * 5
    features = policy_observation(qpos, qvel, offset)
    assert features.shape == (8, 29) and features.dtype == np.float32
    np.testing.assert_allclose(features[:, :13], qpos[:, 2:15], rtol=1e-6)
    np.testing.assert_allclose(features[:, 15:27], qvel[:, 2:14], rtol=1e-6)  # the rest of qvel as it is
    # Turning the whole scene (ant, its velocity, the goal) about z leaves the inputs unchanged ...
    turn = 1.1
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    turned_qpos, turned_qvel = qpos.copy(), qvel.copy()
    turned_qpos[:, 3], turned_qpos[:, 6] = np.cos((yaw + turn) / 2), np.sin((yaw + turn) / 2)
    turned_qvel[:, :2] = qvel[:, :2] @ rotation.T
    turned = policy_observation(turned_qpos, turned_qvel, offset @ rotation.T)
    np.testing.assert_allclose(turned[:, 13:15], features[:, 13:15], atol=1e-5)
    np.testing.assert_allclose(turned[:, 27:], features[:, 27:], atol=1e-5)
    # ... and an ant facing +y that moves along +y sees its speed straight ahead.
    facing_y = np.zeros((1, 15))
    facing_y[0, 3], facing_y[0, 6] = np.cos(np.pi / 4), np.sin(np.pi / 4)
    moving_y = np.zeros((1, 14))
    moving_y[0, 1] = 2.0
    ahead = policy_observation(facing_y, moving_y, np.array([[0.0, 3.0]]))
    np.testing.assert_allclose(ahead[0, 13:15], [2.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(ahead[0, 27:], [10.0, 0.0], atol=1e-5)


def test_a_policy_trained_on_other_inputs_is_refused(tiny_policy_dir: Path) -> None:
    path = tiny_policy_dir / "antgoal" / "goal_reaching.pt"
    checkpoint = torch.load(path, weights_only=True)
    load_goal_reaching_policy()  # the current version loads
    checkpoint.pop("policy_input")  # files from before the record: version 1, world-frame velocity
    torch.save(checkpoint, path)
    with pytest.raises(DatasetError, match="version 1 of the goal-reaching ant's inputs"):
        load_goal_reaching_policy()


@pytest.mark.parametrize("name", ["antmaze-umaze-v2", "antmaze-medium-diverse-v2", "antmaze-large-play-v2"])
def test_starts_and_goals_follow_the_level(name: str) -> None:
    spec = get_dataset_spec(name)
    task = maze_task(name)
    rng = np.random.default_rng(0)
    goal_cells = set(task.maze.cells("G"))
    seen_starts: set = set()
    seen_goals: set = set()
    for _ in range(400):
        start, goal = draw_start_and_goal(task, spec.level, rng)
        start_cell, goal_cell = task.free_cell_of(start), task.free_cell_of(goal)
        assert task.maze.is_free(task.geometry.cell_of(start))
        assert task.maze.is_free(task.geometry.cell_of(goal))
        if spec.level == "fixed":
            np.testing.assert_allclose(start, [0.0, 0.0])
            assert goal_cell == task.eval_goal_cell
        elif spec.level == "play" or name == "antmaze-umaze-diverse-v2":
            # D4RL's goal_sampler uses the map's G cells when it has any; its resets avoid them.
            assert goal_cell in goal_cells and start_cell not in goal_cells
        else:
            seen_starts.add(start_cell)
            seen_goals.add(goal_cell)
    if spec.level == "diverse" and name != "antmaze-umaze-diverse-v2":
        # any free cell, the hand-picked play goals included, for starts and goals alike
        assert goal_cells <= seen_starts and goal_cells <= seen_goals


def test_navigator_heads_for_the_next_cell_then_the_goal() -> None:
    task = maze_task("antmaze-umaze-v2")
    navigator = AntNavigator(task, GridPlanner(task.maze.free), style="centres")
    goal = np.array([0.6, 8.9])  # in cell (3, 1), around the U from the start
    np.testing.assert_allclose(navigator.waypoint(np.array([0.3, -0.2]), goal), [4.0, 0.0])
    np.testing.assert_allclose(navigator.waypoint(np.array([8.1, 0.5]), goal), [8.0, 4.0])
    np.testing.assert_allclose(navigator.waypoint(np.array([4.2, 8.0]), goal), goal)
    np.testing.assert_allclose(navigator.waypoint(np.array([0.1, 7.5]), goal), goal)


def test_d4rl_navigation_uses_d4rls_cell_lookup_and_noisy_waypoints() -> None:
    task = maze_task("antmaze-umaze-v2")
    navigator = AntNavigator(task, GridPlanner(task.maze.free), rng=np.random.default_rng(0))
    # D4RL's _xy_to_rowcol: (int(1 + max(y, 1e-4) / 4), int(1 + max(x, 1e-4) / 4)).
    for xy in ([0.3, -0.2], [3.9, 0.1], [4.1, 7.9], [8.5, 3.99], [-1.5, 9.0], [11.9, 11.9]):
        expected = (int(1 + max(xy[1], 1e-4) / 4), int(1 + max(xy[0], 1e-4) / 4))
        assert navigator.d4rl_cell(np.array(xy)) == expected
    goal = np.array([0.6, 8.9])
    # At x = 3.9 the ant is nearer cell (1, 2)'s centre, but D4RL still counts it in (1, 1): the
    # waypoint stays cell (1, 2)'s centre + U(0, 1), re-drawn at every call.
    draws = np.stack([navigator.waypoint(np.array([3.9, 0.2]), goal) for _ in range(400)])
    assert np.all((draws >= [4.0, 0.0]) & (draws <= [5.0, 1.0]))
    np.testing.assert_allclose(draws.mean(axis=0), [4.5, 0.5], atol=0.05)
    # A robot counted in a wall cell ((7, 5) lies in free cell (2, 3), D4RL's lookup says wall (2, 2))
    # heads for that cell's free neighbour nearest the goal, (3, 2), across the wall's corner, as D4RL's
    # breadth-first search did.
    waypoint = navigator.waypoint(np.array([7.0, 5.0]), goal)
    assert task.geometry.cell_of(waypoint - 0.5) == (3, 2)
    np.testing.assert_allclose(navigator.waypoint(np.array([2.0, 8.5]), goal), goal)
    with pytest.raises(ConfigError, match="navigation style"):
        AntNavigator(task, GridPlanner(task.maze.free), style="straight")


def test_replica_rows_are_d4rls_and_deterministic(tiny_policy_dir: Path) -> None:
    spec = get_dataset_spec("antmaze-umaze-v2")
    first = build_antmaze(spec, seed=0, num_steps=120, progress=False)
    second = build_antmaze(spec, seed=0, num_steps=120, progress=False)
    other = build_antmaze(spec, seed=1, num_steps=120, progress=False)
    shapes = {"observations": (120, 29), "next_observations": (120, 29), "actions": (120, 8),
              "rewards": (120,), "terminals": (120,), "timeouts": (120,), "infos/goal": (120, 2),
              "infos/qpos": (120, 15), "infos/qvel": (120, 14)}
    assert {key: value.shape for key, value in first.items()} == shapes
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    assert not np.array_equal(first["actions"], other["actions"])
    assert np.all(np.abs(first["actions"]) <= 1.0)
    np.testing.assert_allclose(first["infos/qpos"], first["observations"][:, :15], atol=1e-6)
    np.testing.assert_allclose(first["infos/qvel"], first["observations"][:, 15:], atol=1e-6)
    np.testing.assert_array_equal(first["next_observations"][:-1], first["observations"][1:])
    assert np.all(np.abs(first["observations"][0, :2]) <= 0.1)  # the fixed start: R cell at the origin
    assert first["timeouts"].tolist() == [False] * 119 + [True]


def test_episodes_restart_with_new_starts_and_rewards_follow_the_eval_goal(tiny_policy_dir: Path) -> None:
    actor, _ = load_goal_reaching_policy()
    name = "antmaze-medium-diverse-v2"
    task = maze_task(name)
    env = make_env(name, terminate_at_goal=False, time_limit=False)
    arrays, stats = collect_antmaze(env, task, actor, "diverse", seed=0, num_steps=130, episode_steps=50)
    env.close()
    np.testing.assert_array_equal(np.flatnonzero(arrays["timeouts"]), [49, 99, 129])
    assert stats["episodes"] == 2
    starts = arrays["observations"][[0, 50, 100], :2]
    assert len(np.unique(starts, axis=0)) == 3
    assert all(task.maze.is_free(task.geometry.cell_of(start)) for start in starts)
    goals = arrays["infos/goal"]
    assert np.all(goals[:50] == goals[0]) and not np.array_equal(goals[0], goals[50])
    # Rewards and terminals: the next observation within 0.5 of the evaluation goal, not the commanded one.
    expected = goal_reached(arrays["next_observations"], task.mean_eval_goal())
    np.testing.assert_array_equal(arrays["rewards"], expected)
    np.testing.assert_array_equal(arrays["terminals"], expected)


def test_an_episode_ends_on_the_row_where_the_ant_flips(tiny_policy_dir: Path) -> None:
    actor, _ = load_goal_reaching_policy()
    name = "antmaze-umaze-v2"
    task = maze_task(name)
    env = make_env(name, terminate_at_goal=False, time_limit=False)
    inner_step, calls = env.step, [0]

    def step_then_flip_once(action: np.ndarray):  # the 8th step throws the ant onto its back
        calls[0] += 1
        if calls[0] == 8:
            data = env.unwrapped.data
            data.qpos[3:7] = [0.0, 1.0, 0.0, 0.0]  # half a turn about x: upside down
            mujoco.mj_forward(env.unwrapped.model, data)
        return inner_step(action)

    env.step = step_then_flip_once  # type: ignore[method-assign]
    arrays, stats = collect_antmaze(env, task, actor, "fixed", seed=0, num_steps=40, episode_steps=30)
    env.close()
    np.testing.assert_array_equal(np.flatnonzero(arrays["timeouts"]), [7, 37, 39])
    assert stats["flipped_episodes"] == 1 and stats["episodes"] == 2
    assert stats["flipped_rows"] == 1  # only the row that shows the fall: the next row is a new episode
    assert is_flipped(arrays["next_observations"][7]) and not is_flipped(arrays["observations"][8])
    assert np.all(np.abs(arrays["observations"][8, :2]) <= 0.1)  # restarted at the fixed start
    assert not arrays["terminals"][7]  # a fall is not a success


def test_replica_statistics_count_falls_successes_and_their_timing() -> None:
    rows = 30
    obs = np.zeros((rows, 29), np.float32)
    obs[:, 3] = 1.0  # upright: identity quaternion
    next_obs = obs.copy()
    next_obs[12, 3:7] = [0.0, 1.0, 0.0, 0.0]  # the second episode ends with a fall
    rewards = np.zeros(rows, np.float32)
    rewards[[4, 5, 25]] = 1.0  # episode 1 first succeeds at its 5th step, episode 3 at its 13th
    timeouts = np.zeros(rows, bool)
    timeouts[[9, 12, 29]] = True
    stats = replica_statistics({"observations": obs, "next_observations": next_obs, "rewards": rewards,
                                "timeouts": timeouts}, time_limit=10)
    assert stats["rows"] == 30 and stats["episodes"] == 3 and stats["reward_fraction"] == pytest.approx(0.1)
    assert stats["flipped_episodes"] == 1 and stats["flipped_rows"] == 1
    assert stats["rewarded_episodes"] == 2 and stats["rewarded_in_time"] == 1
    assert stats["median_first_reward_step"] == pytest.approx(9.0)
    assert stats["median_episode_length"] == pytest.approx(10.0)


def test_the_shipped_walker_stays_upright_while_collecting(monkeypatch: pytest.MonkeyPatch) -> None:
    # The package's own goal-reaching ant, acting as the replicas do (sampled + N(0, 0.2^2) noise) on D4RL's
    # ant, navigating as D4RL's collector did: three 1001-row episodes of the medium maze's diverse recipe,
    # whose turns and wall contacts are where falls would happen, show no flipped ant at all.
    monkeypatch.delenv(POLICY_DIR_ENV, raising=False)
    actor, meta = load_goal_reaching_policy()
    assert meta["policy_input"] == 3
    name = "antmaze-medium-diverse-v2"
    env = make_env(name, terminate_at_goal=False, time_limit=False)
    arrays, stats = collect_antmaze(env, maze_task(name), actor, "diverse", seed=11, num_steps=3003)
    env.close()
    assert stats["flipped_episodes"] == 0 and stats["flipped_rows"] == 0
    assert stats["episodes"] == 3 and stats["reached_commanded"] >= 2
    assert replica_statistics(arrays, 1000)["flipped_rows"] == 0


def test_goal_reaching_training_resumes_exactly_and_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = goal_reaching_config(total_steps=90, seed=3, hidden_dims=(16, 16), batch_size=16,
                                  random_steps=40, eval_every=90, eval_episodes=1,
                                  actor_checkpoint_every=90, state_every=30)
    whole = train_goal_reaching_ant(config, tmp_path / "whole", resume=False, progress=False)
    assert whole.finished and whole.updates == 51
    stopped = train_goal_reaching_ant(config, tmp_path / "split", resume=False, progress=False,
                                      stop_after_steps=55)
    assert stopped.interrupted and stopped.env_steps == 55
    resumed = train_goal_reaching_ant(config, tmp_path / "split", resume=True, progress=False)
    assert resumed.finished
    # The episode in progress (the goal lives in MuJoCo's userdata) continues bit for bit.
    a = torch.load(tmp_path / "whole" / "actors" / "actor_00000090.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "split" / "actors" / "actor_00000090.pt", weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)

    meta = export_goal_reaching_policy(tmp_path / "whole", tmp_path / "exported", episodes=1, candidates=1)
    assert meta["train_steps"] == 90 and 0.0 <= meta["reach_success"] <= 1.0
    monkeypatch.setenv(POLICY_DIR_ENV, str(tmp_path / "exported"))
    actor, loaded = load_goal_reaching_policy()
    assert loaded["reach_episodes"] == 1 and loaded["hidden_dims"] == [16, 16]
    with torch.no_grad():
        assert actor(torch.zeros(2, POLICY_OBS_DIM))[0].shape == (2, ACT_DIM)
    # A chosen step is exported as asked; a step without a checkpoint is refused with the steps there are.
    chosen = export_goal_reaching_policy(tmp_path / "whole", tmp_path / "chosen", episodes=1, step=90)
    assert chosen["train_steps"] == 90
    with pytest.raises(DatasetError, match="no evaluated actor checkpoint at step 60; it has steps 90"):
        export_goal_reaching_policy(tmp_path / "whole", tmp_path / "chosen", episodes=1, step=60)

    # A run from before the input record (version 1 inputs) is neither continued nor exported.
    (tmp_path / "split" / "policy_input").unlink()
    with pytest.raises(ConfigError, match="version 1 of the goal-reaching ant's inputs"):
        train_goal_reaching_ant(config, tmp_path / "split", resume=True, progress=False)
    with pytest.raises(ConfigError, match="neither continued nor exported"):
        export_goal_reaching_policy(tmp_path / "split", tmp_path / "exported2", episodes=1, candidates=1)


SMALL = "[32, 32]"
TINY_MODELS = {  # each method's antmaze config with tiny networks and budgets
    "dtql": ["--model.init_args.critic_hidden_dims", SMALL, "--model.init_args.value_hidden_dims", SMALL,
             "--model.init_args.actor_hidden_dims", SMALL, "--model.init_args.denoiser_hidden_dim", "32",
             "--model.init_args.pretrain_updates", "5"],
    "iql": ["--model.init_args.hidden_dims", SMALL],
    "swg": ["--model.init_args.critic_hidden_dims", SMALL, "--model.init_args.hidden_dim", "32",
            "--model.init_args.num_blocks", "1", "--model.init_args.critic_updates", "5",
            "--model.init_args.critic_batch_size", "32"],
}


@pytest.mark.slow  # a CLI subprocess: ~30-60 s on 2 shared cores
@pytest.mark.parametrize("method", sorted(TINY_MODELS))
def test_tiny_antmaze_fit_runs_on_a_replica(method: str, tiny_policy_dir: Path, tmp_path: Path) -> None:
    # The antmaze configs themselves (antmaze-umaze-v2, r - 1, expectile 0.9), with tiny networks and budgets.
    args = [
        "fit", "--config", str(CONF / f"{method}_antmaze.yaml"), "--data.replica_steps", "300",
        "--data.batch_size", "32", "--data.batches_per_step", "5", "--data.steps_per_epoch", "2",
        *TINY_MODELS[method], "--model.init_args.max_updates", "10",
        "--model.init_args.log_every", "5", "--evaluation.interval", "10", "--evaluation.episodes", "2",
        "--trainer.logger.init_args.name", "antmaze",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", POLICY_DIR_ENV: str(tiny_policy_dir)}
    result = subprocess.run([sys.executable, "-m", "lightning_offrl.cli", *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REPLICA" in result.stderr + result.stdout
    assert list((tmp_path / "runs" / "antmaze" / "version_0" / "checkpoints").glob("last.ckpt"))


def test_umaze_diverse_episodes_end_at_their_first_reward(monkeypatch: pytest.MonkeyPatch) -> None:
    # D4RL's umaze-diverse file: random starts, the evaluation goal's cell commanded, one rewarded row per
    # episode, where the episode ends (a terminal, not a timeout).
    monkeypatch.delenv(POLICY_DIR_ENV, raising=False)
    actor, _ = load_goal_reaching_policy()
    name = "antmaze-umaze-diverse-v2"
    env = make_env(name, terminate_at_goal=False, time_limit=False)
    arrays, stats = collect_antmaze(env, maze_task(name), actor, "diverse", seed=3, num_steps=1500)
    env.close()
    assert stats["episodes"] >= 2 and stats["reached_eval_goal"] == stats["episodes"]
    rewarded = np.flatnonzero(arrays["rewards"] > 0)
    assert rewarded.size == stats["episodes"]
    np.testing.assert_array_equal(arrays["terminals"], arrays["rewards"] > 0)
    assert not arrays["timeouts"][rewarded].any()
    for row in rewarded[rewarded < 1499]:  # the next row starts a new episode elsewhere in the maze
        assert not np.allclose(arrays["observations"][row + 1], arrays["next_observations"][row])
    summary = replica_statistics(arrays, 700)
    assert summary["episodes"] == stats["episodes"] + 1  # the trailing, unfinished one
    assert summary["rewarded_episodes"] == stats["episodes"]
