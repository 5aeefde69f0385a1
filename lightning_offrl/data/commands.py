"""``lightning_offrl datasets list | make | info``: the functions behind the command and its parser.

* ``list``: every known dataset, whether a replica can be built for it, and what is on disk;
* ``make NAME [--steps N] [--seed S] [--out FILE]``: builds a replica (into the cache by default);
* ``info NAME_OR_FILE [--seed S]``: size, returns and normalized score of a dataset on disk
  (it never builds one: run ``make`` first).

Errors a user can fix are raised as :class:`~lightning_offrl.errors.OffRLError` for the command
line to print.
"""

from __future__ import annotations

import argparse
import sys
import math
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from lightning_offrl.data.d4rl_hdf5 import data_fingerprint, dataset_summary, read_d4rl_attrs, read_d4rl_hdf5
from lightning_offrl.data.registry import (
    DATASETS,
    DatasetSpec,
    buildable_levels,
    get_dataset_spec,
    list_dataset_names,
    replica_inputs,
)
from lightning_offrl.data.sources import (
    available_sources,
    build_replica,
    match_task_observations,
    replica_path,
    resolve_dataset,
)
from lightning_offrl.errors import ConfigError, DatasetError


# ------------------------------------------------------------------------------------------ list
def datasets_list() -> list[dict[str, Any]]:
    """One row per known dataset.

    Returns:
        Rows with ``name``, ``level``, ``buildable`` (a replica can be built here: the level has a
        recipe and the files it reads, such as a behaviour policy, are shipped), ``unbuildable_why``
        (``None``, ``"no recipe"``, why no replica can ever be built, or the missing file's error), ``never``
        (no replica can ever be built: human demonstrations, unshipped expert policies), ``num_steps`` (D4RL's size) and the
        sources present: ``d4rl`` (file), ``minari`` (id), ``replica`` (cached file), each ``None`` when
        absent.
    """
    levels = set(buildable_levels())
    rows = []
    for name in list_dataset_names():
        spec = get_dataset_spec(name)
        why = spec.no_replica_reason or (None if spec.level in levels else "no recipe")
        if why is None:
            try:
                replica_inputs(spec)
            except DatasetError as error:
                why = str(error)
        rows.append({"name": name, "level": spec.level, "buildable": why is None, "unbuildable_why": why,
                     "never": spec.no_replica_reason is not None,
                     "num_steps": spec.num_steps, **available_sources(name)})
    return rows


def _recipe_label(row: dict[str, Any]) -> str:
    """The list's replica column: ``yes``, ``-`` (no recipe) or what is missing for the recipe."""
    if row["buildable"]:
        return "yes"
    if row.get("never"):
        return "never (see docs/data.md)"
    return "-" if row["unbuildable_why"] == "no recipe" else "policy not shipped"


def print_datasets_list(rows: list[dict[str, Any]], console: Console | None = None) -> None:
    """Prints :func:`datasets_list` as a table."""
    table = Table(title="D4RL datasets")
    table.add_column("name", no_wrap=True)
    table.add_column("level", no_wrap=True)
    table.add_column("steps", justify="right", no_wrap=True)
    table.add_column("replica recipe")
    for column in ("D4RL file", "Minari", "cached replica"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["name"], row["level"], f"{row['num_steps']:,}", _recipe_label(row),
            _present(row["d4rl"], file_name=True), _present(row["minari"]),
            _present(_replica_label(row["replica"])),
        )
    (console or Console()).print(table)


def _replica_label(path: str | None) -> str | None:
    """``.../hopper-random-v2-seed0-1000000.hdf5`` -> ``seed 0, 1,000,000``."""
    if path is None:
        return None
    seed_part, steps = Path(path).stem.rsplit("-", 2)[-2:]
    return f"{seed_part.replace('seed', 'seed ')}, {int(steps):,}"


def _present(value: str | None, file_name: bool = False) -> str:
    if not value:
        return "-"
    return "[green]" + (Path(value).name if file_name else value) + "[/green]"


# ------------------------------------------------------------------------------------------ make
def datasets_make(name: str, steps: int | None = None, seed: int = 0, out: str | Path | None = None,
                  progress: bool = True) -> Path:
    """Builds the replica of ``name``.

    Args:
        name: D4RL name.
        steps: number of rows; ``None`` means D4RL's size.
        seed: replica seed.
        out: destination file; ``None`` writes to the cache (where training looks), and an already
            cached replica is reused.
        progress: show a progress bar.

    Returns:
        The replica's file.
    """
    spec = get_dataset_spec(name)
    num_steps = spec.num_steps if steps is None else int(steps)
    if out is None:
        return resolve_dataset(name, source="replica", seed=seed, num_steps=num_steps, progress=progress).path
    return build_replica(spec, seed, num_steps, Path(out), progress)


# ------------------------------------------------------------------------------------------ info
def datasets_info(name_or_path: str | Path, seed: int = 0) -> dict[str, Any]:
    """Describes a dataset on disk: a D4RL-format file, or a name whose data is present.

    For a name, the source is chosen as in training (D4RL file, Minari, then the cached replica of
    ``seed``), but nothing is built.

    Returns:
        ``name``, ``source``, ``path``, ``is_replica``, ``transitions``, ``episodes``,
        ``return_mean``/``return_std``/``return_min``/``return_max``, ``normalized_score`` (D4RL's
        score of the mean episode return; ``None`` when the task is unknown), ``obs_dim``,
        ``act_dim``, the file attributes under ``attrs``, and ``d4rl``: D4RL's published figures for
        the same name (``transitions``, ``episodes`` where published, the reference returns
        ``ref_min_score``/``ref_max_score`` behind the normalized score), ``None`` for a file of no
        known dataset.

    Raises:
        DatasetError: nothing is present for the name (run ``datasets make`` first).
    """
    candidate = Path(name_or_path)
    if candidate.suffix in (".hdf5", ".h5") or candidate.is_file():
        arrays, attrs = read_d4rl_hdf5(candidate), read_d4rl_attrs(candidate)
        spec = _spec_of_file(candidate, attrs)
        if spec is not None:
            arrays = match_task_observations(spec, arrays)
        is_replica = bool(attrs.get("replica", False))
        name = spec.name if spec else candidate.stem
        source, path = ("replica" if is_replica else "d4rl"), candidate
    else:
        spec = get_dataset_spec(str(name_or_path))
        present = available_sources(spec.name)
        cached = _cached_replica(spec, seed)
        if present["d4rl"] is None and present["minari"] is None and cached is None:
            raise DatasetError(
                f"{spec.name}: no data on this machine (no D4RL file, no local Minari dataset, no cached "
                f"replica with seed {seed}); build one with "
                f"`lightning_offrl datasets make {spec.name} --seed {seed}`."
            )
        if present["d4rl"] is None and present["minari"] is None:
            resolved = resolve_dataset(spec.name, path=None, source="replica", seed=seed,
                                       num_steps=_steps_of(cached), progress=False)
        else:
            resolved = resolve_dataset(spec.name, progress=False)
        arrays, attrs = resolved.arrays, resolved.attrs
        name, source, path, is_replica = spec.name, resolved.source, resolved.path, resolved.is_replica
    summary = dataset_summary(arrays)
    score = None
    if spec is not None and math.isfinite(summary["return_mean"]):
        score = float(spec.task.normalized_score(summary["return_mean"]))
    d4rl = None
    if spec is not None:
        d4rl = {"transitions": spec.num_steps, "episodes": spec.d4rl_episodes,
                "ref_min_score": spec.task.ref_min_score, "ref_max_score": spec.task.ref_max_score}
    return {"name": name, "source": source, "path": str(path) if path else None, "is_replica": is_replica,
            **summary, "fingerprint": data_fingerprint(arrays),
            "normalized_score": score, "attrs": attrs, "d4rl": d4rl}


def _spec_of_file(path: Path, attrs: dict[str, Any]) -> DatasetSpec | None:
    """The dataset a file belongs to: its ``dataset`` attribute, else its file name."""
    if isinstance(attrs.get("dataset"), str) and attrs["dataset"] in DATASETS:
        return DATASETS[attrs["dataset"]]
    for spec in DATASETS.values():
        if path.name in (spec.d4rl_filename, f"{spec.name}.hdf5"):
            return spec
    return None


def _cached_replica(spec: DatasetSpec, seed: int) -> Path | None:
    default = replica_path(spec.name, seed, spec.num_steps)
    if default.is_file():
        return default
    others = sorted(default.parent.glob(f"{spec.name}-seed{seed}-*.hdf5")) if default.parent.is_dir() else []
    return others[0] if others else None


def _steps_of(replica_file: Path | None) -> int | None:
    return None if replica_file is None else int(replica_file.stem.rsplit("-", 1)[-1])


def print_datasets_info(info: dict[str, Any], console: Console | None = None) -> None:
    """Prints :func:`datasets_info` as a table: this data, and D4RL's published figures beside it."""
    console = console or Console()
    d4rl = info.get("d4rl")
    table = Table(title=f"{info['name']}", show_header=d4rl is not None)
    table.add_column("field", style="bold")
    table.add_column("this data")
    if d4rl is not None:
        table.add_column(f"D4RL's {info['name']} (published)")
    source = info["source"]
    if info["is_replica"]:
        source += " (made by lightning_offrl: scores are not D4RL's)"
    unpublished = "not published"
    rows = [
        ("source", source, "-"), ("path", info["path"] or "-", "-"),
        ("transitions", f"{info['transitions']:,}", f"{d4rl['transitions']:,}" if d4rl else "-"),
        ("episodes", f"{info['episodes']:,}",
         f"{d4rl['episodes']:,}" if d4rl and d4rl["episodes"] is not None else unpublished),
        ("return mean ± std", f"{info['return_mean']:.2f} ± {info['return_std']:.2f}", unpublished),
        ("return min / max", f"{info['return_min']:.2f} / {info['return_max']:.2f}", unpublished),
        ("normalized score", "-" if info["normalized_score"] is None else f"{info['normalized_score']:.2f}",
         f"0 at return {d4rl['ref_min_score']:g}, 100 at {d4rl['ref_max_score']:g}" if d4rl else "-"),
        ("terminals / timeouts", f"{info['terminals']:,} / {info['timeouts']:,}", "-"),
        ("obs / act dims", f"{info['obs_dim']} / {info['act_dim']}", "-"),
        # the `data` column of result rows trained on these arrays
        ("fingerprint", info["fingerprint"], "-"),
    ]
    for key in ("recipe", "seed", "gym_id", "gymnasium_version", "mujoco_version", "created",
                "build_seconds"):
        if key in info["attrs"]:
            rows.append((key, str(info["attrs"][key]), "-"))
    for field, value, published in rows:
        table.add_row(field, value, *([published] if d4rl is not None else []))
    console.print(table)
    if d4rl is not None:
        console.print(
            "D4RL's figures: sizes from D4RL's recipe, episode counts of its files as listed by the "
            "TensorFlow Datasets catalog (d4rl_mujoco_*; Adroit: DAPG's 25 human demonstrations and "
            "5,000 expert episodes); no published mean return of D4RL's files was found."
        )


# --------------------------------------------------------------------------------------- parser
def add_datasets_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds ``datasets {list,make,info}`` to an argparse subparsers object."""
    parser = subparsers.add_parser("datasets", help="list, build and inspect D4RL-named datasets",
                                   description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="datasets_command", required=True, metavar="{list,make,info}")
    commands.add_parser("list", help="known datasets, which replicas can be built, what is on disk")
    make = commands.add_parser("make", help="build a replica (into the cache unless --out is given)")
    make.add_argument("name", help="D4RL name, e.g. hopper-random-v2")
    make.add_argument("--steps", type=int, default=None, help="number of transitions (default: D4RL's size)")
    make.add_argument("--seed", type=int, default=0, help="replica seed (default 0)")
    make.add_argument("--out", type=Path, default=None, help="write here instead of the cache")
    make.add_argument("--no-progress", action="store_true", help="no progress bar")
    info = commands.add_parser("info", help="size, returns and normalized score of a dataset on disk")
    info.add_argument("name_or_path", help="D4RL name or a D4RL-format .hdf5 file")
    info.add_argument("--seed", type=int, default=0, help="which cached replica to describe (default 0)")
    return parser


def run_datasets_command(args: argparse.Namespace) -> int:
    """Runs a parsed ``datasets`` command; returns the exit status (OffRLErrors propagate)."""
    # Tables stay readable when the output is a pipe or a log file (rich would assume 80 columns).
    console = Console(width=None if sys.stdout.isatty() else 160)
    if args.datasets_command == "list":
        print_datasets_list(datasets_list(), console)
    elif args.datasets_command == "make":
        path = datasets_make(args.name, steps=args.steps, seed=args.seed, out=args.out,
                             progress=not args.no_progress)
        print_datasets_info(datasets_info(path), console)
    elif args.datasets_command == "info":
        print_datasets_info(datasets_info(args.name_or_path, seed=args.seed), console)
    else:  # argparse's required=True makes this unreachable from the command line
        raise ConfigError(f"unknown datasets command {args.datasets_command!r}: use list, make or info")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``lightning_offrl datasets ...``: parses ``argv`` (the words after ``datasets``) and runs it."""
    parser = argparse.ArgumentParser(prog="lightning_offrl")
    add_datasets_parser(parser.add_subparsers(dest="command", required=True))
    return run_datasets_command(parser.parse_args(["datasets", *(argv or [])]))
