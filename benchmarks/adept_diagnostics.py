"""Signs of world-model exploitation in finished ADEPT runs, next to the learner alone.

For every seed of a config on a dataset (the run folders ``<runs>/<config>/<dataset>/seed<k>/`` of a
``lightning_offrl sweep``, whose events lie in the folder itself, or those the former
``benchmarks/results.py`` left under ``runs/results``, whose newest ``version_*`` is read), prints the
learner's critic loss at its first and last logged update, the world-model rollouts' mean predicted
reward at the first and last round and their mean length, and the score of the fit's own last
evaluation (its episodes are not the ones of the final evaluation). The data's own mean reward is printed on IQL's
``return_range`` scale (the scale the rollouts' rewards are logged on for IQL-based configs): rollouts
that earn more than the data while the policy scores less in the environment, with a critic loss that
grows far beyond the learner's own, are the pattern docs/methods/adept.md describes.

    python benchmarks/adept_diagnostics.py --dataset walker2d-medium-v2 \\
        --configs iql_walker2d adept_iql_walker2d --runs runs/sweeps/walker2d-medium/runs

With ``--rounds``, every ADEPT run also gets its closed loop round by round (one row per logged learner
update): the world model's error on the rows it never trained on one and ten steps ahead
(``diagnostics/state_rmse_*``, in standard deviations of the data's states, next to the error of
predicting no change), its reward error, the rollouts' mean reward next to the data's and their length,
with an uncertainty signal its level on held-out data rows next to the rollouts',
the importance weights' effective sample size and the learner's critic loss, the share of the rollouts'
action coordinates at the bounds +-1 (a clipped Gaussian puts its broad draws there) and of the policy's
mean action, with the fit's own evaluations where they fall.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_offrl.data.d4rl_hdf5 import episode_returns
from lightning_offrl.data.normalization import return_range_scale
from lightning_offrl.data.sources import resolve_dataset

ROOT = Path(__file__).resolve().parents[1]


def scalar_series(run_dir: Path) -> dict[str, dict[int, float]]:
    """``{tag: {learner update: value}}`` of a run's TensorBoard scalars."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


ROUND_COLUMNS = (
    ("state err 1", "train/diagnostics/state_rmse_1", "{:.3f}"),
    ("no-change err 1", "train/diagnostics/state_rmse_1_unchanged", "{:.3f}"),
    ("state err 10", "train/diagnostics/state_rmse_10", "{:.3f}"),
    ("reward err 1", "train/diagnostics/reward_rmse_1", "{:.3f}"),
    ("10-step return err", "train/diagnostics/return_error_10", "{:.2f}"),
    ("rollout reward", "train/rollout/mean_reward", "{:.3f}"),
    ("data reward", "train/diagnostics/data_mean_reward", "{:.3f}"),
    ("rollout length", "train/rollout/mean_length", "{:.2f}"),
    ("data uncertainty", "train/diagnostics/uncertainty_1", "{:.3f}"),
    ("rollout uncertainty", "train/rollout/mean_uncertainty", "{:.3f}"),
    ("rollout actions at bound", "train/rollout/action_at_bound", "{:.1%}"),
    ("policy mode at bound", "train/rollout/policy_mode_at_bound", "{:.1%}"),
    ("IS weight ESS", "train/world_model/weight_ess", "{:.1%}"),
    ("critic loss", "train/critic_loss", "{:.3g}"),
    ("evaluation", "eval/normalized_score", "{:.1f}"),
)


def round_table(series: dict[str, dict[int, float]]) -> list[str]:
    """Markdown rows, one per learner update at which the round diagnostics were logged."""
    steps = sorted(series.get("train/diagnostics/state_rmse_1", {}))
    if not steps:
        return ["    (no round diagnostics logged: a run without synthetic data, or from before they existed)"]
    # Columns the run logged (the uncertainty ones only with an uncertainty signal).
    columns = [column for column in ROUND_COLUMNS if series.get(column[1])]
    lines = ["    | learner updates | " + " | ".join(name for name, _, _ in columns) + " |",
             "    |" + "---|" * (len(columns) + 1)]
    for step in steps:
        cells = []
        for _, tag, form in columns:
            value = series.get(tag, {}).get(step)
            cells.append(form.format(value) if value is not None else "")
        lines.append(f"    | {step} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--configs", nargs="+", required=True)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "results",
                        help="DIR/runs of a sweep, or the former script's runs/results (the default)")
    parser.add_argument("--rounds", action="store_true", help="print each ADEPT run's closed loop round by round")
    args = parser.parse_args()

    data = resolve_dataset(args.dataset, progress=False)
    arrays = data.arrays
    scale = return_range_scale(episode_returns(arrays))
    print(f"{args.dataset}: data mean reward {np.mean(arrays['rewards']) * scale:.3f} on IQL's return_range "
          f"scale; terminal rows {np.mean(arrays['terminals']):.2%}")
    for config in args.configs:
        for seed_dir in sorted((args.runs / config / args.dataset).glob("seed*")):
            # A sweep's run folder holds its events; the former script's held version_* folders.
            versions = sorted(seed_dir.glob("version_*")) or [seed_dir]
            if not list(versions[-1].glob("events.out.tfevents.*")):
                continue
            series = scalar_series(versions[-1])
            logged = {tag: list(values.values()) for tag, values in series.items()}
            line = f"  {config:<24} {seed_dir.name}:"
            critic = logged.get("train/critic_loss")
            if critic:
                line += f" critic loss {critic[0]:.2f} -> {critic[-1]:.2f} (max {max(critic):.1f})"
            reward = logged.get("train/rollout/mean_reward")
            if reward:
                length = np.mean(logged["train/rollout/mean_length"])
                line += f"; rollout reward {reward[0]:.2f} -> {reward[-1]:.2f}, length {length:.2f}"
            score = logged.get("eval/normalized_score")
            if score:
                line += f"; in-fit evaluation {score[-1]:.1f}"
            print(line)
            if args.rounds and "train/rollout/mean_reward" in series:
                print("\n".join(round_table(series)))


if __name__ == "__main__":
    main()
