"""What ADEPT's world model believes its policy earns, next to what the policy earns in the simulator.

ADEPT's learner trains on rollouts of its own policy in the world model. Where the model is too kind to
the policy's actions, the synthetic rewards rise while the real score does not: the learner exploits
the model. This script measures that gap directly on a finished ADEPT checkpoint. From the same
``--starts`` dataset states it runs the policy's rollout actions (``sample_policy_actions``: the
learner's policy with the run's ``rollout_std_scale``) for ``--horizon`` steps twice:

* in the world model, exactly as a round of ADEPT does (guided DDPM next states, the reward head,
  the terminal head);
* in the MuJoCo simulator, put into each start state (``set_state`` with the positions and velocities
  the observation holds; the script checks that the simulator then reports the same observation).

Rewards are compared on the learner's scale (the run's reward transform applied to the simulator's
rewards). Printed: the mean reward per step and the mean ``horizon``-step return in the model and in
the simulator, their difference (model minus simulator, with its standard error over start states),
and the share of rollouts that end early in each. A gap far above zero while the run's score falls
is the exploitation the uncertainty penalty is meant to stop; with ``uncertainty_samples`` or
``uncertainty_ensemble`` set in the run, the rollouts' uncertainty is printed too, to tell whether
the run's signal sees it: its level on the start states with the dataset's own actions, with the
policy's actions, and along the model's rollouts, and how well each rollout's summed uncertainty
predicts its gap (Pearson and rank correlation over start states, and the penalty ``lambda`` that would
cancel the mean gap).

Where the gap starts is printed too, from the first step alone: the world model's next-state error
(norm, in its standardised units) and reward error with the dataset's own actions (against the
dataset's next states and rewards) and with the policy's (against the simulator's, for the same
action), and the reward head's error given the simulator's next state, which separates a wrong
reward head from wrong dynamics.

``--compare CKPT ...`` puts other runs' policies (any method, IQL alone among them) into the simulator
from the same start states beside this run's, each acting as it does in evaluation (its deterministic
action), for ``--sim-horizon`` steps (default: the rollout horizon). A policy that earns more than
another over ten steps from the data's states and less over a whole episode has learned what the
model's short rollouts can show and nothing of the states they never reach.

A signal can be tried on a finished run without training ADEPT again: ``--fit-ensemble K`` fits a fresh
dynamics ensemble (``--ensemble-signal disagreement`` or ``max_std``, MOPO's) on the run's dataset the
way ADEPT's pretraining does (``ensemble_batch_size`` rows, Adam at 3e-4, ``--fit-updates`` updates;
the rows ADEPT holds out stay out) and measures it instead of the run's own.

    python benchmarks/adept_model_vs_env.py \\
        runs/sweeps/adept/runs/adept_iql_halfcheetah/halfcheetah-random-v2/seed0/checkpoints/last.ckpt
    python benchmarks/adept_model_vs_env.py CKPT --fit-ensemble 5 --ensemble-signal max_std
    python benchmarks/adept_model_vs_env.py CKPT --compare IQL_CKPT --sim-horizon 100

Works for the locomotion tasks whose observation is the simulator's positions without the first
coordinate, then its velocities (hopper, halfcheetah, walker2d, ant without contact forces).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from lightning_offrl.algos.adept import ADEPT
from lightning_offrl.checkpoint_file import read_checkpoint
from lightning_offrl.data.datamodule import D4RLDataModule
from lightning_offrl.envs.tasks import make_env
from lightning_offrl.errors import ConfigError
from lightning_offrl.evaluate import load_module
from lightning_offrl.networks import EnsembleMLP, GaussianEnsemble


def simulator_state(env, raw_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """The positions and velocities behind a locomotion observation (the first position, which the
    observation leaves out, is set to 0: these tasks do not depend on it)."""
    model = env.unwrapped.model
    nq, nv = model.nq, model.nv
    if raw_obs.shape[-1] != nq - 1 + nv:
        raise ConfigError(
            f"an observation of {raw_obs.shape[-1]} numbers is not this task's positions without the first "
            f"({nq - 1}) and velocities ({nv}); the script covers hopper, halfcheetah and walker2d"
        )
    return np.concatenate([[0.0], raw_obs[: nq - 1]]), raw_obs[nq - 1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a finished ADEPT run's .ckpt")
    parser.add_argument("--starts", type=int, default=256, help="dataset states to start from")
    parser.add_argument("--horizon", type=int, default=None, help="steps per rollout (default: the run's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit-ensemble", type=int, default=0, metavar="K",
                        help="fit a fresh K-member dynamics ensemble on the run's data and measure it")
    parser.add_argument("--ensemble-signal", choices=("disagreement", "max_std"), default="disagreement")
    parser.add_argument("--ensemble-hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--fit-updates", type=int, default=10_000)
    parser.add_argument("--compare", type=Path, nargs="*", default=[],
                        help="other runs' checkpoints whose policies act in the simulator from the same states")
    parser.add_argument("--sim-horizon", type=int, default=None,
                        help="steps of the policies' comparison in the simulator (default: the rollout horizon)")
    args = parser.parse_args()
    if args.fit_ensemble and args.ensemble_signal == "disagreement" and args.fit_ensemble < 2:
        raise SystemExit("--fit-ensemble: a disagreement needs 2 or more members (max_std works with 1)")

    module, info = load_module(args.checkpoint)
    if not isinstance(module, ADEPT):
        raise SystemExit(f"{args.checkpoint} holds a {type(module).__name__}, not an ADEPT run")
    data_args = {k: v for k, v in (read_checkpoint(args.checkpoint).get("datamodule_hyper_parameters") or {}).items()
                 if not k.startswith("_")}
    datamodule = D4RLDataModule(**data_args)
    datamodule.setup("fit")
    buffer = datamodule.buffer
    assert buffer is not None
    mean, std = module.obs_mean.numpy(), module.obs_std.numpy()  # what act() applies to raw observations
    scale, shift = datamodule.reward_scale_applied, datamodule.reward_shift_applied
    horizon = args.horizon or module.rollout_horizon
    torch.manual_seed(args.seed)
    module._generator = torch.Generator().manual_seed(args.seed)
    if args.fit_ensemble:
        fit_ensemble(module, buffer, args)

    pick = torch.randint(len(buffer), (args.starts,), generator=torch.Generator().manual_seed(args.seed))
    start_obs = buffer.observations[pick]
    uncertainty_per_step: list[torch.Tensor] = []

    # 1. in the world model, as a round does
    with torch.no_grad():
        obs, alive = start_obs.clone(), torch.ones(args.starts, dtype=torch.bool)
        model_return, model_uncertainty = torch.zeros(args.starts), []
        for _ in range(horizon):
            actions = module.sample_policy_actions(obs)
            next_obs, uncertainty = module.sample_next_observations_and_uncertainty(obs, actions)
            rewards, terminals = module.predict_reward_terminal(obs, actions, next_obs)
            model_return += torch.where(alive, rewards, 0.0)
            if uncertainty is not None:
                model_uncertainty.append(uncertainty[alive])
                uncertainty_per_step.append(torch.where(alive, uncertainty, 0.0))
            alive &= ~terminals
            obs = next_obs

    # the first step alone, with the data's actions and with one policy action per state (the simulator's
    # rollout below starts with that same action)
    with torch.no_grad():
        first_actions = module.sample_policy_actions(start_obs)
        data_next = module.sample_next_observations(start_obs, buffer.actions[pick])
        data_reward, _ = module.predict_reward_terminal(start_obs, buffer.actions[pick], data_next)
        policy_next = module.sample_next_observations(start_obs, first_actions)
        policy_reward, _ = module.predict_reward_terminal(start_obs, first_actions, policy_next)
    env_first_next = np.zeros((args.starts, start_obs.shape[1]), dtype=np.float32)
    env_first_reward = np.zeros(args.starts)

    # 2. in the simulator, from the same states
    raw_starts = start_obs.numpy() * std + mean
    env_return = np.zeros(args.starts)
    env_ended = np.zeros(args.starts, dtype=bool)
    env = make_env(info["dataset"], seed=args.seed)
    try:
        for i, raw in enumerate(raw_starts):
            env.reset(seed=args.seed + i)
            qpos, qvel = simulator_state(env, raw.astype(np.float64))
            env.unwrapped.set_state(qpos, qvel)
            observation = env.unwrapped._get_obs()
            if not np.allclose(observation, raw, atol=1e-3):
                raise SystemExit(f"{info['dataset']}: the simulator put into start state {i} reports another "
                                 "observation; the observation is not positions + velocities here")
            for step in range(horizon):
                normalized = torch.as_tensor((observation[None] - mean) / std, dtype=torch.float32)
                with torch.no_grad():
                    action = (first_actions[i] if step == 0 else module.sample_policy_actions(normalized)[0]).numpy()
                observation, reward, terminated, _, _ = env.step(action)
                env_return[i] += reward * scale + shift
                if step == 0:
                    env_first_next[i] = (observation - mean) / std
                    env_first_reward[i] = reward * scale + shift
                if terminated:
                    env_ended[i] = True
                    break
    finally:
        env.close()

    gap = model_return.numpy() - env_return
    comparisons = {}
    if args.compare or args.sim_horizon:
        steps = args.sim_horizon or horizon
        policies = [(f"this run ({type(module).__name__})", module)]
        for path in args.compare:
            other, other_info = load_module(path)
            if other_info["dataset"] != info["dataset"]:
                raise SystemExit(f"{path} was trained on {other_info['dataset']}, this run on {info['dataset']}")
            policies.append((f"{path} ({type(other).__name__})", other))
        for name, policy in policies:
            comparisons[name] = simulator_returns(policy, info["dataset"], raw_starts, steps, scale, shift, args.seed)
    print(f"{info['dataset']}: {args.starts} start states, {horizon} steps, rewards on the learner's scale "
          f"(x{scale:.4g}{shift:+.4g}); rollout_std_scale {module.rollout_std_scale}")
    print(f"  world model: return {model_return.mean():.3f} ({model_return.mean() / horizon:.3f} per step), "
          f"ended early {float((~alive).float().mean()):.1%}")
    print(f"  simulator:   return {env_return.mean():.3f} ({env_return.mean() / horizon:.3f} per step), "
          f"ended early {env_ended.mean():.1%}")
    print(f"  model - simulator: {gap.mean():+.3f} ± {gap.std(ddof=1) / np.sqrt(len(gap)):.3f} per rollout "
          f"(data's mean reward x {horizon}: {float(buffer.rewards.mean()) * horizon:.3f})")
    with torch.no_grad():
        sim_next = torch.as_tensor(env_first_next)
        head_on_sim, _ = module.predict_reward_terminal(start_obs, first_actions, sim_next)

        def state_error(predicted: torch.Tensor, true: torch.Tensor) -> float:
            return float((module.diffusion_x0(start_obs, predicted) - module.diffusion_x0(start_obs, true))
                         .norm(dim=-1).mean())

        data_state_error = state_error(data_next, buffer.next_observations[pick])
        policy_state_error = state_error(policy_next, sim_next)
    sim_first = torch.as_tensor(env_first_reward, dtype=torch.float32)
    print(f"  first step, the data's actions: next-state error {data_state_error:.3f}, "
          f"reward model - data {float((data_reward - buffer.rewards[pick]).mean()):+.3f}")
    print(f"  first step, the policy's actions: next-state error {policy_state_error:.3f}, "
          f"reward model - simulator {float((policy_reward - sim_first).mean()):+.3f} "
          f"(the reward head on the simulator's next state: {float((head_on_sim - sim_first).mean()):+.3f})")
    for name, (returns, ended) in comparisons.items():
        steps = args.sim_horizon or horizon
        print(f"  deterministic policy, {steps} simulator steps from the same states: {returns.mean():.3f} "
              f"± {returns.std(ddof=1) / np.sqrt(len(returns)):.3f} ({returns.mean() / steps:.3f} per step, "
              f"ended early {ended.mean():.1%}): {name}")
    if model_uncertainty:
        with torch.no_grad():
            on_data = module.ensemble_uncertainty(start_obs, buffer.actions[pick]) if module.dynamics_ensemble \
                is not None else None
            on_policy = module.ensemble_uncertainty(start_obs, module.sample_policy_actions(start_obs)) \
                if module.dynamics_ensemble is not None else None
        summed = torch.stack(uncertainty_per_step).sum(0).numpy()
        levels = f"rollout uncertainty {torch.cat(model_uncertainty).mean():.3f} per step"
        if on_data is not None and on_policy is not None:
            levels += (f"; at the start states {on_data.mean():.3f} with the data's actions, "
                       f"{on_policy.mean():.3f} with the policy's")
        print(f"  {levels}")
        pearson = float(np.corrcoef(summed, gap)[0, 1])
        spearman = float(np.corrcoef(np.argsort(np.argsort(summed)), np.argsort(np.argsort(gap)))[0, 1])
        print(f"  per rollout, summed uncertainty vs gap: Pearson {pearson:+.2f}, rank {spearman:+.2f}; "
              f"lambda cancelling the mean gap: {gap.mean() / summed.mean():.2f} "
              f"(the run's: {module.uncertainty_penalty:g})")


def simulator_returns(policy, dataset: str, raw_starts: np.ndarray, steps: int, scale: float, shift: float,  # noqa: ANN001
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns (on the learner's reward scale) of ``policy.act`` for ``steps`` simulator steps from each raw
    start state, and whether each episode ended early."""
    env = make_env(dataset, seed=seed)
    returns, ended = np.zeros(len(raw_starts)), np.zeros(len(raw_starts), dtype=bool)
    policy.eval()
    try:
        for i, raw in enumerate(raw_starts):
            env.reset(seed=seed + i)
            env.unwrapped.set_state(*simulator_state(env, raw.astype(np.float64)))
            observation = env.unwrapped._get_obs()
            for _ in range(steps):
                observation, reward, terminated, _, _ = env.step(policy.act(observation))
                returns[i] += reward * scale + shift
                if terminated:
                    ended[i] = True
                    break
    finally:
        env.close()
    return returns, ended


def fit_ensemble(module: ADEPT, buffer, args: argparse.Namespace) -> None:  # noqa: ANN001
    """Replaces the run's uncertainty signal with a fresh ensemble fit on its data as pretraining would."""
    module.attach_dataset(buffer)  # the run's own data: the same target statistics and held-out rows
    members = GaussianEnsemble if args.ensemble_signal == "max_std" else EnsembleMLP
    module.dynamics_ensemble = members(args.fit_ensemble, module.obs_dim + module.act_dim, module.obs_dim,
                                       tuple(args.ensemble_hidden))
    module.ensemble_signal = args.ensemble_signal
    module.uncertainty_samples = 1
    optimizer = torch.optim.Adam(module.dynamics_ensemble.parameters(), lr=3e-4)
    for update in range(1, args.fit_updates + 1):
        loss = module.ensemble_loss(module.sample_real(module.ensemble_batch_size))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if update % 2000 == 0 or update == args.fit_updates:
            print(f"  ensemble ({args.fit_ensemble} x {args.ensemble_signal}) update {update:,}: loss {float(loss.detach()):.4f}",
                  flush=True)


if __name__ == "__main__":
    main()
