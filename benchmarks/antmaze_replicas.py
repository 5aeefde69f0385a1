"""What the antmaze replicas hold: rows, episodes, rewards, falls and successes, one table row each.

Reads each dataset as a fit would (a cached replica, built first if missing: pass ``--build``), and
prints the statistics of :func:`lightning_offrl.collect.antmaze.replica_statistics` with the build time
recorded in the file (``--source d4rl`` describes D4RL's own file instead, for comparison):

    python benchmarks/antmaze_replicas.py --datasets antmaze-umaze-v2 antmaze-umaze-diverse-v2
"""

from __future__ import annotations

import argparse

from lightning_offrl.collect.antmaze import replica_statistics
from lightning_offrl.data.sources import replica_path, resolve_dataset
from lightning_offrl.envs.tasks import get_task

ANTMAZE = ["antmaze-umaze-v2", "antmaze-umaze-diverse-v2", "antmaze-medium-play-v2",
           "antmaze-medium-diverse-v2", "antmaze-large-play-v2", "antmaze-large-diverse-v2"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=ANTMAZE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--build", action="store_true", help="build replicas that are not cached")
    parser.add_argument("--source", choices=["replica", "d4rl", "minari"], default="replica",
                        help="whose data to describe: the replica, or D4RL's own file in $D4RL_DATASET_DIR")
    args = parser.parse_args()
    print("| replica | rows | episodes | rewarded rows | episodes with a flip | rows showing a fall | "
          "episodes reaching the goal (in the eval limit) | median first-success step | build s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.datasets:
        if args.source == "replica" and not args.build and not replica_path(name, args.seed, args.steps).is_file():
            print(f"| {name} | not built (pass --build) | | | | | | | |")
            continue
        data = resolve_dataset(name, source=args.source, seed=args.seed, num_steps=args.steps, progress=False)
        limit = get_task(name).max_episode_steps
        stats = replica_statistics(data.arrays, limit)
        print(f"| {name} | {stats['rows']:,} | {stats['episodes']:,} | {100 * stats['reward_fraction']:.2f}% | "
              f"{stats['flipped_episodes']} ({100 * stats['flipped_episodes'] / stats['episodes']:.1f}%) | "
              f"{stats['flipped_rows']} ({100 * stats['flipped_rows'] / stats['rows']:.2f}%) | "
              f"{stats['rewarded_episodes']} ({stats['rewarded_in_time']} within {limit}) | "
              f"{stats['median_first_reward_step']:.0f} | {data.attrs.get('build_seconds', float('nan')):.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
