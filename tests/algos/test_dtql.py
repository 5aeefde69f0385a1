"""DTQL: conformance, the trust-region loss on a multimodal toy, phases across resume, acting, learning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lightning_offrl.algos import DTQL
from lightning_offrl.algos.base import optimizer_default_partial
from lightning_offrl.data.buffer import Batch
from lightning_offrl.data.datamodule import D4RLDataModule
from lightning_offrl.errors import ConfigError
from tests.algos.conformance import assert_beats_random, check_conformance, fit, small_datamodule

CONF = Path(__file__).resolve().parents[2] / "conf"
SMALL = dict(
    critic_hidden_dims=(32, 32), value_hidden_dims=(32, 32), actor_hidden_dims=(32, 32),
    denoiser_hidden_dim=32, denoiser_depth=2, log_every=5,
)


def small_dtql(obs_dim: int, act_dim: int, max_updates: int, **overrides: object) -> DTQL:
    kwargs = {**SMALL, "pretrain_updates": 10, **overrides}
    return DTQL(obs_dim, act_dim, max_updates=max_updates, **kwargs)  # type: ignore[arg-type]


def _batch(n: int = 64, obs_dim: int = 3, act_dim: int = 2, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        torch.randn(n, obs_dim, generator=g), torch.rand(n, act_dim, generator=g) * 2 - 1,
        torch.randn(n, generator=g), torch.randn(n, obs_dim, generator=g), torch.zeros(n),
    )


@pytest.mark.parametrize("candidates", [1, 8])
def test_conformance(candidates: int, pointgoal_file: Path, tmp_path: Path) -> None:
    # 10 pretraining updates, so the 20-update fit and the resume to 30 both cross into co-training.
    check_conformance(
        lambda o, a, n: small_dtql(o, a, n, num_action_candidates=candidates), pointgoal_file, tmp_path
    )


def test_losses_are_finite_and_reach_only_their_own_networks() -> None:
    torch.manual_seed(0)
    module = small_dtql(3, 2, 10, nll_weight=1.0)
    batch = _batch()
    value_loss, q_loss = module.critic_loss(batch)
    owners = {
        "critic": (value_loss + q_loss, {"critic", "value"}),
        "behavior": (module.behavior_loss(batch), {"denoiser"}),
    }
    for name, (loss, expected) in owners.items():
        module.zero_grad(set_to_none=True)
        assert loss.ndim == 0 and torch.isfinite(loss), name
        loss.backward()
        touched = {n.split(".")[0] for n, p in module.named_parameters() if p.grad is not None}
        assert touched == expected, name
        assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)

    # The policy loss, with diffusion and critic frozen as in update(), trains the policy only.
    module.zero_grad(set_to_none=True)
    module.denoiser.requires_grad_(False)
    module.critic.requires_grad_(False)
    terms = module.policy_loss(batch)
    assert set(terms) == {"actor_loss", "trust_region_loss", "q_policy", "nll", "policy_log_std"}
    terms["actor_loss"].backward()
    assert {n.split(".")[0] for n, p in module.named_parameters() if p.grad is not None} == {"actor"}
    expected = (module.alpha * terms["trust_region_loss"] - terms["q_policy"]
                + module.nll_weight * terms["nll"])
    torch.testing.assert_close(terms["actor_loss"], expected)


def test_denoising_loss_uses_edm_weighting() -> None:
    # lambda(sigma) ||D - a||^2 equals EDM's loss in the network's space when nothing is clipped.
    torch.manual_seed(0)
    module = small_dtql(3, 2, 10, clip_denoised=False)
    batch = _batch()
    torch.manual_seed(1)
    ours = module.denoising_loss(batch.actions, batch.observations)
    torch.manual_seed(1)
    sigma = module.diffusion.sample_training_sigmas(64)
    reference = module.diffusion.loss(module.denoiser, batch.actions, batch.observations, sigma=sigma)
    torch.testing.assert_close(ours, reference, rtol=1e-3, atol=1e-4)
    # Training noise levels: log-logistic around ln(sigma_data) = ln 0.5, inside [0.002, 80].
    sigmas = module.diffusion.sample_training_sigmas(20000)
    assert sigmas.min() >= 0.002 and sigmas.max() <= 80.0
    assert abs(float(sigmas.log().median()) - np.log(0.5)) < 0.05


MODES = torch.tensor([[-0.6, -0.6], [0.6, 0.6], [-0.6, 0.6], [0.6, -0.6]])


def _four_modes(n: int) -> torch.Tensor:
    index = torch.randint(len(MODES), (n,))
    return (MODES[index] + 0.05 * torch.randn(n, 2)).clamp(-1.0, 1.0)


def test_trust_region_pulls_the_policy_into_one_mode_not_between_modes() -> None:
    # Behaviour data: four well separated modes in 2-D. The diffusion model learns all four; the
    # one-step policy trained on the trust-region loss alone must land in one of them. A mode-
    # covering fit (maximum likelihood of a Gaussian, or L2 regression) would sit at the data's
    # mean, the origin, 0.85 away from every mode.
    torch.manual_seed(0)
    module = DTQL(1, 2, actor_hidden_dims=(64, 64), denoiser_hidden_dim=64, denoiser_depth=3,
                  critic_hidden_dims=(8,), value_hidden_dims=(8,))
    obs = torch.ones(256, 1)
    diffusion_opt = torch.optim.Adam(module.denoiser.parameters(), lr=3e-3)
    for _ in range(1000):
        loss = module.denoising_loss(_four_modes(256), obs).mean()
        diffusion_opt.zero_grad()
        loss.backward()
        diffusion_opt.step()

    with torch.no_grad():
        behavior = module.sample_behavior(torch.ones(2000, 1), num_steps=15)
    distance, nearest = torch.cdist(behavior, MODES).min(dim=1)
    assert float((distance < 0.2).float().mean()) > 0.75  # the diffusion model learnt the modes ...
    assert int(torch.bincount(nearest, minlength=4).min()) > 2000 * 0.1  # ... all four of them

    module.denoiser.requires_grad_(False)
    actor_opt = torch.optim.Adam(module.actor.parameters(), lr=3e-3)
    for _ in range(500):
        mean, log_std = module.actor(obs)
        actions = torch.tanh(mean + log_std.exp() * torch.randn_like(mean))
        loss = module.trust_region_loss(obs, actions)
        actor_opt.zero_grad()
        loss.backward()
        actor_opt.step()

    with torch.no_grad():
        mean, log_std = module.actor(obs)
        samples = torch.tanh(mean + log_std.exp() * torch.randn_like(mean))
        mode_action = module.actor.deterministic(obs[:1])[0]
    distance, nearest = torch.cdist(samples, MODES).min(dim=1)
    chosen = int(torch.mode(nearest).values)
    # Points between modes are >= 0.6 from every mode centre; the modes have std 0.05.
    assert float(((nearest == chosen) & (distance < 0.2)).float().mean()) > 0.95  # one mode, all samples
    assert float((mode_action - MODES[chosen]).norm()) < 0.2
    assert float(mode_action.norm()) > 0.6  # far from the between-modes point (the origin)


def _fit_recording_phases(module: DTQL, pointgoal_file: Path, root: Path, ckpt: str | None = None) -> list:
    record: list[tuple[int, bool]] = []
    update = module.update

    def recording_update(batch: Batch):  # noqa: ANN202
        record.append((int(module.num_updates), module.in_pretraining))
        return update(batch)

    module.update = recording_update  # type: ignore[method-assign]
    fit(module, small_datamodule(pointgoal_file), root, ckpt_path=ckpt)
    return record


def _adam_steps(optimizer: torch.optim.Optimizer) -> int:
    states = [s for s in optimizer.state.values() if "step" in s]
    return int(states[0]["step"]) if states else 0


def test_pretraining_switches_to_cotraining_at_the_configured_count_and_after_resume(
    pointgoal_file: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    first = small_dtql(2, 2, 6, pretrain_updates=12, lr_decay=True)
    record = _fit_recording_phases(first, pointgoal_file, tmp_path)
    assert record == [(i, True) for i in range(6)]
    policy_before = {k: v.clone() for k, v in first.actor.state_dict().items()}

    # Resume mid-pretraining: the phase comes from the restored counter, and switches at 12.
    resumed = small_dtql(2, 2, 20, pretrain_updates=12, lr_decay=True)
    first_ckpt = str(tmp_path / "ckpt" / "last.ckpt")
    record = _fit_recording_phases(resumed, pointgoal_file, tmp_path / "resume", first_ckpt)
    assert record == [(i, i < 12) for i in range(6, 20)]
    critic_opt, diffusion_opt, actor_opt = (opt.optimizer for opt in resumed.optimizers())
    assert _adam_steps(critic_opt) == 20 and _adam_steps(diffusion_opt) == 20  # restored + continued
    assert _adam_steps(actor_opt) == 20 - 12  # the policy trained in co-training only
    assert any(not torch.equal(policy_before[k], v) for k, v in resumed.actor.state_dict().items())
    # Cosine decay over this run's 8 co-training updates (not the horizon saved by the first run).
    assert [s.last_epoch for s in resumed.lr_schedulers()] == [8, 8, 8]  # type: ignore[union-attr]
    assert all(opt.param_groups[0]["lr"] < 1e-12 for opt in (critic_opt, diffusion_opt, actor_opt))

    # Resume after the switch: straight back into co-training.
    again = small_dtql(2, 2, 24, pretrain_updates=12, lr_decay=True)
    resumed_ckpt = str(tmp_path / "resume" / "ckpt" / "last.ckpt")
    record = _fit_recording_phases(again, pointgoal_file, tmp_path / "again", resumed_ckpt)
    assert record == [(i, False) for i in range(20, 24)]


def test_act_valid_in_bounds_and_best_of_candidates_picks_the_highest_q() -> None:
    torch.manual_seed(0)
    module = small_dtql(3, 2, 10, num_action_candidates=16)
    with torch.no_grad():  # a spread-out policy and a critic that prefers large first coordinates
        module.actor.net.output_layer.bias[2:].fill_(0.5)
    obs = np.random.default_rng(0).normal(size=(9, 3)).astype(np.float32) * 5.0
    for selection in ("argmax", "softmax"):
        module.candidate_selection = selection
        actions = module.act(obs)
        assert actions.shape == (9, 2) and actions.dtype == np.float32
        assert np.all(np.isfinite(actions)) and np.all(np.abs(actions) <= 1.0)
        np.testing.assert_array_equal(module.act(obs), actions)  # deterministic
        assert module.act(obs[0]).shape == (2,)

    module.candidate_selection = "argmax"
    obs_t = module.normalize_obs(torch.as_tensor(obs))
    with torch.no_grad():
        chosen = module.policy(obs_t)
        q_chosen = module.critic_target.min(obs_t, chosen)
        q_mode = module.critic_target.min(obs_t, module.actor.deterministic(obs_t))
        q_random = module.critic_target.min(obs_t, torch.rand(9, 2) * 2 - 1)
    assert torch.all(q_chosen >= q_mode - 1e-6)  # the mode is candidate 0
    assert float(q_chosen.mean()) > float(q_random.mean())

    behavior = module.act_behavior(obs, num_steps=5)
    assert behavior.shape == (9, 2) and np.all(np.abs(behavior) <= 1.0)
    assert module.act_behavior(obs[0], num_steps=5, solver="euler").shape == (2,)


def test_bad_hyperparameters_are_config_errors() -> None:
    for kwargs, key in (({"expectile": 1.0}, "expectile"), ({"alpha": -1.0}, "alpha"),
                        ({"pretrain_updates": -1}, "pretrain_updates"),
                        ({"num_action_candidates": 0}, "num_action_candidates"),
                        ({"candidate_selection": "max"}, "candidate_selection")):
        with pytest.raises(ConfigError, match=key):
            DTQL(3, 2, **kwargs)  # type: ignore[arg-type]
    module = DTQL(3, 2, critic_optimizer=lambda p: torch.optim.Adam(p, lr=-1.0))
    with pytest.raises(ConfigError, match="critic_optimizer"):
        module.configure_optimizers()


def test_dtql_beats_random_on_pointgoal(pointgoal_file: Path, tmp_path: Path) -> None:
    # Uniform behaviour data: the trust region is the whole action box, so a small alpha lets Q lead.
    torch.manual_seed(0)
    datamodule = D4RLDataModule(dataset="pointgoal-random-v0", path=str(pointgoal_file), batch_size=64,
                                batches_per_step=10, steps_per_epoch=50)
    module = DTQL(
        datamodule.obs_dim, datamodule.act_dim, critic_hidden_dims=(64, 64), value_hidden_dims=(64, 64),
        actor_hidden_dims=(64, 64), denoiser_hidden_dim=64, denoiser_depth=2, alpha=0.2,
        pretrain_updates=150, max_updates=600, log_every=100,
        optimizer=optimizer_default_partial(1e-3), critic_optimizer=optimizer_default_partial(1e-3),
    )
    fit(module, datamodule, tmp_path)
    assert_beats_random(module.act)


@pytest.mark.parametrize("name", ["hopper", "halfcheetah", "walker2d", "antmaze"])
def test_configs_build_the_module_they_name(name: str) -> None:
    config = yaml.safe_load((CONF / f"dtql_{name}.yaml").read_text())
    model = config["model"]
    assert model["class_path"] == "lightning_offrl.algos.DTQL"
    init_args = {k: v for k, v in model["init_args"].items() if not k.endswith("optimizer")}
    module = DTQL(11, 3, **init_args)
    assert module.max_updates > module.pretrain_updates  # a full run reaches co-training
    if name == "antmaze":
        assert config["data"]["batch_size"] == 2048 and module.expectile == 0.9 and module.nll_weight == 1.0
        assert (config["data"]["reward_transform"], config["data"]["reward_shift"]) == ("affine", -1.0)
        assert config["evaluation"]["episodes"] == 100


def test_antmaze_config_without_data_fails_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from lightning_offrl.cli import main
    from lightning_offrl.collect.policies import POLICY_DIR_ENV

    # No D4RL file, no Minari dataset (conftest isolates both) and a policy folder without the
    # goal-reaching ant, so no replica can be built either.
    monkeypatch.setenv(POLICY_DIR_ENV, str(tmp_path))
    code = main(["fit", "--config", str(CONF / "dtql_antmaze.yaml"), "--model.init_args.max_updates", "10"])
    err = capsys.readouterr().err
    # Without any antmaze data, fit stops before training, naming the dataset, what is missing and
    # the ways to supply the data.
    assert code == 2
    assert "antmaze-umaze-v2" in err and "data.path" in err and "Minari" in err
