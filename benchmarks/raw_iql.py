"""IQL written as a plain PyTorch loop (the reference of ``train_speed.py --method iql``)."""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from lightning_offrl.algos.iql import IQL
from lightning_offrl.data.buffer import TransitionBuffer


def mlp(i: int, o: int, out_act: nn.Module | None = None) -> nn.Sequential:
    layers = [nn.Linear(i, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, o)]
    return nn.Sequential(*layers, *([out_act] if out_act is not None else []))


def make_module(obs_dim: int, act_dim: int, **kwargs) -> IQL:  # noqa: ANN003
    return IQL(obs_dim, act_dim, **kwargs)


def make_raw_loop(buffer: TransitionBuffer, batch_size: int, gamma: float = 0.99, tau: float = 0.005,
                  expectile: float = 0.7, beta: float = 3.0, max_updates: int = 1_000_000) -> Callable[[], None]:
    obs_dim, act_dim = buffer.obs_dim, buffer.act_dim
    q1, q2 = mlp(obs_dim + act_dim, 1), mlp(obs_dim + act_dim, 1)
    q1_t, q2_t = copy.deepcopy(q1).requires_grad_(False), copy.deepcopy(q2).requires_grad_(False)
    v = mlp(obs_dim, 1)
    actor = mlp(obs_dim, act_dim, nn.Tanh())
    log_std = nn.Parameter(torch.zeros(act_dim))
    q_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=3e-4)
    v_opt = torch.optim.Adam(v.parameters(), lr=3e-4)
    a_opt = torch.optim.Adam([*actor.parameters(), log_std], lr=3e-4)
    a_sched = torch.optim.lr_scheduler.CosineAnnealingLR(a_opt, max_updates)
    n = len(buffer)

    def step() -> None:
        idx = torch.randint(n, (batch_size,))
        s, a, r, s2, d = (buffer.observations[idx], buffer.actions[idx], buffer.rewards[idx],
                          buffer.next_observations[idx], buffer.terminals[idx])
        sa = torch.cat([s, a], -1)
        with torch.no_grad():
            q_t = torch.min(q1_t(sa), q2_t(sa)).squeeze(-1)
        vs = v(s).squeeze(-1)
        u = q_t - vs
        v_loss = (torch.abs(expectile - (u < 0).float()) * u**2).mean()
        v_opt.zero_grad()
        v_loss.backward()
        v_opt.step()

        with torch.no_grad():
            adv = q_t - v(s).squeeze(-1)  # the V just updated, as in IQL's code
        w = torch.exp(beta * adv).clamp(max=100.0)
        mean = actor(s)
        ls = log_std.clamp(-5, 2)
        logp = (-0.5 * ((a - mean) / ls.exp()) ** 2 - ls - 0.9189385).sum(-1)
        a_loss = -(w * logp).mean()
        a_opt.zero_grad()
        a_loss.backward()
        a_opt.step()
        a_sched.step()

        with torch.no_grad():
            target = r + gamma * (1 - d) * v(s2).squeeze(-1)
        q_loss = ((q1(sa).squeeze(-1) - target) ** 2).mean() + ((q2(sa).squeeze(-1) - target) ** 2).mean()
        q_opt.zero_grad()
        q_loss.backward()
        q_opt.step()
        with torch.no_grad():
            for p, pt in zip([*q1.parameters(), *q2.parameters()], [*q1_t.parameters(), *q2_t.parameters()]):
                pt.lerp_(p, tau)

    return step
