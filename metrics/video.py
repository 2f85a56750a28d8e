"""Input checks shared by every metric: all of them take uint8 RGB videos (T, H, W, 3)."""

from __future__ import annotations

import cv2
import numpy as np


def check_video(frames: object, *, min_frames: int = 1, name: str = "frames") -> np.ndarray:
    """Return ``frames`` as a uint8 (T, H, W, 3) array or raise ValueError saying what is wrong."""
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"{name}: expected a numpy uint8 array (T, H, W, 3), got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(
            f"{name}: expected dtype uint8 (0-255), got {frames.dtype}; "
            "convert with (x * 255).round().clip(0, 255).astype(np.uint8) if your frames are floats in [0, 1]"
        )
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (T, H, W, 3), got {tuple(frames.shape)}")
    if frames.shape[1] == 0 or frames.shape[2] == 0:
        raise ValueError(f"{name}: frames are empty (H x W = {frames.shape[1]} x {frames.shape[2]})")
    if frames.shape[0] < min_frames:
        raise ValueError(f"{name}: needs at least {min_frames} frames, got {frames.shape[0]}")
    return frames


def segment_bounds(num_frames: int, segment_frames: int) -> list[tuple[int, int]]:
    """Non-overlapping [start, end) windows of ``segment_frames``; the last is extended backwards.

    A tail shorter than a full window is scored as the last full-length window ending at the
    final frame (VBench-Long's convention), so every segment has the same length.
    """
    if segment_frames < 1:
        raise ValueError(f"segment_frames must be >= 1, got {segment_frames}")
    if num_frames <= segment_frames:
        return [(0, num_frames)]
    bounds = [(start, start + segment_frames) for start in range(0, num_frames - segment_frames + 1, segment_frames)]
    if bounds[-1][1] < num_frames:
        bounds.append((num_frames - segment_frames, num_frames))
    return bounds


def fit_longer_side(frames: np.ndarray, side: int | None) -> np.ndarray:
    """uint8 (T, H, W, 3) frames area-resized so their longer side is ``side`` (never enlarged; None
    or a larger side keeps them as they are)."""
    height, width = frames.shape[1:3]
    if not side or max(height, width) <= side:
        return frames
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack([cv2.resize(frame, size, interpolation=cv2.INTER_AREA) for frame in frames])
