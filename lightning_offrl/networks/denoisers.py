"""Backbones that predict noise (or a clean sample) from ``(x_t, t, cond)``.

Both take ``forward(x: (B, x_dim), t: (B,), cond: (B, cond_dim) | None) -> (B, out_dim)`` where ``t``
is whatever the process feeds (a long step index for ``VPDiffusion``, ``c_noise`` for
``EDMDiffusion``). Inputs are joined with one ``torch.cat`` and every layer is batched: no per-sample
Python work.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_offrl.errors import ConfigError
from lightning_offrl.networks.embeddings import FourierEmbedding, SinusoidalEmbedding
from lightning_offrl.networks.mlp import MLP


def _embedding_size(embedding: nn.Module) -> int:
    """Output size of a time embedding: its ``dim`` attribute, else probed with one input."""
    size = getattr(embedding, "dim", None)
    if isinstance(size, int):
        return size
    with torch.no_grad():
        return int(embedding(torch.zeros(1)).shape[-1])


def _join_inputs(
    x: torch.Tensor, cond: torch.Tensor | None, time_features: torch.Tensor, cond_dim: int
) -> torch.Tensor:
    if cond_dim == 0:
        return torch.cat([x, time_features], dim=-1)
    if cond is None:
        raise ValueError(f"this denoiser was built with cond_dim={cond_dim} but was called with cond=None.")
    return torch.cat([x, cond, time_features], dim=-1)


class DenoiserMLP(nn.Module):
    """Time-conditioned MLP: ``MLP([x, cond, time_mlp(embed(t))])`` (the backbone of Diffusion-QL / DTQL).

    The time embedding is refined by ``Linear(e, 2 d) -> act -> Linear(2 d, d)`` with ``d = time_dim``.

    Args:
        x_dim: size of the diffused variable.
        cond_dim: size of the condition (0: unconditional, call with ``cond=None``).
        hidden_dim: width of the hidden layers.
        depth: number of hidden layers.
        time_dim: size of the time features joined to the input.
        activation: activation class (Mish in Diffusion-QL / DTQL).
        time_embedding: module ``(B,) -> (B, e)``; default ``SinusoidalEmbedding(time_dim)``. Pass a
            ``FourierEmbedding`` for EDM's continuous ``c_noise``.
        out_dim: output size (default ``x_dim``).

    Shapes:
        ``forward(x: (B, x_dim), t: (B,), cond: (B, cond_dim) | None) -> (B, out_dim)``
    """

    def __init__(
        self,
        x_dim: int,
        cond_dim: int,
        hidden_dim: int = 256,
        depth: int = 3,
        time_dim: int = 32,
        activation: type[nn.Module] = nn.Mish,
        time_embedding: nn.Module | None = None,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        if x_dim < 1 or cond_dim < 0 or depth < 1 or hidden_dim < 1 or time_dim < 1:
            raise ConfigError(
                f"DenoiserMLP(x_dim={x_dim}, cond_dim={cond_dim}, hidden_dim={hidden_dim}, depth={depth}, "
                f"time_dim={time_dim}): sizes must be positive (cond_dim may be 0)."
            )
        self.x_dim = x_dim
        self.cond_dim = cond_dim
        self.out_dim = x_dim if out_dim is None else out_dim
        embedding = SinusoidalEmbedding(time_dim) if time_embedding is None else time_embedding
        self.time_mlp = nn.Sequential(
            embedding,
            nn.Linear(_embedding_size(embedding), 2 * time_dim),
            activation(),
            nn.Linear(2 * time_dim, time_dim),
        )
        self.trunk = MLP(
            x_dim + cond_dim + time_dim, self.out_dim, hidden_dims=(hidden_dim,) * depth,
            activation=activation,
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.trunk(_join_inputs(x, cond, self.time_mlp(t), self.cond_dim))


class ResidualBlock(nn.Module):
    """Residual MLP block of IDQL: ``x + W2 act(W1 LN(dropout(x)))``, ``W1`` widening by ``expansion``.

    Shapes:
        ``(B, dim) -> (B, dim)``
    """

    def __init__(
        self, dim: int, activation: type[nn.Module], dropout: float, layer_norm: bool, expansion: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if dropout > 0.0:
            layers.append(nn.Dropout(dropout))
        if layer_norm:
            layers.append(nn.LayerNorm(dim))
        layers += [nn.Linear(dim, expansion * dim), activation(), nn.Linear(expansion * dim, dim)]
        self.residual = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)


class ResidualDenoiser(nn.Module):
    """ResNet-MLP denoiser of IDQL (Hansen-Estruch et al. 2023) and SWG.

    ``Linear([x, cond, time_mlp(embed(t))]) -> num_blocks x ResidualBlock -> act -> Linear``. The time
    embedding is refined by ``Linear(e, 2 d) -> act -> Linear(2 d, 2 d)`` (``d = time_dim``).

    SWG predicts its weight component from its own head: with ``separate_head_dim = k`` the last
    ``k`` outputs come from ``MLP(hidden_dim, k, (hidden_dim,))`` reading the features after block
    ``separate_head_block`` (default: the middle one, SWG's choice), the others from the main head.

    Args:
        x_dim: size of the diffused variable.
        cond_dim: size of the condition (0: unconditional).
        hidden_dim: width of the residual stream.
        num_blocks: number of residual blocks.
        dropout: dropout at the start of each block (IDQL / SWG: 0.1).
        layer_norm: LayerNorm in each block.
        time_dim: size ``d`` of the time embedding.
        activation: activation class (swish = ``nn.SiLU`` in IDQL / SWG).
        expansion: width multiplier inside each block (IDQL: 4).
        time_embedding: module ``(B,) -> (B, e)``; default learnable ``FourierEmbedding(time_dim,
            scale=0.2)`` as IDQL / SWG.
        out_dim: output size (default ``x_dim``).
        separate_head_dim: number of trailing outputs predicted by the separate head (0: none).
        separate_head_block: index of the block whose output feeds the separate head.

    Shapes:
        ``forward(x: (B, x_dim), t: (B,), cond: (B, cond_dim) | None) -> (B, out_dim)``
    """

    def __init__(
        self,
        x_dim: int,
        cond_dim: int,
        hidden_dim: int = 256,
        num_blocks: int = 3,
        dropout: float = 0.1,
        layer_norm: bool = True,
        time_dim: int = 128,
        activation: type[nn.Module] = nn.SiLU,
        expansion: int = 4,
        time_embedding: nn.Module | None = None,
        out_dim: int | None = None,
        separate_head_dim: int = 0,
        separate_head_block: int | None = None,
    ) -> None:
        super().__init__()
        self.x_dim = x_dim
        self.cond_dim = cond_dim
        self.out_dim = x_dim if out_dim is None else out_dim
        if x_dim < 1 or cond_dim < 0 or num_blocks < 1 or hidden_dim < 1 or expansion < 1:
            raise ConfigError(
                f"ResidualDenoiser(x_dim={x_dim}, cond_dim={cond_dim}, hidden_dim={hidden_dim}, "
                f"num_blocks={num_blocks}, expansion={expansion}): sizes must be positive "
                "(cond_dim may be 0)."
            )
        if not 0 <= separate_head_dim < self.out_dim:
            raise ConfigError(
                f"ResidualDenoiser(separate_head_dim={separate_head_dim}, out_dim={self.out_dim}): the "
                "separate head must leave at least one output to the main head."
            )
        head_block = num_blocks // 2 if separate_head_block is None else separate_head_block
        if separate_head_dim and not 0 <= head_block < num_blocks:
            raise ConfigError(
                f"ResidualDenoiser(separate_head_block={separate_head_block}): must index one of the "
                f"{num_blocks} blocks."
            )
        if time_embedding is None:
            time_embedding = FourierEmbedding(time_dim, scale=0.2, learnable=True)
        embedding = time_embedding
        self.time_mlp = nn.Sequential(
            embedding,
            nn.Linear(_embedding_size(embedding), 2 * time_dim),
            activation(),
            nn.Linear(2 * time_dim, 2 * time_dim),
        )
        self.input_layer = nn.Linear(x_dim + cond_dim + 2 * time_dim, hidden_dim)
        self.blocks = nn.ModuleList(
            ResidualBlock(hidden_dim, activation, dropout, layer_norm, expansion) for _ in range(num_blocks)
        )
        main_out_dim = self.out_dim - separate_head_dim
        self.output_head = nn.Sequential(activation(), nn.Linear(hidden_dim, main_out_dim))
        self.separate_head_block = head_block if separate_head_dim else None
        self.separate_head = (
            MLP(hidden_dim, separate_head_dim, hidden_dims=(hidden_dim,), activation=activation)
            if separate_head_dim
            else None
        )

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None, main_grad: bool = True
    ) -> torch.Tensor:
        """Denoiser output ``(B, out_dim)``.

        ``main_grad=False`` cuts the main head's outputs from the autograd graph (same values). Use it
        when only the separate head's outputs are differentiated, as SWG's guidance does: a backward
        pass then stops at the separate head's block instead of running, on zero gradients, through
        the blocks after it and the main head.
        """
        features = self.input_layer(_join_inputs(x, cond, self.time_mlp(t), self.cond_dim))
        separate_output = None
        for index, block in enumerate(self.blocks):
            if not main_grad and separate_output is not None:
                features = features.detach()
            features = block(features)
            if index == self.separate_head_block:
                separate_output = self.separate_head(features)  # type: ignore[misc]
        main_output = self.output_head(features)
        if separate_output is None:
            return main_output
        if not main_grad:
            main_output = main_output.detach()
        return torch.cat([main_output, separate_output], dim=-1)
