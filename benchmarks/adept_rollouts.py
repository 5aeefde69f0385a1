"""ADEPT's costs: synthetic transitions per second, and the split of one round of its closed loop.

1. **Rollout throughput**: ``generate_rollouts`` with the paper's world model (DDPM, denoiser 256 x 3,
   cosine schedule, ``--diffusion_steps`` steps, classifier-free guidance 0.1, so every denoising
   step is one network call on a doubled batch) from ``--rollout_starts`` dataset states for
   ``--horizon`` steps, actions from the learner's stochastic actor. The terminal head is biased to
   "never" so every rollout runs the full horizon: the figure is the cost of ``starts x horizon``
   transitions.
2. **One round**: ADEPT is fit with a Lightning Trainer on the dataset (the ``lightning_offrl fit``
   path without logger or progress bar) for ``--rounds`` rounds after a token pretraining, and the
   wall time inside each phase is accumulated: importance-sampled world-model updates, rollouts,
   learner updates; the rest (batch sampling, Lightning's loop) is reported as "other".

    python benchmarks/adept_rollouts.py --learner iql --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from typing import Any, Callable

import lightning.pytorch as pl
import torch

from common import synchronize  # benchmarks/ is the script's folder, first on sys.path

from lightning_offrl.algos.adept import ADEPT
from lightning_offrl.data.datamodule import D4RLDataModule

LEARNERS = {
    "iql": ("lightning_offrl.algos.IQL", {"hidden_dims": [256, 256]}, "gaussian"),
    "sac": (
        "lightning_offrl.algos.SAC", {"hidden_dims": [256, 256, 256], "num_critics": 10}, "tanh_gaussian"
    ),
}


def make_module(obs_dim: int, act_dim: int, learner: str, args: argparse.Namespace, **kwargs: Any) -> ADEPT:
    class_path, init_args, behavior = LEARNERS[learner]
    return ADEPT(
        obs_dim, act_dim, learner={"class_path": class_path, "init_args": init_args},
        behavior_policy=behavior, diffusion_steps=args.diffusion_steps, rollout_starts=args.rollout_starts,
        rollout_horizon=args.horizon, **kwargs,
    )


def rollout_throughput(
    datamodule: D4RLDataModule, args: argparse.Namespace
) -> tuple[float, list[float], float]:
    """Synthetic transitions per second over ``args.repeats`` calls of ``generate_rollouts``.

    Returns the median wall-clock rate, all wall-clock rates, and the median rate per second of this
    process's CPU time (steadier than wall time when other jobs share the cores).
    """
    assert datamodule.buffer is not None
    device = datamodule.buffer.device
    module = make_module(datamodule.obs_dim, datamodule.act_dim, args.learner, args).to(device)
    module.attach_dataset(datamodule.buffer)
    with torch.no_grad():
        module.reward_model.output_layer.bias[1] = -1e4  # no early terminal: full-horizon rollouts
    module.generate_rollouts()  # warm-up
    rates, cpu_rates = [], []
    for _ in range(args.repeats):
        module.rollout_buffer.clear()
        synchronize(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        stats = module.generate_rollouts()
        synchronize(device)
        transitions = float(stats["rollout/transitions"])
        rates.append(transitions / (time.perf_counter() - start))
        cpu_rates.append(transitions / (time.process_time() - cpu_start))
    return statistics.median(rates), rates, statistics.median(cpu_rates)


def timed(
    seconds: dict[str, float], cpu_seconds: dict[str, float], calls: dict[str, int], key: str,
    fn: Callable[..., Any], device: torch.device,
) -> Callable[..., Any]:
    def wrapper(*a: Any, **kw: Any) -> Any:
        synchronize(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        out = fn(*a, **kw)
        synchronize(device)
        seconds[key] += time.perf_counter() - start
        cpu_seconds[key] += time.process_time() - cpu_start
        calls[key] += 1
        return out

    return wrapper


def round_split(datamodule: D4RLDataModule, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """Seconds per round in each phase of the closed loop.

    Each phase's mean cost per call (over ``args.rounds`` rounds) times its calls per round: one rollout
    generation, ``importance_updates`` world-model updates, ``round_updates`` learner updates; "other"
    is the untimed rest of the loop per learner update, times ``round_updates``. Each entry is
    ``(wall seconds, CPU seconds of this process)``.
    """
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    module = make_module(
        datamodule.obs_dim, datamodule.act_dim, args.learner, args,
        world_model_pretrain_updates=args.batches_per_step, round_updates=args.round_updates,
        importance_updates=args.importance_updates, max_updates=args.rounds * args.round_updates + 1,
        log_every=10**9,
    )
    seconds: dict[str, float] = defaultdict(float)
    cpu_seconds: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    phases = {
        "importance-sampled world-model updates": (
            module, "importance_sampled_update", args.importance_updates
        ),
        "rollouts": (module, "generate_rollouts", 1),
        "learner updates": (module.learner, "update", args.round_updates),
    }
    for key, (owner, name, _) in phases.items():
        setattr(owner, name, timed(seconds, cpu_seconds, calls, key, getattr(owner, name), device))

    class Clock(pl.Callback):
        start = cpu_start = 0.0
        total = cpu_total = 0.0

        def on_train_batch_start(
            self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int
        ) -> None:
            if not module.in_pretraining and Clock.start == 0.0:
                Clock.start, Clock.cpu_start = time.perf_counter(), time.process_time()

        def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            Clock.total = time.perf_counter() - Clock.start
            Clock.cpu_total = time.process_time() - Clock.cpu_start

    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            default_root_dir=tmp, max_epochs=-1, accelerator=accelerator, devices=1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, callbacks=[Clock()],
        )
        trainer.fit(module, datamodule=datamodule)
    per_round = {
        key: (seconds[key] / max(calls[key], 1) * count, cpu_seconds[key] / max(calls[key], 1) * count)
        for key, (_, _, count) in phases.items()
    }
    scale = args.round_updates / calls["learner updates"]
    per_round["other (batch sampling, Lightning loop)"] = (
        (Clock.total - sum(seconds.values())) * scale, (Clock.cpu_total - sum(cpu_seconds.values())) * scale
    )
    per_round["total"] = (sum(v[0] for v in per_round.values()), sum(v[1] for v in per_round.values()))
    return per_round


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="hopper-random-v2")
    parser.add_argument(
        "--replica_steps", type=int, default=50_000, help="rows of the replica (built if missing)"
    )
    parser.add_argument("--learner", choices=sorted(LEARNERS), default="iql")
    parser.add_argument("--rollout_starts", type=int, default=1024, help="rollout batch")
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--diffusion_steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="rounds timed for the cost split")
    parser.add_argument("--round_updates", type=int, default=1000)
    parser.add_argument("--importance_updates", type=int, default=100)
    parser.add_argument("--batches_per_step", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pl.seed_everything(0, verbose=False)

    datamodule = D4RLDataModule(
        dataset=args.dataset, replica_steps=args.replica_steps, batch_size=256,
        batches_per_step=args.batches_per_step, steps_per_epoch=100,
        reward_transform="return_range" if args.learner == "iql" else "none",
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert datamodule.buffer is not None
    if torch.cuda.is_available():
        datamodule.buffer = datamodule.buffer.to("cuda")
    cpu_name = f"CPU, {args.threads} thread(s)"
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_name

    rate, rates, cpu_rate = rollout_throughput(datamodule, args)
    print(f"\n{args.dataset}, {device_name}: rollouts of {args.rollout_starts} starts x "
          f"{args.horizon} steps, "
          f"{args.diffusion_steps} denoising steps, CFG 0.1")
    print(f"synthetic transitions/s: {rate:,.0f} wall (repeats: {[round(r) for r in rates]}), "
          f"{cpu_rate:,.0f} per CPU-second")

    datamodule = D4RLDataModule(
        dataset=args.dataset, replica_steps=args.replica_steps, batch_size=256,
        batches_per_step=args.batches_per_step, steps_per_epoch=100,
        reward_transform="return_range" if args.learner == "iql" else "none",
    )
    split = round_split(datamodule, args)
    print(f"\none round with {args.learner}: {args.round_updates} learner updates (batch 256), "
          f"{args.importance_updates} importance-sampled world-model updates (batch 1024), rollouts as above")
    total, cpu_total = split["total"]
    print("| phase | wall s | share | CPU s | share |")
    for key, (wall, cpu) in split.items():
        wall_share, cpu_share = 100 * wall / total, 100 * cpu / cpu_total
        print(f"| {key} | {wall:.2f} | {wall_share:.0f}% | {cpu:.2f} | {cpu_share:.0f}% |")


if __name__ == "__main__":
    main()
