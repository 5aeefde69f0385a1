"""``lightning_offrl sweep``: a grid of fits (config x dataset x seed) on Ray, then tables and curves.

Every combination is one ``lightning_offrl fit`` (the same code path, in its own Ray worker process)
followed by an evaluation of its last checkpoint on fixed episodes (reset seeds ``eval_seed + i``,
the same for every run, so runs compare). Everything is written under the output folder::

    DIR/runs/<config>/<dataset>/seed<k>/   TensorBoard events, checkpoints/, config.yaml, train.log,
                                           result.json (status, final score, evaluation curve, budget)
    DIR/prepare/<dataset>-<hash>.log       the data preparation (a replica build) shared by its runs
    DIR/results.csv, DIR/results.md        one row per run; mean ± standard error per config x dataset
    DIR/curves.png, DIR/curves.json        normalized score against updates, one panel per dataset

A run is finished when its ``result.json`` says so; a rerun skips finished runs and resumes the others
from their last checkpoint (or starts them again when they have none). ``lightning_offrl sweep-report
DIR`` rebuilds the tables and curves from the run folders alone.

Nothing here imports Ray, matplotlib, torch or Lightning at module level: the worker processes import
this module, and ``lightning_offrl --help`` must not pay for them.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import shlex
import signal
import sys
import textwrap
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from lightning_offrl.errors import ConfigError, OffRLError
from lightning_offrl.files import write_atomically

RESULT_FILE = "result.json"
LOG_FILE = "train.log"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
FINISHED, RUNNING, INTERRUPTED, FAILED = "finished", "running", "interrupted", "failed"
EVALUATE = "evaluate"  # a finished run that still lacks one of the --eval-also evaluations
EVAL_SEED = 100_000  # final-evaluation reset seeds, disjoint from the in-training ones (0, 1, ...)
SCORE_TAG = "eval/normalized_score"  # what D4RLEvaluation logs at every evaluation, step = update

# Keys the sweep sets itself for every run: a --set of one of them would be overwritten or would
# break the run folder layout, so it is refused with the option to use instead.
MANAGED_KEYS = {
    "config": "--configs",
    "data.dataset": "--datasets",
    "data.seed": "--seeds",
    "seed_everything": "--seeds",
    "model.init_args.max_updates": "--updates",
    "ckpt_path": "(runs resume from their own last checkpoint)",
    "trainer.logger": "(each run logs to TensorBoard in its own folder)",
    "trainer.enable_progress_bar": "(runs write their output to train.log)",
}
# Passed to the workers of a cluster joined with --address (a local Ray's workers inherit them).
DATA_ENV_VARS = ("LIGHTNING_OFFRL_CACHE", "D4RL_DATASET_DIR", "MINARI_DATASETS_PATH", "HF_HUB_OFFLINE",
                 "MUJOCO_GL")
CSV_COLUMNS = ("config", "dataset", "seed", "status", "normalized_score", "normalized_score_se", "return",
               "updates", "episodes", "eval_seed", "overrides", "evaluated_with", "train_minutes",
               "hardware", "replica", "checkpoint", "log", "curve", "data")

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class RunSpec:
    """One fit of the grid and how it is evaluated.

    Args:
        config: the config's name (file stem), used in folder names and tables.
        config_path: absolute path of the config file.
        dataset: D4RL-style dataset name.
        seed: ``seed_everything`` and ``data.seed`` (network initialisation and batch sampling).
        updates: ``model.init_args.max_updates``, or None for the config's own budget.
        overrides: ``KEY=VALUE`` command-line overrides, in the order given.
        episodes: final-evaluation episodes.
        eval_seed: final-evaluation episode ``i`` is reset with ``eval_seed + i``.
        output: absolute path of the sweep's output folder.
        eval_variants: acting-time settings (``"NAME=VALUE NAME=VALUE"``) the last checkpoint is also
            evaluated with, on the same episodes; not part of :meth:`settings`, so a variant can be added
            to a finished run without training it again.
    """

    config: str
    config_path: str
    dataset: str
    seed: int
    updates: int | None
    overrides: tuple[str, ...]
    episodes: int
    eval_seed: int
    output: str
    eval_variants: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.config} {self.dataset} seed {self.seed}"

    @property
    def run_dir(self) -> Path:
        return Path(self.output) / "runs" / self.config / self.dataset / f"seed{self.seed}"

    def settings(self) -> dict[str, Any]:
        """What makes a finished run this run: a rerun with other settings must not reuse it."""
        return {"config_path": self.config_path, "updates_requested": self.updates,
                "overrides": list(self.overrides), "episodes": self.episodes, "eval_seed": self.eval_seed}

    def fit_args(self, ckpt_path: Path | None = None) -> list[str]:
        """The ``lightning_offrl fit`` arguments of this run (without the ``fit``)."""
        args = ["--config", self.config_path, "--data.dataset", self.dataset,
                "--seed_everything", str(self.seed), "--data.seed", str(self.seed)]
        if self.updates is not None:
            args += ["--model.init_args.max_updates", str(self.updates)]
        # Empty logger name and version: events, config.yaml and checkpoints/ land in the run folder
        # itself, and a resumed run appends to the same folder instead of opening version_<k+1>.
        args += ["--trainer.logger.init_args.save_dir", str(self.run_dir),
                 "--trainer.logger.init_args.name=", "--trainer.logger.init_args.version=",
                 "--trainer.enable_progress_bar", "false"]
        args += override_args(self.overrides)
        if ckpt_path is not None:
            args += ["--ckpt_path", str(ckpt_path)]
        return args


def parse_eval_variant(text: str) -> str:
    """``"num_action_candidates=1024,candidate_selection=softmax"`` -> ``"num_action_candidates=1024
    candidate_selection=softmax"`` (pairs separated by commas or spaces), each pair checked.

    Raises:
        ConfigError: an empty setting or a pair that is not ``NAME=VALUE``.
    """
    from lightning_offrl.evaluate import parse_overrides

    pairs = [pair for pair in text.replace(",", " ").split() if pair]
    if not pairs:
        raise ConfigError("--eval-also needs NAME=VALUE pairs, e.g. --eval-also num_action_candidates=1024,"
                          "candidate_selection=softmax")
    try:
        parse_overrides(pairs)
    except OffRLError as err:
        raise ConfigError(f"--eval-also {text!r}: {str(err).replace('--set ', '')}") from err
    return " ".join(pairs)


def variant_overrides(variant: str) -> dict[str, Any]:
    """The constructor arguments of a canonical ``--eval-also`` setting."""
    from lightning_offrl.evaluate import parse_overrides

    return parse_overrides(variant.split())


def missing_variants(spec: RunSpec, record: dict[str, Any] | None) -> list[str]:
    """The ``--eval-also`` settings a run's record has no evaluation for yet."""
    done = (record or {}).get("variants") or {}
    return [variant for variant in spec.eval_variants if "normalized_score" not in (done.get(variant) or {})]


def override_args(overrides: Sequence[str]) -> list[str]:
    """``["model.init_args.alpha=5"]`` -> ``["--model.init_args.alpha", "5"]`` (the CLI's own syntax)."""
    out: list[str] = []
    for pair in overrides:
        key, _, value = pair.partition("=")
        out += [f"--{key}", value]
    return out


def check_overrides(overrides: Sequence[str]) -> list[str]:
    """Normalises ``--set`` values to ``KEY=VALUE`` and refuses malformed or sweep-managed keys.

    Raises:
        ConfigError: a value without ``=``, or a key the sweep sets itself (names the option to use).
    """
    out = []
    for pair in overrides:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set model.init_args.alpha=5")
        for managed, instead in MANAGED_KEYS.items():
            if key == managed or key.startswith(managed + "."):
                raise ConfigError(f"--set {pair!r}: the sweep sets {managed} itself; use {instead}")
        out.append(f"{key}={value}")
    return out


def resolve_config(name: str) -> Path:
    """A config given by path, or by name: ``iql_hopper`` is ``conf/iql_hopper.yaml``.

    The name is looked up in ``./conf`` and then in the ``conf/`` folder of the source tree the package
    was installed from.

    Raises:
        ConfigError: no such file; the message lists the configs that exist.
    """
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.parent != Path("."):
        if path.is_file():
            return path.resolve()
        raise ConfigError(f"config file {name} does not exist")
    folders = [Path.cwd() / "conf", Path(__file__).resolve().parents[1] / "conf"]
    for folder in folders:
        if (folder / f"{name}.yaml").is_file():
            return (folder / f"{name}.yaml").resolve()
    known = sorted({p.stem for folder in folders if folder.is_dir() for p in folder.glob("*.yaml")})
    raise ConfigError(f"unknown config {name!r}: pass a path or one of "
                      f"{', '.join(known) or '(no conf/ folder found)'}")


def read_result(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise OffRLError(f"{path} is not valid JSON ({err}); move it away to run {run_dir} again") from err


def write_result(run_dir: Path, record: dict[str, Any]) -> None:
    """Writes ``result.json`` atomically: a stopped sweep never leaves half a file behind."""
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {**record, "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    _atomic_write(run_dir / RESULT_FILE, json.dumps(record, indent=1) + "\n")


def run_state(spec: RunSpec) -> tuple[str, dict[str, Any] | None]:
    """``finished``, ``evaluate`` (finished, some ``--eval-also`` evaluation missing), ``resume``
    (unfinished, with a last checkpoint) or ``new``, and the run's record.

    Raises:
        ConfigError: the folder holds a run made with other settings.
    """
    record = read_result(spec.run_dir)
    if record is None:
        return "new", None
    recorded = {key: record.get(key) for key in spec.settings()}
    if recorded != spec.settings():
        differ = [f"{key} {recorded[key]!r} (asked: {value!r})"
                  for key, value in spec.settings().items() if recorded[key] != value]
        raise ConfigError(
            f"{spec.run_dir} holds a run made with other settings: {'; '.join(differ)}. Use another "
            "--output, or delete that folder to run it again with these settings"
        )
    if record.get("status") == FINISHED:
        return (EVALUATE if missing_variants(spec, record) else FINISHED), record
    return ("resume" if (spec.run_dir / LAST_CHECKPOINT).is_file() else "new"), record


# ----------------------------------------------------------------------------- worker side
@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Sends this process's stdout and stderr (Python's and the C libraries') to ``path``, appending."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a", buffering=1) as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        old_streams = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = handle
        try:
            yield
        finally:
            handle.flush()
            sys.stdout, sys.stderr = old_streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def prepare_data(data_hparams: dict[str, Any], log_path: str, threads: int) -> str | None:
    """Resolves (builds and caches, for a missing replica) one dataset before its runs start.

    Runs in a Ray worker, once per distinct data configuration, so that concurrent runs on the same
    replica do not all build it.

    Returns:
        None, or the error that will fail the runs on this data.
    """
    with output_to(Path(log_path)):
        try:
            import torch

            from lightning_offrl.data.datamodule import D4RLDataModule

            torch.set_num_threads(threads)
            D4RLDataModule(**data_hparams).prepare_data()
            return None
        except Exception as err:  # noqa: BLE001 - reported as the failure of every run on this data
            import traceback

            traceback.print_exc()
            return f"preparing {data_hparams.get('dataset')} failed: {type(err).__name__}: {err}"


def execute_run(
    spec: RunSpec, threads: int, data_error: str | None, data_log: str, command: str
) -> dict[str, Any]:
    """Fits one run (resuming from its last checkpoint if it has one), evaluates it, writes result.json.

    Runs in its own Ray worker process (one run per process: torch threads, seeds and the
    interpreter's state do not leak between runs). Failures are recorded, not raised: the sweep goes on.

    Args:
        spec: the run.
        threads: torch intra-op threads (the run's CPUs).
        data_error: the data preparation's error, if it failed (the run is then failed at once).
        data_log: the data preparation's log file, relative to the sweep folder.
        command: the sweep's command line, kept in the record.

    Returns:
        The run's record, as written to ``result.json``.
    """
    run_dir = spec.run_dir
    rel = run_dir.relative_to(spec.output)
    previous = read_result(run_dir) or {}
    ckpt = run_dir / LAST_CHECKPOINT
    resume = ckpt.is_file() and previous.get("status") != FINISHED
    record: dict[str, Any] = {
        "status": RUNNING, "config": spec.config, "dataset": spec.dataset, "seed": spec.seed,
        **spec.settings(), "command": command,
        # Paths relative to the sweep folder, so that the folder can be moved or copied whole.
        "log": str(rel / LOG_FILE), "checkpoint": str(rel / LAST_CHECKPOINT),
        "attempts": int(previous.get("attempts", 0)) + 1,
        # Fit time of the earlier attempts this one continues (those that ended, or were stopped
        # gracefully; a worker killed outright cannot add its own); a run started again from
        # nothing starts from 0.
        "train_seconds": float(previous.get("train_seconds", 0.0)) if resume else 0.0,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if data_error is not None:
        write_result(run_dir, {**record, "status": FAILED, "error": data_error, "log": data_log})
        return read_result(run_dir) or record
    write_result(run_dir, record)
    start = time.perf_counter()
    fit_seconds: float | None = None  # set when the fit returns; evaluation time is not training time
    status, error = FAILED, None
    with output_to(run_dir / LOG_FILE):
        print(f"\n=== {datetime.now().isoformat(timespec='seconds')} attempt {record['attempts']}: "
              f"{'resuming from ' + str(ckpt) if resume else 'starting'}", flush=True)
        try:
            import torch

            from lightning_offrl.cli import main as cli_main

            torch.set_num_threads(threads)
            record["hardware"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
            code = cli_main(["fit", *spec.fit_args(ckpt if resume else None)])
            fit_seconds = time.perf_counter() - start
            if code != 0:
                error = "the fit stopped with a configuration or data error (the last lines of the log)"
            elif not ckpt.is_file():
                error = f"the fit ended without writing {LAST_CHECKPOINT}"
            else:
                record.update(final_evaluation(spec, ckpt))
                record["variants"] = {variant: final_evaluation(spec, ckpt, variant_overrides(variant))
                                      for variant in spec.eval_variants}
                record["curve"] = evaluation_curve(run_dir)
                status = FINISHED
        except (KeyboardInterrupt, SystemExit) as err:
            # ray.cancel raises KeyboardInterrupt here; Lightning turns it into SystemExit(1) after
            # its own graceful shutdown. The last checkpoint stays for the next run of the sweep.
            status, error = INTERRUPTED, f"stopped ({type(err).__name__})"
        except Exception as err:  # noqa: BLE001 - a failed run is reported, the others go on
            import traceback

            traceback.print_exc()
            error = f"{type(err).__name__}: {err}"
    record["train_seconds"] += fit_seconds if fit_seconds is not None else time.perf_counter() - start
    if status != FINISHED and error and "(the last lines of the log)" in error:
        error = last_error_line(run_dir / LOG_FILE) or error
    record.update(status=status, error=error, train_minutes=round(record["train_seconds"] / 60, 2))
    write_result(run_dir, record)
    return record


def execute_variants(spec: RunSpec, threads: int) -> dict[str, Any]:
    """Evaluates a finished run's last checkpoint with the ``--eval-also`` settings it lacks.

    A setting the method rejects is recorded with its error (and left out of the tables); the run
    stays finished.
    """
    record = read_result(spec.run_dir) or {}
    variants = dict(record.get("variants") or {})
    with output_to(spec.run_dir / LOG_FILE):
        import torch

        torch.set_num_threads(threads)
        for variant in missing_variants(spec, record):
            print(f"\n=== {datetime.now().isoformat(timespec='seconds')} evaluating with {variant}", flush=True)
            try:
                variants[variant] = final_evaluation(spec, spec.run_dir / LAST_CHECKPOINT, variant_overrides(variant))
            except Exception as err:  # noqa: BLE001 - reported in the record, the sweep goes on
                variants[variant] = {"error": one_line(f"{type(err).__name__}: {err}")}
                print(f"evaluation with {variant} failed: {err}", flush=True)
    record["variants"] = variants
    write_result(spec.run_dir, record)
    return read_result(spec.run_dir) or record


def last_error_line(log_path: Path) -> str | None:
    """The last ``error:`` line of a run's log (what ``lightning_offrl fit`` printed before stopping)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if "error:" in line.lower():
            return line.strip()
    return None


def final_evaluation(spec: RunSpec, ckpt: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return and normalized score of the last checkpoint on the fixed evaluation episodes.

    The same routine as ``lightning_offrl evaluate --ckpt_path CKPT --episodes N --seed EVAL_SEED``
    (``overrides``: its ``--set`` acting-time settings).
    """
    import numpy as np

    from lightning_offrl.envs.evaluation import evaluate_policy
    from lightning_offrl.envs.tasks import get_task
    from lightning_offrl.evaluate import load_module

    module, info = load_module(ckpt, overrides=overrides)
    result = evaluate_policy(module.act, spec.dataset, spec.episodes, seed=spec.eval_seed)
    returns = np.asarray(result.returns, dtype=np.float64)
    scores = get_task(spec.dataset).normalized_score(returns)

    settings = f" with {' '.join(f'{k}={v}' for k, v in overrides.items())}" if overrides else ""
    print(f"final evaluation{settings}: {len(returns)} episodes from seed {spec.eval_seed}: "
          f"return {returns.mean():.2f}, normalized score {scores.mean():.2f}", flush=True)
    return {"updates": info["num_updates"], "replica": info["is_replica"], "data": info.get("data_fingerprint") or "",
            "normalized_score": round(float(scores.mean()), 3),
            "normalized_score_se": round(standard_error(scores.tolist()), 3),
            "return": round(float(returns.mean()), 3),
            "return_se": round(standard_error(returns.tolist()), 3)}


def standard_error(values: Sequence[float]) -> float:
    """``std(ddof=1) / sqrt(n)`` of the values; 0 for a single value."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def evaluation_curve(run_dir: Path) -> list[list[float]]:
    """The in-training evaluations ``[[update, normalized score], ...]`` from the run's TensorBoard events.

    A resumed run writes a new event file into the same folder and evaluates again from its
    checkpoint's update on; where two files hold the same update, the later file's value is kept.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points: dict[int, float] = {}
    for events_file in sorted(run_dir.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        events = EventAccumulator(str(events_file), size_guidance={"scalars": 0})
        events.Reload()
        if SCORE_TAG in events.Tags().get("scalars", []):
            for event in events.Scalars(SCORE_TAG):
                points[int(event.step)] = float(event.value)
    return [[update, round(score, 3)] for update, score in sorted(points.items())]


# ----------------------------------------------------------------------------- driver side
@dataclass
class SweepPlan:
    """The runs of a sweep and the data they need prepared."""

    runs: list[RunSpec]
    data: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> data hparams
    data_key: dict[RunSpec, str] = field(default_factory=dict)


def plan_sweep(args: argparse.Namespace) -> SweepPlan:
    """Expands the grid and checks every combination with the CLI's own parser before anything runs.

    Raises:
        ConfigError: a bad option, config, dataset or override (one line naming it).
    """
    if not args.configs or not args.datasets or not args.seeds:
        raise ConfigError("a sweep needs --configs, --datasets and --seeds (one value at least each)")
    if args.updates is not None and args.updates < 1:
        raise ConfigError(f"--updates must be at least 1, got {args.updates}")
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {args.episodes}")
    if args.cpus_per_run <= 0 or args.gpus_per_run < 0:
        raise ConfigError("--cpus-per-run must be positive and --gpus-per-run at least 0")
    overrides = tuple(check_overrides(args.overrides))
    variants = tuple(dict.fromkeys(parse_eval_variant(text) for text in getattr(args, "eval_also", [])))
    configs: dict[str, Path] = {}
    for name in args.configs:
        path = resolve_config(name)
        if path.stem in configs and configs[path.stem] != path:
            raise ConfigError(f"two configs named {path.stem}: {configs[path.stem]} and {path}; rename one")
        configs[path.stem] = path
    output = str(Path(args.output).resolve())
    runs = [RunSpec(config, str(path), dataset, seed, args.updates, overrides, args.episodes, args.eval_seed,
                    output, variants)
            for config, path in configs.items() for dataset in dict.fromkeys(args.datasets)
            for seed in dict.fromkeys(args.seeds)]
    plan = SweepPlan(runs)
    from lightning_offrl.data.registry import get_dataset_spec

    for dataset in dict.fromkeys(args.datasets):
        get_dataset_spec(dataset)  # an unknown name fails here, with the closest known names
    checked: dict[tuple[str, str], str] = {}
    for run in runs:
        if (run.config, run.dataset) not in checked:
            data, model_args = validate_fit_args(run)
            for variant in variants:
                unknown = sorted(set(variant_overrides(variant)) - model_args)
                if unknown:
                    raise ConfigError(f"--eval-also {variant!r}: {run.config} has no argument "
                                      f"{', '.join(unknown)}; its arguments are: {', '.join(sorted(model_args))}")
            key = hashlib.sha1(json.dumps({k: v for k, v in data.items() if k != "seed"}, sort_keys=True,
                                          default=str).encode()).hexdigest()[:8]
            plan.data[key] = data
            checked[(run.config, run.dataset)] = key
        plan.data_key[run] = checked[(run.config, run.dataset)]
    return plan


def validate_fit_args(run: RunSpec) -> tuple[dict[str, Any], set[str]]:
    """Parses and instantiates a run's fit arguments as ``lightning_offrl fit`` would, without training.

    Returns:
        The DataModule's init arguments (to prepare the data once per distinct data configuration), and
        the names of the model's arguments (what ``--eval-also`` may set).

    Raises:
        ConfigError: what the CLI's parser or a class's constructor rejected, on one line.
    """
    from lightning_offrl.algos.base import OfflineRLModule
    from lightning_offrl.lightning_cli import OffRLCLI, trainer_defaults
    from lightning_offrl.data.datamodule import D4RLDataModule

    quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            cli = OffRLCLI(
                OfflineRLModule, D4RLDataModule, subclass_mode_model=True,
                parser_kwargs={"parser_mode": "omegaconf", "exit_on_error": False},
                trainer_defaults=trainer_defaults(), run=False, args=run.fit_args(),
            )
    except OffRLError as err:
        raise ConfigError(f"{run.config} on {run.dataset}: {err}") from err
    except (argparse.ArgumentError, ValueError, TypeError) as err:
        raise ConfigError(f"{run.config} on {run.dataset}: {one_line(str(err))}") from err
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    # jsonargparse adds private entries (``_instantiator``) that are not constructor arguments
    model_args = {k for k in cli.model.hparams if not k.startswith("_")}
    return {k: v for k, v in cli.datamodule.hparams.items() if not k.startswith("_")}, model_args


def one_line(message: str) -> str:
    """jsonargparse's multi-line error as one line, without the lines about the ``None`` alternative."""
    skip = ("Subtypes:", "Errors:", "Given value type:", "Given value:", "- Expected a <class 'NoneType'>",
            "Does not validate against any of the Union subtypes")
    parts = [line.strip().lstrip("- ") for line in message.splitlines()
             if line.strip() and not line.strip().startswith(skip)]
    return " ".join(parts)


def describe(spec: RunSpec, state: str, record: dict[str, Any] | None) -> str:
    """One line about a run's state for --dry-run."""
    rel = spec.run_dir.relative_to(spec.output)
    if state == FINISHED and record is not None:
        return f"finished  {spec.name}: score {record.get('normalized_score')} ({rel})"
    if state == "resume":
        return f"resume    {spec.name} from {rel / LAST_CHECKPOINT}"
    if state == EVALUATE:
        return f"evaluate  {spec.name} with {'; '.join(missing_variants(spec, record))} ({rel})"
    return f"{'restart' if record else 'new':<9} {spec.name} -> {rel}"


class SweepStopped(Exception):
    """SIGTERM (or SIGINT) reached the driver."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def run_sweep(plan: SweepPlan, args: argparse.Namespace, command: str) -> int:
    """Runs the unfinished runs of ``plan`` on Ray, then writes the report.

    Returns:
        0 if every run is finished, 1 if one failed, ``128 + signal`` if the sweep was stopped.
    """
    states = [(spec, *run_state(spec)) for spec in plan.runs]  # a folder of other settings fails first
    todo: list[RunSpec] = []
    for spec, state, record in states:
        rel = spec.run_dir.relative_to(spec.output)
        if state == FINISHED:
            assert record is not None
            print(f"skip {spec.name}: finished, normalized score {record.get('normalized_score')} ({rel})",
                  flush=True)
        else:
            todo.append(spec)
    failed = 0
    stopped: int | None = None
    if todo:
        failed, stopped = _run_on_ray(plan, todo, args, command)
    paths = write_report(Path(args.output))
    finished = sum(1 for spec in plan.runs if (read_result(spec.run_dir) or {}).get("status") == FINISHED)
    print(f"{finished} of {len(plan.runs)} runs finished, {failed} failed"
          f"{', sweep stopped: rerun the same command to go on' if stopped else ''}; "
          f"report: {', '.join(str(p) for p in paths)}", flush=True)
    if stopped:
        return 128 + stopped
    return 0 if finished == len(plan.runs) else 1


def _run_on_ray(
    plan: SweepPlan, todo: list[RunSpec], args: argparse.Namespace, command: str
) -> tuple[int, int | None]:
    """Submits the runs (after their data) to Ray and reports each as it ends.

    Returns:
        The number of failed runs, and the signal that stopped the sweep (None if it ran to the end).
    """
    import ray

    started_here = False
    if not ray.is_initialized():
        if args.address:
            env = {key: os.environ[key] for key in DATA_ENV_VARS if key in os.environ}
            ray.init(address=args.address, runtime_env={"env_vars": env} if env else None, **RAY_INIT)
        else:
            start_local_ray(args.num_cpus or os.cpu_count() or 1)
        started_here = True
    threads = max(1, int(args.cpus_per_run))
    resources = {"num_cpus": args.cpus_per_run, "num_gpus": args.gpus_per_run}
    # One run per worker process (max_calls=1): no state is carried from one fit to the next.
    run_task = ray.remote(max_calls=1)(execute_run).options(**resources)
    variant_task = ray.remote(max_calls=1)(execute_variants).options(**resources)
    prepare_task = ray.remote(max_calls=1)(prepare_data).options(num_cpus=args.cpus_per_run)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    # The handler only notes the signal: raising from it would surface inside Ray's C calls as a
    # SystemError instead of the SweepStopped below; the loop checks the note between Ray calls.
    received: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        received.append(signum)

    def check_stop() -> None:
        if received:
            raise SweepStopped(received[0])

    for sig in previous:
        signal.signal(sig, stop)
    pending: dict[Any, RunSpec] = {}
    failed = 0
    stopped: int | None = None
    try:
        prepared: dict[str, Any] = {}
        for spec in todo:
            check_stop()
            state, record = run_state(spec)
            if state == EVALUATE:
                print(f"evaluate {spec.name} with {'; '.join(missing_variants(spec, record))} "
                      f"(log: {spec.run_dir / LOG_FILE})", flush=True)
                pending[variant_task.remote(spec, threads)] = spec
                continue
            key = plan.data_key[spec]
            if key not in prepared:
                data = plan.data[key]
                log_path = Path(spec.output) / "prepare" / f"{data.get('dataset')}-{key}.log"
                prepared[key] = (prepare_task.remote(data, str(log_path), threads),
                                 str(log_path.relative_to(spec.output)))
            print(f"{'resume' if state == 'resume' else 'start'} {spec.name}"
                  f"{' from its last checkpoint' if state == 'resume' else ''} "
                  f"(log: {spec.run_dir / LOG_FILE})", flush=True)
            # The data's ObjectRef as an argument: Ray starts the run once the data is ready.
            pending[run_task.remote(spec, threads, *prepared[key], command)] = spec
        while pending:
            check_stop()
            # A bounded wait: Python runs the signal handlers only between calls, not inside Ray's wait.
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                spec = pending.pop(ref)
                failed += not _report_run(ray, ref, spec)
    except (SweepStopped, KeyboardInterrupt) as err:
        stopped = err.signum if isinstance(err, SweepStopped) else int(signal.SIGINT)
        print(f"stopping: cancelling {len(pending)} run(s); their last checkpoints stay for the next run",
              flush=True)
        for sig in previous:  # a second Ctrl-C during the shutdown must not leave Ray half stopped
            signal.signal(sig, signal.SIG_IGN)
        _cancel(ray, pending)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if started_here:
            ray.shutdown()
    return failed, stopped


# Ray's own start-up messages and the workers' output stay out of the terminal: every run writes its
# output to its own train.log.
RAY_INIT: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}


def start_local_ray(num_cpus: int) -> None:
    """Starts a Ray on this machine with ``num_cpus`` CPUs, as ``lightning_offrl sweep`` does.

    Ray lowers its workers' priority by 15 (``RAY_worker_niceness``) for the sake of its own
    processes; here the workers are the sweep's whole work, so they keep the command's priority
    (``nice -n 10 lightning_offrl sweep`` runs them at 10, not 19) unless that variable is set.
    """
    import ray

    os.environ.setdefault("RAY_worker_niceness", "0")
    # On a machine busy with other jobs Ray's start can time out (its raylet waits a fixed time for its
    # agents' ports). The processes of the failed start are this process's children and are left
    # running by Ray; they are stopped before the next try.
    for attempt in range(5):
        try:
            ray.init(num_cpus=num_cpus, **RAY_INIT)
            return
        except Exception as err:  # noqa: BLE001 - Ray raises a bare Exception for this time-out
            ray.shutdown()
            _stop_child_processes()
            if "timed out during startup" not in str(err) or attempt == 4:
                raise OffRLError(f"the local Ray did not start ({err}); if the machine is busy, try again "
                                 "later or start one with `ray start --head` and pass --address auto") from err


def _stop_child_processes() -> None:
    """Kills this process's child processes (what a failed ``ray.init`` left behind)."""
    import psutil  # a dependency of Ray

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.kill()


def _report_run(ray: Any, ref: Any, spec: RunSpec) -> bool:
    """Prints one line for an ended run; True if it finished."""
    try:
        record = ray.get(ref)
    except ray.exceptions.RayError as err:
        # The worker died (killed, out of memory): record it so the rerun knows to restart it.
        record = {**(read_result(spec.run_dir) or {}), "status": FAILED, "error": one_line(str(err))[:500]}
        write_result(spec.run_dir, record)
    # The run's train.log, or the data preparation's log if that failed.
    log_path = Path(spec.output) / record.get("log", spec.run_dir.relative_to(spec.output) / LOG_FILE)
    if record.get("status") == FINISHED:
        print(f"done {spec.name}: normalized score {record['normalized_score']:.1f} after "
              f"{record['updates']} updates, {record['train_minutes']:.1f} train min", flush=True)
        for variant, result in (record.get("variants") or {}).items():
            outcome = (f"normalized score {result['normalized_score']:.1f}" if "normalized_score" in result
                       else f"FAILED: {result.get('error')}")
            print(f"     evaluated with {variant}: {outcome}", flush=True)
        return "normalized_score" in record and not missing_variants(spec, record)
    print(f"FAILED {spec.name}: {record.get('error')} (log: {log_path})", flush=True)
    return False


def _cancel(ray: Any, pending: dict[Any, RunSpec]) -> None:
    """Cancels the pending runs: first gracefully (a run records its time), then by force."""
    for ref in pending:
        ray.cancel(ref, force=False)
    deadline = time.monotonic() + 30
    left = list(pending)
    while left and time.monotonic() < deadline:
        _, left = ray.wait(left, num_returns=len(left), timeout=max(0.1, deadline - time.monotonic()))
    for ref in left:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)
    for spec in pending.values():
        record = read_result(spec.run_dir)
        if record is not None and record.get("status") == RUNNING:
            write_result(spec.run_dir, {**record, "status": INTERRUPTED, "error": "stopped with the sweep"})


# ----------------------------------------------------------------------------------- report
def collect_records(output: Path) -> list[dict[str, Any]]:
    """Every run's ``result.json`` under ``output/runs``, in config, dataset, seed order."""
    records = []
    for path in sorted((output / "runs").glob(f"*/*/seed*/{RESULT_FILE}")):
        record = read_result(path.parent)
        if record is not None:
            record["run_dir"] = str(path.parent.relative_to(output))
            records.append(record)
    return sorted(records, key=lambda r: (r["config"], r["dataset"], r["seed"]))


def record_to_row(record: dict[str, Any]) -> dict[str, Any]:
    """A run's record as a ``results.csv`` row (paths relative to the sweep folder)."""
    run_dir = record.get("run_dir", "")
    return {
        "config": record["config"], "dataset": record["dataset"], "seed": record["seed"],
        "status": record.get("status"), "normalized_score": record.get("normalized_score"),
        "normalized_score_se": record.get("normalized_score_se"), "return": record.get("return"),
        "updates": record.get("updates"), "episodes": record.get("episodes"),
        "eval_seed": record.get("eval_seed"), "overrides": " ".join(record.get("overrides") or []),
        "evaluated_with": "", "train_minutes": record.get("train_minutes"),
        "hardware": record.get("hardware", ""), "replica": record.get("replica", ""),
        "checkpoint": record.get("checkpoint", f"{run_dir}/{LAST_CHECKPOINT}"),
        "log": record.get("log", f"{run_dir}/{LOG_FILE}"),
        "curve": format_curve(record.get("curve") or []),
        "data": record.get("data", ""),
    }


def format_curve(points: Sequence[Sequence[float]]) -> str:
    """``[[5000, 45.415], [10000, 47.9]]`` -> ``"5000:45.415 10000:47.9"`` (the CSV's ``curve`` cell)."""
    return " ".join(f"{int(update)}:{float(score):g}" for update, score in points)


def parse_curve(text: str | None) -> list[list[float]]:
    """The inverse of :func:`format_curve`; an empty or missing cell is no curve.

    Raises:
        OffRLError: a malformed cell (names it and the expected ``UPDATE:SCORE ...`` form).
    """
    points = []
    for item in (text or "").split():
        update, sep, score = item.partition(":")
        try:
            if not sep:
                raise ValueError(item)
            points.append([int(update), float(score)])
        except ValueError:
            raise OffRLError(f"curve cell {text!r}: expected space-separated UPDATE:SCORE pairs, "
                             f"e.g. '5000:45.4 10000:47.9'") from None
    return points


def record_to_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A run's ``results.csv`` rows: its final evaluation, then one per ``--eval-also`` setting evaluated."""
    row = record_to_row(record)
    rows = [row]
    for variant, result in (record.get("variants") or {}).items():
        if "normalized_score" in result:
            # An --eval-also setting evaluates the last checkpoint only: the curve is the training's.
            rows.append({**row, "normalized_score": result["normalized_score"],
                         "normalized_score_se": result.get("normalized_score_se"),
                         "return": result.get("return"), "evaluated_with": variant, "curve": ""})
    return rows


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """``results.csv`` (columns :data:`CSV_COLUMNS`; empty cells for missing values), written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row.get(key) is None else row[key] for key in CSV_COLUMNS})
    _atomic_write(path, buffer.getvalue())


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _atomic_write(path: Path, text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text))


# Settings that say where a run keeps what it shares, not what it computes: ADEPT's cache of pretrained
# world models (a run from the cache is the same procedure as one that pretrained its own). Tables group
# rows without them; the rows still record them.
PLACEMENT_SETTINGS = ("model.init_args.world_model_cache=",)


def procedure_overrides(overrides: str) -> str:
    """A row's ``overrides`` without its placement settings (:data:`PLACEMENT_SETTINGS`)."""
    return " ".join(o for o in overrides.split() if not o.lstrip("-").startswith(PLACEMENT_SETTINGS))


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def render_table(rows: Sequence[dict[str, Any]]) -> str:
    """The Markdown table of finished rows: per dataset (and data fingerprint) x config x settings, mean ±
    s.e. over seeds; a replica's row names its build by the fingerprint where the rows carry one.

    The standard error (:func:`standard_error`) is over the seeds' final scores; train minutes are
    the mean per run, with the hardware named when it is not the CPU; the curve is the in-training
    evaluations' mean over the seeds that have one (:func:`curve_summary`), ``-`` where no run has.
    """
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get("status") != FINISHED:
            continue
        settings = procedure_overrides(row.get("overrides") or "")
        if row.get("evaluated_with"):
            settings = (settings + "; " if settings else "") + f"evaluated with {row['evaluated_with']}"
        hardware = row.get("hardware") or "cpu"
        groups[(row["dataset"], row.get("data") or "", row["config"], int(row["updates"]), settings,
                hardware)].append(row)
    lines = [
        "| dataset | config | overrides | updates | seeds | normalized score (mean ± s.e. over seeds) "
        "| per seed | train min/run | curve (in-training evaluations, mean over seeds) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, data, config, updates, settings, hardware), group in sorted(groups.items()):
        group = sorted(group, key=lambda r: int(r["seed"]))
        scores = [float(r["normalized_score"]) for r in group]
        mean = sum(scores) / len(scores)
        if len(scores) > 1:
            summary = f"{mean:.1f} ± {standard_error(scores):.1f}"
        else:
            summary = f"{mean:.1f} (one seed)"
        minutes = sum(float(r["train_minutes"]) for r in group) / len(group)
        where = "" if hardware == "cpu" else f" ({hardware})"
        # A replica's build is named by its data fingerprint: two builds hold different arrays.
        replica = (f" (replica {data})" if data else " (replica)") if _truthy(group[0].get("replica")) else ""
        lines.append(f"| {dataset}{replica} | {config} | {settings or '-'} | {updates:,} | {len(scores)} | "
                     f"{summary} | {', '.join(f'{s:.1f}' for s in scores)} | {minutes:.1f}{where} | "
                     f"{curve_summary([parse_curve(r.get('curve')) for r in group])} |")
    return "\n".join(lines)


def scores_by_update(curves: Sequence[Sequence[Sequence[float]]]) -> dict[int, list[float]]:
    """``{update: [score of every curve that evaluated there]}`` over ``[[update, score], ...]`` curves."""
    at: dict[int, list[float]] = defaultdict(list)
    for curve in curves:
        for update, score in curve:
            at[int(update)].append(float(score))
    return at


def curve_summary(curves: Sequence[Sequence[Sequence[float]]], max_points: int = 8) -> str:
    """``"5k 45.4, 10k 47.9, ..."``: the mean score over the curves that hold each update.

    With more than ``max_points`` updates, every k-th is shown (k the smallest that fits), the last
    always; no points gives ``-``.
    """
    at = scores_by_update(curves)
    if not at:
        return "-"
    updates = sorted(at)
    step = math.ceil(len(updates) / max_points)
    shown = updates[step - 1 :: step]
    if shown[-1] != updates[-1]:
        shown = shown + [updates[-1]] if len(shown) < max_points else shown[:-1] + [updates[-1]]

    def label(update: int) -> str:
        return f"{update // 1000}k" if update % 1000 == 0 else f"{update:,}"

    return ", ".join(f"{label(u)} {sum(at[u]) / len(at[u]):.1f}" for u in shown)


def aggregate_curves(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The plotted data: per dataset, per method, mean ± s.e. over seeds at each update.

    A method is a config; where runs of one config on one dataset were made with different overrides
    (by several sweep commands into one folder), each set of overrides is a method of its own. At an
    update the mean is over the seeds that evaluated there (all of them when the runs share the
    evaluation interval); the runs' own points are kept beside it.

    Returns:
        ``{dataset: {method: {"update": [...], "mean": [...], "se": [...], "seeds": [...],
        "runs": {"seed<k>": [[update, score], ...]}}}}``.
    """
    groups: dict[tuple[str, str, tuple[str, ...]], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record.get("status") == FINISHED and record.get("curve"):
            groups[(record["dataset"], record["config"], tuple(record.get("overrides") or []))].append(record)
    variants: dict[tuple[str, str], int] = defaultdict(int)
    for dataset, config, _ in groups:
        variants[(dataset, config)] += 1
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (dataset, config, overrides), group in sorted(groups.items()):
        method = config
        if variants[(dataset, config)] > 1:
            method += f" ({' '.join(overrides) or 'no overrides'})"
        at = scores_by_update([record["curve"] for record in group])
        updates = sorted(at)
        out[dataset][method] = {
            "update": updates,
            "mean": [round(sum(at[u]) / len(at[u]), 3) for u in updates],
            "se": [round(standard_error(at[u]), 3) for u in updates],
            "seeds": [len(at[u]) for u in updates],
            "runs": {f"seed{r['seed']}": r["curve"] for r in sorted(group, key=lambda r: r["seed"])},
        }
    return dict(out)


def plot_curves(curves: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    """Normalized score against updates, one panel per dataset, a mean line and ± s.e. band per method."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed or wanted
    import matplotlib.pyplot as plt

    datasets = sorted(curves)
    columns = min(3, len(datasets))
    rows = math.ceil(len(datasets) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for ax, dataset in zip(axes.flat, datasets):
        for method, data in sorted(curves[dataset].items()):
            mean, se = data["mean"], data["se"]
            n = max(data["seeds"])
            # Long override lists wrap, so the legend stays inside its panel.
            label = textwrap.fill(f"{method} ({n} seed{'s' * (n > 1)})", 48)
            ax.plot(data["update"], mean, marker="o", markersize=3, label=label)
            lower, upper = [m - s for m, s in zip(mean, se)], [m + s for m, s in zip(mean, se)]
            ax.fill_between(data["update"], lower, upper, alpha=0.2)
        ax.set_title(dataset)
        ax.set_xlabel("updates")
        ax.set_ylabel("normalized score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(datasets):]:
        ax.set_visible(False)
    fig.tight_layout()
    # The temporary file's suffix is not the image's, so the format is named.
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".")))
    plt.close(fig)


def write_report(output: Path) -> list[Path]:
    """Writes ``results.csv``, ``results.md`` and (when a run has a curve) ``curves.png``/``curves.json``.

    Returns:
        The files written.

    Raises:
        OffRLError: ``output`` holds no run folders.
    """
    records = collect_records(output)
    if not records:
        raise OffRLError(f"{output} holds no runs (no runs/<config>/<dataset>/seed<k>/{RESULT_FILE}); "
                         "pass the --output folder of a sweep")
    rows = [row for record in records for row in record_to_rows(record)]
    written = [output / "results.csv", output / "results.md"]
    write_csv(rows, written[0])
    commands = list(dict.fromkeys(r["command"] for r in records if r.get("command")))
    unfinished = [r for r in records if r.get("status") != FINISHED]
    text = ["# Sweep results", "", "Made by:", ""]
    text += [f"    {c}" for c in commands] + [""]
    text += ["Final score: the last checkpoint on the same evaluation episodes for every run (reset seeds "
             "`eval_seed + i`); mean ± standard error over seeds; per-seed scores in seed order; updates = "
             "the budget reached; train minutes per run. Raw rows: `results.csv`.", "",
             render_table(rows), ""]
    if unfinished:
        text += ["Not finished (rerun the sweep command to resume or restart them):", ""]
        text += [f"- {r['config']} {r['dataset']} seed {r['seed']}: {r.get('status')}"
                 f"{': ' + str(r['error']) if r.get('error') else ''} (log: {r.get('log')})"
                 for r in unfinished] + [""]
    curves = aggregate_curves(records)
    if curves:
        text += ["Learning curves (in-training evaluations, mean ± s.e. over seeds): `curves.png`, plotted "
                 "points in `curves.json`.", ""]
        _atomic_write(output / "curves.json", json.dumps(curves, indent=1) + "\n")
        plot_curves(curves, output / "curves.png")
        written += [output / "curves.png", output / "curves.json"]
    _atomic_write(written[1], "\n".join(text))
    return written


# -------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightning_offrl sweep",
        description="Runs every config x dataset x seed as one `lightning_offrl fit` on Ray, evaluates each "
        "run's last checkpoint on fixed episodes, and writes per-run folders, results.csv, results.md and "
        "learning curves under --output. Finished runs are skipped; unfinished ones resume.",
    )
    add = parser.add_argument
    add("--configs", nargs="+", default=[], help="config names (iql_hopper = conf/iql_hopper.yaml) or paths")
    add("--datasets", nargs="+", default=[], help="dataset names, e.g. hopper-random-v2")
    add("--seeds", nargs="+", type=int, default=[], help="seeds (seed_everything and data.seed)")
    add("--updates", type=int, default=None, help="model.init_args.max_updates (default: the config's)")
    add("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
        help="a fit override for every run, e.g. --set model.init_args.alpha=5 --set "
        "evaluation.interval=1000 (repeatable; checked by the CLI's parser before anything starts)")
    add("--output", help="folder of the sweep (everything is written under it)")
    add("--episodes", type=int, default=10, help="final-evaluation episodes per run")
    add("--eval-seed", type=int, default=EVAL_SEED,
        help=f"final-evaluation episode i is reset with this + i (default {EVAL_SEED}, same for all runs)")
    add("--address", default=None, help="join this Ray cluster (auto, or HOST:6379) instead of starting a "
        "local Ray; the sweep folder and the data must be reachable from its nodes")
    add("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    add("--cpus-per-run", type=float, default=1, help="CPUs per run; torch uses as many threads")
    add("--gpus-per-run", type=float, default=0, help="GPUs per run, fractions allowed (0.25: 4 runs a GPU)")
    add("--eval-also", action="append", default=[], metavar="NAME=VALUE[,NAME=VALUE]",
        help="also evaluate every run's last checkpoint with these acting-time settings (as `lightning_offrl "
        "evaluate --set`), on the same episodes, e.g. --eval-also num_action_candidates=1024,candidate_selection"
        "=softmax; one table row per setting; repeatable; finished runs get it without training again")
    add("--dry-run", action="store_true", help="check the runs and list them with their state")
    add("--report-only", action="store_true", help="only rebuild the tables and curves of --output")
    return parser


def main(argv: Sequence[str]) -> int:
    """``lightning_offrl sweep ...`` and ``lightning_offrl sweep-report DIR``.

    Args:
        argv: the arguments after ``lightning_offrl``, starting with ``sweep`` or ``sweep-report``.

    Returns:
        The exit code (see :func:`run_sweep`).
    """
    command, rest = argv[0], list(argv[1:])
    if command == "sweep-report":
        parser = argparse.ArgumentParser(
            prog="lightning_offrl sweep-report",
            description="Rebuilds results.csv, results.md and the curves of a sweep folder.")
        parser.add_argument("output", help="the sweep's --output folder")
        paths = write_report(Path(parser.parse_args(rest).output))
        print("wrote " + ", ".join(str(p) for p in paths))
        return 0
    parser = build_parser()
    args = parser.parse_args(rest)
    if not args.output:
        parser.error("--output DIR is required (every file of the sweep is written under it)")
    if args.report_only:
        paths = write_report(Path(args.output))
        print("wrote " + ", ".join(str(p) for p in paths))
        return 0
    plan = plan_sweep(args)
    if args.dry_run:
        for spec in plan.runs:
            state, record = run_state(spec)
            print(describe(spec, state, record))
        print(f"{len(plan.runs)} runs; nothing was started (--dry-run)")
        return 0
    command = "lightning_offrl " + " ".join(shlex.quote(a) for a in argv)
    return run_sweep(plan, args, command)


__all__ = ["RunSpec", "aggregate_curves", "curve_summary", "execute_run", "format_curve", "main", "parse_curve",
           "plan_sweep", "read_csv", "render_table",
           "start_local_ray", "write_csv", "write_report"]
