"""``lightning_offrl evaluate``: return and D4RL normalized score of any method's checkpoint."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from lightning_offrl.checkpoint_file import read_checkpoint
from lightning_offrl.errors import OffRLError

if TYPE_CHECKING:
    from lightning_offrl.algos.base import OfflineRLModule

# numpy, torch, yaml and the methods are imported where they are used, so that
# `lightning_offrl evaluate --help` answers at once.


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["num_candidates=32", "temperature=1.0"]`` -> ``{"num_candidates": 32, "temperature": 1.0}``.

    Values are read as YAML, so numbers, booleans and lists come out typed.
    """
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OffRLError(f"--set {pair!r}: expected NAME=VALUE, e.g. --set num_candidates=32")
        out[key.strip()] = yaml.safe_load(value)
    return out


def load_module(
    ckpt_path: str | Path, map_location: str = "cpu", overrides: Mapping[str, Any] | None = None
) -> tuple[OfflineRLModule, dict[str, Any]]:
    """Rebuilds the method stored in a checkpoint written by ``lightning_offrl fit``.

    Args:
        ckpt_path: the ``.ckpt`` file.
        map_location: device of the loaded tensors.
        overrides: constructor arguments to change (acting-time options such as SWG's
            ``num_candidates`` or DTQL's ``num_action_candidates``); the module is rebuilt with them, so
            they are validated like a config value. Arguments that change network shapes fail to load.

    Returns:
        the module (eval mode) and the checkpoint's data-module information
        (``dataset``, ``is_replica``, ``source``, ``data_fingerprint``, ``num_updates``; ``env_id``, ``ref_min_score`` and
        ``ref_max_score`` for a dataset of the user's own).
    """
    path = Path(ckpt_path)
    checkpoint = read_checkpoint(path, map_location=map_location)
    meta = checkpoint["lightning_offrl"]
    module_name, _, class_name = meta["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    overrides = dict(overrides or {})
    known = {k for k in checkpoint.get("hyper_parameters") or {} if not k.startswith("_")}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise OffRLError(f"{class_name} has no argument {', '.join(unknown)}; its arguments are: "
                         f"{', '.join(sorted(known))}")
    try:
        module = cls.load_from_checkpoint(path, map_location=map_location, **overrides)
    except RuntimeError as err:
        if not overrides or "state_dict" not in str(err):
            raise
        raise OffRLError(
            f"{path}: the overrides {overrides} change the shape of the networks, so the saved weights do "
            "not fit; only acting-time arguments can be changed at evaluation"
        ) from err
    module.eval()
    data_hparams = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    data_state = next(
        (v for k, v in checkpoint.items() if k.endswith("DataModule") and isinstance(v, dict)), {}
    )
    info = {
        "dataset": data_hparams.get("dataset") or data_state.get("dataset"),
        "is_replica": bool(data_state.get("is_replica", False)),
        "source": data_state.get("source"),
        # d4rl_hdf5.data_fingerprint of the arrays the module was trained on (None in older checkpoints)
        "data_fingerprint": data_state.get("fingerprint"),
        "num_updates": int(meta.get("num_updates", 0)),
        # A dataset of the user's own names its environment and reference returns in the data hparams.
        "env_id": data_hparams.get("env_id"),
        "ref_min_score": data_hparams.get("ref_min_score"),
        "ref_max_score": data_hparams.get("ref_max_score"),
    }
    return module, info


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="lightning_offrl evaluate", description=__doc__)
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `lightning_offrl fit`")
    parser.add_argument("--episodes", type=int, default=10, help="number of evaluation episodes")
    parser.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    parser.add_argument("--num_envs", type=int, default=None, help="vectorized environments (default: all)")
    parser.add_argument("--dataset", default=None, help="task to evaluate on (default: the training dataset)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="overrides",
                        help="change an acting-time argument of the method, e.g. --set num_candidates=32 "
                        "--set temperature=1.0 (SWG-R from an SWG checkpoint); repeatable")
    parser.add_argument("--video", default=None, metavar="FILE.mp4|FILE.gif",
                        help="also render episodes 0.. (the same seeds) offscreen into this video")
    parser.add_argument("--video_episodes", type=int, default=1, help="episodes in the video")
    parser.add_argument("--video_size", default="480x480", metavar="WIDTHxHEIGHT",
                        help="frame size in pixels")
    parser.add_argument("--video_fps", type=float, default=None,
                        help="frame rate (default: the task's, real time)")
    args = parser.parse_args(list(argv))
    if args.episodes <= 0:
        parser.error(f"--episodes must be positive, got {args.episodes}")
    if args.video is not None:  # bad video options fail before any work
        from lightning_offrl.video import check_video_path, parse_size

        check_video_path(args.video)
        video_size = parse_size(args.video_size)
        if args.video_episodes <= 0:
            parser.error(f"--video_episodes must be positive, got {args.video_episodes}")

    import numpy as np

    from lightning_offrl.envs.evaluation import evaluate_policy
    from lightning_offrl.envs.tasks import get_task

    overrides = parse_overrides(args.overrides)
    module, info = load_module(args.ckpt_path, overrides=overrides)
    dataset = args.dataset or info["dataset"]
    if not dataset:
        raise OffRLError(f"{args.ckpt_path} does not name its dataset; pass --dataset NAME")
    if dataset == info["dataset"]:
        _register_own_dataset(dataset, info)
    task = get_task(dataset)
    if not task.has_environment:
        raise OffRLError(f"{dataset} was trained without an environment (no data.env_id); pass --dataset NAME of "
                         "a task with one to evaluate this checkpoint there")
    result = evaluate_policy(module.act, dataset, args.episodes, seed=args.seed, num_envs=args.num_envs)
    returns = np.asarray(result.returns, dtype=np.float64)
    se = lambda x: float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0  # noqa: E731
    label = " [replica data: not D4RL's]" if info["is_replica"] else ""
    print(f"{type(module).__name__} after {info['num_updates']} updates on {dataset}{label}")
    if overrides:
        print("with " + " ".join(f"{k}={v}" for k, v in overrides.items()))
    print(f"episodes: {len(returns)}  seed: {args.seed}")
    # Two decimals: antmaze returns are success fractions (0.02 is 2 successes in 100 episodes).
    print(f"return: {returns.mean():.2f} ± {se(returns):.2f}")
    if task.has_reference_scores:
        scores = task.normalized_score(returns)
        print(f"normalized score: {scores.mean():.1f} ± {se(scores):.1f}")
    else:
        print("normalized score: n/a (the task has no reference returns; the return above is raw)")
    if args.video is not None:
        from lightning_offrl.video import record_video

        video = record_video(module.act, dataset, args.video, args.video_episodes, seed=args.seed,
                             size=video_size, fps=args.video_fps)
        count = len(video.lengths)
        episodes = f"{count} episode{'' if count == 1 else 's'}"
        print(f"video: {video.path} ({episodes}, {video.frames} frames at {video.fps:g} fps)")
    return 0


def _register_own_dataset(dataset: str, info: Mapping[str, Any]) -> None:
    """Registers the task of a dataset of the user's own again (a fresh process knows only D4RL's names)."""
    from lightning_offrl.data.registry import is_d4rl_dataset, register_custom_dataset

    if not is_d4rl_dataset(dataset):
        register_custom_dataset(dataset, info.get("env_id"), info.get("ref_min_score"), info.get("ref_max_score"))
