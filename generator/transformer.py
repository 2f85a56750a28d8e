"""A small pre-norm transformer with an optional key/value cache.

The cache lets the flow's inverse run token by token (or block by block, for Jacobi
iteration) without recomputing the prefix: a chunk of new tokens attends to everything cached
plus, causally, to itself. ``commit=False`` evaluates a chunk without keeping it, which is
what a fixed-point iteration needs while the chunk is still changing; ``commit=m`` keeps only
its first m tokens (a finished block fed together with the first guess of the next one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class KVCache:
    """Pre-allocated keys and values for every layer of one transformer."""

    def __init__(self, layers: int, batch: int, heads: int, max_len: int, head_dim: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        shape = (layers, batch, heads, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0
        self.max_len = max_len

    def reset(self) -> None:
        self.length = 0


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        assert width % heads == 0, "width must be divisible by heads"
        self.heads, self.head_dim = heads, width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, *, causal: bool = True, mask: Tensor | None = None,
                cache: KVCache | None = None, layer: int = 0) -> Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if cache is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
        else:
            start = cache.length
            if start + n > cache.max_len:
                raise RuntimeError(f"KV cache holds {cache.max_len} tokens; {start + n} needed")
            # write the whole chunk, attend over views of the cache (no copies on the hot path);
            # only the committed part is kept: the caller advances the length past it
            cache.k[layer, :, :, start:start + n] = k
            cache.v[layer, :, :, start:start + n] = v
            keys, values = cache.k[layer, :, :, :start + n], cache.v[layer, :, :, :start + n]
            # chunk queries see the whole cached prefix and their own chunk, causally unless told otherwise
            # (``mask``, (n, start + n): exactly what each chunk query may see)
            causal_chunk = causal and n > 1 and mask is None
            allowed = torch.ones(n, start + n, dtype=torch.bool, device=x.device).tril(diagonal=start) if causal_chunk else mask
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: Tensor, **attn_kwargs) -> Tensor:
        x = x + self.attn(self.norm1(x), **attn_kwargs)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of pre-norm blocks with a final LayerNorm."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.width, self.depth, self.heads = width, depth, heads
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.apply(_init_weights)

    def forward(self, x: Tensor, *, causal: bool = True, mask: Tensor | None = None,
                cache: KVCache | None = None, commit: bool | int = True) -> Tensor:
        """``commit``: how many leading tokens of the chunk stay in the cache (True: all, False: none)."""
        for i, block in enumerate(self.blocks):
            x = block(x, causal=causal, mask=mask, cache=cache, layer=i)
        if cache is not None:
            cache.length += x.shape[1] if commit is True else int(commit)
        return self.norm(x)

    def new_cache(self, batch: int, max_len: int, like: Tensor) -> KVCache:
        return KVCache(self.depth, batch, self.heads, max_len, self.width // self.heads, like.device, like.dtype)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)

