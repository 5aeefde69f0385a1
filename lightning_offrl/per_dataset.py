"""Per-dataset settings: values a config takes on a named dataset, where reference implementations tune them.

A config names a table with ``per_dataset: <name or path>``. A table is a YAML file::

    source: where every value comes from (printed when the table applies)
    class_path: lightning_offrl.algos.IQL      # the method it is written for
    datasets:
      hopper-medium-v2:
        model.init_args.tau: 0.005
        model.init_args.deterministic_actor: true

When the run's ``data.dataset`` has a row, its values replace the config file's; a key that the
command line sets keeps the command line's value. Every value applied and every value the command
line kept is logged, so no setting changes unseen. ``--per_dataset null`` turns the table off.

Shipped tables live in ``lightning_offrl/assets/per_dataset/`` and are named by their file stem
(``iql_corl``); any other value is read as a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from lightning_offrl.errors import ConfigError

_SHIPPED = "assets/per_dataset"


@dataclass(frozen=True)
class PerDatasetTable:
    """A parsed table: its name, where its values come from, the method it is for and its rows."""

    name: str
    source: str
    class_path: str | None
    datasets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def row(self, dataset: str) -> Mapping[str, Any]:
        return self.datasets.get(dataset, {})


def shipped_tables() -> list[str]:
    """Names of the tables shipped with the package."""
    folder = resources.files("lightning_offrl").joinpath(_SHIPPED)
    return sorted(entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def load_table(ref: str) -> PerDatasetTable:
    """The table named ``ref`` (a shipped table's name, or a YAML file's path).

    Raises:
        ConfigError: no such table or file, or the file is not a table (the message says what is wrong).
    """
    import yaml

    shipped = resources.files("lightning_offrl").joinpath(_SHIPPED, f"{ref}.yaml")
    if shipped.is_file():
        text, name = shipped.read_text(), ref
    else:
        path = Path(ref).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"per_dataset: {ref!r} is neither a shipped table ({', '.join(shipped_tables())}) nor a file; "
                "name one of those, give the path of your own table, or set --per_dataset null"
            )
        text, name = path.read_text(), str(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"per_dataset table {name}: not valid YAML ({err})".replace("\n", " ")) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("datasets"), dict):
        raise ConfigError(f"per_dataset table {name}: expected a mapping with a 'datasets' mapping "
                          "(dataset name -> {dotted.key: value})")
    for dataset, row in raw["datasets"].items():
        if not isinstance(row, dict):
            raise ConfigError(f"per_dataset table {name}: the row of {dataset!r} is not a mapping of keys to values")
    return PerDatasetTable(name, str(raw.get("source", "")), raw.get("class_path"), raw["datasets"])


def _canonical(key: str) -> str:
    """``model.init_args.tau`` and ``model.tau`` name the same setting."""
    return re.sub(r"(^|\.)init_args\.", r"\1", key)


def command_line_keys(args: Iterable[str]) -> set[str]:
    """The settings an argument list sets (``--model.init_args.tau 0.001`` or ``--model.tau=0.001``)."""
    keys = set()
    for token in args:
        if isinstance(token, str) and token.startswith("--") and len(token) > 2:
            keys.add(_canonical(token[2:].split("=", 1)[0]))
    return keys


def apply_table(config: Any, table: PerDatasetTable, dataset: str, given: set[str]) -> list[str]:
    """Applies ``table``'s row for ``dataset`` to ``config`` (a jsonargparse Namespace) in place.

    Args:
        config: the subcommand's parsed config.
        table: the table.
        dataset: the run's ``data.dataset``.
        given: settings the command line sets (:func:`command_line_keys`); they keep their values.

    Returns:
        One line per value applied or kept, for the log.

    Raises:
        ConfigError: the table is for another method, or names a setting the config does not have.
    """
    row = table.row(dataset)
    if not row:
        return []
    model_class = config.get("model.class_path")
    if table.class_path and model_class and model_class != table.class_path:
        raise ConfigError(
            f"per_dataset table {table.name} is written for {table.class_path}, the model is {model_class}; "
            "name a table for this method or set --per_dataset null"
        )
    lines = []
    for key, value in row.items():
        if key not in config:
            raise ConfigError(
                f"per_dataset table {table.name}, row {dataset}: {key!r} is not a setting of this config "
                "(write keys in full, e.g. model.init_args.tau)"
            )
        before = config[key]
        if _canonical(key) in given:
            lines.append(f"{key} = {before!r} from the command line (the table's {value!r} is not applied)")
            continue
        config[key] = value
        if before != value:
            lines.append(f"{key} = {value!r} (config: {before!r})")
    return lines
