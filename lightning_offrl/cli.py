"""The ``lightning_offrl`` command.

``fit | validate | test`` are LightningCLI subcommands (``parser_mode="omegaconf"``: interpolation
inside one config file works). ``datasets`` and ``evaluate`` are the project's own commands.

Configuration rule: derived sizes (observation/action dims) flow from the DataModule to the model by
``link_arguments``; OmegaConf interpolation is for constants inside one file, because it is resolved
when the file is read, before command-line overrides (see ``docs/configuration.md``).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Sequence

from lightning_offrl.errors import OffRLError

# Only the standard library and the project's errors are imported here: `lightning_offrl --help`,
# `datasets` and `evaluate --help` must not pay for torch and Lightning (seconds on a small machine).
# `fit | validate | test` import them in lightning_offrl.lightning_cli.

TOP_LEVEL_HELP = """usage: lightning_offrl {fit,validate,test,datasets,evaluate,export,sweep,sweep-report} ...

Diffusion-based offline reinforcement learning on PyTorch Lightning.

commands:
  fit        train a method:  lightning_offrl fit --config conf/iql_hopper.yaml [--model.key value ...]
  validate   evaluate a model through Lightning's validation loop (--ckpt_path CKPT)
  test       evaluate a model through Lightning's test loop (--ckpt_path CKPT)
  datasets   list | make NAME | info NAME|PATH: the D4RL-named datasets and their sources
  evaluate   --ckpt_path CKPT [--episodes N] [--seed S]: return and D4RL normalized score of a checkpoint
             [--video FILE.mp4|FILE.gif]: and a video of its first episode(s)
  export     --ckpt_path CKPT --output FILE [--format torchscript|onnx]: the deterministic policy as one file
  sweep      --configs A B --datasets X Y --seeds 0 1 2 --output DIR: every combination as one fit on Ray,
             then results.csv, results.md and learning curves under DIR (sweep-report DIR: rebuild them)

Run `lightning_offrl <command> --help` for the options of a command.
Set LIGHTNING_OFFRL_DEBUG=1 to see tracebacks of user errors."""

# fit/validate/test: the LightningCLI subcommands (lightning_offrl.lightning_cli).
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test")


def run_lightning_cli(args: Sequence[str] | None) -> None:
    """Runs ``fit | validate | test`` (see :func:`lightning_offrl.lightning_cli.run_lightning_cli`)."""
    from lightning_offrl.lightning_cli import run_lightning_cli as run

    run(args)


def __getattr__(name: str) -> Any:
    # `from lightning_offrl.cli import OffRLCLI, trainer_defaults` keeps working, importing Lightning
    # only when asked for.
    if name in ("OffRLCLI", "trainer_defaults"):
        from lightning_offrl import lightning_cli

        return getattr(lightning_cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        if args[0] in ("sweep", "sweep-report"):
            from lightning_offrl.sweep import main as sweep_main

            return sweep_main(args)
        if args[0] == "export":
            from lightning_offrl.export import main as export_main

            return export_main(args[1:])
        run_lightning_cli(None if argv is None else args)
        return 0
    except OffRLError as err:
        if os.environ.get("LIGHTNING_OFFRL_DEBUG"):
            raise
        print(f"lightning_offrl: error: {err}", file=sys.stderr)
        if args and args[0] in LIGHTNING_SUBCOMMANDS and isinstance(err, ValueError):
            print(f"(`lightning_offrl {args[0]} --help` lists the options)", file=sys.stderr)
        return 2
    except ValueError as err:
        reason = _instantiation_error(err)
        if reason is None or os.environ.get("LIGHTNING_OFFRL_DEBUG"):
            raise
        print(f"lightning_offrl: error: {reason}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
