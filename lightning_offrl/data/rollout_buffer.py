"""Synthetic transitions from world-model rollouts, kept in a fixed-capacity ring on the device.

A :class:`RolloutBuffer` is a :class:`~lightning_offrl.data.buffer.TransitionBuffer` whose storage is
allocated once and refilled in place, so it can be handed to
``D4RLDataModule.add_source(buffer, fraction)`` before it holds anything: the DataModule's
``BatchStream`` samples the current contents at every batch and skips the buffer while it is empty.
Only the first ``len(buffer)`` rows are valid; new rollouts overwrite the oldest rows first.
"""

from __future__ import annotations

from typing import Any

import torch

from lightning_offrl.data.buffer import TRANSITION_KEYS, Batch, TransitionBuffer
from lightning_offrl.errors import ConfigError


class RolloutBuffer(TransitionBuffer):
    """First-in-first-out storage of at most ``capacity`` synthetic transitions.

    Args:
        capacity: number of transitions kept; older ones are overwritten first.
        obs_dim: observation size.
        act_dim: action size.
        device: where the storage lives; it moves to the device of the first batch added, which
            must be the device the DataModule samples on (the training device).
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device | str = "cpu") -> None:
        if capacity <= 0 or obs_dim <= 0 or act_dim <= 0:
            raise ConfigError(
                f"RolloutBuffer(capacity={capacity}, obs_dim={obs_dim}, act_dim={act_dim}): "
                "sizes must be positive"
            )
        self.capacity = capacity
        self.observations = torch.zeros(capacity, obs_dim, device=device)
        self.actions = torch.zeros(capacity, act_dim, device=device)
        self.rewards = torch.zeros(capacity, device=device)
        self.next_observations = torch.zeros(capacity, obs_dim, device=device)
        self.terminals = torch.zeros(capacity, device=device)
        self.size = 0  # valid rows: 0 .. size-1
        self.position = 0  # next row to write

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return (f"RolloutBuffer(size={self.size}, capacity={self.capacity}, obs_dim={self.obs_dim}, "
                f"act_dim={self.act_dim}, device={self.device})")

    def to(self, device: torch.device | str) -> "RolloutBuffer":
        """Moves the storage to ``device`` in place (the DataModule keeps a reference to this object)."""
        for key in TRANSITION_KEYS:
            setattr(self, key, getattr(self, key).to(device))
        return self

    def clear(self) -> None:
        """Forgets every transition (the storage is kept)."""
        self.size = 0
        self.position = 0

    def add(self, batch: Batch) -> None:
        """Appends ``N`` transitions, overwriting the oldest rows once the buffer is full.

        Args:
            batch: a :class:`Batch` of ``(N, ...)`` tensors; if ``N > capacity`` only the last
                ``capacity`` rows are kept.
        """
        count = batch.rewards.shape[0]
        if count == 0:
            return
        if batch.rewards.device != self.device:
            self.to(batch.rewards.device)
        if count > self.capacity:
            batch = batch.rows(slice(-self.capacity, None))
            count = self.capacity
        # At most two contiguous slices: up to the end of the storage, then from its start.
        first = min(count, self.capacity - self.position)
        for key, values in zip(TRANSITION_KEYS, batch):
            storage = getattr(self, key)
            storage[self.position:self.position + first] = values[:first].to(storage.dtype)
            if first < count:
                storage[: count - first] = values[first:].to(storage.dtype)
        self.position = (self.position + count) % self.capacity
        self.size = min(self.size + count, self.capacity)

    # ------------------------------------------------------------------- checkpointed state
    def state_dict(self) -> dict[str, Any]:
        """The valid rows (CPU tensors) and the write position, for a checkpoint."""
        state: dict[str, Any] = {"size": self.size, "position": self.position, "capacity": self.capacity}
        for key in TRANSITION_KEYS:
            state[key] = getattr(self, key)[: self.size].detach().cpu().clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`'s contents into this buffer's storage (on its current device).

        Raises:
            ConfigError: the saved buffer does not fit this one (a different capacity or sizes).
        """
        size = int(state["size"])
        if int(state.get("capacity", self.capacity)) != self.capacity or size > self.capacity:
            raise ConfigError(
                f"the checkpoint's rollout buffer has capacity {state.get('capacity')} and {size} rows "
                f"but this module's holds {self.capacity}; resume with the rollout settings the "
                "checkpoint was made with"
            )
        for key in TRANSITION_KEYS:
            saved = state[key]
            storage = getattr(self, key)
            if saved.shape[1:] != storage.shape[1:]:
                raise ConfigError(
                    f"the checkpoint's rollout buffer has {key} of shape {tuple(saved.shape[1:])} per row, "
                    f"this module expects {tuple(storage.shape[1:])}; the checkpoint belongs to another task"
                )
            storage[:size] = saved.to(storage.device, storage.dtype)
        self.size = size
        self.position = int(state["position"]) % self.capacity
