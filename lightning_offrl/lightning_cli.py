"""``lightning_offrl fit | validate | test``: the project's LightningCLI.

Kept out of :mod:`lightning_offrl.cli` so that the other commands (and ``--help``) start without
importing torch and Lightning.

What it adds to LightningCLI:

- the ``evaluation`` and ``checkpoint`` sections and the linked observation/action sizes;
- parse errors as one line (the key and what is wrong with it), not Lightning's 90-line usage;
- ``--ckpt_path`` checked before anything is built (missing, truncated or foreign files are refused
  with one line), and a resumed ``fit`` that says which settings differ from the checkpoint: they
  apply (and are logged), except those that change the shape of the networks, which are refused;
- a run that diverges names the last good checkpoint, which it leaves as it was.
"""

from __future__ import annotations

import logging
import math
from argparse import ArgumentError
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from lightning_offrl.algos.base import OfflineRLModule
from lightning_offrl.checkpoint_file import read_checkpoint
from lightning_offrl.data.datamodule import D4RLDataModule
from lightning_offrl.errors import ConfigError, OffRLError, TrainingDivergedError

log = logging.getLogger("lightning_offrl")

# Lightning resolves these --ckpt_path values itself (e.g. "last": the newest last.ckpt of the run).
_LIGHTNING_CKPT_ALIASES = ("last", "best", "hpc", "registry")
# Hyperparameters that are not settings: Lightning's bookkeeping, and the sizes linked from the data.
_NOT_SETTINGS = ("_class_path", "_instantiator", "obs_dim", "act_dim")


class OffRLCLI(LightningCLI):
    """LightningCLI with the project's defaults: evaluation and checkpointing sections, linked sizes."""

    def init_parser(self, **kwargs: Any) -> Any:
        # Parse errors are raised (and printed by `lightning_offrl` as one line) instead of printing the
        # whole usage of the subcommand (~90 lines) above the one line that matters.
        kwargs.setdefault("exit_on_error", False)
        return super().init_parser(**kwargs)

    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
        from lightning_offrl.callbacks.checkpoint import BestScoreCheckpoint
        from lightning_offrl.callbacks.evaluation import D4RLEvaluation

        parser.add_lightning_class_args(D4RLEvaluation, "evaluation")
        parser.add_lightning_class_args(BestScoreCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "eval/normalized_score",
                "checkpoint.mode": "max",
                "checkpoint.save_last": False,
                "checkpoint.filename": "best-{epoch}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_argument(
            "--per_dataset",
            type=Optional[str],
            default=None,
            help="per-dataset settings: a shipped table's name (lightning_offrl/assets/per_dataset) or a "
            "YAML file; the row of data.dataset replaces the config's values, the command line's stay",
        )
        parser.link_arguments("data.obs_dim", "model.init_args.obs_dim", apply_on="instantiate")
        parser.link_arguments("data.act_dim", "model.init_args.act_dim", apply_on="instantiate")

    def parse_arguments(self, parser: Any, args: Any) -> None:
        super().parse_arguments(parser, args)
        # An unknown dataset name fails here, before the seed, the trainer and the data are set up. A name
        # with a file (data.path) may be a dataset of the user's own, which the DataModule registers and checks.
        config = self.config.get(self.config.get("subcommand") or "", self.config)
        data = config.get("data") or {}
        dataset = data.get("dataset")
        if isinstance(dataset, str) and not data.get("path"):
            from lightning_offrl.envs.tasks import get_task

            get_task(dataset)
        if isinstance(dataset, str) and config.get("per_dataset"):
            self._apply_per_dataset(config, dataset, args)

    @staticmethod
    def _apply_per_dataset(config: Any, dataset: str, args: Any) -> None:
        import sys

        from lightning_offrl.per_dataset import apply_table, command_line_keys, load_table

        table = load_table(config["per_dataset"])
        tokens = sys.argv[1:] if args is None else args
        given = command_line_keys(tokens if isinstance(tokens, (list, tuple)) else [])
        lines = apply_table(config, table, dataset, given)
        if lines:
            rank_zero_info(f"per-dataset settings for {dataset} ({table.name}; {table.source}):")
            for line in lines:
                rank_zero_info(f"  {line}")

    def before_instantiate_classes(self) -> None:
        # Every method updates its networks with separate losses and optimizers, so each backward pass
        # reaches only part of the parameters; plain "ddp" would reject that. Use DDP that finds the
        # unused parameters of each backward (docs/configuration.md, "Several GPUs").
        trainer = self.config[self.subcommand].trainer if self.subcommand else self.config.trainer
        if trainer.get("strategy") == "ddp":
            trainer.strategy = "ddp_find_unused_parameters_true"
        # The default rich progress bar is a callback that LightningCLI adds when it builds the trainer;
        # `--trainer.enable_progress_bar false` drops it (Lightning refuses a progress-bar callback
        # with the bar disabled), from the defaults and from callbacks the config names.
        if trainer.get("enable_progress_bar") is False:
            defaults = self.trainer_defaults.get("callbacks") or []
            self.trainer_defaults["callbacks"] = [c for c in defaults if not _is_progress_bar(c)]
            if trainer.get("callbacks"):
                trainer.callbacks = [c for c in trainer.callbacks if not _is_progress_bar(c)]

    # ------------------------------------------------------------------------------- --ckpt_path
    def _parse_ckpt_path(self) -> None:
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if not ckpt_path or str(ckpt_path) in _LIGHTNING_CKPT_ALIASES:
            return
        checkpoint = read_checkpoint(ckpt_path)  # one clear line for a missing or foreign file
        config = self.config[subcommand]
        model_config = _as_dict(config.model)
        stored = dict(checkpoint.get("hyper_parameters") or {})
        stored_class = stored.get("_class_path") or checkpoint["lightning_offrl"]["class_path"]
        if subcommand != "fit":
            # validate/test rebuild the model the checkpoint holds (LightningCLI re-applies its
            # hyperparameters over the config); say which config values that replaces.
            for key, (given, saved) in _differences(model_config.get("init_args") or {}, stored).items():
                rank_zero_info(f"{subcommand}: model.init_args.{key} = {saved!r} from the checkpoint "
                               f"(the config had {given!r}); acting-time settings go through "
                               "`lightning_offrl evaluate --set NAME=VALUE`")
            super()._parse_ckpt_path()
            return
        # A resumed fit uses the config it is given (LightningCLI >= 2.3 would re-apply the checkpoint's
        # hyperparameters over it, silently undoing overrides such as a larger max_updates). Every
        # setting that differs from the checkpoint is said; network shapes are checked once the model
        # exists (instantiate_trainer), learning rates once the optimizers are restored (the module).
        # Compared by class name: `lightning_offrl.algos.IQL` and `lightning_offrl.algos.iql.IQL` are one class.
        given_class = model_config.get("class_path")
        if given_class is not None and str(given_class).rpartition(".")[2] != stored_class.rpartition(".")[2]:
            raise OffRLError(
                f"--ckpt_path {ckpt_path} holds a model of class {stored_class.rpartition('.')[2]} but the "
                f"config trains {str(given_class).rpartition('.')[2]}; resume with the config "
                "the checkpoint was trained with, or start a new run without --ckpt_path"
            )
        changed = {f"model.init_args.{key}": pair
                   for key, pair in _differences(model_config.get("init_args") or {}, stored).items()}
        data_stored = checkpoint.get("datamodule_hyper_parameters") or {}
        changed.update({f"data.{key}": pair for key, pair in _differences(_as_dict(config.data), data_stored).items()})
        for key, (given, saved) in changed.items():
            rank_zero_info(f"resumed with {key} = {given!r} (checkpoint had {saved!r})")
        self._resume = _ResumeCheck(Path(ckpt_path), checkpoint["state_dict"], changed)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        # The model and data exist now, the trainer not yet: refuse a resume whose networks do not fit
        # the checkpoint before Lightning sets anything up.
        resume: _ResumeCheck | None = getattr(self, "_resume", None)
        if resume is not None and self.model is not None:
            resume.check_shapes(self.model)
        return super().instantiate_trainer(**kwargs)

    # --------------------------------------------------------------------------------- running
    def before_fit(self) -> None:
        # The budget is model.max_updates; with the default max_epochs=-1, give the epoch loop the
        # matching number of epochs so progress bars show a real total.
        model, data, trainer = self.model, self.datamodule, self.trainer
        if trainer.fit_loop.max_epochs in (None, -1):
            updates_per_epoch = data.steps_per_epoch * data.batches_per_step
            trainer.fit_loop.max_epochs = max(1, math.ceil(model.max_updates / updates_per_epoch))
        _fit_checkpoints_to_task(trainer, data)

    def fit(self, model: Any, **kwargs: Any) -> None:
        """``trainer.fit``; a run that diverges names the last good checkpoint, which it leaves untouched."""
        try:
            self.trainer.fit(model, **kwargs)
        except TrainingDivergedError as err:
            raise TrainingDivergedError(f"{err} {_last_good_checkpoint_note(self.trainer)}") from err

    def after_fit(self) -> None:
        # The last lines of a fit: where everything is and how to look at it.
        trainer = self.trainer
        # trainer.log_dir broadcasts from rank 0 under DDP: every rank must ask, before the others return.
        log_dir = trainer.log_dir or trainer.default_root_dir
        if not trainer.is_global_zero:
            return
        import rich

        from lightning_offrl.callbacks.evaluation import D4RLEvaluation

        console = rich.get_console()
        for callback in trainer.callbacks:
            if isinstance(callback, D4RLEvaluation) and callback.last_result is not None:
                update = int(callback.last_evaluated_update or 0)
                summary = callback.summary(trainer, update, callback.metrics(callback.last_result))
                console.print(f"final score: {summary}", soft_wrap=True)
        console.print(f"run folder: {log_dir}", soft_wrap=True, markup=False, highlight=False)
        written = _written_checkpoints(trainer)
        if written:
            console.print(f"checkpoints: {', '.join(map(str, written))}", soft_wrap=True, markup=False,
                          highlight=False)
        console.print(f"TensorBoard: tensorboard --logdir {Path(log_dir).parent}", soft_wrap=True,
                      markup=False, highlight=False)


class _ResumeCheck:
    """What a resumed fit compares with the checkpoint once the model is built."""

    def __init__(self, path: Path, state_dict: Mapping[str, Any], changed: Mapping[str, tuple[Any, Any]]) -> None:
        self.path = path
        self.shapes = {k: tuple(v.shape) for k, v in state_dict.items() if hasattr(v, "shape")}
        self.changed = dict(changed)

    def check_shapes(self, model: Any) -> None:
        """Raises :class:`ConfigError` when the model's tensors do not have the checkpoint's shapes.

        Network sizes cannot change on resume: the saved weights and optimizer moments would not fit.
        """
        own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        missing = sorted(set(self.shapes) - set(own))
        extra = sorted(set(own) - set(self.shapes))
        resized = sorted(k for k in set(own) & set(self.shapes) if own[k] != self.shapes[k])
        if not (missing or extra or resized):
            return
        if resized:
            key = resized[0]
            example = f"{key} is {list(own[key])} here and {list(self.shapes[key])} in the checkpoint"
        else:
            key = (missing or extra)[0]
            example = f"{key} exists {'only in the checkpoint' if missing else 'only here'}"
        settings = ", ".join(f"{k} = {v[0]!r} (checkpoint had {v[1]!r})" for k, v in self.changed.items())
        raise ConfigError(
            f"cannot resume from {self.path}: the networks of this config do not have the checkpoint's "
            f"shapes ({example}); settings that differ: {settings or 'none of the model or data settings'}. "
            "Network sizes cannot change on resume: use the checkpoint's values, or start a new run "
            "without --ckpt_path"
        )


def _as_dict(value: Any) -> dict[str, Any]:
    """A jsonargparse Namespace (or dict, or None) as a plain nested dict."""
    if value is None:
        return {}
    if hasattr(value, "as_dict"):
        return value.as_dict()
    return dict(value)


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{"learner": {"init_args": {"beta": 3}}}`` -> ``("learner.init_args.beta", 3)``."""
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _same(a: Any, b: Any) -> bool:
    """Equality that treats a list and a tuple of the same items (YAML vs checkpoint) as equal."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return a == b


def _differences(given: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (config value, checkpoint value)}`` for the settings present in both that differ.

    Settings absent from the checkpoint (the injected optimizers, which are not saved as
    hyperparameters) are compared elsewhere: their learning rates against the restored optimizers.
    """
    stored_flat = dict(_flatten({k: v for k, v in stored.items() if k not in _NOT_SETTINGS}))
    out: dict[str, tuple[Any, Any]] = {}
    for key, value in _flatten({k: v for k, v in given.items() if k not in _NOT_SETTINGS}):
        if key in stored_flat and not _same(value, stored_flat[key]):
            out[key] = (value, stored_flat[key])
    return out


def _checkpoint_callbacks(trainer: Any) -> list[ModelCheckpoint]:
    return [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]


def _written_checkpoints(trainer: Any) -> list[Path]:
    """The files this run's checkpoint callbacks hold now (last and best), each once."""
    paths: list[Path] = []
    for callback in _checkpoint_callbacks(trainer):
        for name in (callback.last_model_path, callback.best_model_path):
            if name and Path(name).is_file() and Path(name) not in paths:
                paths.append(Path(name))
    return paths


def _newest_checkpoint(trainer: Any) -> Path | None:
    """The most recently written checkpoint file of this run's checkpoint callbacks, if any."""
    paths = _written_checkpoints(trainer)
    return max(paths, key=lambda p: p.stat().st_mtime_ns) if paths else None


def _last_good_checkpoint_note(trainer: Any) -> str:
    """The sentence a diverged run ends with: which checkpoint to go back to."""
    newest = _newest_checkpoint(trainer)
    if newest is None:
        return "No checkpoint was written before that update."
    import torch

    try:
        updates = int(torch.load(newest, map_location="cpu", weights_only=False)["lightning_offrl"]["num_updates"])
        at = f" (update {updates})"
    except Exception:  # noqa: BLE001 - the note must not hide the divergence it reports
        at = ""
    return (f"The last good checkpoint is {newest}{at}, left as it was; resume from it with "
            f"--ckpt_path {newest} (e.g. with a lower --model.init_args.optimizer.init_args.lr).")



def _fit_checkpoints_to_task(trainer: Any, data: Any) -> None:
    """Ranks the best checkpoint by what the task's evaluation logs.

    A task without an environment is never evaluated: the best-score checkpoint is dropped (``last.ckpt`` is
    still written; the DataModule has said that evaluation is off). A task without reference returns logs no
    normalized score: the best checkpoint is ranked by ``eval/return`` instead, and the log says so.
    """
    from lightning_offrl.callbacks.checkpoint import BestScoreCheckpoint

    task = data.task
    best = [cb for cb in trainer.callbacks if isinstance(cb, BestScoreCheckpoint)]
    if not task.has_environment:
        trainer.callbacks[:] = [cb for cb in trainer.callbacks if not isinstance(cb, BestScoreCheckpoint)]
        return
    if not task.has_reference_scores:
        for callback in best:
            if callback.monitor == "eval/normalized_score":
                callback.monitor = "eval/return"
                logging.getLogger("lightning_offrl").info(
                    "%s has no reference returns: the best checkpoint is ranked by eval/return", data.dataset
                )

def _is_progress_bar(callback: object) -> bool:
    """Whether a trainer callback (an instance, or a config entry naming a class) is a progress bar."""
    if isinstance(callback, ProgressBar):
        return True
    class_path = getattr(callback, "class_path", None)
    if class_path is None and isinstance(callback, dict):
        class_path = callback.get("class_path")
    return isinstance(class_path, str) and class_path.endswith("ProgressBar")


def trainer_defaults() -> dict:
    from lightning.pytorch.callbacks import LearningRateMonitor

    from lightning_offrl.callbacks.update_step import UpdateStepLogging

    return {
        "accelerator": "auto",
        "devices": 1,
        "max_epochs": -1,  # the budget is the model's max_updates
        "num_sanity_val_steps": 0,
        # Methods log every `log_every` updates themselves; let every such value reach the logger.
        "log_every_n_steps": 1,
        "logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": "runs", "name": "lightning_offrl"},
        },
        "callbacks": [
            RichProgressBar(leave=True),
            LearningRateMonitor(logging_interval="epoch"),
            # Every scalar (losses, scores, learning rates) against the module's update count.
            UpdateStepLogging(),
            # last.ckpt, rewritten every epoch whatever the score (the `checkpoint` section keeps the best).
            ModelCheckpoint(filename="last", monitor=None, save_top_k=1, enable_version_counter=False),
        ],
        "plugins": [{"class_path": "lightning_offrl.callbacks.checkpoint_io.AtomicCheckpointIO"}],
    }


def run_lightning_cli(args: Sequence[str] | None) -> None:
    """Runs ``fit | validate | test`` with ``args`` (``None``: ``sys.argv``).

    Raises:
        ConfigError: a parse error (unknown key, wrong type, out-of-range value), as one line.
    """
    try:
        OffRLCLI(
            OfflineRLModule,
            D4RLDataModule,
            subclass_mode_model=True,
            parser_kwargs={"parser_mode": "omegaconf"},
            trainer_defaults=trainer_defaults(),
            save_config_kwargs={"overwrite": True},
            args=None if args is None else list(args),
        )
    except ArgumentError as err:
        raise ConfigError(parse_error_line(str(err))) from err


def parse_error_line(message: str) -> str:
    """jsonargparse's multi-line parse error as one line: the full key and what is wrong with it.

    jsonargparse reports an error inside a class's arguments as a tree of "Union subtypes" attempts
    (the class, or None) around the real reason; the key it names is the outer one (``model``) and
    the inner key is in the trailing ``NestedArg(key=...)``. For example::

        Parser key "data.batch_size": Not of type PositiveInt: 0 does not conform to restriction v>0
        -> data.batch_size: 0 does not conform to restriction v>0 (expected a PositiveInt)

        Parser key "model": ... Option 'lrr' is not accepted ... class_path='torch.optim.Adam' ...
        NestedArg(key='optimizer.init_args.lrr', val='0.1')
        -> model.init_args.optimizer.init_args.lrr: unknown option (Adam has no argument 'lrr')

    Returns:
        One line; the message's lines joined when its form is not recognised.
    """
    import re

    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    outer = re.search(r'Parser key "([^"]+)"', message)
    nested = re.findall(r"NestedArg\(key='([^']+)', val=(.+?)\)\s*$", message, re.M)
    key = outer.group(1) if outer else None
    if key and nested:
        key = f"{key}.init_args.{nested[-1][0]}"
    given_match = re.findall(r"^\s*Given value: (.+)$", message, re.M)
    given = nested[-1][1] if nested else (given_match[-1] if given_match else None)
    if given is not None and not given.startswith(("'", '"', "[")):
        given = repr(given)
    where = f"{key}: " if key else ""

    unknown = re.search(r"Option '([^']+)' is not accepted", message)
    if unknown:
        classes = re.findall(r"class_path[= ]'([\w.]+)'", message)
        owner = classes[-1].rpartition(".")[2] if classes else "the class"
        return f"{where}unknown option ({owner} has no argument '{unknown.group(1)}')"
    restriction = re.search(r"Not of type (\w+): (.+)", message)
    if restriction:
        return f"{where}{restriction.group(2).strip()} (expected a {restriction.group(1)})"
    expected = [t.rpartition(".")[2] for t in re.findall(r"Expected a <class '([\w.]+)'>", message)]
    expected = list(dict.fromkeys(t for t in expected if t != "NoneType"))
    if expected:
        got = f", got {given}" if given is not None else ""
        return f"{where}expected {' or '.join(expected)}{got}"
    if key is None:
        return " ".join(lines)
    structural = ("Parser key", "Does not validate", "Subtypes:", "Errors:", "Given value", "- Expected a <class 'NoneType'>")
    reasons = [line for line in lines if not line.startswith(structural)]
    return f"{where}{_lower_first(reasons[0].lstrip('- ')) if reasons else ' '.join(lines)}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:1].isupper() and not text[1:2].isupper() else text


__all__ = ["OffRLCLI", "parse_error_line", "run_lightning_cli", "trainer_defaults"]
