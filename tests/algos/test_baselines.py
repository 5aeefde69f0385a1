"""IQL, SAC-N and BC: conformance, loss terms, and learning on the PointGoal toy task."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_offrl.algos import BC, IQL, SAC
from lightning_offrl.data.buffer import Batch
from lightning_offrl.errors import ConfigError
from tests.algos.conformance import assert_beats_random, check_conformance, fit, small_datamodule

SMALL = dict(hidden_dims=(32, 32), log_every=5)
FACTORIES = {
    "iql": lambda o, a, n: IQL(o, a, max_updates=n, **SMALL),
    "iql_deterministic": lambda o, a, n: IQL(o, a, max_updates=n, deterministic_actor=True, **SMALL),
    "sac": lambda o, a, n: SAC(o, a, num_critics=4, max_updates=n, **SMALL),
    "bc": lambda o, a, n: BC(o, a, max_updates=n, **SMALL),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_conformance(name: str, pointgoal_file: Path, tmp_path: Path) -> None:
    check_conformance(FACTORIES[name], pointgoal_file, tmp_path)


def _batch(n: int = 64, obs_dim: int = 3, act_dim: int = 2) -> Batch:
    g = torch.Generator().manual_seed(0)
    return Batch(
        torch.randn(n, obs_dim, generator=g), torch.rand(n, act_dim, generator=g) * 2 - 1,
        torch.randn(n, generator=g), torch.randn(n, obs_dim, generator=g), torch.zeros(n),
    )


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_losses_are_finite_scalars_with_gradients(name: str) -> None:
    module = FACTORIES[name](3, 2, 10)
    batch = _batch()
    losses = {
        "iql": lambda m: [m.value_loss(batch), m.critic_loss(batch), m.actor_loss(batch)[0]],
        "iql_deterministic": lambda m: [m.actor_loss(batch)[0]],
        "sac": lambda m: [m.critic_loss(batch), m.actor_loss(batch)[0]],
        "bc": lambda m: [m.bc_loss(batch)],
    }[name](module)
    for loss in losses:
        assert loss.ndim == 0 and torch.isfinite(loss)
        module.zero_grad()
        loss.backward()
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


def test_expectile_value_tracks_upper_expectile() -> None:
    # V fit by the expectile loss to fixed targets converges to their expectile, above the mean.
    from lightning_offrl.algos.losses import expectile_loss

    targets = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    v = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([v], lr=0.05)
    for _ in range(500):
        opt.zero_grad()
        expectile_loss(targets - v, 0.9).backward()
        opt.step()
    assert float(v) > float(targets.mean()) + 0.5


def test_bad_hyperparameters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="max_updates"):
        IQL(3, 2, max_updates=0)
    module = IQL(3, 2, optimizer=lambda p: torch.optim.Adam(p, lr=-1.0))
    with pytest.raises(ConfigError, match="lr"):
        module.configure_optimizers()


def test_nan_loss_stops_training_before_a_checkpoint(pointgoal_file: Path, tmp_path: Path) -> None:
    from lightning_offrl.errors import TrainingDivergedError

    class Exploding(BC):
        def bc_loss(self, batch: Batch) -> torch.Tensor:
            return super().bc_loss(batch) * float("nan")

    module = Exploding(2, 2, max_updates=20, **SMALL)
    with pytest.raises(TrainingDivergedError, match="bc_loss"):
        fit(module, small_datamodule(pointgoal_file), tmp_path)
    assert not (tmp_path / "ckpt" / "last.ckpt").exists()


def test_iql_beats_random_on_pointgoal(pointgoal_file: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    datamodule = small_datamodule(pointgoal_file, batches_per_step=10, steps_per_epoch=50)
    module = IQL(datamodule.obs_dim, datamodule.act_dim, hidden_dims=(64, 64), max_updates=1500, beta=3.0)
    fit(module, datamodule, tmp_path)
    assert_beats_random(module.act)


def test_deterministic_iql_actor_loss_is_the_advantage_weighted_squared_error() -> None:
    # CORL's iql_deterministic: sum over action dims of (pi(s) - a)^2, weighted by exp(beta A) clipped.
    from lightning_offrl.algos.losses import advantage_weights

    module = IQL(3, 2, deterministic_actor=True, beta=3.0, **SMALL)
    batch = _batch()
    with torch.no_grad():
        advantage = module.critic_target.min(batch.observations, batch.actions) - module.value(batch.observations)
        weights = advantage_weights(advantage, 3.0, 100.0)
        expected = (weights * (module.actor(batch.observations) - batch.actions).pow(2).sum(-1)).mean()
    torch.testing.assert_close(module.actor_loss(batch)[0], expected)
    assert torch.equal(module.policy(batch.observations), module.actor(batch.observations))


@pytest.mark.parametrize("updated", [True, False])
def test_iql_targets_use_the_value_before_or_after_its_step(updated: bool, monkeypatch) -> None:
    # One update by hand: the actor's advantage and Q's target read V after the value step (paper's
    # code) or before it (CORL's). A large value learning rate makes the two clearly different.
    torch.manual_seed(0)
    module = IQL(3, 2, max_updates=10, cosine_actor_lr=False, targets_from_updated_value=updated,
                 optimizer=lambda p: torch.optim.SGD(p, lr=0.5), **SMALL)
    opts = module.configure_optimizers()
    monkeypatch.setattr(module, "optimizers", lambda: opts)
    monkeypatch.setattr(module, "manual_backward", lambda loss: loss.backward())
    batch = _batch()
    with torch.no_grad():
        target_q = module.critic_target.min(batch.observations, batch.actions)
        v_before, next_v_before = module.value(batch.observations), module.value(batch.next_observations)
    seen = {}
    actor_loss, critic_loss = module.actor_loss, module.critic_loss

    def spy_actor(b, tq=None, value=None):
        seen["advantage"] = (tq - (module.value(b.observations) if value is None else value)).detach()
        return actor_loss(b, tq, value)

    def spy_critic(b, next_v=None):
        seen["next_v"] = module.value(b.next_observations).detach() if next_v is None else next_v
        return critic_loss(b, next_v)

    monkeypatch.setattr(module, "actor_loss", spy_actor)
    monkeypatch.setattr(module, "critic_loss", spy_critic)
    module.update(batch)
    with torch.no_grad():
        v_after, next_v_after = module.value(batch.observations), module.value(batch.next_observations)
    assert not torch.allclose(v_before, v_after)
    expected_v, expected_next_v = (v_after, next_v_after) if updated else (v_before, next_v_before)
    torch.testing.assert_close(seen["advantage"], target_q - expected_v)
    torch.testing.assert_close(seen["next_v"], expected_next_v)
