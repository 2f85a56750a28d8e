"""The image-quality networks of VBench's imaging and aesthetic quality, from their official files.

- MUSIQ (Ke et al. 2021) trained on SPAQ, in pyiqa's architecture: ``musiq_spaq_ckpt-358bb6af.pth``
  is a plain state dict (pyiqa strips a ``module.`` prefix where one is present; so does this loader).
  pyiqa is an optional dependency (``pip install 'vbench-flow[iqa]'``): it brings MUSIQ's exact
  multi-scale patching, which the scores depend on.
- The LAION aesthetic predictor ``sa_0_4_vit_l_14_linear.pth``: one ``nn.Linear(768, 1)`` on
  L2-normalised CLIP ViT-L/14 image features.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from metrics.extractors import ExtractorError, load_strict, read_torch_file

MUSIQ_FILENAME = "musiq_spaq_ckpt-358bb6af.pth"
MUSIQ_URL = f"https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/{MUSIQ_FILENAME}"
MUSIQ_SHA256_PREFIX = "358bb6af"
PYIQA_REQUIREMENT = ("pyiqa", "pip install 'vbench-flow[iqa]' (pyiqa, for MUSIQ's architecture)")
LAION_FILENAME = "sa_0_4_vit_l_14_linear.pth"
LAION_URL = f"https://raw.githubusercontent.com/LAION-AI/aesthetic-predictor/main/{LAION_FILENAME}"


def musiq_class() -> type[nn.Module]:
    """pyiqa's MUSIQ architecture, or an error that says how to install it."""
    try:
        from pyiqa.archs.musiq_arch import MUSIQ
    except ImportError as error:
        raise ExtractorError(f"musiq-spaq needs pyiqa, which is not importable ({error})",
                             fix=f"install it: {PYIQA_REQUIREMENT[1]}") from None
    return MUSIQ


def musiq_template() -> dict[str, torch.Tensor]:
    return musiq_class()(pretrained=False).state_dict()


def load_musiq(path: str | Path, device: str = "cpu") -> nn.Module:
    """MUSIQ-SPAQ (one score per image, 0..100) from its official file, strictly; never downloads."""
    model = musiq_class()(pretrained=False)
    state = read_torch_file(path, name="musiq-spaq", filename=MUSIQ_FILENAME, url=MUSIQ_URL)
    if isinstance(state, dict):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    load_strict(model, state, name="musiq-spaq", path=path, filename=MUSIQ_FILENAME, url=MUSIQ_URL)
    return model.eval().to(device)


def load_laion_head(path: str | Path, device: str = "cpu") -> nn.Linear:
    """The LAION aesthetic head (768 -> 1) from its official file, strictly."""
    head = nn.Linear(768, 1)
    state = read_torch_file(path, name="laion-aesthetic", filename=LAION_FILENAME, url=LAION_URL)
    load_strict(head, state, name="laion-aesthetic", path=path, filename=LAION_FILENAME, url=LAION_URL)
    return head.eval().to(device)
