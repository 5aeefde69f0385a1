"""Videos of evaluation episodes: frame counts read back from the files, and bad options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from lightning_offrl.cli import main as cli_main
from lightning_offrl.errors import ConfigError
from lightning_offrl.video import record_video


def frames_in(path: Path) -> int:
    """Frames of a video file, decoded (mp4: ffmpeg counts them; gif: Pillow)."""
    if path.suffix == ".mp4":
        return imageio_ffmpeg.count_frames_and_secs(str(path))[0]
    with Image.open(path) as image:
        return image.n_frames


def falling_policy(obs: np.ndarray) -> np.ndarray:
    """Full torque on every joint: the hopper falls within a few dozen steps (a short episode)."""
    return np.ones((obs.shape[0], 3), dtype=np.float32)


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_video_has_one_frame_per_step_plus_the_reset(suffix: str, tmp_path: Path) -> None:
    result = record_video(falling_policy, "hopper-medium-v2", tmp_path / f"hopper{suffix}", size=(64, 48))
    assert len(result.lengths) == 1 and result.lengths.max() < 200
    assert result.frames == int((result.lengths + 1).sum())
    assert frames_in(result.path) == result.frames
    assert result.fps == 125.0  # Hopper-v5's render_fps: real time at 0.008 s per step
    assert not list(tmp_path.glob(".*partial*"))  # the temporary file is gone


def test_maze_task_renders_through_its_env_factory(tmp_path: Path) -> None:
    # maze2d episodes last 300 steps; a small frame keeps software rendering quick.
    result = record_video(lambda o: np.zeros((1, 2), np.float32), "maze2d-umaze-v1", tmp_path / "maze.mp4",
                          size=(32, 32), fps=50)
    assert result.lengths.tolist() == [300] and frames_in(result.path) == 301


def test_unknown_extension_and_bad_size_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match=r"unknown video format '\.avi'.*\*\.mp4 or \*\.gif"):
        record_video(falling_policy, "hopper-medium-v2", tmp_path / "hopper.avi")
    with pytest.raises(ConfigError, match="even width and height"):
        record_video(falling_policy, "hopper-medium-v2", tmp_path / "hopper.mp4", size=(33, 32))
    # The command checks the video options before it reads the checkpoint.
    assert cli_main(["evaluate", "--ckpt_path", "missing.ckpt", "--video", "run.avi"]) == 2
    assert "unknown video format '.avi'" in capsys.readouterr().err
    bad_size = ["evaluate", "--ckpt_path", "missing.ckpt", "--video", "run.gif", "--video_size", "big"]
    assert cli_main(bad_size) == 2
    assert "expected WIDTHxHEIGHT" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_evaluate_writes_a_video_of_its_first_episode(tmp_path: Path) -> None:
    """`evaluate --video` end to end on a checkpoint of a hopper-shaped policy trained on tiny data."""
    from lightning_offrl.data.d4rl_hdf5 import write_d4rl_hdf5
    from tests.algos.conformance import fit
    from lightning_offrl.algos import BC
    from lightning_offrl.data.datamodule import D4RLDataModule

    rng = np.random.default_rng(0)
    n = 400
    data = {
        "observations": rng.normal(size=(n, 11)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, 3)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "next_observations": rng.normal(size=(n, 11)).astype(np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": np.arange(n) % 100 == 99,
    }
    path = write_d4rl_hdf5(tmp_path / "hopper-medium-v2.hdf5", data)
    datamodule = D4RLDataModule(dataset="hopper-medium-v2", path=str(path), batch_size=32, batches_per_step=2,
                                steps_per_epoch=2)
    fit(BC(11, 3, hidden_dims=(16,), max_updates=4), datamodule, tmp_path)
    video = tmp_path / "first.gif"
    done = subprocess.run(
        [sys.executable, "-m", "lightning_offrl.cli", "evaluate",
         "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt"), "--episodes", "1", "--video", str(video), "--video_size", "48x48"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"video: {video} (1 episode," in done.stdout
    frames = int(done.stdout.split(" frames at")[0].rsplit(" ", 1)[1])
    assert frames_in(video) == frames
