"""Transitions stored as tensors on the training device; a batch is one index draw.

Sampling from a device-resident buffer avoids the per-sample ``Dataset.__getitem__`` + collate path,
which costs ~40% of a small-network update on CPU (DESIGN.md section 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import torch


class Batch(NamedTuple):
    """A batch of transitions. Leading dims are ``(B,)`` or, stacked for several updates, ``(K, B)``.

    Attributes:
        observations: ``(..., obs_dim)``
        actions: ``(..., act_dim)``
        rewards: ``(...,)``
        next_observations: ``(..., obs_dim)``
        terminals: ``(...,)`` 1.0 where the episode truly ended (no bootstrapping), else 0.0.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    terminals: torch.Tensor

    def rows(self, index: slice | torch.Tensor) -> "Batch":
        """The rows ``index`` (a slice or an index tensor over the batch dimension, dim 0) of every field."""
        return Batch(*(field[index] for field in self))

    def unbind(self) -> list["Batch"]:
        """Splits a stacked ``(K, B, ...)`` batch into ``K`` batches of ``(B, ...)``."""
        return [Batch(*fields) for fields in zip(*(t.unbind(0) for t in self))]

    @staticmethod
    def cat(batches: list["Batch"]) -> "Batch":
        """Concatenates batches along the batch dimension (dim 0)."""
        return Batch(*(torch.cat(fields, dim=0) for fields in zip(*batches)))


TRANSITION_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals")


@dataclass
class TransitionBuffer:
    """Fixed-size storage of ``N`` transitions as tensors (one per :class:`Batch` field)."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    terminals: torch.Tensor

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], device: torch.device | str = "cpu") -> "TransitionBuffer":
        """Builds a buffer from q-learning arrays (see :func:`lightning_offrl.data.d4rl_hdf5.qlearning_transitions`)."""
        tensors = {
            key: torch.as_tensor(np.asarray(arrays[key], dtype=np.float32), device=device) for key in TRANSITION_KEYS
        }
        return cls(**tensors)

    def __len__(self) -> int:
        return self.rewards.shape[0]

    @property
    def device(self) -> torch.device:
        return self.rewards.device

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[-1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[-1]

    def to(self, device: torch.device | str) -> "TransitionBuffer":
        return TransitionBuffer(*(getattr(self, key).to(device) for key in TRANSITION_KEYS))

    def __getitem__(self, index: torch.Tensor) -> Batch:
        """Gathers the transitions at ``index`` (any shape) into a :class:`Batch` of that leading shape."""
        return Batch(*(getattr(self, key)[index] for key in TRANSITION_KEYS))

    def sample(self, batch_size: int, generator: torch.Generator | None = None, num_batches: int | None = None) -> Batch:
        """Uniform sample with replacement: ``(B, ...)``, or ``(K, B, ...)`` with ``num_batches=K``."""
        shape = (batch_size,) if num_batches is None else (num_batches, batch_size)
        index = torch.randint(len(self), shape, generator=generator, device=self.device)
        return self[index]


def source_counts(batch_size: int, fractions: Sequence[float]) -> list[int]:
    """Rows each source gives a batch of ``batch_size``: its fraction of the fractions' sum, rounded,
    with the rounding remainder going to the first source. A batch holds the sources' rows in this
    order (the first source, the real data, leads)."""
    total = sum(fractions)
    counts = [int(round(batch_size * fraction / total)) for fraction in fractions]
    counts[0] += batch_size - sum(counts)
    return counts


class BatchStream:
    """An iterable of ``steps`` stacked batches ``(batches_per_step, batch_size, ...)``.

    Lightning accepts any sized iterable as a train dataloader; under DDP it leaves plain iterables
    alone, so each rank draws from its own generator (seeded per rank by the DataModule).

    Args:
        buffers: the sources to draw from, with the fraction of each batch they provide
            (e.g. real and synthetic data); fractions are normalised to sum to one.
        batch_size: transitions per update.
        batches_per_step: updates per ``training_step`` (amortises Lightning's per-step overhead).
        steps: ``training_step`` calls per epoch.
        generator: random source for the indices, on the buffers' device.
    """

    def __init__(
        self,
        buffers: list[tuple[TransitionBuffer, float]],
        batch_size: int,
        batches_per_step: int,
        steps: int,
        generator: torch.Generator,
    ) -> None:
        self.buffers = buffers
        self.batch_size = batch_size
        self.batches_per_step = batches_per_step
        self.steps = steps
        self.generator = generator

    def __len__(self) -> int:
        return self.steps

    def _split(self) -> list[tuple[TransitionBuffer, int]]:
        active = [(buffer, fraction) for buffer, fraction in self.buffers if fraction > 0 and len(buffer) > 0]
        counts = source_counts(self.batch_size, [fraction for _, fraction in active])
        return [(buffer, count) for (buffer, _), count in zip(active, counts) if count > 0]

    def __iter__(self) -> Iterator[Batch]:
        for _ in range(self.steps):
            parts = [
                buffer.sample(count, self.generator, num_batches=self.batches_per_step) for buffer, count in self._split()
            ]
            if len(parts) == 1:
                yield parts[0]
            else:
                yield Batch(*(torch.cat(fields, dim=1) for fields in zip(*parts)))
