"""VBench temporal flickering.

Per video: the mean absolute difference between consecutive frames, taken over every pixel and
channel on the 0-255 scale, averaged over the T-1 frame pairs; the score is
``(255 - mean) / 255``, so 1.0 is a perfectly still video. No static-video filter is applied
here (VBench applies one with RAFT before scoring): callers report the raw score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metrics.video import check_video, segment_bounds

VERSION = "vbench-temporal-flickering/1 (raw, no static filter)"
HIGHER_IS_BETTER = True


def mean_abs_frame_difference(frames: np.ndarray) -> np.ndarray:
    """Per consecutive pair (T-1 values): mean |frame[t+1] - frame[t]| over H x W x 3, 0-255 scale."""
    frames = check_video(frames, min_frames=2)
    # int16 holds every difference of two uint8 values; float64 for the mean keeps it exact.
    diffs = np.abs(np.diff(frames.astype(np.int16), axis=0))
    return diffs.reshape(diffs.shape[0], -1).mean(axis=1, dtype=np.float64)


def temporal_flickering(frames: np.ndarray) -> float:
    """VBench temporal flickering score of one video, in [0, 1], higher is steadier."""
    return float((255.0 - mean_abs_frame_difference(frames).mean()) / 255.0)


@dataclass(frozen=True)
class SegmentScore:
    start_frame: int
    end_frame: int  # exclusive
    start_seconds: float
    value: float


def flicker_per_segment(frames: np.ndarray, fps: float, segment_seconds: float = 2.0) -> list[SegmentScore]:
    """Temporal flickering of each non-overlapping ``segment_seconds`` window (VBench-Long style).

    Windows are ``round(segment_seconds * fps)`` frames long; the last one is extended backwards
    to full length. The mean of the values is VBench-Long's long-video score.
    """
    frames = check_video(frames, min_frames=2)
    if fps <= 0 or segment_seconds <= 0:
        raise ValueError(f"fps and segment_seconds must be positive, got fps={fps}, segment_seconds={segment_seconds}")
    segment_frames = max(2, int(round(segment_seconds * fps)))
    return [
        SegmentScore(start, end, start / fps, temporal_flickering(frames[start:end]))
        for start, end in segment_bounds(frames.shape[0], segment_frames)
    ]
