"""The command line on Adroit-shaped files and on datasets of the user's own: fit, resume, evaluate, DDP."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_offrl.data.d4rl_hdf5 import write_d4rl_hdf5
from tests.data.test_hand_kitchen_data import episodes
from tests.test_cli import CONF, run_cli


def fit_args(path: Path, dataset: str, updates: int, name: str, root: Path, *extra: str) -> list[str]:
    return [
        "fit", "--config", str(CONF / "bc_adroit.yaml"), "--data.dataset", dataset, "--data.path", str(path),
        "--data.batch_size", "16", "--data.batches_per_step", "5", "--data.steps_per_epoch", "2",
        "--model.init_args.hidden_dims", "[16, 16]", "--model.init_args.max_updates", str(updates),
        "--model.init_args.log_every", "5", "--evaluation.interval", "20", "--evaluation.episodes", "1",
        "--trainer.logger.init_args.name", name, "--trainer.logger.init_args.save_dir", str(root / "runs"),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra,
    ]


def test_fit_on_an_adroit_file_resumes_from_its_checkpoint_and_evaluates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process (the same code as the console script, without a new interpreter per command).
    from lightning_offrl.cli import main

    path = write_d4rl_hdf5(tmp_path / "door-human.hdf5", episodes(39, 28, num_episodes=4, length=20))
    assert main(fit_args(path, "door-human-v1", 20, "door", tmp_path)) == 0
    assert "door-human-v1 update 20" in capsys.readouterr().out
    last = tmp_path / "runs" / "door" / "version_0" / "checkpoints" / "last.ckpt"
    assert main([*fit_args(path, "door-human-v1", 30, "door", tmp_path), "--ckpt_path", str(last)]) == 0
    resumed = torch.load(tmp_path / "runs" / "door" / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert int(resumed["state_dict"]["num_updates"]) == 30
    capsys.readouterr()
    assert main(["evaluate", "--ckpt_path", str(last), "--episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert "BC after 20 updates on door-human-v1" in out and "normalized score:" in out
    # The export path works for the task's 39 -> 28 policy as for the others: the ONNX file equals act().
    import numpy as np
    import onnxruntime

    from lightning_offrl.evaluate import load_module

    onnx_file = tmp_path / "door.onnx"
    assert main(["export", "--ckpt_path", str(last), "--format", "onnx", "--output", str(onnx_file)]) == 0
    obs = np.random.default_rng(0).normal(size=(5, 39)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    exported = session.run(None, {session.get_inputs()[0].name: obs})[0]
    module, _ = load_module(last)
    np.testing.assert_allclose(exported, module.act(obs), atol=1e-5)


def test_own_dataset_without_an_environment_checkpoints_without_evaluating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from lightning_offrl.cli import main

    path = write_d4rl_hdf5(tmp_path / "logs.hdf5", episodes(5, 2))
    with caplog.at_level("INFO", logger="lightning_offrl"):
        assert main(fit_args(path, "robot-logs-v0", 20, "own", tmp_path)) == 0
    assert sum("evaluation off" in record.message for record in caplog.records) == 1
    assert "update 20 |" not in capsys.readouterr().out
    checkpoints = tmp_path / "runs" / "own" / "version_0" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt"]
    assert main(["evaluate", "--ckpt_path", str(checkpoints / "last.ckpt")]) == 2
    assert "trained without an environment" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ddp_fit_on_an_own_dataset_evaluates_on_both_ranks(tmp_path: Path) -> None:
    # Every DDP process registers the user's task itself (the DataModule is built in each one); the two
    # evaluation episodes are split over the ranks and gathered.
    path = write_d4rl_hdf5(tmp_path / "mine.hdf5", episodes(39, 28, num_episodes=4, length=20))
    args = fit_args(path, "my-door", 20, "ddp", tmp_path, "--data.env_id", "AdroitHandDoor-v1", "--data.ref_min_score",
                    "-56.512833", "--data.ref_max_score", "2880.5693", "--evaluation.episodes", "2",
                    "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp")
    result = run_cli(args, tmp_path, timeout=580)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "my-door update 20" in result.stdout and "2 episodes" in result.stdout
    state = torch.load(tmp_path / "runs" / "ddp" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert int(state["state_dict"]["num_updates"]) == 20


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bc_adroit", "bc_kitchen", "iql_adroit", "iql_kitchen", "dtql_adroit",
                                  "dtql_kitchen", "swg_adroit", "swg_kitchen"])
def test_configs_parse_with_their_cited_values(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from lightning_offrl.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONF / f"{name}.yaml"), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    dataset = printed["data"]["dataset"]
    assert dataset.startswith("kitchen-") if "kitchen" in name else dataset.endswith("-v1")
    if name.startswith("iql"):
        init = printed["model"]["init_args"]
        assert (init["expectile"], init["beta"], init["actor_dropout"]) == (0.7, 0.5, 0.1)
