"""Plain ``nn.Module`` building blocks, free of Lightning and of algorithm names."""

from lightning_offrl.networks.actors import DeterministicActor, GaussianActor, TanhGaussianActor
from lightning_offrl.networks.critics import EnsembleMLP, EnsembleQ, GaussianEnsemble, ValueNet
from lightning_offrl.networks.denoisers import DenoiserMLP, ResidualDenoiser
from lightning_offrl.networks.embeddings import FourierEmbedding, SinusoidalEmbedding
from lightning_offrl.networks.mlp import MLP

__all__ = [
    "MLP",
    "EnsembleMLP",
    "EnsembleQ",
    "GaussianEnsemble",
    "ValueNet",
    "TanhGaussianActor",
    "GaussianActor",
    "DeterministicActor",
    "DenoiserMLP",
    "ResidualDenoiser",
    "SinusoidalEmbedding",
    "FourierEmbedding",
]
