"""Runs methods over datasets and seeds and writes the results table of ``docs/results.md``.

Each run is ``lightning_offrl fit`` with a config, a dataset, a seed and a budget; its final policy is
then scored by ``lightning_offrl evaluate`` on the same fixed evaluation episodes for every method
(seeds 100000..100000+episodes-1), so the numbers are comparable across methods. Every finished run
appends one JSON line to ``docs/results/runs.jsonl``; the table is rebuilt from that file, so an
interrupted sweep resumes where it stopped (finished runs are skipped).

    python benchmarks/results.py --configs iql_hopper dtql_hopper --datasets hopper-random-v2 \
        --seeds 0 1 2 --updates 20000 --episodes 10

    # SWG-R from the SWG runs above: no new training, the same checkpoints evaluated with 32 candidates
    python benchmarks/results.py --configs swg_hopper --datasets hopper-random-v2 --seeds 0 1 2 \
        --updates 20000 --eval-set num_candidates=32 --eval-set temperature=1.0

    python benchmarks/results.py --table-only   # rebuild docs/results.md from runs.jsonl

``--jobs N`` trains N runs at once, each in its own process (one core each with the default
``OMP_NUM_THREADS=1``; on a GPU machine they share the GPU). Every record names the hardware it was
trained on, and the table shows it beside the training time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "docs" / "results" / "runs.jsonl"
TABLE = ROOT / "docs" / "results.md"
EVAL_SEED = 100_000


def hardware() -> str:
    """What ``fit`` trains on here (its accelerator is ``auto``): the GPU's name, else ``cpu``."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def recorded_hardware(run: dict) -> str:
    """Where a record's run trained; records from before the field were all trained on a CPU."""
    return run.get("hardware", "cpu")


def load_runs() -> list[dict]:
    if not RUNS.exists():
        return []
    return [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()]


def train_key(run: dict) -> tuple:
    return (run["config"], run["dataset"], run["seed"], run["updates"], tuple(run.get("overrides", [])))


def run_key(run: dict) -> tuple:
    return (*train_key(run), tuple(run.get("eval_set", [])))


def cli(args: list[str], log: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with open(log, "a") as handle:
        handle.write(f"\n$ lightning_offrl {' '.join(args)}\n")
        proc = subprocess.run([sys.executable, "-m", "lightning_offrl.cli", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        handle.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"lightning_offrl {' '.join(args)} failed; see {log}\n{proc.stderr[-2000:]}")
    return proc.stdout


def one_run(config: str, dataset: str, seed: int, updates: int, episodes: int, overrides: list[str],
            eval_set: list[str], trained: dict | None = None) -> dict:
    """Trains, then evaluates; ``trained``, a finished run of the same training, lends its checkpoint."""
    # Runs differing only in their overrides get their own folder, and every run its own named
    # version, so that concurrent runs and sweeps never read each other's checkpoints or logs.
    name = f"results/{config}/{dataset}/seed{seed}"
    if overrides:
        name += "/" + hashlib.sha1("\n".join(overrides).encode()).hexdigest()[:8]
    log = ROOT / "runs" / name / "results.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if trained is not None and (ROOT / trained["checkpoint"]).is_file():
        ckpt, train_s = ROOT / trained["checkpoint"], trained["train_seconds"]
        device = recorded_hardware(trained)
    else:
        device = hardware()
        version = f"version_{time.strftime('%Y%m%dT%H%M%S')}_{os.getpid()}_{threading.get_ident()}"
        start = time.time()
        cli(["fit", "--config", f"conf/{config}.yaml", "--data.dataset", dataset,
             "--seed_everything", str(seed), "--data.seed", str(seed),
             "--model.init_args.max_updates", str(updates), "--trainer.logger.init_args.name", name,
             "--trainer.logger.init_args.version", version, *overrides], log)
        train_s = time.time() - start
        ckpt = ROOT / "runs" / name / version / "checkpoints" / "last.ckpt"
    sets = [arg for pair in eval_set for arg in ("--set", pair)]
    out = cli(["evaluate", "--ckpt_path", str(ckpt), "--episodes", str(episodes), "--seed", str(EVAL_SEED),
               *sets], log)
    score = float(re.search(r"normalized score: (-?[\d.]+)", out).group(1))
    ret = float(re.search(r"return: (-?[\d.]+)", out).group(1))
    return {"config": config, "dataset": dataset, "seed": seed, "updates": updates, "episodes": episodes,
            "overrides": overrides, "eval_set": eval_set, "normalized_score": score, "return": ret,
            "train_seconds": round(train_s, 1), "hardware": device, "replica": "replica" in out,
            "checkpoint": str(ckpt.relative_to(ROOT))}


def render(runs: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        settings = [*run.get("overrides", [])]
        if run.get("eval_set"):
            settings.append("evaluated with " + ", ".join(run["eval_set"]))
        device = recorded_hardware(run)
        groups[(run["dataset"], run["config"], run["updates"], tuple(settings), device)].append(run)
    lines = [
        "| dataset | config | overrides | updates | seeds | normalized score (mean ± s.e. over seeds) | per seed | train min/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, config, updates, overrides, device), group in sorted(groups.items()):
        scores = np.array([r["normalized_score"] for r in sorted(group, key=lambda r: r["seed"])])
        if len(scores) > 1:
            summary = f"{scores.mean():.1f} ± {scores.std(ddof=1) / np.sqrt(len(scores)):.1f}"
        else:
            summary = f"{scores[0]:.1f} (one seed)"
        minutes = np.mean([r["train_seconds"] for r in group]) / 60
        where = "" if device == "cpu" else f" ({device})"
        lines.append(
            f"| {dataset}{' (replica)' if group[0]['replica'] else ''} | {config} | {' '.join(overrides) or '-'} | "
            f"{updates:,} | {len(scores)} | {summary} | "
            f"{', '.join(f'{s:.1f}' for s in scores)} | {minutes:.1f}{where} |"
        )
    return "\n".join(lines)


def write_table(runs: list[dict]) -> None:
    text = TABLE.read_text() if TABLE.exists() else "# Results\n\n<!-- results-table -->\n<!-- /results-table -->\n"
    start, end = "<!-- results-table -->", "<!-- /results-table -->"
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    TABLE.write_text(f"{head}{start}\n{render(runs)}\n{end}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=[], help="config names under conf/ (without .yaml)")
    parser.add_argument("--datasets", nargs="*", default=[])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--override", action="append", default=[], help="extra CLI override, e.g. "
                        "'--model.init_args.alpha=5' (repeatable; use = to keep one token)")
    parser.add_argument("--eval-set", action="append", default=[], metavar="NAME=VALUE",
                        help="acting-time argument for `lightning_offrl evaluate --set` (repeatable); a "
                        "finished run with the same training is evaluated again instead of retrained")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    runs = load_runs()
    failed = []
    if not args.table_only:
        done = {run_key(r) for r in runs}
        trained = {train_key(r): r for r in runs}
        RUNS.parent.mkdir(parents=True, exist_ok=True)
        specs = [(config, dataset, seed) for dataset in args.datasets for config in args.configs
                 for seed in args.seeds]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {}
            for config, dataset, seed in specs:
                spec = {"config": config, "dataset": dataset, "seed": seed, "updates": args.updates,
                        "overrides": args.override, "eval_set": args.eval_set}
                if run_key(spec) in done:
                    continue
                futures[pool.submit(one_run, config, dataset, seed, args.updates, args.episodes,
                                    list(args.override), list(args.eval_set),
                                    trained.get(train_key(spec)))] = spec
            # Records are written here, by one thread, as runs finish; a failed run does not stop
            # the others and is reported at the end.
            for future in as_completed(futures):
                try:
                    run = future.result()
                except RuntimeError as err:
                    failed.append(futures[future])
                    print(err, file=sys.stderr, flush=True)
                    continue
                print(json.dumps(run), flush=True)
                with open(RUNS, "a") as handle:
                    handle.write(json.dumps(run) + "\n")
                runs.append(run)
                write_table(runs)
    write_table(runs)
    if failed:
        sys.exit(f"{len(failed)} run(s) failed: " + ", ".join(
            f"{s['config']} {s['dataset']} seed {s['seed']}" for s in failed))


if __name__ == "__main__":
    main()
