"""Drift over time: how a per-video metric changes across a long clip.

A clip is cut into consecutive, non-overlapping windows of ``window_seconds``; a tail shorter than
a window joins the last one (extending it backwards instead, as VBench-Long's segments do, would
add a near-copy of the last window and double the weight of the clip's end). The metric is
computed on each window, and the drift is the least-squares slope of the window values against
the windows' centre times, in metric units per second. A stable generator has slope ~0; the
sign says which way the metric moves. Clips need at least two whole windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from pydantic import Field

from metrics.streaming import DerivedState, Metric, MetricArgs, MetricResult, ValueSequenceMetric, derived_metric
from metrics.video import check_video

VERSION = "drift/2 (least-squares slope per second of window values vs window centres; a short tail joins the last window)"


@dataclass(frozen=True)
class Window:
    start_frame: int
    end_frame: int
    centre_seconds: float
    value: float


def per_window(frames: np.ndarray, fps: float, window_seconds: float,
               metric: Callable[[np.ndarray], float], min_frames: int = 2) -> list[Window]:
    """``metric`` on each window of ``window_seconds`` (at least ``min_frames`` frames long)."""
    frames = check_video(frames, min_frames=min_frames)
    length = window_length(window_seconds, fps, min_frames)
    return [Window(a, b, (a + b - 1) / 2 / fps, float(metric(frames[a:b]))) for a, b in window_bounds(frames.shape[0], length)]


def window_length(seconds: float, fps: float, at_least: int) -> int:
    """Frames in a window of ``seconds`` at ``fps`` (rounded), and at least ``at_least``."""
    if fps <= 0 or seconds <= 0:
        raise ValueError(f"fps and window_seconds must be positive, got fps={fps}, window_seconds={seconds}")
    return max(at_least, int(round(seconds * fps)))


def window_bounds(num_frames: int, length: int) -> list[tuple[int, int]]:
    """[start, end) of consecutive windows of ``length`` frames; a shorter tail joins the last one."""
    starts = list(range(0, num_frames - length + 1, length)) or [0]
    return [(a, starts[i + 1] if i + 1 < len(starts) else num_frames) for i, a in enumerate(starts)]


def drift_slope(windows: list[Window]) -> float:
    """Least-squares slope of the window values against their centre times (units per second)."""
    if len(windows) < 2:
        raise ValueError(f"drift needs at least 2 windows, got {len(windows)}: the clip is no longer than one window "
                         "(use a longer clip or a shorter window_seconds)")
    t = np.array([w.centre_seconds for w in windows])
    v = np.array([w.value for w in windows])
    t_centred = t - t.mean()
    return float((t_centred * (v - v.mean())).sum() / (t_centred ** 2).sum())


class Drift(DerivedState):
    """The drift of a per-frame or per-pair metric, streamed: the base metric keeps its values, and
    each window's value comes from the values inside it (no second pass over the frames)."""

    min_frames = 3

    def __init__(self, base: ValueSequenceMetric, window_seconds: float = 5.0) -> None:
        self.name = f"{base.name}_drift"
        self.higher_is_better = base.higher_is_better
        self.extractor = base.extractor
        self.version = f"{VERSION}; of {base.version}; windows {window_seconds:g}s"
        self.window_frames = window_length(window_seconds, base.fps, self.min_frames)
        super().__init__(base)

    def windows(self) -> list[Window]:
        return [Window(a, b, (a + b - 1) / 2 / self.fps, self.base.window(a, b))
                for a, b in window_bounds(self.base.frames_seen, self.window_frames)]

    def compute(self) -> MetricResult:
        windows = self.windows()
        return MetricResult(drift_slope(windows), [(w.centre_seconds, w.value) for w in windows])


class DriftArgs(MetricArgs):
    window_seconds: float = Field(5.0, gt=0, description="window length (VBench-Long uses 2 s; 5 s for 30 s clips)")


def drift_metric(base: type[Metric], summary: str) -> type[Metric]:
    """``BASE_drift``: the slope of ``base`` (at its default options) over windows, from the base's own
    per-frame or per-pair values, in the same pass over the clip."""
    return derived_metric(base, suffix="_drift", summary=summary, args=DriftArgs, class_suffix="Drift",
                          higher_is_better=base.higher_is_better,
                          describe=lambda b, a: f"{VERSION}; of {b.version}; windows {a.window_seconds:g}s",
                          state=lambda b, a: Drift(b, a.window_seconds))
