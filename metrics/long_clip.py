"""Long-clip measures: how far a clip's end has drifted from its start, and how fast identity fades.

**Start-end contrast** (FramePack's drift measure): ``|M(first 15 %) - M(last 15 %)|`` for a
per-frame or per-pair metric M, from the base metric's own per-point values in the same pass over
the clip. A base's *points* are its per-frame or per-pair values, in order; with ``n`` of them,
each end window holds ``k = max(1, floor(fraction * n + 1/2))`` points (rounded half up, not
Python's half-to-even ``round``: 10 points give 2, 30 give 5, 3 give 1), and at most ``n // 2``
so the two windows never overlap. M(window) is the mean of the window's point values. A clip
needs at least 2 points. Which points each base has:

=============================  =====================================================================
base                           points (from)
=============================  =====================================================================
flicker                        one per frame pair, ``(255 - mean |diff|) / 255`` (its kept pair values
                               via ``window``: flicker's own series is per 2 s segment, not used);
                               the mean over a window is the flicker of that window's frames
warping_error                  one per frame pair, E_pair (its kept pair values via ``window``)
clipsim                        one per frame, image-prompt cosine (its kept frame values via ``window``)
subject_consistency,           one per frame 1..T-1, VBench's term (cos to the previous frame + cos
background_consistency         to the first) / 2 (the base's series)
motion_smoothness              one per odd frame, (255 - |frame - midpoint of its even neighbours|) / 255
                               (the base's series)
=============================  =====================================================================

A pair or point is placed at the time of its first frame (pair ``i`` at ``i / fps``) for the
kept-value bases, and at the base's series time otherwise; the contrast's series is the two
windows: (start seconds of the window, its mean).

**Identity decay**: the mean cosine between normalised frame features ``d`` frames apart, for
``d`` in the offsets (default 2, 5, 10, 20, 50, 100; those shorter than the clip), on the features
subject consistency uses (offline: the shipped domain CLIP's image tower; standard: DINO ViT-B/16
from its official file). The value is the cosine at the largest offset that fits (higher: the
identity is kept); the series is the curve, (d / fps seconds, cosine).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from metrics import vbench
from metrics.clipsim import ClipsimMetric
from metrics.flicker import FlickerMetric
from metrics.streaming import (ClipContext, DerivedState, Metric, MetricArgs, MetricResult, PairwiseMetric,
                               StreamingMetric, ValueSequenceMetric, derived_metric)
from metrics.vbench_metrics import (AestheticQualityMetric, BackgroundConsistencyMetric, ImagingQualityMetric,
                                    MotionSmoothnessMetric, SubjectConsistencyMetric, VbenchArgs)
from metrics.warping import WarpingErrorMetric

CONTRAST_VERSION = "start-end-contrast/1 (|mean of the first k points - mean of the last k|, k = max(1, fraction * n " \
                   "rounded half up) of n per-frame or per-pair points, at most n // 2)"
DEFAULT_FRACTION = 0.15
IDENTITY_VERSION = "identity-decay/1 (mean cosine of normalised frame features d frames apart; value at the largest " \
                   "offset shorter than the clip)"
DEFAULT_OFFSETS = (2, 5, 10, 20, 50, 100)


# ---------------------------------------------------------------- start-end contrast


def end_window_points(n: int, fraction: float = DEFAULT_FRACTION) -> int:
    """Points in each end window of ``n`` points: ``max(1, floor(fraction * n + 1/2))`` (half up),
    at most ``n // 2``."""
    if not 0 < fraction <= 0.5:
        raise ValueError(f"fraction must be in (0, 0.5], got {fraction}")
    # the epsilon keeps an exact half (0.15 * 30 = 4.5) from falling below .5 in floating point
    return min(max(1, math.floor(fraction * n + 0.5 + 1e-9)), n // 2)


class StartEndContrast(DerivedState):
    """``|M(first k points) - M(last k points)|`` of a base state's per-frame or per-pair points
    (see the module docstring). ``update`` and ``merge`` go to the base state, so any chunking gives
    what the whole clip gives whenever the base's does."""

    higher_is_better = False
    min_frames = 2

    def __init__(self, base: StreamingMetric, fraction: float = DEFAULT_FRACTION) -> None:
        end_window_points(2, fraction)  # checks the fraction
        self.fraction = fraction
        self.name = f"{base.name}_start_end_contrast"
        self.extractor = base.extractor
        self.version = f"{CONTRAST_VERSION}; fraction {fraction:g}; of {base.version}"
        super().__init__(base)

    def windows(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """(start seconds, mean) of the first and of the last window."""
        if isinstance(self.base, ValueSequenceMetric):
            # the kept values: the base's window(start, end) over frames is the mean of the points in it
            n = len(self.base.values)
            span = 1 if isinstance(self.base, PairwiseMetric) else 0  # k pairs cover k + 1 frames
            k = self._points(n)
            return ((0.0, self.base.window(0, k + span)),
                    ((n - k) / self.fps, self.base.window(n - k, n + span)))
        series = self.base.compute().series
        k = self._points(len(series))
        first, last = series[:k], series[-k:]
        return ((first[0][0], float(np.mean([v for _, v in first]))),
                (last[0][0], float(np.mean([v for _, v in last]))))

    def _points(self, n: int) -> int:
        if n < 2:
            raise ValueError(f"{self.name}: needs at least 2 per-frame or per-pair points of {self.base.name}, got "
                             f"{n} (a longer clip)")
        return end_window_points(n, self.fraction)

    def compute(self) -> MetricResult:
        first, last = self.windows()
        return MetricResult(abs(first[1] - last[1]), [first, last])


class ContrastArgs(MetricArgs):
    fraction: float = Field(DEFAULT_FRACTION, gt=0, le=0.5,
                            description="each end window's share of the base's points (FramePack: 0.15)")
    base_args: dict[str, Any] = Field(default_factory=dict, description="the base metric's own options, e.g. "
                                      "{extractor: standard, weights: ...} for subject consistency on DINO")


def contrast_metric(base: type[Metric], summary: str, *, min_frames: int | None = None) -> type[Metric]:
    """``BASE_start_end_contrast``: ``|M(first fraction) - M(last fraction)|`` of ``base`` at its
    default options (a suite's args for the base are not forwarded: only ``fraction`` is taken),
    from the base's per-frame or per-pair points, in the same pass over the clip. Lower is better:
    a clip that does not drift has contrast 0. ``min_frames``: the fewest frames that give the base
    2 points (default: one more than the base needs)."""
    return derived_metric(base, suffix="_start_end_contrast", summary=summary, args=ContrastArgs,
                          class_suffix="Contrast", higher_is_better=False,
                          min_frames=min_frames if min_frames is not None else base.min_frames + 1,
                          describe=lambda b, a: f"{CONTRAST_VERSION}; fraction {a.fraction:g}; of {b.version}",
                          state=lambda b, a: StartEndContrast(b, a.fraction))


_NOTE = "; the base's options under base_args"
FlickerContrastMetric = contrast_metric(
    FlickerMetric, "|flicker of the first 15% of frame pairs - of the last 15%| (0: flicker does not change)" + _NOTE)
WarpingErrorContrastMetric = contrast_metric(
    WarpingErrorMetric, "|mean warping error of the first 15% of frame pairs - of the last 15%|" + _NOTE)
ClipsimContrastMetric = contrast_metric(
    ClipsimMetric, "|mean CLIPSIM of the first 15% of frames - of the last 15%| (0: as close to the prompt at the "
    "end as at the start)" + _NOTE, min_frames=2)
SubjectConsistencyContrastMetric = contrast_metric(
    SubjectConsistencyMetric, "|mean subject-consistency term of the first 15% of frames - of the last 15%|" + _NOTE)
BackgroundConsistencyContrastMetric = contrast_metric(
    BackgroundConsistencyMetric, "|mean background-consistency term of the first 15% of frames - of the last 15%|"
    + _NOTE)
MotionSmoothnessContrastMetric = contrast_metric(
    MotionSmoothnessMetric, "|mean motion smoothness of the first 15% of odd frames - of the last 15%|" + _NOTE,
    min_frames=5)
ImagingQualityContrastMetric = contrast_metric(
    ImagingQualityMetric, "|mean imaging quality (MUSIQ) of the first 15% of frames - of the last 15%| (FramePack's "
    "quality drift; official weights)" + _NOTE, min_frames=2)
AestheticQualityContrastMetric = contrast_metric(
    AestheticQualityMetric, "|mean aesthetic quality (LAION) of the first 15% of frames - of the last 15%| "
    "(official weights)" + _NOTE, min_frames=2)

CONTRAST_METRICS = (FlickerContrastMetric, WarpingErrorContrastMetric, ClipsimContrastMetric,
                    SubjectConsistencyContrastMetric, BackgroundConsistencyContrastMetric,
                    MotionSmoothnessContrastMetric, ImagingQualityContrastMetric, AestheticQualityContrastMetric)


# ---------------------------------------------------------------- identity decay


class IdentityDecay(DerivedState):
    """The identity-decay curve of one clip from a :class:`metrics.vbench.FeatureConsistency` state
    (which keeps each frame's normalised feature); ``offsets`` ascending."""

    name = "identity_decay"
    higher_is_better = True
    min_frames = 3

    def __init__(self, state: vbench.FeatureConsistency, offsets: Sequence[int], *, version: str,
                 extractor: str) -> None:
        self.offsets = sorted(set(offsets))
        if not self.offsets or self.offsets[0] < 1:
            raise ValueError(f"{self.name}: offsets must be positive frame counts, got {list(offsets)}")
        self.version, self.extractor = version, extractor
        super().__init__(state)

    def curve(self) -> list[tuple[int, float]]:
        """(offset, mean cosine) for each offset shorter than the clip, ascending."""
        if self.base.frames_seen <= self.offsets[0]:
            raise ValueError(f"{self.name}: the shortest offset, {self.offsets[0]} frames, needs at least "
                             f"{self.offsets[0] + 1} frames, got {self.base.frames_seen}")
        return self.base.identity_decay(self.offsets)

    def compute(self) -> MetricResult:
        curve = self.curve()
        return MetricResult(curve[-1][1], [(d / self.fps, cosine) for d, cosine in curve])


class IdentityDecayArgs(VbenchArgs):
    offsets: list[int] = Field(default_factory=lambda: list(DEFAULT_OFFSETS), min_length=1,
                               description="frame distances; those shorter than the clip are used")
    protocol: Literal["vbench"] = Field("vbench", description="the whole clip only (VBench-Long's 2 s clips would "
                                        "cut the longer offsets)")

    @field_validator("offsets")
    @classmethod
    def _positive_ascending(cls, offsets: list[int]) -> list[int]:
        if any(d < 1 for d in offsets):
            raise ValueError(f"offsets must be positive frame counts, got {offsets}")
        return sorted(set(offsets))

    @field_validator("protocol", mode="before")
    @classmethod
    def _whole_clip(cls, protocol: object) -> object:
        if protocol == "vbench-long":
            raise ValueError("identity_decay compares frames up to the largest offset apart across the whole clip; "
                             "VBench-Long's 2 s clips would cut those pairs: leave protocol out")
        return protocol


class IdentityDecayMetric(Metric):
    name = "identity_decay"
    summary = ("identity decay: cosine between frame features d frames apart (d = 2, 5, 10, 20, 50, 100 that fit), "
               "value at the largest d; subject consistency's features (offline: the domain CLIP; standard: DINO)")
    higher_is_better = True
    min_frames = 3
    motion_counterpart = "motion_magnitude"  # a still clip keeps its identity for free
    Args = IdentityDecayArgs

    @staticmethod
    def feature_args(args: IdentityDecayArgs) -> VbenchArgs:
        """Subject consistency's args for the same extractor (these args minus the offsets)."""
        return VbenchArgs(**args.model_dump(exclude={"offsets"}))

    @classmethod
    def missing_files(cls, args: IdentityDecayArgs) -> list[str]:
        return SubjectConsistencyMetric.missing_files(cls.feature_args(args))

    def __init__(self, args: IdentityDecayArgs | None = None) -> None:
        super().__init__(args)
        # subject consistency's extractor setup, loaded once
        self.features = SubjectConsistencyMetric(self.feature_args(self.args))
        self.extractor = self.features.extractor
        self.version = (f"{IDENTITY_VERSION}; offsets {','.join(map(str, self.args.offsets))}; "
                        f"features {self.extractor} ({self.features.describe()})")

    def streaming(self, ctx: ClipContext) -> IdentityDecay:
        return IdentityDecay(self.features.clip_state(ctx.fps, ctx.num_frames, ctx.shared), self.args.offsets, version=self.version,
                             extractor=self.extractor)


LONG_CLIP_METRICS = (*CONTRAST_METRICS, IdentityDecayMetric)
