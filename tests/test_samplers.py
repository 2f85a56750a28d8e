"""Jacobi inversion against the exact sequential reference."""

from __future__ import annotations

import pytest
import torch

from generator.flow import GlobalLocalFlow
from generator.samplers import JacobiInverter, JacobiOptions, PassCounter, block_spans, jacobi_inverse
from tests.test_flow import TINY, inputs, randomize_heads


@pytest.fixture()
def flow() -> GlobalLocalFlow:
    torch.manual_seed(0)
    model = GlobalLocalFlow(TINY).double().eval()
    randomize_heads(model, std=0.2)
    return model


def test_block_spans_small_in_the_first_frame_large_later():
    options = JacobiOptions(block_size=2, later_block_factor=2)
    assert block_spans(15, 6, options) == [(0, 2), (2, 4), (4, 6), (6, 10), (10, 14), (14, 15)]
    # a small block stops at the end of the first frame
    options = JacobiOptions(block_size=4, later_block_factor=3)
    assert block_spans(20, 6, options) == [(0, 4), (4, 6), (6, 18), (18, 20)]
    # with one given frame, generation starts at a later frame: big blocks from the start
    assert block_spans(6, 6, JacobiOptions(block_size=2, later_block_factor=2), first_position=6) == [(0, 4), (4, 6)]


@pytest.mark.parametrize("options", [
    JacobiOptions(block_size=1, tolerance=0.0),
    JacobiOptions(block_size=3, later_block_factor=2, tolerance=1e-12, warm_start=False),
    JacobiOptions(block_size=6, later_block_factor=1, tolerance=1e-12),
])
def test_jacobi_equals_sequential(flow, options):
    x, text = inputs(frames=3)
    z = torch.randn_like(x)
    exact = flow.inverse(z, text)
    inverter = JacobiInverter(options)
    fast = flow.inverse(z, text, invert=inverter)
    assert (fast - exact).abs().max() < 1e-6
    assert max(inverter.stats.iterations) <= 6


def test_jacobi_with_given_frames_and_guidance(flow):
    x, text = inputs(frames=3)
    z = torch.randn(2, 2, TINY.tokens_per_frame, TINY.token_dim, dtype=torch.float64)
    uncond = torch.zeros_like(text)
    exact = flow.inverse(z, text, given=x[:, :1], uncond_text=uncond, guidance=2.0)
    fast = flow.inverse(z, text, given=x[:, :1], uncond_text=uncond, guidance=2.0,
                        invert=JacobiInverter(JacobiOptions(block_size=2, tolerance=1e-12)))
    assert (fast - exact).abs().max() < 1e-6


def test_iterations_stop_at_block_size_and_count_network_passes(flow):
    x, text = inputs(frames=2)
    z = torch.randn(2, 2 * TINY.tokens_per_frame, TINY.token_dim, dtype=torch.float64)
    pos = flow.deep_positions(2)
    options = JacobiOptions(block_size=3, later_block_factor=2, tolerance=0.0, warm_start=False)
    with PassCounter(flow) as jacobi_passes:
        out, stats = jacobi_inverse(flow.deep, z, text, pos, tokens_per_frame=TINY.tokens_per_frame, options=options)
    assert stats.iterations == [3, 3, 6]  # tolerance 0 never converges early: exact after L sweeps
    # the start, then one pass per iteration: a finished block rides along with the next block's first
    assert jacobi_passes.count == 1 + 3 + 3 + 6
    with PassCounter(flow) as sequential_passes:
        exact = flow.deep.inverse(z, text, pos)
    assert sequential_passes.count == 1 + 2 * TINY.tokens_per_frame - 1  # the start, then one pass per token
    assert torch.allclose(out, exact, atol=1e-9)


def test_warm_start_reads_the_previous_frame():
    from generator.samplers import _first_guess

    known = torch.arange(10.0).view(1, 10, 1)  # frames of 4 tokens: 0-3, 4-7, then half a frame 8-9
    # the next two tokens (frame 2, tokens 2-3) start from frame 1, tokens 2-3
    assert _first_guess(known, 2, tokens_per_frame=4, warm_start=True).flatten().tolist() == [6.0, 7.0]
    # a block longer than a frame repeats the last frame
    assert _first_guess(known[:, :8], 8, 4, True).flatten().tolist() == [4, 5, 6, 7, 4, 5, 6, 7]
    # where there is no earlier frame (or no warm start) the guess is zero
    assert _first_guess(known[:, :2] + 1, 3, 4, True).flatten().tolist() == [0.0, 0.0, 1.0]
    assert _first_guess(known[:, :6], 4, 4, True).flatten().tolist() == [2.0, 3.0, 4.0, 5.0]
    assert _first_guess(known, 2, 4, False).flatten().tolist() == [0.0, 0.0]


def test_convergence_is_judged_per_sample(flow):
    """A wildly different clip in the batch must not stop another clip's iteration early."""
    x, text = inputs(frames=2)
    z = torch.randn_like(x)
    options = JacobiOptions(block_size=6, later_block_factor=1, tolerance=1e-3, warm_start=False)
    alone = flow.inverse(z[:1], text[:1], invert=JacobiInverter(options))
    z_mixed = torch.cat([z[:1], 30 * z[1:]])
    together = flow.inverse(z_mixed, text, invert=JacobiInverter(options))
    assert torch.allclose(together[:1], alone, atol=1e-12)


def test_each_pass_commits_the_exact_prefix_and_feeds_one_token_fewer(flow):
    """Token i of a block is exact after i + 1 sweeps: each pass keeps one more of the block's
    tokens in the cache and stops feeding it, and the cache always ends where the chunk starts."""
    x, text = inputs(frames=2)
    z = torch.randn(2, 2 * TINY.tokens_per_frame, TINY.token_dim, dtype=torch.float64)
    pos = flow.deep_positions(2)
    fed, starts = [], []

    def record(module, args, kwargs):
        fed.append(args[0].shape[1])
        starts.append(kwargs["cache"].length)

    handle = flow.deep.transformer.register_forward_pre_hook(record, with_kwargs=True)
    options = JacobiOptions(block_size=3, later_block_factor=2, tolerance=0.0, warm_start=False)
    try:
        out, stats = jacobi_inverse(flow.deep, z, text, pos, tokens_per_frame=TINY.tokens_per_frame, options=options)
    finally:
        handle.remove()
    p = text.shape[1]
    assert stats.iterations == [3, 3, 6]  # blocks (0, 3), (3, 6), (6, 12)
    # the prefix; block 1: x0-x1 twice, then x1; block 2: x2 (left of block 1) with x3-x4, then one fewer
    # a pass; block 3: x5 with x6-x10, then one fewer a pass
    assert fed == [p, 2, 2, 1, 3, 2, 1, 6, 5, 4, 3, 2, 1]
    # where each pass starts: after the prefix and every token committed so far (x0, x1, x2, ...)
    assert starts == [0, p, p, p + 1, p + 2, p + 3, p + 4, p + 5, p + 6, p + 7, p + 8, p + 9, p + 10]
    assert torch.allclose(out, flow.deep.inverse(z, text, pos), atol=1e-9)


def test_only_the_deep_block_is_inverted_by_the_sampler_the_shallow_blocks_token_by_token(flow):
    x, text = inputs(frames=2)
    z = torch.randn_like(x)
    blocks = []
    inverter = JacobiInverter(JacobiOptions(block_size=3, tolerance=1e-12))

    def recording(block, *args, **kwargs):
        blocks.append(block)
        return inverter(block, *args, **kwargs)

    out = flow.inverse(z, text, invert=recording)
    assert blocks == [flow.deep]
    assert len(inverter.stats.iterations) == len(block_spans(2 * TINY.tokens_per_frame, TINY.tokens_per_frame,
                                                             inverter.options))
    assert torch.allclose(out, flow.inverse(z, text), atol=1e-6)
