"""Inverting an autoregressive flow block: block-parallel Jacobi iteration.

The inverse ``x_t = mu(x_<t) + sigma(x_<t) z_t`` is a triangular fixed point. Jacobi iteration
solves a block of tokens at once: guess the block, compute every token's (mu, sigma) from the
guess in one parallel pass (the finished prefix sits in the KV cache), update, repeat until the
relative change ``||x_new - x||^2 / ||x_new||^2`` falls below ``tolerance`` or ``max_iters`` is
reached, then commit the rest of the block to the cache (fused with the next block's first pass).
After ``len(block)`` iterations the block is exact whatever the guess (token i is right after i+1
sweeps), so with ``max_iters`` at least the block's length the iteration count is bounded by the
block size; a good guess stops far sooner. Tokens known to be exact leave the network pass:
after k sweeps the block's first k tokens are, so each pass commits one more of them to the
cache and feeds one token fewer (they still count in the convergence test, and no longer change). Video-aware warm start: a block's first guess is the
converged tokens at the same positions of the previous latent frame.

:meth:`generator.flow.AutoregressiveFlow.inverse` (one token at a time) is the reference these
results are checked against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from generator.flow import AutoregressiveFlow, guided_params
from generator.transformer import Transformer


@dataclass
class JacobiOptions:
    block_size: int = 16            # tokens per block inside the first latent frame
    later_block_factor: int = 4     # blocks after the first frame hold block_size * this many tokens
    tolerance: float = 1e-3         # on ||dx||^2 / ||x||^2, per clip
    max_iters: int = 32
    warm_start: bool = True


@dataclass
class JacobiStats:
    iterations: list[int] = field(default_factory=list)   # per block

    def merge(self, other: "JacobiStats") -> None:
        self.iterations += other.iterations


class PassCounter:
    """Counts network evaluations (one transformer pass over a chunk of tokens, whatever its
    length) of every transformer inside ``module`` while the ``with`` block is open."""

    def __init__(self, module: nn.Module) -> None:
        self.module, self.count, self._handles = module, 0, []

    def _count(self, *_: object) -> None:
        self.count += 1

    def __enter__(self) -> "PassCounter":
        self._handles = [m.register_forward_hook(self._count) for m in self.module.modules() if isinstance(m, Transformer)]
        return self

    def __exit__(self, *_: object) -> None:
        for handle in self._handles:
            handle.remove()


def block_spans(num_tokens: int, tokens_per_frame: int, options: JacobiOptions, first_position: int = 0) -> list[tuple[int, int]]:
    """[start, end) token spans: ``block_size`` inside the first latent frame, larger blocks later.

    ``first_position`` is where token 0 sits in the video (tokens of given frames come before it).
    A small block never runs past the end of the first frame; later blocks may span frames.
    """
    spans, start = [], 0
    while start < num_tokens:
        position = first_position + start
        if position < tokens_per_frame:
            end = min(start + options.block_size, tokens_per_frame - first_position)
        else:
            end = start + options.block_size * options.later_block_factor
        spans.append((start, min(end, num_tokens)))
        start = spans[-1][1]
    return spans


@torch.no_grad()
def jacobi_inverse(block: AutoregressiveFlow, z: Tensor, prefix: Tensor, pos: Tensor, *, tokens_per_frame: int,
                   options: JacobiOptions = JacobiOptions(), given: Tensor | None = None,
                   uncond_prefix: Tensor | None = None, guidance: float = 0.0) -> tuple[Tensor, JacobiStats]:
    """Block-Jacobi inverse of ``block``: the same tokens as ``block.inverse``, with far fewer passes.

    Arguments mean what they mean for :meth:`AutoregressiveFlow.inverse`; ``given`` tokens fill
    the cache first and also serve as the warm start of the first generated frame. What is left of a
    finished block enters the cache in the same pass as the next block's first iteration, and
    each clip stops updating once its own change is below the tolerance, so a clip's result never
    depends on what else is in the batch.
    """
    guided = uncond_prefix is not None and guidance != 0.0
    both = (lambda t: torch.cat([t, t])) if guided else (lambda t: t)  # noqa: E731
    b, n, d = z.shape
    g = 0 if given is None else given.shape[1]
    stats = JacobiStats()
    cache, hidden = block.start(torch.cat([prefix, uncond_prefix]) if guided else prefix, g + n)
    known = given if given is not None else z.new_zeros(b, 0, d)   # given, then generated tokens
    pending = given if g else None                                  # finished, not yet in the cache
    for start, end in block_spans(n, tokens_per_frame, options, first_position=g):
        z_block = z[:, start:end]
        x = _first_guess(known, end - start, tokens_per_frame, options.warm_start)
        active = torch.ones(b, dtype=torch.bool, device=z.device)
        states = hidden    # the states that predict the block's tokens 0..done
        done = 0           # leading tokens of the block already in the cache
        iterations = 0
        for iterations in range(1, options.max_iters + 1):
            # token i is exact after i + 1 sweeps, so the first iterations - 1 tokens are exact now (or
            # frozen at their final value, for a clip that has converged): fed once more, their keys
            # and values are final and they stay in the cache
            exact = iterations - 1
            kept = 0 if pending is None else pending.shape[1]
            chunk = x[:, done:-1] if pending is None else torch.cat([pending, x[:, done:-1]], dim=1)
            if chunk.shape[1]:
                first = g + start + done - kept
                out = block.step(both(chunk), pos[first:first + chunk.shape[1]], cache, commit=kept + exact - done)
                if kept:
                    states, pending = out[:, kept - 1:kept], None
                states = torch.cat([states[:, :done + 1], out[:, kept:]], dim=1)
                done = exact
            mu, sigma = block.affine(states)
            if guided:
                mu, sigma = guided_params(mu[:b], sigma[:b], mu[b:], sigma[b:], guidance)
            x_new = mu + sigma * z_block
            change = (x_new - x).pow(2).sum(dim=(1, 2)) / x_new.pow(2).sum(dim=(1, 2)).clamp_min(1e-30)
            x = torch.where(active[:, None, None], x_new, x)
            active &= change >= options.tolerance
            if not active.any() or iterations >= end - start:
                break  # converged, or exact: a block of L tokens is exact after L sweeps
        stats.iterations.append(iterations)
        pending = x[:, done:]   # the rest of the block enters the cache in the next block's first pass
        known = torch.cat([known, x], dim=1)
    return known[:, g:], stats


def _first_guess(known: Tensor, length: int, tokens_per_frame: int, warm_start: bool) -> Tensor:
    """The first guess for the ``length`` tokens after ``known``: each token starts from the
    token at the same position one latent frame earlier (itself a guess inside a long block),
    or from zero where there is no earlier frame or ``warm_start`` is off."""
    b, position, d = known.shape
    guess = known.new_zeros(b, length, d)
    if not warm_start:
        return guess
    for offset in range(0, length, tokens_per_frame):
        stop = min(offset + tokens_per_frame, length)
        source_start, source_stop = position + offset - tokens_per_frame, position + stop - tokens_per_frame
        if source_stop <= 0:
            continue
        filled = torch.cat([known, guess[:, :offset]], dim=1)
        skip = max(0, -source_start)
        guess[:, offset + skip:stop] = filled[:, source_start + skip:source_stop]
    return guess


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
