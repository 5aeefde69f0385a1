"""The benchmark scripts' bookkeeping: ADEPT's ablation table and the campaigns' missing runs."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import adept_ablation  # noqa: E402
import campaign  # noqa: E402


def row(config: str, score: float, seed: int = 0, data: str = "", overrides: str = "") -> dict[str, str]:
    return {"config": config, "dataset": "walker2d-medium-replay-v2", "seed": str(seed), "status": "finished",
            "normalized_score": str(score), "updates": "10000", "overrides": overrides, "evaluated_with": "",
            "train_minutes": "20", "data": data}


def test_ablation_table_compares_each_variant_with_iql_on_the_same_build() -> None:
    mean_rollouts = " ".join(f"--{o}" for o in adept_ablation.VARIANTS["rollout_mean"])
    rows = [
        row("iql_walker2d", 17.0), row("iql_walker2d", 17.0, seed=1),  # an earlier build, no fingerprint
        row("adept_iql_walker2d", 9.0),  # the paper's recipe on it
        row("iql_walker2d", 21.0, data="aaaaaaaaaaaa"),  # this build
        row("adept_iql_walker2d", 23.0, data="aaaaaaaaaaaa", overrides=mean_rollouts),
        row("adept_iql_walker2d", 5.0, data="aaaaaaaaaaaa", overrides="--model.init_args.nope=1"),  # no variant
    ]
    lines = adept_ablation.table(rows).splitlines()[2:]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    by_variant = {(c[1], c[3]): c for c in cells}
    assert set(by_variant) == {("-", "IQL alone"), ("-", "paper"), ("aaaaaaaaaaaa", "IQL alone"),
                               ("aaaaaaaaaaaa", "rollout_mean")}
    assert by_variant[("-", "IQL alone")][4:6] == ["2", "17.0 ± 0.0"]
    assert by_variant[("-", "paper")][7] == "-8.0"
    assert by_variant[("aaaaaaaaaaaa", "rollout_mean")][7] == "+2.0"  # against 21.0, not the other build's 17.0


def test_campaign_runs_only_what_the_results_lack(tmp_path: Path) -> None:
    group = campaign.Group("iql", "iql_{env}", ("hopper-medium-v2", "walker2d-medium-v2"), seeds=(0, 1))
    done = {("iql_hopper", "hopper-medium-v2", 0, 20_000, campaign.EVAL_EVERY_5K),
            ("iql_walker2d", "walker2d-medium-v2", 0, 10_000, campaign.EVAL_EVERY_5K)}  # another budget
    todo = campaign.missing_runs([group], done, None)
    assert [(g.name, d, s) for g, d, s in todo] == [("iql", "hopper-medium-v2", [1]), ("iql", "walker2d-medium-v2", [0, 1])]
    assert campaign.missing_runs([group], done, ["hopper-medium-v2"], seeds=[0]) == []
    command = campaign.sweep_command(group, "walker2d-medium-v2", [0, 1], tmp_path, 2)
    assert command[:3] == ["sweep", "--configs", "iql_walker2d"] and command[-2:] == ["--set", campaign.EVAL_EVERY_5K]
    assert command[command.index("--output") + 1] == str(tmp_path / "iql")


def test_runs_from_the_world_model_cache_count_as_their_variant(tmp_path: Path) -> None:
    cached = f"model.init_args.rollout_std_scale=0.0 {adept_ablation.WORLD_MODEL_CACHE_SET}/tmp/wm"
    rows = [row("iql_walker2d", 21.0, data="b" * 12), row("adept_iql_walker2d", 23.0, data="b" * 12, overrides=cached),
            row("adept_iql_walker2d", 25.0, seed=1, data="b" * 12, overrides="model.init_args.rollout_std_scale=0.0")]
    assert adept_ablation.variant_of(rows[1]) == "rollout_mean"
    lines = adept_ablation.table(rows).splitlines()[2:]
    assert any("| rollout_mean | 2 | 24.0 ± 1.0 |" in line for line in lines)
    # The campaign takes a cached run as done, and passes the cache to ADEPT's sweeps only.
    csv_rows = [{**r, "status": "finished"} for r in rows]
    done = {(r["config"], r["dataset"], int(r["seed"]), int(r["updates"]),
             campaign.procedure_overrides(r["overrides"])) for r in csv_rows}
    group = campaign.Group("rollout_mean", "adept_iql_{env}", ("walker2d-medium-replay-v2",), seeds=(0, 1),
                           updates=10_000, sets=("model.init_args.rollout_std_scale=0.0",))
    assert campaign.missing_runs([group], done, None) == []
    command = campaign.sweep_command(group, "walker2d-medium-replay-v2", [2], tmp_path, 1, tmp_path / "wm")
    assert command[-2:] == ["--set", f"{adept_ablation.WORLD_MODEL_CACHE_SET}{tmp_path / 'wm'}"]
    iql = campaign.Group("iql", "iql_{env}", ("walker2d-medium-replay-v2",), updates=10_000, sets=())
    assert "--set" not in campaign.sweep_command(iql, "walker2d-medium-replay-v2", [2], tmp_path, 1, tmp_path / "wm")


def test_campaign_same_data_counts_only_rows_on_this_machines_build(tmp_path: Path) -> None:
    from lightning_offrl.sweep import CSV_COLUMNS, write_csv

    rows = [{**row("iql_walker2d", 17.0, data=""), "replica": "True"},  # a build before fingerprints
            {**row("iql_walker2d", 21.0, seed=1, data="c" * 12), "replica": "True"}]
    csv_path = tmp_path / "results.csv"
    write_csv([{c: r.get(c, "") for c in CSV_COLUMNS} for r in rows], csv_path)
    group = campaign.Group("iql", "iql_{env}", ("walker2d-medium-replay-v2",), seeds=(0, 1), updates=10_000, sets=())
    assert campaign.missing_runs([group], campaign.done_keys(csv_path), None) == []
    this_build = campaign.done_keys(csv_path, {"walker2d-medium-replay-v2": "c" * 12})
    assert [(d, s) for _, d, s in campaign.missing_runs([group], this_build, None)] == [("walker2d-medium-replay-v2", [0])]
    other_build = campaign.done_keys(csv_path, {"walker2d-medium-replay-v2": "d" * 12})
    assert [(d, s) for _, d, s in campaign.missing_runs([group], other_build, None)] == [("walker2d-medium-replay-v2", [0, 1])]


def test_model_vs_env_puts_the_simulator_into_an_observed_state() -> None:
    import numpy as np
    import pytest

    import adept_model_vs_env
    from lightning_offrl.envs.tasks import make_env
    from lightning_offrl.errors import ConfigError

    for dataset in ("hopper-random-v2", "halfcheetah-random-v2"):
        env = make_env(dataset, seed=0)
        try:
            for _ in range(5):
                observed, *_ = env.step(env.action_space.sample())
            fresh = make_env(dataset, seed=1)
            qpos, qvel = adept_model_vs_env.simulator_state(fresh, observed.astype(np.float64))
            fresh.unwrapped.set_state(qpos, qvel)
            np.testing.assert_allclose(fresh.unwrapped._get_obs(), observed, atol=1e-6)
            with pytest.raises(ConfigError, match="not this task's positions"):
                adept_model_vs_env.simulator_state(fresh, observed[:-1])
            fresh.close()
        finally:
            env.close()


def test_model_vs_env_fits_a_fresh_signal_on_the_runs_data() -> None:
    # --fit-ensemble: a run without a signal gets one, fit on its data as ADEPT's pretraining would.
    import argparse

    import torch

    import adept_model_vs_env
    from lightning_offrl.algos import IQL
    from lightning_offrl.algos.adept import ADEPT
    from lightning_offrl.data.buffer import TransitionBuffer
    from lightning_offrl.networks import GaussianEnsemble

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    obs, actions = torch.rand(2000, 3, generator=g) * 2 - 1, torch.rand(2000, 2, generator=g) * 2 - 1
    buffer = TransitionBuffer(obs, actions, actions.sum(-1), obs + 0.1 * actions.sum(-1, keepdim=True), torch.zeros(2000))
    module = ADEPT(3, 2, learner=lambda o, a, **kw: IQL(o, a, hidden_dims=(32, 32), **kw), hidden_dim=32, depth=1, reward_hidden_dims=(32,), behavior_hidden_dims=(32,),
                   world_model_batch_size=64, ensemble_batch_size=64, heldout_segments=0, max_updates=10)
    assert not module.measures_uncertainty
    args = argparse.Namespace(fit_ensemble=2, ensemble_signal="max_std", ensemble_hidden=[32], fit_updates=300)
    adept_model_vs_env.fit_ensemble(module, buffer, args)
    assert isinstance(module.dynamics_ensemble, GaussianEnsemble) and module.measures_uncertainty
    x = torch.cat([obs[:256], actions[:256]], -1)
    target = module.diffusion_x0(obs[:256], buffer.next_observations[:256])
    fresh = GaussianEnsemble(2, 5, 3, (32,))
    with torch.no_grad():
        assert float(module.dynamics_ensemble.nll(x, target)) < float(fresh.nll(x, target)) - 1.0
    assert module.ensemble_uncertainty(obs[:8], actions[:8]).shape == (8,)
