"""DDP with manual optimization and several optimizers: gradients are averaged over ranks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_adept_ranks_sample_different_data_and_stay_identical(pointgoal_file: Path, tmp_path: Path) -> None:
    # ADEPT around IQL: world-model pretraining, two rounds of per-rank rollouts, importance-sampled
    # world-model updates and IQL updates on real + synthetic batches, every step through
    # manual_backward. Each rank draws its own batches; if gradients were not all-reduced the ranks'
    # networks would drift apart after the first update.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run([sys.executable, str(WORKER), str(pointgoal_file), str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=280, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert not torch.equal(rank0["first_batch"], rank1["first_batch"])
    assert int(rank0["state"]["rollout_rounds"]) == 2 and int(rank0["state"]["num_updates"]) == 20
    for key, value in rank0["state"].items():
        torch.testing.assert_close(value, rank1["state"][key], rtol=0, atol=0, msg=key)
