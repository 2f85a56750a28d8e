"""VBench's dimensions as suite metrics: options, extractors, versions; the math is in ``metrics.vbench``.

Each dimension runs either on VBench's standard extractor, loaded from its official file
(``extractor: standard``, ``weights:`` a path, default ``metrics.extractors.DEFAULT_DIR``), or on
the project's offline default for the shapes world, which needs no download and is named as a
different extractor so the two are never compared:

===========================  =================================  ===================================
dimension                    standard (VBench's own numbers)    offline default
===========================  =================================  ===================================
subject_consistency          DINO ViT-B/16                      the shipped domain CLIP's image tower
background_consistency       OpenAI CLIP ViT-B/32               the shipped domain CLIP's image tower
dynamic_degree               RAFT (raft-things)                 OpenCV DIS flow, VBench's rule
static_filter                RAFT (raft-things)                 OpenCV DIS flow, VBench's rule
motion_smoothness            AMT-S                              DIS-flow midpoint interpolation
imaging_quality              MUSIQ-SPAQ (pyiqa)                 (none: standard only)
aesthetic_quality            CLIP ViT-L/14 + LAION head         (none: standard only)
===========================  =================================  ===================================

``protocol: vbench-long`` scores 2 s clips (``int(fps) * 2`` frames; the last padded with earlier
frames) and averages the clip scores, as VBench-Long's in-clip scores do (its clip-to-clip fusion
for the consistency dimensions is not applied; the version says so).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Literal

import cv2
import numpy as np
import torch
from pydantic import Field

from metrics import extractors, vbench
from metrics.files import file_sha256
from metrics.streaming import (ClipContext, Device, Metric, MetricArgs, MetricResult, MetricSetupError, NotScored,
                               StreamingMetric, resolve_device)

DEFINITION = "vbench-45e79ec"
LONG_CLIP_SECONDS = 2


def long_clip_frames(fps: float) -> int:
    """VBench-Long's clip length: ``int(fps) * 2`` frames (its fps is read as an integer)."""
    return max(2, int(fps) * LONG_CLIP_SECONDS)


@functools.lru_cache(maxsize=16)
def load_standard(name: str, weights: str | None, device: str) -> torch.nn.Module:
    """An official extractor, loaded once per process however many metrics use it (eval mode, no state)."""
    try:
        return extractors.load(name, weights, device=device)
    except extractors.ExtractorError as error:
        raise MetricSetupError(error.reason, fix=error.fix) from None
    except (FileNotFoundError, ValueError) as error:  # the RAFT and AMT loaders' own errors
        entry = extractors.extractor_file(name)
        raise MetricSetupError(str(error), fix=f"get the official {entry.filename} from {entry.url} (`vbf fetch {name}` "
                               f"where online) and put it at {entry.default_path}, or set args.weights: to its path") from None


@functools.lru_cache(maxsize=16)
def standard_extractor(name: str, weights: str | None) -> str:
    """The extractor's name in results: the network and the sha256 of its file (two files of one name
    are never taken for the same weights)."""
    entry = extractors.extractor_file(name)
    path = Path(weights).expanduser() if weights else entry.default_path
    digest = file_sha256(path)[:12] if path.is_file() else "missing"
    return f"{name} ({entry.filename}, sha256 {digest})"


class VbenchArgs(MetricArgs):
    extractor: Literal["offline", "standard"] = Field(
        "offline", description="standard: VBench's network from its official file (weights:); offline: the "
        "project's shapes-world default, named as another extractor")
    weights: str | None = Field(None, description="standard: the official weights file (default: "
                                "~/.cache/vbench-flow/extractors/<official file name>)")
    protocol: Literal["vbench", "vbench-long"] = Field(
        "vbench", description="vbench: the whole clip; vbench-long: mean over 2 s clips (VBench-Long)")
    batch_size: int = Field(8, ge=1, description="frames (or frame pairs) per network call")
    device: Device = Field("auto", description="where the network runs (auto: CUDA when present)")


class LongProtocol(StreamingMetric):
    """VBench-Long for a per-clip state: each 2 s clip is one state in turn. The last clip, padded
    with earlier frames, is the last ``clip_frames`` frames: when the clip's length is known it is
    fed as those frames arrive; otherwise the last ``clip_frames`` frames are kept to score it at the end.
    A 2 s clip its state leaves out (:class:`NotScored`, e.g. a moving clip for filtered flicker) is
    left out of the mean, as VBench-Long drops it; a video with no clip left is not scored."""

    min_frames = 1

    def __init__(self, make_state: Callable[[int], StreamingMetric], fps: float, *, name: str, version: str,
                 extractor: str, higher_is_better: bool, total_frames: int | None = None) -> None:
        self.make_state, self.clip_frames, self.total_frames = make_state, long_clip_frames(fps), total_frames
        self.name, self.version, self.extractor, self.higher_is_better = name, version, extractor, higher_is_better
        super().__init__(fps)

    @property
    def tail_start(self) -> int | None:
        """Where the padded last clip starts, when the length is known and it has one."""
        total, length = self.total_frames, self.clip_frames
        if total is None or total <= length or total % length == 0:
            return None
        return total - length

    def reset(self) -> None:
        self.frames_seen = 0
        self.scores: list[tuple[float, float]] = []
        self.left_out: list[str] = []  # why each 2 s clip its state did not score was left out
        # a clip shorter than one VBench-Long clip is kept whole: its one state gets all of it
        self._state = self.make_state(min(self.clip_frames, self.total_frames or self.clip_frames))
        self._in_clip = 0
        self._tail = self.make_state(self.clip_frames) if self.tail_start is not None else None
        # without a known length: the last clip_frames frames (copies), for the tail clip
        self._recent: deque[np.ndarray] = deque(maxlen=self.clip_frames)

    def update(self, chunk: np.ndarray) -> None:
        if self._tail is not None and self.frames_seen + len(chunk) > self.tail_start:
            self._tail.update(chunk[max(0, self.tail_start - self.frames_seen):])
        limit = len(chunk)
        if self._tail is not None:  # frames after the last full clip belong to the tail alone
            full_end = (self.total_frames // self.clip_frames) * self.clip_frames
            limit = max(0, min(limit, full_end - self.frames_seen))
        start = 0
        while start < limit:  # the chunk cut at clip boundaries, each part one update of its clip
            part = chunk[start:min(limit, start + self.clip_frames - self._in_clip)]
            self._state.update(part)
            if self.total_frames is None:
                self._recent.extend(frame.copy() for frame in part[-self.clip_frames:])
            self._in_clip += len(part)
            start += len(part)
            if self._in_clip == self.clip_frames:
                clip_start = (self.frames_seen + start - self.clip_frames) / self.fps
                self._score_clip(clip_start, self._state, self.scores)
                self._state, self._in_clip = self.make_state(self.clip_frames), 0
        self.frames_seen += len(chunk)

    def compute(self) -> MetricResult:
        if self.frames_seen < 1:
            raise ValueError(f"{self.name}: needs at least 1 frame")
        scores = list(self.scores)
        if self._in_clip or self._tail is not None:  # the tail: the last clip_frames frames (or the whole, shorter clip)
            if self.total_frames is not None and self.frames_seen != self.total_frames:
                raise ValueError(f"{self.name}: the clip has {self.frames_seen} frames, {self.total_frames} announced")
            if self._tail is not None:
                tail, start = self._tail, self.tail_start
            elif self.total_frames is not None:  # shorter than one clip: its one state is the clip
                tail, start = self._state, 0
            else:
                tail, start = self.make_state(len(self._recent)), self.frames_seen - len(self._recent)
                tail.update(np.stack(self._recent))
            left_out = list(self.left_out)
            self._score_clip(start / self.fps, tail, scores, left_out)
        else:
            left_out = self.left_out
        if not scores:
            raise NotScored(f"all {len(left_out)} of the video's {LONG_CLIP_SECONDS} s clips left out, e.g. {left_out[0]}")
        return MetricResult(vbench.mean_of([s for _, s in scores]), scores)

    def _score_clip(self, start_seconds: float, state: StreamingMetric, scores: list[tuple[float, float]],
                    left_out: list[str] | None = None) -> None:
        try:
            scores.append((start_seconds, state.compute().value))
        except NotScored as reason:
            (self.left_out if left_out is None else left_out).append(str(reason))


class VbenchDimension(Metric):
    """A VBench dimension: builds its extractor once, gives each clip a state."""

    dimension: ClassVar[str]
    standard_name: ClassVar[str]
    offline_name: ClassVar[str | None] = None
    Args = VbenchArgs

    def __init__(self, args: VbenchArgs | None = None) -> None:
        super().__init__(args)
        self.device = resolve_device(self.args.device)
        if self.args.extractor == "offline" and self.offline_name is None:
            raise MetricSetupError(f"{self.name} has no offline extractor",
                                   fix=f"use extractor: standard with the official {self.standard_name} weights")
        if self.args.extractor == "standard":
            self.extractor = standard_extractor(self.standard_name, self.args.weights)
        else:
            self.extractor = self.offline_name
        protocol = ("vbench-long in-clip (2 s clips, mean; no clip-to-clip fusion)"
                    if self.args.protocol == "vbench-long" else "vbench (whole clip)")
        self.version = f"{DEFINITION} {self.dimension}/1 ({self.describe()}; {protocol})"
        self.setup()

    @classmethod
    def missing_files(cls, args: VbenchArgs) -> list[str]:
        if args.extractor != "standard":
            return []
        files = [(cls.standard_name, "weights")] + ([("laion-aesthetic", "head_weights")]
                                                    if cls.standard_name == "clip-vitl14" else [])
        missing = []
        for name, option in files:
            entry, given = extractors.extractor_file(name), getattr(args, option)
            path = Path(given).expanduser() if given else entry.default_path
            if not path.is_file():
                missing.append(f"{name} weights not found at {path}: get {entry.filename} from {entry.url} "
                               f"(`vbf fetch {name}` where online), or set args.{option}: to the file's path")
        return missing

    def describe(self) -> str:
        return "as VBench's code"

    def setup(self) -> None:
        """Load the extractor (called once)."""

    def clip_state(self, fps: float, num_frames: int | None = None, cache: dict | None = None) -> StreamingMetric:
        """The state of one clip (``num_frames``, when known, lets flow verdicts stop early; ``cache``,
        the clip's ``ClipContext.shared``, shares features and flows with the unit's other metrics)."""
        raise NotImplementedError

    def streaming(self, ctx: ClipContext) -> StreamingMetric:
        if self.args.protocol == "vbench-long":
            # VBench-Long writes its clips at int(fps): dynamic degree's sampling follows that rate
            return LongProtocol(lambda frames: self.clip_state(float(max(1, int(ctx.fps))), frames, ctx.shared), ctx.fps,
                                name=self.name, version=self.version, extractor=self.extractor,
                                higher_is_better=self.higher_is_better, total_frames=ctx.num_frames)
        return self.clip_state(ctx.fps, ctx.num_frames, ctx.shared)


# ---------------------------------------------------------------- consistency


class ConsistencyDimension(VbenchDimension):
    offline_name = "domain-clip-shapes64 image tower"
    motion_counterpart = "motion_magnitude"  # a still clip is perfectly consistent

    @property
    def cache_key(self) -> str:
        """What the features depend on: one key, one computation per frame for every metric of a unit
        (offline: CLIPSIM's key too, as both embed frames with the same domain CLIP)."""
        if self.args.extractor == "offline":
            return self.offline_scorer.embedding_key
        return f"features {self.standard_name} {self.args.weights or 'default'} {getattr(self.args, 'precision', 'fp32')}"

    def setup(self) -> None:
        if self.args.extractor == "offline":
            from metrics.clipsim import ClipScorer

            self.offline_scorer = ClipScorer.from_domain_checkpoint(device=self.device)
            self.features = self.offline_scorer.image_embeddings
        else:
            self.features = self.standard_features()

    def standard_features(self) -> vbench.FeatureFn:
        raise NotImplementedError

    def clip_state(self, fps: float, num_frames: int | None = None,
                   cache: dict | None = None) -> vbench.FeatureConsistency:
        return vbench.FeatureConsistency(self.features, fps, name=self.name, version=self.version,
                                         extractor=self.extractor, cache=cache, cache_key=self.cache_key, owner=self)


class SubjectConsistencyMetric(ConsistencyDimension):
    name = dimension = "subject_consistency"
    summary = ("VBench subject consistency: mean over frames of (cos to the previous frame + cos to the first) / 2, "
               "DINO features (offline: the domain CLIP)")
    higher_is_better = True
    standard_name = "dino-vitb16"

    def describe(self) -> str:
        # VBench runs DINO one frame at a time; on a GPU the kernels (and the last bits) depend on the batch
        return f"DINO batch {self.args.batch_size}" if self.args.extractor == "standard" else "domain CLIP"

    def standard_features(self) -> vbench.FeatureFn:
        network = load_standard(self.standard_name, self.args.weights, self.device)
        return vbench.dino_features(network, batch_size=self.args.batch_size, device=self.device)


class BackgroundConsistencyMetric(ConsistencyDimension):
    name = dimension = "background_consistency"
    summary = ("VBench background consistency: the same previous/first-frame cosine on CLIP ViT-B/32 features "
               "(offline: the domain CLIP)")
    higher_is_better = True
    standard_name = "clip-vitb32"

    class Args(VbenchArgs):
        precision: Literal["fp32", "fp16"] = Field(
            "fp32", description="CLIP's precision: fp16 reproduces VBench's GPU numbers (OpenAI's loader casts "
            "to fp16 on CUDA), fp32 its CPU numbers")

    def describe(self) -> str:
        return f"CLIP {self.args.precision} batch {self.args.batch_size}" if self.args.extractor == "standard" \
            else "domain CLIP: the same features, so the same value, as offline subject consistency"

    def standard_features(self) -> vbench.FeatureFn:
        path = self.args.weights or extractors.extractor_file(self.standard_name).default_path
        try:
            network = extractors.load_openai_clip("ViT-B-32", path, self.device, precision=self.args.precision)
        except extractors.ExtractorError as error:
            raise MetricSetupError(error.reason, fix=error.fix) from None
        return vbench.clip_features(network, batch_size=self.args.batch_size, device=self.device)


# ---------------------------------------------------------------- motion: dynamic degree, static filter


def dis_flow_fn(preset: str = "medium") -> vbench.FlowFn:
    """OpenCV DIS flow of float 0..255 (N, 3, H, W) pairs, (N, 2, H, W): the offline stand-in for RAFT."""
    from metrics.warping import dis_flow

    estimator = dis_flow(preset)

    def flows(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        a = first.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()
        b = second.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()
        return torch.from_numpy(estimator.many(a, b)).permute(0, 3, 1, 2)

    return flows


class FlowArgs(VbenchArgs):
    batch_size: int = Field(1, ge=1, description="frame pairs per flow call (RAFT's correlation volume of one "
                            "1080p pair takes about 5 GB)")


class FlowDimension(VbenchDimension):
    offline_name = "opencv-dis(preset=medium, gray)"
    standard_name = "raft-things"
    Args = FlowArgs

    def describe(self) -> str:
        return "RAFT 20 updates, padded flow" if self.args.extractor == "standard" else "DIS flow, unpadded"

    @property
    def min_side(self) -> int:
        return vbench.RAFT_MIN_SIDE if self.args.extractor == "standard" else 0

    def setup(self) -> None:
        if self.args.extractor == "offline":
            self.flow = dis_flow_fn()
        else:
            self.flow = vbench.raft_flow_fn(load_standard(self.standard_name, self.args.weights, self.device),
                                            device=self.device)


class DynamicDegreeMetric(FlowDimension):
    name = dimension = "dynamic_degree"
    summary = ("VBench dynamic degree: 1 when the clip moves (enough sampled frame pairs with large top-5% flow), "
               "else 0; the mean over clips is the fraction of dynamic clips")
    higher_is_better = True
    min_frames = 2

    def clip_state(self, fps: float, num_frames: int | None = None,
                   cache: dict | None = None) -> vbench.DynamicDegree:
        return vbench.DynamicDegree(self.flow, fps, batch_size=self.args.batch_size, version=self.version,
                                    extractor=self.extractor, min_side=self.min_side, total_frames=num_frames,
                                    cache=cache, owner=self)


class StaticFilterMetric(FlowDimension):
    name = dimension = "static_filter"
    summary = ("VBench's static filter: 1 when the clip is static (few frame pairs with large top-2% flow), else 0; "
               "VBench scores temporal flickering only on static clips")
    higher_is_better = False

    def clip_state(self, fps: float, num_frames: int | None = None,
                   cache: dict | None = None) -> vbench.StaticFilter:
        return vbench.StaticFilter(self.flow, fps, batch_size=self.args.batch_size, version=self.version,
                                   extractor=self.extractor, min_side=self.min_side, total_frames=num_frames,
                                   cache=cache, owner=self)


# ---------------------------------------------------------------- motion smoothness


def flow_midpoint_fn(preset: str = "medium") -> vbench.MidpointFn:
    """The frame halfway between two: each pixel averages the first frame half a flow step back and
    the second half a step forward along the DIS flow first -> second (the offline stand-in for AMT)."""
    flows = dis_flow_fn(preset)

    def midpoints(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        flow = flows(first * 255.0, second * 255.0).numpy()
        out = []
        for a, b, f in zip(first.permute(0, 2, 3, 1).numpy(), second.permute(0, 2, 3, 1).numpy(), flow):
            height, width = a.shape[:2]
            grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
            half_x, half_y = 0.5 * f[0], 0.5 * f[1]
            from_a = cv2.remap(a, grid_x - half_x, grid_y - half_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            from_b = cv2.remap(b, grid_x + half_x, grid_y + half_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            out.append(0.5 * (from_a + from_b))
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).clamp(0, 1)

    return midpoints


class MotionSmoothnessMetric(VbenchDimension):
    name = dimension = "motion_smoothness"
    summary = ("VBench motion smoothness: (255 - mean |odd frame - midpoint interpolated from its even neighbours|)"
               " / 255; AMT-S (offline: DIS-flow midpoint)")
    higher_is_better = True
    min_frames = 3
    standard_name = "amt-s"
    offline_name = "dis-flow-midpoint(preset=medium)"
    motion_counterpart = "motion_magnitude"  # a still clip is perfectly smooth

    def describe(self) -> str:
        return "AMT-S t=0.5, uint8 truncation" if self.args.extractor == "standard" else "DIS midpoint, uint8 truncation"

    def setup(self) -> None:
        if self.args.extractor == "offline":
            self.midpoint = flow_midpoint_fn()
        else:
            self.midpoint = vbench.amt_midpoint_fn(load_standard("amt-s", self.args.weights, self.device),
                                                   device=self.device)

    def clip_state(self, fps: float, num_frames: int | None = None,
                   cache: dict | None = None) -> vbench.MotionSmoothness:
        return vbench.MotionSmoothness(self.midpoint, fps, batch_size=self.args.batch_size, version=self.version,
                                       extractor=self.extractor,
                                       min_side=vbench.AMT_MIN_SIDE if self.args.extractor == "standard" else 0)


# ---------------------------------------------------------------- per-frame quality


class QualityArgs(VbenchArgs):
    extractor: Literal["standard"] = Field("standard", description="VBench's network from its official file")


class ImagingQualityMetric(VbenchDimension):
    name = dimension = "imaging_quality"
    summary = "VBench imaging quality: mean MUSIQ-SPAQ score of the frames / 100 (pyiqa's architecture)"
    higher_is_better = True
    min_frames = 1
    standard_name = "musiq-spaq"

    class Args(QualityArgs):
        mode: Literal["longer", "shorter", "shorter_centercrop", "None"] = Field(
            "longer", description="VBench's resize before MUSIQ: longer side to 512 (its default)")

    def describe(self) -> str:
        return f"MUSIQ mode {self.args.mode}"

    def setup(self) -> None:
        self.scores = vbench.musiq_scores(load_standard("musiq-spaq", self.args.weights, self.device),
                                          mode=self.args.mode, device=self.device)

    def clip_state(self, fps: float, num_frames: int | None = None,
                   cache: dict | None = None) -> vbench.PerFrameQuality:
        return vbench.PerFrameQuality(self.scores, fps, name=self.name, version=self.version,
                                      extractor=self.extractor, combine="musiq")


class AestheticQualityMetric(VbenchDimension):
    name = dimension = "aesthetic_quality"
    summary = "VBench aesthetic quality: mean LAION aesthetic score of the frames / 10 (CLIP ViT-L/14)"
    higher_is_better = True
    min_frames = 1
    standard_name = "clip-vitl14"

    class Args(QualityArgs):
        head_weights: str | None = Field(None, description="the LAION head file (default: "
                                         "~/.cache/vbench-flow/extractors/sa_0_4_vit_l_14_linear.pth)")
        precision: Literal["fp32", "fp16"] = Field("fp32", description="CLIP's precision (fp16: VBench on a GPU)")

    def describe(self) -> str:
        return f"CLIP ViT-L/14 {self.args.precision} + LAION head"

    def setup(self) -> None:
        clip_path = self.args.weights or extractors.extractor_file("clip-vitl14").default_path
        try:
            clip = extractors.load_openai_clip("ViT-L-14", clip_path, self.device, precision=self.args.precision)
        except extractors.ExtractorError as error:
            raise MetricSetupError(error.reason, fix=error.fix) from None
        head = load_standard("laion-aesthetic", self.args.head_weights, self.device)
        self.scores = vbench.aesthetic_scores(clip, head, batch_size=self.args.batch_size, device=self.device)

    def clip_state(self, fps: float, num_frames: int | None = None,
                   cache: dict | None = None) -> vbench.PerFrameQuality:
        return vbench.PerFrameQuality(self.scores, fps, name=self.name, version=self.version,
                                      extractor=self.extractor, combine="aesthetic")


VBENCH_METRICS = (SubjectConsistencyMetric, BackgroundConsistencyMetric, DynamicDegreeMetric, StaticFilterMetric,
                  MotionSmoothnessMetric, ImagingQualityMetric, AestheticQualityMetric)
