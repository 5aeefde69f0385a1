"""SWG and SWG-R: conformance, weights, phases, exact guidance on a 2-D toy, learning on PointGoal,
and the options of the authors' PyTorch code (EMA timing, critic gradient clipping, one output head)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from lightning_offrl.algos import SWG
from lightning_offrl.algos.swg import swg_weights
from lightning_offrl.data.buffer import Batch
from lightning_offrl.diffusion import VPDiffusion
from lightning_offrl.errors import ConfigError
from tests.algos.conformance import assert_beats_random, check_conformance, fit, small_datamodule

# Small networks; Adam at 1e-3 so that a few hundred updates learn something.
SMALL = dict(
    critic_hidden_dims=(32, 32), hidden_dim=32, num_blocks=1, time_dim=16, dropout=0.0,
    critic_batch_size=None,
    log_every=5, optimizer=lambda p: torch.optim.Adam(p, lr=1e-3, fused=True),
    diffusion_optimizer=lambda p: torch.optim.Adam(p, lr=1e-3, fused=True),
)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # These networks are tiny: a second OpenMP thread only adds synchronisation, and on a shared,
    # loaded machine its barriers cost more than the work (measured: 12 CPU-s vs 5 CPU-min).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _small_swg(obs_dim: int, act_dim: int, max_updates: int, **overrides) -> SWG:  # noqa: ANN003
    return SWG(obs_dim, act_dim, max_updates=max_updates, **{**SMALL, **overrides})


@pytest.mark.parametrize("variant", ["swg", "swg_r"])
def test_conformance(variant: str, pointgoal_file: Path, tmp_path: Path) -> None:
    sampling = {"swg": {}, "swg_r": {"num_candidates": 4, "temperature": 1.0, "guidance_scale": 3.0}}[variant]
    check_conformance(lambda o, a, n: _small_swg(o, a, n, **sampling), pointgoal_file, tmp_path)


def _batch(n: int = 64, obs_dim: int = 3, act_dim: int = 2) -> Batch:
    g = torch.Generator().manual_seed(0)
    return Batch(
        torch.randn(n, obs_dim, generator=g), torch.rand(n, act_dim, generator=g) * 2 - 1,
        torch.randn(n, generator=g), torch.randn(n, obs_dim, generator=g), torch.zeros(n),
    )


def test_losses_are_finite_scalars_with_gradients() -> None:
    module = _small_swg(3, 2, 10)
    batch = _batch()
    weights = module.action_weights(batch.observations, batch.actions)
    for loss, trained in (
        (module.value_loss(batch), module.value),
        (module.critic_loss(batch), module.critic),
        (module.diffusion_loss(batch.observations, batch.actions, weights), module.denoiser),
    ):
        assert loss.ndim == 0 and torch.isfinite(loss)
        module.zero_grad()
        loss.backward()
        grads = [p.grad for p in trained.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_weights() -> None:
    advantage = torch.tensor([-2.0, -0.1, 0.0, 0.1, 3.0])
    expectile = swg_weights(advantage, "expectile", 0.7, 3.0, 10.0)
    torch.testing.assert_close(expectile, torch.tensor([0.3, 0.3, 0.3, 0.7, 0.7]))
    exponential = swg_weights(advantage, "exponential", 0.7, 3.0, 10.0)
    assert bool((exponential > 0).all() and (exponential <= 1).all())
    assert bool((exponential.diff() >= 0).all()) and float(exponential[-1]) == 1.0  # clipped at max_weight
    # beta = 0 weighs every action the same: SWG is then behaviour cloning
    assert torch.unique(swg_weights(advantage, "exponential", 0.7, 0.0, 10.0)).numel() == 1
    with pytest.raises(ConfigError, match="weight_fn"):
        SWG(3, 2, weight_fn="softmax")  # type: ignore[arg-type]


def test_bad_sampling_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="temperature"):
        SWG(3, 2, num_candidates=8, temperature=0.0)
    with pytest.raises(ConfigError, match="guidance_scale"):
        SWG(3, 2, guidance_scale=-1.0)
    with pytest.raises(ConfigError, match="critic_updates"):
        SWG(3, 2, critic_updates=20, max_updates=10)
    with pytest.raises(ConfigError, match="candidate_selection='qq'.*'q'.*'weight'"):
        SWG(3, 2, num_candidates=8, temperature=1.0, candidate_selection="qq")


def test_swg_r_keeps_the_candidate_with_the_highest_q_or_the_highest_sampled_weight() -> None:
    torch.manual_seed(0)
    module = _small_swg(3, 2, 10, num_candidates=16, temperature=1.0).eval()
    obs = torch.randn(4, 3)

    def draw(selection: str, candidates: int) -> tuple[torch.Tensor, torch.Tensor]:
        module.set_sampling(candidate_selection=selection)
        return module.sample(obs, num_candidates=candidates, generator=torch.Generator().manual_seed(1))

    # The same 16 candidates per state (same seed), drawn with K = 16 and picked two ways.
    all_actions, all_weights = module.sample(obs.repeat_interleave(16, 0), num_candidates=1,
                                             generator=torch.Generator().manual_seed(1))
    by_q, _ = draw("q", 16)
    by_w, w = draw("weight", 16)
    q = module.critic_target.min(obs.repeat_interleave(16, 0), all_actions).view(4, 16)
    torch.testing.assert_close(by_q, all_actions.view(4, 16, 2)[torch.arange(4), q.argmax(1)])
    torch.testing.assert_close(by_w, all_actions.view(4, 16, 2)[torch.arange(4), all_weights.view(4, 16).argmax(1)])
    torch.testing.assert_close(w, all_weights.view(4, 16).max(1).values)


def test_critic_first_then_diffusion_on_the_frozen_critic(pointgoal_file: Path, tmp_path: Path) -> None:
    # Phase 1 (10 updates) trains only Q and V; phase 2 only the denoiser. The boundary comes from the
    # checkpoint, so a resumed run with a larger budget keeps it.
    module = _small_swg(2, 2, 10, critic_updates=10)
    denoiser_init = {k: v.clone() for k, v in module.denoiser.state_dict().items()}
    critic_init = {k: v.clone() for k, v in module.critic.state_dict().items()}
    fit(module, small_datamodule(pointgoal_file, batches_per_step=2, steps_per_epoch=5), tmp_path)
    assert all(torch.equal(v, module.denoiser.state_dict()[k]) for k, v in denoiser_init.items())
    assert not all(torch.equal(v, module.critic.state_dict()[k]) for k, v in critic_init.items())

    critic_after = {k: v.clone() for k, v in module.critic.state_dict().items()}
    resumed = _small_swg(2, 2, 20)  # would default to a boundary of 20 // 3 = 6 without the checkpoint
    fit(resumed, small_datamodule(pointgoal_file, batches_per_step=2, steps_per_epoch=5), tmp_path / "resume",
        ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert int(resumed.critic_updates) == 10 and int(resumed.num_updates) == 20
    assert all(torch.equal(v, resumed.critic.state_dict()[k]) for k, v in critic_after.items())
    assert not all(torch.equal(v, resumed.denoiser.state_dict()[k]) for k, v in denoiser_init.items())


def test_guidance_scale_zero_is_unguided_sampling_exactly() -> None:
    torch.manual_seed(0)
    module = _small_swg(3, 2, 10).eval()
    obs = torch.randn(16, 3)
    for temperature in (0.0, 1.0):
        actions, weights = module.sample(
            obs, guidance_scale=0.0, temperature=temperature, generator=torch.Generator().manual_seed(5)
        )
        generator = torch.Generator().manual_seed(5)
        z_T = temperature * torch.randn(16, 3, generator=generator) if temperature else torch.zeros(16, 3)
        z0 = module.diffusion.sample(
            lambda z_t, t: module.denoiser(z_t, t, obs), z_T, clip=(module.z_low, module.z_high),
            generator=generator, temperature=temperature,
        )
        assert torch.equal(actions, z0[:, :2]) and torch.equal(weights, z0[:, 2])
    guided, _ = module.sample(obs, guidance_scale=5.0)
    assert not torch.equal(guided, module.sample(obs, guidance_scale=0.0)[0])


def test_zero_temperature_ddpm_follows_the_posterior_means() -> None:
    # VPDiffusion.sample(temperature=0) is the noise-free DDPM path SWG evaluates with.
    diffusion = VPDiffusion.vp(15)
    eps_fn = lambda x_t, t: 0.3 * x_t + 0.01 * t.unsqueeze(-1)  # noqa: E731  any smooth predictor
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    expected = x
    for step in reversed(range(15)):
        t = torch.full((4,), step)
        x0 = diffusion.predict_x0(expected, t, eps_fn(expected, t)).clamp(-1, 1)
        if step == 0:
            expected = x0
        else:
            coef_x0, coef_xt = diffusion.posterior_mean_coef_x0[step], diffusion.posterior_mean_coef_xt[step]
            expected = coef_x0 * x0 + coef_xt * expected
    torch.testing.assert_close(diffusion.sample(eps_fn, x, temperature=0.0), expected)
    # temperature 1 is the default sampler, draw for draw
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    default = diffusion.sample(eps_fn, x, generator=g1)
    assert torch.equal(default, diffusion.sample(eps_fn, x, generator=g2, temperature=1.0))


def test_act_works_in_inference_mode_and_is_deterministic() -> None:
    # Lightning's validation/test loops run under torch.inference_mode(); guidance needs autograd.
    torch.manual_seed(0)
    module = _small_swg(3, 2, 10, num_candidates=4, temperature=1.0, guidance_scale=2.0)
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    outside = module.act(obs)
    with torch.inference_mode():
        inside = module.act(obs)
    np.testing.assert_array_equal(outside, inside)
    np.testing.assert_array_equal(module.act(obs), outside)
    assert module.training  # act() restored the mode


# ------------------------------------------------------------------------------------------ 2-D toy
RADIUS, STD = 0.7, 0.1
ANGLES = torch.arange(8) * (math.pi / 4)
CENTERS = torch.stack([RADIUS * ANGLES.cos(), RADIUS * ANGLES.sin()], dim=-1)  # 8 Gaussians on a circle
BETAS = (0.0, 2.0, 4.0)


def _mode_masses(x: torch.Tensor) -> torch.Tensor:
    """Fraction of samples nearest to each of the 8 centres. ``x: (N, 2) -> (8,)``."""
    return torch.bincount(torch.cdist(x, CENTERS).argmin(dim=1), minlength=8).float() / len(x)


def _target_masses(beta: float) -> torch.Tensor:
    # w(x) = exp(beta (x_1 - R)): the mass of mode k under mu w / Z is proportional to
    # exp(beta c_k1) (the Gaussian factor exp(beta^2 STD^2 / 2) is the same for every mode).
    return torch.softmax(beta * CENTERS[:, 0], dim=0)


def _total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return float(0.5 * (p - q).abs().sum())


def test_self_weighted_guidance_samples_the_weighted_distribution() -> None:
    """8-Gaussian mixture with the known weight w = exp(beta (x_1 - R)), beta in {0, 2, 4}.

    One joint model of ``(x, w)`` is conditioned on ``beta`` (the role the state plays in RL), so the
    three weightings train together. Guided samples (scale 1, the exact target) must put the
    target's mass on each mode: the mass of the best mode grows with beta as the target's does, the
    mode masses are far closer to the target than the data's are, and beta = 0 reproduces the data.
    """
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    module = SWG(1, 2, hidden_dim=64, num_blocks=1, time_dim=16, dropout=0.0, ema_tau=None,
                 weight_fn="exponential", max_weight=1.0)
    optimizer = torch.optim.Adam(module.denoiser.parameters(), lr=3e-3, fused=True)
    betas = torch.tensor(BETAS)
    for _ in range(1000):
        beta = betas[torch.randint(len(BETAS), (256,), generator=generator)]
        modes = torch.randint(8, (256,), generator=generator)
        x = CENTERS[modes] + STD * torch.randn(256, 2, generator=generator)
        # swg_weights' exponential weight with "advantage" x_1 - R, max_weight 1, a beta per sample
        weights = torch.exp(beta * (x[:, 0] - RADIUS)).clamp(max=1.0)
        loss = module.diffusion_loss((beta / 4).unsqueeze(-1), x, weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    module.eval()
    data_masses = torch.full((8,), 1 / 8)
    best_mode_mass = []
    for beta in BETAS:
        cond = torch.full((2000, 1), beta / 4)
        samples, _ = module.sample(cond, guidance_scale=1.0, temperature=1.0, generator=generator)
        masses, target = _mode_masses(samples), _target_masses(beta)
        best_mode_mass.append(float(masses[0]))
        if beta == 0.0:
            assert _total_variation(masses, data_masses) < 0.12
        else:
            assert _total_variation(masses, target) < 0.4 * _total_variation(data_masses, target)
            assert abs(float(masses[0] - target[0])) < 0.1
    assert best_mode_mass[0] < best_mode_mass[1] < best_mode_mass[2]


# ------------------------------------------------------------------------------------------ PointGoal
def test_swg_and_swg_r_beat_random_on_pointgoal(pointgoal_file: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    datamodule = small_datamodule(pointgoal_file, batches_per_step=10, steps_per_epoch=50)
    datamodule.batch_size = 256
    module = SWG(
        datamodule.obs_dim, datamodule.act_dim, critic_hidden_dims=(64, 64), hidden_dim=64, num_blocks=2,
        time_dim=16, dropout=0.0, ema_tau=None, critic_updates=400, critic_batch_size=None, max_updates=900,
        guidance_scale=10.0, log_every=100, optimizer=lambda p: torch.optim.Adam(p, lr=1e-3, fused=True),
        diffusion_optimizer=lambda p: torch.optim.Adam(p, lr=1e-3, fused=True),
    )
    fit(module, datamodule, tmp_path)
    for sampling in ({}, {"guidance_scale": 1.0, "num_candidates": 8, "temperature": 1.0}):  # SWG, SWG-R
        module.set_sampling(**sampling)
        assert_beats_random(module.act, sampling)


def test_an_swg_checkpoint_evaluates_as_swg_r(pointgoal_file: Path, tmp_path: Path) -> None:
    # `lightning_offrl evaluate --set num_candidates=4 --set temperature=1.0` rebuilds the module with
    # acting-time arguments changed; they are validated like config values.
    from lightning_offrl.errors import OffRLError
    from lightning_offrl.evaluate import load_module, parse_overrides

    module = _small_swg(2, 2, 10, critic_updates=5)
    fit(module, small_datamodule(pointgoal_file, batches_per_step=2, steps_per_epoch=5), tmp_path)
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    overrides = parse_overrides(["num_candidates=4", "temperature=1.0"])
    assert overrides == {"num_candidates": 4, "temperature": 1.0}
    swg_r, _ = load_module(ckpt, overrides=overrides)
    assert swg_r.num_candidates == 4 and swg_r.temperature == 1.0
    saved = module.state_dict()
    assert all(torch.equal(value, saved[key]) for key, value in swg_r.state_dict().items())
    assert np.all(np.abs(swg_r.act(np.zeros((3, 2), np.float32))) <= 1.0)
    with pytest.raises(ConfigError, match="temperature"):
        load_module(ckpt, overrides={"num_candidates": 4})  # K candidates at temperature 0 are all equal
    with pytest.raises(OffRLError, match="no argument"):
        load_module(ckpt, overrides={"num_candidate": 4})
    with pytest.raises(OffRLError, match="NAME=VALUE"):
        parse_overrides(["num_candidates"])


# ------------------------------------------------------------------------------- PyTorch-code options
def _parameters(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("ema_every, ema_start", [(1, 0), (3, 7)])
def test_ema_copies_until_ema_start_then_moves_every_ema_every(ema_every: int, ema_start: int) -> None:
    # (1, 0) is the default (a Polyak step after every update); (3, 7) the PyTorch code's rule, scaled
    # down from (10, 100k): update k acts only if k % 3 == 0, copying while k < 7, averaging from k = 9.
    torch.manual_seed(0)
    module = _small_swg(3, 2, 100, ema_tau=0.5, ema_every=ema_every, ema_start=ema_start)
    ema, denoiser = module.denoiser_ema, module.denoiser
    assert ema is not None
    for k in range(1, 13):
        with torch.no_grad():  # stands for the k-th diffusion update
            for p in denoiser.parameters():
                p.add_(torch.randn_like(p))
        before, current = _parameters(ema), _parameters(denoiser)
        module.update_denoiser_ema(k)
        after = _parameters(ema)
        if k % ema_every:
            assert all(torch.equal(a, b) for a, b in zip(after, before)), k
        elif k < ema_start:
            assert all(torch.equal(a, c) for a, c in zip(after, current)), k
        else:
            for a, b, c in zip(after, before, current):
                torch.testing.assert_close(a, torch.lerp(b, c, 0.5))
            assert not all(torch.equal(a, c) for a, c in zip(after, current)), k


def test_ema_counts_the_updates_of_the_diffusion_phase(pointgoal_file: Path, tmp_path: Path) -> None:
    # 4 critic updates, then 6 diffusion updates. With ema_tau = 1 an EMA step is a copy, so the copy
    # equals the denoiser after training iff diffusion update 6 (not update 10 of the run) moved it.
    for ema_every, moved_last in ((3, True), (4, False)):
        module = _small_swg(2, 2, 10, critic_updates=4, ema_tau=1.0, ema_every=ema_every)
        datamodule = small_datamodule(pointgoal_file, batches_per_step=2, steps_per_epoch=5)
        fit(module, datamodule, tmp_path / f"{ema_every}")
        assert int(module.num_updates) == 10
        ema = module.denoiser_ema
        assert ema is not None
        pairs = zip(ema.parameters(), module.denoiser.parameters())
        assert all(torch.equal(e, d) for e, d in pairs) is moved_last


def test_critic_grad_clip_bounds_the_gradient_norms_of_v_and_q(pointgoal_file: Path, tmp_path: Path) -> None:
    # The norm of the gradients each optimizer steps on (V's and Q's; the run is all critic phase).
    norms: dict[float | None, list[float]] = {}

    def record(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms[clip].append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    handle = register_optimizer_step_pre_hook(record)
    try:
        for clip in (None, 1e-3):
            norms[clip] = []
            module = _small_swg(2, 2, 4, critic_updates=4, critic_grad_clip=clip)
            datamodule = small_datamodule(pointgoal_file, batches_per_step=2, steps_per_epoch=2)
            fit(module, datamodule, tmp_path / f"{clip}")
    finally:
        handle.remove()
    assert len(norms[None]) == len(norms[1e-3]) == 8  # 4 updates x (V, Q)
    assert min(norms[None]) > 1e-2  # unclipped gradients are far above the bound ...
    assert max(norms[1e-3]) <= 1e-3 * (1 + 1e-4)  # ... clipped ones are within it


def test_one_output_layer_for_action_and_weight_trains(pointgoal_file: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = _small_swg(2, 2, 8, critic_updates=4, separate_weight_head=False)
    assert module.denoiser.separate_head is None
    assert module.denoiser.output_head[-1].out_features == 3  # (a, w) from one Linear
    assert not any("separate_head" in name for name in module.state_dict())
    initial = _parameters(module.denoiser)
    fit(module, small_datamodule(pointgoal_file, batches_per_step=2, steps_per_epoch=4), tmp_path)
    assert not all(torch.equal(a, b) for a, b in zip(initial, _parameters(module.denoiser)))
    batch = _batch(obs_dim=2)
    weights = module.action_weights(batch.observations, batch.actions)
    loss = module.diffusion_loss(batch.observations, batch.actions, weights)
    assert loss.ndim == 0 and torch.isfinite(loss)
    module.eval()
    obs = batch.observations[:8]
    guided, weights = module.sample(obs, guidance_scale=5.0)
    assert torch.isfinite(guided).all() and bool((guided.abs() <= 1).all() and (weights > 0).all())
    assert not torch.equal(guided, module.sample(obs, guidance_scale=0.0)[0])  # the guidance has a gradient


@pytest.mark.parametrize(
    "key, value",
    [("ema_every", 0), ("ema_every", 2.5), ("ema_start", -1), ("diffusion_lr_min", -1e-5),
     ("critic_grad_clip", 0.0), ("critic_grad_clip", -1.0), ("separate_weight_head", "no")],
)
def test_bad_pytorch_code_options_are_config_errors(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"model.{key}="):
        SWG(3, 2, **{key: value})  # type: ignore[arg-type]


def test_diffusion_lr_min_needs_a_cosine_schedule() -> None:
    with pytest.raises(ConfigError, match="diffusion_lr_min=1e-05 needs.*diffusion_lr_cosine_period"):
        SWG(3, 2, diffusion_lr_min=1e-5, diffusion_lr_cosine_period=None)


def test_defaults_keep_the_networks_of_existing_checkpoints() -> None:
    # Recorded from the module before these options existed: tensors and entries of the whole state,
    # and the denoiser's layout (the weight's own head reading block 0).
    module = SWG(3, 2, critic_hidden_dims=(32, 32), hidden_dim=32, num_blocks=1, time_dim=16)
    state = module.state_dict()
    assert (len(state), sum(v.numel() for v in state.values())) == (74, 31481)
    denoiser = {name: tuple(v.shape) for name, v in module.denoiser.state_dict().items()}
    assert {k: v for k, v in denoiser.items() if "head" in k} == {
        "output_head.1.weight": (2, 32), "output_head.1.bias": (2,),
        "separate_head.0.weight": (32, 32), "separate_head.0.bias": (32,),
        "separate_head.2.weight": (1, 32), "separate_head.2.bias": (1,),
    }
    new_options = (module.ema_every, module.ema_start, module.diffusion_lr_min, module.critic_grad_clip)
    assert new_options == (1, 0, 0.0, None)


def test_diffusion_lr_follows_the_cosine_to_diffusion_lr_min() -> None:
    module = _small_swg(3, 2, 10, diffusion_lr_cosine_period=4, diffusion_lr_min=1e-5,
                        diffusion_optimizer=lambda p: torch.optim.AdamW(p, lr=3e-4))
    _, schedules = module.configure_optimizers()
    schedule = schedules[0]
    for _ in range(4):
        schedule.optimizer.step()
        schedule.step()
    assert schedule.get_last_lr() == pytest.approx([1e-5])
