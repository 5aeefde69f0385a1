"""``lightning_offrl sweep`` on a local Ray: run folders, results.csv/md, curves, skipping, resuming, bad input."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Iterator

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_offrl.cli import main as cli_main
from lightning_offrl.data.d4rl_hdf5 import data_fingerprint, read_d4rl_hdf5
from lightning_offrl.evaluate import main as evaluate_main
from lightning_offrl.errors import OffRLError
from lightning_offrl.sweep import curve_summary, format_curve, parse_curve, start_local_ray

SEEDS = (0, 1)
UPDATES = 20


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray for the module (its start-up costs seconds); the sweep joins it instead of starting one."""
    import ray

    start_local_ray(num_cpus=2)
    yield
    ray.shutdown()


def sweep_args(pointgoal_file: Path, output: Path, *extra: str) -> list[str]:
    """Two tiny IQL runs (seeds 0 and 1) on the PointGoal toy data, evaluated every 10 updates."""
    sets = [f"data.path={pointgoal_file}", "data.batch_size=32", "data.batches_per_step=5",
            "data.steps_per_epoch=2", "model.init_args.hidden_dims=[32, 32]", "model.init_args.log_every=5",
            "evaluation.interval=10", "evaluation.episodes=2"]
    return ["sweep", "--configs", "iql_hopper", "--datasets", "pointgoal-random-v0",
            "--seeds", *map(str, SEEDS), "--updates", str(UPDATES), *[a for s in sets for a in ("--set", s)],
            "--episodes", "2", "--output", str(output), *extra]


def run_dir(output: Path, seed: int) -> Path:
    return output / "runs" / "iql_hopper" / "pointgoal-random-v0" / f"seed{seed}"


@pytest.mark.slow
@pytest.mark.timeout(1800)  # Ray and three worker processes: 13 min on 2 cores busy with other jobs
def test_sweep_writes_runs_tables_and_curves_then_skips_and_resumes(
    local_ray: None, pointgoal_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "sweep"
    assert cli_main(sweep_args(pointgoal_file, output)) == 0
    out = capsys.readouterr().out
    for seed in SEEDS:
        assert f"done iql_hopper pointgoal-random-v0 seed {seed}: normalized score" in out

    records = {}
    for seed in SEEDS:
        folder = run_dir(output, seed)
        record = json.loads((folder / "result.json").read_text())
        records[seed] = record
        assert record["status"] == "finished" and record["updates"] == UPDATES and record["seed"] == seed
        assert (folder / "checkpoints" / "last.ckpt").is_file() and (folder / "config.yaml").is_file()
        assert record["train_minutes"] > 0 and record["episodes"] == 2 and record["eval_seed"] == 100_000
        assert record["data"] == data_fingerprint(read_d4rl_hdf5(pointgoal_file))  # the arrays it trained on
        # The curve is the fit's own evaluations, as logged to TensorBoard in the run folder.
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        events.Reload()
        logged = [[e.step, round(e.value, 3)] for e in events.Scalars("eval/normalized_score")]
        assert record["curve"] == logged and [u for u, _ in logged] == [10, 20]
        # The final score is `lightning_offrl evaluate` of the last checkpoint on the fixed episodes.
        assert evaluate_main(["--ckpt_path", str(folder / "checkpoints" / "last.ckpt"), "--episodes", "2",
                              "--seed", "100000"]) == 0
        printed = re.search(r"normalized score: (-?[\d.]+)", capsys.readouterr().out)
        assert printed is not None and float(printed.group(1)) == pytest.approx(record["normalized_score"], abs=0.051)

    with open(output / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["config"], r["dataset"], int(r["seed"]), r["status"]) for r in rows] == [
        ("iql_hopper", "pointgoal-random-v0", seed, "finished") for seed in SEEDS]
    assert [float(r["normalized_score"]) for r in rows] == [records[s]["normalized_score"] for s in SEEDS]
    assert {r["data"] for r in rows} == {records[0]["data"]}
    # The in-training curve travels with the row (docs/results keeps it when the sweep folder is gone).
    assert [parse_curve(r["curve"]) for r in rows] == [records[s]["curve"] for s in SEEDS]

    scores = [records[s]["normalized_score"] for s in SEEDS]
    mean, se = sum(scores) / 2, abs(scores[0] - scores[1]) / 2  # s.e. of two values: |a - b| / 2
    table = (output / "results.md").read_text()
    assert (f"| pointgoal-random-v0 | iql_hopper | " in table
            and f"| {UPDATES} | 2 | {mean:.1f} ± {se:.1f} | {scores[0]:.1f}, {scores[1]:.1f} |" in table)
    assert "lightning_offrl sweep --configs iql_hopper" in table  # the command that made it

    assert (output / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = json.loads((output / "curves.json").read_text())["pointgoal-random-v0"]["iql_hopper"]
    assert curves["runs"] == {f"seed{s}": records[s]["curve"] for s in SEEDS}
    assert curves["update"] == [10, 20]
    for i in range(2):
        points = [records[s]["curve"][i][1] for s in SEEDS]
        assert curves["mean"][i] == pytest.approx(sum(points) / 2, abs=1e-3)
        assert curves["se"][i] == pytest.approx(abs(points[0] - points[1]) / 2, abs=1e-3)

    # The report alone, from the run folders: the same results.csv.
    csv_text = (output / "results.csv").read_text()
    (output / "results.csv").unlink()
    assert cli_main(["sweep-report", str(output)]) == 0
    assert (output / "results.csv").read_text() == csv_text

    # A rerun skips both runs, one line each, and rewrites nothing of theirs.
    capsys.readouterr()
    assert cli_main(sweep_args(pointgoal_file, output)) == 0
    out = capsys.readouterr().out
    for seed in SEEDS:
        assert f"skip iql_hopper pointgoal-random-v0 seed {seed}: finished" in out
        assert json.loads((run_dir(output, seed) / "result.json").read_text()) == records[seed]
    assert "start" not in out and "resume" not in out
    assert cli_main(sweep_args(pointgoal_file, output, "--dry-run")) == 0
    assert capsys.readouterr().out.count("finished  iql_hopper") == 2

    # A run left unfinished (as a stopped sweep leaves it) resumes from its last checkpoint.
    stopped = {**records[1], "status": "interrupted"}
    (run_dir(output, 1) / "result.json").write_text(json.dumps(stopped))
    assert cli_main(sweep_args(pointgoal_file, output)) == 0
    out = capsys.readouterr().out
    assert "skip iql_hopper pointgoal-random-v0 seed 0" in out
    assert "resume iql_hopper pointgoal-random-v0 seed 1 from its last checkpoint" in out
    resumed = json.loads((run_dir(output, 1) / "result.json").read_text())
    assert resumed["status"] == "finished" and resumed["attempts"] == 2 and resumed["updates"] == UPDATES
    assert resumed["curve"] == records[1]["curve"]
    assert resumed["normalized_score"] == records[1]["normalized_score"]  # same weights, same episodes

    # Finished runs evaluated again with an acting-time setting: no training, one more row each. IQL's
    # beta only shapes training, so the same weights score the same on the same episodes.
    before = {seed: json.loads((run_dir(output, seed) / "result.json").read_text()) for seed in SEEDS}
    assert cli_main(sweep_args(pointgoal_file, output, "--eval-also", "beta=5.0")) == 0
    out = capsys.readouterr().out
    for seed in SEEDS:
        assert f"evaluate iql_hopper pointgoal-random-v0 seed {seed} with beta=5.0" in out
        after = json.loads((run_dir(output, seed) / "result.json").read_text())
        assert after["attempts"] == before[seed]["attempts"] and after["curve"] == before[seed]["curve"]
        assert after["variants"]["beta=5.0"]["normalized_score"] == pytest.approx(after["normalized_score"])
    with open(output / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(int(r["seed"]), r["evaluated_with"]) for r in rows] == [(0, ""), (0, "beta=5.0"), (1, ""), (1, "beta=5.0")]
    assert "evaluated with beta=5.0" in (output / "results.md").read_text()
    assert cli_main(sweep_args(pointgoal_file, output, "--eval-also", "beta=5.0")) == 0
    assert "evaluate" not in capsys.readouterr().out  # done once

    # Another budget into the same folder is refused, not mixed with the finished runs.
    args = sweep_args(pointgoal_file, output)
    args[args.index("--updates") + 1] = "30"
    assert cli_main(args) == 2
    assert "holds a run made with other settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.init_args.no_such_key=1", "no_such_key"),
        ("data.batch_size=0", "data.batch_size"),
        ("data.dataset=hopper-medium-v2", "use --datasets"),
        ("model.init_args.hidden_dims", "expected KEY=VALUE"),
    ],
)
def test_bad_override_fails_with_one_line_before_anything_runs(
    override: str, message: str, pointgoal_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "sweep"
    assert cli_main([*sweep_args(pointgoal_file, output), "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lightning_offrl: error:") and message in err and "\n" not in err
    assert not output.exists()


@pytest.mark.parametrize(
    "setting, message",
    [("no_such_arg=1", "iql_hopper has no argument no_such_arg"), (",", "needs NAME=VALUE pairs"),
     ("beta", "expected NAME=VALUE")],
)
def test_bad_eval_also_fails_with_one_line_before_anything_runs(
    setting: str, message: str, pointgoal_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "sweep"
    assert cli_main([*sweep_args(pointgoal_file, output), "--eval-also", setting]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not output.exists()


def test_dry_run_lists_the_runs_and_starts_nothing(
    pointgoal_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "sweep"
    assert cli_main(sweep_args(pointgoal_file, output, "--dry-run")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [f"new       iql_hopper pointgoal-random-v0 seed {s} -> "
                         f"runs/iql_hopper/pointgoal-random-v0/seed{s}" for s in SEEDS]
    assert "2 runs; nothing was started" in lines[-1]
    assert not output.exists()


def test_unknown_config_and_dataset_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["sweep", "--seeds", "0", "--output", str(tmp_path / "x"), "--dry-run"]
    assert cli_main([*base, "--configs", "iql_hoper", "--datasets", "hopper-random-v2"]) == 2
    assert "unknown config 'iql_hoper'" in capsys.readouterr().err
    assert cli_main([*base, "--configs", "iql_hopper", "--datasets", "hopper-mediun-v2"]) == 2
    assert "did you mean hopper-medium-v2" in capsys.readouterr().err


def test_curve_cells_round_trip_and_summarise() -> None:
    curve = [[5000, 45.415], [10000, 47.9], [15000, -2.0]]
    assert format_curve(curve) == "5000:45.415 10000:47.9 15000:-2"
    assert parse_curve(format_curve(curve)) == curve
    assert parse_curve("") == [] and parse_curve(None) == []
    with pytest.raises(OffRLError, match="UPDATE:SCORE"):
        parse_curve("5000:45 10000")
    with pytest.raises(OffRLError, match="UPDATE:SCORE"):
        parse_curve("5k:45")
    # Mean over the seeds holding each update; a seed that stopped early counts where it has points.
    assert curve_summary([[[5000, 40.0], [10000, 50.0]], [[5000, 60.0]]]) == "5k 50.0, 10k 50.0"
    assert curve_summary([]) == "-"
    many = [[[1000 * i, float(i)] for i in range(1, 31)]]
    summary = curve_summary(many, max_points=8)
    assert summary.startswith("4k 4.0, 8k 8.0") and summary.endswith("30k 30.0") and summary.count(",") == 7


def test_results_table_keeps_two_builds_of_a_replica_apart() -> None:
    from lightning_offrl.sweep import render_table

    def row(seed: int, score: float, data: str) -> dict[str, str]:
        return {"config": "iql_walker2d", "dataset": "walker2d-medium-replay-v2", "seed": str(seed),
                "status": "finished", "normalized_score": str(score), "updates": "10000", "train_minutes": "3",
                "replica": "True", "data": data}

    lines = render_table([row(0, 16.9, ""), row(1, 16.8, ""), row(0, 21.0, "bea2ab7d947c")]).splitlines()[2:]
    assert len(lines) == 2
    assert lines[0].startswith("| walker2d-medium-replay-v2 (replica) | iql_walker2d |") and "16.9, 16.8" in lines[0]
    assert lines[1].startswith("| walker2d-medium-replay-v2 (replica bea2ab7d947c) |") and "21.0 (one seed)" in lines[1]


def test_results_table_groups_runs_that_shared_a_world_model_cache_with_their_setting() -> None:
    from lightning_offrl.sweep import render_table

    def row(seed: int, overrides: str) -> dict[str, str]:
        return {"config": "adept_iql_hopper", "dataset": "hopper-random-v2", "seed": str(seed), "status": "finished",
                "normalized_score": str(seed + 1.0), "updates": "10000", "train_minutes": "3", "replica": "True",
                "data": "a" * 12, "overrides": overrides}

    mean = "model.init_args.rollout_std_scale=0.0"
    lines = render_table([row(0, mean), row(1, f"{mean} model.init_args.world_model_cache=/tmp/wm")]).splitlines()[2:]
    assert len(lines) == 1 and f"| {mean} |" in lines[0] and "1.0, 2.0" in lines[0]


def test_history_csv_renders_the_results_table() -> None:
    """docs/results/results.csv (the imported records) gives exactly the table in docs/results.md."""
    from lightning_offrl.sweep import read_csv, render_table

    docs = Path(__file__).resolve().parents[1] / "docs"
    text = (docs / "results.md").read_text()
    table = text.split("<!-- results-table -->\n", 1)[1].split("\n<!-- /results-table -->", 1)[0]
    assert render_table(read_csv(docs / "results" / "results.csv")) == table
    assert table.count("\n") > 50  # the whole table, not an empty match


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigterm_stops_the_sweep_gracefully(pointgoal_file: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    output = tmp_path / "sweep"
    args = sweep_args(pointgoal_file, output)
    args[args.index("--updates") + 1] = "200000"  # far more than it can reach before the signal
    args[args.index("--seeds") + 1: args.index("--seeds") + 3] = ["0"]
    command = [sys.executable, "-c", "import sys; from lightning_offrl.cli import main; sys.exit(main(sys.argv[1:]))",
               *args, "--num-cpus", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:  # wait until the run is training: its first checkpoint is written
        lines.append(line)
        if line.startswith("start iql_hopper"):
            break
    deadline = time.monotonic() + 300
    while not (run_dir(output, 0) / "checkpoints" / "last.ckpt").is_file():
        assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=120)
    out = "".join(lines) + rest
    assert process.returncode == 128 + signal.SIGTERM, out
    assert "stopping: cancelling 1 run(s)" in out and "Traceback" not in out
    record = json.loads((run_dir(output, 0) / "result.json").read_text())
    assert record["status"] == "interrupted"
