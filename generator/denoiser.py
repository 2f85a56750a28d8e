"""The causal denoiser trained by flow score matching.

Samples of a flow trained on noise-augmented latents ``x~ = x + sigma_n eps`` are noisy. Tweedie:
``E[x | x~] = x~ - sigma_n^2 grad NLL(x~)``, and the flow gives that gradient exactly. A small
transformer D learns ``sigma_n * grad NLL`` from the flow's own gradient, so denoising is one
step, ``x = x~ - sigma_n D(x~)``, that sees only a window of frames: each latent frame attends to
the ``window`` frames up to itself and ``lookahead`` frames after it, so long videos can be
denoised in overlapping chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from generator.transformer import Transformer


@dataclass
class DenoiserConfig:
    width: int = 64
    depth: int = 2
    heads: int = 4
    window: int = 10
    lookahead: int = 1


def frame_window_mask(num_frames: int, tokens_per_frame: int, window: int, lookahead: int,
                      device: torch.device | None = None) -> Tensor:
    """(N, N) bool: token of frame f may attend to tokens of frames f-window+1 .. f+lookahead."""
    frame = torch.arange(num_frames, device=device).repeat_interleave(tokens_per_frame)
    offset = frame[None, :] - frame[:, None]  # key frame - query frame
    return (offset > -window) & (offset <= lookahead)


class CausalDenoiser(nn.Module):
    def __init__(self, config: DenoiserConfig, token_dim: int, tokens_per_frame: int, max_frames: int) -> None:
        super().__init__()
        self.config, self.tokens_per_frame = config, tokens_per_frame
        self.embed = nn.Linear(token_dim, config.width)
        self.spatial_pos = nn.Parameter(torch.randn(tokens_per_frame, config.width) * 0.02)
        self.frame_pos = nn.Parameter(torch.randn(max_frames, config.width) * 0.02)
        self.transformer = Transformer(config.width, config.depth, config.heads)
        self.head = nn.Linear(config.width, token_dim)
        nn.init.zeros_(self.head.weight)  # starts as "no correction"
        nn.init.zeros_(self.head.bias)

    def forward(self, noisy: Tensor) -> Tensor:
        """(B, F, S, D) noisy latent tokens -> predicted sigma_n * dNLL/dx~ of the same shape."""
        b, f, s, d = noisy.shape
        if f > self.frame_pos.shape[0]:
            raise ValueError(f"the denoiser has positions for {self.frame_pos.shape[0]} frames; got {f} (denoise in chunks)")
        pos = (self.frame_pos[:f, None] + self.spatial_pos[None]).reshape(f * s, -1)
        mask = frame_window_mask(f, s, self.config.window, self.config.lookahead, noisy.device)
        hidden = self.transformer(self.embed(noisy.reshape(b, f * s, d)) + pos, mask=mask)
        return self.head(hidden).view(b, f, s, d)
