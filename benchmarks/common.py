"""Shared pieces of the benchmarks: timing, thread setup, the data both paths train on."""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from lightning_offrl.data.buffer import TransitionBuffer


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", default="hopper-random-v2", help="D4RL name (replica built if missing)")
    parser.add_argument("--updates", type=int, default=3000, help="timed gradient updates per repeat")
    parser.add_argument("--warmup", type=int, default=300, help="untimed updates before timing")
    parser.add_argument("--repeats", type=int, default=3, help="median over this many repeats")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--replica_steps", type=int, default=None, help="replica size (default: D4RL's)")
    return parser


def load_buffer(dataset: str, replica_steps: int | None = None) -> TransitionBuffer:
    """The q-learning transitions of ``dataset`` (normalised observations) as a CPU buffer."""
    from lightning_offrl.data.datamodule import D4RLDataModule

    datamodule = D4RLDataModule(dataset=dataset, replica_steps=replica_steps)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert datamodule.buffer is not None
    return datamodule.buffer


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def synchronize(device: str | torch.device) -> None:
    """Waits for the work queued on a GPU, so that a clock read afterwards counts it (no-op on a CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
