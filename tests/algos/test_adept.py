"""ADEPT: world model, importance weights, rollouts, the closed loop and its resume, conformance."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from lightning_offrl.algos import IQL, SAC
from lightning_offrl.algos.adept import ADEPT, build_learner, learner_spec
from lightning_offrl.algos.losses import effective_sample_size, importance_weights
from lightning_offrl.data.buffer import Batch, TransitionBuffer
from lightning_offrl.errors import ConfigError
from lightning_offrl.evaluate import load_module
from lightning_offrl.networks import GaussianEnsemble
from tests.algos.conformance import check_conformance, fit, small_datamodule

# Tiny networks and a short loop: pretraining 6 world-model updates, rounds of 8 learner updates.
TINY: dict[str, Any] = dict(
    hidden_dim=32, depth=2, reward_hidden_dims=(32,), behavior_hidden_dims=(32,), world_model_batch_size=64,
    world_model_pretrain_updates=6, round_updates=8, importance_updates=2, rollout_starts=16,
    rollout_horizon=3, rollout_retain_rounds=2, log_every=5,
)
LEARNERS = {
    "iql": lambda o, a, **kw: IQL(o, a, hidden_dims=(32, 32), **kw),
    "sac": lambda o, a, **kw: SAC(o, a, hidden_dims=(32, 32), num_critics=2, **kw),
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # These networks are tiny: on a loaded 2-core machine two threads only contend.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_adept(obs_dim: int, act_dim: int, max_updates: int, learner: str = "iql", **overrides: Any) -> ADEPT:
    behavior = "gaussian" if learner == "iql" else "tanh_gaussian"
    kwargs = {**TINY, "behavior_policy": behavior, **overrides}
    return ADEPT(obs_dim, act_dim, learner=LEARNERS[learner], max_updates=max_updates, **kwargs)


def uniform_buffer(n: int, obs_dim: int, act_dim: int, seed: int = 0) -> TransitionBuffer:
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(n, obs_dim, generator=g) * 2 - 1
    actions = torch.rand(n, act_dim, generator=g) * 2 - 1
    next_obs = obs + 0.1 * actions.sum(-1, keepdim=True)
    return TransitionBuffer(obs, actions, actions.sum(-1), next_obs, torch.zeros(n))


def weights_at_first_rollouts(module: ADEPT, network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A dict that ``network``'s weights fill when ``module`` generates its first rollouts (spied on)."""
    weights: dict[str, torch.Tensor] = {}
    generate = module.generate_rollouts

    def capture(*args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        if not weights:
            weights.update({k: v.clone() for k, v in network.state_dict().items()})
        return generate(*args, **kwargs)

    module.generate_rollouts = capture  # type: ignore[method-assign]
    return weights


# ----------------------------------------------------------------------------- conformance
@pytest.mark.parametrize("learner", sorted(LEARNERS))
def test_conformance(learner: str, pointgoal_file: Path, tmp_path: Path) -> None:
    check_conformance(lambda o, a, n: tiny_adept(o, a, n, learner), pointgoal_file, tmp_path)


# ----------------------------------------------------------------------------- world model
def test_world_model_learns_linear_dynamics() -> None:
    # s' = A s + B a + N(0, 0.05^2): after 600 updates the guided DDPM's samples must be centred on
    # A s + B a to within the noise scale (conditional-mean error < 0.05) with an RMSE below 2 x noise.
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n, noise_std = 20_000, 0.05
    A = torch.tensor([[0.9, 0.2], [-0.1, 0.8]])
    B = torch.tensor([[0.5, 0.0], [0.2, 0.4]])
    obs, actions = torch.rand(n, 2, generator=g) * 2 - 1, torch.rand(n, 2, generator=g) * 2 - 1
    next_obs = obs @ A.T + actions @ B.T + noise_std * torch.randn(n, 2, generator=g)
    buffer = TransitionBuffer(obs, actions, -next_obs.norm(dim=-1), next_obs, torch.zeros(n))
    module = ADEPT(2, 2, hidden_dim=64, depth=2, reward_hidden_dims=(64,), behavior_hidden_dims=(32,))
    module.attach_dataset(buffer)
    optimizer = torch.optim.Adam([*module.denoiser.parameters(), *module.reward_model.parameters()], lr=2e-3)
    for _ in range(600):
        loss, _ = module.world_model_loss(buffer.sample(128, g))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    test_obs, test_actions = torch.rand(64, 2, generator=g) * 2 - 1, torch.rand(64, 2, generator=g) * 2 - 1
    true_mean = test_obs @ A.T + test_actions @ B.T
    samples = module.sample_next_observations(
        test_obs.repeat_interleave(100, 0), test_actions.repeat_interleave(100, 0)
    ).view(64, 100, 2)
    conditional_mean_error = (samples.mean(1) - true_mean).norm(dim=-1).mean()
    rmse = (samples - true_mean.unsqueeze(1)).square().mean().sqrt()
    assert conditional_mean_error < noise_std
    assert rmse < 2 * noise_std
    # the action matters: ignoring B a would be far off
    assert (true_mean - test_obs @ A.T).norm(dim=-1).mean() > 5 * conditional_mean_error
    # reward head: -||s'|| is a smooth function of (s, a, s')
    reward, _ = module.predict_reward_terminal(test_obs, test_actions, true_mean)
    assert (reward + true_mean.norm(dim=-1)).abs().mean() < 0.1


@pytest.mark.parametrize("target", ["delta", "next_state"])
def test_diffusion_target_round_trip(target: str) -> None:
    buffer = uniform_buffer(500, 3, 2)
    module = ADEPT(3, 2, diffusion_target=target, hidden_dim=16, depth=1)
    module.attach_dataset(buffer)
    x0 = module.diffusion_x0(buffer.observations, buffer.next_observations)
    torch.testing.assert_close(x0.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(module.next_obs_from_x0(buffer.observations, x0), buffer.next_observations)


# ----------------------------------------------------------------------------- importance weights
@pytest.mark.parametrize("learner", sorted(LEARNERS))
def test_importance_weights_are_one_when_policy_is_behavior(learner: str) -> None:
    module = tiny_adept(3, 2, 10, learner, behavior_hidden_dims=(32, 32))
    module.learner.actor.load_state_dict(module.behavior.state_dict())
    batch = uniform_buffer(256, 3, 2).sample(256, torch.Generator().manual_seed(1))
    torch.testing.assert_close(module.importance_weights(batch), torch.ones(256))
    module.self_normalize_weights = False
    torch.testing.assert_close(module.importance_weights(batch), torch.ones(256))


def test_importance_weight_stabilisation() -> None:
    log_ratio = torch.tensor([0.0, 1.0, 2.0, 50.0])
    normalized = importance_weights(log_ratio, clip=None, self_normalize=True)
    torch.testing.assert_close(normalized.mean(), torch.tensor(1.0))
    assert torch.isfinite(normalized).all()
    clipped = importance_weights(log_ratio, clip=2.0, self_normalize=True)
    assert clipped.max() <= 2.0 and clipped[-1] == 2.0
    assert importance_weights(log_ratio, clip=None, self_normalize=False)[1] == pytest.approx(math.e)
    assert effective_sample_size(torch.ones(8)) == pytest.approx(8.0)
    assert effective_sample_size(torch.tensor([1.0, 0.0, 0.0, 0.0])) == pytest.approx(1.0)


def test_importance_sampling_moves_world_model_loss_toward_policy_actions() -> None:
    # Reward r = a^2 on uniform behaviour actions, fit by a *linear* reward head (it cannot fit a^2
    # everywhere). Importance-weighted towards a policy concentrated at a = 0.6, the fit must be far
    # more accurate near 0.6 than the unweighted fit, which spreads its error over [-1, 1].
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n = 4096
    obs = torch.rand(n, 1, generator=g) * 2 - 1
    actions = torch.rand(n, 1, generator=g) * 2 - 1
    buffer = TransitionBuffer(obs, actions, actions[:, 0].square(), obs.clone(), torch.zeros(n))

    def make() -> ADEPT:
        module = ADEPT(1, 1, learner=LEARNERS["sac"], hidden_dim=16, depth=1, reward_hidden_dims=(),
                       behavior_policy="tanh_gaussian", behavior_hidden_dims=(16,), weight_clip=None)
        module.attach_dataset(buffer)
        return module

    weighted, unweighted = make(), make()
    unweighted.reward_model.load_state_dict(weighted.reward_model.state_dict())
    # The current policy: tanh(N(atanh(0.6), 0.15^2)), state independent.
    with torch.no_grad():
        last = weighted.learner.actor.net.output_layer
        last.weight.zero_()
        last.bias.copy_(torch.tensor([math.atanh(0.6), math.log(0.15)]))
    # Behaviour cloning of the uniform actions gives pi_b.
    behavior_opt = torch.optim.Adam(weighted.behavior.parameters(), lr=3e-3)
    for _ in range(300):
        loss = weighted.behavior_loss(buffer.sample(256, g))
        behavior_opt.zero_grad()
        loss.backward()
        behavior_opt.step()

    batch = buffer.sample(1024, g)
    weights = weighted.importance_weights(batch)
    near, far = (batch.actions[:, 0] - 0.6).abs() < 0.1, batch.actions[:, 0] < 0.0
    assert weights[near].mean() > 3.0 and weights[far].mean() < 0.2

    for module, use_weights in ((weighted, True), (unweighted, False)):
        optimizer = torch.optim.Adam(module.reward_model.parameters(), lr=3e-2)
        for _ in range(300):
            batch = buffer.sample(512, g)
            w = weighted.importance_weights(batch) if use_weights else None
            loss, _ = module.world_model_loss(batch, w)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    test_actions = torch.linspace(0.45, 0.75, 64).unsqueeze(-1)
    test_obs = torch.zeros(64, 1)

    def error(module: ADEPT) -> float:
        reward, _ = module.predict_reward_terminal(test_obs, test_actions, test_obs)
        return float((reward - test_actions[:, 0].square()).abs().mean())

    assert error(weighted) < 0.5 * error(unweighted)


# ----------------------------------------------------------------------------- rollouts
def test_rollouts_clip_to_data_range_and_stop_at_terminals() -> None:
    torch.manual_seed(0)
    module = tiny_adept(3, 2, 10, "sac")
    buffer = uniform_buffer(500, 3, 2)
    module.attach_dataset(buffer)
    stats = module.generate_rollouts(num_starts=32, horizon=4)
    contents = module.rollout_buffer
    assert int(stats["rollout/transitions"]) <= 32 * 4
    assert len(contents) == min(int(stats["rollout/transitions"]), contents.capacity)  # the newest kept
    assert (contents.next_observations[: len(contents)] >= module.obs_low - 1e-6).all()
    assert (contents.next_observations[: len(contents)] <= module.obs_high + 1e-6).all()
    assert (contents.actions[: len(contents)].abs() <= 1.0).all()

    with torch.no_grad():  # reward far above the data, terminal logit far above the threshold
        module.reward_model.output_layer.bias.copy_(torch.tensor([1e3, 1e3]))
    module.rollout_buffer.clear()
    stats = module.generate_rollouts(num_starts=32, horizon=4)
    assert int(stats["rollout/transitions"]) == 32  # every rollout ends after one step
    torch.testing.assert_close(module.rollout_buffer.rewards[:32], module.reward_high.expand(32))
    assert (module.rollout_buffer.terminals[:32] == 1.0).all()


# ----------------------------------------------------------------------------- the closed loop
def test_closed_loop_round_and_resume(pointgoal_file: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = tiny_adept(2, 2, 20, "iql")
    datamodule = small_datamodule(pointgoal_file)
    trainer = fit(module, datamodule, tmp_path)
    # 20 learner updates in rounds of 8: rollouts before rounds 0, 1, 2; IS updates after rounds 0, 1.
    assert int(module.num_updates) == 20 and int(module.learner.num_updates) == 20
    assert int(module.rollout_rounds) == 3 and int(module.importance_rounds) == 2
    pretrain, per_round = TINY["world_model_pretrain_updates"], TINY["importance_updates"]
    assert int(module.world_model_updates) == pretrain + 2 * per_round
    assert 0 < len(module.rollout_buffer) <= module.rollout_buffer.capacity
    # Each round measured its world model on the held-out segments before rolling out.
    assert module._heldout_starts is not None
    assert torch.isfinite(module.world_model_metrics["diagnostics/state_rmse_10"])
    # The synthetic buffer is one of the DataModule's sources, registered once.
    assert [source for source, _ in datamodule._extra_sources] == [module.rollout_buffer]
    # The learner's own schedule was stepped through the routing: IQL's cosine actor lr reached 0.
    actor_lr = trainer.optimizers[2].param_groups[0]["lr"]
    world_model_lr = trainer.optimizers[3].param_groups[0]["lr"]
    assert actor_lr == pytest.approx(0.0, abs=1e-9) and world_model_lr == pytest.approx(3e-4)

    ckpt = tmp_path / "ckpt" / "last.ckpt"
    restored, _ = load_module(ckpt)
    assert isinstance(restored, ADEPT) and isinstance(restored.learner, IQL)
    for name in ("num_updates", "world_model_updates", "rollout_rounds", "importance_rounds"):
        assert int(getattr(restored, name)) == int(getattr(module, name)), name
    saved, original = restored.rollout_buffer.state_dict(), module.rollout_buffer.state_dict()
    assert saved["size"] == original["size"] and saved["position"] == original["position"]
    for key in ("observations", "actions", "rewards", "next_observations", "terminals"):
        torch.testing.assert_close(saved[key], original[key])

    # Resume to 30 updates: no second pretraining, one more IS update and one more rollout round.
    resumed = tiny_adept(2, 2, 30, "iql")
    fit(resumed, small_datamodule(pointgoal_file), tmp_path / "resume", ckpt_path=str(ckpt))
    assert int(resumed.num_updates) == 30
    assert int(resumed.rollout_rounds) == 4 and int(resumed.importance_rounds) == 3
    assert int(resumed.world_model_updates) == pretrain + 3 * per_round


@pytest.mark.parametrize("switch", ["no_importance_sampling", "no_synthetic_data"])
def test_ablation_switches(switch: str, pointgoal_file: Path, tmp_path: Path) -> None:
    overrides = {"no_importance_sampling": {"importance_sampling": False},
                 "no_synthetic_data": {"synthetic_data": False}}[switch]
    module = tiny_adept(2, 2, 20, "iql", **overrides)
    behavior_before = [p.detach().clone() for p in module.behavior.parameters()]
    datamodule = small_datamodule(pointgoal_file)
    fit(module, datamodule, tmp_path)
    assert int(module.num_updates) == 20
    if switch == "no_importance_sampling":
        # trained once, then frozen: only the pretraining updates; rollouts still every round
        assert int(module.world_model_updates) == TINY["world_model_pretrain_updates"]
        assert int(module.importance_rounds) == 0 and int(module.rollout_rounds) == 3
        assert len(module.rollout_buffer) > 0
        # pi_b is not needed, so it is not trained
        assert all(torch.equal(a, b) for a, b in zip(behavior_before, module.behavior.parameters()))
    else:
        assert int(module.world_model_updates) == 0 and int(module.rollout_rounds) == 0
        assert len(module.rollout_buffer) == 0 and datamodule._extra_sources == []


# ----------------------------------------------------------------------------- the learner interface
def test_learner_spec_round_trip_and_errors() -> None:
    learner = build_learner(LEARNERS["sac"], 3, 2, max_updates=50, log_every=7)
    assert learner.max_updates == 50 and learner.log_every == 7
    spec = learner_spec(learner)
    assert spec["class_path"] == "lightning_offrl.algos.sac.SAC" and "max_updates" not in spec["init_args"]
    rebuilt = build_learner(spec, 3, 2, max_updates=50, log_every=7)
    assert isinstance(rebuilt, SAC) and rebuilt.hparams["hidden_dims"] == learner.hparams["hidden_dims"]
    assert isinstance(build_learner(None, 3, 2, 10, 10), IQL)
    with pytest.raises(ConfigError, match="class_path"):
        build_learner({"class_path": "lightning_offrl.algos.NoSuchMethod"}, 3, 2, 10, 10)
    with pytest.raises(ConfigError, match="OfflineRLModule"):
        build_learner(lambda o, a, **kw: torch.nn.Linear(o, a), 3, 2, 10, 10)


def test_learner_without_density_needs_importance_sampling_off() -> None:
    from lightning_offrl.algos import BC

    with pytest.raises(ConfigError, match="importance_sampling"):
        ADEPT(3, 2, learner=lambda o, a, **kw: BC(o, a, hidden_dims=(8,), **kw), hidden_dim=8, depth=1)
    module = ADEPT(3, 2, learner=lambda o, a, **kw: BC(o, a, hidden_dims=(8,), **kw), hidden_dim=8, depth=1,
                   importance_sampling=False)
    obs = torch.zeros(4, 3)
    torch.testing.assert_close(module.sample_policy_actions(obs), module.learner.policy(obs))


def test_bad_hyperparameters_are_config_errors() -> None:
    for bad in ({"synthetic_fraction": 1.0}, {"rollout_horizon": 0}, {"weight_clip": 0.0},
                {"diffusion_target": "reward"}, {"behavior_policy": "beta"}, {"importance_updates": -1}):
        with pytest.raises(ConfigError):
            ADEPT(3, 2, hidden_dim=8, depth=1, **bad)


# ----------------------------------------------------------------------------- diagnostics
def chained_buffer(episodes: int, length: int, obs_dim: int = 2, act_dim: int = 2) -> TransitionBuffer:
    """Episodes of a noiseless linear system, rows in order (each next observation is the next row's)."""
    g = torch.Generator().manual_seed(0)
    obs_rows, action_rows, next_rows = [], [], []
    for _ in range(episodes):
        obs = torch.rand(obs_dim, generator=g) * 2 - 1
        for _ in range(length):
            action = torch.rand(act_dim, generator=g) * 2 - 1
            next_obs = 0.9 * obs + 0.1 * action
            obs_rows.append(obs)
            action_rows.append(action)
            next_rows.append(next_obs)
            obs = next_obs
    obs, actions, next_obs = torch.stack(obs_rows), torch.stack(action_rows), torch.stack(next_rows)
    return TransitionBuffer(obs, actions, -next_obs.norm(dim=-1), next_obs, torch.zeros(len(obs)))


def test_heldout_segments_stay_out_of_training_and_measure_the_model() -> None:
    buffer = chained_buffer(episodes=20, length=25)
    module = tiny_adept(2, 2, 10, heldout_segments=6, sampling_seed=3)
    module.attach_dataset(buffer)
    starts = module._heldout_starts
    assert starts is not None and starts.numel() == 6
    held = (starts[:, None] + torch.arange(10)).reshape(-1)
    # every segment lies inside one episode of 25 rows
    assert torch.all(starts % 25 <= 15)
    assert set(module._training_rows.tolist()).isdisjoint(held.tolist())
    assert module._training_rows.numel() + torch.unique(held).numel() == len(buffer)
    # world-model batches never contain a held-out row
    sampled = module.sample_real(4000).observations
    held_obs = buffer.observations[held]
    assert not (sampled[:, None, :] == held_obs[None]).all(-1).any()
    # the same data and seed hold out the same rows (a resumed fit measures the same thing)
    again = tiny_adept(2, 2, 10, heldout_segments=6, sampling_seed=3)
    again.attach_dataset(buffer)
    torch.testing.assert_close(again._heldout_starts, starts)

    untrained = module.world_model_diagnostics()
    assert set(untrained) == {f"diagnostics/{k}" for k in (
        "state_rmse_1", "state_rmse_1_unchanged", "state_rmse_10", "reward_rmse_1", "return_error_10",
        "data_mean_reward")}
    assert all(torch.isfinite(v) for v in untrained.values())
    optimizer = torch.optim.Adam([*module.denoiser.parameters(), *module.reward_model.parameters()], lr=2e-3)
    torch.manual_seed(0)
    for _ in range(400):
        loss, _ = module.world_model_loss(module.sample_real(128))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trained = module.world_model_diagnostics()
    # training on the other rows makes the held-out predictions better, one and ten steps ahead
    assert trained["diagnostics/state_rmse_1"] < 0.5 * untrained["diagnostics/state_rmse_1"]
    assert trained["diagnostics/state_rmse_10"] < untrained["diagnostics/state_rmse_10"]
    assert trained["diagnostics/return_error_10"] < untrained["diagnostics/return_error_10"]


def test_no_heldout_rows_without_whole_segments() -> None:
    module = tiny_adept(2, 2, 10, heldout_segments=0)
    module.attach_dataset(chained_buffer(episodes=3, length=25))
    assert module._training_rows is None and module.world_model_diagnostics() == {}
    short = tiny_adept(2, 2, 10, heldout_segments=4)
    short.attach_dataset(chained_buffer(episodes=30, length=5))  # no episode holds 10 rows
    assert short._training_rows is None and short.world_model_diagnostics() == {}


# ----------------------------------------------------------------------------- recipe knobs
@pytest.mark.parametrize("learner", ["iql", "sac"])
def test_rollout_std_scale_narrows_the_rollout_policy(learner: str) -> None:
    obs = torch.rand(4000, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    spreads = {}
    for scale in (1.0, 0.5, 0.0):
        module = tiny_adept(3, 2, 10, learner, rollout_std_scale=scale, sampling_seed=1)
        torch.manual_seed(0)
        module.learner.load_state_dict(tiny_adept(3, 2, 10, learner).learner.state_dict())
        if learner == "iql":
            module.learner.actor.log_std.data.fill_(-1.5)  # std 0.22: few draws reach the [-1, 1] clip
        actions = module.sample_policy_actions(obs)
        mean = module.learner.policy(obs)
        spreads[scale] = (actions - mean).std().item()
        if scale == 0.0:  # the policy's own mean action (tanh of the mean for SAC's tanh-Gaussian)
            torch.testing.assert_close(actions, mean.clamp(-1, 1))
    if learner == "iql":
        assert spreads[0.5] == pytest.approx(0.5 * spreads[1.0], rel=0.15)
    assert spreads[1.0] > spreads[0.5] > spreads[0.0] == 0.0


def test_synthetic_start_updates_delays_the_first_rollouts(pointgoal_file: Path, tmp_path: Path) -> None:
    module = tiny_adept(2, 2, 20, "iql", synthetic_start_updates=10)
    calls: list[int] = []
    generate = module.generate_rollouts

    def counted(*args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        calls.append(int(module.num_updates))
        return generate(*args, **kwargs)

    module.generate_rollouts = counted  # type: ignore[method-assign]
    fit(module, small_datamodule(pointgoal_file), tmp_path)
    # rounds of 8 updates: no rollouts during the first 10 updates, then at 10 (round 1) and 16 (round 2)
    assert calls == [10, 16]
    assert int(module.rollout_rounds) == 3 and int(module.importance_rounds) == 2


def test_a_warm_up_as_long_as_the_budget_is_refused() -> None:
    with pytest.raises(ConfigError, match="synthetic_start_updates=20 is not below the budget max_updates=20"):
        tiny_adept(2, 2, 20, synthetic_start_updates=20)
    tiny_adept(2, 2, 20, synthetic_start_updates=20, synthetic_data=False)  # the learner alone


def test_rollout_std_scale_needs_a_gaussian_actor() -> None:
    with pytest.raises(ConfigError, match="rollout_std_scale"):
        ADEPT(2, 2, learner={"class_path": "lightning_offrl.algos.BC", "init_args": {}}, rollout_std_scale=0.5,
              importance_sampling=False)
    with pytest.raises(ConfigError, match="rollout_std_scale must be at least 0"):
        tiny_adept(2, 2, 10, rollout_std_scale=-1.0)
    with pytest.raises(ConfigError, match="synthetic_start_updates"):
        tiny_adept(2, 2, 10, synthetic_start_updates=-5)


def test_uncertainty_penalty_lowers_synthetic_rewards_by_the_draws_spread() -> None:
    torch.manual_seed(0)
    module = tiny_adept(3, 2, 10, "sac", uncertainty_samples=4, uncertainty_penalty=0.5)
    module.attach_dataset(uniform_buffer(500, 3, 2))
    seen: list[tuple[torch.Tensor, ...]] = []
    draw = module.sample_next_observations_with_uncertainty

    def spy(obs: torch.Tensor, actions: torch.Tensor, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        assert samples == 4
        next_obs, uncertainty = draw(obs, actions, samples)
        seen.append((obs, actions, next_obs, uncertainty))
        return next_obs, uncertainty

    module.sample_next_observations_with_uncertainty = spy  # type: ignore[method-assign]
    stats = module.generate_rollouts(num_starts=16, horizon=1)
    (obs, actions, next_obs, uncertainty), = seen
    assert (uncertainty > 0).all()  # an untrained denoiser's draws disagree
    predicted, _ = module.predict_reward_terminal(obs, actions, next_obs)
    torch.testing.assert_close(module.rollout_buffer.rewards[:16], predicted - 0.5 * uncertainty)
    assert float(stats["rollout/mean_uncertainty"]) == pytest.approx(float(uncertainty.mean()), rel=1e-5)


def test_uncertainty_spread_is_the_norm_of_the_draws_std() -> None:
    torch.manual_seed(0)
    module = tiny_adept(3, 2, 10, "iql", uncertainty_samples=3)
    module.attach_dataset(uniform_buffer(200, 3, 2))
    obs, actions = torch.zeros(5, 3), torch.zeros(5, 2)
    state = module.generator.get_state()
    next_obs, uncertainty = module.sample_next_observations_with_uncertainty(obs, actions, 3)
    module.generator.set_state(state)
    # The same draws made one at a time from the same stream: x0 of 3 x 5 rows.
    from lightning_offrl.diffusion.guidance import classifier_free_eps_fn

    condition = torch.cat([obs, actions], -1).repeat(3, 1)
    noise = torch.randn((15, 3), generator=module.generator)
    x0 = module.diffusion.sample(classifier_free_eps_fn(module.denoiser, condition, module.guidance_weight), noise,
                                 sampler="ddpm", clip=(module.target_low, module.target_high),
                                 generator=module.generator).view(3, 5, 3)
    torch.testing.assert_close(uncertainty, x0.std(dim=0).norm(dim=-1))
    torch.testing.assert_close(next_obs, module.next_obs_from_x0(obs, x0[0]))


def test_uncertainty_penalty_needs_several_draws() -> None:
    with pytest.raises(ConfigError, match="uncertainty_samples to 2 or more"):
        tiny_adept(2, 2, 10, uncertainty_penalty=1.0)
    with pytest.raises(ConfigError, match="uncertainty_penalty must be at least 0"):
        tiny_adept(2, 2, 10, uncertainty_samples=2, uncertainty_penalty=-1.0)
    with pytest.raises(ConfigError, match="uncertainty_samples must be a positive integer"):
        tiny_adept(2, 2, 10, uncertainty_samples=0)


def test_dynamics_ensemble_learns_the_data_and_disagrees_away_from_it() -> None:
    # Trained on states and actions in [-1, 1]: its members agree there and drift apart far outside.
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    module = tiny_adept(3, 2, 10, "iql", uncertainty_ensemble=5, ensemble_hidden_dims=(64, 64), ensemble_batch_size=64)
    buffer = uniform_buffer(4000, 3, 2)
    module.attach_dataset(buffer)
    assert module.dynamics_ensemble is not None and module.measures_uncertainty
    optimizer = torch.optim.Adam(module.dynamics_ensemble.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        loss = module.ensemble_loss(buffer.sample(256, g))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-20:]) / 20 < 0.05 * sum(losses[:20]) / 20
    inside = module.ensemble_uncertainty(buffer.observations[:500], buffer.actions[:500])
    outside = module.ensemble_uncertainty(buffer.observations[:500] + 6.0, buffer.actions[:500])
    assert inside.shape == (500,)
    assert float(outside.mean()) > 5 * float(inside.mean())
    # the disagreement is the norm of the members' per-dimension standard deviation
    members = module.dynamics_ensemble.forward_shared(torch.cat([buffer.observations[:4], buffer.actions[:4]], -1))
    torch.testing.assert_close(inside[:4], members.std(dim=0).norm(dim=-1))


def test_ensemble_penalty_lowers_synthetic_rewards_by_the_disagreement() -> None:
    torch.manual_seed(0)
    module = tiny_adept(3, 2, 10, "iql", uncertainty_ensemble=3, ensemble_batch_size=64, uncertainty_penalty=2.0)
    module.attach_dataset(uniform_buffer(500, 3, 2))
    seen: dict[str, torch.Tensor] = {}
    predict = module.predict_reward_terminal

    def spy(obs: torch.Tensor, actions: torch.Tensor, next_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.update(obs=obs, actions=actions)
        seen["reward"], terminals = predict(obs, actions, next_obs)
        return seen["reward"], terminals

    module.predict_reward_terminal = spy  # type: ignore[method-assign]
    stats = module.generate_rollouts(num_starts=16, horizon=1)
    uncertainty = module.ensemble_uncertainty(seen["obs"], seen["actions"])
    assert (uncertainty > 0).all()  # untrained members disagree everywhere
    torch.testing.assert_close(module.rollout_buffer.rewards[:16], seen["reward"] - 2.0 * uncertainty)
    assert float(stats["rollout/mean_uncertainty"]) == pytest.approx(float(uncertainty.mean()), rel=1e-5)


def test_gaussian_ensemble_learns_where_the_data_is_noisy() -> None:
    # MOPO's signal: the next state's noise is 10x larger where the first state coordinate is positive, and
    # the members' predicted spread (their largest norm of the standard deviation) learns that from the NLL.
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    module = tiny_adept(3, 2, 10, "iql", uncertainty_ensemble=2, ensemble_signal="max_std",
                        ensemble_hidden_dims=(64, 64), ensemble_batch_size=64)
    buffer = uniform_buffer(4000, 3, 2)
    noise_scale = torch.where(buffer.observations[:, :1] > 0, 0.3, 0.03)
    buffer.next_observations += noise_scale * torch.randn(buffer.next_observations.shape, generator=g)
    module.attach_dataset(buffer)
    assert module.measures_uncertainty
    optimizer = torch.optim.Adam(module.dynamics_ensemble.parameters(), lr=3e-3)  # type: ignore[union-attr]
    losses = []
    for _ in range(600):
        loss = module.ensemble_loss(buffer.sample(256, g))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-50:]) / 50 < sum(losses[:50]) / 50 - 1.0  # the NLL falls (it can go below 0)
    noisy, quiet = buffer.observations[:, 0] > 0.2, buffer.observations[:, 0] < -0.2
    u = module.ensemble_uncertainty(buffer.observations, buffer.actions)
    assert u.shape == (4000,) and bool((u > 0).all())
    assert float(u[noisy].mean()) > 4 * float(u[quiet].mean())
    # u is the largest member's norm of exp(log_var / 2)
    _, log_var = module.dynamics_ensemble.forward_shared(  # type: ignore[union-attr]
        torch.cat([buffer.observations[:4], buffer.actions[:4]], -1))
    torch.testing.assert_close(u[:4], torch.exp(0.5 * log_var).norm(dim=-1).amax(dim=0))


def test_one_uncertainty_signal_at_a_time() -> None:
    with pytest.raises(ConfigError, match="uncertainty_ensemble=1: one member has no disagreement"):
        tiny_adept(2, 2, 10, uncertainty_ensemble=1)
    with pytest.raises(ConfigError, match="two uncertainty signals"):
        tiny_adept(2, 2, 10, uncertainty_ensemble=3, ensemble_batch_size=64, uncertainty_samples=2)
    with pytest.raises(ConfigError, match="ensemble_batch_size=128 is more than the pretraining batch"):
        tiny_adept(2, 2, 10, uncertainty_ensemble=3, ensemble_batch_size=128)  # TINY's batch: 64
    with pytest.raises(ConfigError, match="uncertainty_ensemble must be a non-negative integer"):
        tiny_adept(2, 2, 10, uncertainty_ensemble=-2)
    with pytest.raises(ConfigError, match="needs an uncertainty signal: set model.uncertainty_ensemble"):
        tiny_adept(2, 2, 10, uncertainty_penalty=0.5)
    assert not tiny_adept(2, 2, 10).measures_uncertainty
    with pytest.raises(ConfigError, match="ensemble_signal='spread': choose 'disagreement'"):
        tiny_adept(2, 2, 10, uncertainty_ensemble=3, ensemble_batch_size=64, ensemble_signal="spread")
    with pytest.raises(ConfigError, match="ensemble_signal='max_std' needs an ensemble"):
        tiny_adept(2, 2, 10, ensemble_signal="max_std", uncertainty_penalty=1.0)
    # a Gaussian member's own spread needs no second member
    assert tiny_adept(2, 2, 10, uncertainty_ensemble=1, ensemble_signal="max_std", ensemble_batch_size=64,
                      uncertainty_penalty=1.0).measures_uncertainty


def test_the_ensemble_pretrains_with_the_world_model_and_is_cached(pointgoal_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    torch.manual_seed(0)
    first = tiny_adept(2, 2, 8, "iql", world_model_cache=str(cache), sampling_seed=3, uncertainty_ensemble=3,
                       ensemble_batch_size=32, uncertainty_penalty=0.1)
    assert first.dynamics_ensemble is not None
    initial = {k: v.clone() for k, v in first.dynamics_ensemble.state_dict().items()}
    diagnostics: dict[str, torch.Tensor] = {}
    measure = first.world_model_diagnostics
    first.world_model_diagnostics = lambda: (lambda d: (diagnostics.update(d), d)[1])(measure())  # type: ignore[method-assign]
    fit(first, small_datamodule(pointgoal_file), tmp_path / "first")
    trained = first.dynamics_ensemble.state_dict()
    assert all(not torch.equal(initial[k], trained[k]) for k in initial)  # pretraining moved every member
    assert float(diagnostics["diagnostics/uncertainty_1"]) > 0.0
    (entry,) = cache.glob("world_model-*.pt")
    stored = torch.load(entry, weights_only=False)
    for name, value in stored["dynamics_ensemble"].items():
        torch.testing.assert_close(trained[name], value)
    # the checkpoint rebuilds the ensemble (evaluation, export)
    restored, _ = load_module(tmp_path / "first" / "ckpt" / "last.ckpt")
    assert isinstance(restored, ADEPT) and restored.dynamics_ensemble is not None
    for name, value in restored.dynamics_ensemble.state_dict().items():
        torch.testing.assert_close(value, trained[name])

    # A run with the same ensemble loads it; one without an ensemble pretrains under its own key.
    second = tiny_adept(2, 2, 8, "iql", world_model_cache=str(cache), sampling_seed=3, uncertainty_ensemble=3,
                        ensemble_batch_size=32, uncertainty_penalty=1.0)
    second.pretrain_update = lambda: pytest.fail("pretrained again")  # type: ignore[method-assign]
    assert second.dynamics_ensemble is not None
    loaded = weights_at_first_rollouts(second, second.dynamics_ensemble)
    fit(second, small_datamodule(pointgoal_file), tmp_path / "second")
    for name, value in stored["dynamics_ensemble"].items():
        torch.testing.assert_close(loaded[name], value)
    fit(tiny_adept(2, 2, 8, "iql", world_model_cache=str(cache), sampling_seed=3),
        small_datamodule(pointgoal_file), tmp_path / "third")
    assert len(list(cache.glob("world_model-*.pt"))) == 2
    # Gaussian members (MOPO's signal) are another pretraining, under their own key, and come back from checkpoints.
    fit(tiny_adept(2, 2, 8, "iql", world_model_cache=str(cache), sampling_seed=3, uncertainty_ensemble=3,
                   ensemble_batch_size=32, uncertainty_penalty=0.1, ensemble_signal="max_std"),
        small_datamodule(pointgoal_file), tmp_path / "fourth")
    assert len(list(cache.glob("world_model-*.pt"))) == 3
    gaussian, _ = load_module(tmp_path / "fourth" / "ckpt" / "last.ckpt")
    assert isinstance(gaussian, ADEPT) and isinstance(gaussian.dynamics_ensemble, GaussianEnsemble)


def test_synthetic_rows_can_be_kept_out_of_the_actors_loss(pointgoal_file: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = tiny_adept(2, 2, 16, "iql", synthetic_actor_rows=False)
    datamodule = small_datamodule(pointgoal_file)
    # The data module leads every batch with its real rows, the synthetic ones last: what real_rows counts.
    datamodule.setup("fit")
    datamodule.add_source(module.rollout_buffer, 0.5)
    assert module.real_rows(32) == 32  # nothing synthetic yet
    module.rollout_buffer.add(Batch(torch.zeros(8, 2), torch.zeros(8, 2), torch.full((8,), 99.0), torch.zeros(8, 2),
                                    torch.zeros(8)))
    batch = next(iter(datamodule.train_dataloader()))
    real = module.real_rows(32)
    assert real == 16
    assert (batch.rewards[:, :real] != 99.0).all() and (batch.rewards[:, real:] == 99.0).all()

    # In the closed loop, the actor's advantage-weighted regression sees the real rows only, the critics all.
    module = tiny_adept(2, 2, 16, "iql", synthetic_actor_rows=False)
    actor_rows, value_rows = [], []
    actor_loss, value_loss = module.learner.actor_loss, module.learner.value_loss
    module.learner.actor_loss = lambda b, *a: (actor_rows.append(b.rewards.shape[0]), actor_loss(b, *a))[1]  # type: ignore[method-assign]
    module.learner.value_loss = lambda b, *a: (value_rows.append(b.rewards.shape[0]), value_loss(b, *a))[1]  # type: ignore[method-assign]
    fit(module, small_datamodule(pointgoal_file), tmp_path / "fit")
    assert len(actor_rows) == 16 and set(value_rows) == {32}
    assert set(actor_rows[2:]) == {16}  # from the first batch drawn after the round-0 rollouts on
    with pytest.raises(ConfigError, match="synthetic_actor_rows: false.*SAC has no `actor_rows`"):
        tiny_adept(2, 2, 16, "sac", synthetic_actor_rows=False)


def test_rollouts_report_how_much_of_the_policy_sits_at_the_action_bounds() -> None:
    # IQL's Gaussian draws are clipped to [-1, 1]: a broad sigma puts many coordinates exactly at +-1.
    torch.manual_seed(0)
    shares = {}
    for log_std in (-3.0, 1.0):
        module = tiny_adept(3, 2, 10, "iql", rollout_starts=256, rollout_horizon=2)  # the buffer holds them all
        module.attach_dataset(uniform_buffer(500, 3, 2))
        with torch.no_grad():
            module.learner.actor.log_std.fill_(log_std)
        stats = module.generate_rollouts()
        assert len(module.rollout_buffer) == int(stats["rollout/transitions"])
        shares[log_std] = float(stats["rollout/action_at_bound"])
        rows = module.rollout_buffer.actions[: len(module.rollout_buffer)]
        assert shares[log_std] == pytest.approx(float((rows.abs() >= 0.999).float().mean()), abs=1e-6)
        assert 0.0 <= float(stats["rollout/policy_mode_at_bound"]) <= 1.0
    # sigma e^-3 ~ 0.05 around a near-zero mean: none at the bounds; sigma e ~ 2.7: most of them
    assert shares[-3.0] == 0.0 and shares[1.0] > 0.5


# ----------------------------------------------------------------------------- the pretraining cache
def test_world_model_cache_stores_then_restores_the_pretraining(pointgoal_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    torch.manual_seed(0)
    first = tiny_adept(2, 2, 8, "iql", world_model_cache=str(cache), sampling_seed=3, rollout_std_scale=0.0)
    pretrain_calls: list[int] = []
    first_pretrain = first.pretrain_update
    first.pretrain_update = lambda: (pretrain_calls.append(1), first_pretrain())[1]  # type: ignore[method-assign]
    fit(first, small_datamodule(pointgoal_file), tmp_path / "first")
    assert len(pretrain_calls) == TINY["world_model_pretrain_updates"]
    entries = list(cache.glob("world_model-*.pt"))
    assert len(entries) == 1

    # Another variant of the closed loop (full rollout noise, another learner init) with the same
    # world-model settings and seed: no pretraining update of its own, the stored networks, and the
    # same world-model update count as a run that pretrained.
    torch.manual_seed(1)
    second = tiny_adept(2, 2, 8, "iql", world_model_cache=str(cache), sampling_seed=3)
    second.pretrain_update = lambda: pytest.fail("pretrained again")  # type: ignore[method-assign]
    stored = torch.load(entries[0], weights_only=False)
    captured = weights_at_first_rollouts(second, second.denoiser)  # the first round starts from the stored model
    fit(second, small_datamodule(pointgoal_file), tmp_path / "second")
    for name, value in stored["denoiser"].items():
        torch.testing.assert_close(captured[name], value)
    assert int(second.num_updates) == 8
    assert int(second.world_model_updates) == int(first.world_model_updates)
    assert len(list(cache.glob("world_model-*.pt"))) == 1

    # Another sampling seed or another world model is another entry.
    third = tiny_adept(2, 2, 8, "iql", world_model_cache=str(cache), sampling_seed=4)
    fit(third, small_datamodule(pointgoal_file), tmp_path / "third")
    assert len(list(cache.glob("world_model-*.pt"))) == 2


def test_a_damaged_cache_entry_is_named_and_left_alone(pointgoal_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fit(tiny_adept(2, 2, 8, "iql", world_model_cache=str(cache), sampling_seed=3),
        small_datamodule(pointgoal_file), tmp_path / "first")
    (entry,) = cache.glob("world_model-*.pt")
    entry.write_bytes(entry.read_bytes()[:100])
    with pytest.raises(ConfigError, match=f"{entry.name} is not readable.*delete .*{entry.name}"):
        fit(tiny_adept(2, 2, 8, "iql", world_model_cache=str(cache), sampling_seed=3),
            small_datamodule(pointgoal_file), tmp_path / "second")
    assert entry.stat().st_size == 100  # nothing overwritten behind the user's back
