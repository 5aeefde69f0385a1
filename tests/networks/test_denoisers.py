"""Denoiser backbones and time embeddings: shapes, conditioning, heads, batch independence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_offrl.errors import ConfigError
from lightning_offrl.networks.denoisers import DenoiserMLP, ResidualDenoiser
from lightning_offrl.networks.embeddings import FourierEmbedding, SinusoidalEmbedding

BACKBONES = {
    "mlp": lambda cond_dim: DenoiserMLP(5, cond_dim, hidden_dim=32, depth=2, time_dim=8),
    "residual": lambda cond_dim: ResidualDenoiser(5, cond_dim, hidden_dim=32, num_blocks=2, time_dim=8),
}


# ---------------------------------------------------------------------------- embeddings
def test_sinusoidal_embedding_values_and_integer_float_agreement() -> None:
    embedding = SinusoidalEmbedding(8)
    out = embedding(torch.tensor([0, 3, 7]))
    assert out.shape == (3, 8) and out.dtype == torch.float32
    assert torch.equal(out[0], torch.tensor([0.0] * 4 + [1.0] * 4))  # sin(0), cos(0)
    torch.testing.assert_close(out, embedding(torch.tensor([0.0, 3.0, 7.0])))
    # The fastest frequency is 1 (period 2 pi).
    assert out[:, 0].tolist() == pytest.approx(torch.tensor([0.0, 3.0, 7.0]).sin().tolist())
    assert len({tuple(row.tolist()) for row in embedding(torch.arange(1000))}) == 1000
    assert "frequencies" not in embedding.state_dict()  # derived from (dim, max_period)


def test_fourier_embedding_is_saved_and_optionally_learned() -> None:
    torch.manual_seed(0)
    fixed = FourierEmbedding(16, scale=16.0)
    assert "frequencies" in fixed.state_dict() and not list(fixed.parameters())
    copy = FourierEmbedding(16, scale=16.0)
    copy.load_state_dict(fixed.state_dict())
    c_noise = torch.linspace(-1.5, 1.0, 7)
    assert torch.equal(copy(c_noise), fixed(c_noise))
    out = fixed(c_noise)
    assert out.shape == (7, 16)
    torch.testing.assert_close(out[:, :8].square() + out[:, 8:].square(), torch.ones(7, 8))  # cos^2 + sin^2
    learned = FourierEmbedding(16, scale=0.2, learnable=True)
    assert [name for name, _ in learned.named_parameters()] == ["frequencies"]


@pytest.mark.parametrize("make", [lambda: SinusoidalEmbedding(7), lambda: FourierEmbedding(0, scale=1.0)])
def test_odd_embedding_sizes_raise_config_error(make) -> None:
    with pytest.raises(ConfigError):
        make()


# ---------------------------------------------------------------------------- backbones
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_shapes_with_and_without_condition_for_step_indices_and_float_noise(name: str) -> None:
    conditional, unconditional = BACKBONES[name](3), BACKBONES[name](0)
    x = torch.randn(4, 5)
    for t in (torch.randint(0, 15, (4,)), torch.randn(4)):
        assert conditional(x, t, torch.randn(4, 3)).shape == (4, 5)
        assert unconditional(x, t).shape == (4, 5)
        assert unconditional(x, t, None).shape == (4, 5)
    with pytest.raises(ValueError, match="cond_dim=3"):
        conditional(x, torch.zeros(4), None)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_each_sample_is_processed_independently_of_the_batch(name: str) -> None:
    torch.manual_seed(0)
    net = BACKBONES[name](3).eval()
    x, t, cond = torch.randn(6, 5), torch.randint(0, 15, (6,)), torch.randn(6, 3)
    batched = net(x, t, cond)
    one_by_one = torch.cat([net(x[i : i + 1], t[i : i + 1], cond[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(batched, one_by_one)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_output_depends_on_x_t_and_condition_and_is_differentiable_in_x(name: str) -> None:
    torch.manual_seed(0)
    net = BACKBONES[name](3).eval()
    x, cond = torch.randn(4, 5, requires_grad=True), torch.randn(4, 3)
    t = torch.full((4,), 2)
    out = net(x, t, cond)
    assert not torch.allclose(out, net(x, torch.full((4,), 9), cond))
    assert not torch.allclose(out, net(x, t, cond + 1.0))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.abs().sum() > 0


def test_denoiser_mlp_accepts_a_custom_time_embedding_and_output_size() -> None:
    embedding = FourierEmbedding(12, scale=1.0)
    net = DenoiserMLP(2, 4, hidden_dim=16, depth=1, time_dim=8, time_embedding=embedding, out_dim=3)
    assert net(torch.randn(5, 2), torch.randn(5), torch.randn(5, 4)).shape == (5, 3)
    # The time features enter the trunk at size time_dim whatever the embedding's own size.
    assert net.trunk[0].in_features == 2 + 4 + 8
    assert isinstance(net.trunk[1], nn.Mish)
    with pytest.raises(ConfigError):
        DenoiserMLP(2, 4, depth=0)


def test_residual_denoiser_separate_head_reads_the_chosen_block() -> None:
    torch.manual_seed(0)
    net = ResidualDenoiser(4, 3, hidden_dim=16, num_blocks=3, dropout=0.0, time_dim=8, separate_head_dim=1)
    net.eval()
    assert net.separate_head_block == 1  # the middle block, SWG's choice
    x, t, cond = torch.randn(5, 4), torch.randint(0, 15, (5,)), torch.randn(5, 3)
    before = net(x, t, cond)
    with torch.no_grad():  # blocks after the head's input change only the main head's outputs
        for p in net.blocks[2].parameters():
            p.add_(0.5)
    after = net(x, t, cond)
    assert before.shape == (5, 4)
    torch.testing.assert_close(after[:, -1], before[:, -1])
    assert not torch.allclose(after[:, :-1], before[:, :-1])
    for bad in ({"separate_head_dim": 4}, {"separate_head_dim": 1, "separate_head_block": 3}):
        with pytest.raises(ConfigError):
            ResidualDenoiser(4, 3, num_blocks=3, **bad)


def test_residual_denoiser_dropout_is_active_only_in_training() -> None:
    torch.manual_seed(0)
    net = ResidualDenoiser(4, 3, hidden_dim=16, num_blocks=2, dropout=0.5, time_dim=8)
    x, t, cond = torch.randn(64, 4), torch.randint(0, 15, (64,)), torch.randn(64, 3)
    assert not torch.equal(net.train()(x, t, cond), net(x, t, cond))
    assert torch.equal(net.eval()(x, t, cond), net(x, t, cond))


def test_residual_denoiser_has_the_size_of_swgs_network() -> None:
    # Hopper shapes: z = (a, w) of size 4, 11-d state; SWG's ResNet-MLP has ~1.75M parameters
    # (3 blocks of 256 with 4x expansion, 128-d time features, a separate weight head).
    net = ResidualDenoiser(3 + 1, 11, separate_head_dim=1)
    assert 1.7e6 < sum(p.numel() for p in net.parameters()) < 1.9e6


def test_main_grad_off_keeps_values_and_the_separate_heads_input_gradient() -> None:
    # SWG's guidance differentiates only the weight output; cutting the main head from the graph must
    # change neither the outputs nor that gradient.
    torch.manual_seed(0)
    net = ResidualDenoiser(4, 3, hidden_dim=16, num_blocks=3, dropout=0.0, time_dim=8, separate_head_dim=1)
    net.eval()
    z, t, cond = torch.randn(5, 4), torch.randint(0, 10, (5,)), torch.randn(5, 3)
    grads, outputs = [], []
    for main_grad in (True, False):
        z_in = z.clone().requires_grad_(True)
        out = net(z_in, t, cond, main_grad=main_grad)
        (grad,) = torch.autograd.grad(out[:, -1].sum(), z_in)
        outputs.append(out.detach())
        grads.append(grad)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    torch.testing.assert_close(grads[0], grads[1])
