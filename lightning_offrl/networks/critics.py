"""Critics and other ensembles: MLP ensembles (Q-functions among them) evaluated in batched matmuls, a Gaussian
ensemble for dynamics uncertainty, and a state-value network."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from lightning_offrl.networks.mlp import MLP


class EnsembleLinear(nn.Module):
    """``num_members`` independent linear layers applied with one batched matmul.

    Shapes:
        ``(E, B, in_features) -> (E, B, out_features)``
    """

    def __init__(self, num_members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_features))
        # Same initialisation as nn.Linear, drawn independently for every member.
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm with separate affine parameters per member. Shapes: ``(E, B, D) -> (E, B, D)``."""

    def __init__(self, num_members: int, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(num_members, 1, dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.layer_norm(x, x.shape[-1:], eps=self.eps)
        return torch.addcmul(self.bias, x, self.weight)  # one fused kernel instead of mul + add


class EnsembleMLP(nn.Sequential):
    """``num_members`` MLPs of one shape, evaluated together with batched matmuls.

    Args:
        num_members: ensemble size.
        in_dim: input size.
        out_dim: output size.
        hidden_dims: hidden widths of every member.
        layer_norm: LayerNorm after each hidden layer.
        activation: activation class.

    Shapes:
        ``(E, B, in_dim) -> (E, B, out_dim)``
    """

    def __init__(
        self,
        num_members: int,
        in_dim: int,
        out_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        layer_norm: bool = False,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        layers: list[nn.Module] = []
        width = in_dim
        for hidden in hidden_dims:
            layers.append(EnsembleLinear(num_members, width, hidden))
            if layer_norm:
                layers.append(EnsembleLayerNorm(num_members, hidden))
            layers.append(activation())
            width = hidden
        layers.append(EnsembleLinear(num_members, width, out_dim))
        super().__init__(*layers)
        self.num_members = num_members

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        """Every member on the same input. ``(B, in_dim) -> (E, B, out_dim)``."""
        return self(x.unsqueeze(0).expand(self.num_members, *x.shape))


class GaussianEnsemble(nn.Module):
    """``num_members`` MLPs that each predict a diagonal Gaussian over ``out_dim`` targets (PETS's and MOPO's
    probabilistic ensemble).

    The log-variance is kept between learned bounds by soft clipping, ``max - softplus(max - l)`` then
    ``min + softplus(l - min)``; the bounds start at 0.5 and -10 and a small penalty on their distance
    keeps them from drifting apart, as in PETS.

    Args:
        num_members: ensemble size.
        in_dim: input size.
        out_dim: size of the predicted target.
        hidden_dims: hidden widths of every member.
        activation: activation class.

    Shapes:
        ``forward_shared((B, in_dim)) -> (mean, log_var)``, each ``(E, B, out_dim)``
    """

    #: weight of the bounds' distance in :meth:`nll`
    BOUND_PENALTY = 0.01

    def __init__(
        self,
        num_members: int,
        in_dim: int,
        out_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.net = EnsembleMLP(num_members, in_dim, 2 * out_dim, hidden_dims, activation=activation)
        self.max_log_var = nn.Parameter(torch.full((out_dim,), 0.5))
        self.min_log_var = nn.Parameter(torch.full((out_dim,), -10.0))
        self.num_members = num_members

    def forward_shared(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's mean and bounded log-variance on the same input."""
        mean, log_var = self.net.forward_shared(x).chunk(2, dim=-1)
        log_var = self.max_log_var - nn.functional.softplus(self.max_log_var - log_var)
        log_var = self.min_log_var + nn.functional.softplus(log_var - self.min_log_var)
        return mean, log_var

    def nll(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Gaussian negative log-likelihood of ``target (B, out_dim)`` (without its constant), averaged over
        members, rows and dimensions, plus the bounds' penalty."""
        mean, log_var = self.forward_shared(x)
        nll = ((mean - target).square() * torch.exp(-log_var) + log_var).mean()
        return nll + self.BOUND_PENALTY * (self.max_log_var.sum() - self.min_log_var.sum())

    def max_std(self, x: torch.Tensor) -> torch.Tensor:
        """MOPO's uncertainty: the largest, over members, Euclidean norm of the predicted standard deviation.
        ``(B, in_dim) -> (B,)``."""
        _, log_var = self.forward_shared(x)
        return torch.exp(0.5 * log_var).norm(dim=-1).amax(dim=0)


class EnsembleQ(nn.Module):
    """``num_critics`` Q-networks ``Q_i(s, a)`` evaluated together.

    Args:
        obs_dim: observation size.
        act_dim: action size.
        hidden_dims: hidden widths of every member.
        num_critics: ensemble size (2 for clipped double Q).
        layer_norm: LayerNorm after each hidden layer (DTQL's critics use it).
        activation: activation class.

    Shapes:
        ``forward(obs: (B, obs_dim), action: (B, act_dim)) -> (num_critics, B)``
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        num_critics: int = 2,
        layer_norm: bool = False,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.num_critics = num_critics
        self.net = EnsembleMLP(num_critics, obs_dim + act_dim, 1, hidden_dims, layer_norm, activation)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net.forward_shared(torch.cat([obs, action], dim=-1)).squeeze(-1)

    def min(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Pessimistic value ``min_i Q_i(s, a)``. Shape: ``(B,)``."""
        return self(obs, action).min(dim=0).values


class ValueNet(nn.Module):
    """State value ``V(s)``. Shapes: ``(B, obs_dim) -> (B,)``."""

    def __init__(
        self,
        obs_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        layer_norm: bool = False,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.net = MLP(obs_dim, 1, hidden_dims, activation=activation, layer_norm=layer_norm)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)
