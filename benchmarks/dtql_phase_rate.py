"""DTQL's training rate per phase through ``lightning_offrl``, in wall time and per CPU-second.

The quick start (``conf/quickstart.yaml``) is sized with these rates. Hopper's shapes, batch 256,
``conf/dtql_hopper.yaml``'s arguments, 10 updates per ``training_step``; the clocks are read at the end
of every ``training_step`` and the first two steps of each phase are left out (warm-up)::

    OMP_NUM_THREADS=1 python benchmarks/dtql_phase_rate.py --threads 1 --updates 150

CPU time (``time.process_time``) is the steadier figure on a shared machine: with one thread it is
close to what the same work takes in wall time on an idle core.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml

from lightning_offrl.algos import DTQL
from lightning_offrl.data.datamodule import D4RLDataModule

CONF = Path(__file__).resolve().parents[1] / "conf" / "dtql_hopper.yaml"
STEP_UPDATES = 10  # updates per training_step
WARMUP_STEPS = 2


class StepClock(pl.Callback):
    """Wall and CPU clocks at the end of every ``training_step``, keyed by the update count."""

    def __init__(self) -> None:
        self.marks: dict[int, tuple[float, float]] = {}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.marks[int(pl_module.num_updates)] = (time.perf_counter(), time.process_time())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--updates", type=int, default=150, help="updates per phase (a multiple of 10)")
    parser.add_argument("--replica_steps", type=int, default=50_000, help="size of the hopper-random replica")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    init = dict(yaml.safe_load(CONF.read_text())["model"]["init_args"])
    for injected in ("optimizer", "critic_optimizer"):  # the defaults are the config's Adam settings
        init.pop(injected)
    init.update(pretrain_updates=args.updates, max_updates=2 * args.updates)
    data = D4RLDataModule(dataset="hopper-random-v2", replica_steps=args.replica_steps, batch_size=256,
                          batches_per_step=STEP_UPDATES, steps_per_epoch=args.updates // STEP_UPDATES)
    data.prepare_data()
    data.setup("fit")
    model = DTQL(obs_dim=data.obs_dim, act_dim=data.act_dim, **init)
    clock = StepClock()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
    trainer.fit(model, datamodule=data)

    start = WARMUP_STEPS * STEP_UPDATES
    for phase, (first, last) in {"pretraining": (start, args.updates),
                                 "co-training": (args.updates + start, 2 * args.updates)}.items():
        updates = last - first
        wall = clock.marks[last][0] - clock.marks[first][0]
        cpu = clock.marks[last][1] - clock.marks[first][1]
        print(f"{phase}: {updates} updates, wall {wall:.1f} s ({updates / wall:.1f}/s), "
              f"CPU {cpu:.1f} s ({updates / cpu:.1f} per CPU-second), {args.threads} thread(s)")


if __name__ == "__main__":
    main()
