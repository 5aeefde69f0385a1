"""Diffusion Trusted Q-Learning (Chen, Wang, Zhou 2024, arXiv 2405.19690).

DTQL trains two policies side by side and acts with the cheap one:

1. a **diffusion behaviour policy** ``mu_phi(a_t, sigma | s)`` (EDM preconditioning, Karras et al.
   2022) cloned from the data with the weighted denoising loss
   ``L(phi) = E_{sigma, eps, (s, a) ~ D} [lambda(sigma) || mu_phi(a + sigma eps, sigma | s) - a ||^2]``;
2. **twin Q + V** learnt as in IQL: ``V`` fits an upper expectile of ``min_i Q_i(s, a)`` over dataset
   actions, ``Q_i`` regresses ``r + gamma (1 - d) V(s')``;
3. a **one-step tanh-Gaussian policy** ``a_theta = tanh(m_theta(s) + s_theta(s) z)`` minimising
   ``alpha L_TR(theta) - E[min_i Q_i(s, a_theta)] - nll_weight E_{(s, a) ~ D}[log pi_theta(a | s)]``
   with the **diffusion trust-region loss**
   ``L_TR(theta) = E_{sigma, eps, s ~ D, a_theta ~ pi_theta} [lambda(sigma) || mu_phi(a_theta + sigma eps,
   sigma | s) - a_theta ||^2]`` evaluated under the *frozen* diffusion model. ``L_TR`` is small
   wherever the behaviour policy has mass: it keeps ``a_theta`` inside the data's action manifold
   and, unlike a KL to the behaviour policy, lets it settle in one mode instead of covering all.

Training runs in two phases chosen from the module's own update counter (saved in checkpoints):
``pretrain_updates`` updates of diffusion + critic, then co-training of all three parts. Acting uses
the one-step policy only: its mode ``tanh(m_theta(s))``, or the best of N candidates scored by the
target critic (the paper's code draws 1024 candidates and picks one by ``softmax(Q)``).

Facts taken from the paper's public code (github: TianyuCodings/Diffusion_Trusted_Q_Learning):
the training noise levels follow a log-logistic density (loc ``ln sigma_data``, scale 0.5) truncated
to ``[sigma_min, sigma_max]``; the denoised estimate is clipped to the action bounds inside both
denoising losses; ``alpha`` weighs the trust-region term and the Q term is *not* normalised by
``|Q|``; the "entropy" term (``nll_weight``, the paper's gamma: 1 on antmaze, 0 elsewhere) is the
negative log-likelihood of *dataset* actions under the one-step policy; V's expectile target is the
online critic's ``min Q`` without gradient; Q and V share one optimizer with a fixed learning rate.
"""

from __future__ import annotations

import math
from typing import Literal, Mapping, Sequence

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from lightning_offrl.algos.base import OfflineRLModule, OptimizerFactory, polyak_update
from lightning_offrl.algos.losses import ensemble_mse, expectile_loss, td_target
from lightning_offrl.data.buffer import Batch
from lightning_offrl.diffusion.edm import EDMDiffusion
from lightning_offrl.errors import ConfigError
from lightning_offrl.networks import EnsembleQ, TanhGaussianActor, ValueNet
from lightning_offrl.networks.actors import gaussian_log_prob, tanh_log_det_jacobian
from lightning_offrl.networks.denoisers import DenoiserMLP

# The paper's code evaluates log pi(a|s) at atanh(a / (1 + 1e-3)): dataset actions on the bounds
# (common in D4RL) map to a finite pre-tanh value (~3.8) instead of atanh(1) = inf.
NLL_ACTION_EPS = 1e-3

CandidateSelection = Literal["argmax", "softmax"]
SigmaDensity = Literal["loglogistic", "lognormal"]


class DTQL(OfflineRLModule):
    """DTQL as a LightningModule.

    Args:
        obs_dim: observation size (linked from the data).
        act_dim: action size (linked from the data).
        alpha: weight of the diffusion trust-region loss against ``-Q``; larger -> closer to the
            behaviour policy's modes, smaller -> greedier w.r.t. Q (paper: 1 halfcheetah-medium and
            antmaze, 5 hopper/walker2d, 20-50 medium-expert).
        nll_weight: weight of ``-log pi_theta(a|s)`` on dataset actions, the paper's entropy term
            gamma (1 on antmaze, 0 on locomotion); keeps the one-step policy's spread from collapsing.
        gamma: discount.
        tau: Polyak rate of the target critic (used to score action candidates).
        expectile: expectile of V over dataset actions (0.7 locomotion, 0.9 antmaze).
        pretrain_updates: updates of diffusion + critic alone before the one-step policy trains
            (paper: 50 epochs x 1000 = 50,000).
        lr_decay: cosine-decay every learning rate to 0 over the co-training updates
            (``max_updates - pretrain_updates``), as the paper does on some tasks.
        critic_hidden_dims: hidden widths of each Q network (paper: 3 x 256, LayerNorm, Mish).
        value_hidden_dims: hidden widths of V (paper: 3 x 256, Mish, no LayerNorm).
        actor_hidden_dims: hidden widths of the one-step policy (paper: 3 x 256, ReLU).
        denoiser_hidden_dim: width of the diffusion denoiser MLP (paper: 256, Mish).
        denoiser_depth: hidden layers of the denoiser MLP.
        denoiser_time_dim: size of the noise-level embedding (paper: 16).
        sigma_min: smallest noise level (EDM: 0.002).
        sigma_max: largest noise level (EDM: 80).
        sigma_data: standard deviation assumed for the actions (EDM: 0.5).
        sigma_density: density of training noise levels: ``loglogistic`` (paper's code) or
            ``lognormal`` (EDM).
        sigma_loc: location of ``ln sigma`` when training; ``None`` means ``ln(sigma_data)``.
        sigma_scale: scale of ``ln sigma`` when training (paper's code: 0.5).
        clip_denoised: clip the denoiser's estimate to ``[-1, 1]`` inside the denoising losses and
            the sampler (paper's code does).
        num_action_candidates: actions drawn from the one-step policy per state when acting; 1 acts
            with the policy's mode ``tanh(mean)``, N > 1 scores the mode and N - 1 samples with the
            target critic (paper's code: 1024).
        candidate_selection: ``argmax`` keeps the candidate with the highest Q; ``softmax`` draws
            one with probability ``softmax(Q)`` (paper's code).
        action_seed: seed of the candidate draws; every ``act()`` call reuses it, so acting is a
            deterministic function of the observation.
        orthogonal_actor_init: orthogonal weights and zero biases in the one-step policy (paper).
        optimizer: factory for the diffusion model's and the one-step policy's optimizers (default
            Adam, lr 3e-4; the paper's per-task ``lr``).
        critic_optimizer: factory for the optimizer of Q and V together (paper: Adam, lr 3e-4 on
            every task).
        max_updates: budget in updates, pretraining included.
        log_every: updates between logged metrics.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        alpha: float = 1.0,
        nll_weight: float = 0.0,
        gamma: float = 0.99,
        tau: float = 0.005,
        expectile: float = 0.7,
        pretrain_updates: int = 50_000,
        lr_decay: bool = False,
        critic_hidden_dims: Sequence[int] = (256, 256, 256),
        value_hidden_dims: Sequence[int] = (256, 256, 256),
        actor_hidden_dims: Sequence[int] = (256, 256, 256),
        denoiser_hidden_dim: int = 256,
        denoiser_depth: int = 3,
        denoiser_time_dim: int = 16,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        sigma_data: float = 0.5,
        sigma_density: SigmaDensity = "loglogistic",
        sigma_loc: float | None = None,
        sigma_scale: float = 0.5,
        clip_denoised: bool = True,
        num_action_candidates: int = 1,
        candidate_selection: CandidateSelection = "argmax",
        action_seed: int = 0,
        orthogonal_actor_init: bool = True,
        optimizer: OptimizerFactory | None = None,
        critic_optimizer: OptimizerFactory | None = None,
        max_updates: int = 1_050_000,
        log_every: int = 1000,
    ) -> None:
        super().__init__(obs_dim, act_dim, max_updates=max_updates, log_every=log_every)
        self.save_hyperparameters(ignore=["optimizer", "critic_optimizer"])
        if alpha < 0 or nll_weight < 0:
            raise ConfigError(f"model.alpha and model.nll_weight must be >= 0, got {alpha} and {nll_weight}")
        if not 0.0 < expectile < 1.0:
            raise ConfigError(f"model.expectile must lie in (0, 1), got {expectile}")
        if pretrain_updates < 0:
            raise ConfigError(f"model.pretrain_updates must be >= 0, got {pretrain_updates}")
        if num_action_candidates < 1:
            raise ConfigError(f"model.num_action_candidates must be >= 1, got {num_action_candidates}")
        if candidate_selection not in ("argmax", "softmax"):
            raise ConfigError(
                f"model.candidate_selection={candidate_selection!r}: choose 'argmax' or 'softmax'"
            )
        self.alpha = alpha
        self.nll_weight = nll_weight
        self.gamma = gamma
        self.tau = tau
        self.expectile = expectile
        self.pretrain_updates = pretrain_updates
        self.lr_decay = lr_decay
        self.clip_denoised = clip_denoised
        self.num_action_candidates = num_action_candidates
        self.candidate_selection = candidate_selection
        self.action_seed = action_seed
        self.optimizer_factory = optimizer
        self.critic_optimizer_factory = critic_optimizer
        self._behavior_sampler: tuple[int, Literal["heun", "euler"]] | None = None  # set by act_behavior()

        # Behaviour policy: EDM process + denoiser conditioned on the state.
        self.diffusion = EDMDiffusion(
            sigma_min=sigma_min, sigma_max=sigma_max, sigma_data=sigma_data,
            p_mean=math.log(sigma_data) if sigma_loc is None else sigma_loc, p_std=sigma_scale,
            sigma_density=sigma_density,
        )
        self.denoiser = DenoiserMLP(
            act_dim, obs_dim, hidden_dim=denoiser_hidden_dim, depth=denoiser_depth,
            time_dim=denoiser_time_dim, activation=nn.Mish,
        )
        # Critics: twin Q with LayerNorm, V without (paper's Critic), Mish everywhere.
        self.critic = EnsembleQ(obs_dim, act_dim, critic_hidden_dims, num_critics=2, layer_norm=True,
                                activation=nn.Mish)
        self.critic_target = EnsembleQ(obs_dim, act_dim, critic_hidden_dims, num_critics=2, layer_norm=True,
                                       activation=nn.Mish).requires_grad_(False)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.value = ValueNet(obs_dim, value_hidden_dims, activation=nn.Mish)
        # One-step policy.
        self.actor = TanhGaussianActor(obs_dim, act_dim, actor_hidden_dims)
        if orthogonal_actor_init:
            for layer in self.actor.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.orthogonal_(layer.weight)
                    nn.init.zeros_(layer.bias)

    # ------------------------------------------------------------------------------ phases
    @property
    def in_pretraining(self) -> bool:
        """True while ``num_updates < pretrain_updates`` (diffusion + critic only)."""
        return int(self.num_updates) < self.pretrain_updates

    def on_fit_start(self) -> None:
        if self.max_updates <= self.pretrain_updates:
            rank_zero_warn(
                f"DTQL: max_updates={self.max_updates} <= pretrain_updates={self.pretrain_updates}: this run "
                "only pretrains the diffusion model and the critic; the one-step policy used by act() stays "
                "untrained. Raise model.max_updates or lower model.pretrain_updates for a run that learns a "
                "policy."
            )

    def on_train_start(self) -> None:
        super().on_train_start()
        # A checkpoint restores the schedules with the horizon of the run that wrote it (a
        # pretraining-only run has none); the co-training horizon is that of this run's budget.
        if self.lr_decay:
            for schedule in self.lr_schedulers():  # type: ignore[union-attr]
                schedule.T_max = max(1, self.max_updates - self.pretrain_updates)

    # ------------------------------------------------------------------------------ losses
    def denoising_loss(self, actions: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """``lambda(sigma) ||clip(mu_phi(a + sigma eps, sigma | s)) - a||^2`` per sample (EDM eq. 2).

        ``lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` (EDM's weighting, ``1 / c_out^2``)
        and ``sigma`` is drawn from the training density. Gradients reach the denoiser and
        ``actions``: on dataset actions this is the behaviour-cloning loss of the diffusion policy;
        on the one-step policy's actions, with the denoiser frozen, it is the trust-region loss.

        Args:
            actions: ``(B, act_dim)`` clean actions in ``[-1, 1]``.
            obs: ``(B, obs_dim)`` states (the condition).

        Returns:
            ``(B,)`` losses, averaged over action dimensions.
        """
        sigma = self.diffusion.sample_training_sigmas(actions.shape[0], device=actions.device)
        sigma = sigma.to(actions.dtype)
        noisy = actions + sigma.unsqueeze(-1) * torch.randn_like(actions)
        denoised = self.diffusion.denoise(self.denoiser, noisy, sigma, obs)
        if self.clip_denoised:
            denoised = denoised.clamp(-1.0, 1.0)
        return self.diffusion.loss_weight(sigma) * (denoised - actions).square().mean(dim=-1)

    def behavior_loss(self, batch: Batch) -> torch.Tensor:
        """Diffusion behaviour cloning ``L(phi)`` on dataset actions. Scalar."""
        return self.denoising_loss(batch.actions, batch.observations).mean()

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """IQL's value and Q losses (Kostrikov et al. 2022, eqs. 5-6), as in the paper's code.

        ``V(s)`` fits the ``expectile`` of ``min_i Q_i(s, a)`` (online critic, no gradient: the
        same forward pass as the Q loss); ``Q_i(s, a)`` regresses ``r + gamma (1 - d) V(s')``.

        Returns:
            ``(value_loss, q_loss)``, scalars.
        """
        q_values = self.critic(batch.observations, batch.actions)  # (2, B)
        value = self.value(batch.observations)
        value_loss = expectile_loss(q_values.detach().min(dim=0).values - value, self.expectile)
        with torch.no_grad():
            next_value = self.value(batch.next_observations)
        target = td_target(batch.rewards, batch.terminals, next_value, self.gamma)
        return value_loss, ensemble_mse(q_values, target)

    def trust_region_loss(self, obs: torch.Tensor, policy_actions: torch.Tensor) -> torch.Tensor:
        """``L_TR(theta)``: the denoising loss of the behaviour diffusion at the one-step policy's actions.

        Minimised over ``policy_actions`` only (call with the denoiser frozen): it is low where the
        diffusion model reconstructs the action well, i.e. inside high-density regions of the
        behaviour policy, and mode-seeking rather than mode-covering. Scalar.
        """
        return self.denoising_loss(policy_actions, obs).mean()

    def policy_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``alpha L_TR - E[min_i Q_i(s, a_theta)] - nll_weight E_D[log pi_theta(a|s)]`` and its terms.

        Call with the denoiser and the critic frozen (``requires_grad_(False)``) so that only the
        one-step policy receives gradients.

        Returns:
            ``actor_loss`` (to minimise), ``trust_region_loss``, ``q_policy`` (mean min Q at the
            policy's actions), ``nll`` (mean negative log-likelihood of dataset actions, computed
            only when ``nll_weight > 0``) and ``policy_log_std`` (mean log std, a spread diagnostic).
        """
        obs = batch.observations
        mean, log_std = self.actor(obs)
        # Reparameterised draw a_theta = tanh(m + s z) (paper's DiagGaussianActorTanhAction.sample).
        policy_actions = torch.tanh(mean + log_std.exp() * torch.randn_like(mean))
        trust_region = self.trust_region_loss(obs, policy_actions)
        q_policy = self.critic.min(obs, policy_actions).mean()
        actor_loss = self.alpha * trust_region - q_policy
        terms = {"trust_region_loss": trust_region, "q_policy": q_policy, "policy_log_std": log_std.mean()}
        if self.nll_weight > 0.0:
            pre_tanh = torch.atanh(batch.actions.clamp(-1.0 + NLL_ACTION_EPS, 1.0 - NLL_ACTION_EPS))
            log_prob = gaussian_log_prob(pre_tanh, mean, log_std) - tanh_log_det_jacobian(pre_tanh)
            nll = -log_prob.mean()
            actor_loss = actor_loss + self.nll_weight * nll
            terms["nll"] = nll
        terms["actor_loss"] = actor_loss
        return terms

    # ------------------------------------------------------------------------------ update
    def update(self, batch: Batch) -> Mapping[str, torch.Tensor]:
        optimizers = self.optimizers()
        critic_opt, diffusion_opt, actor_opt = optimizers
        pretraining = self.in_pretraining

        value_loss, q_loss = self.critic_loss(batch)
        self.optimizer_step_on(critic_opt, value_loss + q_loss)

        bc_loss = self.behavior_loss(batch)
        self.optimizer_step_on(diffusion_opt, bc_loss)
        metrics = {
            "value_loss": value_loss.detach(), "critic_loss": q_loss.detach(), "bc_loss": bc_loss.detach()
        }

        if not pretraining:
            # Only the one-step policy learns from its loss: freezing the denoiser and the critic
            # skips their parameter gradients (the trust region is measured, not moved).
            self.denoiser.requires_grad_(False)
            self.critic.requires_grad_(False)
            terms = self.policy_loss(batch)
            self.optimizer_step_on(actor_opt, terms["actor_loss"])
            self.denoiser.requires_grad_(True)
            self.critic.requires_grad_(True)
            metrics.update({name: value.detach() for name, value in terms.items()})
            if self.lr_decay:
                for schedule in self.lr_schedulers():  # type: ignore[union-attr]
                    schedule.step()
        polyak_update(self.critic_target, self.critic, self.tau)
        return metrics

    # ------------------------------------------------------------------------------ acting
    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """One-step actions: the mode, or the best of ``num_action_candidates`` by target Q.

        (Inside :meth:`act_behavior` only, the diffusion sampler's actions instead.)

        Args:
            obs: ``(N, obs_dim)`` normalised observations.

        Returns:
            ``(N, act_dim)`` actions in ``[-1, 1]``.
        """
        if self._behavior_sampler is not None:  # inside act_behavior(): same act() path, other policy
            num_steps, solver = self._behavior_sampler
            return self.sample_behavior(obs, num_steps, solver)
        if self.num_action_candidates == 1:
            return self.actor.deterministic(obs)
        return self.best_of_candidates(obs, self.num_action_candidates, self.candidate_selection)

    def best_of_candidates(
        self, obs: torch.Tensor, num_candidates: int, selection: CandidateSelection = "argmax"
    ) -> torch.Tensor:
        """The paper's action selection: one-step candidates scored by ``min_i Q'_i(s, a)``.

        Candidate 0 is the policy's mode, the others are samples drawn with a generator seeded
        with ``action_seed`` on every call (a deterministic function of ``obs``).

        Args:
            obs: ``(N, obs_dim)`` normalised observations.
            num_candidates: candidates ``K`` per state.
            selection: ``argmax`` or ``softmax`` (draw with probability ``softmax(Q)`` over the K).

        Returns:
            ``(N, act_dim)`` the selected actions.
        """
        n = obs.shape[0]
        generator = torch.Generator(device=obs.device).manual_seed(self.action_seed)
        mean, log_std = self.actor(obs)  # (N, A)
        noise = torch.randn(
            (n, num_candidates, self.act_dim), generator=generator, device=obs.device, dtype=obs.dtype
        )
        noise[:, 0] = 0.0
        candidates = torch.tanh(mean.unsqueeze(1) + log_std.exp().unsqueeze(1) * noise)  # (N, K, A)
        obs_repeated = obs.unsqueeze(1).expand(n, num_candidates, obs.shape[-1])
        q = self.critic_target.min(obs_repeated.reshape(n * num_candidates, -1),
                                   candidates.reshape(n * num_candidates, -1)).view(n, num_candidates)
        if selection == "argmax":
            index = q.argmax(dim=1)
        else:
            index = torch.multinomial(torch.softmax(q, dim=1), 1, generator=generator).squeeze(1)
        return candidates[torch.arange(n, device=obs.device), index]

    def sample_behavior(
        self,
        obs: torch.Tensor,
        num_steps: int = 15,
        solver: Literal["heun", "euler"] = "heun",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Samples the diffusion behaviour policy with EDM's ODE solver (to compare; DTQL never acts with it).

        Args:
            obs: ``(N, obs_dim)`` normalised observations.
            num_steps: noise levels of the sampler (Heun: ``2 num_steps - 1`` network calls).
            solver: ``heun`` or ``euler``.
            generator: random source of the initial noise.

        Returns:
            ``(N, act_dim)`` actions in ``[-1, 1]``.
        """
        shape = (obs.shape[0], self.act_dim)
        noise = torch.randn(shape, generator=generator, device=obs.device, dtype=obs.dtype)
        clip = 1.0 if self.clip_denoised else None
        return self.diffusion.sample(self.denoiser, noise, obs, num_steps=num_steps, solver=solver, clip=clip)

    def act_behavior(
        self, obs: np.ndarray | torch.Tensor, num_steps: int = 15, solver: Literal["heun", "euler"] = "heun"
    ) -> np.ndarray:
        """``act()`` through the diffusion behaviour policy instead of the one-step policy.

        Goes through :meth:`act` itself (normalisation, eval mode, bounds, numpy), so the two are
        comparable call for call.

        Args:
            obs: ``(obs_dim,)`` or ``(N, obs_dim)`` raw observations.
            num_steps: sampler noise levels.
            solver: ``heun`` or ``euler``.

        Returns:
            ``(act_dim,)`` or ``(N, act_dim)`` float32 actions in ``[-1, 1]``.
        """
        self._behavior_sampler = (num_steps, solver)
        try:
            return self.act(obs)
        finally:
            self._behavior_sampler = None

    # ------------------------------------------------------------------------------ optimizers
    def configure_optimizers(self):  # type: ignore[override]
        critic_params = [*self.critic.parameters(), *self.value.parameters()]
        critic_opt = self.build_optimizer(self.critic_optimizer_factory, critic_params, "critic_optimizer")
        diffusion_opt = self.build_optimizer(self.optimizer_factory, self.denoiser.parameters(), "optimizer")
        actor_opt = self.build_optimizer(self.optimizer_factory, self.actor.parameters(), "optimizer")
        optimizers = [critic_opt, diffusion_opt, actor_opt]
        if not self.lr_decay:
            return optimizers
        # The paper decays over its co-training epochs only; schedules step in co-training only.
        cotrain_updates = max(1, self.max_updates - self.pretrain_updates)
        schedules = [
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cotrain_updates) for opt in optimizers
        ]
        return optimizers, schedules
