"""Per-dataset settings tables: loading, precedence (table over config file, command line over table), errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from jsonargparse import Namespace

from lightning_offrl.data.d4rl_hdf5 import write_d4rl_hdf5
from lightning_offrl.errors import ConfigError
from lightning_offrl.per_dataset import apply_table, command_line_keys, load_table, shipped_tables
from tests.data.test_hand_kitchen_data import episodes
from tests.test_cli import CONF


def config(tau: float = 0.005, model: str = "lightning_offrl.algos.IQL") -> Namespace:
    return Namespace(model=Namespace(class_path=model, init_args=Namespace(tau=tau, deterministic_actor=False)),
                     data=Namespace(dataset="hopper-medium-v2"))


def test_the_shipped_table_holds_corls_hopper_rows() -> None:
    assert "iql_corl" in shipped_tables()
    table = load_table("iql_corl")
    assert table.class_path == "lightning_offrl.algos.IQL" and "CORL" in table.source
    assert table.row("hopper-medium-v2") == {"model.init_args.deterministic_actor": True, "model.init_args.tau": 0.001}
    assert table.row("hopper-medium-expert-v2") == {"model.init_args.beta": 6.0, "model.init_args.expectile": 0.5}
    assert table.row("walker2d-medium-v2") == {}


def test_the_row_replaces_config_values_and_the_command_line_keeps_its_own() -> None:
    table = load_table("iql_corl")
    cfg = config()
    lines = apply_table(cfg, table, "hopper-medium-v2", given=set())
    assert cfg.model.init_args.tau == 0.001 and cfg.model.init_args.deterministic_actor is True
    assert any("model.init_args.tau = 0.001 (config: 0.005)" in line for line in lines)

    cfg = config()
    given = command_line_keys(["fit", "--config", "x.yaml", "--model.tau=0.01"])
    lines = apply_table(cfg, table, "hopper-medium-v2", given)
    assert cfg.model.init_args.tau == 0.005 and cfg.model.init_args.deterministic_actor is True
    assert any("from the command line" in line and "0.001" in line for line in lines)
    # A dataset without a row leaves everything as it was.
    cfg = config()
    assert apply_table(cfg, table, "walker2d-medium-v2", set()) == [] and cfg.model.init_args.tau == 0.005


def test_bad_tables_get_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a shipped table .*iql_corl.* nor a file"):
        load_table("iql_corll")
    broken = tmp_path / "broken.yaml"
    broken.write_text("datasets: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_table(str(broken))
    no_rows = tmp_path / "no_rows.yaml"
    no_rows.write_text("source: me\n")
    with pytest.raises(ConfigError, match="'datasets' mapping"):
        load_table(str(no_rows))
    typo = tmp_path / "typo.yaml"
    typo.write_text("datasets:\n  hopper-medium-v2:\n    model.init_args.tauu: 0.1\n")
    with pytest.raises(ConfigError, match="'model.init_args.tauu' is not a setting"):
        apply_table(config(), load_table(str(typo)), "hopper-medium-v2", set())
    with pytest.raises(ConfigError, match="written for lightning_offrl.algos.IQL, the model is .*DTQL"):
        apply_table(config(model="lightning_offrl.algos.DTQL"), load_table("iql_corl"), "hopper-medium-v2", set())


def test_fit_on_hopper_medium_trains_with_the_tables_values(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    from lightning_offrl.cli import main

    path = write_d4rl_hdf5(tmp_path / "hopper-medium.hdf5", episodes(11, 3, num_episodes=4, length=30))
    args = ["fit", "--config", str(CONF / "iql_hopper.yaml"), "--data.dataset", "hopper-medium-v2",
            "--data.path", str(path), "--data.batch_size", "16", "--data.batches_per_step", "5",
            "--data.steps_per_epoch", "2", "--model.init_args.hidden_dims", "[16, 16]",
            "--model.init_args.max_updates", "10", "--evaluation.interval", "10", "--evaluation.episodes", "1",
            "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false"]
    with caplog.at_level("INFO"):
        assert main([*args, "--model.init_args.beta", "2.0"]) == 0
    stored = torch.load(tmp_path / "runs" / "iql_hopper" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)
    hp = stored["hyper_parameters"]
    assert hp["deterministic_actor"] is True and hp["tau"] == 0.001 and hp["beta"] == 2.0
    assert "per-dataset settings for hopper-medium-v2 (iql_corl" in caplog.text
    # Turned off, the config file's values train.
    assert main([*args, "--per_dataset", "null"]) == 0
    stored = torch.load(tmp_path / "runs" / "iql_hopper" / "version_1" / "checkpoints" / "last.ckpt", weights_only=False)
    assert stored["hyper_parameters"]["deterministic_actor"] is False and stored["hyper_parameters"]["tau"] == 0.005


def test_every_shipped_table_applies_to_its_configs() -> None:
    # Each row's keys exist in the configs that name the table (checked on the parsed config).
    from lightning_offrl.lightning_cli import OffRLCLI, trainer_defaults
    from lightning_offrl.algos.base import OfflineRLModule
    from lightning_offrl.data.datamodule import D4RLDataModule

    for config_name, table_name, prefix in (("iql_hopper", "iql_corl", "hopper-"),
                                            ("dtql_hopper", "dtql_paper", "hopper-"),
                                            ("dtql_antmaze", "dtql_paper", "antmaze-")):
        cli = OffRLCLI(OfflineRLModule, D4RLDataModule, subclass_mode_model=True, run=False,
                       parser_kwargs={"parser_mode": "omegaconf"}, trainer_defaults=trainer_defaults(),
                       args=["--config", str(CONF / f"{config_name}.yaml"), "--per_dataset", "null"])
        assert cli.config["per_dataset"] is None
        table = load_table(table_name)
        rows = [dataset for dataset in table.datasets if dataset.startswith(prefix)]
        assert rows, (config_name, table_name)
        for dataset in rows:
            cfg = cli.config.clone()
            apply_table(cfg, table, dataset, set())
            for key, value in table.row(dataset).items():
                assert cfg[key] == value, (config_name, dataset, key)
