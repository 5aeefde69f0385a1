"""What a new user meets first: start-up cost, bad --ckpt_path files, resumed settings, config errors,
divergence after a checkpoint, the closing lines of a fit and the TensorBoard x axis.

The fits run in this process (``lightning_offrl.cli.main``), not in subprocesses, so the heavy imports
are paid once; one small IQL fit is shared by the tests that only read its outputs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch

from lightning_offrl.cli import main

CONF = Path(__file__).resolve().parents[1] / "conf"
HEAVY = ("torch", "lightning", "gymnasium", "mujoco", "h5py", "minari", "jsonargparse")


def fit_args(pointgoal_file: Path, root: Path, updates: int, name: str = "run") -> list[str]:
    """A tiny IQL fit on the PointGoal toy data: 10 updates an epoch, evaluation every 20 updates."""
    return [
        "fit", "--config", str(CONF / "iql_hopper.yaml"),
        "--data.dataset", "pointgoal-random-v0", "--data.path", str(pointgoal_file),
        "--data.batch_size", "32", "--data.batches_per_step", "5", "--data.steps_per_epoch", "2",
        "--model.init_args.hidden_dims", "[32, 32]", "--model.init_args.max_updates", str(updates),
        "--model.init_args.log_every", "5", "--evaluation.interval", "20", "--evaluation.episodes", "2",
        "--trainer.logger.init_args.save_dir", str(root / "runs"), "--trainer.logger.init_args.name", name,
        "--trainer.enable_progress_bar", "false",
    ]


def run_main(args: list[str]) -> tuple[int, str, str]:
    """``main(args)`` with its stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(pointgoal_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """One 20-update fit: its run folder and what it printed."""
    root = tmp_path_factory.mktemp("trained")
    code, out, err = run_main(fit_args(pointgoal_file, root, 20))
    assert code == 0, err[-3000:]
    yield root / "runs" / "run" / "version_0", out


# ----------------------------------------------------------------------------------------- start-up
def imported_after(code: str) -> list[str]:
    """The heavy top-level packages a fresh interpreter holds after running ``code``."""
    probe = (f"import sys\n{code}\n"
             f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return eval(result.stdout.strip().splitlines()[-1])  # noqa: S307 - our own printed list


def test_help_imports_neither_torch_nor_lightning() -> None:
    assert imported_after("import lightning_offrl.cli") == []
    assert imported_after("from lightning_offrl.cli import main; main(['--help'])") == []
    assert imported_after(
        "from lightning_offrl.cli import main\ntry:\n    main(['evaluate', '--help'])\nexcept SystemExit:\n    pass"
    ) == []
    # `datasets list` reads the registry and the disk: the environment package, nothing that trains.
    assert "torch" not in imported_after("from lightning_offrl.cli import main; main(['datasets', 'list'])")


# --------------------------------------------------------------------------------------- --ckpt_path
@pytest.mark.parametrize(
    "subcommand, kind",
    [("fit", kind) for kind in ("missing", "truncated", "random bytes", "bare state dict", "other lightning")]
    + [("validate", "truncated"), ("test", "bare state dict")],
)
def test_bad_ckpt_path_gets_one_line_and_status_2(
    trained: tuple[Path, str], pointgoal_file: Path, tmp_path: Path, subcommand: str, kind: str
) -> None:
    last = trained[0] / "checkpoints" / "last.ckpt"
    bad = tmp_path / f"{kind.replace(' ', '_')}.ckpt"
    if kind == "truncated":
        data = last.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "random bytes":
        bad.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                      dtype=torch.uint8).numpy().tobytes())
    elif kind == "bare state dict":
        torch.save(torch.nn.Linear(2, 2).state_dict(), bad)
    elif kind == "other lightning":  # a Lightning checkpoint, but not one of this package's modules
        checkpoint = torch.load(last, weights_only=False)
        del checkpoint["lightning_offrl"]
        torch.save(checkpoint, bad)
    args = fit_args(pointgoal_file, tmp_path, 30)
    code, out, err = run_main([subcommand, *args[1:], "--ckpt_path", str(bad)])
    lines = err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("lightning_offrl: error: --ckpt_path"), err
    assert str(bad) in lines[0] and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # refused before anything was set up
    # `evaluate` says the same thing through the same checker.
    code, _, eval_err = run_main(["evaluate", "--ckpt_path", str(bad)])
    assert code == 2 and eval_err.strip() == lines[0]


# -------------------------------------------------------------------------------------- resumed fit
def test_resume_applies_a_new_learning_rate_and_says_so(
    trained: tuple[Path, str], pointgoal_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    last = trained[0] / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=False)
    assert [g["lr"] for g in saved["optimizer_states"][0]["param_groups"]] == [3e-4]
    with caplog.at_level(logging.INFO):
        code, _, err = run_main([*fit_args(pointgoal_file, tmp_path, 30), "--ckpt_path", str(last),
                                 "--model.init_args.optimizer.init_args.lr", "0.001"])
    assert code == 0, err[-3000:]
    messages = caplog.text
    assert "resumed with model.init_args.optimizer.init_args.lr = 0.001 (checkpoint had 0.0003)" in messages
    assert "resumed with model.init_args.max_updates = 30 (checkpoint had 20)" in messages
    resumed = torch.load(tmp_path / "runs" / "run" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)
    assert int(resumed["lightning_offrl"]["num_updates"]) == 30
    value_opt, critic_opt, actor_opt = resumed["optimizer_states"]
    # IQL's value and critic optimizers run at the new rate; the actor's cosine schedule was rescaled.
    assert value_opt["param_groups"][0]["lr"] == critic_opt["param_groups"][0]["lr"] == 0.001
    assert actor_opt["param_groups"][0]["initial_lr"] == 0.001
    assert resumed["lr_schedulers"][0]["base_lrs"] == [0.001]


def test_resume_refuses_other_network_sizes(trained: tuple[Path, str], pointgoal_file: Path, tmp_path: Path) -> None:
    last = trained[0] / "checkpoints" / "last.ckpt"
    args = [*fit_args(pointgoal_file, tmp_path, 30), "--ckpt_path", str(last),
            "--model.init_args.hidden_dims", "[16, 16]"]
    code, _, err = run_main(args)
    error = [line for line in err.splitlines() if line.startswith("lightning_offrl: error:")]
    assert code == 2 and len(error) == 1, err[-3000:]
    assert "cannot resume" in error[0] and "hidden_dims = [16, 16] (checkpoint had [32, 32])" in error[0]
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------ config errors
@pytest.mark.parametrize(
    "override, message",
    [
        (["--model.init_args.no_such_key", "1"], "model.init_args.no_such_key: unknown option (IQL has no argument"),
        (["--model.init_args.optimizer.init_args.lrr", "1"], "model.init_args.optimizer.init_args.lrr: unknown option"),
        (["--model.init_args.max_updates", "many"], "model.init_args.max_updates: expected int, got 'many'"),
        (["--data.batch_size", "0"], "data.batch_size: 0 does not conform to restriction v>0"),
        (["--data.dataset", "hopper-mediun-v2"], "unknown dataset 'hopper-mediun-v2': did you mean hopper-medium-v2"),
    ],
)
def test_config_errors_print_the_useful_line_first(override: list[str], message: str, tmp_path: Path) -> None:
    code, out, err = run_main(["fit", "--config", str(CONF / "iql_hopper.yaml"),
                               "--trainer.logger.init_args.save_dir", str(tmp_path), *override])
    lines = err.strip().splitlines()
    assert code == 2
    assert lines[0].startswith("lightning_offrl: error: ") and message in lines[0], err
    assert len(lines) <= 2 and not out.strip()  # at most a one-line hint after it, no usage dump


# ------------------------------------------------------------------------------- NaN after a checkpoint
def test_divergence_after_a_checkpoint_names_it_and_leaves_it_intact(
    pointgoal_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightning_offrl.algos import IQL

    checkpoints = tmp_path / "runs" / "run" / "version_0" / "checkpoints"
    snapshot: dict[str, bytes] = {}
    update = IQL.update

    def update_with_nan_data(self: IQL, batch):  # type: ignore[no-untyped-def]
        # From update 25 on (epoch 3; last.ckpt was written at update 20) the batch is poisoned.
        if int(self.num_updates) >= 24:
            if not snapshot:
                snapshot.update({p.name: p.read_bytes() for p in checkpoints.glob("*.ckpt")})
            batch = batch._replace(observations=torch.full_like(batch.observations, float("nan")))
        return update(self, batch)

    monkeypatch.setattr(IQL, "update", update_with_nan_data)
    code, _, err = run_main(fit_args(pointgoal_file, tmp_path, 40))
    error = [line for line in err.splitlines() if line.startswith("lightning_offrl: error:")]
    assert code == 2 and len(error) == 1, err[-3000:]
    assert "became non-finite at update 25" in error[0]
    named = checkpoints / error[0].split("The last good checkpoint is ")[1].split(" (update")[0]
    assert "(update 20), left as it was" in error[0] and named.parent == checkpoints
    assert snapshot and named.name in snapshot
    for name, content in snapshot.items():  # every checkpoint is byte for byte what it was
        assert (checkpoints / name).read_bytes() == content
    restored = torch.load(named, weights_only=False)
    assert int(restored["lightning_offrl"]["num_updates"]) == 20
    assert all(torch.isfinite(t).all() for t in restored["state_dict"].values() if t.is_floating_point())


# ------------------------------------------------------------------------------- outputs of a fit
def test_fit_ends_with_score_folder_and_tensorboard_command(trained: tuple[Path, str]) -> None:
    run_dir, out = trained
    last_lines = [line for line in out.splitlines() if line.strip()][-4:]
    assert last_lines[0].startswith("final score: pointgoal-random-v0 update 20 | return")
    assert "normalized score" in last_lines[0]
    assert last_lines[1] == f"run folder: {run_dir}"
    assert last_lines[2].startswith("checkpoints: ") and str(run_dir / "checkpoints" / "last.ckpt") in last_lines[2]
    assert last_lines[3] == f"TensorBoard: tensorboard --logdir {run_dir.parent}"


def test_every_tensorboard_scalar_is_logged_against_updates(trained: tuple[Path, str]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained[0]))
    events.Reload()
    tags = events.Tags()["scalars"]
    steps = {tag: [event.step for event in events.Scalars(tag)] for tag in tags}
    # IQL makes 3 optimizer steps per update (global_step 60 at the end) and a training_step runs 5
    # updates (4 batches): only update counts may appear.
    assert {"train/critic_loss", "eval/normalized_score", "epoch"} <= set(tags), tags
    assert any(tag.startswith("lr-") for tag in tags), tags
    assert steps["train/critic_loss"] == [5, 10, 15, 20]
    assert steps["eval/normalized_score"] == [20]
    for tag, tag_steps in steps.items():
        assert set(tag_steps) <= {0, 5, 10, 15, 20}, (tag, tag_steps)


def test_quickstart_config_is_short_dtql_on_hopper_medium() -> None:
    import yaml

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stopped:
        main(["fit", "--config", str(CONF / "quickstart.yaml"), "--print_config"])
    assert stopped.value.code in (0, None)
    config = yaml.safe_load(out.getvalue())
    assert config["model"]["class_path"] == "lightning_offrl.algos.DTQL"
    assert config["data"]["dataset"] == "hopper-medium-v2"
    init = config["model"]["init_args"]
    assert (init["pretrain_updates"], init["max_updates"]) == (5000, 6000)
