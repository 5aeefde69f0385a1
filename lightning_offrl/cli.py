"""The ``lightning_offrl`` command.

``fit | validate | test`` are LightningCLI subcommands (``parser_mode="omegaconf"``: interpolation
inside one config file works). ``datasets`` and ``evaluate`` are the project's own commands.

Configuration rule: derived sizes (observation/action dims) flow from the DataModule to the model by
``link_arguments``; OmegaConf interpolation is for constants inside one file, because it is resolved
when the file is read, before command-line overrides (see ``docs/configuration.md``).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import Sequence

from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningCLI

from lightning_offrl.algos.base import OfflineRLModule
from lightning_offrl.data.datamodule import D4RLDataModule
from lightning_offrl.errors import OffRLError

TOP_LEVEL_HELP = """usage: lightning_offrl {fit,validate,test,datasets,evaluate,export} ...

Diffusion-based offline reinforcement learning on PyTorch Lightning.

commands:
  fit        train a method:  lightning_offrl fit --config conf/iql_hopper.yaml [--model.key value ...]
  validate   evaluate a model through Lightning's validation loop (--ckpt_path CKPT)
  test       evaluate a model through Lightning's test loop (--ckpt_path CKPT)
  datasets   list | make NAME | info NAME|PATH: the D4RL-named datasets and their sources
  evaluate   --ckpt_path CKPT [--episodes N] [--seed S]: return and D4RL normalized score of a checkpoint
             [--video FILE.mp4|FILE.gif]: and a video of its first episode(s)
  export     --ckpt_path CKPT --output FILE [--format torchscript|onnx]: the deterministic policy as one file

Run `lightning_offrl <command> --help` for the options of a command.
Set LIGHTNING_OFFRL_DEBUG=1 to see tracebacks of user errors."""


class OffRLCLI(LightningCLI):
    """LightningCLI with the project's defaults: evaluation and checkpointing sections, linked sizes."""

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
        parser.link_arguments("data.obs_dim", "model.init_args.obs_dim", apply_on="instantiate")
        parser.link_arguments("data.act_dim", "model.init_args.act_dim", apply_on="instantiate")

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

    def _parse_ckpt_path(self) -> None:
        # LightningCLI (>= 2.3) re-applies the hyperparameters stored in a checkpoint on top of the
        # parsed config, which silently undoes command-line overrides when resuming a fit (e.g. a
        # larger --model.init_args.max_updates). A resumed fit uses the config it is given; validate
        # and test without a config still rebuild the model from the checkpoint.
        if self.config.get("subcommand") == "fit":
            return
        super()._parse_ckpt_path()

    def before_fit(self) -> None:
        # The budget is model.max_updates; with the default max_epochs=-1, give the epoch loop the
        # matching number of epochs so progress bars show a real total.
        model, data, trainer = self.model, self.datamodule, self.trainer
        if trainer.fit_loop.max_epochs in (None, -1):
            updates_per_epoch = data.steps_per_epoch * data.batches_per_step
            trainer.fit_loop.max_epochs = max(1, math.ceil(model.max_updates / updates_per_epoch))


def _is_progress_bar(callback: object) -> bool:
    """Whether a trainer callback (an instance, or a config entry naming a class) is a progress bar."""
    if isinstance(callback, ProgressBar):
        return True
    class_path = getattr(callback, "class_path", None)
    if class_path is None and isinstance(callback, dict):
        class_path = callback.get("class_path")
    return isinstance(class_path, str) and class_path.endswith("ProgressBar")


def trainer_defaults() -> dict:
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
            # last.ckpt, rewritten every epoch whatever the score (the `checkpoint` section keeps the best).
            ModelCheckpoint(filename="last", monitor=None, save_top_k=1, enable_version_counter=False),
        ],
        "plugins": [{"class_path": "lightning_offrl.callbacks.checkpoint_io.AtomicCheckpointIO"}],
    }


def run_lightning_cli(args: Sequence[str] | None) -> None:
    OffRLCLI(
        OfflineRLModule,
        D4RLDataModule,
        subclass_mode_model=True,
        parser_kwargs={"parser_mode": "omegaconf"},
        trainer_defaults=trainer_defaults(),
        save_config_kwargs={"overwrite": True},
        args=None if args is None else list(args),
    )


def _instantiation_error(err: ValueError) -> str | None:
    """The user-facing reason inside jsonargparse's wrapping of an error raised by a class __init__.

    jsonargparse re-raises errors from instantiating a ``class_path`` (e.g. a ConfigError for
    ``max_updates: -5``) as "Does not validate against any of the Union subtypes", listing the
    reasons; the one that is not about the alternative ``None`` is the real one.
    """
    text = str(err)
    if "Does not validate against any of the Union subtypes" not in text:
        return None
    reasons = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("- ")]
    reasons = [r for r in reasons if not r.startswith("Expected a <class 'NoneType'>")]
    return "; ".join(reasons) or None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if not args or args[0] in ("-h", "--help"):
            print(TOP_LEVEL_HELP)
            return 0
        if args[0] == "datasets":
            from lightning_offrl.data.commands import main as datasets_main

            return datasets_main(args[1:])
        if args[0] == "evaluate":
            from lightning_offrl.evaluate import main as evaluate_main

            return evaluate_main(args[1:])
        if args[0] == "export":
            from lightning_offrl.export import main as export_main

            return export_main(args[1:])
        run_lightning_cli(None if argv is None else args)
        return 0
    except OffRLError as err:
        if os.environ.get("LIGHTNING_OFFRL_DEBUG"):
            raise
        print(f"lightning_offrl: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        reason = _instantiation_error(err)
        if reason is None or os.environ.get("LIGHTNING_OFFRL_DEBUG"):
            raise
        print(f"lightning_offrl: error: {reason}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
