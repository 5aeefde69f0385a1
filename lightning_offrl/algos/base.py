"""The shared offline-RL LightningModule: methods write their losses and update order, nothing else.

What every method gets from :class:`OfflineRLModule`:

- manual optimization (Lightning 2.x supports several optimizers only that way);
- ``num_updates``, the module's own count of gradient updates, saved in checkpoints and used for
  budgets (``max_updates``) and schedules. ``trainer.global_step`` counts every optimizer step, so
  it is not the training-step budget;
- several updates per ``training_step`` (the DataModule stacks ``(K, B, ...)`` batches);
- observation statistics as buffers, so ``act()`` takes raw environment observations;
- a finiteness check of the losses before anything can be checkpointed;
- ``polyak_update`` for target networks and ``optimizer_step`` for one manual step;
- on a resumed fit, the configured optimizer settings instead of the checkpoint's
  (:meth:`OfflineRLModule.apply_configured_optimizer_settings`), each change logged.
"""

from __future__ import annotations

import contextvars
import inspect
from abc import abstractmethod
from contextlib import contextmanager
from functools import partial
from types import FrameType
from typing import Any, Iterable, Iterator, Mapping, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from lightning.pytorch.cli import OptimizerCallable

from lightning_offrl.data.buffer import Batch
from lightning_offrl.errors import ConfigError, TrainingDivergedError

# The type LightningCLI recognises for injected optimizers (``class_path: torch.optim.Adam``).
OptimizerFactory = OptimizerCallable


def default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam with lr 3e-4: the learning rate of IQL, SAC, DTQL and most offline-RL papers."""
    return torch.optim.Adam(params, lr=3e-4)


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) * target + tau * source`` for all parameters, in one fused call."""
    target_params = list(target.parameters())
    torch._foreach_lerp_(target_params, list(source.parameters()), tau)


# Set while a module builds another one inside its own constructor (ADEPT's learner).
_BUILDING_INNER_MODULE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "lightning_offrl_building_inner_module", default=False
)


@contextmanager
def building_inner_module() -> Iterator[None]:
    """Marks the modules constructed in this block as parts of another module.

    LightningCLI passes the top-level module's config to ``save_hyperparameters`` of *every*
    LightningModule it instantiates, nested ones included; a module built inside another (ADEPT's
    learner) must record its own constructor arguments instead, or its checkpointed description
    would be the outer module's.
    """
    token = _BUILDING_INNER_MODULE.set(True)
    try:
        yield
    finally:
        _BUILDING_INNER_MODULE.reset(token)


class OfflineRLModule(pl.LightningModule):
    """Base of every method.

    Subclasses implement :meth:`update` (one gradient update on a ``(B, ...)`` batch, returning named
    detached metrics), :meth:`policy` (deterministic actions from normalised observations) and
    ``configure_optimizers``.

    Args:
        obs_dim: observation size (linked from the DataModule by the CLI).
        act_dim: action size (linked from the DataModule by the CLI).
        max_updates: training budget in gradient updates; training stops when it is reached.
        log_every: updates between two logged metric values.
    """

    automatic_optimization = False

    def __init__(self, obs_dim: int, act_dim: int, max_updates: int = 1_000_000, log_every: int = 1000) -> None:
        super().__init__()
        if obs_dim <= 0 or act_dim <= 0:
            raise ConfigError(f"obs_dim and act_dim must be positive, got {obs_dim} and {act_dim}")
        if max_updates <= 0:
            raise ConfigError(f"model.max_updates must be a positive integer, got {max_updates}")
        if log_every <= 0:
            raise ConfigError(f"model.log_every must be a positive integer, got {log_every}")
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.max_updates = max_updates
        self.log_every = log_every
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def save_hyperparameters(
        self, *args: Any, ignore: Sequence[str] | str | None = None, frame: FrameType | None = None,
        logger: bool = True,
    ) -> None:
        """Lightning's, except that a module built inside another records its own arguments."""
        frame = frame or inspect.currentframe().f_back  # the subclass's __init__
        if _BUILDING_INNER_MODULE.get():
            # An empty context hides the outer module's config that LightningCLI handed down.
            contextvars.Context().run(
                super().save_hyperparameters, *args, ignore=ignore, frame=frame, logger=logger
            )
        else:
            super().save_hyperparameters(*args, ignore=ignore, frame=frame, logger=logger)

    # ------------------------------------------------------------------ what methods implement
    @abstractmethod
    def update(self, batch: Batch) -> Mapping[str, torch.Tensor]:
        """One gradient update of all networks on ``batch`` (``(B, ...)``); returns detached metrics."""

    @abstractmethod
    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic actions ``(N, act_dim)`` for normalised observations ``(N, obs_dim)``."""

    # ------------------------------------------------------------------------- shared machinery
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if stage == "fit" and datamodule is not None and getattr(datamodule, "obs_stats", None) is None:
            datamodule.setup(stage)
        stats = getattr(datamodule, "obs_stats", None)
        if stats is not None:
            self.obs_mean.copy_(torch.as_tensor(stats.mean))
            self.obs_std.copy_(torch.as_tensor(stats.std))

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        metrics: Mapping[str, torch.Tensor] = {}
        for sub_batch in batch.unbind():
            metrics = self.update(sub_batch)
            self.num_updates += 1
            if int(self.num_updates) % self.log_every == 0:
                self.log_dict({f"train/{k}": v for k, v in metrics.items()}, on_step=True, on_epoch=False)
                self.log("train/num_updates", self.num_updates.float(), on_step=True, on_epoch=False)
        self.check_finite(metrics)
        if int(self.num_updates) >= self.max_updates:
            self.trainer.should_stop = True

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Nothing per batch: `validate`/`test` evaluate the policy in the environment, which the
        :class:`~lightning_offrl.callbacks.evaluation.D4RLEvaluation` callback does at epoch end."""

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """See :meth:`validation_step`."""

    def check_finite(self, metrics: Mapping[str, torch.Tensor]) -> None:
        """Raises :class:`TrainingDivergedError` naming the non-finite terms (before any checkpoint)."""
        if not metrics:
            return
        values = torch.stack([v.detach().float().reshape(()) for v in metrics.values()])
        if bool(torch.isfinite(values).all()):
            return
        bad = [k for k, v in zip(metrics, values.tolist()) if not np.isfinite(v)]
        raise TrainingDivergedError(
            f"{type(self).__name__}: {', '.join(bad)} became non-finite at update {int(self.num_updates)}. "
            "Saved checkpoints are untouched; lower the learning rate, check the data for extreme values "
            "(`lightning_offrl datasets info`), or resume from the last good checkpoint."
        )

    def optimizer_step_on(
        self, optimizer: Any, loss: torch.Tensor, max_grad_norm: float | None = None
    ) -> None:
        """One manual step: zero the gradients, backpropagate ``loss``, step ``optimizer``.

        ``max_grad_norm`` rescales the gradients of the optimizer's parameters to at most that total
        2-norm before the step (``torch.nn.utils.clip_grad_norm_``, through Lightning so that mixed
        precision unscales first); ``None`` steps on the raw gradients.
        """
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if max_grad_norm is not None:
            self.clip_gradients(optimizer, gradient_clip_val=max_grad_norm, gradient_clip_algorithm="norm")
        optimizer.step()

    def build_optimizer(self, factory: OptimizerFactory | None, params: Iterable[nn.Parameter], name: str) -> Any:
        """Instantiates an injected optimizer, turning torch's bare ValueError into a ConfigError.

        The optimizer's configured settings (``lr``, ``betas``, ...) are remembered under the config
        key ``name``: a resumed fit restores the checkpoint's settings into the optimizer, and
        :meth:`apply_configured_optimizer_settings` puts the configured ones back.
        """
        try:
            optimizer = (factory or default_optimizer)(params)
        except ValueError as err:
            raise ConfigError(f"model.{name}: {err}; check its init_args (e.g. lr must be positive)") from err
        groups = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        self.configured_optimizers[id(optimizer)] = (name, groups)
        return optimizer

    @property
    def configured_optimizers(self) -> dict[int, tuple[str, list[dict[str, Any]]]]:
        """``id(optimizer) -> (config key, settings of each param group as configured)``."""
        if "_configured_optimizers" not in self.__dict__:
            self.__dict__["_configured_optimizers"] = {}
        return self.__dict__["_configured_optimizers"]

    def on_train_start(self) -> None:
        self.apply_configured_optimizer_settings()

    def apply_configured_optimizer_settings(self) -> list[str]:
        """Gives the optimizers the configured settings where a restored checkpoint had others.

        On ``fit --ckpt_path``, Lightning loads each optimizer's state, settings included, so a learning
        rate given on the command line would be silently replaced by the checkpoint's. Here (after the
        restore, before the first update) every setting that differs from its configured value is set
        back and logged as ``resumed with model.init_args.optimizer.init_args.lr = X (checkpoint had
        Y)``; the optimizer's moments are kept. A learning rate under a schedule is compared by its
        starting value (``initial_lr``) and the schedule is rescaled: the current rate is multiplied
        by new / old, and the schedule's base rates become the new one, so a cosine decay continues
        from the same point of its curve. A fresh fit changes nothing.

        Returns:
            The messages logged (one per setting that changed).
        """
        from lightning.pytorch.utilities import rank_zero_info

        if self._trainer is None:
            return []
        schedulers = [config.scheduler for config in self.trainer.lr_scheduler_configs]
        messages: list[str] = []
        for optimizer in self.trainer.optimizers:
            entry = self.configured_optimizers.get(id(optimizer))
            if entry is None or len(entry[1]) != len(optimizer.param_groups):
                continue
            name, configured_groups = entry
            for index, (configured, group) in enumerate(zip(configured_groups, optimizer.param_groups)):
                for key, value in configured.items():
                    if key == "initial_lr" or isinstance(value, torch.Tensor):
                        continue
                    restored = group.get("initial_lr", group.get("lr")) if key == "lr" else group.get(key)
                    if _same_setting(value, restored):
                        continue
                    if key == "lr":
                        _set_learning_rate(optimizer, index, float(value), schedulers)
                    else:
                        group[key] = value
                    messages.append(
                        f"resumed with model.init_args.{name}.init_args.{key} = {value!r} (checkpoint had {restored!r})"
                    )
        messages = list(dict.fromkeys(messages))  # several optimizers built from one factory: say it once
        for message in messages:
            rank_zero_info(message)
        return messages

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std

    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor) -> np.ndarray:
        """Deterministic actions for raw environment observations.

        Args:
            obs: ``(obs_dim,)`` or ``(N, obs_dim)``.

        Returns:
            ``(act_dim,)`` or ``(N, act_dim)`` float32 actions in ``[-1, 1]``.
        """
        # Switching modes walks every submodule (~1 ms for DTQL): done only when needed, so the
        # evaluation loop, which puts the module in eval mode once, pays nothing per step.
        was_training = self.training
        if was_training:
            self.eval()
        try:
            obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.obs_mean.device)
            single = obs_t.ndim == 1
            if single:
                obs_t = obs_t.unsqueeze(0)
            actions = self.policy(self.normalize_obs(obs_t)).clamp(-1.0, 1.0)
        finally:
            if was_training:
                self.train()
        out = actions.float().cpu().numpy()
        return out[0] if single else out

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets `lightning_offrl evaluate` rebuild any method from its checkpoint alone.
        checkpoint["lightning_offrl"] = {
            "class_path": f"{type(self).__module__}.{type(self).__qualname__}",
            "num_updates": int(self.num_updates),
        }


def _same_setting(a: Any, b: Any) -> bool:
    """Equality of optimizer settings: a tuple and a list of equal items (betas) are the same."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_setting(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b))
    return a == b


def _set_learning_rate(optimizer: torch.optim.Optimizer, index: int, lr: float, schedulers: Sequence[Any]) -> None:
    """Sets param group ``index`` to the configured rate ``lr``, rescaling a schedule in progress."""
    group = optimizer.param_groups[index]
    start = group.get("initial_lr")
    if start is not None and float(start) > 0:
        group["lr"] = float(group["lr"]) * lr / float(start)  # same point of the schedule, new scale
    else:
        group["lr"] = lr
    if start is not None:
        group["initial_lr"] = lr
    for scheduler in schedulers:
        if getattr(scheduler, "optimizer", None) is optimizer:
            if hasattr(scheduler, "base_lrs"):
                scheduler.base_lrs[index] = lr
            if getattr(scheduler, "_last_lr", None) is not None:
                scheduler._last_lr[index] = group["lr"]


def optimizer_default_partial(lr: float) -> OptimizerFactory:
    """``Adam(lr=lr)`` as a factory (for code and tests that build modules directly)."""
    return partial(torch.optim.Adam, lr=lr)
