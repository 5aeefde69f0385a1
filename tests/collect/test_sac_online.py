"""Online SAC: it learns, it stops on a signal, and it resumes exactly where it stopped."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lightning_offrl.collect.policies import ACTORS_DIR, STATE_FILE, action_to_env, actor_checkpoint, load_evals
from lightning_offrl.collect.sac_online import (
    ReplayBuffer,
    SACConfig,
    capture_env_state,
    restore_env_state,
    train,
)
from lightning_offrl.envs.evaluation import evaluate_policy
from lightning_offrl.envs.tasks import TASKS, TaskSpec, make_env
from lightning_offrl.errors import ConfigError
from lightning_offrl.networks import TanhGaussianActor

# Pendulum: 200-step episodes, no terminations, actions in [-2, 2] (exercises the action scaling).
PENDULUM = TaskSpec("pendulum", "Pendulum-v1", -1500.0, -150.0, 200)


@pytest.fixture(autouse=True)
def _pendulum_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TASKS, "pendulum", PENDULUM)


def _tiny_config(**overrides: Any) -> SACConfig:
    values: dict[str, Any] = dict(
        env="pendulum", total_steps=400, seed=7, hidden_dims=(32, 32), batch_size=32, random_steps=100,
        eval_every=200, eval_episodes=1, actor_checkpoint_every=200, state_every=100,
    )
    values.update(overrides)
    return SACConfig(**values)


def _flat_state(path: Path) -> dict[str, Any]:
    """Every leaf of a saved run state (networks, optimizer moments, buffer, generators, env), by path."""
    state = torch.load(path, weights_only=False)
    flat: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                visit(f"{prefix}/{key}", item)
        elif isinstance(value, np.ndarray):
            flat[prefix] = torch.from_numpy(value)
        else:
            flat[prefix] = value

    for key in ("agent", "buffer", "generators", "counters", "obs", "env_state"):
        visit(key, state[key])
    return flat


@pytest.mark.slow  # ~45-75 s on 2 shared cores
def test_sac_learns_pendulum(tmp_path: Path) -> None:
    config = SACConfig(env="pendulum", total_steps=6000, seed=0, hidden_dims=(64, 64), random_steps=1000,
                       eval_every=1000, eval_episodes=5, actor_checkpoint_every=1000, state_every=6000)
    result = train(config, tmp_path / "run", progress=False)
    assert result.finished and result.env_steps == 6000 and result.updates == 5001

    space = make_env("pendulum").action_space
    rng = np.random.default_rng(0)
    random_returns = evaluate_policy(lambda obs: rng.uniform(space.low, space.high, (len(obs), 1)),
                                     "pendulum", 10, seed=123).returns
    evals = load_evals(tmp_path / "run")
    assert [record["step"] for record in evals] == list(range(1000, 6001, 1000))
    learned = max(record["eval_return"] for record in evals[-2:])
    # The swing-up is solved when most of the gap to the reference maximum is closed.
    gap = PENDULUM.ref_max_score - random_returns.mean()
    assert learned > random_returns.mean() + 0.5 * gap, (learned, random_returns.mean())
    assert evals[-1]["alpha"] < 1.0  # the temperature was tuned down from its initial value


def test_resume_continues_exactly(tmp_path: Path) -> None:
    uninterrupted = train(_tiny_config(), tmp_path / "a", progress=False)
    assert uninterrupted.finished and not uninterrupted.interrupted

    first = train(_tiny_config(), tmp_path / "b", progress=False, stop_after_steps=250)
    assert first.interrupted and first.env_steps == 250 and first.updates == 151  # from step 100 on
    saved = torch.load(tmp_path / "b" / STATE_FILE, weights_only=False)
    assert saved["counters"]["env_steps"] == 250 and saved["buffer"]["size"] == 250
    assert saved["env_state"]["elapsed_steps"] == 50  # mid-episode: the episode goes on after resuming

    second = train(_tiny_config(), tmp_path / "b", resume=True, progress=False)
    assert second.finished and second.env_steps == 400 and second.updates == uninterrupted.updates

    a, b = _flat_state(tmp_path / "a" / STATE_FILE), _flat_state(tmp_path / "b" / STATE_FILE)
    assert a.keys() == b.keys()

    def same(x: Any, y: Any) -> bool:
        return torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y

    different = [key for key in a if "wall_time" not in key and not same(a[key], b[key])]
    assert not different, different

    def without_wall_time(run: Path) -> list[dict[str, Any]]:
        return [{k: v for k, v in record.items() if k != "wall_time_s"} for record in load_evals(run)]

    assert without_wall_time(tmp_path / "a") == without_wall_time(tmp_path / "b")


def test_sigterm_saves_state_and_resume_raises_total_steps(tmp_path: Path) -> None:
    def send_sigterm(record: dict[str, Any]) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    handler_before = signal.getsignal(signal.SIGTERM)
    result = train(_tiny_config(total_steps=1000), tmp_path, progress=False, on_eval=send_sigterm)
    assert result.interrupted and result.env_steps == 200
    assert signal.getsignal(signal.SIGTERM) is handler_before
    assert torch.load(tmp_path / STATE_FILE, weights_only=False)["counters"]["env_steps"] == 200

    with pytest.raises(ConfigError, match="--resume"):
        train(_tiny_config(), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="not 'hopper'"):
        train(_tiny_config(env="hopper"), tmp_path, resume=True, progress=False)
    resumed = train(_tiny_config(total_steps=600), tmp_path, resume=True, progress=False)
    assert resumed.finished and resumed.env_steps == 600
    assert json.loads((tmp_path / "config.json").read_text())["total_steps"] == 600


def test_state_is_saved_by_wall_time_without_a_signal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kill that leaves no chance to save (SIGKILL) loses at most state_every_minutes of training:
    # with a step interval that is never reached, the state is still written at each 1000-step tick.
    from lightning_offrl.collect import sac_online

    saved_at: list[int] = []
    save_state = sac_online._Run.save_state

    def recording_save(run: Any) -> None:
        saved_at.append(run.env_steps)
        save_state(run)

    monkeypatch.setattr(sac_online._Run, "save_state", recording_save)
    config = _tiny_config(total_steps=2500, state_every=10**9, state_every_minutes=1e-6, eval_every=10**9,
                          actor_checkpoint_every=10**9)
    train(config, tmp_path, progress=False, stop_after_steps=2100)
    assert saved_at == [1000, 2000, 2100]  # two by wall time, one on stopping
    assert torch.load(tmp_path / STATE_FILE, weights_only=False)["counters"]["env_steps"] == 2100

    saved_at.clear()
    train(_tiny_config(total_steps=2500, state_every=10**9, state_every_minutes=60.0, eval_every=10**9,
                       actor_checkpoint_every=10**9), tmp_path, resume=True, progress=False)
    assert saved_at == [2500]  # an hour is not up: only the final save


def test_actor_checkpoints_are_small_and_loadable(tmp_path: Path) -> None:
    train(_tiny_config(), tmp_path, progress=False)
    files = sorted((tmp_path / ACTORS_DIR).glob("actor_*.pt"))
    assert [f.name for f in files] == ["actor_00000200.pt", "actor_00000400.pt"]
    checkpoint = torch.load(files[-1], weights_only=True)
    assert checkpoint["step"] == 400 and checkpoint["eval_return"] == load_evals(tmp_path)[-1]["eval_return"]
    actor = TanhGaussianActor(checkpoint["obs_dim"], checkpoint["act_dim"], tuple(checkpoint["hidden_dims"]))
    actor.load_state_dict(checkpoint["state_dict"])

    # D4RL's 2x256 actor for the largest locomotion task stays well under 1 MB on disk.
    big = actor_checkpoint(TanhGaussianActor(17, 6), {"step": 0})
    torch.save(big, tmp_path / "big.pt")
    assert (tmp_path / "big.pt").stat().st_size < 1_000_000
    assert all(t.dtype == torch.float32 for t in big["state_dict"].values())


def test_replay_buffer_ring_and_round_trip() -> None:
    buffer = ReplayBuffer(obs_dim=2, act_dim=1, capacity=5)
    for i in range(7):
        buffer.add(np.full(2, i), np.full(1, i), float(i), np.full(2, i + 1), i == 6)
    assert buffer.size == 5 and buffer.position == 2
    assert buffer.rewards.tolist() == [5, 6, 2, 3, 4]
    batch = buffer.sample(64, torch.Generator().manual_seed(0))
    assert set(batch["rewards"].tolist()) <= {2.0, 3.0, 4.0, 5.0, 6.0}
    assert torch.equal(batch["next_observations"][:, 0], batch["rewards"] + 1)

    copy = ReplayBuffer(obs_dim=2, act_dim=1, capacity=5)
    copy.load_state_dict(buffer.state_dict())
    assert np.array_equal(copy.rewards, buffer.rewards) and copy.position == buffer.position
    with pytest.raises(ConfigError, match="capacity"):
        ReplayBuffer(2, 1, 6).load_state_dict(buffer.state_dict())


def test_env_state_round_trip_continues_the_episode_exactly() -> None:
    env = make_env("hopper", seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        env.step(rng.uniform(-0.2, 0.2, 3))
    snapshot = capture_env_state(env)
    actions = rng.uniform(-0.2, 0.2, (10, 3))
    expected = [env.step(a)[:2] for a in actions]

    other = make_env("hopper", seed=99)
    assert restore_env_state(other, snapshot)
    replayed = [other.step(a)[:2] for a in actions]
    for (obs_a, reward_a), (obs_b, reward_b) in zip(expected, replayed):
        assert np.array_equal(obs_a, obs_b) and reward_a == reward_b


def test_action_scaling_and_config_validation() -> None:
    space = make_env("pendulum").action_space
    assert action_to_env(np.array([-1.0]), space) == pytest.approx([-2.0])
    assert action_to_env(np.array([0.5]), space) == pytest.approx([1.0])
    with pytest.raises(ConfigError, match="gamma"):
        SACConfig(env="pendulum", gamma=1.0).validate()
    with pytest.raises(ConfigError, match="random_steps"):
        SACConfig(env="pendulum", random_steps=10, batch_size=256).validate()


def test_until_score_stops_at_the_first_evaluation_that_reaches_it(tmp_path: Path) -> None:
    reached = train(_tiny_config(), tmp_path, progress=False, until_score=-1e9)
    assert reached.reached_score and not reached.finished and reached.env_steps == 200
    again = train(_tiny_config(), tmp_path, resume=True, progress=False, until_score=-1e9)
    assert again.reached_score and again.env_steps == 200  # already reached: nothing more to do
    rest = train(_tiny_config(), tmp_path, resume=True, progress=False)
    assert rest.finished and rest.env_steps == 400
