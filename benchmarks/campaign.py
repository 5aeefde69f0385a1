"""The results table's campaigns: named sets of sweeps, run until every row is in docs/results/results.csv.

A campaign is a list of sweep groups (config per environment, datasets, seeds, budget, ``--set``
overrides, ``--eval-also`` settings). ``run`` starts one ``lightning_offrl sweep`` per group and dataset
over the seeds still missing, into ``<output>/<group>``; a run is missing when docs/results/results.csv
holds no finished row with its config, dataset, seed, budget and overrides. Each finished sweep's
rows are added to docs/results/results.csv and the table of docs/results.md at once
(``results_table.py --add``), so a campaign spread over several machines or sessions picks up where
the committed results end, even when the run folders are gone.

    python benchmarks/campaign.py list                          # the campaigns and their groups
    python benchmarks/campaign.py run medium --dry-run          # what is missing, as sweep commands
    python benchmarks/campaign.py run medium --groups iql bc --datasets hopper-medium-v2 --num-cpus 2
    python benchmarks/campaign.py run swg_settings --max-sweeps 1

Campaigns:

* ``medium``: DTQL, IQL and BC on the nine medium-type replicas (hopper, halfcheetah, walker2d x medium,
  medium-replay, medium-expert), SWG on the three medium ones, 3 seeds, 20,000 updates, evaluation every
  5,000 updates; DTQL's final checkpoint also acts with its authors' selection (1024 candidates, softmax
  over Q), SWG's as SWG-R with 32 candidates chosen by Q and by the sampled weight.
* ``adept_ablation``: ADEPT + IQL in every variant of ``benchmarks/adept_ablation.py`` and IQL alone, on
  the three random and three medium-replay replicas, 3 seeds, 10,000 learner updates (screen with
  ``--seeds 0 --datasets ...``; ``adept_ablation.py table`` reads the rows). With ``--world-model-cache DIR``
  the variants of one dataset and seed pretrain their world model once (ADEPT's ``world_model_cache``),
  and with ``--same-data`` IQL alone and every variant run again on a replica built here, where the
  results hold them only on another build.
* ``swg_settings``: SWG with the settings of the authors' JAX code (``conf/swg_hopper.yaml``) against those
  of their PyTorch code (``conf/swg_hopper_torch.yaml``, whose 1M critic updates become a third of the
  budget, as the JAX config's), hopper-medium, 3 seeds, 20,000 updates.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# benchmarks/ is the script's own folder
from adept_ablation import VARIANTS as ADEPT_VARIANTS, WORLD_MODEL_CACHE_SET
from lightning_offrl.sweep import FINISHED, procedure_overrides, read_csv

ROOT = Path(__file__).resolve().parents[1]
ENVS = ("hopper", "halfcheetah", "walker2d")
MEDIUM_LEVELS = ("medium", "medium-replay", "medium-expert")
EVAL_EVERY_5K = "evaluation.interval=5000"


@dataclass(frozen=True)
class Group:
    """Sweeps of one config family: ``config`` has ``{env}`` in it, filled from each dataset's name."""

    name: str
    config: str
    datasets: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    updates: int = 20_000
    sets: tuple[str, ...] = (EVAL_EVERY_5K,)
    eval_also: tuple[str, ...] = field(default_factory=tuple)

    def config_for(self, dataset: str) -> str:
        return self.config.format(env=dataset.split("-", 1)[0])


def _datasets(levels: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{env}-{level}-v2" for level in levels for env in ENVS)


CAMPAIGNS: dict[str, list[Group]] = {
    "medium": [
        Group("bc", "bc_{env}", _datasets(MEDIUM_LEVELS)),
        Group("iql", "iql_{env}", _datasets(MEDIUM_LEVELS)),
        Group("dtql", "dtql_{env}", _datasets(MEDIUM_LEVELS),
              sets=("model.init_args.pretrain_updates=5000", EVAL_EVERY_5K),
              eval_also=("num_action_candidates=1024,candidate_selection=softmax",)),
        Group("swg", "swg_{env}", _datasets(("medium",)),
              eval_also=("num_candidates=32,temperature=1.0,candidate_selection=q",
                         "num_candidates=32,temperature=1.0,candidate_selection=weight")),
    ],
    # ADEPT's recipe variants (benchmarks/adept_ablation.py, which prints their table) beside IQL alone,
    # on the data where the paper's claim lies, at the results table's 10,000 learner updates.
    "adept_ablation": [
        Group("iql", "iql_{env}", _datasets(("random", "medium-replay")), updates=10_000, sets=()),
        *(Group(name, "adept_iql_{env}", _datasets(("random", "medium-replay")), updates=10_000, sets=tuple(sets))
          for name, sets in ADEPT_VARIANTS.items()),
    ],
    "swg_settings": [
        Group("swg_jax", "swg_hopper", ("hopper-medium-v2",)),
        Group("swg_torch", "swg_hopper_torch", ("hopper-medium-v2",),
              sets=("model.init_args.critic_updates=6667", EVAL_EVERY_5K)),
    ],
}


def done_keys(csv_path: Path, fingerprints: dict[str, str] | None = None) -> set[tuple[str, str, int, int, str]]:
    """(config, dataset, seed, updates, procedure overrides) of the finished training rows in ``csv_path``
    (a shared world-model cache does not make another run: :func:`lightning_offrl.sweep.procedure_overrides`).

    With ``fingerprints`` (dataset -> data fingerprint of the local file), a row of such a dataset counts
    only when it trained on those arrays (its ``data`` column); other datasets count rows of any build.
    """
    if not csv_path.is_file():
        return set()
    fingerprints = fingerprints or {}
    return {(row["config"], row["dataset"], int(row["seed"]), int(row["updates"]),
             procedure_overrides(row.get("overrides") or ""))
            for row in read_csv(csv_path) if row.get("status") == FINISHED and not row.get("evaluated_with")
            and (row["dataset"] not in fingerprints or (row.get("data") or "") == fingerprints[row["dataset"]])}


def local_fingerprints(datasets: list[str]) -> dict[str, str]:
    """Data fingerprints of the datasets present on this machine (as ``datasets info`` prints them);
    a dataset with nothing here is left out (its sweep builds it)."""
    from lightning_offrl.data.commands import datasets_info
    from lightning_offrl.errors import DatasetError

    out = {}
    for name in datasets:
        try:
            out[name] = datasets_info(name)["fingerprint"]
        except DatasetError:
            continue
    return out


def missing_runs(groups: list[Group], done: set[tuple[str, str, int, int, str]], datasets: list[str] | None,
                 seeds: list[int] | None = None) -> list[tuple[Group, str, list[int]]]:
    """(group, dataset, seeds without a finished row) for every group and dataset that lacks one
    (``datasets`` / ``seeds``: only these)."""
    out = []
    for group in groups:
        for dataset in group.datasets:
            if datasets and dataset not in datasets:
                continue
            todo = [seed for seed in group.seeds if (seeds is None or seed in seeds)
                    and (group.config_for(dataset), dataset, seed, group.updates, " ".join(group.sets)) not in done]
            if todo:
                out.append((group, dataset, todo))
    return out


def sweep_command(group: Group, dataset: str, seeds: list[int], output: Path, num_cpus: int,
                  world_model_cache: Path | None = None) -> list[str]:
    """One sweep over ``seeds`` (run ``num_cpus`` at a time); ADEPT's runs share ``world_model_cache``
    where it is given."""
    command = ["sweep", "--configs", group.config_for(dataset), "--datasets", dataset,
               "--seeds", *map(str, seeds), "--updates", str(group.updates), "--num-cpus", str(num_cpus),
               "--output", str(output / group.name)]
    for override in group.sets:
        command += ["--set", override]
    if world_model_cache is not None and group.config.startswith("adept_"):
        command += ["--set", f"{WORLD_MODEL_CACHE_SET}{world_model_cache}"]
    for setting in group.eval_also:
        command += ["--eval-also", setting]
    return command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the campaigns, their groups and how many runs are missing")
    run = sub.add_parser("run", help="run a campaign's missing runs, adding each sweep's rows to the results")
    run.add_argument("campaign", choices=list(CAMPAIGNS))
    run.add_argument("--groups", nargs="+", default=None, help="only these groups (e.g. iql bc)")
    run.add_argument("--datasets", nargs="+", default=None, help="only these datasets")
    run.add_argument("--seeds", nargs="+", type=int, default=None, help="only these seeds")
    run.add_argument("--max-sweeps", type=int, default=None,
                     help="stop after this many sweeps (one per group and dataset, over its missing seeds)")
    run.add_argument("--output", type=Path, default=Path("runs/campaign"))
    run.add_argument("--num-cpus", type=int, default=1, help="CPUs of each sweep's Ray (its runs at once)")
    run.add_argument("--csv", type=Path, default=ROOT / "docs" / "results" / "results.csv")
    run.add_argument("--dry-run", action="store_true", help="print the missing runs' sweep commands only")
    run.add_argument("--same-data", action="store_true",
                     help="a run is done only when the results hold it on the arrays of this machine's file of "
                          "its dataset (the data fingerprint; a replica built on another CPU holds others)")
    run.add_argument("--world-model-cache", type=Path, default=None,
                     help="ADEPT's runs share their pretrained world models through this folder "
                          "(model.init_args.world_model_cache): a variant pretrains only where no run of the "
                          "same data, world-model settings and seed has")
    args = parser.parse_args()

    if args.command == "list":
        done = done_keys(ROOT / "docs" / "results" / "results.csv")
        for name, groups in CAMPAIGNS.items():
            print(f"{name}:")
            for group in groups:
                total = len(group.datasets) * len(group.seeds)
                missing = sum(len(seeds) for _, _, seeds in missing_runs([group], done, None))
                print(f"  {group.name}: {group.config} on {len(group.datasets)} dataset(s) x seeds "
                      f"{list(group.seeds)}, {group.updates:,} updates, --set {' '.join(group.sets)}"
                      f"{'; eval also ' + ' | '.join(group.eval_also) if group.eval_also else ''}: "
                      f"{total - missing}/{total} in the results")
        return

    groups = [g for g in CAMPAIGNS[args.campaign] if args.groups is None or g.name in args.groups]
    unknown = set(args.groups or []) - {g.name for g in CAMPAIGNS[args.campaign]}
    if unknown:
        raise SystemExit(f"{args.campaign} has no group {', '.join(sorted(unknown))}; "
                         f"its groups: {', '.join(g.name for g in CAMPAIGNS[args.campaign])}")
    fingerprints = None
    if args.same_data:
        fingerprints = local_fingerprints(sorted({d for g in groups for d in g.datasets
                                                  if not args.datasets or d in args.datasets}))
        for name, fingerprint in fingerprints.items():
            print(f"{name}: counting only rows trained on this machine's data {fingerprint}", flush=True)
    todo = missing_runs(groups, done_keys(args.csv, fingerprints), args.datasets, args.seeds)
    if args.max_sweeps is not None:
        todo = todo[: args.max_sweeps]
    print(f"{sum(len(seeds) for _, _, seeds in todo)} run(s) to do in {len(todo)} sweep(s)", flush=True)
    for group, dataset, seeds in todo:
        command = sweep_command(group, dataset, seeds, args.output, args.num_cpus, args.world_model_cache)
        print("lightning_offrl " + " ".join(command), flush=True)
        if args.dry_run:
            continue
        subprocess.run([sys.executable, "-m", "lightning_offrl.cli", *command], check=False)
        results = args.output / group.name / "results.csv"
        if results.is_file():
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "results_table.py"), "--add", str(results),
                            "--csv", str(args.csv)], check=False)


if __name__ == "__main__":
    main()
