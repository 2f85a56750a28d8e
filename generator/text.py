"""Caption encoder: open_clip's BPE tokenizer and a small transformer trained with the model.

The encoder is trained from scratch together with the flow, so it shares nothing with any CLIP
used later to score CLIPSIM. Its embedding table holds only the BPE tokens that occur in the
training captions (plus padding and unknown), which keeps a shapes-world checkpoint at a few
megabytes instead of carrying 49,408 rows; a token never seen in training maps to ``<unk>``,
which is what an unseen word means to this model anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import Tensor, nn

from generator.transformer import Transformer

PAD, UNK = 0, 1


@dataclass
class TextConfig:
    vocab: list[int] = field(default_factory=list)  # open_clip token ids, in compact-id order after PAD and UNK
    max_len: int = 40
    width: int = 64
    depth: int = 2
    heads: int = 4


def build_vocab(captions: Iterable[str], max_len: int = 40) -> list[int]:
    """The sorted open_clip token ids that occur in ``captions`` (start and end markers included)."""
    import open_clip  # imported on use: importing the package costs seconds (torchvision, timm)

    ids = open_clip.tokenize(list(captions), context_length=max_len)
    return sorted(int(i) for i in torch.unique(ids) if int(i) != 0)


class TextEncoder(nn.Module):
    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        if not config.vocab:
            raise ValueError("TextConfig.vocab is empty: build it with build_vocab(training captions)")
        self.config = config
        lookup = torch.full((max(config.vocab) + 1,), UNK, dtype=torch.long)
        lookup[torch.tensor(config.vocab)] = torch.arange(2, len(config.vocab) + 2)
        lookup[0] = PAD
        self.register_buffer("lookup", lookup, persistent=False)
        self.embed = nn.Embedding(len(config.vocab) + 2, config.width)
        self.pos = nn.Parameter(torch.randn(config.max_len, config.width) * 0.02)
        self.transformer = Transformer(config.width, config.depth, config.heads)

    def tokenize(self, captions: list[str]) -> Tensor:
        """Captions -> compact token ids (B, max_len); unseen BPE tokens become <unk>."""
        import open_clip

        ids = open_clip.tokenize(captions, context_length=self.config.max_len).to(self.lookup.device)
        known = ids < self.lookup.numel()
        return torch.where(known, self.lookup[ids.clamp(max=self.lookup.numel() - 1)], torch.full_like(ids, UNK))

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, max_len) ids -> (B, max_len, width) features; attention is bidirectional."""
        return self.transformer(self.embed(tokens.to(self.pos.device)) + self.pos, causal=False)

    def encode(self, captions: list[str]) -> Tensor:
        return self(self.tokenize(captions))


def caption_tokens(encoder: TextEncoder, captions: list[str], drop: Tensor | None = None) -> Tensor:
    """Token ids; rows where ``drop`` is True get the empty caption (the unconditional model)."""
    tokens = encoder.tokenize(captions)
    if drop is not None and bool(drop.any()):
        tokens = torch.where(drop[:, None].to(tokens.device), encoder.tokenize([""]), tokens)
    return tokens
