"""ADEPT: Adaptive Diffusion world model for Policy Evaluation (Fang & Lan 2024, arXiv 2405.19878).

A model-based wrapper around any offline learner of the framework (IQL, SAC, ...). One ``fit`` runs
the paper's closed loop:

0. **World-model pretraining** on the dataset: a DDPM over the next state ``s'`` conditioned on
   ``(s, a)`` with classifier-free guidance (the condition is dropped with probability
   ``condition_dropout`` so the same network also learns ``p(s')``), a separate MLP predicting the
   reward and the terminal flag from ``(s, a, s')``, and a behaviour policy ``pi_b`` fit to the
   dataset's actions by maximum likelihood (behaviour cloning).
1. **Guided policy evaluation** (start of every round): ``rollout_starts`` dataset states are
   rolled out for ``rollout_horizon`` steps, alternating an action from the *current* policy
   ``a ~ pi(.|s)`` and a next state from the world model sampled with guidance
   ``eps = (1 + w) eps(x, s, a) - w eps(x, null)`` (``w = guidance_weight``, 10 DDPM steps on a
   cosine schedule). Generated states and rewards are clipped to the dataset's range; a rollout
   stops where the terminal head predicts the end of the episode. The transitions go to a
   :class:`RolloutBuffer` that the DataModule mixes into every learner batch
   (``synthetic_fraction`` of it).
2. **Policy learning**: ``round_updates`` updates of the wrapped learner on mixed batches.
3. **Importance-sampled world-model update** (end of every round): ``importance_updates`` steps
   on dataset batches of ``world_model_batch_size`` where each transition's world-model loss is
   weighted by ``w_i = pi(a_i|s_i) / pi_b(a_i|s_i)`` (stabilised: self-normalised and/or clipped), so
   the model becomes accurate where the *current* policy acts rather than where the data's policy
   did::

       L_IS = 1/B sum_i w_i [ ||eps - eps_theta(x_t, t | s_i, a_i)||^2 + (r_hat - r_i)^2 + BCE(d_hat, d_i) ]

Budgets: ``num_updates`` counts *learner* updates only, so ``max_updates`` compares directly with
IQL/SAC budgets; world-model updates have their own counter ``world_model_updates``. Phases come
from these counters and ``rollout_rounds`` / ``importance_rounds`` (buffers, saved in checkpoints);
the synthetic buffer is saved in the checkpoint too, so a resumed run continues on the same data.

The learner interface (see ``docs/methods/adept.md``): any :class:`OfflineRLModule`. ADEPT calls its
``update(batch)``, ``policy(obs)`` and ``configure_optimizers()``; the learner's ``self.optimizers()``
and ``self.lr_schedulers()`` are routed to its own share of ADEPT's optimizers while it updates.
Rollouts sample actions with ``learner.sample_actions(obs)`` if defined, else
``learner.actor.sample(obs, generator)``, else use ``learner.policy(obs)``; importance weights need
``learner.action_log_prob(obs, actions)`` or ``learner.actor.log_prob(obs, actions)``.
"""

from __future__ import annotations

import importlib
import math
from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torch.nn import functional as F

from lightning_offrl.algos.base import OfflineRLModule, OptimizerFactory, building_inner_module
from lightning_offrl.algos.losses import effective_sample_size, importance_weights
from lightning_offrl.algos.world_model_cache import entry_path, load_entry, save_entry, tensor_digest
from lightning_offrl.data.buffer import Batch, TransitionBuffer, source_counts
from lightning_offrl.data.rollout_buffer import RolloutBuffer
from lightning_offrl.diffusion import VPDiffusion, classifier_free_eps_fn, drop_condition
from lightning_offrl.errors import ConfigError
from lightning_offrl.networks import MLP, EnsembleMLP, GaussianActor, GaussianEnsemble, TanhGaussianActor
from lightning_offrl.networks.denoisers import DenoiserMLP

LearnerFactory = Callable[[int, int], OfflineRLModule]
"""``factory(obs_dim, act_dim, max_updates=..., log_every=...) -> OfflineRLModule``; in YAML a
``class_path`` with ``init_args`` (everything but the sizes and budgets, which ADEPT passes). The two
``int`` parameters tell LightningCLI which arguments are left to the caller."""

# Steps ahead of the open-loop diagnostic: the paper's rollout horizon.
DIAGNOSTIC_HORIZON = 10

# Arguments of the learner that ADEPT sets itself (the sizes, and its own budget and logging cadence).
_LEARNER_ARGS_SET_BY_ADEPT = ("obs_dim", "act_dim", "max_updates", "log_every")


def build_learner(
    spec: LearnerFactory | Mapping[str, Any] | None,
    obs_dim: int,
    act_dim: int,
    max_updates: int,
    log_every: int,
) -> OfflineRLModule:
    """Instantiates the wrapped learner.

    Args:
        spec: a factory (what LightningCLI makes of ``class_path`` + ``init_args``), a plain
            ``{"class_path": ..., "init_args": {...}}`` mapping (what a checkpoint stores), or
            ``None`` for IQL with its defaults.
        obs_dim: observation size.
        act_dim: action size.
        max_updates: the learner's budget (ADEPT's ``max_updates``; IQL decays its actor's learning
            rate over it).
        log_every: updates between logged metrics.

    Returns:
        The learner module.
    """
    budget = {"max_updates": max_updates, "log_every": log_every}
    make: Callable[[], Any]
    if spec is None:
        from lightning_offrl.algos.iql import IQL

        make = partial(IQL, obs_dim, act_dim, **budget)
    elif isinstance(spec, Mapping):
        class_path = spec.get("class_path")
        module_name, _, class_name = str(class_path).rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError, ValueError) as err:
            raise ConfigError(
                f"model.learner.class_path={class_path!r} is not an importable class; use e.g. "
                "lightning_offrl.algos.IQL or lightning_offrl.algos.SAC"
            ) from err
        init_args = {
            k: v for k, v in dict(spec.get("init_args") or {}).items() if k not in _LEARNER_ARGS_SET_BY_ADEPT
        }
        make = partial(cls, obs_dim, act_dim, **init_args, **budget)
    elif callable(spec):
        make = partial(spec, obs_dim, act_dim, **budget)
    else:
        raise ConfigError(f"model.learner must be a class_path/init_args mapping or a factory, got {spec!r}")
    with building_inner_module():
        learner = make()
    if not isinstance(learner, OfflineRLModule):
        raise ConfigError(
            f"model.learner built a {type(learner).__name__}, not an OfflineRLModule; give a method of the "
            "framework (lightning_offrl.algos.IQL, lightning_offrl.algos.SAC, ...)"
        )
    return learner


def learner_spec(learner: OfflineRLModule) -> dict[str, Any]:
    """The plain ``class_path``/``init_args`` description of a learner, stored in ADEPT's hyperparameters.

    The learner's own optimizer factory is not a plain value and is left out: a module rebuilt from
    a checkpoint (for evaluation) does not need it, and ``fit`` takes it from the config.
    """
    cls = type(learner)
    init_args = {k: v for k, v in dict(learner.hparams).items() if k not in _LEARNER_ARGS_SET_BY_ADEPT}
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _unwrapped(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer behind Lightning's ``LightningOptimizer`` wrapper (or the optimizer itself)."""
    return getattr(optimizer, "optimizer", optimizer)


def _single_or_list(items: list[Any]) -> Any:
    """What ``LightningModule.optimizers()`` returns: the item itself when there is one."""
    return items[0] if len(items) == 1 else items


def split_optimizer_config(config: Any) -> tuple[list[torch.optim.Optimizer], list[Any]]:
    """Optimizers and schedulers of any ``configure_optimizers`` return value Lightning accepts.

    Handles an optimizer, a list of them, ``(optimizers, schedulers)``, a dict with ``optimizer`` and
    optional ``lr_scheduler`` (a scheduler or a dict with ``scheduler``), and a list of such dicts.
    """
    if isinstance(config, torch.optim.Optimizer):
        return [config], []
    if isinstance(config, Mapping):
        config = [config]
    if isinstance(config, tuple) and len(config) == 2 and isinstance(config[0], (list, tuple)):
        return list(config[0]), [s["scheduler"] if isinstance(s, Mapping) else s for s in _as_list(config[1])]
    optimizers: list[torch.optim.Optimizer] = []
    schedulers: list[Any] = []
    for item in _as_list(config):
        if isinstance(item, torch.optim.Optimizer):
            optimizers.append(item)
        elif isinstance(item, Mapping) and "optimizer" in item:
            optimizers.append(item["optimizer"])
            scheduler = item.get("lr_scheduler")
            if scheduler is not None:
                schedulers.append(scheduler["scheduler"] if isinstance(scheduler, Mapping) else scheduler)
        else:
            raise ConfigError(
                f"the learner's configure_optimizers returned {type(item).__name__}, which ADEPT cannot "
                "route; return optimizers, (optimizers, schedulers) or optimizer dicts"
            )
    return optimizers, schedulers


# An action coordinate this close to +-1 counts as at the bound (a clipped Gaussian draw lands exactly there).
BOUND_SHARE_THRESHOLD = 0.999


class ADEPT(OfflineRLModule):
    """ADEPT around a wrapped learner.

    Args:
        obs_dim: observation size (linked from the data).
        act_dim: action size (linked from the data).
        learner: the offline learner trained on real + synthetic data; in YAML a ``class_path`` with
            ``init_args`` (its sizes, budget and logging cadence come from ADEPT). Default: IQL.
        hidden_dim: width of the world model's denoiser (paper: 256).
        depth: hidden layers of the denoiser (paper: 3).
        diffusion_steps: DDPM steps of the world model, cosine schedule (paper: 10).
        guidance_weight: classifier-free guidance weight ``w`` at sampling (paper: 0.1; 0 = purely
            conditional).
        condition_dropout: probability of training on the null condition (CFG; 0.1 is usual).
        diffusion_target: what the DDPM generates: ``delta`` = the standardised change
            ``s' - s`` (the usual dynamics-model parameterisation, an exact reparameterisation of
            ``p(s'|s,a)``) or ``next_state`` = the standardised ``s'`` itself.
        reward_hidden_dims: hidden widths of the reward/terminal MLP on ``(s, a, s')``.
        behavior_policy: family of the BC behaviour policy ``pi_b``: ``tanh_gaussian`` or
            ``gaussian`` (pick the learner's own actor family so the density ratio compares like
            with like: IQL's actor is Gaussian, SAC's tanh-Gaussian).
        behavior_hidden_dims: hidden widths of ``pi_b``.
        world_model_batch_size: batch of world-model pretraining and of importance-sampled updates
            (paper: 1024 for importance sampling; pretraining uses the same).
        world_model_pretrain_updates: world-model (and ``pi_b``) updates before the first round.
        round_updates: learner updates per round (between two rollout generations).
        importance_updates: importance-sampled world-model updates at the end of every round.
        rollout_starts: dataset states rolled out per round (the rollout batch).
        rollout_horizon: steps per rollout ``H`` (paper: 10).
        rollout_retain_rounds: rounds of rollouts kept in the synthetic buffer (capacity
            ``rollout_starts * rollout_horizon * rollout_retain_rounds``); older ones are dropped first.
        rollout_std_scale: the rollouts' actions are the learner's policy with its standard deviation
            times this (1: the policy's own samples, the paper's; 0: its mean action). Needs a Gaussian
            or tanh-Gaussian actor (IQL, SAC) when not 1.
        uncertainty_samples: next states the world model draws per rollout step for the same ``(s, a)``;
            their spread is the rollout's uncertainty ``u`` (the Euclidean norm of the per-dimension
            standard deviation, in the model's standardised units), logged as
            ``rollout/mean_uncertainty``. 1 (default, the paper's): one draw, no uncertainty measured.
            Not in the paper; this project's option, in the spirit of MOPO's penalty.
        uncertainty_ensemble: members of a dynamics ensemble trained beside the world model (0, the
            default and the paper's: none). Each member is an MLP from ``(s, a)`` to the world model's
            standardised target, fit by squared error on the pretraining batches; the rollout's
            uncertainty ``u`` is then the members' disagreement (the Euclidean norm of the
            per-dimension standard deviation of their predictions, in the same units as the spread
            of ``uncertainty_samples``), as in MOPO's and MOReL's ensembles. Not in the paper; at least
            2 when set, and not together with ``uncertainty_samples`` > 1 (one signal at a time).
        ensemble_signal: what the ensemble's ``u`` is. ``"disagreement"`` (default): the members are
            deterministic and ``u`` is their disagreement, as above. ``"max_std"``: MOPO's penalty; every
            member predicts a diagonal Gaussian over the standardised target (mean and bounded
            log-variance, fit by negative log-likelihood, as in PETS and MOPO) and ``u`` is the largest,
            over members, norm of the predicted standard deviation. With ``"max_std"`` one member is
            enough (MOPO uses 7).
        ensemble_hidden_dims: hidden widths of every member of ``uncertainty_ensemble``.
        ensemble_batch_size: rows of each pretraining batch the ensemble trains on (MOPO's batch, 256;
            at most ``world_model_batch_size``): five members of 256 x 256 on a batch of 1024 would cost
            about as much as the world model itself.
        uncertainty_penalty: ``lambda`` of the penalised synthetic reward ``r - lambda u`` (rewards in
            the learner's units); 0 (default, the paper's) leaves rewards as predicted. Needs an
            uncertainty signal: ``uncertainty_samples`` >= 2 or ``uncertainty_ensemble``.
        synthetic_start_updates: learner updates on real data only before the first rollouts (a
            real-data warm-up; 0: rollouts from the first update on, the paper's).
        synthetic_fraction: share of every learner batch drawn from the synthetic buffer.
        synthetic_actor_rows: whether the learner's actor learns from the batch's synthetic rows too
            (true, the default: the whole mixed batch, as the paper's closed loop trains its learner) or
            from its real rows only (false: the synthetic rows train the critics alone). An actor that
            regresses onto the batch's actions (IQL's advantage-weighted regression) imitates its own
            rollout samples on synthetic rows; false keeps the synthetic data to policy evaluation.
            Needs a learner with an ``actor_rows`` attribute (IQL).
        synthetic_data: ablation switch; ``false`` trains the learner on real data only (no world
            model, no rollouts): ADEPT reduces to its learner.
        importance_sampling: ablation switch; ``false`` pretrains the world model once and freezes it
            (rollouts still follow the current policy).
        weight_clip: upper clip of the importance weights (after self-normalisation, so a
            multiple of the batch's mean weight); ``null`` disables clipping.
        self_normalize_weights: divide the weights by their batch mean (self-normalised importance
            sampling: bounded variance at a small bias, and invariant to the densities' scales).
        terminal_threshold: predicted probability above which a generated transition ends its rollout.
        heldout_segments: segments of ``DIAGNOSTIC_HORIZON`` (10) consecutive dataset rows kept out of
            the world model's training (pretraining, importance-sampled updates and rollout starts) and
            used to measure it at the start of every round (``diagnostics/*`` in TensorBoard, see
            :meth:`world_model_diagnostics`); 0 trains on every row and measures nothing.
        sampling_seed: seed of ADEPT's own random stream (world-model batches, rollouts); rank ``r``
            adds ``r``. ``None`` (default) draws it from torch's global generator, so that
            ``seed_everything`` gives every run its own stream.
        world_model_cache: a folder of pretrained world models (``lightning_offrl.algos.world_model_cache``):
            a run whose pretraining (same data, world-model settings, optimizers and sampling seed) is
            stored there starts from it; one whose is not pretrains and stores it. ``None`` (default):
            every run pretrains its own. For recipe screens, where every variant pretrains the same model.
        optimizer: factory of the world-model and behaviour-policy optimizers (default Adam, lr 3e-4);
            the learner's optimizers are configured in its own ``init_args``.
        max_updates: budget in *learner* updates.
        log_every: learner updates (and, while pretraining, world-model updates) between logged metrics.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        learner: LearnerFactory | Mapping[str, Any] | None = None,
        hidden_dim: int = 256,
        depth: int = 3,
        diffusion_steps: int = 10,
        guidance_weight: float = 0.1,
        condition_dropout: float = 0.1,
        diffusion_target: Literal["delta", "next_state"] = "delta",
        reward_hidden_dims: Sequence[int] = (256, 256),
        behavior_policy: Literal["tanh_gaussian", "gaussian"] = "tanh_gaussian",
        behavior_hidden_dims: Sequence[int] = (256, 256),
        world_model_batch_size: int = 1024,
        world_model_pretrain_updates: int = 10_000,
        round_updates: int = 1000,
        importance_updates: int = 100,
        rollout_starts: int = 1024,
        rollout_horizon: int = 10,
        rollout_retain_rounds: int = 5,
        rollout_std_scale: float = 1.0,
        uncertainty_samples: int = 1,
        uncertainty_ensemble: int = 0,
        ensemble_signal: Literal["disagreement", "max_std"] = "disagreement",
        ensemble_hidden_dims: Sequence[int] = (256, 256),
        ensemble_batch_size: int = 256,
        uncertainty_penalty: float = 0.0,
        synthetic_start_updates: int = 0,
        synthetic_fraction: float = 0.5,
        synthetic_actor_rows: bool = True,
        synthetic_data: bool = True,
        importance_sampling: bool = True,
        weight_clip: float | None = 10.0,
        self_normalize_weights: bool = True,
        terminal_threshold: float = 0.5,
        heldout_segments: int = 128,
        sampling_seed: int | None = None,
        world_model_cache: str | None = None,
        optimizer: OptimizerFactory | None = None,
        max_updates: int = 1_000_000,
        log_every: int = 1000,
    ) -> None:
        super().__init__(obs_dim, act_dim, max_updates=max_updates, log_every=log_every)
        self.save_hyperparameters(ignore=["optimizer", "learner"])
        positive = {
            "hidden_dim": hidden_dim, "depth": depth, "diffusion_steps": diffusion_steps,
            "world_model_batch_size": world_model_batch_size, "round_updates": round_updates,
            "rollout_starts": rollout_starts, "rollout_horizon": rollout_horizon,
            "rollout_retain_rounds": rollout_retain_rounds, "uncertainty_samples": uncertainty_samples,
            "ensemble_batch_size": ensemble_batch_size,
        }
        for name, value in positive.items():
            if int(value) != value or value <= 0:
                raise ConfigError(f"model.{name} must be a positive integer, got {value!r}")
        for name, value in (("world_model_pretrain_updates", world_model_pretrain_updates),
                            ("importance_updates", importance_updates), ("heldout_segments", heldout_segments),
                            ("synthetic_start_updates", synthetic_start_updates),
                            ("uncertainty_ensemble", uncertainty_ensemble)):
            if int(value) != value or value < 0:
                raise ConfigError(f"model.{name} must be a non-negative integer, got {value!r}")
        if not rollout_std_scale >= 0.0:
            raise ConfigError(f"model.rollout_std_scale must be at least 0, got {rollout_std_scale}")
        if synthetic_data and synthetic_fraction > 0.0 and synthetic_start_updates >= max_updates:
            raise ConfigError(
                f"model.synthetic_start_updates={synthetic_start_updates} is not below the budget "
                f"max_updates={max_updates}, so no learner update would see a synthetic row: lower "
                "synthetic_start_updates (0 starts the rollouts after the world model's pretraining), or "
                "set synthetic_data: false to train the learner alone"
            )
        if not 0.0 <= synthetic_fraction < 1.0:
            raise ConfigError(f"model.synthetic_fraction must lie in [0, 1), got {synthetic_fraction}")
        if not uncertainty_penalty >= 0.0:
            raise ConfigError(f"model.uncertainty_penalty must be at least 0, got {uncertainty_penalty}")
        if ensemble_signal not in ("disagreement", "max_std"):
            raise ConfigError(
                f"model.ensemble_signal={ensemble_signal!r}: choose 'disagreement' (deterministic members, their "
                "spread) or 'max_std' (Gaussian members, MOPO's largest predicted standard deviation)"
            )
        if ensemble_signal == "max_std" and uncertainty_ensemble == 0:
            raise ConfigError(
                "model.ensemble_signal='max_std' needs an ensemble to predict it: set model.uncertainty_ensemble "
                "to 1 or more (MOPO uses 7)"
            )
        if uncertainty_ensemble == 1 and ensemble_signal == "disagreement":
            raise ConfigError(
                "model.uncertainty_ensemble=1: one member has no disagreement to measure; use 2 or more "
                "(MOPO uses 7), or 0 for no ensemble, or ensemble_signal: max_std (a Gaussian member's own "
                "predicted spread)"
            )
        if uncertainty_ensemble > 0 and ensemble_batch_size > world_model_batch_size:
            raise ConfigError(
                f"model.ensemble_batch_size={ensemble_batch_size} is more than the pretraining batch it is "
                f"taken from (model.world_model_batch_size={world_model_batch_size}): lower it, or raise "
                "world_model_batch_size"
            )
        if uncertainty_ensemble > 0 and uncertainty_samples > 1:
            raise ConfigError(
                f"model.uncertainty_ensemble={uncertainty_ensemble} and model.uncertainty_samples="
                f"{uncertainty_samples} are two uncertainty signals, and a rollout uses one: set "
                "uncertainty_samples: 1 (the ensemble's disagreement) or uncertainty_ensemble: 0 (the spread "
                "of the world model's draws)"
            )
        if uncertainty_penalty > 0.0 and uncertainty_samples < 2 and uncertainty_ensemble == 0:
            raise ConfigError(
                f"model.uncertainty_penalty={uncertainty_penalty} needs an uncertainty signal: set "
                f"model.uncertainty_ensemble to 2 or more (a dynamics ensemble's disagreement, or with "
                f"ensemble_signal: max_std its predicted spread) or "
                f"model.uncertainty_samples to 2 or more (the spread of the world model's draws; got "
                f"{uncertainty_samples}), or the penalty to 0"
            )
        if not 0.0 <= condition_dropout < 1.0:
            raise ConfigError(f"model.condition_dropout must lie in [0, 1), got {condition_dropout}")
        if weight_clip is not None and weight_clip <= 0.0:
            raise ConfigError(f"model.weight_clip must be positive or null, got {weight_clip}")
        if diffusion_target not in ("delta", "next_state"):
            raise ConfigError(f"model.diffusion_target={diffusion_target!r}: choose 'delta' or 'next_state'")
        if not 0.0 < terminal_threshold < 1.0:
            raise ConfigError(f"model.terminal_threshold must lie in (0, 1), got {terminal_threshold}")

        self.guidance_weight = guidance_weight
        self.condition_dropout = condition_dropout
        self.diffusion_target = diffusion_target
        self.world_model_batch_size = world_model_batch_size
        self.world_model_pretrain_updates = world_model_pretrain_updates
        self.round_updates = round_updates
        self.importance_updates = importance_updates
        self.rollout_starts = rollout_starts
        self.rollout_horizon = rollout_horizon
        self.synthetic_fraction = synthetic_fraction
        self.rollout_std_scale = float(rollout_std_scale)
        self.uncertainty_samples = int(uncertainty_samples)
        self.uncertainty_penalty = float(uncertainty_penalty)
        self.uncertainty_ensemble = int(uncertainty_ensemble)
        self.ensemble_batch_size = int(ensemble_batch_size)
        self.ensemble_signal = ensemble_signal
        self.synthetic_start_updates = int(synthetic_start_updates)
        self.synthetic_data = synthetic_data
        self.synthetic_actor_rows = bool(synthetic_actor_rows)
        self.importance_sampling = importance_sampling and synthetic_data
        self.weight_clip = weight_clip
        self.self_normalize_weights = self_normalize_weights
        # A logit above log(p / (1 - p)) means a predicted probability above p.
        self.terminal_logit_threshold = math.log(terminal_threshold / (1.0 - terminal_threshold))
        self.heldout_segments = int(heldout_segments)
        if sampling_seed is None:
            sampling_seed = int(torch.randint(2**31 - 1, ()))
        self.sampling_seed = int(sampling_seed)
        self.world_model_cache = None if world_model_cache in (None, "") else str(world_model_cache)
        self.optimizer_factory = optimizer

        # -- the wrapped learner
        self.learner = build_learner(learner, obs_dim, act_dim, max_updates, log_every)
        self.hparams["learner"] = learner_spec(self.learner)
        if self.rollout_std_scale != 1.0 and not isinstance(self._learner_actor(), (GaussianActor, TanhGaussianActor)):
            raise ConfigError(
                f"model.rollout_std_scale={rollout_std_scale} scales a Gaussian actor's standard deviation, and "
                f"{type(self.learner).__name__}'s actor is {type(self._learner_actor()).__name__}; use 1.0 (the "
                "policy's own samples) or a learner with a Gaussian or tanh-Gaussian actor (IQL, SAC)"
            )
        if not self.synthetic_actor_rows and not hasattr(self.learner, "actor_rows"):
            raise ConfigError(
                f"model.synthetic_actor_rows: false keeps the synthetic rows out of the actor's loss, and "
                f"{type(self.learner).__name__} has no `actor_rows` to say which rows its actor learns from; "
                "use IQL as the learner, or synthetic_actor_rows: true (SAC's actor only reads the batch's "
                "states, so its own rollout actions are not imitated anyway)"
            )
        if self.importance_sampling and self._learner_log_prob_fn() is None:
            raise ConfigError(
                f"ADEPT's importance weights need the density of the learner's actions, and "
                f"{type(self.learner).__name__} has neither `action_log_prob(obs, actions)` nor "
                "`actor.log_prob(obs, actions)`; set model.importance_sampling: false (frozen world model) "
                "or use a learner with a stochastic actor (IQL, SAC, DTQL)"
            )

        # -- the world model: DDPM over s' given (s, a), with a flag column for the null condition
        self.diffusion = VPDiffusion.cosine(diffusion_steps)
        self.denoiser = DenoiserMLP(
            obs_dim, cond_dim=obs_dim + act_dim + 1, hidden_dim=hidden_dim, depth=depth
        )
        # Reward and terminal logit from (s, a, s'): one trunk, two outputs.
        self.reward_model = MLP(2 * obs_dim + act_dim, 2, tuple(reward_hidden_dims))
        # -- the optional dynamics ensemble whose disagreement measures the rollouts' uncertainty
        self.dynamics_ensemble: EnsembleMLP | GaussianEnsemble | None = None
        if self.uncertainty_ensemble > 0:
            members = GaussianEnsemble if ensemble_signal == "max_std" else EnsembleMLP
            self.dynamics_ensemble = members(
                self.uncertainty_ensemble, obs_dim + act_dim, obs_dim, tuple(ensemble_hidden_dims)
            )
        # -- the behaviour policy pi_b, fit by maximum likelihood to the dataset's actions
        if behavior_policy == "tanh_gaussian":
            self.behavior: nn.Module = TanhGaussianActor(obs_dim, act_dim, tuple(behavior_hidden_dims))
        elif behavior_policy == "gaussian":
            self.behavior = GaussianActor(obs_dim, act_dim, tuple(behavior_hidden_dims))
        else:
            raise ConfigError(
                f"model.behavior_policy={behavior_policy!r}: choose 'tanh_gaussian' or 'gaussian'"
            )

        # -- dataset statistics in normalised units (set in setup(), saved in checkpoints)
        self.register_buffer("obs_low", torch.full((obs_dim,), -math.inf))
        self.register_buffer("obs_high", torch.full((obs_dim,), math.inf))
        self.register_buffer("reward_low", torch.tensor(-math.inf))
        self.register_buffer("reward_high", torch.tensor(math.inf))
        self.register_buffer("target_mean", torch.zeros(obs_dim))
        self.register_buffer("target_std", torch.ones(obs_dim))
        self.register_buffer("target_low", torch.full((obs_dim,), -10.0))
        self.register_buffer("target_high", torch.full((obs_dim,), 10.0))
        # -- phase counters (saved in checkpoints; num_updates counts learner updates)
        self.register_buffer("world_model_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("rollout_rounds", torch.zeros((), dtype=torch.long))
        self.register_buffer("importance_rounds", torch.zeros((), dtype=torch.long))

        capacity = rollout_starts * rollout_horizon * rollout_retain_rounds
        self.rollout_buffer = RolloutBuffer(capacity, obs_dim, act_dim)
        self.real_buffer: TransitionBuffer | None = None
        # Rows the world model trains on (None: all) and the held-out segments' first rows.
        self._training_rows: torch.Tensor | None = None
        self._heldout_starts: torch.Tensor | None = None
        self.world_model_metrics: dict[str, torch.Tensor] = {}
        self._generator: torch.Generator | None = None
        self._pending_generator_state: torch.Tensor | None = None
        self._num_learner_optimizers = 0
        self._num_learner_schedulers = 0
        # The cache key of this run's pretraining, while it is due to be stored (world_model_cache).
        self._pending_cache_key: dict[str, Any] | None = None

    # ================================================================== the learner interface
    def _learner_actor(self) -> Any:
        return getattr(self.learner, "actor", None)

    def _learner_log_prob_fn(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        own = getattr(self.learner, "action_log_prob", None)
        if callable(own):
            return own
        actor = self._learner_actor()
        log_prob = getattr(actor, "log_prob", None)
        return log_prob if callable(log_prob) else None

    def policy_log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log pi(a|s)`` of the learner's current policy. Shapes: ``(B, obs_dim), (B, act_dim) -> (B,)``."""
        log_prob = self._learner_log_prob_fn()
        if log_prob is None:
            raise ConfigError(
                f"{type(self.learner).__name__} exposes no action density (see ADEPT's docstring)"
            )
        return log_prob(obs, actions)

    def sample_policy_actions(self, obs: torch.Tensor) -> torch.Tensor:
        """Rollout actions of the learner's current (stochastic) policy. ``(N, obs_dim) -> (N, act_dim)``.

        With ``rollout_std_scale`` other than 1, a Gaussian actor's draw uses its standard deviation times
        that scale (before the tanh of a tanh-Gaussian actor).
        """
        actor = self._learner_actor()
        if self.rollout_std_scale != 1.0 and isinstance(actor, (GaussianActor, TanhGaussianActor)):
            mean, log_std = actor(obs)
            noise = torch.randn(mean.shape, generator=self.generator, device=mean.device, dtype=mean.dtype)
            action = mean + self.rollout_std_scale * log_std.exp() * noise
            if isinstance(actor, TanhGaussianActor):
                action = torch.tanh(action)
            return action.clamp(-1.0, 1.0)
        own = getattr(self.learner, "sample_actions", None)
        if callable(own):
            return own(obs)
        sample = getattr(self._learner_actor(), "sample", None)
        if callable(sample):
            return sample(obs, generator=self._generator)[0].clamp(-1.0, 1.0)
        return self.learner.policy(obs).clamp(-1.0, 1.0)

    @contextmanager
    def _learner_optimizers_routed(self) -> Iterator[None]:
        """While the learner updates, its ``optimizers()`` / ``lr_schedulers()`` return only its own.

        ADEPT's ``configure_optimizers`` returns the learner's optimizers first, then its own; the
        learner (a child LightningModule that shares ADEPT's trainer) would otherwise see them all.
        """
        optimizers = _as_list(self.optimizers())[: self._num_learner_optimizers]
        schedulers = _as_list(self.lr_schedulers())[: self._num_learner_schedulers]

        def learner_optimizers(use_pl_optimizer: bool = True) -> Any:
            chosen = optimizers if use_pl_optimizer else [_unwrapped(o) for o in optimizers]
            return _single_or_list(chosen)

        def learner_schedulers() -> Any:
            return _single_or_list(schedulers) if schedulers else None

        # Instance attributes shadow the methods for the duration of the update only.
        self.learner.optimizers = learner_optimizers  # type: ignore[method-assign]
        self.learner.lr_schedulers = learner_schedulers  # type: ignore[method-assign]
        try:
            yield
        finally:
            del self.learner.optimizers
            del self.learner.lr_schedulers

    # ================================================================== data and statistics
    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.learner.setup(stage)  # the learner shares ADEPT's trainer, so it finds the same data
        if stage != "fit":
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        buffer = getattr(datamodule, "buffer", None)
        if buffer is not None:
            self.attach_dataset(buffer)
        if self.synthetic_data and self.synthetic_fraction > 0.0 and datamodule is not None:
            if not hasattr(datamodule, "add_source"):
                raise ConfigError(f"ADEPT mixes synthetic data through D4RLDataModule.add_source; "
                                  f"{type(datamodule).__name__} has no add_source")
            datamodule.add_source(self.rollout_buffer, self.synthetic_fraction)

    @torch.no_grad()
    def attach_dataset(self, buffer: TransitionBuffer) -> None:
        """Uses ``buffer`` (normalised observations, transformed rewards) for world-model batches and
        rollout starts, and sets the clipping ranges and target statistics from it."""
        self.real_buffer = buffer
        observations = torch.cat([buffer.observations, buffer.next_observations])
        self.obs_low.copy_(observations.amin(0))
        self.obs_high.copy_(observations.amax(0))
        self.reward_low.copy_(buffer.rewards.min())
        self.reward_high.copy_(buffer.rewards.max())
        raw_target = self._raw_target(buffer.observations, buffer.next_observations)
        self.target_mean.copy_(raw_target.mean(0))
        self.target_std.copy_(raw_target.std(0).clamp(min=1e-6))
        standardized = (raw_target - raw_target.mean(0)) / self.target_std.to(raw_target.device)
        self.target_low.copy_(standardized.amin(0))
        self.target_high.copy_(standardized.amax(0))
        self._hold_out_segments(buffer)

    @torch.no_grad()
    def _hold_out_segments(self, buffer: TransitionBuffer) -> None:
        """Picks ``heldout_segments`` runs of ``DIAGNOSTIC_HORIZON`` consecutive rows of one episode (each
        row's next observation is the following row's observation, no terminal before the last) and
        keeps their rows out of the world model's batches. The choice depends only on the data and
        ``sampling_seed``, so a resumed fit holds out the same rows."""
        self._training_rows, self._heldout_starts = None, None
        horizon, rows = DIAGNOSTIC_HORIZON, len(buffer)
        if self.heldout_segments == 0 or rows < horizon:
            return
        continues = (buffer.next_observations[:-1] == buffer.observations[1:]).all(dim=-1)
        continues &= buffer.terminals[:-1] == 0
        counts = torch.cat([continues.new_zeros(1, dtype=torch.long), continues.long().cumsum(0)])
        starts = torch.arange(rows - horizon + 1, device=counts.device)
        valid = starts[counts[starts + horizon - 1] - counts[starts] == horizon - 1]
        if valid.numel() == 0:
            return
        chooser = torch.Generator(device="cpu").manual_seed(self.sampling_seed)
        order = torch.randperm(valid.numel(), generator=chooser)[: self.heldout_segments]
        self._heldout_starts = valid[order.to(valid.device)].sort().values
        held = torch.zeros(rows, dtype=torch.bool, device=counts.device)
        held[(self._heldout_starts[:, None] + torch.arange(horizon, device=counts.device)).reshape(-1)] = True
        self._training_rows = torch.nonzero(~held).squeeze(-1)

    def _raw_target(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return next_obs - obs if self.diffusion_target == "delta" else next_obs

    def diffusion_x0(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """The standardised variable the DDPM generates. ``(B, obs_dim) x 2 -> (B, obs_dim)``."""
        return (self._raw_target(obs, next_obs) - self.target_mean) / self.target_std

    def next_obs_from_x0(self, obs: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`diffusion_x0`, clipped to the dataset's state range. ``(N, obs_dim)``."""
        raw = x0 * self.target_std + self.target_mean
        next_obs = obs + raw if self.diffusion_target == "delta" else raw
        return torch.clamp(next_obs, min=self.obs_low, max=self.obs_high)

    @property
    def generator(self) -> torch.Generator:
        """ADEPT's random stream on the module's device (state saved in checkpoints)."""
        if self._generator is None or self._generator.device != self.obs_mean.device:
            self._generator = torch.Generator(device=self.obs_mean.device)
            rank = self.trainer.global_rank if self._trainer is not None else 0
            self._generator.manual_seed(self.sampling_seed + rank)
            if self._pending_generator_state is not None:
                self._generator.set_state(self._pending_generator_state)
                self._pending_generator_state = None
        return self._generator

    def sample_real(self, batch_size: int) -> Batch:
        """A uniform batch of dataset transitions, ``(batch_size, ...)``."""
        if self.real_buffer is None:
            raise ConfigError(
                "ADEPT has no dataset: train it with D4RLDataModule, or call attach_dataset(buffer) "
                "before fit"
            )
        if self._training_rows is None:
            return self.real_buffer.sample(batch_size, self.generator)
        pick = torch.randint(self._training_rows.numel(), (batch_size,), generator=self.generator,
                             device=self._training_rows.device)
        return self.real_buffer[self._training_rows[pick]]

    @torch.no_grad()
    def world_model_diagnostics(self) -> dict[str, torch.Tensor]:
        """How well the world model predicts the held-out rows, and what the data's rewards are.

        All errors are root mean squares over rows and state dimensions in the learner's normalised
        observation units (1 = one standard deviation of the data's states), rewards on the learner's
        reward scale:

        * ``diagnostics/state_rmse_1``: the guided world model's next state against the data's, one
          step from each held-out row; ``diagnostics/state_rmse_1_unchanged``: the same for
          predicting no change (the scale the first is read against);
        * ``diagnostics/state_rmse_10``: ten steps open loop from each segment's first state, driven
          by the data's own actions, against the data's state ten steps on;
        * ``diagnostics/reward_rmse_1``: the reward model on the generated next state, against the
          data's reward; ``diagnostics/return_error_10``: mean absolute error of the ten-step
          (undiscounted) sum of predicted rewards along the open-loop rollout;
        * ``diagnostics/data_mean_reward``: the data's mean reward, next to ``rollout/mean_reward``;
        * ``diagnostics/uncertainty_1`` (with an uncertainty signal): its mean on the held-out rows' own
          ``(s, a)``, the in-data level that ``rollout/mean_uncertainty`` is read against.

        Empty when nothing is held out (``heldout_segments: 0``, or no episode of 10 rows).
        """
        if self._heldout_starts is None or self.real_buffer is None:
            return {}
        buffer, starts = self.real_buffer, self._heldout_starts
        was_training = self.training
        self.eval()
        try:
            rows = (starts[:, None] + torch.arange(DIAGNOSTIC_HORIZON, device=starts.device)).reshape(-1)
            batch = buffer[rows]
            predicted, uncertainty = self.sample_next_observations_and_uncertainty(batch.observations, batch.actions)
            rewards, _ = self.predict_reward_terminal(batch.observations, batch.actions, predicted)
            obs = buffer.observations[starts]
            predicted_return = obs.new_zeros(starts.numel())
            data_return = obs.new_zeros(starts.numel())
            for step in range(DIAGNOSTIC_HORIZON):
                actions = buffer.actions[starts + step]
                next_obs = self.sample_next_observations(obs, actions)
                step_rewards, _ = self.predict_reward_terminal(obs, actions, next_obs)
                predicted_return += step_rewards
                data_return += buffer.rewards[starts + step]
                obs = next_obs
        finally:
            self.train(was_training)
        last = buffer.next_observations[starts + DIAGNOSTIC_HORIZON - 1]
        measured = {} if uncertainty is None else {"diagnostics/uncertainty_1": uncertainty.mean()}
        return {
            **measured,
            "diagnostics/state_rmse_1": (predicted - batch.next_observations).square().mean().sqrt(),
            "diagnostics/state_rmse_1_unchanged": (batch.observations - batch.next_observations).square().mean().sqrt(),
            "diagnostics/state_rmse_10": (obs - last).square().mean().sqrt(),
            "diagnostics/reward_rmse_1": (rewards - batch.rewards).square().mean().sqrt(),
            "diagnostics/return_error_10": (predicted_return - data_return).abs().mean(),
            "diagnostics/data_mean_reward": buffer.rewards.mean(),
        }

    # ================================================================== world-model losses
    def world_model_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-transition losses of the world model and the reward/terminal model, each ``(B,)``.

        ``diffusion``: DDPM noise-prediction error on the standardised target with the condition
        ``(s, a)`` replaced by the null condition with probability ``condition_dropout``;
        ``reward``: squared error; ``terminal``: binary cross-entropy of the terminal logit.
        """
        x0 = self.diffusion_x0(batch.observations, batch.next_observations)
        condition = torch.cat([batch.observations, batch.actions], dim=-1)
        flagged_condition, _ = drop_condition(condition, self.condition_dropout, self.generator)
        diffusion = self.diffusion.loss(
            lambda x_t, t: self.denoiser(x_t, t, flagged_condition), x0, generator=self.generator
        )
        reward, terminal_logit = self.reward_model(
            torch.cat([batch.observations, batch.actions, batch.next_observations], dim=-1)
        ).unbind(-1)
        return {
            "diffusion": diffusion,
            "reward": (reward - batch.rewards).square(),
            "terminal": F.binary_cross_entropy_with_logits(terminal_logit, batch.terminals, reduction="none"),
        }

    def ensemble_loss(self, batch: Batch) -> torch.Tensor:
        """The dynamics ensemble's loss on the batch's standardised targets: the members' mean squared error
        (``ensemble_signal: disagreement``; every member sees the whole batch, and their different
        initialisations make them disagree away from the data) or their Gaussian negative log-likelihood
        (``max_std``)."""
        assert self.dynamics_ensemble is not None
        x0 = self.diffusion_x0(batch.observations, batch.next_observations)
        inputs = torch.cat([batch.observations, batch.actions], dim=-1)
        if isinstance(self.dynamics_ensemble, GaussianEnsemble):
            return self.dynamics_ensemble.nll(inputs, x0)
        return (self.dynamics_ensemble.forward_shared(inputs) - x0).square().mean()

    def behavior_loss(self, batch: Batch) -> torch.Tensor:
        """Negative log-likelihood of the dataset's actions under ``pi_b`` (behaviour cloning)."""
        return -self.behavior.log_prob(batch.observations, batch.actions).mean()

    @torch.no_grad()
    def importance_weights(self, batch: Batch) -> torch.Tensor:
        """``pi(a|s) / pi_b(a|s)`` of the batch's transitions, stabilised. Shape ``(B,)``, no gradient."""
        log_ratio = self.policy_log_prob(batch.observations, batch.actions) - self.behavior.log_prob(
            batch.observations, batch.actions
        )
        return importance_weights(
            log_ratio, clip=self.weight_clip, self_normalize=self.self_normalize_weights
        )

    # ================================================================== the three kinds of update
    def _world_model_optimizers(self) -> tuple[Any, Any]:
        optimizers = _as_list(self.optimizers())
        return optimizers[self._num_learner_optimizers], optimizers[self._num_learner_optimizers + 1]

    def world_model_loss(
        self, batch: Batch, weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The (importance-weighted) world-model loss ``mean_i w_i (l_diffusion + l_reward + l_terminal)_i``.

        Args:
            batch: ``(B, ...)`` dataset transitions.
            weights: ``(B,)`` importance weights, or ``None`` for the plain mean (pretraining).

        Returns:
            The scalar loss and detached metrics (unweighted mean of each term).
        """
        losses = self.world_model_losses(batch)
        per_transition = losses["diffusion"] + losses["reward"] + losses["terminal"]
        loss = per_transition.mean() if weights is None else (weights * per_transition).mean()
        return loss, {f"world_model/{name}_loss": value.detach().mean() for name, value in losses.items()}

    def pretrain_update(self) -> dict[str, torch.Tensor]:
        """One unweighted world-model update and one behaviour-cloning update on a dataset batch."""
        world_model_opt, behavior_opt = self._world_model_optimizers()
        batch = self.sample_real(self.world_model_batch_size)
        loss, metrics = self.world_model_loss(batch)
        if self.dynamics_ensemble is not None:
            # The ensemble's parameters are in the world model's optimizer and disjoint from its networks'.
            ensemble_loss = self.ensemble_loss(batch.rows(slice(self.ensemble_batch_size)))
            loss = loss + ensemble_loss
            metrics["world_model/ensemble_loss"] = ensemble_loss.detach()
        self.optimizer_step_on(world_model_opt, loss)
        if self.importance_sampling:
            behavior_loss = self.behavior_loss(batch)
            self.optimizer_step_on(behavior_opt, behavior_loss)
            metrics["world_model/behavior_nll"] = behavior_loss.detach()
        self.world_model_updates += 1
        return metrics

    def importance_sampled_update(self) -> dict[str, torch.Tensor]:
        """One world-model update whose per-transition losses are weighted by ``pi / pi_b``."""
        world_model_opt, _ = self._world_model_optimizers()
        batch = self.sample_real(self.world_model_batch_size)
        weights = self.importance_weights(batch)
        loss, metrics = self.world_model_loss(batch, weights)
        self.optimizer_step_on(world_model_opt, loss)
        self.world_model_updates += 1
        metrics["world_model/weight_max"] = weights.max()
        metrics["world_model/weight_ess"] = effective_sample_size(weights) / weights.shape[0]
        return metrics

    @torch.no_grad()
    def sample_next_observations(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Next states from the guided world model, clipped to the dataset's range. ``(N, obs_dim)``."""
        return self.next_obs_from_x0(obs, self._sample_x0(obs, actions, 1)[0])

    @torch.no_grad()
    def sample_next_observations_with_uncertainty(
        self, obs: torch.Tensor, actions: torch.Tensor, samples: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``samples`` draws of ``s'`` for every ``(s, a)`` in one batch: the first draw and the spread.

        Returns:
            ``(next_obs (N, obs_dim), uncertainty (N,))``, the uncertainty the norm of the draws'
            per-dimension standard deviation in the model's standardised units (before clipping to
            the state range).
        """
        x0 = self._sample_x0(obs, actions, samples)
        return self.next_obs_from_x0(obs, x0[0]), x0.std(dim=0).norm(dim=-1)

    @property
    def measures_uncertainty(self) -> bool:
        """Whether rollouts measure an uncertainty (``uncertainty_samples`` > 1 or ``uncertainty_ensemble``)."""
        return self.uncertainty_samples > 1 or self.dynamics_ensemble is not None

    @torch.no_grad()
    def ensemble_uncertainty(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The dynamics ensemble's uncertainty at ``(s, a)``, in the world model's standardised units: the norm
        of its members' per-dimension standard deviation (``disagreement``) or the largest norm of a
        member's predicted standard deviation (``max_std``). ``(N, obs_dim), (N, act_dim) -> (N,)``."""
        if self.dynamics_ensemble is None:
            raise ConfigError("ADEPT has no dynamics ensemble: set model.uncertainty_ensemble to 2 or more")
        inputs = torch.cat([obs, actions], dim=-1)
        if isinstance(self.dynamics_ensemble, GaussianEnsemble):
            return self.dynamics_ensemble.max_std(inputs)
        return self.dynamics_ensemble.forward_shared(inputs).std(dim=0).norm(dim=-1)

    @torch.no_grad()
    def sample_next_observations_and_uncertainty(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next states from the guided world model and, when a signal is configured, their uncertainty:
        the spread of ``uncertainty_samples`` draws or the ensemble's disagreement (else ``None``)."""
        if self.uncertainty_samples > 1:
            return self.sample_next_observations_with_uncertainty(obs, actions, self.uncertainty_samples)
        next_obs = self.sample_next_observations(obs, actions)
        if self.dynamics_ensemble is None:
            return next_obs, None
        return next_obs, self.ensemble_uncertainty(obs, actions)

    def _sample_x0(self, obs: torch.Tensor, actions: torch.Tensor, samples: int) -> torch.Tensor:
        """``samples`` guided DDPM draws of the standardised target per ``(s, a)``, as one batch.
        ``(N, obs_dim), (N, act_dim) -> (samples, N, obs_dim)``."""
        n = obs.shape[0]
        condition = torch.cat([obs, actions], dim=-1).repeat(samples, 1)
        eps_fn = classifier_free_eps_fn(self.denoiser, condition, self.guidance_weight)
        noise = torch.randn((samples * n, obs.shape[1]), device=obs.device, dtype=obs.dtype, generator=self.generator)
        x0 = self.diffusion.sample(
            eps_fn, noise, sampler="ddpm", clip=(self.target_low, self.target_high), generator=self.generator
        )
        return x0.view(samples, n, -1)

    @torch.no_grad()
    def predict_reward_terminal(
        self, obs: torch.Tensor, actions: torch.Tensor, next_obs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewards clipped to the dataset's range ``(N,)`` and terminal flags ``(N,)`` bool."""
        reward, terminal_logit = self.reward_model(torch.cat([obs, actions, next_obs], dim=-1)).unbind(-1)
        reward = torch.clamp(reward, min=self.reward_low, max=self.reward_high)
        return reward, terminal_logit > self.terminal_logit_threshold

    @torch.no_grad()
    def generate_rollouts(
        self, num_starts: int | None = None, horizon: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Guided policy evaluation: rollouts from dataset states into the synthetic buffer.

        All rollouts advance together as one batch on the module's device; a rollout leaves the batch
        once a terminal is predicted (that last transition is stored with ``terminal = 1``).

        Args:
            num_starts: number of start states (default ``rollout_starts``).
            horizon: steps per rollout (default ``rollout_horizon``).

        Returns:
            ``rollout/transitions`` generated, ``rollout/mean_length``, ``rollout/mean_reward``, the share of
            the rollouts' action coordinates at the bounds (``|a| >= 0.999``, ``rollout/action_at_bound``)
            and of the policy's mean action on the start states (``rollout/policy_mode_at_bound``), and
            with an uncertainty signal (``uncertainty_samples`` > 1 or ``uncertainty_ensemble``)
            ``rollout/mean_uncertainty``.
        """
        num_starts = self.rollout_starts if num_starts is None else num_starts
        horizon = self.rollout_horizon if horizon is None else horizon
        was_training = self.learner.training
        self.learner.eval()  # deterministic layers (dropout) while acting
        try:
            obs = self.sample_real(num_starts).observations
            # How much of the policy sits at the action bounds: its mean action on the start states,
            # and (below) the rollouts' sampled actions, which a clipped Gaussian puts there often.
            mode_at_bound = (self.learner.policy(obs).abs() >= BOUND_SHARE_THRESHOLD).float().mean()
            transitions, reward_sum, uncertainty_sum = 0, obs.new_zeros(()), obs.new_zeros(())
            at_bound_sum = obs.new_zeros(())
            for _ in range(horizon):
                actions = self.sample_policy_actions(obs)
                at_bound_sum = at_bound_sum + (actions.abs() >= BOUND_SHARE_THRESHOLD).float().mean(dim=-1).sum()
                next_obs, uncertainty = self.sample_next_observations_and_uncertainty(obs, actions)
                rewards, terminals = self.predict_reward_terminal(obs, actions, next_obs)
                if uncertainty is not None:
                    uncertainty_sum = uncertainty_sum + uncertainty.sum()
                    if self.uncertainty_penalty > 0.0:
                        rewards = rewards - self.uncertainty_penalty * uncertainty
                self.rollout_buffer.add(Batch(obs, actions, rewards, next_obs, terminals.to(obs.dtype)))
                transitions += obs.shape[0]
                reward_sum = reward_sum + rewards.sum()
                obs = next_obs[~terminals]
                if obs.shape[0] == 0:
                    break
        finally:
            self.learner.train(was_training)
        count = torch.tensor(float(transitions), device=reward_sum.device)
        metrics = {
            "rollout/transitions": count,
            "rollout/mean_length": count / num_starts,
            "rollout/mean_reward": reward_sum / count.clamp(min=1.0),  # after any uncertainty penalty
            "rollout/action_at_bound": at_bound_sum / count.clamp(min=1.0),
            "rollout/policy_mode_at_bound": mode_at_bound,
        }
        if self.measures_uncertainty:
            metrics["rollout/mean_uncertainty"] = uncertainty_sum / count.clamp(min=1.0)
        return metrics

    # ================================================================== phases and the loop
    @property
    def needs_world_model(self) -> bool:
        return self.synthetic_data

    @property
    def in_pretraining(self) -> bool:
        """True until ``world_model_pretrain_updates`` world-model updates are done."""
        return self.needs_world_model and int(self.world_model_updates) < self.world_model_pretrain_updates

    def advance_rounds(self) -> None:
        """Runs the round work due before learner update number ``num_updates``.

        Round ``k`` covers learner updates ``k * round_updates .. (k + 1) * round_updates - 1``. At its
        start, the importance-sampled update that closes round ``k - 1`` runs (if not done yet), then the
        rollouts of round ``k`` (if not done yet). The counters make this idempotent across resumes.
        """
        if not self.needs_world_model:
            return
        if int(self.num_updates) < self.synthetic_start_updates:
            return  # the real-data warm-up: no rollouts, no importance-sampled updates yet
        current_round = int(self.num_updates) // self.round_updates
        if self.importance_sampling and int(self.importance_rounds) < current_round:
            metrics: dict[str, torch.Tensor] = {}
            for _ in range(self.importance_updates):
                metrics = self.importance_sampled_update()
            self.world_model_metrics.update(metrics)
            self.importance_rounds.fill_(current_round)
        if int(self.rollout_rounds) <= current_round:
            # The model this round's rollouts come from, measured on rows it never trained on.
            self.world_model_metrics.update(self.world_model_diagnostics())
            self.world_model_metrics.update(self.generate_rollouts())
            self.rollout_rounds.fill_(current_round + 1)

    def update(self, batch: Batch) -> Mapping[str, torch.Tensor]:
        """One learner update on a mixed real/synthetic batch, after any round work that is due."""
        self.advance_rounds()
        if not self.synthetic_actor_rows:
            self.learner.actor_rows = self.real_rows(batch.rewards.shape[0])
        with self._learner_optimizers_routed():
            metrics = dict(self.learner.update(batch))
        # Learners choose their own phases from their counter (DTQL's pretraining): keep it in step.
        self.learner.num_updates += 1
        return {**metrics, **self.world_model_metrics}

    def real_rows(self, batch_size: int) -> int:
        """How many leading rows of a learner batch of ``batch_size`` are real: the data module puts the
        real rows first, then ``synthetic_fraction`` of the batch from the synthetic buffer once it
        holds rows (``D4RLDataModule.add_source``). The batch that was drawn just before the first
        rollouts is all real; its tail then counts as synthetic, which only leaves real rows out."""
        if not (self.synthetic_data and self.synthetic_fraction > 0.0 and len(self.rollout_buffer) > 0):
            return batch_size
        return source_counts(batch_size, [1.0 - self.synthetic_fraction, self.synthetic_fraction])[0]

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        if not self.in_pretraining:
            super().training_step(batch, batch_idx)
            return
        # World-model pretraining: the learner waits; one world-model update per stacked batch, on
        # ADEPT's own dataset batches of world_model_batch_size.
        remaining = self.world_model_pretrain_updates - int(self.world_model_updates)
        metrics: dict[str, torch.Tensor] = {}
        for _ in range(min(batch.rewards.shape[0], remaining)):
            metrics = self.pretrain_update()
            if int(self.world_model_updates) % self.log_every == 0:
                self.log_dict({f"train/{k}": v for k, v in metrics.items()}, on_step=True, on_epoch=False)
                count = self.world_model_updates.float()
                self.log("train/world_model_updates", count, on_step=True, on_epoch=False)
        self.world_model_metrics.update(metrics)
        self.check_finite(metrics)
        if not self.in_pretraining and self._pending_cache_key is not None:
            self._store_pretraining()

    # ================================================================== the pretraining cache
    def world_model_cache_key(self) -> dict[str, Any]:
        """Everything the world model's pretraining depends on (see ``world_model_cache``)."""
        if self.real_buffer is None:
            raise ConfigError("ADEPT's world-model cache keys on the training data: attach_dataset(buffer) first")
        buffer = self.real_buffer
        settings = ("obs_dim", "act_dim", "hidden_dim", "depth", "diffusion_steps", "condition_dropout",
                    "diffusion_target", "reward_hidden_dims", "behavior_policy", "behavior_hidden_dims",
                    "world_model_batch_size", "world_model_pretrain_updates", "heldout_segments")
        key: dict[str, Any] = {name: self.hparams[name] for name in settings}
        key["reward_hidden_dims"] = list(key["reward_hidden_dims"])
        key["behavior_hidden_dims"] = list(key["behavior_hidden_dims"])
        key["behavior_trained"] = bool(self.importance_sampling)  # pi_b is fit only when weights need it
        if self.dynamics_ensemble is not None:  # trained with the world model (runs without one keep their keys)
            key["uncertainty_ensemble"] = self.uncertainty_ensemble
            key["ensemble_hidden_dims"] = list(self.hparams["ensemble_hidden_dims"])
            key["ensemble_batch_size"] = self.ensemble_batch_size
            if self.ensemble_signal != "disagreement":  # entries made before the option keep their keys
                key["ensemble_signal"] = self.ensemble_signal
        key["sampling_seed"] = self.sampling_seed
        key["data"] = tensor_digest({
            "observations": buffer.observations, "actions": buffer.actions, "rewards": buffer.rewards,
            "next_observations": buffer.next_observations, "terminals": buffer.terminals,
        })
        key["optimizers"] = [
            [type(opt).__name__,
             [{k: v for k, v in group.items() if k not in ("params", "initial_lr")} for group in opt.param_groups]]
            for opt in map(_unwrapped, self._world_model_optimizers())
        ]
        return key

    def _restore_pretraining(self) -> None:
        """At the start of a fresh fit: loads the cached pretraining, or arranges to store this run's."""
        key = self.world_model_cache_key()
        entry = load_entry(self.world_model_cache, key)
        if entry is None:
            self._pending_cache_key = key
            return
        self.denoiser.load_state_dict(entry["denoiser"])
        self.reward_model.load_state_dict(entry["reward_model"])
        self.behavior.load_state_dict(entry["behavior"])
        if self.dynamics_ensemble is not None:
            self.dynamics_ensemble.load_state_dict(entry["dynamics_ensemble"])
        for opt, state in zip(self._world_model_optimizers(), entry["optimizers"]):
            _unwrapped(opt).load_state_dict(state)
        if entry.get("generator_device") == self.generator.device.type:
            self.generator.set_state(entry["generator"])
        self.world_model_updates.fill_(self.world_model_pretrain_updates)
        rank_zero_info(f"ADEPT: the world model's {self.world_model_pretrain_updates:,} pretraining updates "
                       f"come from {entry_path(self.world_model_cache, key)}")

    def _store_pretraining(self) -> None:
        key, self._pending_cache_key = self._pending_cache_key, None
        if key is None or (self._trainer is not None and self.trainer.global_rank != 0):
            return
        path = save_entry(self.world_model_cache, key, {
            "denoiser": self.denoiser.state_dict(),
            "reward_model": self.reward_model.state_dict(),
            "behavior": self.behavior.state_dict(),
            **({} if self.dynamics_ensemble is None else {"dynamics_ensemble": self.dynamics_ensemble.state_dict()}),
            "optimizers": [_unwrapped(opt).state_dict() for opt in self._world_model_optimizers()],
            "generator": self.generator.get_state(),
            "generator_device": self.generator.device.type,
        })
        rank_zero_info(f"ADEPT: stored the pretrained world model in {path}")

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.learner.policy(obs)

    # ================================================================== Lightning plumbing
    def configure_optimizers(self):  # type: ignore[override]
        learner_optimizers, learner_schedulers = split_optimizer_config(self.learner.configure_optimizers())
        # The learner's optimizers are ADEPT's too: a resumed fit applies their configured settings
        # (OfflineRLModule.apply_configured_optimizer_settings) under their config keys.
        self.configured_optimizers.update(
            {key: (f"learner.init_args.{name}", groups)
             for key, (name, groups) in self.learner.configured_optimizers.items()}
        )
        world_model_params = [*self.denoiser.parameters(), *self.reward_model.parameters()]
        if self.dynamics_ensemble is not None:
            world_model_params += list(self.dynamics_ensemble.parameters())
        world_model_opt = self.build_optimizer(self.optimizer_factory, world_model_params, "optimizer")
        behavior_opt = self.build_optimizer(self.optimizer_factory, self.behavior.parameters(), "optimizer")
        self._num_learner_optimizers = len(learner_optimizers)
        self._num_learner_schedulers = len(learner_schedulers)
        optimizers = [*learner_optimizers, world_model_opt, behavior_opt]
        return (optimizers, learner_schedulers) if learner_schedulers else optimizers

    def on_fit_start(self) -> None:
        if self.needs_world_model and self.real_buffer is None:
            raise ConfigError(
                "ADEPT needs the real transitions: train it with D4RLDataModule (data: section) "
                "or call attach_dataset(buffer) before fit"
            )
        self.rollout_buffer.to(self.obs_mean.device)
        self.learner.on_fit_start()
        if self.world_model_cache is not None:
            if not self.needs_world_model:
                rank_zero_warn("model.world_model_cache is set, but synthetic_data: false trains no world model; "
                               "the cache is not used")
            elif int(self.world_model_updates) == 0 and self.world_model_pretrain_updates > 0:
                self._restore_pretraining()  # a resumed fit (world_model_updates > 0) has its own model
        # The CLI sizes max_epochs from max_updates (learner updates); pretraining batches do no learner
        # update, so add the epochs they take (trainer.should_stop still ends the run at max_updates). Also
        # when resuming after pretraining (the restored epoch counts them) or loading it from the cache
        # (a few spare epochs cost nothing).
        fit_loop = self.trainer.fit_loop
        datamodule = getattr(self.trainer, "datamodule", None)
        steps_per_epoch = getattr(datamodule, "steps_per_epoch", 0)
        updates_per_epoch = steps_per_epoch * getattr(datamodule, "batches_per_step", 0)
        if self.needs_world_model and fit_loop.max_epochs not in (None, -1) and updates_per_epoch > 0:
            fit_loop.max_epochs += math.ceil(self.world_model_pretrain_updates / updates_per_epoch) + 1

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # The synthetic buffer (a few MB) is saved, so a resumed run continues on the same data.
        checkpoint["adept"] = {
            "rollout_buffer": self.rollout_buffer.state_dict(),
            "generator": self.generator.get_state() if self._generator is not None else None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("adept")
        if not state:
            return
        self.rollout_buffer.load_state_dict(state["rollout_buffer"])
        if state.get("generator") is not None:
            self._pending_generator_state = state["generator"]
            self._generator = None
