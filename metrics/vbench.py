"""VBench's temporal-quality dimensions, computed as VBench's own code computes them, streaming.

Each dimension is a streaming state (``update`` with consecutive uint8 chunks, ``compute``) built
on an extractor function, plus its functional twin on a whole clip:

- :func:`subject_consistency` (DINO ViT-B/16) and :func:`background_consistency` (CLIP ViT-B/32):
  per frame i >= 1, ``(max(0, cos(f[i-1], f[i])) + max(0, cos(f[0], f[i]))) / 2``, averaged.
- :func:`dynamic_degree` (RAFT): frames every ``max(1, round(fps / 8))``; each consecutive pair's
  score is the mean of its largest 5 % flow magnitudes (over the padded flow); dynamic when at
  least ``round(4 n / 16)`` of them exceed ``6 min(H, W) / 256``.
- :func:`static_filter` (RAFT): every consecutive pair plus (first, last) and (last, first), top
  2 %; static unless more than ``round(2 T / 16)`` consecutive pairs exceed ``3 min(H, W) / 256``
  or an end pair exceeds ``thres * count * 2``. VBench scores temporal flickering only on static
  clips.
- :func:`motion_smoothness` (AMT-S): frames 0, 2, 4, ... interpolated at t = 0.5, truncated to
  uint8 and compared with frames 1, 3, 5, ...; ``(255 - mean |diff|) / 255``.
- :func:`imaging_quality` (MUSIQ-SPAQ): mean per-frame MUSIQ score / 100 after resizing the longer
  side to 512 when larger (VBench's "longer" mode).
- :func:`aesthetic_quality` (CLIP ViT-L/14 + LAION head): mean over frames of head(normalised
  feature) / 10.

Preprocessing is torchvision's, called as VBench calls it: frames as float32 0..255 (T, 3, H, W),
``Resize`` without antialiasing (bilinear, shorter side to 224, for DINO; bicubic, unclamped,
then ``CenterCrop(224)`` for CLIP), /255, then the network's mean and std.

The extractor functions are replaceable: the shapes world's offline defaults (``metrics.vbench_metrics``)
use the project's domain CLIP instead of DINO and CLIP, OpenCV flow instead of RAFT, and a flow
midpoint interpolator instead of AMT, under other extractor names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from metrics.streaming import (MetricResult, StreamingMetric, frame_digest, pair_digest, rows_once_per_clip,
                               share_with_others)
from metrics.video import check_video

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INPUT_SIZE = 224
RAFT_MIN_SIDE = AMT_MIN_SIDE = 128  # padded sides; both networks give NaN below
MUSIQ_SIDE = 512
MUSIQ_MODES = ("longer", "shorter", "shorter_centercrop", "None")

# uint8 frames (N, H, W, 3) -> one feature row per frame (N, D)
FeatureFn = Callable[[np.ndarray], Tensor]
# float32 0..255 (N, 3, H, W) pairs -> the flow whose magnitudes are ranked (N, 2, H', W')
FlowFn = Callable[[Tensor, Tensor], Tensor]
# float32 0..1 (N, 3, H, W) pairs -> the frames halfway between them, float32 0..1 (N, 3, H, W)
MidpointFn = Callable[[Tensor, Tensor], Tensor]


# ---------------------------------------------------------------- preprocessing (as VBench calls torchvision)


def as_float_frames(frames: np.ndarray) -> Tensor:
    """uint8 (T, H, W, 3) -> float32 0..255 (T, 3, H, W): what ``vbench.utils.load_video`` returns."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()


def dino_input(frames: np.ndarray) -> Tensor:
    """Shorter side to 224 (bilinear, no antialias, no crop), /255, ImageNet mean/std."""
    # torchvision is imported on use: it costs seconds a run scoring no VBench dimension should not pay
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    x = TF.resize(as_float_frames(frames), INPUT_SIZE, interpolation=InterpolationMode.BILINEAR, antialias=False)
    return TF.normalize(x / 255.0, IMAGENET_MEAN, IMAGENET_STD)


def clip_input(frames: np.ndarray) -> Tensor:
    """Shorter side to 224 (bicubic on floats, no antialias, no clamp), centre crop 224, /255, CLIP mean/std."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    x = TF.resize(as_float_frames(frames), INPUT_SIZE, interpolation=InterpolationMode.BICUBIC, antialias=False)
    return TF.normalize(TF.center_crop(x, INPUT_SIZE) / 255.0, CLIP_MEAN, CLIP_STD)


def musiq_input(frames: np.ndarray, mode: str = "longer") -> Tensor:
    """VBench's imaging-quality input: float 0..1; in mode "longer" (VBench's default) the longer side
    is brought to 512 when larger, in "shorter" / "shorter_centercrop" the shorter side, "None" keeps it."""
    if mode not in MUSIQ_MODES:
        raise ValueError(f"imaging quality mode must be one of {', '.join(MUSIQ_MODES)}, got {mode!r}")
    from torchvision.transforms import functional as TF

    x = as_float_frames(frames)
    height, width = x.shape[-2:]
    side = max(height, width) if mode == "longer" else min(height, width)
    if mode != "None" and side > MUSIQ_SIDE:
        scale = MUSIQ_SIDE / side
        x = TF.resize(x, [int(scale * height), int(scale * width)], antialias=False)
        if mode == "shorter_centercrop":
            x = TF.center_crop(x, MUSIQ_SIDE)
    return x / 255.0


def batched(frames: np.ndarray, batch_size: int, fn: Callable[[np.ndarray], Tensor]) -> Tensor:
    """``fn`` over ``frames`` in batches (bounded memory at any resolution), rows concatenated."""
    return torch.cat([fn(frames[i:i + batch_size]) for i in range(0, len(frames), batch_size)])


def network_features(network: Callable[[Tensor], Tensor], preprocess: Callable[[np.ndarray], Tensor], *,
                     batch_size: int = 1, device: str = "cpu", dtype: torch.dtype = torch.float32) -> FeatureFn:
    """A feature function: preprocess, run ``network`` in batches, rows on the CPU in the network's
    precision (VBench normalises and compares fp16 CLIP features in fp16 on a GPU)."""

    def features(frames: np.ndarray) -> Tensor:
        def run(part: np.ndarray) -> Tensor:
            with torch.inference_mode():
                return network(preprocess(part).to(device=device, dtype=dtype)).cpu()

        return batched(frames, batch_size, run)

    return features


def dino_features(dino: torch.nn.Module, *, batch_size: int = 1, device: str = "cpu") -> FeatureFn:
    return network_features(dino, dino_input, batch_size=batch_size, device=device)


def clip_features(clip: torch.nn.Module, *, batch_size: int = 32, device: str = "cpu") -> FeatureFn:
    dtype = clip.visual.conv1.weight.dtype  # an fp16 tower takes fp16 images, as OpenAI's encode_image casts
    return network_features(clip.encode_image, clip_input, batch_size=batch_size, device=device, dtype=dtype)


# ---------------------------------------------------------------- consistency


def consistency_terms(features: Tensor) -> list[float]:
    """VBench's per-frame terms for frames 1..T-1 of L2-normalised features (T, D), relative to
    ``features[0]``; as Python floats of the float32 cosines, as VBench's ``.item()`` gives them."""
    if len(features) < 2:
        return []
    previous = F.cosine_similarity(features[:-1], features[1:], dim=-1).tolist()
    first = F.cosine_similarity(features[:1].expand(len(features) - 1, -1), features[1:], dim=-1).tolist()
    return [(max(0.0, a) + max(0.0, b)) / 2 for a, b in zip(previous, first)]


def mean_of(values: Sequence[float]) -> float:
    """The mean accumulated left to right in Python floats, as VBench sums its per-frame terms."""
    total = 0.0
    for value in values:
        total += value
    return total / len(values)


class FeatureConsistency(StreamingMetric):
    """Subject/background consistency of one clip from per-frame features.

    Keeps each frame's normalised feature (768 floats: 5.5 MB for 1,800 frames) so that every view
    VBench and its long-video protocols take can be computed at the end: the whole clip, 2 s
    clips (VBench-Long), and cosine decay with frame distance (identity decay).
    """

    min_frames = 2

    def __init__(self, features: FeatureFn, fps: float, *, name: str, version: str, extractor: str,
                 higher_is_better: bool = True, cache: dict | None = None, cache_key: str | None = None,
                 owner: object = None) -> None:
        self.features = features
        self.cache, self.cache_key = share_with_others(cache, cache_key or f"features {extractor}", owner or self)
        self.name, self.version, self.extractor = name, version, extractor
        self.higher_is_better = higher_is_better
        super().__init__(fps)

    def reset(self) -> None:
        self._features: list[Tensor] = []
        self.frames_seen = 0

    def update(self, chunk: np.ndarray) -> None:
        chunk = check_video(chunk, name=f"{self.name} chunk")
        features = torch.stack(rows_once_per_clip(self.cache, self.cache_key, chunk, frame_digest,
                                                  lambda indices: self.features(chunk[indices])))
        self._features.append(F.normalize(features, dim=-1, p=2))
        self.frames_seen += len(chunk)

    def merge(self, following: StreamingMetric) -> None:
        if not isinstance(following, FeatureConsistency):
            raise TypeError(f"{self.name}: cannot merge a {type(following).__name__}")
        self._features.extend(following._features)
        self.frames_seen += following.frames_seen

    @property
    def all_features(self) -> Tensor:
        if self.frames_seen < self.min_frames:
            raise ValueError(f"{self.name}: needs at least {self.min_frames} frames, got {self.frames_seen}")
        return torch.cat(self._features)

    def compute(self) -> MetricResult:
        terms = consistency_terms(self.all_features)
        return MetricResult(mean_of(terms), [((i + 1) / self.fps, v) for i, v in enumerate(terms)])

    def identity_decay(self, offsets: Sequence[int]) -> list[tuple[int, float]]:
        """(offset, mean cosine between frames ``offset`` apart) for each offset shorter than the clip."""
        features = self.all_features
        return [(d, float(F.cosine_similarity(features[:-d], features[d:], dim=-1).double().mean()))
                for d in offsets if 0 < d < len(features)]


def subject_consistency(frames: np.ndarray, dino: torch.nn.Module, *, batch_size: int = 1) -> float:
    """VBench's subject consistency of one clip (uint8 (T, H, W, 3), every frame, native size)."""
    return FeatureConsistency(dino_features(dino, batch_size=batch_size), 1.0, name="subject_consistency",
                              version="", extractor="").score(frames).value


def background_consistency(frames: np.ndarray, clip: torch.nn.Module, *, batch_size: int = 32) -> float:
    """VBench's background consistency of one clip (uint8 (T, H, W, 3), every frame, native size)."""
    return FeatureConsistency(clip_features(clip, batch_size=batch_size), 1.0, name="background_consistency",
                              version="", extractor="").score(frames).value


# ---------------------------------------------------------------- flow magnitudes: dynamic degree, static filter


def check_side(name: str, size: tuple[int, int], min_side: int, multiple: int) -> None:
    """Refuse frames whose padded sides are below what the network handles: RAFT and AMT return NaN
    for every pixel there (VBench then silently calls the clip static), so say so instead."""
    padded = [-(-side // multiple) * multiple for side in size]
    if min(padded) < min_side:
        raise ValueError(f"{name}: frames of {size[0]}x{size[1]} px are too small for this extractor (padded sides "
                         f"must be at least {min_side} px; below that its flow is NaN everywhere). Use the offline "
                         f"extractor, or upscale the clip")


KEEP_FRACTION = 0.05  # the largest 5 % of magnitudes serve both verdicts (dynamic: 5 %, static: 2 %)


def ranked_magnitudes(flow: np.ndarray, keep: float = KEEP_FRACTION) -> tuple[int, np.ndarray]:
    """(pixels, the largest ``int(pixels * keep)`` flow magnitudes of one (2, h, w) float32 flow in
    descending order, contiguous): enough for the top-``fraction`` mean of any fraction <= keep."""
    dx, dy = np.asarray(flow, dtype=np.float32)
    magnitude = np.sqrt(dx * dx + dy * dy)
    pixels = magnitude.shape[0] * magnitude.shape[1]
    return pixels, np.ascontiguousarray(np.sort(magnitude, axis=None)[::-1][:int(pixels * keep)])


def top_mean(pixels: int, ranked: np.ndarray, fraction: float) -> float:
    """The mean of the largest ``int(pixels * fraction)`` magnitudes, summed in float32 in descending
    order from a contiguous start, as VBench's NumPy code sums them."""
    return float(ranked[:int(pixels * fraction)].mean())


def top_magnitude_mean(flow: np.ndarray, fraction: float) -> float:
    """VBench's pair score: the mean of the largest ``int(h * w * fraction)`` flow magnitudes."""
    return top_mean(*ranked_magnitudes(flow, max(fraction, KEEP_FRACTION)), fraction)


def raft_flow_fn(raft: torch.nn.Module, *, device: str = "cpu") -> FlowFn:
    """RAFT as VBench runs it: inputs replicate-padded to multiples of 8, 20 updates, the upsampled
    flow of the padded frames (the magnitudes are ranked over the padding too)."""
    from metrics.raft import ITERS, pad_to_multiple

    def flows(first: Tensor, second: Tensor) -> Tensor:
        with torch.inference_mode():
            return raft(pad_to_multiple(first, 8).to(device), pad_to_multiple(second, 8).to(device), iters=ITERS).float().cpu()

    return flows


@dataclass(frozen=True)
class MotionRule:
    """VBench's motion thresholds: a pair moves when its top-``fraction`` magnitude exceeds
    ``pixels_per_256 * min(H, W) / 256``; ``count`` is ``round(count_per_16 * n / 16)``."""

    fraction: float
    pixels_per_256: float
    count_per_16: float

    def threshold(self, height: int, width: int) -> float:
        return self.pixels_per_256 * (min(height, width) / 256.0)

    def count(self, frames: int) -> int:
        return round(self.count_per_16 * (frames / 16.0))  # Python's round: half to even, as VBench


# frames a known-length clip may hold back for the static filter's end pair: the harness's own bound on
# one decoded chunk (vbench_flow.video_io.CHUNK_BYTES), so memory stays bounded whatever the clip
# (16 frames of 720p, or a 2 s VBench-Long clip of 480p at 25 fps, fit; larger clips stream)
HOLD_BYTES = 64 * 1024 * 1024
DYNAMIC_RULE = MotionRule(fraction=0.05, pixels_per_256=6.0, count_per_16=4.0)
STATIC_RULE = MotionRule(fraction=0.02, pixels_per_256=3.0, count_per_16=2.0)


def sampling_interval(fps: float) -> int:
    """Dynamic degree looks at every k-th frame, k = max(1, round(fps / 8))."""
    return max(1, round(fps / 8))


def is_dynamic(scores: Sequence[float], sampled_frames: int, height: int, width: int) -> bool:
    """VBench's verdict: at least ``count`` pair scores above the threshold (any pair when count is 0)."""
    if not scores:
        return False
    threshold = DYNAMIC_RULE.threshold(height, width)
    return sum(score > threshold for score in scores) >= DYNAMIC_RULE.count(sampled_frames)


def is_static(consecutive: Sequence[float], ends: Sequence[float], frames: int, height: int, width: int) -> bool:
    """VBench's static filter: no more than ``count`` consecutive pairs above the threshold, and
    neither end pair (first->last, last->first) above ``threshold * count * 2``."""
    threshold, count = STATIC_RULE.threshold(height, width), STATIC_RULE.count(frames)
    if sum(score > threshold for score in consecutive) > count:
        return False
    return all(score <= threshold * count * 2 for score in ends)


class PairFlowScores(StreamingMetric):
    """Top-magnitude flow scores of consecutive (sampled) frame pairs, computed ``batch_size`` pairs
    at a time as frames arrive; keeps the last frame for the next chunk and the first for the ends.

    When the clip's length is known in advance (``total_frames``), the flows stop as soon as the
    verdict is settled (:meth:`settled`): VBench's own checks return at that point too, so the
    verdict is the same, and a moving clip costs a fraction of its pairs. The scores then cover the
    pairs computed until then.
    """

    min_frames = 1

    def __init__(self, flow: FlowFn, fps: float, *, fraction: float, every: int = 1, batch_size: int = 4,
                 end_pairs: bool = False, min_side: int = 0, total_frames: int | None = None,
                 cache: dict | None = None, cache_key: str = "", owner: object = None) -> None:
        self.flow, self.fraction, self.every, self.min_side = flow, fraction, every, min_side
        self.batch_size, self.end_pairs, self.total_frames = batch_size, end_pairs, total_frames
        self.cache, self.cache_key = share_with_others(cache, f"flow {cache_key}", owner or self)
        super().__init__(fps)

    def settled(self) -> bool:
        """Whether the scores so far already decide the verdict (only with ``total_frames``)."""
        needed = self.pairs_to_settle()
        return needed is not None and needed <= 0 and bool(self.scores or self.end_scores)

    def pairs_to_settle(self) -> int | None:
        """The fewest further moving pairs that would settle the verdict (None: no early exit)."""
        return None

    def next_batch(self) -> int:
        """Pairs to run at once: ``batch_size``, but no more than could still be needed, so a
        settled verdict wastes no flow."""
        needed = self.pairs_to_settle()
        return self.batch_size if needed is None else max(1, min(self.batch_size, needed))

    def exceeding(self, threshold: float) -> int:
        return sum(score > threshold for score in self.scores)

    def check_length(self) -> None:
        if self.total_frames is not None and self.frames_seen != self.total_frames:
            raise ValueError(f"{self.name}: the clip has {self.frames_seen} frames, but {self.total_frames} were "
                             "announced (the verdict may have been settled on the wrong count)")

    def reset(self) -> None:
        self.frames_seen = 0
        self.sampled = 0
        self.scores: list[float] = []
        self.end_scores: list[float] = []
        self.size: tuple[int, int] | None = None
        self.first: np.ndarray | None = None
        self.last_sampled: np.ndarray | None = None
        self.last: np.ndarray | None = None
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []

    def _score_pairs(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:
        if not pairs:
            return []

        def ranked(indices: list[int]) -> list[tuple[int, np.ndarray]]:
            first = as_float_frames(np.stack([pairs[i][0] for i in indices]))
            second = as_float_frames(np.stack([pairs[i][1] for i in indices]))
            return [ranked_magnitudes(flow) for flow in self.flow(first, second).numpy()]

        rows = rows_once_per_clip(self.cache, self.cache_key, pairs, pair_digest, ranked)
        return [top_mean(pixels, top, self.fraction) for pixels, top in rows]

    def _flush(self, everything: bool = False) -> None:
        while len(self._pending) >= self.next_batch() or (everything and self._pending):
            if self.settled():
                self._pending.clear()
                return
            size = self.next_batch()
            batch, self._pending = self._pending[:size], self._pending[size:]
            self.scores.extend(self._score_pairs(batch))

    def update(self, chunk: np.ndarray) -> None:
        chunk = check_video(chunk, name=f"{self.name} chunk")
        if self.size is None:
            check_side(self.name, chunk.shape[1:3], self.min_side, 8)
            self.size = chunk.shape[1:3]
            self.first = chunk[0].copy()
        done = self.settled()
        for index in range(len(chunk)):
            if (self.frames_seen + index) % self.every:
                continue
            self.sampled += 1
            if done:
                continue
            frame = chunk[index].copy()  # kept past this call: never a view into the caller's chunk
            if self.last_sampled is not None:
                self._pending.append((self.last_sampled, frame))
            self.last_sampled = frame
        self.frames_seen += len(chunk)
        self.last = chunk[-1].copy()
        self._flush()

    def finish(self) -> tuple[list[float], list[float]]:
        """(consecutive pair scores, end pair scores): the flows still pending are computed now."""
        self._flush(everything=True)
        if self.end_pairs and not self.settled():
            missing = [(self.first, self.last), (self.last, self.first)][len(self.end_scores):]
            self.end_scores.extend(self._score_pairs(missing))
        return list(self.scores), list(self.end_scores)


class DynamicDegree(PairFlowScores):
    """1.0 when the clip is dynamic by VBench's rule, else 0.0; the series is each sampled pair's score."""

    name = "dynamic_degree"
    higher_is_better = True

    def __init__(self, flow: FlowFn, fps: float, *, batch_size: int = 4, version: str = "", extractor: str = "",
                 min_side: int = 0, total_frames: int | None = None, cache: dict | None = None,
                 owner: object = None) -> None:
        self.version, self.extractor = version, extractor
        super().__init__(flow, fps, fraction=DYNAMIC_RULE.fraction, every=sampling_interval(fps), batch_size=batch_size,
                         min_side=min_side, total_frames=total_frames, cache=cache, cache_key=extractor, owner=owner)

    def pairs_to_settle(self) -> int | None:
        """Dynamic as soon as enough sampled pairs moved (VBench's check returns True there)."""
        if self.total_frames is None or self.size is None:
            return None
        sampled = -(-self.total_frames // self.every)
        return DYNAMIC_RULE.count(sampled) - self.exceeding(DYNAMIC_RULE.threshold(*self.size))

    def compute(self) -> MetricResult:
        if self.frames_seen < 1:
            raise ValueError(f"{self.name}: needs at least 1 frame")
        self.check_length()
        scores, _ = self.finish()
        verdict = is_dynamic(scores, self.sampled, *self.size)
        step = self.every / self.fps
        return MetricResult(float(verdict), [((i + 1) * step, s) for i, s in enumerate(scores)])


class StaticFilter(PairFlowScores):
    """1.0 when the clip is static by VBench's filter, else 0.0; the series is each consecutive pair's score."""

    name = "static_filter"
    higher_is_better = False

    def __init__(self, flow: FlowFn, fps: float, *, batch_size: int = 4, version: str = "", extractor: str = "",
                 min_side: int = 0, total_frames: int | None = None, cache: dict | None = None,
                 owner: object = None) -> None:
        self.version, self.extractor = version, extractor
        super().__init__(flow, fps, fraction=STATIC_RULE.fraction, batch_size=batch_size, end_pairs=True,
                         min_side=min_side, total_frames=total_frames, cache=cache, cache_key=extractor, owner=owner)

    def pairs_to_settle(self) -> int | None:
        """Not static as soon as more than ``count`` pairs moved, or the first end pair moved more
        than ``threshold * count * 2`` (VBench's check returns False on either)."""
        if self.total_frames is None or self.size is None:
            return None
        threshold, count = STATIC_RULE.threshold(*self.size), STATIC_RULE.count(self.total_frames)
        if self.end_scores and self.end_scores[0] > threshold * count * 2:
            return 0
        return count + 1 - self.exceeding(threshold)

    def holds_back(self) -> bool:
        """Whether the clip's frames wait for its last one (known length, at most ``HOLD_BYTES``):
        then its end pair, first -> last, is scored first. A clip that moves is usually settled by
        that one flow, sparing the ``count + 1`` consecutive pairs the streaming order needs."""
        return (self.total_frames is not None and self.size is not None
                and self.total_frames * self.size[0] * self.size[1] * 3 <= HOLD_BYTES)

    def _flush(self, everything: bool = False) -> None:
        if self.holds_back() and not self.end_scores:
            if self.frames_seen < self.total_frames and not everything:
                return
            self.end_scores = self._score_pairs([(self.first, self.last)])
        super()._flush(everything)

    def compute(self) -> MetricResult:
        if self.frames_seen < 1:
            raise ValueError(f"{self.name}: needs at least 1 frame")
        self.check_length()
        consecutive, ends = self.finish()
        verdict = is_static(consecutive, ends, self.frames_seen, *self.size)
        return MetricResult(float(verdict), [((i + 1) / self.fps, s) for i, s in enumerate(consecutive)])


def dynamic_degree_scores(frames: np.ndarray, fps: float, raft: torch.nn.Module, *, batch_size: int = 1) -> list[float]:
    """The top-5 % flow score of each consecutive pair of the frames dynamic degree samples."""
    state = DynamicDegree(raft_flow_fn(raft), fps, batch_size=batch_size, min_side=RAFT_MIN_SIDE)
    state.update(check_video(frames))
    return state.finish()[0]


def dynamic_degree(frames: np.ndarray, fps: float, raft: torch.nn.Module, *, batch_size: int = 1) -> bool:
    """VBench's verdict: does the clip move?"""
    state = DynamicDegree(raft_flow_fn(raft), fps, batch_size=batch_size, min_side=RAFT_MIN_SIDE,
                          total_frames=len(frames))  # known length: the flows stop once the verdict is settled
    return state.score(frames).value == 1.0


def static_filter_scores(frames: np.ndarray, raft: torch.nn.Module, *, batch_size: int = 1) -> tuple[list[float], list[float]]:
    """(the top-2 % score of each consecutive pair, of (first, last) and (last, first))."""
    state = StaticFilter(raft_flow_fn(raft), 1.0, batch_size=batch_size, min_side=RAFT_MIN_SIDE)
    state.update(check_video(frames))
    return state.finish()


def static_filter(frames: np.ndarray, raft: torch.nn.Module, *, batch_size: int = 1) -> bool:
    """VBench's static filter: is the clip static (and so scored for temporal flickering)?"""
    state = StaticFilter(raft_flow_fn(raft), 1.0, batch_size=batch_size, min_side=RAFT_MIN_SIDE,
                         total_frames=len(frames))  # known length: the flows stop once the verdict is settled
    return state.score(frames).value == 1.0


# ---------------------------------------------------------------- motion smoothness


def amt_midpoint_fn(amt: torch.nn.Module, *, device: str = "cpu") -> MidpointFn:
    """AMT-S at t = 0.5 on inputs replicate-padded to multiples of 16, cropped back."""
    from metrics.raft import pad_to_multiple

    def midpoints(first: Tensor, second: Tensor) -> Tensor:
        height, width = first.shape[-2:]
        a, b = pad_to_multiple(first, 16), pad_to_multiple(second, 16)
        top, left = (a.shape[-2] - height) // 2, (a.shape[-1] - width) // 2
        embt = torch.full((len(a), 1, 1, 1), 0.5)
        with torch.inference_mode():
            out = amt(a.to(device), b.to(device), embt.to(device)).float().cpu()
        return out[..., top:top + height, left:left + width]

    return midpoints


def to_uint8_truncated(frames: Tensor) -> np.ndarray:
    """float 0..1 (N, 3, H, W) -> uint8 (N, H, W, 3) by ``(x * 255).clip(0, 255)`` and truncation, as VBench."""
    scaled = (frames * 255.0).permute(0, 2, 3, 1).numpy()
    return np.clip(scaled, 0, 255).astype(np.uint8)


class MotionSmoothness(StreamingMetric):
    """Each odd frame against the midpoint interpolated from its even neighbours."""

    name = "motion_smoothness"
    higher_is_better = True
    min_frames = 3

    def __init__(self, midpoint: MidpointFn, fps: float, *, batch_size: int = 2, version: str = "",
                 extractor: str = "", min_side: int = 0) -> None:
        self.midpoint, self.batch_size, self.min_side = midpoint, batch_size, min_side
        self.version, self.extractor = version, extractor
        super().__init__(fps)

    def reset(self) -> None:
        self.frames_seen = 0
        self.differences: list[float] = []
        self._even: np.ndarray | None = None
        self._odd: np.ndarray | None = None
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def _flush(self, everything: bool = False) -> None:
        while len(self._pending) >= self.batch_size or (everything and self._pending):
            batch, self._pending = self._pending[:self.batch_size], self._pending[self.batch_size:]
            first = torch.from_numpy(np.stack([a for a, _, _ in batch])).permute(0, 3, 1, 2) / 255.0
            second = torch.from_numpy(np.stack([b for _, b, _ in batch])).permute(0, 3, 1, 2) / 255.0
            predicted = to_uint8_truncated(self.midpoint(first, second))
            for guess, (_, _, real) in zip(predicted, batch):
                self.differences.append(float(np.mean(cv2.absdiff(real, guess))))

    def update(self, chunk: np.ndarray) -> None:
        chunk = check_video(chunk, name=f"{self.name} chunk")
        if self.frames_seen == 0:
            check_side(self.name, chunk.shape[1:3], self.min_side, 16)
        for index in range(len(chunk)):
            frame = chunk[index].copy()  # kept past this call: never a view into the caller's chunk
            if (self.frames_seen + index) % 2:
                self._odd = frame
                continue
            if self._even is not None and self._odd is not None:
                self._pending.append((self._even, frame, self._odd))
            self._even, self._odd = frame, None
        self.frames_seen += len(chunk)
        self._flush()

    def compute(self) -> MetricResult:
        if self.frames_seen < self.min_frames:
            raise ValueError(f"{self.name}: needs at least {self.min_frames} frames, got {self.frames_seen}")
        self._flush(everything=True)
        mean_difference = float(np.mean(np.array(self.differences)))
        series = [((2 * i + 1) / self.fps, (255.0 - d) / 255.0) for i, d in enumerate(self.differences)]
        return MetricResult((255.0 - mean_difference) / 255.0, series)


def motion_smoothness(frames: np.ndarray, amt: torch.nn.Module, *, batch_size: int = 1) -> float:
    """VBench's motion smoothness of one clip (uint8 (T, H, W, 3), T >= 3, native size)."""
    return MotionSmoothness(amt_midpoint_fn(amt), 1.0, batch_size=batch_size, min_side=AMT_MIN_SIDE).score(frames).value


# ---------------------------------------------------------------- per-frame quality: imaging, aesthetic


class PerFrameQuality(StreamingMetric):
    """A mean of one score per frame, kept as float32 like VBench's tensors, ``scale`` applied to the mean."""

    min_frames = 1

    def __init__(self, score_frames: Callable[[np.ndarray], Tensor], fps: float, *, name: str, version: str,
                 extractor: str, combine: str) -> None:
        self.score_frames, self.combine = score_frames, combine
        self.name, self.version, self.extractor = name, version, extractor
        self.higher_is_better = True
        super().__init__(fps)

    def reset(self) -> None:
        self.frames_seen = 0
        self._scores: list[Tensor] = []

    def update(self, chunk: np.ndarray) -> None:
        chunk = check_video(chunk, name=f"{self.name} chunk")
        self._scores.append(self.score_frames(chunk).float().reshape(-1).cpu())
        self.frames_seen += len(chunk)

    def merge(self, following: StreamingMetric) -> None:
        if not isinstance(following, PerFrameQuality):
            raise TypeError(f"{self.name}: cannot merge a {type(following).__name__}")
        self._scores.extend(following._scores)
        self.frames_seen += following.frames_seen

    def compute(self) -> MetricResult:
        if self.frames_seen < 1:
            raise ValueError(f"{self.name}: needs at least 1 frame")
        scores = torch.cat(self._scores)
        if self.combine == "musiq":  # Python float sum of per-frame scores, / frames, / 100
            value = mean_of([float(s) for s in scores]) / 100.0
            series = [(i / self.fps, float(s) / 100.0) for i, s in enumerate(scores)]
        else:  # "aesthetic": float32 torch mean of score / 10
            value = float(torch.mean(scores / 10, dim=0, keepdim=True).item())
            series = [(i / self.fps, float(s) / 10.0) for i, s in enumerate(scores)]
        return MetricResult(value, series)


def musiq_scores(musiq: torch.nn.Module, *, mode: str = "longer", device: str = "cpu") -> Callable[[np.ndarray], Tensor]:
    """MUSIQ's score (0..100) of each frame, one frame at a time as VBench runs it."""

    def scores(frames: np.ndarray) -> Tensor:
        out = []
        for frame in frames:
            with torch.inference_mode():
                out.append(musiq(musiq_input(frame[None], mode).to(device)).float().reshape(-1).cpu())
        return torch.cat(out)

    return scores


def aesthetic_scores(clip_l14: torch.nn.Module, head: torch.nn.Module, *, batch_size: int = 32,
                     device: str = "cpu") -> Callable[[np.ndarray], Tensor]:
    """The LAION head's score of each frame's normalised CLIP ViT-L/14 feature."""
    features = clip_features(clip_l14, batch_size=batch_size, device=device)

    def scores(frames: np.ndarray) -> Tensor:
        with torch.inference_mode():
            normalised = F.normalize(features(frames).to(torch.float32), dim=-1, p=2)
            return head(normalised.to(device)).squeeze(dim=-1).float().cpu()

    return scores


def imaging_quality(frames: np.ndarray, musiq: torch.nn.Module, *, mode: str = "longer") -> float:
    """VBench's imaging quality of one clip: mean MUSIQ score / 100."""
    return PerFrameQuality(musiq_scores(musiq, mode=mode), 1.0, name="imaging_quality", version="", extractor="",
                           combine="musiq").score(frames).value


def aesthetic_quality(frames: np.ndarray, clip_l14: torch.nn.Module, head: torch.nn.Module) -> float:
    """VBench's aesthetic quality of one clip: mean LAION score / 10."""
    return PerFrameQuality(aesthetic_scores(clip_l14, head), 1.0, name="aesthetic_quality", version="", extractor="",
                           combine="aesthetic").score(frames).value
