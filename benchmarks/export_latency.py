"""Export time and per-action latency of exported policies against ``act()``.

For each method, a freshly initialised module at hopper's sizes (11-d observations, 3-d actions) with
its default networks (the configs' sizes) is exported to TorchScript and ONNX; then one action for one
observation (batch 1) is timed with ``act()``, the TorchScript file (``torch.jit.load``) and the ONNX
file (onnxruntime), all on one thread. Latency does not depend on the weights, so no training is needed.

    python benchmarks/export_latency.py [--methods iql sac bc dtql adept swg] [--repeats 2000]

Prints a Markdown table: export seconds per format, then median microseconds per action.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lightning_offrl.algos import ADEPT, BC, DTQL, IQL, SAC, SWG, OfflineRLModule
from lightning_offrl.export import export_module, load_exported

OBS_DIM, ACT_DIM = 11, 3  # hopper
METHODS: dict[str, Callable[[], OfflineRLModule]] = {
    "iql": lambda: IQL(OBS_DIM, ACT_DIM),
    "sac": lambda: SAC(OBS_DIM, ACT_DIM, hidden_dims=(256, 256, 256), num_critics=10),
    "bc": lambda: BC(OBS_DIM, ACT_DIM),
    "dtql": lambda: DTQL(OBS_DIM, ACT_DIM),
    "adept": lambda: ADEPT(OBS_DIM, ACT_DIM),
    "swg": lambda: SWG(OBS_DIM, ACT_DIM),
}


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after 20 warm-up calls."""
    for _ in range(20):
        fn()
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--repeats", type=int, default=2000, help="timed actions per policy (SWG: a tenth)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    obs = np.random.default_rng(0).normal(size=(1, OBS_DIM)).astype(np.float32)
    print("| method | export TorchScript (s) | export ONNX (s) | act() (us) | TorchScript (us) | onnxruntime (us) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.methods:
            module = METHODS[name]().eval()
            repeats = max(20, args.repeats // 10) if name == "swg" else args.repeats
            row = [name]
            policies = []
            for fmt, suffix in (("torchscript", ".pt"), ("onnx", ".onnx")):
                path = Path(folder) / f"{name}{suffix}"
                result = export_module(module, path, fmt)
                row.append(f"{result['export_seconds']:.1f}")
                policies.append(load_exported(path)[0])
            for policy in (module.act, *policies):
                row.append(f"{1e6 * median_seconds(lambda p=policy: p(obs), repeats):.0f}")
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
