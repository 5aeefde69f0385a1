"""ADEPT's recipe ablation: named variants of ``conf/adept_iql_<env>.yaml``, run as sweeps, read as one table.

Each variant is a set of ``--set`` overrides on the ADEPT + IQL config of the dataset's environment
(hopper, halfcheetah, walker2d). ``run`` starts one ``lightning_offrl sweep`` per variant and
environment, each into ``<output>/<variant>`` (so a rerun resumes and skips finished runs, and
variants never mix), plus IQL alone with the same budget into ``<output>/iql``. ``table`` reads the
``results.csv`` files of those folders (or any list of results files, such as docs/results/results.csv)
and prints one Markdown row per variant and dataset: mean ± s.e. over seeds, the per-seed scores, the
difference to IQL alone at the same budget, and the train minutes per run.

    # screening: every variant, one seed, the data where ADEPT's claim lies
    python benchmarks/adept_ablation.py run --datasets hopper-random-v2 walker2d-medium-replay-v2 --seeds 0
    # the chosen recipe on all six replicas, 3 seeds
    python benchmarks/adept_ablation.py run --variants paper share_0.25_warmup_5k --seeds 0 1 2 \\
        --datasets {hopper,halfcheetah,walker2d}-random-v2 {hopper,halfcheetah,walker2d}-medium-replay-v2
    python benchmarks/adept_ablation.py table                      # the folders under runs/adept-ablation
    python benchmarks/adept_ablation.py table --csv docs/results/results.csv
    python benchmarks/adept_ablation.py run --dry-run               # the sweep commands only

The budget is ``--updates`` learner updates (default 10,000, the results table's), after the config's
10,000 world-model pretraining updates.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from lightning_offrl.sweep import FINISHED, read_csv, standard_error

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
    # world-model pretraining length and rollout horizon
    "pretrain_30k": ["model.init_args.world_model_pretrain_updates=30000"],
    "horizon_5": ["model.init_args.rollout_horizon=5"],
    "horizon_1": ["model.init_args.rollout_horizon=1"],
    # an uncertainty signal (not in the paper): reward minus the spread of 4 draws of s'
    "uncertainty_1.0": ["model.init_args.uncertainty_samples=4", "model.init_args.uncertainty_penalty=1.0"],
    # the paper's own ablation: the world model trained once and frozen
    "frozen_world_model": ["model.init_args.importance_sampling=false"],
}
ENVS = ("hopper", "halfcheetah", "walker2d")


def env_of(dataset: str) -> str:
    env = dataset.split("-", 1)[0]
    if env not in ENVS:
        raise SystemExit(f"{dataset}: the ablation covers the {', '.join(ENVS)} datasets")
    return env


def sweep_commands(variants: list[str], datasets: list[str], seeds: list[int], updates: int, output: Path,
                   num_cpus: int) -> list[list[str]]:
    """One sweep per (variant, environment), and IQL alone per environment, as argument lists."""
    by_env: dict[str, list[str]] = defaultdict(list)
    for dataset in datasets:
        by_env[env_of(dataset)].append(dataset)
    common = ["--seeds", *map(str, seeds), "--updates", str(updates), "--num-cpus", str(num_cpus)]
    commands = []
    for env, env_datasets in by_env.items():
        commands.append(["sweep", "--configs", f"iql_{env}", "--datasets", *env_datasets, *common,
                         "--output", str(output / "iql")])
        for variant in variants:
            sets = [arg for override in VARIANTS[variant] for arg in ("--set", override)]
            commands.append(["sweep", "--configs", f"adept_iql_{env}", "--datasets", *env_datasets, *common, *sets,
                             "--output", str(output / variant)])
    return commands


def variant_of(row: dict[str, str]) -> str | None:
    """The variant a results row belongs to (by its config and overrides), or None."""
    overrides = sorted((row.get("overrides") or "").replace("--", "").split())
    if row["config"].startswith("iql_"):
        return "IQL alone" if not overrides else None
    if not row["config"].startswith("adept_iql_"):
        return None
    for name, sets in VARIANTS.items():
        if sorted(sets) == overrides:
            return name
    return None


def table(rows: list[dict[str, str]]) -> str:
    """Markdown: per dataset and variant, mean ± s.e. over seeds, per seed, difference to IQL, minutes."""
    groups: dict[tuple[str, int, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        variant = variant_of(row)
        if variant is not None and row.get("status") == FINISHED and not row.get("evaluated_with"):
            groups[(row["dataset"], int(row["updates"]), variant)].append(row)
    order = ["IQL alone", *VARIANTS]
    lines = ["| dataset | learner updates | variant | seeds | normalized score | per seed | vs IQL alone | "
             "train min/run |", "|---|---|---|---|---|---|---|---|"]
    for dataset, updates, variant in sorted(groups, key=lambda k: (k[0], k[1], order.index(k[2]))):
        group = sorted(groups[(dataset, updates, variant)], key=lambda r: int(r["seed"]))
        scores = [float(r["normalized_score"]) for r in group]
        mean = sum(scores) / len(scores)
        spread = f" ± {standard_error(scores):.1f}" if len(scores) > 1 else ""
        baseline = groups.get((dataset, updates, "IQL alone"))
        delta = "-"
        if baseline and variant != "IQL alone":
            base = sum(float(r["normalized_score"]) for r in baseline) / len(baseline)
            delta = f"{mean - base:+.1f}"
        minutes = sum(float(r["train_minutes"] or 0) for r in group) / len(group)
        lines.append(f"| {dataset} | {updates:,} | {variant} | {len(scores)} | {mean:.1f}{spread} | "
                     f"{', '.join(f'{s:.1f}' for s in scores)} | {delta} | {minutes:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the variants as sweeps (resumable)")
    run.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    run.add_argument("--datasets", nargs="+", default=["hopper-random-v2", "walker2d-medium-replay-v2"])
    run.add_argument("--seeds", nargs="+", type=int, default=[0])
    run.add_argument("--updates", type=int, default=10_000)
    run.add_argument("--output", type=Path, default=Path("runs/adept-ablation"))
    run.add_argument("--num-cpus", type=int, default=1, help="CPUs of each sweep's Ray (runs at once)")
    run.add_argument("--dry-run", action="store_true", help="print the sweep commands only")
    show = sub.add_parser("table", help="print the ablation table")
    show.add_argument("--csv", type=Path, nargs="+", default=None,
                      help="results files (default: <output>/*/results.csv)")
    show.add_argument("--output", type=Path, default=Path("runs/adept-ablation"))
    args = parser.parse_args()

    if args.command == "run":
        for command in sweep_commands(args.variants, args.datasets, args.seeds, args.updates, args.output,
                                      args.num_cpus):
            print("lightning_offrl " + " ".join(command), flush=True)
            if not args.dry_run:
                subprocess.run([sys.executable, "-m", "lightning_offrl.cli", *command], check=False)
        return
    files = args.csv or sorted(args.output.glob("*/results.csv"))
    if not files:
        raise SystemExit(f"no results.csv under {args.output}/*/; run the sweeps first or pass --csv")
    print(table([row for path in files for row in read_csv(path)]))


if __name__ == "__main__":
    main()
