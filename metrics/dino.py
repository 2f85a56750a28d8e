"""DINO ViT-B/16 (Caron et al. 2021): the image features of VBench's subject consistency.

A plain pre-norm Vision Transformer whose parameter names are those of the official
``dino_vitbase16_pretrain.pth`` (a bare state dict: ``cls_token``, ``pos_embed``,
``patch_embed.proj.*``, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*``, ``norm.*``),
so that file loads strictly. The output is the final LayerNorm of the CLS token.

What changes numbers, as DINO's own code computes them:

- Any input that is not 224x224 gets its 14x14 position grid resized bicubically with
  ``scale_factor=((H//16 + 0.1)/14, (W//16 + 0.1)/14)`` (align_corners False), not ``size=``: the
  scale factor, not the size, sets PyTorch's sampling positions. A square 224 px input uses the
  table as it is.
- The stride-16 patch convolution drops remainder pixels (a 224x298 frame gives 14x18 patches).
- Attention is ``softmax((q @ k^T) * d**-0.5) @ v`` (computed by PyTorch's fused kernel, which
  rounds differently from DINO's written-out form by about 1e-7 relative), GELU is the exact (erf)
  one, LayerNorm eps is 1e-6, the qkv projection has a bias.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WEIGHTS_FILENAME = "dino_vitbase16_pretrain.pth"
WEIGHTS_URL = "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"
PATCH = 16
GRID = 14  # the position table is for 224 px inputs: 14 x 14 patches
WIDTH = 768
DEPTH = 12
HEADS = 12


class PatchEmbed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, WIDTH, kernel_size=PATCH, stride=PATCH)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.proj = nn.Linear(WIDTH, WIDTH)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, HEADS, width // HEADS).permute(2, 0, 3, 1, 4)
        # PyTorch's fused attention computes DINO's softmax((q @ k^T) * d**-0.5) @ v about 10 % faster
        # on a CPU; it rounds differently, by about 1e-7 relative on the features (equality is
        # checked to 1e-6 against DINO's own code by scripts/compare_vbench.py and tests/test_vbench.py)
        attended = F.scaled_dot_product_attention(q, k, v)
        return self.proj(attended.transpose(1, 2).reshape(batch, tokens, width))


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(WIDTH, 4 * WIDTH)
        self.fc2 = nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(WIDTH, eps=1e-6)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(WIDTH, eps=1e-6)
        self.mlp = Mlp()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DinoViTB16(nn.Module):
    """Images (B, 3, H, W), ImageNet-normalised, any size of at least 16 px -> CLS features (B, 768)."""

    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + GRID * GRID, WIDTH))
        self.patch_embed = PatchEmbed()
        self.blocks = nn.ModuleList(Block() for _ in range(DEPTH))
        self.norm = nn.LayerNorm(WIDTH, eps=1e-6)

    def position_table(self, height: int, width: int) -> Tensor:
        """The position embeddings for an input of ``height`` x ``width`` pixels."""
        if (height, width) == (GRID * PATCH, GRID * PATCH):
            return self.pos_embed
        rows, cols = height // PATCH, width // PATCH
        grid = self.pos_embed[:, 1:].reshape(1, GRID, GRID, WIDTH).permute(0, 3, 1, 2)
        # +0.1 keeps floor(scale * 14) at the patch count despite rounding (DINO issue 8)
        grid = F.interpolate(grid, scale_factor=((rows + 0.1) / GRID, (cols + 0.1) / GRID), mode="bicubic")
        if grid.shape[-2:] != (rows, cols):
            raise AssertionError(f"position grid {tuple(grid.shape[-2:])} for {rows}x{cols} patches")
        return torch.cat([self.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, rows * cols, WIDTH)], dim=1)

    def forward(self, images: Tensor) -> Tensor:
        tokens = self.patch_embed(images)
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        tokens = tokens + self.position_table(*images.shape[-2:])
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]


def dino_template() -> dict[str, Tensor]:
    """The official file's layout: a bare state dict."""
    return DinoViTB16().state_dict()


def load_dino_vitb16(path: str | Path, device: str = "cpu") -> DinoViTB16:
    """DINO ViT-B/16 from ``dino_vitbase16_pretrain.pth`` (strictly); never downloads."""
    from metrics.extractors import read_state_dict

    model = DinoViTB16()
    read_state_dict(model, path, name="dino-vitb16", filename=WEIGHTS_FILENAME, url=WEIGHTS_URL)
    return model.eval().to(device)

