"""Drift over time: window values and their slope, against hand computations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metrics import drift
from metrics.flicker import temporal_flickering


def brightening_flicker_video(frames: int = 48, growth: float = 1.0) -> np.ndarray:
    """Alternating brightness whose amplitude grows linearly with time: flicker gets worse."""
    amplitude = growth * np.arange(frames)
    level = 100 + np.where(np.arange(frames) % 2 == 0, amplitude, -amplitude / 2)
    return np.clip(level, 0, 255).astype(np.uint8)[:, None, None, None].repeat(8, 1).repeat(8, 2).repeat(3, 3)


def test_slope_is_the_least_squares_slope_per_second():
    windows = [drift.Window(0, 8, t, 3.0 - 0.5 * t) for t in (0.875, 2.875, 4.875)]
    assert drift.drift_slope(windows) == pytest.approx(-0.5)
    noisy = [drift.Window(0, 1, t, v) for t, v in ((0.0, 1.0), (1.0, 3.0), (2.0, 2.0))]
    assert drift.drift_slope(noisy) == pytest.approx(np.polyfit([0, 1, 2], [1, 3, 2], 1)[0])
    with pytest.raises(ValueError, match="at least 2 windows"):
        drift.drift_slope(windows[:1])


def test_windows_tile_the_clip_and_a_short_tail_joins_the_last():
    video = brightening_flicker_video(frames=21)
    windows = drift.per_window(video, fps=4, window_seconds=2, metric=temporal_flickering)
    assert [(w.start_frame, w.end_frame) for w in windows] == [(0, 8), (8, 21)]
    assert windows[0].centre_seconds == pytest.approx(3.5 / 4) and windows[1].centre_seconds == pytest.approx(14 / 4)
    assert windows[1].value == pytest.approx(temporal_flickering(video[8:21]))
    # a 30 s clip at 8 fps (241 frames) in 5 s windows: six windows, the last one frame longer
    assert drift.window_bounds(241, 40)[-2:] == [(160, 200), (200, 241)]
    # a clip no longer than one window has no drift
    one = drift.per_window(video[:9], fps=4, window_seconds=2, metric=temporal_flickering)
    with pytest.raises(ValueError, match="at least 2 windows"):
        drift.drift_slope(one)


def test_growing_flicker_drifts_down_and_a_static_clip_does_not():
    growing = drift.per_window(brightening_flicker_video(), 8, 1.0, temporal_flickering)
    assert drift.drift_slope(growing) < -0.01
    static = drift.per_window(np.full((48, 8, 8, 3), 90, np.uint8), 8, 1.0, temporal_flickering)
    assert drift.drift_slope(static) == 0.0


def test_flicker_drift_in_a_suite(tmp_path, capsys):
    from tests.test_runner import vbf, write_suite

    suite = write_suite(tmp_path, """\
        name: drift
        data: {type: shapes, size: 32, fps: 4}
        clip_seconds: [6]
        prompts: {source: data, split: val, count: 2}
        models: [{name: real, type: dataset}]
        metrics: [{name: flicker_drift, args: {window_seconds: 2}}, {name: warping_error_drift, args: {window_seconds: 3}}]
        """)
    assert vbf("run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "d", "--quiet") == 0
    for line in (tmp_path / "runs" / "d" / "samples.jsonl").read_text().splitlines():
        record = json.loads(line)
        # 25 frames: windows of 8 (the last one 9 long) and of 12 (the last one 13 long)
        assert len(record["series"]["flicker_drift"]) == 3 and len(record["series"]["warping_error_drift"]) == 2
        times, values = zip(*record["series"]["flicker_drift"])
        assert record["metrics"]["flicker_drift"] == pytest.approx(np.polyfit(times, values, 1)[0])
