"""Online soft actor-critic that trains D4RL's behaviour policies (Haarnoja et al. 2018, "SAC: Algorithms and
Applications", algorithm 1 with automatic entropy tuning).

D4RL made its locomotion datasets with policies of an online SAC run: ``medium`` stops early at about a third
of the expert return, ``expert`` is the fully trained policy and ``medium-replay`` is the run's replay buffer
up to the medium checkpoint. This module is that run. It is a plain PyTorch loop, not a LightningModule: it
interacts with an environment at every step, and one gradient update per environment step leaves nothing for
a Trainer to organise.

Written for a small CPU budget: the replay buffer is preallocated arrays and a batch is one index draw; the
two critics are one batched ensemble (:class:`~lightning_offrl.networks.EnsembleQ`); Adam is fused; the
critic's weights are frozen while the actor's loss is back-propagated through it; one thread by default.

Everything that evolves (networks, targets, optimizers, temperature, replay buffer up to its fill level,
counters, random-number generators and the physics state of the episode in progress) is written atomically
to ``<out>/state.pt`` every ``state_every`` steps, at least every ``state_every_minutes`` of wall time (so
that a kill which leaves no chance to save loses little), and when the process receives SIGTERM or SIGINT,
so that ``train(..., resume=True)`` continues exactly where it stopped. Along the way the run writes small
actor checkpoints (``<out>/actors/actor_<step>.pt``, the tanh-Gaussian actor with its step and evaluated
return) and the evaluation history (``<out>/evals.json``).

Command line::

    python -m lightning_offrl.collect.sac_online --env hopper --steps 1000000 --out /work/runs/behaviour/hopper --resume
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from lightning_offrl.collect.policies import (
    ACTORS_DIR,
    EVALS_FILE,
    STATE_FILE,
    action_to_env,
    actor_checkpoint,
    deterministic_policy,
)
from lightning_offrl.envs.evaluation import evaluate_policy
from lightning_offrl.envs.tasks import get_task, make_env
from lightning_offrl.errors import ConfigError
from lightning_offrl.networks import EnsembleQ, TanhGaussianActor

EXIT_INTERRUPTED = 3  # exit status of the command line when a signal stopped the run


@dataclass
class SACConfig:
    """Hyperparameters of the online SAC run (rlkit's SAC as used for D4RL, Haarnoja et al. 2018 table 1).

    Attributes:
        env: a task of :mod:`lightning_offrl.envs.tasks` (``hopper``, ``walker2d``, ``halfcheetah``, or one
            registered with ``register_task``, e.g. Pendulum for tests).
        total_steps: environment steps of the run; can be raised when resuming.
        seed: seeds the environment, the network initialisation and every random draw of the run.
        hidden_dims: hidden widths of actor and critics (D4RL: 2x256).
        batch_size: transitions per gradient update.
        actor_lr: Adam learning rate of the actor.
        critic_lr: Adam learning rate of the critics.
        alpha_lr: Adam learning rate of the log temperature.
        gamma: discount factor.
        tau: Polyak rate of the target critics (``target <- (1 - tau) target + tau online``).
        random_steps: first environment steps taken with uniform actions; updates start after them.
        buffer_capacity: replay capacity; the buffer is a ring once full (rlkit's default is 1M).
        target_entropy: entropy the temperature tunes towards; ``None`` means ``-act_dim`` (SAC's heuristic).
        eval_every: environment steps between evaluations of the deterministic actor.
        eval_episodes: episodes per evaluation.
        actor_checkpoint_every: environment steps between saved actor checkpoints.
        state_every: environment steps between saved full training states.
        state_every_minutes: wall-clock minutes between saved full training states, whatever the step
            count: bounds what a kill that gives no chance to save (SIGKILL, a machine going away) can lose.
        num_threads: torch intra-op threads (1: the run shares a small machine).
    """

    env: str
    total_steps: int = 1_000_000
    seed: int = 0
    hidden_dims: tuple[int, ...] = (256, 256)
    batch_size: int = 256
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    random_steps: int = 10_000
    buffer_capacity: int = 1_000_000
    target_entropy: float | None = None
    eval_every: int = 10_000
    eval_episodes: int = 5
    actor_checkpoint_every: int = 10_000
    state_every: int = 50_000
    state_every_minutes: float = 10.0
    num_threads: int = 1

    def validate(self) -> None:
        """Raises :class:`ConfigError` for values that make no sense."""
        positive = ("total_steps", "batch_size", "buffer_capacity", "eval_every", "eval_episodes",
                    "actor_checkpoint_every", "state_every", "state_every_minutes", "num_threads")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"SACConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("actor_lr", "critic_lr", "alpha_lr"):
            if getattr(self, name) <= 0.0:
                raise ConfigError(f"SACConfig.{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.gamma < 1.0:
            raise ConfigError(f"SACConfig.gamma must lie in [0, 1), got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"SACConfig.tau must lie in (0, 1], got {self.tau}")
        if self.random_steps < 0:
            raise ConfigError(f"SACConfig.random_steps must be >= 0, got {self.random_steps}")
        if self.random_steps < self.batch_size:
            raise ConfigError(
                f"SACConfig.random_steps ({self.random_steps}) must be at least batch_size ({self.batch_size}): "
                "updates start once the random phase has filled the buffer"
            )


# Keys of the config that may change between a run and its resumption (they do not alter the maths).
_RESUMABLE_OVERRIDES = ("total_steps", "eval_every", "eval_episodes", "actor_checkpoint_every", "state_every",
                        "state_every_minutes", "num_threads")


@dataclass
class TrainResult:
    """What a call of :func:`train` did.

    Attributes:
        env_steps: environment steps of the run so far (all sessions).
        updates: gradient updates so far.
        finished: ``env_steps`` reached ``total_steps``.
        interrupted: stopped early by SIGTERM/SIGINT (the state was saved).
        session_steps_per_s: environment steps per second in this call (updates included).
        wall_time_s: training wall time of the run so far (all sessions).
        last_eval_return: mean return of the latest evaluation (``nan`` before the first).
        out_dir: the run's folder.
        reached_score: stopped because an evaluation reached ``until_score``.
    """

    env_steps: int
    updates: int
    finished: bool
    interrupted: bool
    session_steps_per_s: float
    wall_time_s: float
    last_eval_return: float
    out_dir: Path
    reached_score: bool = False


class ReplayBuffer:
    """Preallocated ring buffer of transitions; a batch is one index draw.

    Storage is numpy (cheap single-row writes from the environment loop) with torch views of the same
    memory (cheap batched gathers for the updates).

    Args:
        obs_dim: observation size.
        act_dim: action size.
        capacity: maximum number of transitions kept.
    """

    def __init__(self, obs_dim: int, act_dim: int, capacity: int) -> None:
        self.capacity = capacity
        self.observations = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, act_dim), dtype=np.float32)
        self.rewards = np.zeros((capacity,), dtype=np.float32)
        self.next_observations = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.terminals = np.zeros((capacity,), dtype=np.float32)
        self._views = {name: torch.from_numpy(array) for name, array in self._arrays().items()}
        self.size = 0
        self.position = 0

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "observations": self.observations,
            "actions": self.actions,
            "rewards": self.rewards,
            "next_observations": self.next_observations,
            "terminals": self.terminals,
        }

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminal: bool) -> None:
        """Stores one transition. Shapes: ``obs, next_obs: (obs_dim,)``, ``action: (act_dim,)``."""
        i = self.position
        self.observations[i] = obs
        self.actions[i] = action
        self.rewards[i] = reward
        self.next_observations[i] = next_obs
        self.terminals[i] = terminal
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """A uniform batch: ``observations (B, obs_dim)``, ``actions (B, act_dim)``, ``rewards (B,)``, ..."""
        index = torch.randint(self.size, (batch_size,), generator=generator)
        return {name: view.index_select(0, index) for name, view in self._views.items()}

    def state_dict(self) -> dict[str, Any]:
        """The filled part only (copies, so a checkpoint does not carry the unused capacity)."""
        arrays = {name: torch.from_numpy(array[: self.size].copy()) for name, array in self._arrays().items()}
        return {"size": self.size, "position": self.position, "capacity": self.capacity, **arrays}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity:
            raise ConfigError(
                f"the saved replay buffer has capacity {state['capacity']}, this run {self.capacity}; "
                "resume with the run's own buffer_capacity"
            )
        size = int(state["size"])
        for name, array in self._arrays().items():
            array[:size] = state[name].numpy()
        self.size = size
        self.position = int(state["position"])


@dataclass
class SACLosses:
    """Named loss terms of one update (scalars)."""

    critic_loss: torch.Tensor
    actor_loss: torch.Tensor
    alpha_loss: torch.Tensor
    alpha: torch.Tensor
    entropy: torch.Tensor


class SACAgent(nn.Module):
    """Actor, twin critics, their targets and the temperature, with SAC's update.

    Args:
        obs_dim: observation size.
        act_dim: action size.
        config: hyperparameters.
    """

    def __init__(self, obs_dim: int, act_dim: int, config: SACConfig) -> None:
        super().__init__()
        self.config = config
        self.actor = TanhGaussianActor(obs_dim, act_dim, config.hidden_dims)
        self.critic = EnsembleQ(obs_dim, act_dim, config.hidden_dims, num_critics=2)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        # SAC v2 tunes log(alpha) so that the policy entropy tracks -|A| (Haarnoja et al. 2018, eq. 18).
        self.log_alpha = nn.Parameter(torch.zeros(()))
        self.target_entropy = float(-act_dim if config.target_entropy is None else config.target_entropy)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, fused=True)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr, fused=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.alpha_lr, fused=True)
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())

    def update(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> SACLosses:
        """One gradient step of critics, actor and temperature, then the Polyak target update.

        Args:
            batch: ``observations (B, obs_dim)``, ``actions (B, act_dim)``, ``rewards (B,)``,
                ``next_observations (B, obs_dim)``, ``terminals (B,)`` (1.0 for true failures only).
            generator: source of the reparameterisation noise.

        Returns:
            The loss terms, detached.
        """
        obs, actions = batch["observations"], batch["actions"]
        alpha = self.log_alpha.detach().exp()

        # Soft Bellman target with clipped double Q (eq. 3 and 5): time-limit truncations are not
        # terminals, so they keep bootstrapping.
        with torch.no_grad():
            next_actions, next_log_prob = self.actor.sample(batch["next_observations"], generator)
            next_value = self.critic_target.min(batch["next_observations"], next_actions) - alpha * next_log_prob
            td_target = batch["rewards"] + self.config.gamma * (1.0 - batch["terminals"]) * next_value
        q_values = self.critic(obs, actions)  # (2, B)
        critic_loss = (q_values - td_target).square().mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        # Policy improvement (eq. 7): the gradient flows through the critic into the action only, so
        # the critic's weights are frozen for this backward pass (saves the weight-gradient matmuls).
        for param in self._critic_params:
            param.requires_grad_(False)
        policy_actions, log_prob = self.actor.sample(obs, generator)
        actor_loss = (alpha * log_prob - self.critic.min(obs, policy_actions)).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        for param in self._critic_params:
            param.requires_grad_(True)

        # Temperature (eq. 18): raise alpha when the entropy falls below its target.
        log_prob = log_prob.detach()
        alpha_loss = -(self.log_alpha * (log_prob + self.target_entropy)).mean()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()

        with torch.no_grad():
            for target, online in zip(self._target_params, self._critic_params):
                target.lerp_(online, self.config.tau)
        return SACLosses(critic_loss.detach(), actor_loss.detach(), alpha_loss.detach(), alpha, -log_prob.mean())

    def training_state(self) -> dict[str, Any]:
        """Networks and optimizers, for the resumable state."""
        return {
            "networks": self.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["networks"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])


# --- Exact resumption: the physics of the episode in progress -----------------------------------------------

def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    wrapper: Any = env
    while isinstance(wrapper, gym.Wrapper):
        if isinstance(wrapper, gym.wrappers.TimeLimit):
            return wrapper
        wrapper = wrapper.env
    return None


def capture_env_state(env: gym.Env) -> dict[str, Any]:
    """Everything a MuJoCo or classic-control episode needs to continue bit for bit after a restart."""
    unwrapped = env.unwrapped
    state: dict[str, Any] = {"np_random": copy.deepcopy(unwrapped.np_random.bit_generator.state)}
    limit = _time_limit(env)
    if limit is not None:
        # Gymnasium keeps the episode's step count only in this attribute of the TimeLimit wrapper.
        state["elapsed_steps"] = limit._elapsed_steps
    if hasattr(unwrapped, "model") and hasattr(unwrapped, "data"):
        import mujoco

        # The integration state includes the solver's warm start, so the next step is identical.
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.empty(mujoco.mj_stateSize(unwrapped.model, spec))
        mujoco.mj_getState(unwrapped.model, unwrapped.data, physics, spec)
        state["mujoco"] = physics
    elif hasattr(unwrapped, "state"):
        state["classic"] = copy.deepcopy(unwrapped.state)
    else:
        state["unsupported"] = True
    return state


def restore_env_state(env: gym.Env, state: dict[str, Any]) -> bool:
    """Puts ``env`` (already reset once) back into a captured state; ``False`` if that is not possible."""
    if state.get("unsupported"):
        return False
    unwrapped = env.unwrapped
    unwrapped.np_random.bit_generator.state = state["np_random"]
    limit = _time_limit(env)
    if limit is not None and "elapsed_steps" in state:
        limit._elapsed_steps = state["elapsed_steps"]
    if "mujoco" in state:
        import mujoco

        physics = np.asarray(state["mujoco"], dtype=np.float64)
        mujoco.mj_setState(unwrapped.model, unwrapped.data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(unwrapped.model, unwrapped.data)
    elif "classic" in state:
        unwrapped.state = copy.deepcopy(state["classic"])
    return True


# --- The run ------------------------------------------------------------------------------------------------

def _atomic_torch_save(obj: Any, path: Path) -> None:
    """Writes ``path`` so that a crash leaves either the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _atomic_json_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


class _StopFlag:
    """Set by SIGTERM/SIGINT; the loop saves its state and returns at the next step."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name


class _Run:
    """One online SAC run in a folder; see :func:`train`."""

    def __init__(self, config: SACConfig, out_dir: Path) -> None:
        self.config = config
        self.out_dir = out_dir
        self.env = make_env(config.env)
        space = self.env.action_space
        if not isinstance(space, gym.spaces.Box) or not np.all(np.isfinite(space.low)):
            raise ConfigError(f"{config.env}: SAC needs a bounded continuous action space, got {space}")
        self.obs_dim = int(np.prod(self.env.observation_space.shape))
        self.act_dim = int(np.prod(space.shape))
        torch.manual_seed(config.seed)  # network initialisation
        self.agent = SACAgent(self.obs_dim, self.act_dim, config)
        self.buffer = ReplayBuffer(self.obs_dim, self.act_dim, config.buffer_capacity)
        # Three streams, so that e.g. a change of batch size does not alter the exploration noise.
        self.explore_generator = torch.Generator().manual_seed(config.seed + 1)
        self.batch_generator = torch.Generator().manual_seed(config.seed + 2)
        self.update_generator = torch.Generator().manual_seed(config.seed + 3)
        self.env_steps = 0
        self.updates = 0
        self.episodes = 0
        self.episode_return = 0.0
        self.episode_length = 0
        self.recent_returns: list[float] = []
        self.evals: list[dict[str, Any]] = []
        self.wall_time_s = 0.0
        self.last_losses: dict[str, float] = {}
        self.obs, _ = self.env.reset(seed=config.seed)
        self.obs = np.asarray(self.obs, dtype=np.float32).reshape(-1)

    # -- persistence --
    def state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "config": asdict(self.config),
            "agent": self.agent.training_state(),
            "buffer": self.buffer.state_dict(),
            "generators": {
                "explore": self.explore_generator.get_state(),
                "batch": self.batch_generator.get_state(),
                "update": self.update_generator.get_state(),
            },
            "counters": {
                "env_steps": self.env_steps,
                "updates": self.updates,
                "episodes": self.episodes,
                "episode_return": self.episode_return,
                "episode_length": self.episode_length,
                "wall_time_s": self.wall_time_s,
            },
            "recent_returns": list(self.recent_returns),
            "evals": self.evals,
            "last_losses": self.last_losses,
            "obs": torch.from_numpy(self.obs.copy()),
            "env_state": capture_env_state(self.env),
        }

    def save_state(self) -> None:
        _atomic_torch_save(self.state(), self.out_dir / STATE_FILE)

    def load_state(self, state: dict[str, Any]) -> None:
        self.agent.load_training_state(state["agent"])
        self.buffer.load_state_dict(state["buffer"])
        self.explore_generator.set_state(state["generators"]["explore"])
        self.batch_generator.set_state(state["generators"]["batch"])
        self.update_generator.set_state(state["generators"]["update"])
        counters = state["counters"]
        self.env_steps = int(counters["env_steps"])
        self.updates = int(counters["updates"])
        self.episodes = int(counters["episodes"])
        self.wall_time_s = float(counters["wall_time_s"])
        self.recent_returns = list(state["recent_returns"])
        self.evals = list(state["evals"])
        self.last_losses = dict(state["last_losses"])
        if restore_env_state(self.env, state["env_state"]):
            self.obs = state["obs"].numpy().copy()
            self.episode_return = float(counters["episode_return"])
            self.episode_length = int(counters["episode_length"])
        else:
            # The environment cannot be put back: the episode in progress restarts from a seeded reset.
            self.obs, _ = self.env.reset(seed=self.config.seed + 7919 * (self.env_steps + 1))
            self.obs = np.asarray(self.obs, dtype=np.float32).reshape(-1)
            self.episode_return, self.episode_length = 0.0, 0

    # -- one environment step (and the update that follows it) --
    def step(self) -> None:
        config = self.config
        if self.env_steps < config.random_steps:
            action = (torch.rand(self.act_dim, generator=self.explore_generator) * 2.0 - 1.0).numpy()
        else:
            with torch.inference_mode():
                obs_t = torch.from_numpy(self.obs).unsqueeze(0)
                action = self.agent.actor.sample(obs_t, self.explore_generator)[0][0].numpy()
        next_obs, reward, terminated, truncated, _ = self.env.step(action_to_env(action, self.env.action_space))
        next_obs = np.asarray(next_obs, dtype=np.float32).reshape(-1)
        self.buffer.add(self.obs, action, float(reward), next_obs, bool(terminated))
        self.env_steps += 1
        self.episode_return += float(reward)
        self.episode_length += 1
        if terminated or truncated:
            self.recent_returns = (self.recent_returns + [self.episode_return])[-10:]
            self.episodes += 1
            self.episode_return, self.episode_length = 0.0, 0
            next_obs, _ = self.env.reset()
            next_obs = np.asarray(next_obs, dtype=np.float32).reshape(-1)
        self.obs = next_obs
        if self.env_steps >= config.random_steps:
            losses = self.agent.update(self.buffer.sample(config.batch_size, self.batch_generator),
                                       self.update_generator)
            self.updates += 1
            if self.updates % 1000 == 1:
                self.last_losses = {name: float(value) for name, value in vars(losses).items()}

    def evaluate(self) -> dict[str, Any]:
        config = self.config
        eval_seed = int(np.random.SeedSequence([config.seed, self.env_steps]).generate_state(1)[0] % (2**31))
        policy = deterministic_policy(self.agent.actor, self.env.action_space)
        returns = evaluate_policy(policy, config.env, config.eval_episodes, seed=eval_seed).returns
        record: dict[str, Any] = {
            "step": self.env_steps,
            "eval_return": float(returns.mean()),
            "eval_return_std": float(returns.std()),
            "train_return": float(np.mean(self.recent_returns)) if self.recent_returns else float("nan"),
            "episodes": self.episodes,
            "updates": self.updates,
            "wall_time_s": round(self.wall_time_s, 1),
            **self.last_losses,
        }
        record["normalized_score"] = float(get_task(config.env).normalized_score(record["eval_return"]))
        self.evals = [e for e in self.evals if e["step"] < self.env_steps] + [record]
        _atomic_json_save(self.evals, self.out_dir / EVALS_FILE)
        return record

    def save_actor(self, record: dict[str, Any]) -> None:
        meta = {
            "env": self.config.env,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "hidden_dims": list(self.config.hidden_dims),
            "step": self.env_steps,
            "seed": self.config.seed,
            "eval_return": record["eval_return"],
            "wall_time_s": round(self.wall_time_s, 1),
        }
        actors_dir = self.out_dir / ACTORS_DIR
        actors_dir.mkdir(exist_ok=True)
        _atomic_torch_save(actor_checkpoint(self.agent.actor, meta), actors_dir / f"actor_{self.env_steps:08d}.pt")


def _load_config_for_resume(saved: dict[str, Any], requested: SACConfig) -> SACConfig:
    """The saved run's config, with the few keys that may change on resumption taken from ``requested``."""
    saved = dict(saved)
    saved["hidden_dims"] = tuple(saved["hidden_dims"])
    config = SACConfig(**{f.name: saved[f.name] for f in fields(SACConfig) if f.name in saved})
    if config.env != requested.env:
        raise ConfigError(
            f"the run being resumed trains {config.env!r}, not {requested.env!r}: pass the run's --env or another --out"
        )
    for name in _RESUMABLE_OVERRIDES:
        setattr(config, name, getattr(requested, name))
    return config


def train(
    config: SACConfig,
    out_dir: str | os.PathLike[str],
    resume: bool = False,
    progress: bool = True,
    stop_after_steps: int | None = None,
    on_eval: Callable[[dict[str, Any]], None] | None = None,
    until_score: float | None = None,
) -> TrainResult:
    """Runs (or continues) online SAC until ``config.total_steps`` environment steps.

    Args:
        config: hyperparameters; when resuming, only ``total_steps``, the evaluation/checkpoint intervals and
            ``num_threads`` are taken from it, everything else from the saved run.
        out_dir: the run's folder (``state.pt``, ``evals.json``, ``actors/``).
        resume: continue the run saved in ``out_dir`` (a fresh run starts if there is none).
        progress: show a rich progress bar (a log line per evaluation is printed in any case).
        stop_after_steps: stop (and save the state) after this many environment steps of this call, as a
            signal would; for tests and for time-boxed sessions.
        on_eval: called with every evaluation record.
        until_score: stop (and save the state) once an evaluation reaches this D4RL normalized score, or
            return at once if one already has; lets a first pass bring every environment just past its
            medium level before the long expert runs.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ConfigError: invalid hyperparameters, or ``out_dir`` holds a run and ``resume`` is false.
    """
    config.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    saved_state: dict[str, Any] | None = None
    if state_path.exists():
        if not resume:
            raise ConfigError(f"{state_path} holds a run already: pass resume=True (--resume) or another out folder")
        saved_state = torch.load(state_path, weights_only=False)
        config = _load_config_for_resume(saved_state["config"], config)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    run = _Run(config, out)
    if saved_state is not None:
        run.load_state(saved_state)
        del saved_state
    (out / "config.json").write_text(json.dumps(asdict(config), indent=1))

    stop = _StopFlag()
    previous_handlers: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous_handlers[signum] = signal.signal(signum, stop)

    console = Console(stderr=False)
    start_steps = run.env_steps
    session_start = time.perf_counter()
    last_tick = session_start
    last_save, save_due = session_start, False
    interrupted = False
    columns = (
        TextColumn(f"[bold]SAC {config.env}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>6.1f} steps/s"),
        TextColumn("eval {task.fields[eval]:>8.1f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    last_eval = run.evals[-1]["eval_return"] if run.evals else float("nan")

    def reached(records: list[dict[str, Any]]) -> bool:
        return until_score is not None and any(r["normalized_score"] >= until_score for r in records)

    reached_score = reached(run.evals)
    try:
        with Progress(*columns, console=console, disable=not progress, refresh_per_second=2) as bar:
            task = bar.add_task("sac", total=config.total_steps, completed=run.env_steps, rate=0.0, eval=last_eval)
            console.print(f"SAC {config.env}: step {run.env_steps:,} of {config.total_steps:,}, buffer "
                          f"{run.buffer.size:,}, out {out}", soft_wrap=True)
            while run.env_steps < config.total_steps and not reached_score:
                if stop.requested or (stop_after_steps is not None and run.env_steps - start_steps >= stop_after_steps):
                    interrupted = True
                    break
                run.step()
                if run.env_steps % 1000 == 0:
                    now = time.perf_counter()
                    run.wall_time_s += now - last_tick
                    last_tick = now
                    rate = (run.env_steps - start_steps) / max(now - session_start, 1e-9)
                    bar.update(task, completed=run.env_steps, rate=rate)
                    save_due = now - last_save >= 60.0 * config.state_every_minutes
                if run.env_steps % config.eval_every == 0 or run.env_steps % config.actor_checkpoint_every == 0:
                    record = run.evaluate()
                    last_eval = record["eval_return"]
                    bar.update(task, eval=last_eval)
                    console.print(_format_record(record), soft_wrap=True)
                    if on_eval is not None:
                        on_eval(record)
                    if run.env_steps % config.actor_checkpoint_every == 0:
                        run.save_actor(record)
                    reached_score = reached([record])
                if run.env_steps % config.state_every == 0 or save_due:
                    run.save_state()
                    last_save, save_due = time.perf_counter(), False
            run.wall_time_s += time.perf_counter() - last_tick
            last_tick = time.perf_counter()
            if reached_score:
                console.print(f"normalized score {until_score} reached by step {run.env_steps:,}", soft_wrap=True)
            elif not interrupted and (not run.evals or run.evals[-1]["step"] != run.env_steps):
                record = run.evaluate()
                run.save_actor(record)
                console.print(_format_record(record), soft_wrap=True)
                if on_eval is not None:
                    on_eval(record)
            run.save_state()
            if stop.requested:
                console.print(f"received {stop.signal_name}: state saved at step {run.env_steps:,}")
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
        torch.set_num_threads(previous_threads)
    elapsed = time.perf_counter() - session_start
    return TrainResult(
        env_steps=run.env_steps,
        updates=run.updates,
        finished=run.env_steps >= config.total_steps,
        interrupted=interrupted,
        session_steps_per_s=(run.env_steps - start_steps) / max(elapsed, 1e-9),
        wall_time_s=run.wall_time_s,
        last_eval_return=run.evals[-1]["eval_return"] if run.evals else math.nan,
        out_dir=out,
        reached_score=reached_score,
    )


def _format_record(record: dict[str, Any]) -> str:
    text = (f"step {record['step']:>9,}  eval {record['eval_return']:9.1f} ± {record['eval_return_std']:7.1f}  "
            f"train {record['train_return']:9.1f}  ")
    if "normalized_score" in record:
        text += f"score {record['normalized_score']:6.1f}  "
    if "alpha" in record:
        text += f"alpha {record['alpha']:.4f}  critic {record['critic_loss']:.3g}  "
    return text + f"wall {record['wall_time_s'] / 3600:.2f} h"


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m lightning_offrl.collect.sac_online --env hopper --steps 1000000 --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m lightning_offrl.collect.sac_online",
        description="Online SAC for D4RL-style behaviour policies (resumable; SIGTERM saves the state).",
    )
    defaults = SACConfig(env="hopper")
    parser.add_argument("--env", required=True, help="task domain (hopper, walker2d, halfcheetah, ...)")
    parser.add_argument("--steps", type=int, default=defaults.total_steps, help="total environment steps of the run")
    parser.add_argument("--out", required=True, help="run folder (state.pt, evals.json, actors/)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out if there is one")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.num_threads, help="torch intra-op threads")
    parser.add_argument("--random-steps", type=int, default=defaults.random_steps)
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every)
    parser.add_argument("--eval-episodes", type=int, default=defaults.eval_episodes)
    parser.add_argument("--checkpoint-every", type=int, default=defaults.actor_checkpoint_every,
                        help="environment steps between actor checkpoints")
    parser.add_argument("--state-every", type=int, default=defaults.state_every,
                        help="environment steps between full resumable states")
    parser.add_argument("--state-every-minutes", type=float, default=defaults.state_every_minutes,
                        help="wall-clock minutes between full resumable states (bounds what a SIGKILL loses)")
    parser.add_argument("--until-score", type=float, default=None,
                        help="stop once an evaluation reaches this D4RL normalized score (state saved)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    args = parser.parse_args(argv)
    config = SACConfig(
        env=args.env,
        total_steps=args.steps,
        seed=args.seed,
        num_threads=args.threads,
        random_steps=args.random_steps,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        actor_checkpoint_every=args.checkpoint_every,
        state_every=args.state_every,
        state_every_minutes=args.state_every_minutes,
    )
    result = train(config, args.out, resume=args.resume, progress=not args.no_progress, until_score=args.until_score)
    if result.finished:
        status = "finished"
    elif result.reached_score:
        status = f"reached normalized score {args.until_score}"
    else:
        status = "stopped (resume with --resume)"
    print(f"{status}: {result.env_steps:,} env steps, {result.updates:,} updates, "
          f"{result.session_steps_per_s:.1f} steps/s this session, {result.wall_time_s / 3600:.2f} h in total, "
          f"last eval return {result.last_eval_return:.1f}", flush=True)
    if result.interrupted:
        # A distinct exit status lets a driver script stop instead of moving on to the next run.
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
