"""Keeps ``docs/results/results.csv`` and the table of ``docs/results.md`` (rows of finished sweeps).

``docs/results/results.csv`` holds every run shown in ``docs/results.md``, in the columns of a sweep's
``results.csv`` (:data:`lightning_offrl.sweep.CSV_COLUMNS`); the table between the
``<!-- results-table -->`` markers is rendered from it by the sweep's own renderer, so the page and
a sweep's ``results.md`` show runs the same way.

    # add the finished runs of a sweep (rows already present are named and left as they are)
    python benchmarks/results_table.py --add runs/sweeps/iql-random/results.csv
    # the records of the former benchmarks/results.py (JSON lines), converted once into the CSV
    python benchmarks/results_table.py --import-jsonl docs/results/runs.jsonl
    python benchmarks/results_table.py      # render the table again from the CSV

Rows with an in-training curve (the ``curve`` column) are also plotted, one panel per dataset, into
``docs/results/curves.png`` (mean ± s.e. over seeds per config and overrides).

Nothing is measured here; every value is copied (former records' training seconds become minutes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lightning_offrl.sweep import FINISHED, aggregate_curves, parse_curve, plot_curves, read_csv, render_table, write_csv

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results-table -->", "<!-- /results-table -->"
KEY = ("config", "dataset", "seed", "updates", "overrides", "evaluated_with", "data")  # data: rows of two builds


def record_to_row(record: dict[str, Any]) -> dict[str, Any]:
    """One record of the former script as a results.csv row.

    Args:
        record: ``{"config", "dataset", "seed", "updates", "episodes", "overrides", "eval_set"?,
            "normalized_score", "return", "train_seconds", "hardware"?, "replica", "checkpoint"}``;
            records from before ``hardware`` existed were all trained on a CPU.

    Returns:
        The row; the former script kept no per-episode spread, so ``normalized_score_se`` is empty.
    """
    return {
        "config": record["config"], "dataset": record["dataset"], "seed": record["seed"], "status": FINISHED,
        "normalized_score": record["normalized_score"], "normalized_score_se": None, "return": record["return"],
        "updates": record["updates"], "episodes": record["episodes"], "eval_seed": 100_000,
        "overrides": " ".join(record.get("overrides", [])),
        "evaluated_with": ", ".join(record.get("eval_set", [])),
        "train_minutes": round(record["train_seconds"] / 60, 4), "hardware": record.get("hardware", "cpu"),
        "replica": bool(record["replica"]), "checkpoint": record["checkpoint"], "log": None,
    }


def key(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple("" if row.get(k) is None else str(row[k]) for k in KEY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--add", type=Path, action="append", default=[], help="a sweep's results.csv (repeatable)")
    parser.add_argument("--import-jsonl", type=Path, default=None, help="records of the former results script")
    parser.add_argument("--csv", type=Path, default=ROOT / "docs" / "results" / "results.csv")
    parser.add_argument("--table", type=Path, default=ROOT / "docs" / "results.md")
    parser.add_argument("--curves", type=Path, default=ROOT / "docs" / "results" / "curves.png")
    args = parser.parse_args()

    rows: list[dict[str, Any]] = list(read_csv(args.csv)) if args.csv.is_file() else []
    new: list[dict[str, Any]] = []
    if args.import_jsonl is not None:
        new += [record_to_row(json.loads(line)) for line in args.import_jsonl.read_text().splitlines() if line.strip()]
    for sweep_csv in args.add:
        for row in read_csv(sweep_csv):
            if row["status"] != FINISHED:
                print(f"not added (status {row['status']}): {row['config']} {row['dataset']} seed {row['seed']}")
                continue
            # Paths in a sweep's CSV are relative to its folder; here they are relative to the repository.
            for column in ("checkpoint", "log"):
                if row[column]:
                    row[column] = str(sweep_csv.parent / row[column])
            new.append(row)
    present = {key(row) for row in rows}
    for row in new:
        if key(row) in present:
            print(f"already in {args.csv}, left as it is: {' '.join(key(row))}")
            continue
        rows.append(row)
        present.add(key(row))
    if new:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        write_csv(rows, args.csv)
    text = args.table.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{args.table} has no {START} ... {END} markers to put the table between")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    args.table.write_text(f"{head}{START}\n{render_table(rows)}\n{END}{tail}")
    print(f"{len(rows)} rows in {args.csv}; table rendered in {args.table}")
    curves = aggregate_curves([
        {**row, "seed": int(row["seed"]), "overrides": (row.get("overrides") or "").split(),
         "curve": parse_curve(row.get("curve"))}
        for row in rows if not row.get("evaluated_with")
    ])
    if curves:
        plot_curves(curves, args.curves)
        print(f"curves of {sum(len(m) for m in curves.values())} config(s) on {len(curves)} dataset(s) in {args.curves}")


if __name__ == "__main__":
    main()
