"""Training updates per second: a method through lightning_offrl vs a hand-written PyTorch loop.

Both paths run the same maths on the same data (the q-learning transitions of ``--dataset``) with the
same batch size. The framework path is what ``lightning_offrl fit`` runs: the LightningModule, the
DataModule's device-resident sampler, a TensorBoard logger, the rich progress bar and checkpoint-free
training. The raw loop is plain PyTorch: ``torch.randint`` indices, ``nn.Sequential`` networks,
``torch.optim.Adam``.

    python benchmarks/train_speed.py --method iql --updates 3000 --repeats 3
    python benchmarks/train_speed.py --method iql --device cuda     # both paths on the GPU

With ``--device cuda`` the transitions, the networks and the index draws of both paths live on the GPU
(the framework path as ``fit`` runs there: ``accelerator="gpu"``, a device-resident sampler), and the
clocks stop only after the GPU has finished the timed work.

Methods with a raw loop are registered in ``RAW_LOOPS`` (one module ``benchmarks/raw_<method>.py``
each, exposing ``make_raw_loop(buffer, batch_size) -> step()`` and ``make_module(obs_dim, act_dim)``).
"""

from __future__ import annotations

import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import base_parser, load_buffer, set_threads, synchronize  # noqa: E402

from lightning_offrl.data.buffer import BatchStream  # noqa: E402


def framework_rate(method: str, buffer, args) -> float:  # noqa: ANN001
    raw = importlib.import_module(f"raw_{method}")
    module = raw.make_module(buffer.obs_dim, buffer.act_dim, max_updates=10**9, log_every=1000)
    import torch

    generator = torch.Generator(device=args.device).manual_seed(0)
    per_step = args.batches_per_step
    warm_steps = max(1, args.warmup // per_step)
    timed_steps = max(1, args.updates // per_step)
    stream = BatchStream([(buffer, 1.0)], args.batch_size, per_step, warm_steps + timed_steps, generator)

    class Clock(pl.Callback):
        # From the first timed training_step to the end of the last one: Trainer set-up and teardown
        # (logger flush, callbacks' end-of-fit hooks) are paid once per run, not per update.
        start = end = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # noqa: ANN001
            if batch_idx == warm_steps:
                synchronize(args.device)
                Clock.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # noqa: ANN001
            synchronize(args.device)
            Clock.end = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            default_root_dir=tmp, max_epochs=1, devices=1,
            accelerator="gpu" if args.device == "cuda" else "cpu",
            logger=TensorBoardLogger(tmp, name="bench"), callbacks=[RichProgressBar(), Clock()],
            enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
        )
        trainer.fit(module, train_dataloaders=stream)
        return timed_steps * per_step / (Clock.end - Clock.start)


def raw_rate(method: str, buffer, args) -> float:  # noqa: ANN001
    import torch

    raw = importlib.import_module(f"raw_{method}")
    # The default device puts the raw loop's networks and its ``torch.randint`` draws where the data is.
    with torch.device(args.device):
        step = raw.make_raw_loop(buffer, args.batch_size)
        for _ in range(args.warmup):
            step()
        synchronize(args.device)
        start = time.perf_counter()
        for _ in range(args.updates):
            step()
        synchronize(args.device)
    return args.updates / (time.perf_counter() - start)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--method", default="iql")
    parser.add_argument("--batches_per_step", type=int, default=10, help="updates per training_step")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where both paths train")
    args = parser.parse_args()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: torch sees no CUDA GPU on this machine (use --device cpu)")
    set_threads(args.threads)
    # Moved once: every repeat of both paths reads the same device-resident transitions.
    buffer = load_buffer(args.dataset, args.replica_steps).to(args.device)
    # Interleaved (raw, framework, raw, framework, ...) so both paths see the same machine load.
    raw_all, fw_all = [], []
    for _ in range(args.repeats):
        raw_all.append(raw_rate(args.method, buffer, args))
        fw_all.append(framework_rate(args.method, buffer, args))
    raw, fw = statistics.median(raw_all), statistics.median(fw_all)
    print(f"\non {args.device}")
    print(f"raw loop:   {raw:8.1f} updates/s  {[round(r, 1) for r in raw_all]}")
    print(f"framework:  {fw:8.1f} updates/s  {[round(r, 1) for r in fw_all]}")
    print(f"| {args.method} | {args.batch_size} | {args.threads} | {raw:.0f} | {fw:.0f} | {fw / raw:.2f}x |")


if __name__ == "__main__":
    main()
