"""Implicit Q-Learning (Kostrikov, Nair, Levine, ICLR 2022).

IQL never queries Q at actions outside the data:

1. ``V`` is fit to an upper expectile of ``Q_target(s, a)`` over dataset actions (eq. 5);
2. ``Q`` regresses to ``r + gamma V(s')`` (eq. 6);
3. the policy is extracted by advantage-weighted regression, ``exp(beta (Q - V)) log pi(a|s)`` (eq. 7).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from lightning_offrl.algos.base import OfflineRLModule, OptimizerFactory, polyak_update
from lightning_offrl.algos.losses import (
    advantage_weights,
    effective_sample_size,
    ensemble_mse,
    expectile_loss,
    td_target,
)
from lightning_offrl.data.buffer import Batch
from lightning_offrl.networks import DeterministicActor, EnsembleQ, GaussianActor, ValueNet


class ExpectileCriticLosses:
    """IQL's critic losses (eqs. 5-6), shared by every method with an IQL critic (IQL, SWG).

    Expects ``critic`` / ``critic_target`` (:class:`EnsembleQ`), ``value`` (:class:`ValueNet`),
    ``expectile`` and ``gamma`` on the host module.
    """

    critic: EnsembleQ
    critic_target: EnsembleQ
    value: ValueNet
    expectile: float
    gamma: float

    def value_loss(
        self, batch: Batch, target_q: torch.Tensor | None = None, value: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Expectile regression of ``V(s)`` to ``min_i Q_target,i(s, a)`` (``target_q``, computed if None;
        ``value``: ``V(s)`` with its graph, computed if None)."""
        if target_q is None:
            with torch.no_grad():
                target_q = self.critic_target.min(batch.observations, batch.actions)
        if value is None:
            value = self.value(batch.observations)
        return expectile_loss(target_q - value, self.expectile)

    def critic_loss(self, batch: Batch, next_v: torch.Tensor | None = None) -> torch.Tensor:
        """Both Q members regress to ``r + gamma (1 - d) V(s')`` (``next_v``: ``V(s')``, computed if None)."""
        if next_v is None:
            with torch.no_grad():
                next_v = self.value(batch.next_observations)
        target = td_target(batch.rewards, batch.terminals, next_v, self.gamma)
        return ensemble_mse(self.critic(batch.observations, batch.actions), target)


class IQL(ExpectileCriticLosses, OfflineRLModule):
    """IQL as a LightningModule.

    Args:
        obs_dim: observation size (linked from the data).
        act_dim: action size (linked from the data).
        hidden_dims: hidden widths of actor, critics and value network (paper: 2 x 256).
        gamma: discount.
        tau: target-network Polyak rate.
        expectile: expectile of V; 0.5 -> SARSA-like mean, -> 1 -> max over dataset actions
            (0.7 locomotion, 0.9 antmaze).
        beta: inverse temperature of advantage weighting; small -> behaviour cloning, big -> greedy
            w.r.t. Q (3.0 locomotion, 10.0 antmaze).
        max_weight: clip of the advantage weights (exp overflow guard; paper: 100).
        actor_dropout: dropout in the actor (0 for locomotion).
        deterministic_actor: a deterministic ``tanh`` actor whose advantage-weighted loss is the squared
            error to the dataset action (CORL's ``iql_deterministic``) instead of the Gaussian actor's
            negative log-likelihood. Both act with the same kind of output (the Gaussian's mean).
        targets_from_updated_value: which ``V`` the actor's advantage ``Q - V(s)`` and Q's target
            ``r + gamma V(s')`` use within one update. True: ``V`` after this update's value step (the
            paper's JAX code); False: ``V`` before it, read in the same pass as the value loss (CORL's
            single-file IQL).
        cosine_actor_lr: decay the actor's learning rate to 0 over ``max_updates`` (paper's choice).
        optimizer: factory for every network's optimizer (default Adam, lr 3e-4).
        max_updates: budget in updates.
        log_every: updates between logged metrics.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        gamma: float = 0.99,
        tau: float = 0.005,
        expectile: float = 0.7,
        beta: float = 3.0,
        max_weight: float = 100.0,
        actor_dropout: float = 0.0,
        deterministic_actor: bool = False,
        targets_from_updated_value: bool = True,
        cosine_actor_lr: bool = True,
        optimizer: OptimizerFactory | None = None,
        max_updates: int = 1_000_000,
        log_every: int = 1000,
    ) -> None:
        super().__init__(obs_dim, act_dim, max_updates=max_updates, log_every=log_every)
        self.save_hyperparameters(ignore=["optimizer"])
        self.gamma = gamma
        self.tau = tau
        self.expectile = expectile
        self.beta = beta
        self.max_weight = max_weight
        self.targets_from_updated_value = targets_from_updated_value
        self.cosine_actor_lr = cosine_actor_lr
        self.optimizer_factory = optimizer
        # Leading rows of each batch the actor learns from (None: all). A wrapper that mixes its own rows
        # into the batch's tail (ADEPT's synthetic rollouts) sets it to keep them out of the actor's loss.
        self.actor_rows: int | None = None

        self.critic = EnsembleQ(obs_dim, act_dim, hidden_dims, num_critics=2)
        self.critic_target = EnsembleQ(obs_dim, act_dim, hidden_dims, num_critics=2).requires_grad_(False)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.value = ValueNet(obs_dim, hidden_dims)
        self.actor: GaussianActor | DeterministicActor = (
            DeterministicActor(obs_dim, act_dim, hidden_dims, dropout=actor_dropout)
            if deterministic_actor
            else GaussianActor(obs_dim, act_dim, hidden_dims, dropout=actor_dropout)
        )

    # ------------------------------------------------------------------------------ losses
    def actor_loss(
        self, batch: Batch, target_q: torch.Tensor | None = None, value: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advantage-weighted regression (eq. 7) with ``A = min_i Q_target,i(s, a) - V(s)``.

        ``target_q`` and ``value`` (``V(s)``, without gradient) are computed when None.

        Returns:
            ``(loss, mean advantage, weights)``, the weights ``(B,)`` without gradient.
        """
        with torch.no_grad():
            if target_q is None:
                target_q = self.critic_target.min(batch.observations, batch.actions)
            if value is None:
                value = self.value(batch.observations)
            advantage = target_q - value
        weights = advantage_weights(advantage, self.beta, self.max_weight)
        if isinstance(self.actor, DeterministicActor):
            error = (self.actor(batch.observations) - batch.actions).pow(2).sum(dim=-1)
            return (weights * error).mean(), advantage.mean(), weights
        log_prob = self.actor.log_prob(batch.observations, batch.actions)
        return -(weights * log_prob).mean(), advantage.mean(), weights

    # ------------------------------------------------------------------------------ update
    def update(self, batch: Batch) -> Mapping[str, torch.Tensor]:
        value_opt, critic_opt, actor_opt = self.optimizers()
        # The target critic only moves after the Q step, so V's and the actor's targets share one pass.
        with torch.no_grad():
            target_q = self.critic_target.min(batch.observations, batch.actions)
            next_v = None if self.targets_from_updated_value else self.value(batch.next_observations)
        value = self.value(batch.observations)
        value_loss = self.value_loss(batch, target_q, value)
        self.optimizer_step_on(value_opt, value_loss)

        # The advantage and Q's target use V after its step (the paper's code) or before it (CORL's).
        rows = slice(None) if self.actor_rows is None else slice(0, self.actor_rows)
        actor_loss, advantage, weights = self.actor_loss(
            batch.rows(rows), target_q[rows],
            None if self.targets_from_updated_value else value.detach()[rows],
        )
        self.optimizer_step_on(actor_opt, actor_loss)
        if self.cosine_actor_lr:
            self.lr_schedulers().step()

        critic_loss = self.critic_loss(batch, next_v)
        self.optimizer_step_on(critic_opt, critic_loss)
        polyak_update(self.critic_target, self.critic, self.tau)
        return {
            "value_loss": value_loss.detach(),
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "advantage": advantage,
            # What the critic believes and how much of the batch the actor learns from: the mean
            # pessimistic Q of the data's actions, and the advantage weights' effective sample size as
            # a fraction of the batch, (sum w)^2 / (B sum w^2) (1: uniform weights, 1/B: one row).
            "q_data": target_q.mean(),
            "weight_ess": effective_sample_size(weights) / weights.shape[0],
        }

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.deterministic(obs)

    def configure_optimizers(self):  # type: ignore[override]
        value_opt = self.build_optimizer(self.optimizer_factory, self.value.parameters(), "optimizer")
        critic_opt = self.build_optimizer(self.optimizer_factory, self.critic.parameters(), "optimizer")
        actor_opt = self.build_optimizer(self.optimizer_factory, self.actor.parameters(), "optimizer")
        optimizers = [value_opt, critic_opt, actor_opt]
        if not self.cosine_actor_lr:
            return optimizers
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(actor_opt, T_max=self.max_updates)
        return optimizers, [schedule]
