"""ADEPT's recipe ablation: named variants of ``conf/adept_iql_<env>.yaml`` and their table.

Each variant is a set of ``--set`` overrides on the ADEPT + IQL config of the dataset's environment
(hopper, halfcheetah, walker2d). ``benchmarks/campaign.py``'s ``adept_ablation`` campaign runs them beside
IQL alone at the same budget and adds their rows to docs/results/results.csv. ``table`` reads results
files and prints one Markdown row per variant and dataset: mean ± s.e. over seeds, the per-seed
scores, the difference to IQL alone at the same budget, and the train minutes per run.

    # screening: every variant, one seed, the data where ADEPT's claim lies
    python benchmarks/campaign.py run adept_ablation --seeds 0 --datasets hopper-random-v2 walker2d-medium-replay-v2
    # chosen variants on all six replicas, 3 seeds
    python benchmarks/campaign.py run adept_ablation --groups iql paper share_0.25_warmup_5k
    python benchmarks/adept_ablation.py table                 # the rows in docs/results/results.csv
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from lightning_offrl.sweep import FINISHED, PLACEMENT_SETTINGS, procedure_overrides, read_csv, standard_error

ROOT = Path(__file__).resolve().parents[1]

# Variant name -> overrides of conf/adept_iql_<env>.yaml. "paper" is the config as it ships.
VARIANTS: dict[str, list[str]] = {
    "paper": [],
    # the synthetic share of every learner batch, and a real-data warm-up before the first rollouts
    "share_0.25": ["model.init_args.synthetic_fraction=0.25"],
    "share_0.1": ["model.init_args.synthetic_fraction=0.1"],
    "warmup_5k": ["model.init_args.synthetic_start_updates=5000"],
    "share_0.25_warmup_5k": ["model.init_args.synthetic_fraction=0.25", "model.init_args.synthetic_start_updates=5000"],
    # the rollout policy's action noise (IQL's Gaussian: its state-independent sigma times this)
    "rollout_std_0.5": ["model.init_args.rollout_std_scale=0.5"],
    "rollout_mean": ["model.init_args.rollout_std_scale=0.0"],
    # the two above together: mean-action rollouts, a quarter synthetic, after a 5k real-data warm-up
    "rollout_mean_share_0.25_warmup_5k": ["model.init_args.rollout_std_scale=0.0",
                                          "model.init_args.synthetic_fraction=0.25",
                                          "model.init_args.synthetic_start_updates=5000"],
    # mean-action rollouts after the warm-up, at the paper's share (halfcheetah-random needs the warm-up,
    # hopper-random loses its gain at a share of 0.25 or 0.1)
    "rollout_mean_warmup_5k": ["model.init_args.rollout_std_scale=0.0", "model.init_args.synthetic_start_updates=5000"],
    # world-model pretraining length and rollout horizon
    "pretrain_30k": ["model.init_args.world_model_pretrain_updates=30000"],
    "horizon_5": ["model.init_args.rollout_horizon=5"],
    "horizon_1": ["model.init_args.rollout_horizon=1"],
    # an uncertainty signal (not in the paper): reward minus the spread of 4 draws of s'
    "uncertainty_1.0": ["model.init_args.uncertainty_samples=4", "model.init_args.uncertainty_penalty=1.0"],
    "rollout_mean_uncertainty_1.0": ["model.init_args.rollout_std_scale=0.0", "model.init_args.uncertainty_samples=4",
                                     "model.init_args.uncertainty_penalty=1.0"],
    # MOPO's signal (not in the paper): reward minus the disagreement of 5 MLP dynamics members
    "ensemble_1.0": ["model.init_args.uncertainty_ensemble=5", "model.init_args.uncertainty_penalty=1.0"],
    "ensemble_3.0": ["model.init_args.uncertainty_ensemble=5", "model.init_args.uncertainty_penalty=3.0"],
    "rollout_mean_ensemble_1.0": ["model.init_args.rollout_std_scale=0.0", "model.init_args.uncertainty_ensemble=5",
                                  "model.init_args.uncertainty_penalty=1.0"],
    # synthetic rows for policy evaluation only: IQL's actor regresses onto real rows' actions alone
    "actor_real_rows": ["model.init_args.synthetic_actor_rows=false"],
    # the paper's own ablation: the world model trained once and frozen
    "frozen_world_model": ["model.init_args.importance_sampling=false"],
}
# A run that took its pretrained world model from the cache (ADEPT's world_model_cache) runs the same
# procedure as one that pretrained its own (sweep.PLACEMENT_SETTINGS).
WORLD_MODEL_CACHE_SET = PLACEMENT_SETTINGS[0]


def variant_of(row: dict[str, str]) -> str | None:
    """The variant a results row belongs to (by its config and overrides), or None."""
    overrides = sorted(procedure_overrides(row.get("overrides") or "").replace("--", "").split())
    if row["config"].startswith("iql_"):
        return "IQL alone" if not overrides else None
    if not row["config"].startswith("adept_iql_"):
        return None
    for name, sets in VARIANTS.items():
        if sorted(sets) == overrides:
            return name
    return None


def table(rows: list[dict[str, str]]) -> str:
    """Markdown: per dataset, data build and variant, mean ± s.e. over seeds, per seed, difference to
    IQL alone on the same build, minutes.

    A policy-based replica built on another kind of CPU holds other trajectories, so rows are grouped
    by their ``data`` fingerprint (``d4rl_hdf5.data_fingerprint``) and compared with IQL on the same
    arrays; rows written before the fingerprint was recorded form one group, shown as ``-``.
    """
    groups: dict[tuple[str, int, str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        variant = variant_of(row)
        if variant is not None and row.get("status") == FINISHED and not row.get("evaluated_with"):
            groups[(row["dataset"], int(row["updates"]), row.get("data") or "", variant)].append(row)
    order = ["IQL alone", *VARIANTS]
    lines = ["| dataset | data | learner updates | variant | seeds | normalized score | per seed | vs IQL alone | "
             "train min/run |", "|---|---|---|---|---|---|---|---|---|"]
    for dataset, updates, data, variant in sorted(groups, key=lambda k: (k[0], k[2], k[1], order.index(k[3]))):
        group = sorted(groups[(dataset, updates, data, variant)], key=lambda r: int(r["seed"]))
        scores = [float(r["normalized_score"]) for r in group]
        mean = sum(scores) / len(scores)
        spread = f" ± {standard_error(scores):.1f}" if len(scores) > 1 else ""
        baseline = groups.get((dataset, updates, data, "IQL alone"))
        delta = "-"
        if baseline and variant != "IQL alone":
            base = sum(float(r["normalized_score"]) for r in baseline) / len(baseline)
            delta = f"{mean - base:+.1f}"
        minutes = sum(float(r["train_minutes"] or 0) for r in group) / len(group)
        lines.append(f"| {dataset} | {data or '-'} | {updates:,} | {variant} | {len(scores)} | {mean:.1f}{spread} | "
                     f"{', '.join(f'{s:.1f}' for s in scores)} | {delta} | {minutes:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("table", help="print the ablation table")
    show.add_argument("--csv", type=Path, nargs="+", default=[ROOT / "docs" / "results" / "results.csv"],
                      help="results files (default: docs/results/results.csv)")
    args = parser.parse_args()
    print(table([row for path in args.csv for row in read_csv(path)]))


if __name__ == "__main__":
    main()
