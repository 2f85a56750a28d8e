"""RGB I3D (Inception-v1 inflated to 3D, Carreira & Zisserman 2017): the FVD feature extractor.

The module layout is the classic ``pytorch-i3d`` one (Conv3d_1a_7x7, MaxPool3d_2a_3x3, ...,
Mixed_5c, logits; Inception branches ``b0, b1a, b1b, b2a, b2b, b3b``) so that
``i3d_pretrained_400.pt`` -- the PyTorch conversion of DeepMind's TF-Hub ``i3d-kinetics-400/1``
checkpoint that VideoGPT / TATS distribute -- loads with ``strict=True``. Every convolution and
max-pool pads like TensorFlow's ``"SAME"`` (the extra pixel goes at the end), BatchNorm uses
Sonnet's eps of 1e-3, and the logits are averaged over the output time axis, following the
TF-Hub module that the original FVD code calls (not checked against the real weights here:
no test downloads them).

The weights are never downloaded here: :func:`load_i3d` reads a local file and says where to get
it when it is missing.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metrics.files import file_sha256

VERSION = "i3d-kinetics400-rgb/1 (pytorch-i3d layout, TF SAME padding, BN eps 1e-3, time-mean logits)"

NUM_CLASSES = 400
INPUT_SIZE = 224
# The head averages a 2x7x7 window of the Mixed_5c map, which is T/8 x H/32 x W/32 (rounded up):
# anything shorter or smaller than this has no valid output.
MIN_FRAMES = 9
MIN_SIZE = 193

WEIGHTS_FILENAME = "i3d_pretrained_400.pt"
# Commit-pinned copy of the VideoGPT/TATS file (a plain state dict for this layout).
WEIGHTS_URL = (
    "https://huggingface.co/spaces/LanguageBind/Open-Sora-Plan-v1.0.0/resolve/"
    "810fa8c4bdb3a4c8eec9bd57375c29bde6fb46de/opensora/eval/fvd/videogpt/i3d_pretrained_400.pt"
)
# VideoGPT's original distribution: `gdown 1mQK8KD8G6UWRa5t87SRMm5PVXtlpneJT`.
WEIGHTS_GDRIVE_ID = "1mQK8KD8G6UWRa5t87SRMm5PVXtlpneJT"
# Not pinned: no hash of this file could be checked against a trustworthy source. Pass the
# hash you verified yourself to load_i3d(..., sha256=...) and record it in the suite.
WEIGHTS_SHA256: str | None = None

# StyleGAN-V's TorchScript export of the same network (different calling convention).
TORCHSCRIPT_FILENAME = "i3d_torchscript.pt"
TORCHSCRIPT_URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt"
TORCHSCRIPT_SHA256: str | None = None  # unknown, see WEIGHTS_SHA256

DEFAULT_WEIGHTS_PATH = Path.home() / ".cache" / "vbench-flow" / WEIGHTS_FILENAME

# (input channels, (b0, b1a, b1b, b2a, b2b, b3b) output channels): GoogLeNet's inception table.
MIXED_BLOCKS: dict[str, tuple[int, tuple[int, int, int, int, int, int]]] = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}

Triple = tuple[int, int, int]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one axis as (front, back): the odd pixel goes at the back.

    Output length is ceil(size / stride); PyTorch's symmetric padding would shift every window
    by one pixel on odd totals and the converted weights would see a misaligned input.
    """
    total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
    return total // 2, total - total // 2


def pad_same(x: Tensor, kernel: Triple, stride: Triple, value: float = 0.0) -> Tensor:
    """Pad a (N, C, T, H, W) tensor so a ``kernel``/``stride`` window gives TF "SAME" output."""
    pads: list[int] = []
    for axis in (4, 3, 2):  # F.pad lists the last axis first
        pads.extend(same_padding(x.shape[axis], kernel[axis - 2], stride[axis - 2]))
    return F.pad(x, pads, value=value)


class Unit3D(nn.Module):
    """Conv3d (no padding of its own) + optional BatchNorm + optional ReLU, with SAME padding.

    Attribute names ``conv3d`` and ``bn`` are part of the checkpoint format.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: Triple = (1, 1, 1),
                 stride: Triple = (1, 1, 1), *, batch_norm: bool = True, relu: bool = True,
                 bias: bool = False, bn_eps: float = 1e-3) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=0, bias=bias)
        # Sonnet's BatchNorm: eps 1e-3, decay 0.999 (momentum only matters when training).
        self.bn = nn.BatchNorm3d(out_channels, eps=bn_eps, momentum=0.01) if batch_norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max-pool with TF "SAME" padding. Pads with -inf, which is what TF's padding means for a
    max (the classic port pads zeros, identical here because every pool follows a ReLU)."""

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride, value=float("-inf")), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """One Inception module: 1x1 | 1x1->3x3 | 1x1->3x3 | 3x3 max-pool->1x1, concatenated."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int], bn_eps: float = 1e-3) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(in_channels, w0, bn_eps=bn_eps)
        self.b1a = Unit3D(in_channels, w1a, bn_eps=bn_eps)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3), bn_eps=bn_eps)
        self.b2a = Unit3D(in_channels, w2a, bn_eps=bn_eps)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3), bn_eps=bn_eps)
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3b, bn_eps=bn_eps)
        self.out_channels = w0 + w1b + w2b + w3b

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """RGB I3D in the classic pytorch-i3d layout; input (N, 3, T, H, W) floats in [-1, 1].

    ``forward`` returns the pre-softmax logits per output time step, (N, num_classes, T');
    ``features`` averages them over time, the 400-d FVD feature. At 224x224 and 16 frames
    T' is 1. The head's fixed 2x7x7 average pool needs at least 9 frames and 193x193 pixels.
    """

    ENDPOINTS = ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
                 "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
                 "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c")

    def __init__(self, num_classes: int = NUM_CLASSES, in_channels: int = 3, *, dropout: float = 0.5,
                 bn_eps: float = 1e-3) -> None:
        """``bn_eps``: 1e-3 is TF/Sonnet's value, which the converted weights were trained with;
        VideoGPT's copy of the port uses 1e-5 (a small, usually negligible difference)."""
        super().__init__()
        self.num_classes = num_classes
        # Registered before the trunk, as in the classic port, so even state_dict() order matches.
        self.avg_pool = nn.AvgPool3d((2, 7, 7), stride=(1, 1, 1))
        self.dropout = nn.Dropout(dropout)
        self.logits = Unit3D(1024, num_classes, batch_norm=False, relu=False, bias=True)
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2), bn_eps=bn_eps)
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64, bn_eps=bn_eps)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3), bn_eps=bn_eps)
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        for name in ("Mixed_3b", "Mixed_3c"):
            self.add_module(name, InceptionBlock(*MIXED_BLOCKS[name], bn_eps=bn_eps))
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            self.add_module(name, InceptionBlock(*MIXED_BLOCKS[name], bn_eps=bn_eps))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        for name in ("Mixed_5b", "Mixed_5c"):
            self.add_module(name, InceptionBlock(*MIXED_BLOCKS[name], bn_eps=bn_eps))

    def trunk(self, x: Tensor) -> Tensor:
        """Mixed_5c activations, (N, 1024, ceil(T/8), ceil(H/32), ceil(W/32))."""
        check_network_input(x)
        for name in self.ENDPOINTS:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        x = self.logits(self.dropout(self.avg_pool(self.trunk(x))))
        return x.squeeze(4).squeeze(3)

    def features(self, videos: Tensor) -> Tensor:
        """The FVD feature: 400 logits averaged over the output time axis, (N, 400)."""
        if self.training:
            raise RuntimeError("InceptionI3d.features needs eval mode (call .eval()): in training mode "
                               "BatchNorm uses batch statistics and dropout is active, so features would "
                               "depend on the batch")
        logits = self.forward(videos)
        if logits.ndim != 3:
            raise ValueError(f"I3D features: an input of {tuple(videos.shape[3:])} pixels leaves logits of shape "
                             f"{tuple(logits.shape)}; the 7x7 head reduces them to one vector only for "
                             f"{MIN_SIZE}..{INPUT_SIZE} pixels (FVD uses {INPUT_SIZE}x{INPUT_SIZE})")
        return logits.mean(dim=2)


def check_network_input(x: Tensor) -> None:
    """Raise ValueError unless ``x`` is a float (N, 3, T, H, W) tensor the head can pool."""
    if not isinstance(x, Tensor) or not torch.is_floating_point(x):
        raise ValueError("I3D input: expected a float tensor (N, 3, T, H, W) in [-1, 1]; "
                         "use preprocess_for_i3d on uint8 videos")
    if x.ndim != 5 or x.shape[1] != 3:
        raise ValueError(f"I3D input: expected shape (N, 3, T, H, W), got {tuple(x.shape)}")
    t, h, w = x.shape[2:]
    if t < MIN_FRAMES or h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(f"I3D input: needs at least {MIN_FRAMES} frames and {MIN_SIZE}x{MIN_SIZE} pixels "
                         f"(the head pools 2x7x7 of a T/8 x H/32 x W/32 map), got T={t}, H={h}, W={w}; "
                         f"FVD feeds 16 frames at {INPUT_SIZE}x{INPUT_SIZE}")


# ---------------------------------------------------------------- preprocessing


def _interpolation_matrix(in_size: int, out_size: int, sampling: str) -> Tensor:
    """(out_size, in_size) weights of 1-D linear interpolation, so a resize is two matmuls.

    ``"tf1"``: TF1 ``tf.image.resize_bilinear`` defaults (align_corners=False,
    half_pixel_centers=False), source x = dst x * in/out -- what the original FVD code runs.
    ``"half_pixel"``: PyTorch ``F.interpolate(mode="bilinear", align_corners=False)``,
    source x = (dst x + 0.5) * in/out - 0.5, used by most PyTorch ports.
    """
    scale = in_size / out_size
    dst = torch.arange(out_size, dtype=torch.float64)
    if sampling == "tf1":
        src = dst * scale
    elif sampling == "half_pixel":
        src = ((dst + 0.5) * scale - 0.5).clamp(min=0.0)
    else:
        raise ValueError(f"sampling must be 'tf1' or 'half_pixel', got {sampling!r}")
    lo = src.floor().long().clamp(max=in_size - 1)
    hi = (lo + 1).clamp(max=in_size - 1)
    frac = src - lo.to(torch.float64)
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    weights.index_put_((rows, lo), 1.0 - frac, accumulate=True)
    weights.index_put_((rows, hi), frac, accumulate=True)
    return weights


def preprocess_for_i3d(videos: np.ndarray, mode: str = "stretch", size: int = INPUT_SIZE,
                       sampling: str = "tf1") -> Tensor:
    """uint8 (N, T, H, W, 3) videos -> float32 (N, 3, T, size, size) in [-1, 1] for I3D.

    ``mode="stretch"`` (default, the original TF FVD): every frame resized to size x size with
    bilinear interpolation, aspect ratio not kept, no crop. ``mode="center_crop"``: shorter side
    resized to ``size``, then the central size x size window. Values become ``2 * x / 255 - 1``.
    ``sampling`` picks the bilinear convention, see :func:`_interpolation_matrix`; "tf1" matches
    the TF reference. Neither antialiases, as in the reference.
    """
    if not isinstance(videos, np.ndarray) or videos.dtype != np.uint8:
        got = videos.dtype if isinstance(videos, np.ndarray) else type(videos).__name__
        raise ValueError(f"preprocess_for_i3d: expected a numpy uint8 array (N, T, H, W, 3) on the 0-255 scale, got {got}")
    if videos.ndim != 5 or videos.shape[-1] != 3:
        raise ValueError(f"preprocess_for_i3d: expected shape (N, T, H, W, 3), got {tuple(videos.shape)}")
    h, w = videos.shape[2:4]
    if h == 0 or w == 0:
        raise ValueError(f"preprocess_for_i3d: frames are empty (H x W = {h} x {w})")
    if mode == "stretch":
        rows, cols = _interpolation_matrix(h, size, sampling), _interpolation_matrix(w, size, sampling)
    elif mode == "center_crop":
        scale = size / min(h, w)
        new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
        top, left = (new_h - size) // 2, (new_w - size) // 2
        rows = _interpolation_matrix(h, new_h, sampling)[top:top + size]
        cols = _interpolation_matrix(w, new_w, sampling)[left:left + size]
    else:
        raise ValueError(f"mode must be 'stretch' or 'center_crop', got {mode!r}")
    frames = torch.from_numpy(videos).to(torch.float32)  # (N, T, H, W, 3)
    resized = torch.einsum("ih,nthwc,jw->nctij", rows.to(torch.float32), frames, cols.to(torch.float32))
    return (2.0 * resized / 255.0 - 1.0).contiguous()


# ---------------------------------------------------------------- weights


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips with a ``code/`` folder and ``constants.pkl``; torch.save zips are not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.endswith("constants.pkl") for name in archive.namelist())


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if _is_torchscript(path):
        try:
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except Exception as error:  # re-raised with the file named
            raise ValueError(f"{path} is a TorchScript archive that torch.jit.load could not read ({error}); "
                             f"use the state dict {WEIGHTS_FILENAME} from {WEIGHTS_URL} instead") from error
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling failure means "not a plain state dict"
        raise ValueError(f"{path} could not be read as a plain PyTorch state dict ({error.__class__.__name__}: "
                         f"{str(error)[:300]}); load_i3d needs {WEIGHTS_FILENAME} (a dict of tensors for the "
                         f"classic pytorch-i3d InceptionI3d) from {WEIGHTS_URL}") from error
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not a state dict (a mapping of parameter "
                         f"names to tensors); if it is a full training checkpoint, save its model state dict "
                         f"alone, or download {WEIGHTS_FILENAME} from {WEIGHTS_URL}")
    # A fresh dict drops torch's _metadata: BatchNorm then fills in num_batches_tracked, which the
    # original TF-converted file does not contain.
    return dict(loaded)


def _layout_problems(state: Mapping[str, Tensor], expected: Mapping[str, Tensor]) -> list[str]:
    problems = [f"missing {k}" for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [f"{k}: shape {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    return problems


def load_i3d(path: str | Path | None = None, sha256: str | None = None, *, num_classes: int = NUM_CLASSES,
             bn_eps: float = 1e-3, device: str | torch.device = "cpu") -> InceptionI3d:
    """The FVD network with weights from ``path`` (default ``DEFAULT_WEIGHTS_PATH``), in eval mode.

    Loads with ``strict=True``: a file for another layout (e.g. the ImageNet-inflated
    ``rgb_imagenet.pt`` of other ports, or a 600-class model) is refused rather than half-loaded.
    A TorchScript archive is accepted only if its parameters carry exactly these names and shapes.
    ``sha256``: when given, the file's hash must match.
    """
    path = Path(path if path is not None else DEFAULT_WEIGHTS_PATH).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"I3D weights not found at {path}. Save {WEIGHTS_FILENAME} as exactly {path} (or pass load_i3d "
            f"the path where it is): the PyTorch conversion of DeepMind's TF-Hub i3d-kinetics-400/1 used by "
            f"VideoGPT/TATS, from {WEIGHTS_URL} (or Google Drive id {WEIGHTS_GDRIVE_ID}); sha256: "
            f"{WEIGHTS_SHA256 or 'not pinned here, verify and pass sha256= yourself'}. "
            "Nothing is downloaded automatically.")
    if sha256 is not None:
        actual = file_sha256(path)
        if actual.lower() != sha256.lower():
            raise ValueError(f"{path}: sha256 is {actual}, expected {sha256}; the file is not the pinned I3D "
                             f"checkpoint (re-download {WEIGHTS_FILENAME} from {WEIGHTS_URL})")
    model = InceptionI3d(num_classes=num_classes, bn_eps=bn_eps)
    state = _read_state_dict(path)
    problems = _layout_problems(state, model.state_dict())
    if problems:
        shown = "; ".join(problems[:8]) + (f"; ... ({len(problems)} in all)" if len(problems) > 8 else "")
        raise ValueError(f"{path} does not match the classic InceptionI3d({num_classes}) layout: {shown}. "
                         f"load_i3d needs {WEIGHTS_FILENAME} from {WEIGHTS_URL}")
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)


class TorchScriptI3d(nn.Module):
    """StyleGAN-V's TorchScript export of the FVD network (``i3d_torchscript.pt``), called the way
    its FVD code calls it: inputs already preprocessed to [-1, 1] at 224x224 (``rescale=False,
    resize=False``) and ``return_features=True``, which returns the 400 pre-softmax logits
    averaged over time, i.e. the same feature as :meth:`InceptionI3d.features`."""

    def __init__(self, module: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.module = module

    def features(self, videos: Tensor) -> Tensor:
        check_network_input(videos)
        out = self.module(videos, rescale=False, resize=False, return_features=True)
        if out.ndim != 2 or out.shape[0] != videos.shape[0]:
            raise ValueError(f"the TorchScript detector returned features of shape {tuple(out.shape)}; expected "
                             f"({videos.shape[0]}, {NUM_CLASSES}): is it StyleGAN-V's {TORCHSCRIPT_FILENAME}?")
        return out


def load_i3d_torchscript(path: str | Path, sha256: str | None = None, *,
                         device: str | torch.device = "cpu") -> TorchScriptI3d:
    """StyleGAN-V's ``i3d_torchscript.pt`` from a local file (never downloaded here)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"TorchScript I3D not found at {path}. Download {TORCHSCRIPT_FILENAME} from "
                                f"{TORCHSCRIPT_URL} and save it there (`vbf fetch i3d --torchscript` does it on a "
                                "machine with internet).")
    if sha256 is not None and file_sha256(path).lower() != sha256.lower():
        raise ValueError(f"{path}: sha256 does not match the expected {sha256}")
    if not _is_torchscript(path):
        raise ValueError(f"{path} is not a TorchScript archive; for the state dict {WEIGHTS_FILENAME} use load_i3d")
    return TorchScriptI3d(torch.jit.load(str(path), map_location=device).eval()).eval()
