"""Videos of evaluation episodes: MuJoCo's offscreen renderer, written as mp4 or gif.

Episode ``i`` is reset with seed ``seed + i``, as in :func:`lightning_offrl.envs.evaluation.evaluate_policy`,
so the video of episode ``i`` shows the episode whose return ``evaluate`` reports. A video holds one
frame after each reset and one after each step: ``length + 1`` frames per episode.

Rendering needs an OpenGL library. On a machine without a display the renderer defaults to EGL
(``MUJOCO_GL=egl``; Mesa's software EGL works without a GPU); ``MUJOCO_GL=osmesa`` selects OSMesa.
mp4 is encoded by the ffmpeg binary that the ``imageio-ffmpeg`` wheel ships; gif by Pillow.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from lightning_offrl.errors import ConfigError, OffRLError

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".gif")
DEFAULT_SIZE: tuple[int, int] = (480, 480)  # width, height: a multiple of 16, as video codecs prefer

# What to install when no OpenGL context can be created (Debian/Ubuntu package names).
RENDER_LIBRARIES_HINT = (
    "install an OpenGL library for offscreen rendering: `apt-get install -y libegl1 libegl-mesa0 "
    "libgl1-mesa-dri libgbm1` (then MUJOCO_GL=egl, the default without a display) or `apt-get install -y "
    "libosmesa6` with MUJOCO_GL=osmesa; scripts/setup.sh installs the EGL ones when run as root"
)


@dataclass(frozen=True)
class VideoResult:
    """What :func:`record_video` wrote.

    Attributes:
        path: the video file.
        frames: frames written (``sum(lengths + 1)``).
        fps: frames per second of the file.
        returns: ``(episodes,)`` the recorded episodes' returns.
        lengths: ``(episodes,)`` their lengths in steps.
    """

    path: Path
    frames: int
    fps: float
    returns: np.ndarray
    lengths: np.ndarray


def check_video_path(path: str | Path) -> Path:
    """The path if its suffix is a known video format, else a ConfigError naming them."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ConfigError(
            f"--video {path}: unknown video format {path.suffix or '(no suffix)'!r}; name the file "
            f"{' or '.join('*' + s for s in VIDEO_SUFFIXES)}"
        )
    return path


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)`` (width, height); ConfigError for anything else."""
    width, sep, height = text.lower().partition("x")
    width, height = width.strip(), height.strip()
    if not (sep and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise ConfigError(f"frame size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 480x480")
    return int(width), int(height)


def _default_gl_backend() -> None:
    # Without a display, gymnasium would try GLFW first and fail; EGL renders headless (Mesa's software
    # EGL needs no GPU). An explicit MUJOCO_GL is kept.
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")


def make_render_env(dataset: str, size: tuple[int, int]) -> Any:
    """The task's environment with ``render_mode="rgb_array"`` at ``size`` (width, height).

    Raises:
        OffRLError: if the task cannot render (no MuJoCo scene) or no OpenGL context can be created.
    """
    from lightning_offrl.envs.tasks import make_env

    _default_gl_backend()
    width, height = size
    try:
        env = make_env(dataset, render_mode="rgb_array", width=width, height=height)
    except TypeError as err:
        raise OffRLError(f"{dataset}: this task cannot render frames ({err})") from err
    if "rgb_array" not in (env.metadata.get("render_modes") or []):
        env.close()
        modes = env.metadata.get("render_modes")
        raise OffRLError(f"{dataset}: this task cannot render frames (its render modes: {modes})")
    return env


def real_time_fps(env: Any) -> float:
    """One frame per simulated step in real time: ``1 / dt`` of the MuJoCo environment.

    The maze tasks run D4RL's ant (0.1 s per step) inside gymnasium-robotics, whose ``render_fps``
    metadata still describes its own ant, so the step duration is read from the simulation itself.
    """
    inner = env.unwrapped
    for candidate in (inner, getattr(inner, "ant_env", None), getattr(inner, "point_env", None)):
        dt = getattr(candidate, "dt", None)
        if isinstance(dt, (int, float)) and dt > 0:
            return 1.0 / float(dt)
    return float(env.metadata.get("render_fps") or 30)


def _frames_of(env: Any, dataset: str) -> Callable[[], np.ndarray]:
    def render() -> np.ndarray:
        try:
            frame = env.render()
        except Exception as err:  # noqa: BLE001 - OpenGL failures come as several exception types
            raise OffRLError(
                f"{dataset}: MuJoCo could not render offscreen with MUJOCO_GL={os.environ.get('MUJOCO_GL')} "
                f"({type(err).__name__}: {err}); {RENDER_LIBRARIES_HINT}"
            ) from err
        return np.asarray(frame, dtype=np.uint8)

    return render


class _VideoWriter:
    """Streams frames into an mp4 (ffmpeg, constant frame rate) or collects them for a gif (Pillow)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self.path, self.fps, self.count = path, fps, 0
        self._gif_frames: list[np.ndarray] = []
        self._writer = None
        if path.suffix.lower() == ".mp4":
            if size[0] % 2 or size[1] % 2:
                raise ConfigError(
                    f"mp4 frames need an even width and height (H.264 4:2:0), got {size[0]}x{size[1]}"
                )
            import imageio.v2 as imageio

            # macro_block_size=1: write the frames at the size asked for, no silent resize to 16 multiples.
            self._writer = imageio.get_writer(
                str(path), format="FFMPEG", mode="I", fps=fps, codec="libx264", macro_block_size=1,
                ffmpeg_log_level="error",
            )

    def append(self, frame: np.ndarray) -> None:
        if self._writer is not None:
            self._writer.append_data(frame)
        else:
            self._gif_frames.append(frame)
        self.count += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            return
        from PIL import Image

        images = [Image.fromarray(frame) for frame in self._gif_frames]
        # GIF delays are whole hundredths of a second; Pillow rounds the duration (ms) it is given.
        images[0].save(
            self.path, save_all=True, append_images=images[1:], duration=1000.0 / self.fps, loop=0,
            optimize=False, disposal=1,
        )


def record_video(
    policy: Callable[[np.ndarray], np.ndarray],
    dataset: str,
    path: str | Path,
    episodes: int = 1,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    fps: float | None = None,
) -> VideoResult:
    """Renders whole episodes of ``policy`` on the task of ``dataset`` into one video file.

    Args:
        policy: observations ``(1, obs_dim)`` float32 -> actions ``(1, act_dim)`` (e.g. ``module.act``).
        dataset: a D4RL dataset or task name.
        path: ``.mp4`` or ``.gif`` file (written to a temporary name, then renamed).
        episodes: episodes to record, ids ``0 .. episodes - 1``.
        seed: episode ``i`` is reset with ``seed + i``.
        size: ``(width, height)`` of the frames in pixels.
        fps: frames per second; default: real time (:func:`real_time_fps`).

    Returns:
        The file, its frame count and rate, and the episodes' returns and lengths.
    """
    path = check_video_path(path)
    if episodes < 1:
        raise ConfigError(f"video episodes must be >= 1, got {episodes}")
    if fps is not None and fps <= 0:
        raise ConfigError(f"video fps must be positive, got {fps}")
    env = make_render_env(dataset, size)
    render = _frames_of(env, dataset)
    fps = float(fps or real_time_fps(env))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    returns, lengths = [], []
    try:
        writer = _VideoWriter(tmp, fps, size)
        try:
            for episode in range(episodes):
                for _ in _episode(env, policy, seed + episode, returns, lengths):
                    writer.append(render())
        finally:
            writer.close()
        os.replace(tmp, path)
        return VideoResult(path, writer.count, fps, np.asarray(returns), np.asarray(lengths))
    finally:
        env.close()
        tmp.unlink(missing_ok=True)


def _episode(
    env: Any, policy: Callable[[np.ndarray], np.ndarray], seed: int, returns: list[float], lengths: list[int]
) -> Iterator[None]:
    """Runs one episode, yielding after the reset and after every step (a frame each)."""
    obs, _ = env.reset(seed=seed)
    low, high = env.action_space.low, env.action_space.high
    total, steps, done = 0.0, 0, False
    yield
    while not done:
        action = np.asarray(policy(np.asarray(obs, dtype=np.float32)[None]))[0]
        action = np.clip(action, low, high).astype(env.action_space.dtype)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        steps += 1
        done = bool(terminated or truncated)
        yield
    returns.append(total)
    lengths.append(steps)
