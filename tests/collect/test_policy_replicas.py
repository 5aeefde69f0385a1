"""Policy-based replicas (medium, expert, medium-replay, medium-expert) and the shipped behaviour policies."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from lightning_offrl.collect import policies, policy_replicas
from lightning_offrl.collect.policies import (
    MANIFEST_FILE,
    POLICY_DIR_ENV,
    ReplaySchedule,
    actor_checkpoint,
    choose_medium_step,
    export_run,
    load_behaviour_policy,
    load_manifest,
    load_replay_actors,
)
from lightning_offrl.collect.policy_replicas import (
    build_expert,
    build_medium,
    build_medium_expert,
    build_medium_replay,
    replay_rows,
)
from lightning_offrl.collect.sac_online import SACConfig, train
from lightning_offrl.data.registry import DATASETS, DatasetSpec, get_replica_builder
from lightning_offrl.data.sources import INPUTS_ATTR, resolve_dataset
from lightning_offrl.envs.tasks import TASKS, TaskSpec, get_task, make_env
from lightning_offrl.errors import ConfigError, DatasetError
from lightning_offrl.networks import TanhGaussianActor

# Hopper with 40-step episodes: a weak policy falls within ~20-60 steps, so the data holds both true
# failures (terminals) and time limits (timeouts).
SHORT_HOPPER = TaskSpec("shorthopper", "Hopper-v5", -20.272305, 3234.3, 40)
OBS_DIM, ACT_DIM, HIDDEN = 11, 3, (16, 16)


def _spec(level: str, num_steps: int = 1500) -> DatasetSpec:
    return DatasetSpec(f"shorthopper-{level}-v2", "shorthopper", level, SHORT_HOPPER, num_steps)


def _actor(seed: int) -> TanhGaussianActor:
    torch.manual_seed(seed)
    return TanhGaussianActor(OBS_DIM, ACT_DIM, HIDDEN).eval()


def _policy_entry(role: str, step: int) -> dict[str, Any]:
    return {"env": "shorthopper", "role": role, "file": f"shorthopper/{role}.pt", "train_steps": step,
            "eval_return": 0.0, "sampled_return": 0.0, "normalized_score": 0.0, "eval_episodes": 1, "seed": 0,
            "train_wall_time_s": 0.0}


@pytest.fixture()
def policy_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A policy folder with test-made medium, expert and medium-replay actors for ``shorthopper``."""
    monkeypatch.setitem(TASKS, "shorthopper", SHORT_HOPPER)
    monkeypatch.setenv(POLICY_DIR_ENV, str(tmp_path))
    meta = {"obs_dim": OBS_DIM, "act_dim": ACT_DIM, "hidden_dims": list(HIDDEN)}
    (tmp_path / "shorthopper").mkdir()
    torch.save(actor_checkpoint(_actor(1), {**meta, "step": 30}), tmp_path / "shorthopper" / "medium.pt")
    torch.save(actor_checkpoint(_actor(2), {**meta, "step": 90}), tmp_path / "shorthopper" / "expert.pt")
    snapshots = [actor_checkpoint(_actor(10 + i), {})["state_dict"] for i in range(3)]
    torch.save({**meta, "env": "shorthopper", "state_dicts": snapshots}, tmp_path / "shorthopper" / "medium_replay.pt")
    schedule = ReplaySchedule("shorthopper", "shorthopper/medium_replay.pt", random_steps=10,
                              snapshot_steps=(10, 15, 25), end_step=30, seed=0)
    manifest = {"format": 1, "policies": {"shorthopper": {
        "medium": _policy_entry("medium", 30), "expert": _policy_entry("expert", 90),
        "medium_replay": {**schedule.__dict__, "snapshot_steps": list(schedule.snapshot_steps)},
    }}}
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    return tmp_path


def _episodes(arrays: dict[str, np.ndarray]) -> list[slice]:
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [slice(s, e + 1) for s, e in zip(starts, ends)]


def test_registry_has_the_policy_levels() -> None:
    for level, builder in [("medium", build_medium), ("expert", build_expert),
                           ("medium-replay", build_medium_replay), ("medium-expert", build_medium_expert)]:
        assert get_replica_builder(level) is builder


def test_medium_is_deterministic_for_a_seed(policy_dir: Path) -> None:
    first = build_medium(_spec("medium"), seed=3, num_steps=1500, progress=False)
    second = build_medium(_spec("medium"), seed=3, num_steps=1500, progress=False)
    other = build_medium(_spec("medium"), seed=4, num_steps=1500, progress=False)
    assert first.keys() == second.keys() >= {"observations", "actions", "rewards", "next_observations", "terminals",
                                             "timeouts", "infos/qpos", "infos/qvel", "infos/action_log_probs"}
    for key in first:
        assert first[key].shape[0] == 1500
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    assert not np.array_equal(first["actions"], other["actions"])


def test_episode_semantics_terminals_versus_timeouts(policy_dir: Path) -> None:
    arrays = build_medium(_spec("medium"), seed=0, num_steps=1500, progress=False)
    terminals, timeouts = arrays["terminals"], arrays["timeouts"]
    assert terminals.dtype == timeouts.dtype == np.bool_
    assert terminals.any() and timeouts[:-1].any(), "the test task should produce both kinds of episode end"
    assert not (terminals & timeouts).any()
    assert timeouts[-1] or terminals[-1]  # the budget's cut is marked
    episodes = _episodes(arrays)
    assert sum(e.stop - e.start for e in episodes) == 1500
    for episode in episodes[:-1]:
        length = episode.stop - episode.start
        if timeouts[episode.stop - 1]:
            assert length == SHORT_HOPPER.max_episode_steps  # time limits only at the limit
        else:
            assert length <= SHORT_HOPPER.max_episode_steps
        # Inside an episode each next observation is the following row's observation.
        np.testing.assert_array_equal(arrays["next_observations"][episode][:-1], arrays["observations"][episode][1:])
    # A true failure is an unhealthy hopper: replaying the stored state and action reproduces it.
    env = make_env("shorthopper")
    env.reset(seed=0)
    for row in np.flatnonzero(terminals)[:5]:
        env.unwrapped.set_state(arrays["infos/qpos"][row].astype(np.float64), arrays["infos/qvel"][row].astype(np.float64))
        _, reward, terminated, _, _ = env.step(arrays["actions"][row])
        assert terminated
        assert reward == pytest.approx(arrays["rewards"][row], abs=1e-3)


def test_actions_are_sampled_with_their_log_probabilities(policy_dir: Path) -> None:
    arrays = build_medium(_spec("medium"), seed=0, num_steps=1000, progress=False)
    actor, _ = load_behaviour_policy("shorthopper", "medium")
    obs, actions = torch.from_numpy(arrays["observations"]), torch.from_numpy(arrays["actions"])
    assert actions.abs().max() <= 1.0
    # Sampled, not the mode: the actions scatter around tanh(mu(s)).
    assert (actions - actor.deterministic(obs)).abs().mean() > 0.1
    inside = (actions.abs() < 0.999).all(dim=1)
    expected = actor.log_prob(obs[inside], actions[inside]).detach().numpy()
    np.testing.assert_allclose(arrays["infos/action_log_probs"][inside.numpy()], expected, rtol=1e-3, atol=1e-3)


def test_medium_replay_follows_the_schedule(policy_dir: Path) -> None:
    num_steps = 600
    arrays = build_medium_replay(_spec("medium-replay", num_steps), seed=0, num_steps=num_steps, progress=False)
    actors, schedule = load_replay_actors("shorthopper")
    # Run steps per acting policy: random 10, then actors for 5, 10 and 5 steps of 30 -> rows 200/100/200/100.
    rows = replay_rows(schedule.segment_lengths(), num_steps)
    assert rows == [200, 100, 200, 100]
    bounds = np.cumsum([0] + rows)
    log_probs = arrays["infos/action_log_probs"]
    np.testing.assert_allclose(log_probs[: rows[0]], -ACT_DIM * math.log(2.0))
    obs, actions = torch.from_numpy(arrays["observations"]), torch.from_numpy(arrays["actions"])
    for k, actor in enumerate(actors):
        segment = slice(bounds[k + 1], bounds[k + 2])
        inside = (actions[segment].abs() < 0.999).all(dim=1)
        own = actor.log_prob(obs[segment][inside], actions[segment][inside]).detach().numpy()
        np.testing.assert_allclose(log_probs[segment][inside.numpy()], own, rtol=1e-3, atol=1e-3)
        if k + 1 < len(actors):  # and not what the next actor would have given
            other = actors[k + 1].log_prob(obs[segment][inside], actions[segment][inside]).detach().numpy()
            assert np.abs(log_probs[segment][inside.numpy()] - other).mean() > 1e-2
    again = build_medium_replay(_spec("medium-replay", num_steps), seed=0, num_steps=num_steps, progress=False)
    for key in arrays:
        np.testing.assert_array_equal(arrays[key], again[key], err_msg=key)


def test_replay_rows_are_proportional_and_complete() -> None:
    assert replay_rows([10_000, 20_000, 20_000, 7_000], 402_000) == [70_526, 141_053, 141_053, 49_368]
    for steps, total in [([3, 3, 3], 10), ([1], 7), ([5, 0, 5], 11)]:
        rows = replay_rows(steps, total)
        assert sum(rows) == total and all(abs(r - total * s / sum(steps)) < 1 for r, s in zip(rows, steps))


def test_medium_expert_is_medium_followed_by_expert(policy_dir: Path) -> None:
    both = build_medium_expert(_spec("medium-expert", 1200), seed=5, num_steps=1200, progress=False)
    medium = build_medium(_spec("medium"), seed=5, num_steps=600, progress=False)
    expert = build_expert(_spec("expert"), seed=5, num_steps=600, progress=False)
    for key in both:
        np.testing.assert_array_equal(both[key], np.concatenate([medium[key], expert[key]]), err_msg=key)


def test_medium_expert_reads_cached_halves(policy_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIGHTNING_OFFRL_CACHE", str(tmp_path / "cache"))
    fresh = build_medium_expert(_spec("medium-expert", 1200), seed=5, num_steps=1200, progress=False)
    for level in ("medium", "expert"):
        resolve_dataset(f"shorthopper-{level}-v2", source="replica", seed=5, num_steps=600, progress=False)
    calls = []
    real_rollout = policy_replicas.rollout

    def counting_rollout(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        calls.append(args[1])
        return real_rollout(*args, **kwargs)

    monkeypatch.setattr(policy_replicas, "rollout", counting_rollout)
    both = build_medium_expert(_spec("medium-expert", 1200), seed=5, num_steps=1200, progress=False)
    assert calls == [] and both.keys() == fresh.keys()  # both halves read from the cache, nothing generated
    for key in fresh:
        np.testing.assert_array_equal(both[key], fresh[key], err_msg=key)
        assert both[key].dtype == fresh[key].dtype, key

    # A new expert policy: its cached replica is stale, so that half is generated again from the new actor.
    meta = {"obs_dim": OBS_DIM, "act_dim": ACT_DIM, "hidden_dims": list(HIDDEN)}
    torch.save(actor_checkpoint(_actor(3), {**meta, "step": 90}), policy_dir / "shorthopper" / "expert.pt")
    again = build_medium_expert(_spec("medium-expert", 1200), seed=5, num_steps=1200, progress=False)
    assert len(calls) == 1
    np.testing.assert_array_equal(again["actions"][:600], fresh["actions"][:600])
    assert not np.array_equal(again["actions"][600:], fresh["actions"][600:])


def test_missing_policy_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POLICY_DIR_ENV, str(tmp_path))  # an empty policy folder
    spec = DatasetSpec("hopper-expert-v2", "hopper", "expert", get_task("hopper"), 1000)
    with pytest.raises(DatasetError, match="hopper expert policy is not shipped yet") as error:
        build_expert(spec, seed=0, num_steps=10, progress=False)
    message = str(error.value)
    assert "train_behaviour_policies.sh" in message and "--expert" in message and "--data.path" in message
    replay = DatasetSpec("hopper-medium-replay-v2", "hopper", "medium-replay", get_task("hopper"), 1000)
    with pytest.raises(DatasetError, match="hopper medium-replay actor sequence is not shipped yet"):
        build_medium_replay(replay, seed=0, num_steps=10, progress=False)


def test_choose_medium_step_is_the_early_stop() -> None:
    evals = [{"step": s, "eval_return": r} for s, r in [(10, 100), (20, 900), (30, 1300), (40, 1000), (50, 2000)]]
    assert choose_medium_step(evals, 1000) == 20  # closest up to the first crossing; 40 comes after it
    assert choose_medium_step(evals, 1250) == 30
    assert choose_medium_step(evals, 5000) == 50  # never reached: the best so far


def _train_pendulum_run(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 500-step SAC run on Pendulum with an evaluated actor checkpoint every 100 steps."""
    monkeypatch.setitem(TASKS, "pendulum", TaskSpec("pendulum", "Pendulum-v1", -1500.0, -150.0, 200))
    config = SACConfig(env="pendulum", total_steps=500, hidden_dims=(16, 16), batch_size=32, random_steps=100,
                       eval_every=100, eval_episodes=1, actor_checkpoint_every=100, state_every=500)
    train(config, run, progress=False)


def test_export_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _train_pendulum_run(tmp_path / "run", monkeypatch)
    out = tmp_path / "policies"
    entries = export_run(tmp_path / "run", "pendulum", out, expert=True, snapshot_every=200, eval_episodes=2)
    manifest = load_manifest(out)
    assert manifest["policies"]["pendulum"] == entries and manifest["runs"]["pendulum"]["finished"]
    expert_step = entries["expert"]["train_steps"]
    evals = json.loads((tmp_path / "run" / "evals.json").read_text())
    assert expert_step == max(evals, key=lambda r: r["eval_return"])["step"]
    assert entries["medium"]["target_reference"] == "expert policy"
    assert entries["medium"]["target_return"] == pytest.approx(entries["expert"]["eval_return"] / 3, abs=0.01)
    schedule = entries["medium_replay"]
    assert schedule["snapshot_steps"] == list(range(100, schedule["end_step"], 200))

    monkeypatch.setenv(POLICY_DIR_ENV, str(out))
    actor, info = load_behaviour_policy("pendulum", "expert")
    saved = torch.load(tmp_path / "run" / "actors" / f"actor_{expert_step:08d}.pt", weights_only=True)
    for name, tensor in actor.state_dict().items():
        assert torch.equal(tensor, saved["state_dict"][name])
    assert info.train_steps == expert_step and (out / info.file).stat().st_size < 1_000_000

    # A re-export that lands on the actors already shipped keeps their files byte for byte (cached
    # replicas record the files' SHA-256), though the run's files differ in metadata (the wall time).
    names = ("medium.pt", "expert.pt", "medium_replay.pt")
    shipped = {name: (out / "pendulum" / name).read_bytes() for name in names}
    actor_paths = sorted((tmp_path / "run" / "actors").glob("actor_*.pt"))
    for path in actor_paths:
        checkpoint = torch.load(path, weights_only=True)
        torch.save({**checkpoint, "wall_time_s": checkpoint["wall_time_s"] + 1000.0}, path)
    again = export_run(tmp_path / "run", "pendulum", out, expert=True, snapshot_every=200, eval_episodes=2)
    assert {name: (out / "pendulum" / name).read_bytes() for name in names} == shipped
    assert again["medium"]["train_wall_time_s"] == entries["medium"]["train_wall_time_s"]
    # New weights are written.
    expert_path = tmp_path / "run" / "actors" / f"actor_{expert_step:08d}.pt"
    checkpoint = torch.load(expert_path, weights_only=True)
    checkpoint["state_dict"] = {name: tensor + 0.01 for name, tensor in checkpoint["state_dict"].items()}
    torch.save(checkpoint, expert_path)
    export_run(tmp_path / "run", "pendulum", out, expert=True, snapshot_every=200, eval_episodes=2)
    assert load_manifest(out)["policies"]["pendulum"]["expert"]["train_steps"] == expert_step  # evals unchanged
    assert (out / "pendulum" / "expert.pt").read_bytes() != shipped["expert.pt"]
    actor, _ = load_behaviour_policy("pendulum", "expert")
    for name, tensor in actor.state_dict().items():
        assert torch.equal(tensor, checkpoint["state_dict"][name])


def test_expert_export_can_keep_the_shipped_medium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _train_pendulum_run(tmp_path / "run", monkeypatch)
    out = tmp_path / "policies"
    with pytest.raises(ConfigError, match="export pendulum's medium first"):
        export_run(tmp_path / "run", "pendulum", out, expert=True, snapshot_every=200, eval_episodes=1,
                   keep_medium=True)
    # Evaluations set so that D4RL's third (-50) chooses step 200 and the expert's (500: -10) another one.
    evals_path = tmp_path / "run" / "evals.json"
    evals = json.loads(evals_path.read_text())
    for record, value in zip(evals, [-900.0, -40.0, -600.0, -700.0, -10.0]):
        record["eval_return"] = value
    evals_path.write_text(json.dumps(evals))
    assert [record["step"] for record in evals] == [100, 200, 300, 400, 500]
    assert choose_medium_step(evals, -10.0 / 3) != 200
    first = export_run(tmp_path / "run", "pendulum", out, snapshot_every=200, eval_episodes=1)
    assert first["medium"]["target_reference"] == "D4RL ref_max_score" and "expert" not in first
    assert first["medium"]["train_steps"] == 200
    shipped = {name: (out / "pendulum" / name).read_bytes() for name in ("medium.pt", "medium_replay.pt")}

    kept = export_run(tmp_path / "run", "pendulum", out, expert=True, snapshot_every=200, eval_episodes=1,
                      keep_medium=True)
    assert kept["expert"]["train_steps"] == evals[-1]["step"]
    assert kept["medium"] == first["medium"] and kept["medium_replay"] == first["medium_replay"]
    assert {name: (out / "pendulum" / name).read_bytes() for name in shipped} == shipped
    assert load_manifest(out)["policies"]["pendulum"] == kept
    with pytest.raises(ConfigError, match="pass expert=True"):
        export_run(tmp_path / "run", "pendulum", out, snapshot_every=200, eval_episodes=1, keep_medium=True)


def test_shipped_policies_load_and_fit_their_environment() -> None:
    manifest = load_manifest(policies.policy_dir())
    for env, entries in manifest["policies"].items():
        obs_dim = int(np.prod(make_env(env).observation_space.shape))
        for role in ("medium", "expert"):
            if role in entries:
                actor, info = load_behaviour_policy(env, role)
                assert actor.net.in_dim == obs_dim and info.env == env
                assert (Path(str(policies.policy_dir())) / info.file).stat().st_size < 1_000_000
        if "medium_replay" in entries:
            actors, schedule = load_replay_actors(env)
            assert len(actors) == len(schedule.snapshot_steps) and schedule.end_step == entries["medium"]["train_steps"]
    assert policy_replicas.build_medium is build_medium


def test_provisional_medium_policy_is_announced(policy_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    manifest = json.loads((policy_dir / MANIFEST_FILE).read_text())
    manifest["policies"]["shorthopper"]["medium"].update(reached_target=False, target_return=1000.0)
    (policy_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    with caplog.at_level("WARNING", logger="lightning_offrl.collect.policy_replicas"):
        build_medium(_spec("medium", 50), seed=0, num_steps=50, progress=False)
    assert "provisional" in caplog.text and "target return 1000" in caplog.text


def test_a_cached_replica_is_refused_once_its_policy_changes(
    policy_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    spec = _spec("medium", 300)
    monkeypatch.setitem(DATASETS, spec.name, spec)

    def resolve() -> Any:
        return resolve_dataset(spec.name, source="replica", seed=77, num_steps=300, progress=False)

    first = resolve()
    assert first.attrs["inputs"] == "medium.pt" and len(first.attrs[INPUTS_ATTR]) == 64
    assert resolve().attrs["created"] == first.attrs["created"]  # same policy: the cached file is used

    meta = {"obs_dim": OBS_DIM, "act_dim": ACT_DIM, "hidden_dims": list(HIDDEN), "step": 60}
    # A new medium policy ships.
    torch.save(actor_checkpoint(_actor(5), meta), policy_dir / "shorthopper" / "medium.pt")
    with pytest.raises(DatasetError, match="other versions of medium.pt") as error:
        resolve()
    assert str(first.path) in str(error.value) and "data.path" in str(error.value)
    assert first.path.is_file()  # refused, not deleted

    with h5py.File(first.path, "a") as handle:  # a replica from before the record: used, with a warning
        del handle.attrs[INPUTS_ATTR]
    with caplog.at_level("WARNING"):
        kept = resolve()
    assert "does not record which medium.pt" in caplog.text
    np.testing.assert_array_equal(kept.arrays["actions"], first.arrays["actions"])

    first.path.unlink()  # deleted as the message says: rebuilt from the new policy
    rebuilt = resolve()
    assert rebuilt.attrs[INPUTS_ATTR] != first.attrs[INPUTS_ATTR]
    assert not np.array_equal(rebuilt.arrays["actions"][:50], first.arrays["actions"][:50])


def test_policy_files_name_a_listed_but_missing_file(policy_dir: Path) -> None:
    # The cache check hashes these files: a file the manifest lists but the folder lacks must give the
    # project's DatasetError (which the check and the builders report), not a bare FileNotFoundError.
    assert [path.name for path in policies.policy_files("shorthopper", ["medium", "expert"])] == ["medium.pt",
                                                                                                  "expert.pt"]
    (policy_dir / "shorthopper" / "expert.pt").unlink()
    with pytest.raises(DatasetError, match="shorthopper/expert.pt is listed in manifest.json"):
        policies.policy_files("shorthopper", ["medium", "expert"])
