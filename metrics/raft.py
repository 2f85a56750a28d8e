"""RAFT optical flow (Teed & Deng, ECCV 2020) with the official ``raft-things.pth`` weights.

VBench's dynamic-degree metric runs the original RAFT code (vendored in
``vbench/third_party/RAFT/core``) as ``model(image1, image2, iters=20, test_mode=True)`` and keeps
the second output, the convex-upsampled flow of the last iteration. :class:`RaftThings` computes
the same flow.

Implementation: torchvision's port (``torchvision.models.optical_flow.raft_large(weights=None)``)
with the official parameter names mapped onto torchvision's. Measured against the vendored
reference (same deterministic weights, float32 CPU, 20 iterations) the flows are bit-identical:
max abs difference 0.0 (so 0 relative, against the 1e-6 required) on smooth random pairs and a
3 px translated pattern at 128x128 and 136x240, a 130x133 pair replicate-padded to 136x136, a real
bikes.mp4 frame pair at 240x432, and a batch of two pairs. So no own network is kept here; only the
weight container, the input scaling and the checks are ours. CPU cost is the reference's: about
8.5 s per 256x448 pair on one thread.

The container. ``raft-things.pth`` (in ``models.zip`` of the RAFT release) is a plain state dict
saved from ``nn.DataParallel``: every key starts with ``module.``. VBench strips that prefix with
``k.replace('module.', '')`` and loads strictly. Two details of that layout:

- the context encoder's residual blocks that downsample register one BatchNorm twice, as
  ``normN`` and as ``downsample.1``, so the file holds both names (torchvision keeps only
  ``downsample.1``). Both keys are required; where their values differ (only in synthetic files)
  ``downsample.1`` wins, as it does in the reference, which loads it after ``norm3``.
- VBench's comprehension drops the state dict's version metadata, so torch's BatchNorm fills a
  missing ``num_batches_tracked`` itself; such a file loads there and here alike (the counter
  does not enter eval arithmetic).

Arithmetic details that change numbers (all as in the reference, and in torchvision's port):

- input ``2 * (x / 255) - 1`` on float RGB in 0..255 (torchvision's model expects -1..1; the
  scaling is done here with the reference's operation order);
- feature encoder with parameter-free instance norm, run on both frames concatenated along the
  batch; context encoder with batch norm (eval: running statistics); context split 128/128 into
  ``tanh`` (hidden state) and ``relu`` (context);
- all-pairs correlation of the 256-channel features divided by ``sqrt(256)``; a 4-level pyramid by
  2x2 average pooling of the correlation volume over the second frame's axes;
- lookup radius 4: a 9x9 window whose offset grid is ``stack(meshgrid(d, d, 'ij'))`` used as
  (x, y), i.e. the x offset varies along the window's rows (transposed relative to the obvious
  order; swapping it moves the flow by ~40% relative with random weights); bilinear
  ``grid_sample(align_corners=True)`` on coordinates normalised by ``W-1``, ``H-1``, zeros outside;
  the level-``i`` centre is the coordinate divided by ``2**i``;
- the flow starts at zero on the 1/8 grid; each of the 20 iterations adds the GRU's delta; the
  output is the last iteration's flow upsampled by 8 as a convex combination (softmax over 9
  neighbours of ``0.25 * mask``) of ``8 * flow``.

Sizes: inputs must be padded (by the caller, see :func:`pad_to_multiple`) to multiples of 8, and
both padded sides must be at least ``MIN_SIDE = 128`` px. Below that the coarsest pyramid level
has a side of 1 px, its normalisation divides by 0, and the reference returns NaN for every pixel
(checked: 120x128, 128x120 and 64x64 give 100% NaN; 128x128 and 136x128 none). Callers must refuse
or upscale such videos; :meth:`RaftThings.forward` raises ``ValueError``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.optical_flow import raft_large

WEIGHTS_FILENAME = "raft-things.pth"
WEIGHTS_URL = "https://dl.dropboxusercontent.com/s/4j4z58wuv8o0mfz/models.zip"  # holds models/raft-things.pth
ITERS = 20  # VBench's dynamic degree: model(image1, image2, iters=20, test_mode=True)
MIN_SIDE = 128  # padded sides below this make every reference flow NaN (see module docstring)
PAD_MULTIPLE = 8  # the feature grid is 1/8 of the image
PREFIX = "module."  # nn.DataParallel's prefix on every key of the official file


class RaftThings(nn.Module):
    """RAFT-large as VBench runs it: RGB float frames in 0..255 -> flow of frame 1 to frame 2 in px."""

    def __init__(self) -> None:
        super().__init__()
        self.raft = raft_large(weights=None, progress=False)  # same arithmetic as the original, bit for bit

    def forward(self, image1: Tensor, image2: Tensor, iters: int = ITERS) -> Tensor:
        """(B,3,H,W) pairs, H and W multiples of 8 and >= MIN_SIDE -> (B,2,H,W) flow (x, y) in pixels."""
        _check_pair(image1, image2)
        # the reference's scaling, same operations in the same order (float rounding)
        image1 = 2 * (image1 / 255.0) - 1.0
        image2 = 2 * (image2 / 255.0) - 1.0
        return self.raft(image1.contiguous(), image2.contiguous(), num_flow_updates=iters)[-1]


def _check_pair(image1: Tensor, image2: Tensor) -> None:
    if image1.ndim != 4 or image1.shape[1] != 3 or image1.shape != image2.shape:
        raise ValueError(f"RAFT expects two (B,3,H,W) tensors of one shape, got {tuple(image1.shape)} "
                         f"and {tuple(image2.shape)}")
    if not (image1.is_floating_point() and image2.is_floating_point()):
        raise ValueError(f"RAFT expects float RGB in 0..255, got {image1.dtype} and {image2.dtype}")
    h, w = image1.shape[-2:]
    if h % PAD_MULTIPLE or w % PAD_MULTIPLE:
        raise ValueError(f"RAFT input {h}x{w} is not padded to multiples of {PAD_MULTIPLE}; use pad_to_multiple")
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"RAFT input {h}x{w} has a side below {MIN_SIDE} px: the original RAFT returns NaN "
                         "for every pixel there (1-px coarsest correlation level); upscale or skip the video")


def pad_to_multiple(frames: Tensor, multiple: int = PAD_MULTIPLE) -> Tensor:
    """Replicate-pad the last two axes up to multiples of ``multiple``, as RAFT's InputPadder (default mode).

    The padding is split evenly; an odd remainder puts the extra pixel at the bottom / right.
    ``frames`` is a float tensor of shape (..., H, W).
    """
    h, w = frames.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == 0 and pad_w == 0:
        return frames
    lead = frames.shape[:-2]
    flat = frames.reshape(1, -1, h, w)  # replicate padding wants a (N,C,H,W) tensor
    padded = F.pad(flat, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2], mode="replicate")
    return padded.reshape(*lead, h + pad_h, w + pad_w)


# --- official names <-> torchvision names -------------------------------------------------------

_RULES = [  # (torchvision pattern, official replacement), applied in order to a key without "raft."
    (r"^feature_encoder\.", "fnet."),
    (r"^context_encoder\.", "cnet."),
    (r"^(fnet|cnet)\.convnormrelu\.0\.", r"\1.conv1."),
    (r"^(fnet|cnet)\.convnormrelu\.1\.", r"\1.norm1."),
    (r"^(fnet|cnet)\.conv\.", r"\1.conv2."),
    (r"(layer\d\.\d)\.convnormrelu(\d)\.0\.", r"\1.conv\2."),
    (r"(layer\d\.\d)\.convnormrelu(\d)\.1\.", r"\1.norm\2."),
    (r"^update_block\.motion_encoder\.convcorr(\d)\.0\.", r"update_block.encoder.convc\1."),
    (r"^update_block\.motion_encoder\.convflow(\d)\.0\.", r"update_block.encoder.convf\1."),
    (r"^update_block\.motion_encoder\.conv\.0\.", "update_block.encoder.conv."),
    (r"^update_block\.recurrent_block\.convgru(\d)\.conv(\w)\.", r"update_block.gru.conv\2\1."),
    (r"^mask_predictor\.convrelu\.0\.", "update_block.mask.0."),
    (r"^mask_predictor\.conv\.", "update_block.mask.2."),
]


def _official_names(tv_key: str) -> tuple[str, ...]:
    """Official key(s) (without ``module.``) of one torchvision key; the first one carries the value.

    The original ResidualBlock also registers a downsampling block's norm as ``norm3``, so a
    ``downsample.1`` key has an alias (only in the batch-norm context encoder: instance norm has no
    tensors).
    """
    key = tv_key
    for pattern, repl in _RULES:
        key = re.sub(pattern, repl, key)
    alias = re.sub(r"(layer\d\.\d)\.downsample\.1\.", r"\1.norm3.", key)
    return (key,) if alias == key else (key, alias)


def _name_map(model: RaftThings) -> dict[str, tuple[str, bool]]:
    """Official key (without prefix) -> (our state-dict key, whether it is the value-carrying name)."""
    names: dict[str, tuple[str, bool]] = {}
    for ours in model.state_dict():
        for i, official in enumerate(_official_names(ours.removeprefix("raft."))):
            names[official] = (ours, i == 0)
    return names


def raft_things_template(model: RaftThings | None = None) -> dict[str, Tensor]:
    """The official container layout (keys ``module.``-prefixed) filled with ``model``'s tensors
    (a fresh :class:`RaftThings` when None). Aliased keys share one tensor, as in the real file."""
    model = RaftThings() if model is None else model
    state = model.state_dict()
    return {PREFIX + official: state[ours] for official, (ours, _) in _name_map(model).items()}


def _expected() -> str:
    return f"expected the official {WEIGHTS_FILENAME} (models/{WEIGHTS_FILENAME} inside {WEIGHTS_URL})"


def _listed(keys: list[str], limit: int = 5) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_raft_things(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> RaftThings:
    """RAFT with the weights of ``path`` (the official ``raft-things.pth``), strict, eval mode, on ``device``.

    Keys may carry the ``module.`` prefix (the official file) or not: VBench's loader strips it with
    ``replace``, so it accepts both, and the tensors are the same. Missing ``num_batches_tracked``
    counters are tolerated as in VBench (see module docstring); every other key must be present,
    of the right shape, and nothing else may be in the file. Never downloads.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"RAFT weights not found: {path}; {_expected()}. Download and unzip it "
                                "yourself: nothing is fetched automatically")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # not a torch file, a zip archive, or pickled objects beyond tensors
        raise ValueError(f"{path} is not a loadable state dict ({type(error).__name__}: {error}); "
                         f"{_expected()}") from error
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        raise ValueError(f"{path} is a training checkpoint wrapping a 'state_dict', not the plain state "
                         f"dict RAFT releases; {_expected()}")
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a plain dict of tensors; {_expected()}")

    model = RaftThings()
    names = _name_map(model)
    given = {key.removeprefix(PREFIX): value for key, value in state.items()}
    missing = [k for k in names if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in names]
    if missing or unexpected:
        raise ValueError(f"{path} does not match RAFT-large: missing keys [{_listed(missing)}], unexpected "
                         f"keys [{_listed(unexpected)}]; {_expected()}")
    ours = model.state_dict()
    converted: dict[str, Tensor] = {}
    for official, value in given.items():
        target, carries = names[official]
        if value.shape != ours[target].shape:
            raise ValueError(f"{path}: {PREFIX}{official} has shape {tuple(value.shape)}, RAFT-large "
                             f"needs {tuple(ours[target].shape)}; {_expected()}")
        if carries:
            converted[target] = value
    for target, value in ours.items():  # counters the file left out keep the fresh module's 0
        converted.setdefault(target, value)
    model.load_state_dict(converted, strict=True)
    return model.eval().to(device)
