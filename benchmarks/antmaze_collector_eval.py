"""Success rate of the antmaze data collector in the evaluation environment.

The collector is the shipped goal-reaching ant following the grid planner's waypoints, acting as the
replicas do (a tanh-Gaussian draw plus ``N(0, 0.2^2)`` noise). Run on the final-evaluation episodes of
``lightning_offrl sweep`` (reset seeds 100000+), its success rate should match the share of the
replica's episodes that pass the evaluation goal: a check that evaluation and data agree.

    python benchmarks/antmaze_collector_eval.py --dataset antmaze-umaze-v2 --episodes 20
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from lightning_offrl.collect.antmaze import (
    ACTION_NOISE_STD,
    AntNavigator,
    load_goal_reaching_policy,
    numpy_policy,
    policy_observation,
)
from lightning_offrl.collect.maze_planner import GridPlanner
from lightning_offrl.envs.mazes import maze_task
from lightning_offrl.envs.tasks import make_env

EVAL_SEED = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="antmaze-umaze-v2")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="seeds the policy's draws and the action noise")
    args = parser.parse_args()
    torch.set_num_threads(1)
    actor, meta = load_goal_reaching_policy()
    task = maze_task(args.dataset)
    env = make_env(args.dataset)
    maze_env = env.env  # MazeTaskEnv under the time limit: its state in D4RL's frame
    navigator = AntNavigator(task, GridPlanner(task.maze.free))
    policy = numpy_policy(actor, ACTION_NOISE_STD, args.seed)
    successes, lengths = 0, []
    for episode in range(args.episodes):
        obs, info = env.reset(seed=EVAL_SEED + episode)
        goal, reward = info["goal"], 0.0
        for step in range(1, 1_000_000):
            qpos, qvel = maze_env.state_d4rl()
            waypoint = navigator.waypoint(obs[:2], goal)
            features = policy_observation(qpos[None], qvel[None], (waypoint - obs[:2])[None])
            obs, reward, terminated, truncated, _ = env.step(policy(features[0]))
            if terminated or truncated:
                break
        successes += int(reward > 0)
        lengths.append(step)
    print(f"{args.dataset}: collector (ant step {meta.get('train_steps', '?')}) succeeded in {successes} "
          f"of {args.episodes} evaluation episodes (reset seeds {EVAL_SEED}+), "
          f"mean length {np.mean(lengths):.1f}")


if __name__ == "__main__":
    main()
