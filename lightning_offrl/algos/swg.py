"""SWG: Diffusion Self-Weighted Guidance (Tagle, Ruiz-del-Solar & Tobar, TMLR 2025), and SWG-R.

Offline RL as weighted behaviour cloning: the target policy is the behaviour policy reweighted by a
critic, ``pi(a|s) ~ mu(a|s) w(s, a)``. SWG fits ONE diffusion model to the augmented variable
``z = (a, w(s, a))`` of the dataset, conditioned on ``s``, and guides it with itself:

1. **Critic** (IQL, Kostrikov et al. 2022, eqs. 5-6): ``V`` regresses to an upper expectile of
   ``Q_target(s, a)`` over dataset actions; ``Q`` regresses to ``r + gamma V(s')``.
2. **Weights** of the dataset actions from the advantage ``A = Q_target(s, a) - V(s)``:

   - ``expectile``: ``w = |tau - 1(A < 0)|`` (``tau`` if ``A > 0`` else ``1 - tau``), the policy implied
     by an expectile critic (IDQL; SWG's default);
   - ``exponential``: ``w = min(exp(beta A), w_max) / w_max`` (AWR's weight with temperature
     ``beta``, divided by its clip so that ``w`` lies in ``(0, 1]`` like the actions' scale; a
     constant factor changes neither the target ``mu w / Z`` nor the guidance ``grad log w``).

3. **Joint diffusion** (Algorithm 1): a VP process (15 steps) over ``z = (a, w)``, noise prediction
   ``eps_theta(z_t, t, s)`` trained with the standard loss ``||eps - eps_theta(z_t, t, s)||^2``.
4. **Self-weighted guidance** (Algorithm 2). Since ``w`` is a function of ``(s, a)``, the target
   over ``z`` diffused to time ``t`` is ``pi_t(z_t) ~ p_t(z_t) E[w_0 | z_t]``, so its score is exactly::

       grad log pi_t(z_t) = grad log p_t(z_t) + grad log E[w_0 | z_t]

   The model gives both terms: ``grad log p_t = -eps_theta / sigma_t`` and, by Tweedie's formula,
   ``E[w_0 | z_t]`` is the weight component of the data prediction
   ``z_hat_0 = (z_t - sigma_t eps_theta) / sqrt(abar_t)``. With a guidance scale ``rho`` (the paper
   sweeps 1 .. 30; ``rho = 1`` is the exact target, larger sharpens towards ``mu w^rho``), the
   sampler uses ``eps_guided = eps_theta - rho sigma_t grad_{z_t} log w_hat_0(z_t)``
   (``diffusion.guidance.self_weighted_eps``). No guidance network is trained.
5. **SWG-R**: draw ``K`` guided candidates per state and keep one: the highest
   ``min_i Q_target,i(s, a)`` (``candidate_selection="q"``), or the highest weight the model sampled
   with the action (``"weight"``, the selection of the authors' PyTorch code), which needs no critic
   at acting time.

Training order (from the authors' code): the critic is trained first (500k updates, batch 256),
then the weights of every dataset action are fixed by that critic and the diffusion model is
trained on them (1M updates, batch 1024). Training both at once would make the diffusion model
chase a moving ``w``. Here the switch happens at ``critic_updates`` (default: the first third of
``max_updates``, the paper's 500k of 1.5M), a value fixed at construction and saved in checkpoints;
the frozen critic recomputes the weights of each batch on the fly, which equals precomputing them.

Two codes, two sets of settings. The defaults follow the authors' JAX code (SWG-JAX). Their PyTorch code
(SWG-pytorch) differs in five places, each an option here: 1M critic + 2M diffusion updates
(``critic_updates``, ``max_updates``); an EMA of decay 0.995 every 10 updates from update 100k
(``ema_tau=0.005``, ``ema_every``, ``ema_start``); a cosine learning rate to 1e-5 over 2M updates
(``diffusion_lr_cosine_period``, ``diffusion_lr_min``); V's and Q's gradients clipped to norm 1
(``critic_grad_clip``); one output layer for ``(a, w)`` (``separate_weight_head=False``).
``conf/swg_hopper_torch.yaml`` sets all five.
"""

from __future__ import annotations

import copy
from functools import partial
from typing import Literal, Mapping, Sequence

import torch

from lightning_offrl.algos.base import OfflineRLModule, OptimizerFactory, polyak_update
from lightning_offrl.algos.iql import ExpectileCriticLosses
from lightning_offrl.algos.losses import advantage_weights, expectile_weights
from lightning_offrl.data.buffer import Batch
from lightning_offrl.diffusion import VPDiffusion, self_weighted_eps
from lightning_offrl.errors import ConfigError
from lightning_offrl.networks import EnsembleQ, ValueNet
from lightning_offrl.networks.denoisers import ResidualDenoiser

WeightFn = Literal["expectile", "exponential"]
Sampler = Literal["ddpm", "ddim"]
CandidateSelection = Literal["q", "weight"]
CANDIDATE_SELECTIONS: tuple[str, ...] = ("q", "weight")
WEIGHT_FNS: tuple[str, ...] = ("expectile", "exponential")


def swg_weights(
    advantage: torch.Tensor, weight_fn: WeightFn, expectile: float, beta: float, max_weight: float
) -> torch.Tensor:
    """The weight ``w(s, a)`` that the diffusion model learns jointly with the action.

    Args:
        advantage: ``(B,)`` advantages ``Q(s, a) - V(s)``.
        weight_fn: ``"expectile"`` (``tau`` / ``1 - tau`` by the sign of ``A``) or ``"exponential"``
            (``min(exp(beta A), max_weight) / max_weight``).
        expectile: ``tau`` of the expectile weight.
        beta: temperature of the exponential weight (0: uniform weights, i.e. behaviour cloning).
        max_weight: clip of ``exp(beta A)`` of the exponential weight, also its normaliser.

    Returns:
        ``(B,)`` weights in ``(0, 1]``, without gradient.
    """
    if weight_fn == "expectile":
        return expectile_weights(advantage, expectile)
    if weight_fn == "exponential":
        return advantage_weights(advantage, beta, max_weight) / max_weight
    raise ConfigError(f"weight_fn={weight_fn!r}: choose one of {list(WEIGHT_FNS)}.")


class SWG(ExpectileCriticLosses, OfflineRLModule):
    """SWG and SWG-R (``num_candidates > 1``) as a LightningModule.

    Args:
        obs_dim: observation size (linked from the data).
        act_dim: action size (linked from the data).
        critic_hidden_dims: hidden widths of Q and V (SWG: 2 x 256).
        value_layer_norm: LayerNorm after each hidden layer of V (SWG's code normalises V's input).
        gamma: discount.
        tau: Polyak rate of the target critic.
        expectile: expectile of V and ``tau`` of the expectile weight (0.7 locomotion, 0.9 antmaze).
        critic_updates: updates of the critic phase, after which the diffusion model trains on the
            frozen critic's weights; ``None`` means a third of ``max_updates`` (SWG: 500k of 1.5M).
        critic_batch_size: transitions of each batch used by a critic update (SWG: 256 while the
            diffusion model uses 1024); ``None`` uses the whole batch.
        critic_grad_clip: largest 2-norm of V's gradients and of Q's (both members together) before
            their optimizer steps (SWG PyTorch code: 1.0); ``None`` does not clip (SWG JAX code).
        weight_fn: ``"expectile"`` (paper's default) or ``"exponential"``.
        beta: temperature of the exponential weight; small -> behaviour cloning, big -> greedy.
        max_weight: clip and normaliser of ``exp(beta A)`` (exponential weight only).
        diffusion_steps: number of VP steps (SWG: 15).
        hidden_dim: width of the ResNet-MLP denoiser (SWG: 256).
        num_blocks: residual blocks of the denoiser (SWG: 3).
        dropout: dropout in each residual block (SWG: 0.1).
        layer_norm: LayerNorm in each residual block (SWG: yes).
        time_dim: size of the learnable Fourier time embedding (SWG: 128).
        separate_weight_head: predict the weight's noise from its own head reading the middle block
            (SWG JAX code); ``False``: one output layer for all of ``(a, w)`` (SWG PyTorch code).
        ema_tau: Polyak rate of the sampling copy of the denoiser, ``ema <- (1 - ema_tau) ema +
            ema_tau theta`` (SWG JAX code: 0.001; the PyTorch code's decay 0.995 is ``ema_tau=0.005``);
            ``None`` samples with the trained weights directly.
        ema_every: the EMA moves once every ``ema_every`` diffusion updates (JAX code: 1, PyTorch code: 10).
        ema_start: before diffusion update number ``ema_start`` the EMA copy does not average: each
            time it would move, it is set to the denoiser instead (JAX code: 0, PyTorch code: 100k;
            the early weights are then left out of the average).
        diffusion_lr_cosine_period: diffusion updates over which the diffusion learning rate follows
            a cosine decay to ``diffusion_lr_min`` (SWG JAX code: 3M, so its 1M updates end at 0.75 of
            the rate; PyTorch code: 2M, its whole budget); ``None`` keeps it constant.
        diffusion_lr_min: the learning rate the cosine decay ends at (JAX code: 0, PyTorch code: 1e-5).
        guidance_scale: ``rho``; 0 samples the behaviour policy, 1 the exact target ``mu w``, larger
            sharpens it (the paper sweeps 1 .. 30).
        temperature: scale of the sampler's starting noise and per-step noise. 0 (SWG's evaluation
            setting) starts from ``z_T = 0`` and follows the posterior means: a deterministic policy;
            SWG-R needs ``> 0`` so that its candidates differ.
        sampler: ``"ddpm"`` (SWG) or ``"ddim"``.
        num_candidates: ``K`` guided samples per state; ``K > 1`` is SWG-R.
        candidate_selection: which of SWG-R's ``K`` candidates acts: ``"q"`` the highest pessimistic
            ``Q_target``, ``"weight"`` the highest sampled weight (the authors' PyTorch code).
        sampling_seed: seed of the sampling noise; every call of :meth:`policy` restarts it, so
            ``act()`` is a deterministic function of the observation.
        weight_clip_min: lower bound of the predicted weight (clip of ``z_hat_0`` and inside the log of
            the guidance; SWG: 1e-4). The upper bound is 1, the largest weight.
        optimizer: factory of the critic's optimizers (SWG: Adam, lr 3e-4).
        diffusion_optimizer: factory of the denoiser's optimizer (SWG: AdamW, lr 3e-4, weight decay
            1e-4; that is the default).
        max_updates: budget in updates, critic phase included (SWG: 1.5M).
        log_every: updates between logged metrics.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        critic_hidden_dims: Sequence[int] = (256, 256),
        value_layer_norm: bool = True,
        gamma: float = 0.99,
        tau: float = 0.005,
        expectile: float = 0.7,
        critic_updates: int | None = None,
        critic_batch_size: int | None = 256,
        critic_grad_clip: float | None = None,
        weight_fn: WeightFn = "expectile",
        beta: float = 3.0,
        max_weight: float = 10.0,
        diffusion_steps: int = 15,
        hidden_dim: int = 256,
        num_blocks: int = 3,
        dropout: float = 0.1,
        layer_norm: bool = True,
        time_dim: int = 128,
        separate_weight_head: bool = True,
        ema_tau: float | None = 0.001,
        ema_every: int = 1,
        ema_start: int = 0,
        diffusion_lr_cosine_period: int | None = 3_000_000,
        diffusion_lr_min: float = 0.0,
        guidance_scale: float = 1.0,
        temperature: float = 0.0,
        sampler: Sampler = "ddpm",
        num_candidates: int = 1,
        candidate_selection: CandidateSelection = "q",
        sampling_seed: int = 0,
        weight_clip_min: float = 1e-4,
        optimizer: OptimizerFactory | None = None,
        diffusion_optimizer: OptimizerFactory | None = None,
        max_updates: int = 1_500_000,
        log_every: int = 1000,
    ) -> None:
        super().__init__(obs_dim, act_dim, max_updates=max_updates, log_every=log_every)
        self.save_hyperparameters(ignore=["optimizer", "diffusion_optimizer"])
        if weight_fn not in WEIGHT_FNS:
            raise ConfigError(f"model.weight_fn={weight_fn!r}: choose one of {list(WEIGHT_FNS)}.")
        if not 0.0 < expectile < 1.0:
            raise ConfigError(
                f"model.expectile={expectile}: must lie in (0, 1) (0.7 locomotion, 0.9 antmaze)."
            )
        if max_weight <= 0.0:
            raise ConfigError(f"model.max_weight={max_weight}: must be positive.")
        if critic_updates is not None and not 0 <= critic_updates <= max_updates:
            raise ConfigError(
                f"model.critic_updates={critic_updates}: must lie in [0, max_updates={max_updates}] "
                "(or null for a third of max_updates)."
            )
        if critic_batch_size is not None and critic_batch_size <= 0:
            raise ConfigError(f"model.critic_batch_size={critic_batch_size}: must be positive (or null).")
        if critic_grad_clip is not None and not critic_grad_clip > 0.0:
            raise ConfigError(
                f"model.critic_grad_clip={critic_grad_clip}: must be positive (e.g. 1.0), or null (no clip)."
            )
        if not isinstance(separate_weight_head, bool):
            raise ConfigError(f"model.separate_weight_head={separate_weight_head!r}: must be true or false.")
        if ema_tau is not None and not 0.0 < ema_tau <= 1.0:
            raise ConfigError(f"model.ema_tau={ema_tau}: must lie in (0, 1] (or null to sample without EMA).")
        if isinstance(ema_every, bool) or not isinstance(ema_every, int) or ema_every < 1:
            raise ConfigError(f"model.ema_every={ema_every!r}: must be an integer >= 1 (1 = every update).")
        if isinstance(ema_start, bool) or not isinstance(ema_start, int) or ema_start < 0:
            raise ConfigError(f"model.ema_start={ema_start!r}: must be an integer >= 0 (0 = from the start).")
        if diffusion_lr_cosine_period is not None and diffusion_lr_cosine_period <= 0:
            raise ConfigError(
                f"model.diffusion_lr_cosine_period={diffusion_lr_cosine_period}: must be positive or null."
            )
        if not diffusion_lr_min >= 0.0:
            raise ConfigError(f"model.diffusion_lr_min={diffusion_lr_min}: must be >= 0 (e.g. 1.0e-5).")
        if diffusion_lr_min > 0.0 and diffusion_lr_cosine_period is None:
            raise ConfigError(
                f"model.diffusion_lr_min={diffusion_lr_min} needs a cosine decay: set "
                "model.diffusion_lr_cosine_period (e.g. 2000000), or diffusion_lr_min to 0."
            )
        if not 0.0 < weight_clip_min < 1.0:
            raise ConfigError(f"model.weight_clip_min={weight_clip_min}: must lie in (0, 1).")
        self.gamma = gamma
        self.tau = tau
        self.expectile = expectile
        self.critic_batch_size = critic_batch_size
        self.critic_grad_clip = critic_grad_clip
        self.weight_fn: WeightFn = weight_fn
        self.beta = beta
        self.max_weight = max_weight
        self.ema_tau = ema_tau
        self.ema_every = ema_every
        self.ema_start = ema_start
        self.diffusion_lr_cosine_period = diffusion_lr_cosine_period
        self.diffusion_lr_min = diffusion_lr_min
        self.weight_clip_min = weight_clip_min
        self.optimizer_factory = optimizer
        self.diffusion_optimizer_factory = diffusion_optimizer
        # Sampling settings are plain attributes: one trained model serves SWG and SWG-R and any
        # guidance scale (see set_sampling).
        self.set_sampling(guidance_scale, temperature, num_candidates, sampler, sampling_seed, candidate_selection)
        # Phase boundary, fixed now and restored from checkpoints (a resumed run with a larger
        # max_updates keeps the boundary it trained with).
        default_critic_updates = max_updates // 3 if critic_updates is None else critic_updates
        self.register_buffer("critic_updates", torch.tensor(default_critic_updates, dtype=torch.long))

        # Critic (IQL): clipped double Q, its Polyak target, and V.
        self.critic = EnsembleQ(obs_dim, act_dim, critic_hidden_dims, num_critics=2)
        self.critic_target = EnsembleQ(obs_dim, act_dim, critic_hidden_dims, num_critics=2)
        self.critic_target.requires_grad_(False)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.value = ValueNet(obs_dim, critic_hidden_dims, layer_norm=value_layer_norm)

        # One diffusion model over z = (a, w), conditioned on s; the weight has its own head (JAX
        # code) or shares the output layer with the action (PyTorch code).
        self.diffusion = VPDiffusion.vp(diffusion_steps)
        self.denoiser = ResidualDenoiser(
            act_dim + 1, obs_dim, hidden_dim=hidden_dim, num_blocks=num_blocks, dropout=dropout,
            layer_norm=layer_norm, time_dim=time_dim, separate_head_dim=1 if separate_weight_head else 0,
        )
        self.denoiser_ema = None if ema_tau is None else copy.deepcopy(self.denoiser).requires_grad_(False)
        # Bounds of z_hat_0 while sampling: actions in [-1, 1], weight in [weight_clip_min, 1].
        # Derived from hparams, so not saved.
        self.register_buffer("z_low", torch.tensor([-1.0] * act_dim + [weight_clip_min]), persistent=False)
        self.register_buffer("z_high", torch.ones(act_dim + 1), persistent=False)

    # ------------------------------------------------------------------------------ sampling settings
    def set_sampling(
        self,
        guidance_scale: float | None = None,
        temperature: float | None = None,
        num_candidates: int | None = None,
        sampler: Sampler | None = None,
        sampling_seed: int | None = None,
        candidate_selection: CandidateSelection | None = None,
    ) -> None:
        """Changes how :meth:`policy` samples (``None`` keeps a setting), e.g. SWG-R from an SWG run.

        Args:
            guidance_scale: ``rho >= 0``.
            temperature: noise scale ``>= 0``.
            num_candidates: ``K >= 1``; ``K > 1`` needs ``temperature > 0``.
            sampler: ``"ddpm"`` or ``"ddim"``.
            sampling_seed: seed of the sampling noise.
            candidate_selection: ``"q"`` or ``"weight"`` (SWG-R's choice among its candidates).
        """
        guidance_scale = self.guidance_scale if guidance_scale is None else float(guidance_scale)
        temperature = self.temperature if temperature is None else float(temperature)
        num_candidates = self.num_candidates if num_candidates is None else int(num_candidates)
        sampler = self.sampler if sampler is None else sampler
        sampling_seed = self.sampling_seed if sampling_seed is None else int(sampling_seed)
        selection = self.candidate_selection if candidate_selection is None else candidate_selection
        if selection not in CANDIDATE_SELECTIONS:
            raise ConfigError(
                f"model.candidate_selection={selection!r}: choose 'q' (highest Q) or 'weight' (highest sampled "
                "weight, the authors' PyTorch code)."
            )
        if guidance_scale < 0.0:
            raise ConfigError(f"model.guidance_scale={guidance_scale}: must be >= 0 (0 = no guidance).")
        if temperature < 0.0:
            raise ConfigError(f"model.temperature={temperature}: must be >= 0.")
        if num_candidates < 1:
            raise ConfigError(f"model.num_candidates={num_candidates}: must be >= 1 (1 = SWG, > 1 = SWG-R).")
        if num_candidates > 1 and temperature == 0.0:
            raise ConfigError(
                f"model.num_candidates={num_candidates} with model.temperature=0: every candidate would be "
                "the same action. SWG-R needs sampling noise; set model.temperature (e.g. 1.0)."
            )
        if sampler not in ("ddpm", "ddim"):
            raise ConfigError(f"model.sampler={sampler!r}: choose 'ddpm' or 'ddim'.")
        self.guidance_scale = guidance_scale
        self.temperature = temperature
        self.num_candidates = num_candidates
        self.sampler: Sampler = sampler
        self.sampling_seed = sampling_seed
        self.candidate_selection: CandidateSelection = selection

    # ------------------------------------------------------------------------------ losses
    @torch.no_grad()
    def action_weights(self, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The weights ``w(s, a)`` of actions under the current critic.

        Args:
            observations: ``(B, obs_dim)`` normalised observations.
            actions: ``(B, act_dim)``.

        Returns:
            ``(B,)`` weights in ``(0, 1]``.
        """
        advantage = self.critic_target.min(observations, actions) - self.value(observations)
        return swg_weights(advantage, self.weight_fn, self.expectile, self.beta, self.max_weight)

    def diffusion_loss(
        self, observations: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Algorithm 1: the denoising loss of the joint model on ``z = (a, w)`` given ``s``.

        Args:
            observations: ``(B, obs_dim)`` conditions.
            actions: ``(B, act_dim)`` dataset actions.
            weights: ``(B,)`` their weights.

        Returns:
            scalar: mean over the batch and over the ``act_dim + 1`` components of ``||eps - eps_theta||^2``.
        """
        z0 = torch.cat([actions, weights.unsqueeze(-1)], dim=-1)
        return self.diffusion.loss(lambda z_t, t: self.denoiser(z_t, t, observations), z0).mean()

    # ------------------------------------------------------------------------------ update
    def in_critic_phase(self) -> bool:
        """True while the critic trains (the first ``critic_updates`` updates)."""
        return int(self.num_updates) < int(self.critic_updates)

    def update(self, batch: Batch) -> Mapping[str, torch.Tensor]:
        if self.in_critic_phase():
            return self.critic_update(batch)
        return self.diffusion_update(batch)

    def critic_update(self, batch: Batch) -> Mapping[str, torch.Tensor]:
        """One IQL critic update (V, then Q and its target) on the first ``critic_batch_size`` rows.

        With ``critic_grad_clip`` each of V's and Q's gradients is clipped to that norm first.
        """
        value_opt, critic_opt, _ = self.optimizers()
        if self.critic_batch_size is not None and self.critic_batch_size < batch.rewards.shape[0]:
            batch = batch.rows(slice(self.critic_batch_size))
        value_loss = self.value_loss(batch)
        self.optimizer_step_on(value_opt, value_loss, max_grad_norm=self.critic_grad_clip)
        critic_loss = self.critic_loss(batch)
        self.optimizer_step_on(critic_opt, critic_loss, max_grad_norm=self.critic_grad_clip)
        polyak_update(self.critic_target, self.critic, self.tau)
        return {"value_loss": value_loss.detach(), "critic_loss": critic_loss.detach()}

    def diffusion_update(self, batch: Batch) -> Mapping[str, torch.Tensor]:
        """One update of the joint diffusion model on the frozen critic's weights, then its EMA copy."""
        _, _, diffusion_opt = self.optimizers()
        weights = self.action_weights(batch.observations, batch.actions)
        loss = self.diffusion_loss(batch.observations, batch.actions, weights)
        self.optimizer_step_on(diffusion_opt, loss)
        if self.diffusion_lr_cosine_period is not None:
            self.lr_schedulers().step()  # type: ignore[union-attr]
        # num_updates counts the updates before this one, so this is diffusion update number k >= 1.
        self.update_denoiser_ema(int(self.num_updates) - int(self.critic_updates) + 1)
        return {"diffusion_loss": loss.detach(), "weight_mean": weights.mean()}

    @torch.no_grad()
    def update_denoiser_ema(self, diffusion_updates: int) -> None:
        """Moves the sampling copy after diffusion update number ``diffusion_updates`` (from 1).

        Only every ``ema_every``-th update acts: before update ``ema_start`` it copies the denoiser (the
        PyTorch code's ``step < step_start_ema``: early weights are not averaged in), from then on it
        takes a Polyak step of rate ``ema_tau``. With the defaults (1, 0) every update takes a step.
        """
        if self.denoiser_ema is None or diffusion_updates % self.ema_every != 0:
            return
        if diffusion_updates < self.ema_start:
            self.denoiser_ema.load_state_dict(self.denoiser.state_dict())
        else:
            polyak_update(self.denoiser_ema, self.denoiser, self.ema_tau)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------ sampling
    def sample(
        self,
        obs: torch.Tensor,
        guidance_scale: float | None = None,
        temperature: float | None = None,
        num_candidates: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Algorithm 2 (and SWG-R): guided samples of ``z = (a, w)``, the best of ``K`` by Q or by ``w``.

        Runs the denoiser in eval mode (no dropout), restoring its mode after. Works under
        ``torch.no_grad()`` and ``torch.inference_mode()``: the guidance computes its gradient in a
        local autograd context (``diffusion.guidance.self_weighted_eps``).

        Args:
            obs: ``(N, obs_dim)`` normalised observations.
            guidance_scale: ``rho``; default: the module's setting.
            temperature: noise scale; default: the module's setting.
            num_candidates: ``K``; default: the module's setting.
            generator: source of the sampling noise (global RNG if ``None``).

        Returns:
            actions: ``(N, act_dim)`` in ``[-1, 1]``.
            weights: ``(N,)`` their sampled weights.
        """
        rho = self.guidance_scale if guidance_scale is None else guidance_scale
        noise_scale = self.temperature if temperature is None else temperature
        candidates = self.num_candidates if num_candidates is None else num_candidates
        denoiser = self.denoiser_ema if self.denoiser_ema is not None else self.denoiser
        cond = obs.repeat_interleave(candidates, dim=0) if candidates > 1 else obs
        z_shape = (cond.shape[0], self.act_dim + 1)
        if noise_scale == 0.0:  # SWG's evaluation setting: start at z_T = 0, draw nothing
            z_T = torch.zeros(z_shape, device=obs.device, dtype=obs.dtype)
        else:
            z_T = noise_scale * torch.randn(z_shape, device=obs.device, dtype=obs.dtype, generator=generator)

        def eps_fn(z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # The guidance differentiates the weight output only: the action outputs need no graph.
            return denoiser(z_t, t, cond, main_grad=False)

        guided_eps_fn = self_weighted_eps(
            eps_fn, self.diffusion, weight_index=-1, scale=rho, weight_min=self.weight_clip_min,
            weight_max=1.0,
        )
        was_training = denoiser.training
        denoiser.eval()
        try:
            z0 = self.diffusion.sample(
                guided_eps_fn, z_T, sampler=self.sampler, clip=(self.z_low, self.z_high),
                generator=generator, temperature=noise_scale,
            )
        finally:
            denoiser.train(was_training)
        actions, weights = z0[:, : self.act_dim], z0[:, self.act_dim]
        if candidates == 1:
            return actions, weights
        # SWG-R: keep the candidate with the highest pessimistic Q, or the highest sampled weight.
        if self.candidate_selection == "weight":
            score = weights.view(obs.shape[0], candidates)
        else:
            with torch.no_grad():
                score = self.critic_target.min(cond, actions).view(obs.shape[0], candidates)
        best = score.argmax(dim=1) + torch.arange(obs.shape[0], device=obs.device) * candidates
        return actions[best], weights[best]

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        # A fresh generator with a fixed seed per call: the same observation always gets the same
        # action (with temperature 0 and K = 1 no noise is drawn at all).
        generator = torch.Generator(device=obs.device).manual_seed(self.sampling_seed)
        return self.sample(obs, generator=generator)[0]

    # ------------------------------------------------------------------------------ optimizers
    def configure_optimizers(self):  # type: ignore[override]
        value_opt = self.build_optimizer(self.optimizer_factory, self.value.parameters(), "optimizer")
        critic_opt = self.build_optimizer(self.optimizer_factory, self.critic.parameters(), "optimizer")
        # SWG code: AdamW with optax's default weight decay 1e-4 (torch's default is 1e-2)
        default_diffusion_optimizer = partial(torch.optim.AdamW, lr=3e-4, weight_decay=1e-4)
        diffusion_factory = self.diffusion_optimizer_factory or default_diffusion_optimizer
        diffusion_opt = self.build_optimizer(
            diffusion_factory, self.denoiser.parameters(), "diffusion_optimizer"
        )
        optimizers = [value_opt, critic_opt, diffusion_opt]
        if self.diffusion_lr_cosine_period is None:
            return optimizers
        period = self.diffusion_lr_cosine_period
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            diffusion_opt, T_max=period, eta_min=self.diffusion_lr_min
        )
        return optimizers, [schedule]
