"""Drift over time: how a per-video metric changes across a long clip.

A clip is cut into non-overlapping windows of ``window_seconds`` (the last one extended backwards
to full length, as VBench-Long does); the metric is computed on each window, and the drift is the
least-squares slope of the window values against the windows' centre times, in metric units per
second. A stable generator has slope ~0; the sign says which way the metric moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from metrics.video import check_video, segment_bounds

VERSION = "drift/1 (least-squares slope per second of window values vs window centres; last window extended backwards)"


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
    if fps <= 0 or window_seconds <= 0:
        raise ValueError(f"fps and window_seconds must be positive, got fps={fps}, window_seconds={window_seconds}")
    length = max(min_frames, int(round(window_seconds * fps)))
    return [Window(a, b, (a + b - 1) / 2 / fps, float(metric(frames[a:b]))) for a, b in segment_bounds(frames.shape[0], length)]


def drift_slope(windows: list[Window]) -> float:
    """Least-squares slope of the window values against their centre times (units per second)."""
    if len(windows) < 2:
        raise ValueError(f"drift needs at least 2 windows, got {len(windows)}: the clip is no longer than one window "
                         "(use a longer clip or a shorter window_seconds)")
    t = np.array([w.centre_seconds for w in windows])
    v = np.array([w.value for w in windows])
    t_centred = t - t.mean()
    return float((t_centred * (v - v.mean())).sum() / (t_centred ** 2).sum())
