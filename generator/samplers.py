"""Inverting an autoregressive flow block: block-parallel Jacobi iteration.

The inverse ``x_t = mu(x_<t) + sigma(x_<t) z_t`` is a triangular fixed point. Jacobi iteration
solves a block of tokens at once: guess the block, compute every token's (mu, sigma) from the
guess in one parallel pass (the finished prefix sits in the KV cache), update, repeat until the
relative change ``||x_new - x||^2 / ||x_new||^2`` falls below ``tolerance`` or ``max_iters`` is
reached, then commit the block to the cache. After ``len(block)`` iterations the block is exact
whatever the guess (token i is right after i+1 sweeps), so the iteration count is bounded by the
block size; a good guess stops far sooner. Video-aware warm start: a block's first guess is the
converged tokens at the same positions of the previous latent frame.

:meth:`generator.flow.AutoregressiveFlow.inverse` (one token at a time) is the reference these
results are checked against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from generator.flow import AutoregressiveFlow, guided_params


@dataclass
class JacobiOptions:
    block_size: int = 16            # tokens per block inside the first frame
    later_block_factor: int = 4     # blocks after the first frame hold block_size * this many tokens
    tolerance: float = 1e-3         # on ||dx||^2 / ||x||^2
    max_iters: int = 32
    warm_start: bool = True


@dataclass
class JacobiStats:
    """What one inversion cost: a network evaluation is one pass of the transformer over a chunk."""

    iterations: list[int] = field(default_factory=list)   # per block
    network_evaluations: int = 0

    def merge(self, other: "JacobiStats") -> None:
        self.iterations += other.iterations
        self.network_evaluations += other.network_evaluations


def block_spans(num_tokens: int, tokens_per_frame: int, options: JacobiOptions, first_position: int = 0) -> list[tuple[int, int]]:
    """[start, end) token spans: ``block_size`` inside the first latent frame, larger blocks later.

    Spans never cross a frame boundary, so a warm start always reads one whole earlier frame.
    ``first_position`` is where token 0 sits in the video (tokens of given frames come before it).
    """
    spans, start = [], 0
    while start < num_tokens:
        position = first_position + start
        size = options.block_size if position < tokens_per_frame else options.block_size * options.later_block_factor
        frame_end = (position // tokens_per_frame + 1) * tokens_per_frame - first_position
        end = min(start + size, frame_end, num_tokens)
        spans.append((start, end))
        start = end
    return spans


@torch.no_grad()
def jacobi_inverse(block: AutoregressiveFlow, z: Tensor, prefix: Tensor, pos: Tensor, *, tokens_per_frame: int,
                   options: JacobiOptions = JacobiOptions(), given: Tensor | None = None,
                   uncond_prefix: Tensor | None = None, guidance: float = 0.0) -> tuple[Tensor, JacobiStats]:
    """Block-Jacobi inverse of ``block``: the same tokens as ``block.inverse``, with far fewer passes.

    Arguments mean what they mean for :meth:`AutoregressiveFlow.inverse`; ``given`` tokens fill
    the cache first and also serve as the warm start of the first generated frame.
    """
    guided = uncond_prefix is not None and guidance != 0.0
    both = (lambda t: torch.cat([t, t])) if guided else (lambda t: t)  # noqa: E731
    b, n, _ = z.shape
    g = 0 if given is None else given.shape[1]
    stats = JacobiStats()
    cache, hidden = block.start(torch.cat([prefix, uncond_prefix]) if guided else prefix, g + n)
    stats.network_evaluations += 1
    if g:
        hidden = block.step(both(given), pos[:g], cache)[:, -1:]
        stats.network_evaluations += 1
    history = given if given is not None else z.new_zeros(b, 0, z.shape[2])
    out = z.new_empty(z.shape)
    for start, end in block_spans(n, tokens_per_frame, options, first_position=g):
        z_block = z[:, start:end]
        x = _first_guess(history, out[:, :start], g + start, end - start, tokens_per_frame, options.warm_start, z_block)
        iterations = 0
        for iterations in range(1, options.max_iters + 1):
            states = hidden
            if end - start > 1:
                rest = block.step(both(x[:, :-1]), pos[g + start:g + end - 1], cache, commit=False)
                states = torch.cat([hidden, rest], dim=1)
                stats.network_evaluations += 1
            mu, sigma = block.affine(states)
            if guided:
                mu, sigma = guided_params(mu[:b], sigma[:b], mu[b:], sigma[b:], guidance)
            x_new = mu + sigma * z_block
            # per sample, so one clip's result never depends on what else is in the batch
            change = (x_new - x).pow(2).sum(dim=(1, 2)) / x_new.pow(2).sum(dim=(1, 2)).clamp_min(1e-12)
            x = x_new
            if change.amax() < options.tolerance or iterations >= end - start:
                break  # converged, or exact: a block of L tokens is exact after L sweeps
        stats.iterations.append(iterations)
        out[:, start:end] = x
        hidden = block.step(both(x), pos[g + start:g + end], cache)[:, -1:]
        stats.network_evaluations += 1
    return out, stats


def _first_guess(given: Tensor, done: Tensor, position: int, length: int, tokens_per_frame: int,
                 warm_start: bool, z_block: Tensor) -> Tensor:
    """The converged tokens one frame earlier at the same positions, else zeros."""
    earlier = position - tokens_per_frame
    if warm_start and earlier >= 0:
        known = torch.cat([given, done], dim=1)
        return known[:, earlier:earlier + length].clone()
    return torch.zeros_like(z_block)


class JacobiInverter:
    """A block inverter for :meth:`GlobalLocalFlow.inverse` that runs Jacobi iteration and
    accumulates its statistics over every block it inverts."""

    def __init__(self, options: JacobiOptions = JacobiOptions()) -> None:
        self.options = options
        self.stats = JacobiStats()

    def __call__(self, block: AutoregressiveFlow, z: Tensor, prefix: Tensor, pos: Tensor, *, tokens_per_frame: int,
                 given: Tensor | None = None, uncond_prefix: Tensor | None = None, guidance: float = 0.0) -> Tensor:
        x, stats = jacobi_inverse(block, z, prefix, pos, tokens_per_frame=tokens_per_frame, options=self.options,
                                  given=given, uncond_prefix=uncond_prefix, guidance=guidance)
        self.stats.merge(stats)
        return x
