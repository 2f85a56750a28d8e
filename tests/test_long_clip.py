"""Long-clip measures: start-end contrast against hand computations from the base metrics' own
per-point values, and identity decay's curve."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import torch

from metrics import long_clip, vbench
from metrics.clipsim import clipsim_per_frame
from metrics.flicker import mean_abs_frame_difference
from metrics.streaming import ClipContext
from metrics.warping import warping_error_per_pair

FPS = 8
CTX = ClipContext(fps=FPS, prompt="a red square moving right")


def noisier_second_half(frames: int = 24, size: int = 16, seed: int = 0) -> np.ndarray:
    """Grey frames with a little noise, then much more: the end flickers more than the start."""
    rng = np.random.default_rng(seed)
    amplitude = np.where(np.arange(frames) < frames // 2, 3, 40)[:, None, None, None]
    noise = rng.integers(-1, 2, size=(frames, size, size, 3)) * amplitude
    return np.clip(120 + noise, 0, 255).astype(np.uint8)


def shapes_clip(frames: int, index: int = 0) -> np.ndarray:
    from vbench_flow.data.shapes import ShapesWorld

    return ShapesWorld("test", size=64, fps=FPS).clip(index, frames).frames


def random_chunks(clip: np.ndarray, seed: int) -> list[np.ndarray]:
    rng, chunks, at = np.random.default_rng(seed), [], 0
    while at < len(clip):
        size = int(rng.choice([1, 1, 2, 3, 5]))
        chunks.append(clip[at:at + size])
        at += size
    return chunks


@lru_cache(maxsize=None)
def metric(cls: type, **args):
    return cls(cls.Args(**args))


def ends(values: np.ndarray, k: int) -> tuple[float, float]:
    return float(np.mean(values[:k])), float(np.mean(values[-k:]))


# ---------------------------------------------------------------- start-end contrast


def test_end_windows_are_a_rounded_share_of_the_points():
    assert long_clip.end_window_points(10) == 2  # 1.5 rounds up
    assert long_clip.end_window_points(3) == 1   # 0.45 rounds to 0: at least 1
    assert long_clip.end_window_points(30) == 5  # 4.5 rounds half up (Python's round would give 4)
    assert long_clip.end_window_points(100) == 15 and long_clip.end_window_points(2) == 1
    assert long_clip.end_window_points(3, 0.5) == 1  # never overlapping
    for fraction in (0, 0.6):
        with pytest.raises(ValueError, match="fraction"):
            long_clip.end_window_points(10, fraction)


def test_flicker_contrast_is_the_difference_of_the_end_windows_per_pair_flicker():
    clip = noisier_second_half()
    result = metric(long_clip.FlickerContrastMetric).streaming(CTX).score(clip)
    per_pair = (255.0 - mean_abs_frame_difference(clip)) / 255.0  # 23 pairs: k = round(3.45) = 3
    first, last = ends(per_pair, 3)
    assert result.value == pytest.approx(abs(first - last), abs=1e-12) and result.value > 0.05
    assert result.series == [(0.0, pytest.approx(first, abs=1e-12)), (20 / FPS, pytest.approx(last, abs=1e-12))]
    assert metric(long_clip.FlickerContrastMetric).higher_is_better is False
    constant = np.full((24, 16, 16, 3), 77, np.uint8)
    assert metric(long_clip.FlickerContrastMetric).streaming(CTX).score(constant).value == 0.0


def test_the_fraction_is_an_option_and_named_in_the_version():
    clip = noisier_second_half(frames=21)  # 20 pairs: a third is 6.67 -> 7 at each end
    wide = metric(long_clip.FlickerContrastMetric, fraction=1 / 3)
    per_pair = (255.0 - mean_abs_frame_difference(clip)) / 255.0
    first, last = ends(per_pair, 7)
    assert wide.streaming(CTX).score(clip).value == pytest.approx(abs(first - last), abs=1e-12)
    assert "fraction 0.15" in metric(long_clip.FlickerContrastMetric).version and "fraction 0.333" in wide.version
    with pytest.raises(ValueError):
        long_clip.FlickerContrastMetric.Args(fraction=0.7)


def test_warping_and_clipsim_contrasts_use_their_per_pair_and_per_frame_values():
    clip = shapes_clip(13)
    warp = metric(long_clip.WarpingErrorContrastMetric)
    per_pair = warping_error_per_pair(clip, warp.base.estimator).values  # 12 pairs: k = 2
    first, last = ends(per_pair, 2)
    result = warp.streaming(CTX).score(clip)
    assert result.value == pytest.approx(abs(first - last), abs=1e-12)
    assert [t for t, _ in result.series] == [0.0, 10 / FPS]

    sim = metric(long_clip.ClipsimContrastMetric)
    per_frame = clipsim_per_frame(clip, CTX.prompt, sim.base.scorer)  # 13 frames: k = round(1.95) = 2
    first, last = ends(per_frame, 2)
    result = sim.streaming(CTX).score(clip)
    assert result.value == pytest.approx(abs(first - last), abs=1e-6)
    assert [t for t, _ in result.series] == [0.0, 11 / FPS]


def test_consistency_and_smoothness_contrasts_use_the_base_series():
    clip = shapes_clip(21)
    for cls in (long_clip.SubjectConsistencyContrastMetric, long_clip.MotionSmoothnessContrastMetric):
        contrast = metric(cls)
        series = contrast.base.streaming(CTX).score(clip).series
        # subject consistency: 20 terms (frames 1..20), k = 3; motion smoothness: 10 odd frames, k = 2
        k = long_clip.end_window_points(len(series))
        assert (len(series), k) == ((20, 3) if "subject" in contrast.name else (10, 2))
        first, last = ends(np.array([v for _, v in series]), k)
        result = contrast.streaming(CTX).score(clip)
        assert result.value == pytest.approx(abs(first - last), abs=1e-12)
        assert [t for t, _ in result.series] == [series[0][0], series[-k][0]]


@pytest.mark.parametrize("cls", [long_clip.FlickerContrastMetric, long_clip.MotionSmoothnessContrastMetric])
def test_any_chunking_and_merged_parts_equal_the_whole_clip(cls):
    clip = noisier_second_half(frames=23, size=32)
    contrast = metric(cls)
    whole = contrast.streaming(CTX).score(clip)
    for seed in (0, 1):
        parts = contrast.streaming(CTX)
        for chunk in random_chunks(clip, seed):
            parts.update(chunk)
        assert parts.compute() == whole
    if cls is long_clip.FlickerContrastMetric:  # merge goes to the base (motion smoothness's state cannot merge)
        first, second = contrast.streaming(CTX), contrast.streaming(CTX)
        first.update(clip[:9])
        second.update(clip[9:])
        first.merge(second)
        assert first.compute() == whole


def test_too_few_points_is_an_error_naming_the_metric():
    state = metric(long_clip.FlickerContrastMetric).streaming(CTX)
    with pytest.raises(ValueError, match="flicker_start_end_contrast: needs at least 2"):
        state.score(noisier_second_half(frames=2))  # one pair


def test_registered_contrasts_and_their_minimum_clips():
    from vbench_flow.registry import metric_types

    registered = metric_types()
    minimum = {"flicker": 3, "warping_error": 3, "clipsim": 2, "subject_consistency": 3, "background_consistency": 3,
               "motion_smoothness": 5}
    for base, frames in minimum.items():
        entry = registered[f"{base}_start_end_contrast"]
        assert entry.higher_is_better is False and entry.min_frames == frames
    assert registered["identity_decay"].higher_is_better is True


# ---------------------------------------------------------------- identity decay


def mean_colour_features(frames: np.ndarray) -> torch.Tensor:
    """A stand-in extractor: each frame's mean colour (plus a constant) as its feature."""
    means = torch.from_numpy(frames.reshape(len(frames), -1, 3).mean(axis=1))
    return torch.cat([means, torch.full((len(frames), 1), 50.0, dtype=means.dtype)], dim=1)


def decay_state(offsets=long_clip.DEFAULT_OFFSETS) -> long_clip.IdentityDecay:
    state = vbench.FeatureConsistency(mean_colour_features, FPS, name="identity_decay", version="", extractor="")
    return long_clip.IdentityDecay(state, offsets, version="", extractor="")


def blend(frames: int) -> np.ndarray:
    """One shapes-world scene blending linearly into another over the clip."""
    a, b = (shapes_clip(1, index)[0].astype(np.float64) for index in (0, 3))
    weights = np.linspace(0, 1, frames)[:, None, None, None]
    return np.round((1 - weights) * a + weights * b).astype(np.uint8)


def test_identity_decay_by_hand_on_a_stand_in_extractor():
    clip = np.zeros((30, 4, 4, 3), np.uint8)
    clip[..., 0] = np.linspace(0, 250, 30).astype(np.uint8)[:, None, None]
    result = decay_state().score(clip)
    features = torch.nn.functional.normalize(mean_colour_features(clip), dim=-1)
    expected = [(d, float((features[:-d] * features[d:]).sum(-1).mean())) for d in (2, 5, 10, 20)]
    assert [t for t, _ in result.series] == [d / FPS for d, _ in expected]  # 50 and 100 do not fit in 30 frames
    assert [v for _, v in result.series] == pytest.approx([v for _, v in expected], abs=1e-12)
    assert result.value == result.series[-1][1]
    assert decay_state(offsets=(5, 2, 29, 30)).score(clip).series[-1][0] == 29 / FPS
    with pytest.raises(ValueError, match="identity_decay: the shortest offset, 2 frames, needs at least 3"):
        decay_state().score(clip[:2])


def test_a_still_clip_keeps_its_identity_and_a_blend_decays():
    decay = metric(long_clip.IdentityDecayMetric)
    still = np.repeat(blend(1), 24, axis=0)
    result = decay.streaming(CTX).score(still)
    assert [t for t, _ in result.series] == [2 / FPS, 5 / FPS, 10 / FPS, 20 / FPS]
    assert [v for _, v in result.series] == pytest.approx([1.0] * 4, abs=1e-6) and result.value == pytest.approx(1.0)

    blending = blend(60)
    whole = decay.streaming(CTX).score(blending)
    cosines = [v for _, v in whole.series]
    assert [t for t, _ in whole.series] == [d / FPS for d in (2, 5, 10, 20, 50)]  # 100 does not fit
    assert all(later < earlier for earlier, later in zip(cosines, cosines[1:])) and cosines[-1] < 0.5
    assert whole.value == cosines[-1]
    parts = decay.streaming(CTX)
    for chunk in random_chunks(blending, 0):
        parts.update(chunk)
    streamed = parts.compute()
    assert streamed.value == pytest.approx(whole.value, abs=1e-5)
    assert [v for _, v in streamed.series] == pytest.approx(cosines, abs=1e-5)
    first, second = decay.streaming(CTX), decay.streaming(CTX)
    first.update(blending[:25])
    second.update(blending[25:])
    first.merge(second)
    assert [v for _, v in first.compute().series] == pytest.approx(cosines, abs=1e-5)


def test_identity_decay_options():
    args = long_clip.IdentityDecayMetric.Args(offsets=[10, 2, 2])
    assert args.offsets == [2, 10]
    with pytest.raises(ValueError, match="positive"):
        long_clip.IdentityDecayMetric.Args(offsets=[0, 3])
    with pytest.raises(ValueError, match="VBench-Long's 2 s clips"):
        long_clip.IdentityDecayMetric.Args(protocol="vbench-long")
    assert long_clip.IdentityDecayMetric.missing_files(long_clip.IdentityDecayMetric.Args()) == []
    missing = long_clip.IdentityDecayMetric.missing_files(
        long_clip.IdentityDecayMetric.Args(extractor="standard", weights="/nonexistent/dino.pth"))
    assert len(missing) == 1 and "dino-vitb16" in missing[0]
    version = metric(long_clip.IdentityDecayMetric).version
    assert "offsets 2,5,10,20,50,100" in version and "domain-clip" in version
