"""Success rate of the antmaze data collector in the evaluation environment.

The collector is the shipped goal-reaching ant following D4RL's waypoints (``--navigation centres``:
waypoints at cell centres), acting as the replicas do (a tanh-Gaussian draw plus ``N(0, 0.2^2)`` noise), in D4RL's evaluation episodes (start at
the R cell, a fresh noisy goal in the evaluation cell, D4RL's time limit: umaze 700 steps, medium and
large 1000). If the collector cannot reach the goal in time, no learner trained on its data can be
expected to; D4RL's umaze data supports BC at 55-65%.

    python benchmarks/antmaze_collector_eval.py --datasets antmaze-umaze-v2 antmaze-medium-play-v2 \
        antmaze-large-play-v2 --episodes 100 --seeds 0 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lightning_offrl.collect.antmaze import (
    ACTION_NOISE_STD,
    NAVIGATION_STYLES,
    AntNavigator,
    load_goal_reaching_policy,
    numpy_policy,
    policy_observation,
)
from lightning_offrl.collect.maze_planner import GridPlanner
from lightning_offrl.envs.d4rl_ant import is_flipped
from lightning_offrl.envs.mazes import maze_task
from lightning_offrl.envs.tasks import get_task, make_env

EVAL_SEED = 100_000


def collector_episodes(dataset: str, episodes: int, seed: int, navigation: str = "d4rl") -> dict[str, float]:
    """Runs the collector in ``episodes`` evaluation episodes (reset seeds ``EVAL_SEED + 1000 seed + i``)."""
    actor, _ = load_goal_reaching_policy()
    task = maze_task(dataset)
    env = make_env(dataset)
    maze_env = env.env  # MazeTaskEnv under the time limit: its state in D4RL's frame
    navigator = AntNavigator(task, GridPlanner(task.maze.free), navigation, np.random.default_rng([seed, 1]))
    policy = numpy_policy(actor, ACTION_NOISE_STD, seed)
    success_steps: list[int] = []
    flips = 0
    for episode in range(episodes):
        obs, info = env.reset(seed=EVAL_SEED + 1000 * seed + episode)
        goal, reward, flipped = info["goal"], 0.0, False
        for step in range(1, 1_000_000):
            qpos, qvel = maze_env.state_d4rl()
            waypoint = navigator.waypoint(obs[:2], goal)
            features = policy_observation(qpos[None], qvel[None], (waypoint - obs[:2])[None])
            obs, reward, terminated, truncated, _ = env.step(policy(features[0]))
            flipped |= bool(is_flipped(obs))
            if terminated or truncated:
                break
        if reward > 0:
            success_steps.append(step)
        flips += int(flipped)
    env.close()
    return {"successes": len(success_steps), "episodes": episodes, "flipped": flips,
            "median_success_step": float(np.median(success_steps)) if success_steps else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["antmaze-umaze-v2"])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="each seeds the policy's draws, the action noise and its own evaluation episodes")
    parser.add_argument("--navigation", choices=NAVIGATION_STYLES, default="d4rl",
                        help="waypoints as D4RL's collector made them (the replicas' recipe) or at cell centres")
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, meta = load_goal_reaching_policy()
    print(f"collector: goal-reaching ant of step {meta.get('train_steps', '?')}, acting with N(0, "
          f"{ACTION_NOISE_STD}^2) noise")
    print("| dataset | time limit | seed | success | flipped episodes | median success step | wall s |")
    print("|---|---|---|---|---|---|---|")
    for dataset in args.datasets:
        limit = get_task(dataset).max_episode_steps
        for seed in args.seeds:
            start = time.perf_counter()
            result = collector_episodes(dataset, args.episodes, seed, args.navigation)
            print(f"| {dataset} | {limit} | {seed} | {result['successes']}/{result['episodes']} | "
                  f"{result['flipped']} | {result['median_success_step']:.0f} | {time.perf_counter() - start:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
