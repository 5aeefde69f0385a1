"""The ``lightning_offrl`` command as a user runs it: fit, resume, evaluate, datasets, bad input, DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CONF = Path(__file__).resolve().parents[1] / "conf"


def run_cli(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lightning_offrl.cli", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=timeout,
    )


def fit_args(pointgoal_file: Path, updates: int, name: str = "cli") -> list[str]:
    return [
        "fit", "--config", str(CONF / "iql_hopper.yaml"),
        "--data.dataset", "pointgoal-random-v0", "--data.path", str(pointgoal_file),
        "--data.batch_size", "32", "--data.batches_per_step", "5", "--data.steps_per_epoch", "2",
        "--model.init_args.hidden_dims", "[32, 32]", "--model.init_args.max_updates", str(updates),
        "--model.init_args.log_every", "5", "--evaluation.interval", "20", "--evaluation.episodes", "4",
        "--trainer.logger.init_args.name", name,
    ]


def test_fit_writes_events_and_checkpoints_then_resumes(pointgoal_file: Path, tmp_path: Path) -> None:
    first = run_cli(fit_args(pointgoal_file, 20), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = tmp_path / "runs" / "cli" / "version_0"
    assert list(run_dir.glob("events.out.tfevents.*"))
    last = run_dir / "checkpoints" / "last.ckpt"
    assert last.is_file() and list((run_dir / "checkpoints").glob("best-*.ckpt"))
    # The first epoch (10 updates) is not evaluated: the best-score checkpoint skips it without warning.
    assert "could not find the monitored key" not in first.stderr
    assert "normalized score" in first.stdout + first.stderr
    state = torch.load(last, weights_only=True)
    assert int(state["state_dict"]["num_updates"]) == 20

    # Resuming with a larger budget continues the update counter (command-line overrides win).
    second = run_cli([*fit_args(pointgoal_file, 30), "--ckpt_path", str(last)], tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = torch.load(tmp_path / "runs" / "cli" / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert int(resumed["state_dict"]["num_updates"]) == 30

    evaluated = run_cli(["evaluate", "--ckpt_path", str(last), "--episodes", "3"], tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "normalized score:" in evaluated.stdout and "IQL after 20 updates" in evaluated.stdout

    # `test` runs the same evaluation through Lightning's test loop and reports the metrics.
    tested = run_cli(["test", *fit_args(pointgoal_file, 20)[1:], "--ckpt_path", str(last)], tmp_path)
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert "eval/normalized_score" in tested.stdout


@pytest.mark.parametrize(
    "override, message",
    [
        (["--data.dataset", "hopper-mediun-v2"], "did you mean hopper-medium-v2"),
        (["--data.batch_size", "0"], "data.batch_size"),
        (["--model.init_args.optimizer.init_args.lr", "-0.1"], "Invalid learning rate"),
        (["--model.init_args.max_updates", "-5"], "max_updates"),
        (["--model.init_args.no_such_key", "1"], "no_such_key"),
    ],
)
def test_bad_input_gets_one_clear_message(override: list[str], message: str, tmp_path: Path) -> None:
    args = ["fit", "--config", str(CONF / "iql_hopper.yaml"), "--data.replica_steps", "2000",
            "--model.init_args.max_updates", "10", *override]
    result = run_cli(args, tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_fit_without_progress_bar(pointgoal_file: Path, tmp_path: Path) -> None:
    """``--trainer.enable_progress_bar false`` drops the default rich bar instead of failing in Trainer."""
    result = run_cli([*fit_args(pointgoal_file, 10, name="quiet"), "--trainer.enable_progress_bar", "false"],
                     tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "runs" / "quiet" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    assert "Epoch" not in result.stdout + result.stderr  # no bar was drawn


def test_missing_dataset_file_is_reported(tmp_path: Path) -> None:
    result = run_cli(["fit", "--config", str(CONF / "iql_hopper.yaml"), "--data.path", str(tmp_path / "x.hdf5")],
                     tmp_path)
    assert result.returncode == 2 and "no such file" in result.stderr and "Traceback" not in result.stderr


def test_top_level_help_lists_commands(tmp_path: Path) -> None:
    result = run_cli(["--help"], tmp_path)
    assert result.returncode == 0
    for command in ("fit", "validate", "test", "datasets", "evaluate"):
        assert command in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ddp_two_processes_on_cpu(pointgoal_file: Path, tmp_path: Path) -> None:
    args = [*fit_args(pointgoal_file, 20, name="ddp"), "--trainer.accelerator", "cpu", "--trainer.devices", "2",
            "--trainer.strategy", "ddp"]
    result = run_cli(args, tmp_path, timeout=280)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "runs" / "ddp" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert int(state["state_dict"]["num_updates"]) == 20
    assert "eval/normalized_score" in str(state["callbacks"]) or "normalized score" in result.stdout



def test_adept_fit_with_its_own_data_seed_then_evaluate(pointgoal_file: Path, tmp_path: Path) -> None:
    """ADEPT through the CLI as the results sweep runs it: a data seed other than 0, then `evaluate`."""
    small = [
        "fit", "--config", str(CONF / "adept_iql_hopper.yaml"),
        "--data.dataset", "pointgoal-random-v0", "--data.path", str(pointgoal_file), "--data.seed", "1",
        "--seed_everything", "1",
        "--data.batch_size", "32", "--data.batches_per_step", "5", "--data.steps_per_epoch", "2",
        "--model.init_args.learner.init_args.hidden_dims", "[32, 32]", "--model.init_args.hidden_dim", "32",
        "--model.init_args.depth", "2", "--model.init_args.reward_hidden_dims", "[32]",
        "--model.init_args.behavior_hidden_dims", "[32]", "--model.init_args.world_model_batch_size", "64",
        "--model.init_args.world_model_pretrain_updates", "10", "--model.init_args.round_updates", "10",
        "--model.init_args.importance_updates", "2", "--model.init_args.rollout_starts", "16",
        "--model.init_args.max_updates", "20", "--model.init_args.log_every", "5",
        "--model.init_args.synthetic_start_updates", "0",  # rollouts from the first round of this short fit
        "--evaluation.interval", "20", "--evaluation.episodes", "2",
        "--trainer.logger.init_args.name", "adept",
    ]
    fitted = run_cli(small, tmp_path)
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    last = tmp_path / "runs" / "adept" / "version_0" / "checkpoints" / "last.ckpt"
    # The checkpoint describes the learner itself, not ADEPT around it.
    spec = torch.load(last, weights_only=False)["hyper_parameters"]["learner"]
    assert spec["class_path"] == "lightning_offrl.algos.iql.IQL" and "learner" not in spec["init_args"]
    assert spec["init_args"]["hidden_dims"] == [32, 32]

    evaluated = run_cli(["evaluate", "--ckpt_path", str(last), "--episodes", "2"], tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "normalized score:" in evaluated.stdout and "ADEPT after 20 updates" in evaluated.stdout


@pytest.mark.parametrize("name", [f"{prefix}_{task}" for prefix in ("sac_plain", "adept_sac_plain")
                                  for task in ("hopper", "halfcheetah", "walker2d")])
def test_plain_sac_configs_have_two_critics(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from lightning_offrl.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONF / f"{name}.yaml"), "--print_config"])
    assert exit_info.value.code in (0, None)
    init = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]
    sac = init["learner"]["init_args"] if name.startswith("adept") else init
    assert sac["num_critics"] == 2 and sac["hidden_dims"] == [256, 256]
