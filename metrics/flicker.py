"""VBench temporal flickering.

Per video: the mean absolute difference between consecutive frames, taken over every pixel and
channel on the 0-255 scale, averaged over the T-1 frame pairs; the score is
``(255 - mean) / 255``, so 1.0 is a perfectly still video. No static-video filter is applied
here (VBench applies one with RAFT before scoring): callers report the raw score.

:class:`TemporalFlickering` streams: it keeps one integer sum per frame pair, so a clip of any
length costs one frame of memory beyond the chunk being read; ``metrics.drift.Drift`` of it is
the slope of the score over windows of the same pairs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from metrics.drift import drift_metric, window_length
from metrics.streaming import ClipContext, Metric, MetricArgs, MetricResult, NotScored, PairwiseMetric, StreamingMetric
from metrics.video import check_video, segment_bounds

VERSION = "vbench-temporal-flickering/1 (raw, no static filter)"
HIGHER_IS_BETTER = True
EXTRACTOR = "none (pixel differences)"


@dataclass(frozen=True)
class SegmentScore:
    start_frame: int
    end_frame: int  # exclusive
    start_seconds: float
    value: float


def _score(pair_means: np.ndarray) -> float:
    return float((255.0 - pair_means.mean()) / 255.0)


class TemporalFlickering(PairwiseMetric):
    """Flicker of a clip, and of each ``segment_seconds`` segment (``round(segment_seconds * fps)``
    frames, the last extended backwards to full length) as its series. VBench-Long's own clips
    (``int(fps) * 2`` frames) are ``FlickerArgs(protocol="vbench-long")``."""

    name = "flicker"
    higher_is_better = HIGHER_IS_BETTER
    extractor = EXTRACTOR

    def __init__(self, fps: float = 1.0, segment_seconds: float = 2.0) -> None:
        self.segment_frames = window_length(segment_seconds, fps, 2)
        self.version = f"{VERSION}; segments {segment_seconds:g}s"
        super().__init__(fps)

    def pair_values(self, earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
        # OpenCV's L1 norm of two uint8 frames is the exact integer sum of |a - b| (12x numpy's
        # widening arithmetic on 1080p frames); one division per pair gives the mean
        sums = np.array([cv2.norm(np.ascontiguousarray(a), np.ascontiguousarray(b), cv2.NORM_L1)
                         for a, b in zip(earlier, later)], dtype=np.float64)
        return sums / earlier[0].size

    def window(self, start: int, end: int) -> float:
        return _score(self.values[start:end - 1])

    def segments(self) -> list[SegmentScore]:
        values = self.values
        return [SegmentScore(a, b, a / self.fps, _score(values[a:b - 1]))
                for a, b in segment_bounds(self.frames_seen, self.segment_frames)]

    def compute(self) -> MetricResult:
        return MetricResult(_score(self.values), [(s.start_seconds, s.value) for s in self.segments()])


def mean_abs_frame_difference(frames: np.ndarray) -> np.ndarray:
    """Per consecutive pair (T-1 values): mean |frame[t+1] - frame[t]| over H x W x 3, 0-255 scale."""
    frames = check_video(frames, min_frames=2)
    return TemporalFlickering().pair_values(frames[:-1], frames[1:])


def temporal_flickering(frames: np.ndarray) -> float:
    """VBench temporal flickering score of one video, in [0, 1], higher is steadier."""
    return TemporalFlickering().score(check_video(frames, min_frames=2)).value


def flicker_per_segment(frames: np.ndarray, fps: float, segment_seconds: float = 2.0) -> list[SegmentScore]:
    """Temporal flickering of each non-overlapping ``segment_seconds`` window.

    Windows are ``round(segment_seconds * fps)`` frames long; the last one is extended backwards
    to full length. At an integer fps and 2 s these are VBench-Long's clips, and the mean of the
    values its long-video score (without the static filter).
    """
    metric = TemporalFlickering(fps, segment_seconds)
    metric.update(check_video(frames, min_frames=2))
    return metric.segments()


class FlickerArgs(MetricArgs):
    segment_seconds: float = Field(2.0, gt=0, description="window of the over-time series (round(seconds * fps) frames)")
    static_filter: bool = Field(False, description="VBench's protocol: score only clips its static filter calls "
                                "static (the others are left out, with the reason); off: every clip, raw")
    static_filter_extractor: Literal["offline", "standard"] = Field(
        "offline", description="the filter's flow: OpenCV DIS (offline) or RAFT from raft-things.pth (standard)")
    static_filter_weights: str | None = Field(None, description="standard: the raft-things.pth file")
    protocol: Literal["vbench", "vbench-long"] = Field(
        "vbench", description="vbench: the whole clip; vbench-long: 2 s clips (int(fps)*2 frames, the last padded "
        "with earlier frames), the static filter applied to each, the mean over the clips it keeps (VBench-Long)")

    @model_validator(mode="after")
    def _options_that_apply(self) -> "FlickerArgs":
        """An option that would be ignored is a mistake in the suite, not something to drop quietly."""
        given = self.model_fields_set
        if not self.static_filter and given & {"static_filter_extractor", "static_filter_weights"}:
            raise ValueError("static_filter_extractor / static_filter_weights apply only with static_filter: true; "
                             "set static_filter: true or remove them")
        if self.protocol == "vbench-long" and "segment_seconds" in given:
            raise ValueError("segment_seconds does not apply under protocol: vbench-long (its clips are int(fps)*2 "
                             "frames); remove it, or use protocol: vbench")
        return self


class StaticFiltered(StreamingMetric):
    """Flicker of a clip that VBench's static filter calls static; a moving clip is not scored."""

    def __init__(self, flicker: TemporalFlickering, static: StreamingMetric, version: str) -> None:
        self.flicker, self.static = flicker, static
        self.name, self.higher_is_better, self.min_frames = flicker.name, flicker.higher_is_better, flicker.min_frames
        self.version, self.extractor = version, f"{EXTRACTOR}; static filter {static.extractor}"
        super().__init__(flicker.fps)

    def reset(self) -> None:
        self.flicker.reset()
        self.static.reset()

    def update(self, chunk: np.ndarray) -> None:
        self.flicker.update(chunk)
        self.static.update(chunk)

    def compute(self) -> MetricResult:
        result = self.flicker.compute()  # first: too few frames is an error, not an exclusion
        if self.static.compute().value != 1.0:
            raise NotScored("moving clip: VBench scores temporal flickering on static clips only "
                            "(its static filter found too many frame pairs with large flow, or too much flow "
                            "from the first frame to the last)")
        return result


class FlickerMetric(Metric):
    name = "flicker"
    summary = "VBench temporal flickering: (255 - mean |frame[t+1]-frame[t]|) / 255, higher is steadier"
    higher_is_better = HIGHER_IS_BETTER
    Args = FlickerArgs
    extractor = EXTRACTOR

    motion_counterpart = "motion_magnitude"

    @classmethod
    def missing_files(cls, args: FlickerArgs) -> list[str]:
        if not args.static_filter:
            return []
        from metrics.vbench_metrics import StaticFilterMetric

        return [message.replace("args.weights:", "args.static_filter_weights:")
                for message in StaticFilterMetric.missing_files(StaticFilterMetric.Args(
                    extractor=args.static_filter_extractor, weights=args.static_filter_weights))]

    def __init__(self, args: FlickerArgs | None = None) -> None:
        super().__init__(args)
        self.version = TemporalFlickering(segment_seconds=self.args.segment_seconds).version
        self.static_filter = None
        if self.args.static_filter:
            from metrics.vbench_metrics import StaticFilterMetric

            self.static_filter = StaticFilterMetric(StaticFilterMetric.Args(
                extractor=self.args.static_filter_extractor, weights=self.args.static_filter_weights))
            self.version = self.version.replace("raw, no static filter", "static clips only") + \
                f"; static filter: {self.static_filter.version}"
            self.extractor = f"{EXTRACTOR}; static filter {self.static_filter.extractor}"
        if self.args.protocol == "vbench-long":
            self.version += "; vbench-long (2 s clips, mean over the clips scored)"

    def streaming(self, ctx: ClipContext) -> StreamingMetric:
        if self.args.protocol == "vbench-long":
            from metrics.vbench_metrics import LongProtocol

            return LongProtocol(lambda frames: self.clip_state(ctx, frames), ctx.fps, name=self.name,
                                version=self.version, extractor=self.extractor, higher_is_better=self.higher_is_better,
                                total_frames=ctx.num_frames)
        return self.clip_state(ctx, ctx.num_frames)

    def clip_state(self, ctx: ClipContext, num_frames: int | None) -> StreamingMetric:
        """The state of one (2 s) clip of ``num_frames`` frames, when known."""
        flicker = TemporalFlickering(ctx.fps, self.args.segment_seconds)
        if self.static_filter is None:
            return flicker
        clip = dataclasses.replace(ctx, num_frames=num_frames)
        return StaticFiltered(flicker, self.static_filter.streaming(clip), self.version)


FlickerDriftMetric = drift_metric(FlickerMetric, "slope per second of flicker over windows (negative: the clip flickers more as it goes)")
