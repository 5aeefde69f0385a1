"""What a trained critic believes along the data's own paths to the goal (antmaze, r - 1 rewards).

For the first ``--episodes`` episodes of the dataset that reach the goal, every row before the first
goal row has a known distance in steps ``k`` to the goal. Under the r - 1 rewards (0 at the goal, -1
elsewhere) a critic that has learned these paths values such a row at about
``-(1 - gamma^k) / (1 - gamma)``. The script prints V(s) (and min Q(s, a) of the data's action) by
bins of ``k`` next to that reference, the rank correlation of V with ``k`` (a critic that orders
states by their distance to the goal has a value near -1), and writes a figure.

    python benchmarks/antmaze_value_probe.py --ckpt runs/iql_antmaze/version_0/checkpoints/last.ckpt \
        --episodes 50 --out value_probe.png

Methods with ``value`` (IQL, DTQL, SWG) report V; every method with ``critic`` reports Q.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from lightning_offrl.data.sources import resolve_dataset
from lightning_offrl.evaluate import load_module


def goal_paths(arrays: dict[str, np.ndarray], episodes: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(observations, actions, steps to the goal) of the rows before the first goal row, per episode."""
    ends = np.flatnonzero(arrays["timeouts"]) + 1
    starts = np.concatenate([[0], ends[:-1]])
    paths = []
    for start, end in zip(starts, ends):
        rewarded = np.flatnonzero(arrays["rewards"][start:end] > 0)
        if len(rewarded) == 0 or rewarded[0] == 0:
            continue
        first = int(rewarded[0])
        rows = slice(start, start + first)
        paths.append((arrays["observations"][rows], arrays["actions"][rows], np.arange(first, 0, -1)))
        if len(paths) == episodes:
            break
    return paths


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by lightning_offrl fit")
    parser.add_argument("--dataset", default=None, help="default: the checkpoint's dataset")
    parser.add_argument("--episodes", type=int, default=50, help="goal-reaching episodes of the data to probe")
    parser.add_argument("--bin", type=int, default=50, help="width of the steps-to-goal bins")
    parser.add_argument("--out", default=None, help="figure file (png/pdf); none without it")
    args = parser.parse_args()

    module, info = load_module(args.ckpt)
    dataset = args.dataset or info["dataset"]
    arrays = resolve_dataset(dataset, progress=False).arrays
    paths = goal_paths(arrays, args.episodes)
    if not paths:
        raise SystemExit(f"{dataset}: no episode of the data reaches the goal")
    gamma = float(getattr(module, "gamma", 0.99))
    obs = torch.as_tensor(np.concatenate([p[0] for p in paths]), dtype=torch.float32)
    act = torch.as_tensor(np.concatenate([p[1] for p in paths]), dtype=torch.float32)
    steps = np.concatenate([p[2] for p in paths])
    with torch.no_grad():
        norm = module.normalize_obs(obs)
        value = module.value(norm).numpy() if hasattr(module, "value") else None
        q = module.critic.min(norm, act).numpy() if hasattr(module, "critic") else None
    reference = -(1 - gamma**steps) / (1 - gamma)

    print(f"{dataset}: {len(paths)} goal-reaching episodes, {len(steps)} rows before the goal; "
          f"{type(module).__name__} after {info.get('num_updates')} updates; gamma {gamma}")
    header = f"{'steps to goal':>14} {'rows':>6} {'reference':>10}"
    header += f" {'V mean':>8} {'V std':>7}" if value is not None else ""
    header += f" {'Q mean':>8}" if q is not None else ""
    print(header)
    edges = list(range(0, int(steps.max()) + args.bin, args.bin))
    for lo, hi in zip(edges[:-1], edges[1:]):
        rows = (steps > lo) & (steps <= hi)
        if not rows.any():
            continue
        line = f"{f'{lo + 1}-{hi}':>14} {int(rows.sum()):>6} {reference[rows].mean():>10.2f}"
        if value is not None:
            line += f" {value[rows].mean():>8.2f} {value[rows].std():>7.2f}"
        if q is not None:
            line += f" {q[rows].mean():>8.2f}"
        print(line)
    if value is not None:
        print(f"rank correlation of V with steps to goal: {spearman(value, steps):.3f} (reference: -1)")
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        shown = value if value is not None else q
        ax.scatter(steps, shown, s=2, alpha=0.3, label="V(s)" if value is not None else "min Q(s, a)")
        order = np.argsort(steps)
        ax.plot(steps[order], reference[order], color="k", label="-(1 - gamma^k) / (1 - gamma)")
        ax.set_xlabel("steps to the goal in the data")
        ax.set_ylabel("value")
        ax.set_title(f"{type(module).__name__}, {dataset}, {info.get('num_updates')} updates")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out, dpi=120)
        print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
