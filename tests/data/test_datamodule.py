"""D4RLDataModule and the tensor buffer: sampling determinism, normalisation, reward transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_offrl.data.buffer import Batch, BatchStream, TransitionBuffer
from lightning_offrl.data.d4rl_hdf5 import episode_returns, read_d4rl_hdf5
from lightning_offrl.data.datamodule import D4RLDataModule
from lightning_offrl.data.normalization import ObservationStats, transform_rewards
from lightning_offrl.errors import ConfigError, UnknownDatasetError


def make(path: Path, **kwargs) -> D4RLDataModule:  # noqa: ANN003
    kwargs.setdefault("batch_size", 16)
    dm = D4RLDataModule(dataset="pointgoal-random-v0", path=str(path), **kwargs)
    dm.setup("fit")
    return dm


def first_batches(dm: D4RLDataModule, n: int = 3) -> list[Batch]:
    return [batch for _, batch in zip(range(n), dm.train_dataloader())]


def test_sampling_is_deterministic_per_seed(pointgoal_file: Path) -> None:
    a, b, c = (first_batches(make(pointgoal_file, seed=s, batches_per_step=4)) for s in (0, 0, 1))
    for x, y in zip(a, b):
        for fx, fy in zip(x, y):
            torch.testing.assert_close(fx, fy)
    assert not torch.equal(a[0].observations, c[0].observations)
    assert a[0].observations.shape == (4, 16, 2) and a[0].rewards.shape == (4, 16)


def test_generator_state_round_trips_for_exact_resume(pointgoal_file: Path) -> None:
    dm = make(pointgoal_file)
    first_batches(dm, 2)
    state = dm.state_dict()
    expected = first_batches(dm, 1)[0]
    restored = make(pointgoal_file)
    restored.load_state_dict(state)
    torch.testing.assert_close(first_batches(restored, 1)[0].actions, expected.actions)


def test_checkpointed_state_names_the_data_by_fingerprint(pointgoal_file: Path) -> None:
    from lightning_offrl.data.d4rl_hdf5 import data_fingerprint

    dm = make(pointgoal_file)
    assert dm.data_fingerprint == data_fingerprint(read_d4rl_hdf5(pointgoal_file))
    assert dm.state_dict()["fingerprint"] == dm.data_fingerprint


def test_observations_are_normalised_and_stats_kept(pointgoal_file: Path) -> None:
    dm = make(pointgoal_file)
    obs = dm.buffer.observations
    assert torch.allclose(obs.mean(0), torch.zeros(2), atol=1e-3)
    assert torch.allclose(obs.std(0), torch.ones(2), atol=1e-2)
    raw = read_d4rl_hdf5(pointgoal_file)["observations"]
    np.testing.assert_allclose(dm.obs_stats.mean, raw.mean(0), rtol=1e-4, atol=1e-5)
    assert make(pointgoal_file, normalize_observations=False).obs_stats.std.tolist() == [1.0, 1.0]


def test_reward_transforms(pointgoal_file: Path) -> None:
    arrays = read_d4rl_hdf5(pointgoal_file)
    returns = episode_returns(arrays)
    scaled, scale, _ = transform_rewards(arrays["rewards"], "return_range", returns)
    assert scale == pytest.approx(1000.0 / (returns.max() - returns.min()))
    np.testing.assert_allclose(scaled, arrays["rewards"] * scale, rtol=1e-6)
    shifted, _, shift = transform_rewards(arrays["rewards"], "affine", scale=1.0, shift=-1.0)
    np.testing.assert_allclose(shifted, arrays["rewards"] - 1.0, rtol=1e-6)
    dm = make(pointgoal_file, reward_transform="affine", reward_shift=-1.0)
    assert float(dm.buffer.rewards.max()) <= -1.0 + 1e-6
    with pytest.raises(ConfigError, match="return_range"):
        transform_rewards(np.ones(10, np.float32), "return_range", np.ones(3))


def test_bad_arguments_fail_early(pointgoal_file: Path) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        D4RLDataModule(dataset="pointgoal-random-v0", batch_size=0)
    with pytest.raises(UnknownDatasetError, match="known domains"):
        D4RLDataModule(dataset="notatask-medium-v2")


def test_mixed_sources_split_each_batch(pointgoal_file: Path) -> None:
    dm = make(pointgoal_file, batch_size=20)
    n = 50
    synthetic = TransitionBuffer(
        torch.full((n, 2), 7.0), torch.zeros(n, 2), torch.zeros(n), torch.zeros(n, 2), torch.zeros(n)
    )
    dm.add_source(synthetic, 0.25)
    batch = first_batches(dm, 1)[0]
    from_synthetic = (batch.observations[..., 0] == 7.0).sum().item()
    assert from_synthetic == 5  # 25% of 20
    with pytest.raises(ConfigError):
        dm.add_source(synthetic, 1.5)


def test_batch_stream_length_and_unbind() -> None:
    buffer = TransitionBuffer(torch.randn(10, 3), torch.randn(10, 2), torch.randn(10), torch.randn(10, 3), torch.zeros(10))
    stream = BatchStream([(buffer, 1.0)], 4, 3, 7, torch.Generator().manual_seed(0))
    batches = list(stream)
    assert len(stream) == len(batches) == 7
    parts = batches[0].unbind()
    assert len(parts) == 3 and parts[0].observations.shape == (4, 3)


def test_observation_stats_identity_roundtrip() -> None:
    stats = ObservationStats.fit(np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 4)).astype(np.float32))
    normalized = stats.normalize(np.full((1, 4), 3.0, np.float32))
    assert np.all(np.abs(normalized) < 0.2)
