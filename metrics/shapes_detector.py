"""shapes-i3d: a small 3D-convolutional video classifier for the shapes world, the offline FVD detector.

FVD's features are the Kinetics-400 logits of DeepMind's I3D (``metrics.i3d``), whose weights
cannot be downloaded on every machine and which was never trained on 64x64 synthetic shapes.
This module is the project-trained stand-in: a few Conv3d + BatchNorm + ReLU stages (strided
convolutions do the pooling; each stage adds a residual 3x3x3 convolution), a global pool over
time and space (by default the mean and the maximum of each channel, concatenated: the maximum
lets a small object's activations through where the mean dilutes them into the background; in
short training runs it learnt colour and motion markedly faster than the mean alone) and a linear
projection; that vector -- the penultimate layer, ``feature_dim`` <= 128 values, 128 by default --
is the FVD feature. Linear heads on it classify labels of the clip, which is what the features
are trained for:

- ``shape`` (6), ``colour`` (9) and ``motion`` (6) of the clip's *target object*: the largest
  object (size class), ties broken by colour (the one whose colour comes first in
  ``OBJECT_COLORS``). The largest object is the most visible one, and both rules read only what
  the pixels show. The "first" object of a scene has no visual meaning (it is just the first in
  the caption) and may be small and hidden behind a larger one, so its labels would be noise
  for part of the data; a tie-break by drawing order would be invisible too unless objects overlap.
- ``background`` (8) and ``objects`` (the number of objects, 1-3) of the whole clip, so that the
  features also see what is not the target object.

The class lists are copies of ``vbench_flow.data.shapes`` (``SHAPES`` and ``OBJECT_COLORS`` from
``metrics.shape_geometry`` and ``metrics.caption_adherence``, ``MOTIONS`` and ``BACKGROUNDS`` here; a
test checks they agree) because ``metrics`` never imports the harness; the label
function that reads a scene lives in ``scripts/train_shapes_detector.py``, which renders the data.

Input: uint8 clips (N, T, H, W, 3), RGB, 16 frames for FVD (FVD_16); frames of another size are
resized to 64x64 (bilinear, antialiased when shrinking, aspect not kept), then ``2 x / 255 - 1``.
The network itself accepts any number of frames (the pool runs over time too, as I3D averages its
logits over time), which :func:`predict`/:func:`evaluate` allow; :meth:`ShapesDetector.features`
insists on 16. Features are computed in eval mode, where BatchNorm uses its running statistics,
so a clip's feature never depends on the other clips of its batch.

A checkpoint (:func:`save_shapes_detector`) is one torch file with the config, float32 weights
and an ``info`` dict (steps, seconds, test accuracies, feature_dim, ...); :func:`load_shapes_detector`
rebuilds the model from it alone and adds the file's sha256, which names the extractor in every
result (:func:`extractor_id`, e.g. ``"shapes-i3d 0123456789ab"``). FVD values from this detector
are never comparable with I3D FVD, nor with those of another shapes-i3d checkpoint.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metrics.caption_adherence import OBJECT_COLORS
from metrics.files import file_sha256, read_checkpoint
from metrics.schedules import warmup_cosine
from metrics.shape_geometry import SHAPES
from metrics.fvd import CLIP_FRAMES, ESTIMATORS, check_clips, fvd_from_features

EXTRACTOR_NAME = "shapes-i3d"
FORMAT = "vbench-flow/shapes-i3d/1"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "shapes-i3d.pt"
TRAIN_SCRIPT = "scripts/train_shapes_detector.py"
INPUT_SIZE = 64
MAX_FEATURE_DIM = 128

# Copies of vbench_flow.data.shapes (metrics/ never imports the harness; tests check they agree).
MOTIONS = ("static", "bouncing", "gravity", "orbiting", "zigzagging", "spinning")
BACKGROUNDS = ("black", "dark blue", "dark green", "dark gray", "white", "dark blue to black",
               "dark green to black", "dark gray to black")
OBJECT_COUNTS = ("1", "2", "3")

DEFAULT_HEADS: dict[str, tuple[str, ...]] = {
    "shape": SHAPES, "colour": OBJECT_COLORS, "motion": MOTIONS, "background": BACKGROUNDS, "objects": OBJECT_COUNTS,
}

# stem: Conv3d 3x3x3, stride (1, 2, 2) -> (16, 32, 32); then one stage per entry of ``channels``,
# each a stride-2 3x3x3 convolution (time and space halved) followed by ``blocks`` residual 3x3x3
# convolutions: (16, 32, 32) -> (8, 16, 16) -> (4, 8, 8) -> (2, 4, 4). ``pool``: "mean" averages the
# last stage over time and space (as I3D averages its logits over time), "mean+max" concatenates
# that mean and the maximum. The pooled vector is the feature if it already has ``feature_dim``
# values ("mean" with channels[-1] == feature_dim), else a linear projection maps it to feature_dim.
DEFAULT_CONFIG: dict[str, Any] = {
    "stem_channels": 16,
    "channels": [32, 64, 128],
    "feature_dim": 128,
    "blocks": 1,
    "pool": "mean+max",
    "num_frames": CLIP_FRAMES,
    "input_size": INPUT_SIZE,
    "heads": {k: list(v) for k, v in DEFAULT_HEADS.items()},
}

POOLS = ("mean", "mean+max")

Labels = Mapping[str, Sequence[str] | Sequence[int] | np.ndarray | Tensor]
Batch = tuple[Tensor | np.ndarray, Labels]


# ---------------------------------------------------------------- model


def check_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A full config (defaults filled in) after checking it; raises ValueError."""
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    cfg.update(copy.deepcopy(dict(config or {})))
    unknown = set(cfg) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"unknown shapes-i3d config keys {sorted(unknown)}; known: {sorted(DEFAULT_CONFIG)}")
    cfg["channels"] = [int(c) for c in cfg["channels"]]
    for key in ("stem_channels", "feature_dim", "num_frames", "input_size"):
        cfg[key] = int(cfg[key])
    cfg["blocks"] = int(cfg["blocks"])
    if cfg["stem_channels"] < 1 or not cfg["channels"] or any(c < 1 for c in cfg["channels"]) or cfg["blocks"] < 0:
        raise ValueError("stem_channels and channels (at least one stage) must be positive and blocks >= 0")
    if not 1 <= cfg["feature_dim"] <= MAX_FEATURE_DIM:
        raise ValueError(f"feature_dim must be in 1..{MAX_FEATURE_DIM}, got {cfg['feature_dim']}")
    if cfg["num_frames"] < 1 or cfg["input_size"] < 8:
        raise ValueError("num_frames must be >= 1 and input_size >= 8")
    heads = {str(k): [str(c) for c in v] for k, v in dict(cfg["heads"]).items()}
    if not heads or any(len(v) < 2 or len(set(v)) != len(v) for v in heads.values()):
        raise ValueError("heads must map each head name to at least 2 distinct class names")
    cfg["heads"] = heads
    if cfg["pool"] not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {cfg['pool']!r}")
    return cfg


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int, int] = (1, 1, 1)) -> None:
        super().__init__(nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True))


class Residual(nn.Module):
    """x + relu(bn(conv(x))): a stride-1 refinement that keeps the path from the input short."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x)


class ShapesDetector(nn.Module):
    """The shapes-i3d network. ``forward`` takes preprocessed clips (N, 3, T, 64, 64) in [-1, 1]
    (:func:`preprocess`) and returns ``{head: logits (N, classes)}``; :meth:`embed` returns the
    penultimate features (N, feature_dim) as a tensor; :meth:`features` takes uint8 clips and
    returns float64 numpy features in eval mode, batched."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.config = check_config(config)
        cfg = self.config
        layers: list[nn.Module] = [ConvBNReLU(3, cfg["stem_channels"], (1, 2, 2))]
        width = cfg["stem_channels"]
        for out in cfg["channels"]:
            layers.append(ConvBNReLU(width, out, (2, 2, 2)))
            layers.extend(Residual(out) for _ in range(cfg["blocks"]))
            width = out
        self.trunk = nn.Sequential(*layers)
        pooled = width * (2 if cfg["pool"] == "mean+max" else 1)
        self.project = nn.Identity() if pooled == cfg["feature_dim"] else nn.Linear(pooled, cfg["feature_dim"])
        self.heads = nn.ModuleDict({name: nn.Linear(cfg["feature_dim"], len(classes))
                                    for name, classes in cfg["heads"].items()})
        self.to(memory_format=torch.channels_last_3d)  # CPU convolutions measured 5-30% faster in this layout

    @property
    def feature_dim(self) -> int:
        return self.config["feature_dim"]

    @property
    def head_classes(self) -> dict[str, list[str]]:
        return copy.deepcopy(self.config["heads"])

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features (N, feature_dim): the last stage pooled over time and space
        (config ``pool``), then projected to ``feature_dim`` where the widths differ."""
        if x.ndim != 5 or x.shape[1] != 3 or not x.is_floating_point():
            raise ValueError(f"ShapesDetector expects float clips (N, 3, T, H, W) from preprocess(), got "
                             f"{x.dtype} {tuple(x.shape)}")
        x = self.trunk(x.contiguous(memory_format=torch.channels_last_3d))
        pooled = x.mean(dim=(2, 3, 4))
        if self.config["pool"] == "mean+max":
            pooled = torch.cat([pooled, x.amax(dim=(2, 3, 4))], dim=1)
        return self.project(pooled)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.classify(self.embed(x))

    def classify(self, features: Tensor) -> dict[str, Tensor]:
        return {name: head(features) for name, head in self.heads.items()}

    def features(self, videos: np.ndarray | Tensor | Sequence[np.ndarray], batch_size: int = 32, *,
                 num_frames: int | None = None) -> np.ndarray:
        """Per-clip features (N, feature_dim), float64, of uint8 clips (N, T, H, W, 3) (one array
        or a sequence of (T, H, W, 3) arrays, sizes may differ): the FVD features of this detector.

        Exactly ``num_frames`` frames per clip (default the config's, 16): FVD_16 and FVD on other
        clip lengths are different metrics. Runs in eval mode (the module's mode is restored after)
        on the module's device, under ``torch.inference_mode``.
        """
        if isinstance(videos, Tensor):
            videos = videos.detach().cpu().numpy()
        clips = check_clips(videos, num_frames=num_frames or self.config["num_frames"], name="videos")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        out = []
        try:
            with torch.inference_mode():
                for start in range(0, len(clips), batch_size):
                    batch = torch.cat([preprocess(clip[None], self.config["input_size"])
                                       for clip in clips[start:start + batch_size]])
                    out.append(self.embed(batch.to(device)).double().cpu().numpy())
        finally:
            self.train(was_training)
        return np.concatenate(out)


def preprocess(videos: np.ndarray | Tensor, size: int = INPUT_SIZE) -> Tensor:
    """uint8 clips (N, T, H, W, 3) -> float32 (N, 3, T, size, size) in [-1, 1].

    Frames of another size are resized with bilinear interpolation (half-pixel centres, antialiased
    when shrinking so a large frame is averaged rather than point-sampled; aspect not kept).
    """
    x = torch.as_tensor(videos)
    if x.dtype != torch.uint8 or x.ndim != 5 or x.shape[-1] != 3 or min(x.shape[2:4]) < 1:
        raise ValueError(f"expected uint8 clips (N, T, H, W, 3), got {x.dtype} {tuple(x.shape)}")
    n, t, h, w, _ = x.shape
    x = x.permute(0, 4, 1, 2, 3).float()  # (N, 3, T, H, W)
    if (h, w) != (size, size):
        frames = x.permute(0, 2, 1, 3, 4).reshape(n * t, 3, h, w)
        frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False,
                               antialias=h > size or w > size).clamp_(0.0, 255.0)
        x = frames.reshape(n, t, 3, size, size).permute(0, 2, 1, 3, 4)
    return x * (2.0 / 255.0) - 1.0


def build_shapes_detector(config: Mapping[str, Any] | None = None, *, seed: int | None = 0) -> ShapesDetector:
    """A randomly initialised detector (eval mode); ``seed`` makes the initialisation reproducible
    without touching the global RNG, None uses it."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = ShapesDetector(config)
    return model.eval()


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- labels


def label_indices(model: ShapesDetector, labels: Labels, count: int) -> dict[str, Tensor]:
    """``{head: LongTensor (count,)}`` from class names or indices; only heads of the model, every
    given head must be one."""
    classes = model.config["heads"]
    unknown = set(labels) - set(classes)
    if unknown:
        raise ValueError(f"labels for unknown heads {sorted(unknown)}; this detector has {sorted(classes)}")
    out = {}
    for head, values in labels.items():
        if isinstance(values, (Tensor, np.ndarray)) and np.asarray(values).dtype.kind in "iu":
            index = torch.as_tensor(np.asarray(values), dtype=torch.long)
        else:
            lookup = {c: i for i, c in enumerate(classes[head])}
            values = list(values)
            bad = sorted({str(v) for v in values if str(v) not in lookup})
            if bad:
                raise ValueError(f"{head}: unknown classes {bad}; classes are {classes[head]}")
            index = torch.tensor([lookup[str(v)] for v in values], dtype=torch.long)
        if index.shape != (count,):
            raise ValueError(f"{head}: {tuple(index.shape)} labels for {count} clips")
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= len(classes[head])):
            raise ValueError(f"{head}: class indices must be in 0..{len(classes[head]) - 1}")
        out[head] = index
    return out


# ---------------------------------------------------------------- training


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and BatchNorm parameters."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def classification_loss(model: ShapesDetector, clips: Tensor | np.ndarray, labels: Labels) -> tuple[Tensor, dict[str, float]]:
    """Mean over the labelled heads of the cross-entropy, and each head's batch accuracy."""
    x = preprocess(clips, model.config["input_size"]).to(next(model.parameters()).device)
    targets = label_indices(model, labels, x.shape[0])
    if not targets:
        raise ValueError("a training batch needs labels for at least one head")
    logits = model(x)
    losses, accuracy = [], {}
    for head, target in targets.items():
        target = target.to(x.device)
        losses.append(F.cross_entropy(logits[head], target))
        accuracy[head] = float((logits[head].argmax(dim=1) == target).float().mean())
    return torch.stack(losses).mean(), accuracy


def train_shapes_detector(batches: Iterable[Batch], *, steps: int, lr: float = 2e-3, weight_decay: float = 0.05,
                          warmup_steps: int = 100, config: Mapping[str, Any] | None = None, seed: int = 0,
                          model: ShapesDetector | None = None, device: str = "cpu", progress: bool = True,
                          log_every: int = 50) -> tuple[ShapesDetector, dict[str, Any]]:
    """Train on ``(uint8 clips (B, T, H, W, 3), {head: class names or indices (B,)})`` batches.

    ``steps`` AdamW steps (betas 0.9/0.999, no decay on biases and norms) with a linear warm-up
    and cosine decay to 0; the loss is the mean over the batch's labelled heads of the
    cross-entropy. A fresh model comes from ``config`` and ``seed`` unless ``model`` is given.
    Returns the model in eval mode and an info dict (steps, seconds, seconds_per_step, batch size,
    hyper-parameters, parameter count, loss and training accuracies logged every ``log_every``
    steps as means over the window).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if model is None:
        model = build_shapes_detector(config, seed=seed)
    model.to(device).train()
    optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr)
    warmup_steps = min(warmup_steps, steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup_steps, steps))
    log: list[dict[str, Any]] = []
    window: list[tuple[float, dict[str, float]]] = []
    batch_size = 0
    iterator = iter(batches)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc=EXTRACTOR_NAME, dynamic_ncols=True)
    start = time.perf_counter()
    for step in range(steps):
        try:
            clips, labels = next(iterator)
        except StopIteration:
            raise ValueError(f"batches ran out after {step} of {steps} steps; pass an endless iterator") from None
        batch_size = len(clips)
        loss, accuracy = classification_loss(model, clips, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        window.append((loss.item(), accuracy))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            heads = window[-1][1].keys()
            entry = {"step": step + 1, "loss": float(np.mean([w[0] for w in window])),
                     "accuracy": {h: float(np.mean([w[1][h] for w in window if h in w[1]])) for h in heads},
                     "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - start}
            log.append(entry)
            if bar is not None:
                bar.set_postfix(loss=f"{entry['loss']:.3f}",
                                **{h[:5]: f"{a:.2f}" for h, a in entry["accuracy"].items()})
            window = []
        if bar is not None:
            bar.update(1)
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    info = {"steps": steps, "seconds": seconds, "seconds_per_step": seconds / steps, "batch_size": batch_size,
            "lr": lr, "weight_decay": weight_decay, "warmup_steps": warmup_steps, "seed": seed,
            "loss": "mean over heads of cross-entropy", "optimizer": "AdamW(0.9, 0.999) warmup+cosine",
            "parameters": parameter_count(model), "feature_dim": model.feature_dim, "log": log}
    return model.eval(), info


@torch.no_grad()
def predict(model: ShapesDetector, clips: np.ndarray | Tensor | Sequence[np.ndarray],
            batch_size: int = 64) -> dict[str, np.ndarray]:
    """Predicted class indices per head, ``{head: int array (N,)}``, in eval mode (clips of any
    length: classification is not FVD)."""
    if isinstance(clips, Tensor):
        clips = clips.detach().cpu().numpy()
    clips = check_clips(clips, num_frames=len(clips[0]) if len(clips) else 1, name="clips")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: dict[str, list[np.ndarray]] = {h: [] for h in model.config["heads"]}
    try:
        for start in range(0, len(clips), batch_size):
            x = torch.cat([preprocess(c[None], model.config["input_size"]) for c in clips[start:start + batch_size]])
            for head, logits in model(x.to(device)).items():
                out[head].append(logits.argmax(dim=1).cpu().numpy())
    finally:
        model.train(was_training)
    return {h: np.concatenate(v) for h, v in out.items()}


def evaluate(model: ShapesDetector, clips: np.ndarray | Tensor | Sequence[np.ndarray], labels: Labels,
             batch_size: int = 64) -> dict[str, float]:
    """Accuracy per labelled head (fraction of clips whose predicted class is the label)."""
    predicted = predict(model, clips, batch_size)
    count = len(next(iter(predicted.values())))
    truth = label_indices(model, labels, count)
    return {head: float(np.mean(predicted[head] == index.numpy())) for head, index in truth.items()}


# ---------------------------------------------------------------- checkpoints


def save_shapes_detector(path: str | Path, model: ShapesDetector, info: Mapping[str, Any] | None = None) -> Path:
    """Write config, float32 weights and ``info`` (feature_dim and the parameter count added) to one
    torch file, atomically (a partly written file never replaces a good one)."""
    path = Path(path)
    checkpoint = {
        "format": FORMAT,
        "name": EXTRACTOR_NAME,
        "config": copy.deepcopy(model.config),
        "state_dict": {k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous().clone()
                       for k, v in model.state_dict().items()},
        "info": {**dict(info or {}), "feature_dim": model.feature_dim, "parameters": parameter_count(model)},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)
    return path


def load_shapes_detector(path: str | Path = DEFAULT_CHECKPOINT,
                         device: str = "cpu") -> tuple[ShapesDetector, dict[str, Any]]:
    """The detector (eval mode) and the checkpoint's metadata (everything but the weights, plus the
    file's ``sha256``). A missing file raises FileNotFoundError saying how to make it."""
    path = Path(path)
    checkpoint = read_checkpoint(path, name=EXTRACTOR_NAME, expected_format=FORMAT, train_script=TRAIN_SCRIPT,
                                 default_path=DEFAULT_CHECKPOINT)
    model = build_shapes_detector(checkpoint["config"], seed=None)
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    meta = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    meta["sha256"] = file_sha256(path)
    return model.to(device).eval(), meta


def extractor_id(meta: Mapping[str, Any]) -> str:
    """The extractor's name in results: ``"shapes-i3d <first 12 hex digits of the file's sha256>"``."""
    sha = meta.get("sha256") if isinstance(meta, Mapping) else None
    if not isinstance(sha, str) or len(sha) < 12:
        raise ValueError("extractor_id needs the metadata returned by load_shapes_detector (with 'sha256')")
    return f"{EXTRACTOR_NAME} {sha[:12]}"


def metric_version(meta: Mapping[str, Any], *, estimator: str = "unbiased", num_frames: int = CLIP_FRAMES) -> str:
    """The version string of FVD computed with this detector (compare only equal strings)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    config = meta.get("config") or {}
    dim = config.get("feature_dim") or (meta.get("info") or {}).get("feature_dim")
    return (f"fvd/1 ({extractor_id(meta)} {dim}-d penultimate features, {config.get('pool', '?')} pool over time "
            f"and space, {num_frames}-frame clips, bilinear {INPUT_SIZE}, [-1,1], cov={estimator})")


def shapes_fvd(real_videos: np.ndarray | Sequence[np.ndarray], fake_videos: np.ndarray | Sequence[np.ndarray],
               model: ShapesDetector, *, estimator: str = "unbiased", batch_size: int = 32) -> float:
    """FVD between two sets of uint8 16-frame clips with shapes-i3d features (metrics.fvd's distance)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    real = model.features(real_videos, batch_size)
    fake = model.features(fake_videos, batch_size)
    return fvd_from_features(real, fake, estimator=estimator)
