"""The flow's model claims: exact invertibility, exact log-determinant, causality, guidance algebra."""

from __future__ import annotations

import math

import pytest
import torch

from generator.flow import AutoregressiveFlow, FlowConfig, GlobalLocalFlow, gaussian_nll, guided_params
from generator.transformer import Transformer

TINY = FlowConfig(token_dim=2, frame_height=2, frame_width=3, max_frames=4, shallow_blocks=2, shallow_depth=1,
                  shallow_width=16, deep_depth=2, deep_width=16, heads=2)


def randomize_heads(module: torch.nn.Module, std: float = 0.3) -> None:
    """Zero-initialised heads make every block the identity; tests need non-trivial blocks."""
    for block in module.modules():
        if isinstance(block, AutoregressiveFlow):
            torch.nn.init.normal_(block.head.weight, std=std)
            torch.nn.init.normal_(block.head.bias, std=std)


@pytest.fixture()
def flow() -> GlobalLocalFlow:
    torch.manual_seed(0)
    model = GlobalLocalFlow(TINY).double().eval()
    randomize_heads(model)
    return model


def inputs(batch: int = 2, frames: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, frames, TINY.tokens_per_frame, TINY.token_dim, generator=g, dtype=torch.float64)
    text = torch.randn(batch, 3, TINY.deep_width, generator=g, dtype=torch.float64)
    return x, text


def test_fresh_blocks_are_the_identity():
    model = GlobalLocalFlow(TINY).double()
    x, text = inputs()
    z, logdet = model(x, text)
    assert torch.equal(z, x) and torch.all(logdet == 0)


def test_whole_model_inverts(flow):
    x, text = inputs()
    z, _ = flow(x, text)
    assert (z - x).abs().max() > 0.1  # the blocks really transform
    assert (flow.inverse(z, text) - x).abs().max() < 1e-4


def test_every_block_inverts(flow):
    x, text = inputs()
    b, f, s, d = x.shape
    for i, block in enumerate(flow.shallow):
        seq = x.reshape(b * f, s, d)
        start = flow.shallow_start[i].expand(b * f, 1, -1)
        z, _ = block(seq, start, flow.shallow_pos[i])
        assert (block.inverse(z, start, flow.shallow_pos[i]) - seq).abs().max() < 1e-4
    seq = x.reshape(b, f * s, d)
    z, _ = flow.deep(seq, text, flow.deep_positions(f))
    assert (flow.deep.inverse(z, text, flow.deep_positions(f)) - seq).abs().max() < 1e-4
    y, _ = flow.shallow_forward(x)
    assert (flow.shallow_inverse(y) - x).abs().max() < 1e-4


def _brute_force_logdet(fn, x: torch.Tensor) -> float:
    jacobian = torch.autograd.functional.jacobian(lambda v: fn(v.view_as(x)).flatten(), x.flatten())
    return float(torch.linalg.slogdet(jacobian)[1])


def test_logdet_equals_autograd_jacobian(flow):
    x, text = inputs(batch=1, frames=2)
    _, logdet = flow(x, text)
    assert float(logdet[0].detach()) == pytest.approx(_brute_force_logdet(lambda v: flow(v, text)[0], x), abs=1e-8)
    block, pos = flow.deep, flow.deep_positions(2)
    seq = x.reshape(1, -1, TINY.token_dim)
    _, block_logdet = block(seq, text, pos)
    assert float(block_logdet[0].detach()) == pytest.approx(_brute_force_logdet(lambda v: block(v, text, pos)[0], seq), abs=1e-8)


def test_deep_block_is_causal_in_time(flow):
    x, text = inputs(frames=4)
    z, _ = flow(x, text)
    for k in range(1, 4):
        changed = x.clone()
        changed[:, k:] += torch.randn_like(changed[:, k:])
        z2, _ = flow(changed, text)
        assert torch.equal(z2[:, :k], z[:, :k]), f"frames before {k} must not see frame {k}"
        assert (z2[:, k] - z[:, k]).abs().max() > 1e-3


def test_shallow_blocks_never_mix_frames(flow):
    x, _ = inputs(frames=4)
    y, logdet = flow.shallow_forward(x)
    changed = x.clone()
    changed[:, 2] += 1.0
    y2, _ = flow.shallow_forward(changed)
    assert torch.equal(y2[:, [0, 1, 3]], y[:, [0, 1, 3]])
    assert (y2[:, 2] - y[:, 2]).abs().max() > 1e-3
    # and the per-frame log-determinants add up: frames are independent
    per_frame = [flow.shallow_forward(x[:, i:i + 1])[1] for i in range(4)]
    assert torch.allclose(sum(per_frame), logdet)


def test_text_conditions_the_flow(flow):
    x, text = inputs()
    z1, _ = flow(x, text)
    z2, _ = flow(x, text + torch.randn_like(text))  # (a constant shift would vanish in LayerNorm)
    assert (z1 - z2).abs().max() > 1e-3


def test_nll_constant_and_gaussian_value():
    z = torch.zeros(1, 5, dtype=torch.float64)
    assert float(gaussian_nll(z, torch.zeros(1))) == pytest.approx(2.5 * math.log(2 * math.pi))
    z = torch.ones(1, 4, dtype=torch.float64)
    assert float(gaussian_nll(z, torch.tensor([1.5]))) == pytest.approx(2.0 + 2 * math.log(2 * math.pi) - 1.5)


def test_guidance_rule_closed_form():
    mu_c, mu_u = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0])
    sc, su = torch.tensor([0.5, 1.0]), torch.tensor([1.0, 0.5])
    mu, sigma = guided_params(mu_c, sc, mu_u, su, 0.0)
    assert torch.equal(mu, mu_c) and torch.equal(sigma, sc)
    w = 2.0
    mu, sigma = guided_params(mu_c, sc, mu_u, su, w)
    s = torch.tensor([0.25, 1.0])  # min(sc/su, 1)^2
    assert torch.allclose(sigma, sc / torch.sqrt(1 + w - w * s))
    assert torch.allclose(mu, ((1 + w) * mu_c - w * s * mu_u) / (1 + w - w * s))
    # equal scales: the familiar extrapolation mu_c + w (mu_c - mu_u)
    mu, sigma = guided_params(mu_c, sc, mu_u, sc, w)
    assert torch.allclose(mu, mu_c + w * (mu_c - mu_u)) and torch.allclose(sigma, sc)


def test_guided_inverse_solves_the_guided_fixed_point(flow):
    x, text = inputs(frames=2)
    uncond = torch.zeros_like(text)
    z = torch.randn_like(x)
    b, f, s, d = x.shape
    pos = flow.deep_positions(f)
    y = flow.deep.inverse(z.reshape(b, f * s, d), text, pos, uncond_prefix=uncond, guidance=1.5)
    # recompute both models' parameters on the produced tokens, in one parallel pass each
    def params(prefix):
        hidden = flow.deep.transformer(torch.cat([prefix, flow.deep.embed(y[:, :-1]) + pos[:-1]], 1))[:, prefix.shape[1] - 1:]
        return flow.deep.affine(hidden)
    mu, sigma = guided_params(*params(text), *params(uncond), 1.5)
    assert torch.allclose((y - mu) / sigma, z.reshape(b, f * s, d), atol=1e-9)


def test_kv_cache_chunks_equal_one_full_pass():
    torch.manual_seed(0)
    net = Transformer(16, 2, 2).double().eval()
    x = torch.randn(2, 10, 16, dtype=torch.float64)
    full = net(x)
    cache = net.new_cache(2, 10, x)
    pieces = [net(x[:, a:b], cache=cache) for a, b in ((0, 3), (3, 4), (4, 10))]
    assert torch.allclose(torch.cat(pieces, 1), full, atol=1e-12)
    cache.length = 4
    trial = net(x[:, 4:7], cache=cache, commit=False)
    assert cache.length == 4 and torch.allclose(trial, full[:, 4:7], atol=1e-12)
    # keep the first two tokens of a chunk, then go on after them
    garbage = torch.randn(2, 3, 16, dtype=torch.float64)
    net(torch.cat([x[:, 4:6], garbage], 1), cache=cache, commit=2)
    assert cache.length == 6
    assert torch.allclose(net(x[:, 6:10], cache=cache), full[:, 6:10], atol=1e-12)


def test_too_many_frames_is_a_clear_error(flow):
    x, text = inputs(frames=5)
    with pytest.raises(ValueError, match="positions for 4 latent frames"):
        flow(x, text)


def test_inverse_continues_given_frames_exactly(flow):
    """Conditioning frames fill the caches; the continuation solves the flow given them."""
    x, text = inputs(frames=3)
    given = x[:, :1]
    z_new = torch.randn(2, 2, TINY.tokens_per_frame, TINY.token_dim, dtype=torch.float64)
    generated = flow.inverse(z_new, text, given=given)
    z_full, _ = flow(torch.cat([given, generated], dim=1), text)
    assert torch.allclose(z_full[:, 1:], z_new, atol=1e-9)
    # and with nothing given, frame 0's noise maps to the same thing as a full inverse
    z = torch.randn_like(x)
    full = flow.inverse(z, text)
    first = flow.inverse(z[:, :1], text)
    assert torch.allclose(full[:, :1], first, atol=1e-9)
    assert torch.allclose(full[:, 1:], flow.inverse(z[:, 1:], text, given=first), atol=1e-9)
