"""Affine autoregressive flows (TarFlow blocks) and the global-local STARFlow-V stack.

One block maps data tokens x to noise tokens z with a causal transformer that reads x_<t and
predicts a shift mu_t and scale sigma_t for token t:

    forward (one parallel pass):  z_t = (x_t - mu_t) / sigma_t,   log|det| = -sum_t log sigma_t
    inverse (sequential in t):    x_t = mu_t + sigma_t * z_t

``sigma = softplus(a + 0.5413)`` is 1 when a = 0, and the head is zero-initialised, so every
block starts as the identity. The head output is soft-clipped with ``4 tanh(./4)``.

The global-local stack: shallow blocks act on each latent frame on its own (no cross-frame
attention, no text), alternating raster and reversed-raster token order; one deep block, next
to the noise, is a single causal transformer over ``[text prefix, frame 0, frame 1, ...]``,
so every dependency across time lives in the deep block.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generator.transformer import KVCache, Transformer

SIGMA_OFFSET = math.log(math.e - 1)  # 0.5413...: softplus of it is exactly 1, so sigma starts at one
HEAD_CLIP = 4.0


def guided_params(mu_c: Tensor, sigma_c: Tensor, mu_u: Tensor, sigma_u: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Classifier-free guidance as a tempered product of Gaussians (STARFlow-V's rule).

    ``s = min(sc/su, 1)^2``, ``sigma = sc / sqrt(1 + w - w s)``,
    ``mu = ((1 + w) mu_c - w s mu_u) / (1 + w - w s)``; w = 0 gives the conditional model.
    """
    s = torch.clamp(sigma_c / sigma_u, max=1.0) ** 2
    denominator = 1.0 + scale - scale * s
    return ((1.0 + scale) * mu_c - scale * s * mu_u) / denominator, sigma_c / torch.sqrt(denominator)


class AutoregressiveFlow(nn.Module):
    """One affine autoregressive flow block over a sequence of ``token_dim``-vectors.

    The owner supplies the conditioning ``prefix`` (P vectors of the transformer width; its last
    output predicts token 0) and the positional embedding of each token.
    """

    def __init__(self, token_dim: int, width: int, depth: int, heads: int) -> None:
        super().__init__()
        self.token_dim = token_dim
        self.embed = nn.Linear(token_dim, width)
        self.transformer = Transformer(width, depth, heads)
        self.head = nn.Linear(width, 2 * token_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def affine(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        out = HEAD_CLIP * torch.tanh(self.head(hidden) / HEAD_CLIP)
        mu, a = out.chunk(2, dim=-1)
        return mu, F.softplus(a + SIGMA_OFFSET)

    def forward(self, x: Tensor, prefix: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, N, D) -> z (B, N, D) and log|det dz/dx| (B,)."""
        p = prefix.shape[1]
        inputs = torch.cat([prefix, self.embed(x[:, :-1]) + pos[:-1]], dim=1)
        hidden = self.transformer(inputs)[:, p - 1:]
        mu, sigma = self.affine(hidden)
        z = (x - mu) / sigma
        return z, -torch.log(sigma).flatten(1).sum(dim=1)

    def start(self, prefix: Tensor, max_tokens: int) -> tuple[KVCache, Tensor]:
        """A cache filled with the prefix, and the hidden state that predicts token 0."""
        cache = self.transformer.new_cache(prefix.shape[0], prefix.shape[1] + max_tokens, prefix)
        hidden = self.transformer(prefix, cache=cache)[:, -1:]
        return cache, hidden

    def step(self, x: Tensor, pos: Tensor, cache: KVCache, commit: bool | int = True) -> Tensor:
        """Feed tokens x (B, n, D) at positions ``pos`` (n, W); returns their n hidden states.
        ``commit``: how many leading tokens stay in the cache (True: all)."""
        return self.transformer(self.embed(x) + pos, cache=cache, commit=commit)

    @torch.no_grad()
    def inverse(self, z: Tensor, prefix: Tensor, pos: Tensor, *, given: Tensor | None = None,
                uncond_prefix: Tensor | None = None, guidance: float = 0.0) -> Tensor:
        """Sequential inverse, one token at a time with a KV cache (the exact reference).

        ``given`` (B, G, D) are known leading tokens (conditioning frames): they only fill the
        cache, and ``z`` (B, n, D) is inverted into the n tokens after them (positions G..G+n-1).
        """
        guided = uncond_prefix is not None and guidance != 0.0
        both = (lambda t: torch.cat([t, t])) if guided else (lambda t: t)  # noqa: E731
        b, n, _ = z.shape
        g = 0 if given is None else given.shape[1]
        cache, hidden = self.start(torch.cat([prefix, uncond_prefix]) if guided else prefix, g + n)
        if g:
            hidden = self.step(both(given), pos[:g], cache)[:, -1:]
        tokens = []
        for t in range(n):
            mu, sigma = self.affine(hidden)
            if guided:
                mu, sigma = guided_params(mu[:b], sigma[:b], mu[b:], sigma[b:], guidance)
            x_t = mu + sigma * z[:, t:t + 1]
            tokens.append(x_t)
            if t + 1 < n:
                hidden = self.step(both(x_t), pos[g + t:g + t + 1], cache)
        return torch.cat(tokens, dim=1)


class BlockInverter(Protocol):
    """Inverts one block: ``(block, z, prefix, pos, *, tokens_per_frame, given, uncond_prefix, guidance) -> x``."""

    def __call__(self, block: AutoregressiveFlow, z: Tensor, prefix: Tensor, pos: Tensor, *, tokens_per_frame: int,
                 given: Tensor | None = None, uncond_prefix: Tensor | None = None, guidance: float = 0.0) -> Tensor: ...


def sequential_inverse(block: AutoregressiveFlow, z: Tensor, prefix: Tensor, pos: Tensor, *, tokens_per_frame: int,
                       given: Tensor | None = None, uncond_prefix: Tensor | None = None, guidance: float = 0.0) -> Tensor:
    """The exact token-by-token inverse (the reference every faster sampler is checked against)."""
    return block.inverse(z, prefix, pos, given=given, uncond_prefix=uncond_prefix, guidance=guidance)


@dataclass
class FlowConfig:
    # defaults: the shapes-world model, sized to train on a 2-core CPU
    token_dim: int = 8            # latent channels: one token is one latent pixel
    frame_height: int = 8         # latent frame size
    frame_width: int = 8
    max_frames: int = 5           # latent frames the deep block has positions for (the training length)
    shallow_blocks: int = 2
    shallow_depth: int = 2
    shallow_width: int = 96
    deep_depth: int = 4
    deep_width: int = 128
    heads: int = 4

    @property
    def tokens_per_frame(self) -> int:
        return self.frame_height * self.frame_width


class GlobalLocalFlow(nn.Module):
    """Shallow per-frame blocks (local) under one deep causal block over all frames (global)."""

    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        self.config = config
        c, s = config, config.tokens_per_frame
        self.shallow = nn.ModuleList(
            AutoregressiveFlow(c.token_dim, c.shallow_width, c.shallow_depth, c.heads) for _ in range(c.shallow_blocks))
        self.shallow_start = nn.Parameter(torch.zeros(c.shallow_blocks, 1, 1, c.shallow_width))
        self.shallow_pos = nn.Parameter(torch.randn(c.shallow_blocks, s, c.shallow_width) * 0.02)
        self.deep = AutoregressiveFlow(c.token_dim, c.deep_width, c.deep_depth, c.heads)
        self.spatial_pos = nn.Parameter(torch.randn(s, c.deep_width) * 0.02)
        self.frame_pos = nn.Parameter(torch.randn(c.max_frames, c.deep_width) * 0.02)

    # ------------------------------------------------------------ token layout

    def deep_positions(self, num_frames: int, first_frame: int = 0) -> Tensor:
        if first_frame + num_frames > self.config.max_frames:
            raise ValueError(f"the deep block has positions for {self.config.max_frames} latent frames; "
                             f"asked for frames {first_frame}..{first_frame + num_frames - 1}")
        frames = self.frame_pos[first_frame:first_frame + num_frames]
        return (frames[:, None, :] + self.spatial_pos[None]).reshape(-1, self.config.deep_width)

    @staticmethod
    def _frames_as_sequences(x: Tensor, reverse: bool) -> Tensor:
        b, f, s, d = x.shape
        seq = x.reshape(b * f, s, d)
        return seq.flip(1) if reverse else seq

    @staticmethod
    def _sequences_as_frames(seq: Tensor, shape: torch.Size, reverse: bool) -> Tensor:
        return (seq.flip(1) if reverse else seq).reshape(shape)

    # ------------------------------------------------------------ shallow (local) stack

    def shallow_forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Every shallow block on every frame independently: (B, F, S, D) -> same, logdet (B,)."""
        b, f = x.shape[:2]
        logdet = x.new_zeros(b)
        for i, block in enumerate(self.shallow):
            reverse = i % 2 == 1
            seq = self._frames_as_sequences(x, reverse)
            start = self.shallow_start[i].expand(seq.shape[0], 1, -1)
            z, ld = block(seq, start, self.shallow_pos[i].flip(0) if reverse else self.shallow_pos[i])
            x = self._sequences_as_frames(z, x.shape, reverse)
            logdet = logdet + ld.view(b, f).sum(dim=1)
        return x, logdet

    @torch.no_grad()
    def shallow_inverse(self, y: Tensor) -> Tensor:
        """Every shallow block inverted on every frame, token by token (exact).

        A shallow block sees one frame, so all B x F frames go in one batch, and the token-by-token
        inverse costs one pass over the batch per token: for a 30 s clip's 61 x 8 frames 2.7 times
        less time than block Jacobi, which re-runs the whole frame on every iteration (measured at
        one thread). Jacobi iteration pays off for the deep block, whose tokens are not independent.
        """
        for i in reversed(range(len(self.shallow))):
            reverse = i % 2 == 1
            seq = self._frames_as_sequences(y, reverse)
            start = self.shallow_start[i].expand(seq.shape[0], 1, -1)
            pos = self.shallow_pos[i].flip(0) if reverse else self.shallow_pos[i]
            inverted = self.shallow[i].inverse(seq, start, pos)
            y = self._sequences_as_frames(inverted, y.shape, reverse)
        return y

    # ------------------------------------------------------------ the whole flow

    def forward(self, x: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        """Latent video tokens (B, F, S, D) and text prefix (B, L, W_deep) -> z (B, F, S, D), logdet (B,)."""
        b, f, s, d = x.shape
        y, logdet = self.shallow_forward(x)
        z, deep_logdet = self.deep(y.reshape(b, f * s, d), text, self.deep_positions(f))
        return z.view(b, f, s, d), logdet + deep_logdet

    @torch.no_grad()
    def inverse(self, z: Tensor, text: Tensor, *, given: Tensor | None = None, uncond_text: Tensor | None = None,
                guidance: float = 0.0, invert: "BlockInverter | None" = None) -> Tensor:
        """z (B, F, S, D) -> the F latent frames after the ``given`` ones (B, K, S, D), if any.

        Given frames condition the clip the way the model reads any clip: they run forward
        through the shallow blocks and fill the deep block's cache, then generation continues.
        ``invert`` inverts the deep block (default: the exact sequential reference; see
        ``generator.samplers`` for Jacobi iteration); the shallow blocks are always inverted token by
        token (:meth:`shallow_inverse`).
        """
        given_deep = None if given is None else self.shallow_forward(given)[0]
        y = self.deep_inverse(z, text, given=given_deep, uncond_text=uncond_text, guidance=guidance, invert=invert)
        return self.shallow_inverse(y)

    @torch.no_grad()
    def deep_inverse(self, z: Tensor, text: Tensor, *, given: Tensor | None = None, uncond_text: Tensor | None = None,
                     guidance: float = 0.0, invert: "BlockInverter | None" = None) -> Tensor:
        """The deep block alone: z (B, F, S, D) -> the shallow stack's outputs y (B, F, S, D) of the
        F frames after ``given`` (B, K, S, D), which are themselves shallow outputs (what
        :meth:`shallow_forward` makes of clean frames). :meth:`shallow_inverse` finishes the frames;
        it treats every frame on its own, so a caller may run it once over many calls' outputs."""
        invert = invert or sequential_inverse
        b, f, s, d = z.shape
        k = 0 if given is None else given.shape[1]
        given_tokens = given.reshape(b, k * s, d) if k else None
        y = invert(self.deep, z.reshape(b, f * s, d), text, self.deep_positions(k + f), tokens_per_frame=s,
                   given=given_tokens, uncond_prefix=uncond_text, guidance=guidance)
        return y.view(b, f, s, d)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def config_dict(self) -> dict:
        return asdict(self.config)


def gaussian_nll(z: Tensor, logdet: Tensor) -> Tensor:
    """-log p(x) in nats per sample: 0.5 ||z||^2 + D/2 log(2 pi) - log|det|."""
    dims = z[0].numel()
    return 0.5 * z.flatten(1).pow(2).sum(dim=1) + 0.5 * dims * math.log(2 * math.pi) - logdet
