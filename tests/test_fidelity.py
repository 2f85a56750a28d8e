"""Continuation fidelity (PSNR, SSIM per generated frame) against closed forms."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from metrics import fidelity


def test_psnr_per_frame_is_the_definition_and_skips_given_frames():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    video = truth.copy()
    video[2] = np.clip(truth[2].astype(int) + 10, 0, 255)
    values = fidelity.psnr_per_frame(video, truth, given=1)
    assert values.shape == (3,)  # frame 0 was given
    mse = ((video[2].astype(float) - truth[2]) ** 2).mean()
    assert values[1] == pytest.approx(10 * math.log10(255 ** 2 / mse))
    assert values[0] == fidelity.MAX_PSNR and values[2] == fidelity.MAX_PSNR  # identical frames


def test_ssim_of_constant_frames_is_the_luminance_term():
    """Constant images: every window has the same means and zero variance, so SSIM reduces to
    (2 a b + C1) / (a^2 + b^2 + C1) with C1 = (0.01)^2 on data in [0, 1]."""
    a, b = 100, 140
    video = np.full((2, 16, 16, 3), a, np.uint8)
    truth = np.full((2, 16, 16, 3), b, np.uint8)
    x, y, c1 = a / 255, b / 255, 0.01 ** 2
    assert fidelity.ssim_per_frame(video, truth) == pytest.approx([(2 * x * y + c1) / (x * x + y * y + c1)] * 2, rel=1e-6)
    assert fidelity.ssim_per_frame(truth, truth) == pytest.approx([1.0, 1.0])


def test_mismatched_ground_truth_is_an_error():
    with pytest.raises(ValueError, match="does not cover"):
        fidelity.psnr_per_frame(np.zeros((4, 8, 8, 3), np.uint8), np.zeros((3, 8, 8, 3), np.uint8))


def test_continuation_metrics_in_a_suite(tmp_path, capsys):
    from tests.test_runner import vbf, write_suite

    suite = write_suite(tmp_path, """\
        name: fidelity
        data: {type: shapes, size: 32, fps: 4}
        clip_seconds: [2]
        tasks: [i2v]
        prompts: {source: data, split: val, count: 1}
        models: [{name: real, type: dataset}]
        metrics: [{name: continuation_psnr}, {name: continuation_ssim}]
        """)
    assert vbf("run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "f", "--quiet") == 0
    (record,) = [json.loads(line) for line in (tmp_path / "runs" / "f" / "samples.jsonl").read_text().splitlines()]
    # the real clip is its own continuation: 8 generated frames (frame 0 was given), all identical to the truth
    assert len(record["series"]["continuation_psnr"]) == 8 and record["series"]["continuation_psnr"][0][0] == 0.25
    assert record["metrics"]["continuation_ssim"] == pytest.approx(1.0)
    assert record["metrics"]["continuation_psnr"] == fidelity.MAX_PSNR


@pytest.mark.parametrize("given", [0, 1, 3])
@pytest.mark.parametrize("truth_chunk", [None, 1, 4])
def test_streamed_fidelity_equals_the_per_frame_functions(given, truth_chunk):
    """Clip and ground truth in unrelated chunkings (the truth whole, or in chunks of 1 or 4) give
    the functional per-frame values, frame for frame, placed at frame / fps."""
    from metrics.streaming import ClipContext

    rng = np.random.default_rng(given)
    video = rng.integers(0, 256, (11, 24, 24, 3), dtype=np.uint8)
    truth = np.clip(video.astype(np.int16) + rng.integers(-30, 31, video.shape), 0, 255).astype(np.uint8)
    chunks = None if truth_chunk is None else (lambda: (truth[i:i + truth_chunk] for i in range(0, 11, truth_chunk)))
    ctx = ClipContext(fps=4, ground_truth=truth if chunks is None else None, ground_truth_chunks=chunks,
                      num_condition_frames=given)
    for metric, per_frame in ((fidelity.ContinuationPsnrMetric(), fidelity.psnr_per_frame),
                              (fidelity.ContinuationSsimMetric(), fidelity.ssim_per_frame)):
        stream = metric.streaming(ctx)
        for start, size in ((0, 2), (2, 1), (3, 5), (8, 3)):
            stream.update(video[start:start + size])
        result, expected = stream.compute(), per_frame(video, truth, given)
        np.testing.assert_allclose([v for _, v in result.series], expected, rtol=1e-12)
        assert [t for t, _ in result.series] == [(given + i) / 4 for i in range(11 - given)]
        assert result.value == pytest.approx(expected.mean(), rel=1e-12)


def test_ground_truth_shorter_than_the_clip_is_an_error():
    from metrics.streaming import ClipContext

    video = np.zeros((6, 8, 8, 3), np.uint8)
    stream = fidelity.ContinuationPsnrMetric().streaming(ClipContext(fps=4, ground_truth_chunks=lambda: iter([video[:4]])))
    with pytest.raises(ValueError, match="ground truth has 4 frames.*does not cover"):
        stream.score(video)
