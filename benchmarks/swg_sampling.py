"""Latency of SWG's guided 15-step sampling: per call and per action, batch 1 and 256.

Times ``SWG.sample`` (what ``act()`` and evaluation run) at hopper's shapes with the paper-sized
denoiser (ResNet-MLP 3 x 256, 1.8M parameters), for

- ``swg``: self-weighted guidance (one forward and one input-gradient per step), temperature 0;
- ``unguided``: guidance scale 0 (forward only), the cost floor of the same model;
- ``swg_r``: SWG-R, ``K`` guided candidates per state scored by the critic;
- ``raw``: the same guided sampler hand-written in plain PyTorch (``benchmarks/raw_swg.py``'s
  network, an explicit loop and ``torch.autograd.grad``), the reference for the framework's cost.

    python benchmarks/swg_sampling.py --threads 2 --repeats 5

Network weights are random: latency does not depend on them.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import set_threads  # noqa: E402
from raw_swg import STEPS, RawDenoiser  # noqa: E402

from lightning_offrl.algos.swg import SWG  # noqa: E402
from lightning_offrl.diffusion import VPDiffusion  # noqa: E402


def raw_guided_sampler(obs_dim: int, act_dim: int, scale: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """SWG's Algorithm 2 by hand: temperature-0 DDPM with the self-weighted guided noise."""
    net = RawDenoiser(act_dim + 1, obs_dim).eval()
    schedule = VPDiffusion.vp(STEPS)
    abar = schedule.alphas_cumprod.tolist()
    coef_x0, coef_xt = schedule.posterior_mean_coef_x0.tolist(), schedule.posterior_mean_coef_xt.tolist()
    low = torch.tensor([-1.0] * act_dim + [1e-4])
    high = torch.ones(act_dim + 1)

    def sample(obs: torch.Tensor) -> torch.Tensor:
        z = torch.zeros(obs.shape[0], act_dim + 1)
        for step in reversed(range(STEPS)):
            t = torch.full((obs.shape[0],), step)
            sigma, root_abar = (1 - abar[step]) ** 0.5, abar[step] ** 0.5
            with torch.enable_grad():
                z_in = z.detach().requires_grad_(True)
                eps = net(z_in, t, obs)
                weight = ((z_in[:, -1] - sigma * eps[:, -1]) / root_abar).clamp(1e-4, 1.0)
                (grad,) = torch.autograd.grad(weight.log().sum(), z_in)
            eps = eps.detach() - scale * sigma * grad
            x0 = torch.clamp((z - sigma * eps) / root_abar, low, high)
            z = x0 if step == 0 else coef_x0[step] * x0 + coef_xt[step] * z
        return z[:, :act_dim]

    return sample


def interleaved_latency_ms(
    variants: dict[str, Callable[[], object]], calls: int, repeats: int
) -> dict[str, tuple[float, float]]:
    """Per variant, medians over ``repeats`` of the mean wall and CPU time of ``calls`` calls, in ms.

    The variants take turns within each repeat, so a change of machine load hits all of them alike;
    CPU time (this process, all threads) is the steadier figure on a shared machine.
    """
    for fn in variants.values():
        fn()  # warm-up
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(calls):
                fn()
            wall[name].append((time.perf_counter() - wall_start) / calls * 1e3)
            cpu[name].append((time.process_time() - cpu_start) / calls * 1e3)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in variants}


def main() -> None:
    from common import base_parser

    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--obs_dim", type=int, default=11, help="hopper: 11")
    parser.add_argument("--act_dim", type=int, default=3, help="hopper: 3")
    parser.add_argument("--guidance_scale", type=float, default=10.0)
    parser.add_argument("--candidates", type=int, default=32, help="K of SWG-R")
    parser.add_argument("--calls", type=int, default=10, help="timed calls per repeat at batch 1")
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    module = SWG(args.obs_dim, args.act_dim, guidance_scale=args.guidance_scale).eval()
    raw = raw_guided_sampler(args.obs_dim, args.act_dim, args.guidance_scale)
    print(f"denoiser parameters: {sum(p.numel() for p in module.denoiser.parameters()):,}; "
          f"{STEPS} steps; threads {args.threads}")
    print("| batch | sampler | wall ms per call | CPU ms per call | CPU ms per action |")
    print("|---|---|---|---|---|")
    for batch in (1, 256):
        obs = torch.randn(batch, args.obs_dim)
        calls = args.calls if batch == 1 else max(1, args.calls // 5)
        variants: dict[str, Callable[[], object]] = {
            "swg": lambda: module.policy(obs),
            "unguided": lambda: module.sample(obs, guidance_scale=0.0),
            "raw": lambda: raw(obs),
        }
        if batch == 1:  # K x 256 candidates per call is an evaluation nobody runs
            module.set_sampling(num_candidates=args.candidates, temperature=1.0)
            swg_r = copy.deepcopy(module)
            module.set_sampling(num_candidates=1, temperature=0.0)
            variants[f"swg_r (K={args.candidates})"] = lambda: swg_r.policy(obs)
        with torch.no_grad():
            timings = interleaved_latency_ms(variants, calls, args.repeats)
        for name, (wall_ms, cpu_ms) in timings.items():
            print(f"| {batch} | {name} | {wall_ms:.1f} | {cpu_ms:.1f} | {cpu_ms / batch:.3f} |", flush=True)


if __name__ == "__main__":
    main()
