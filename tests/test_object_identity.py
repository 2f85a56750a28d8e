"""Object identity stability against its definition (metrics.object_identity's docstring).

Colour change |c_t - c_0| / (255 sqrt 3) and size change |ln(a_t / a_0)| per track, measured at
every matched frame after the track's first, averaged over all (track, frame) pairs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from metrics.object_identity import VERSION, detect_objects, object_identity_change
from vbench_flow.data.shapes import ShapesWorld
from metrics.streaming import ClipContext
from vbench_flow.registry import get_metric

BACKGROUND = (20, 30, 40)
SIDE = 64


def blank(num_frames: int, colour: tuple[int, int, int] = BACKGROUND) -> np.ndarray:
    return np.tile(np.array(colour, dtype=np.uint8), (num_frames, SIDE, SIDE, 1))


def paint(frame: np.ndarray, x: int, y: int, side: int, colour: tuple[int, int, int]) -> None:
    """A side x side square whose top-left pixel is (row y, col x)."""
    frame[y:y + side, x:x + side] = colour


# ------------------------------------------------------------ exact values by hand

def test_colour_change_at_a_known_frame():
    video = blank(6)
    for t in range(6):  # frames 0-2 red, 3-5 with green raised by 100
        paint(video[t], 27, 27, 10, (200, 40, 40) if t < 3 else (200, 140, 40))
    result = object_identity_change(video)
    d = 100.0 / (255.0 * math.sqrt(3.0))
    # measured at frames 1..5 (frame 0 is the reference): 0, 0, d, d, d
    assert result.colour == pytest.approx(3 * d / 5, abs=1e-12)
    assert [f for f, _ in result.colour_series] == [1, 2, 3, 4, 5]
    assert [v for _, v in result.colour_series] == pytest.approx([0, 0, d, d, d], abs=1e-12)
    assert result.size == pytest.approx(0.0, abs=1e-9)
    (track,) = result.tracks
    assert track.first.rgb == (200.0, 40.0, 40.0)
    assert track.first.area == pytest.approx(100 / SIDE**2, abs=1e-12)
    assert (track.first.x, track.first.y) == (32.0, 32.0)  # pixel centres: cols 27..36 -> 32.0


def test_size_change_when_the_side_doubles():
    video = blank(5)
    for t in range(5):  # centred on (32, 32): side 8 in frames 0-1, 16 in frames 2-4
        side = 8 if t < 2 else 16
        paint(video[t], 32 - side // 2, 32 - side // 2, side, (250, 220, 30))
    result = object_identity_change(video)
    # measured at frames 1..4: 0, ln 4, ln 4, ln 4
    assert [v for _, v in result.size_series] == pytest.approx([0, math.log(4), math.log(4), math.log(4)], abs=1e-9)
    assert [f for f, _ in result.size_series] == [1, 2, 3, 4]
    assert result.size == pytest.approx(3 * math.log(4) / 4, abs=1e-9)
    assert result.colour == pytest.approx(0.0, abs=1e-12)


def test_mean_weights_tracks_by_measured_frames():
    # a static square for all 6 frames (5 measurements of 0) and one appearing at frame 3 whose colour
    # changes at frame 5 (measurements at frames 4, 5: 0 and d): the mean is d / 7, not (0 + d/2) / 2
    video = blank(6)
    for t in range(6):
        paint(video[t], 5, 5, 8, (250, 250, 250))
        if t >= 3:
            paint(video[t], 45, 45, 8, (200, 40, 40) if t < 5 else (200, 40, 190))
    result = object_identity_change(video)
    d = 150.0 / (255.0 * math.sqrt(3.0))
    assert sorted(len(t.detections) for t in result.tracks) == [3, 6]
    assert result.colour == pytest.approx(d / 7, abs=1e-12)
    assert dict(result.colour_series)[5] == pytest.approx(d / 2, abs=1e-12)


def test_short_tracks_are_ignored_and_gradient_background_is_not_an_object():
    video = blank(8)
    rows = np.linspace(90, 0, SIDE)[:, None]  # a vertical gradient, like "dark blue to black"
    video[..., 2] = np.rint(rows).astype(np.uint8)
    for t in range(8):
        paint(video[t], 20, 20, 8, (250, 220, 30))
    paint(video[4], 50, 10, 5, (255, 255, 255))  # a one-frame blip: a track of 1 frame, ignored
    result = object_identity_change(video)
    assert len(result.tracks) == 1 and len(result.tracks[0].detections) == 8
    assert result.colour == pytest.approx(0.0, abs=1e-12)
    assert result.size == pytest.approx(0.0, abs=1e-6)


def test_a_bounce_stays_one_track():
    # 10 px a frame down, then back up: after the bounce the object is 20 px from the constant-velocity
    # prediction (beyond the 16 px gate) but 10 px from where it was last seen, which keeps it in the gate
    video = blank(8)
    for t, y in enumerate([8, 18, 28, 38, 48, 38, 28, 18]):
        paint(video[t], 28, y, 8, (40, 200, 60))
    result = object_identity_change(video)
    assert [len(t.detections) for t in result.tracks] == [8]


@pytest.mark.parametrize("offset", [0, 4])
def test_two_objects_crossing_keep_their_identities(offset):
    # A moves right along y=30, B left along y=30+offset, 4 px a frame; they meet at frame 6 (A drawn on
    # top: B fully hidden when offset=0, a two-colour region when offset=4) and part afterwards.
    # Right after the crossing each object sits where the *other* was last seen, so matching on last
    # positions would swap them; the constant-velocity prediction must not.
    a, b = (230, 30, 30), (40, 90, 250)
    video = blank(13)
    for t in range(13):
        paint(video[t], 56 - 4 * t - 3, 30 + offset - 3, 6, b)
        paint(video[t], 8 + 4 * t - 3, 30 - 3, 6, a)
    result = object_identity_change(video)
    assert len(result.tracks) == 2
    for track in result.tracks:
        assert all(d.rgb == track.first.rgb for d in track.detections), "a track changed object"
        frames = [d.frame for d in track.detections]
        assert frames[0] == 0 and frames[-1] == 12 and 6 not in frames
    by_colour = {t.first.rgb: t for t in result.tracks}
    xs = [d.x for d in by_colour[tuple(map(float, a))].detections]
    assert xs == sorted(xs) and xs[0] < 20 and xs[-1] > 50
    assert result.colour == 0.0
    assert result.size == pytest.approx(0.0, abs=1e-9)


def test_colour_is_the_dominant_colour_and_area_counts_edge_shares():
    frame = blank(1)[0]
    paint(frame, 20, 20, 10, (200, 40, 40))
    paint(frame, 23, 23, 2, (40, 90, 250))  # a 4-pixel highlight: too small to be an object of its own
    frame[20:30, 30] = np.rint(np.array(BACKGROUND) * 0.75 + np.array((200, 40, 40)) * 0.25)  # a 25% edge column
    (d,) = detect_objects(frame)
    assert d.rgb == (200.0, 40.0, 40.0) and not d.touching
    # 100 px of the square (the highlight is farther from the background than red is: share clipped to 1)
    # plus the 10 rim pixels at a quarter each (below the foreground distance, so counted only by share)
    assert d.area * SIDE**2 == pytest.approx(100 + 10 * 0.25, abs=0.05)


# ------------------------------------------------------------ real shapes-world clips

UNIT_AREA = {  # polygon area / circumradius^2 of the shapes world's shapes
    "circle": math.pi, "square": 2.0, "triangle": 3 * math.sqrt(3) / 4, "diamond": 1.2,
    "hexagon": 3 * math.sqrt(3) / 2, "star": 10 * 0.5 * 0.45 * math.sin(math.radians(36)),
}


def single_object_clips(count: int) -> list:
    world = ShapesWorld("test")
    indices = [i for i in range(40) if len(world.scene(i).objects) == 1][:count]
    return [world.clip(i, 17) for i in indices]


def test_real_single_object_clips_match_ground_truth():
    clips = single_object_clips(5)
    backgrounds = {c.scene.background for c in clips}
    assert any(" to " in b for b in backgrounds) and len(backgrounds) >= 3  # gradients and solids
    for clip in clips:
        result = object_identity_change(clip.frames)
        assert result.colour < 0.005, clip.caption
        assert result.size < 0.06, clip.caption
        assert len(result.tracks) == 1, clip.caption
        (track,) = result.tracks
        assert len(track.detections) == len(clip.frames), clip.caption
        for d in track.detections:
            truth = clip.states[d.frame][0]
            assert np.linalg.norm(np.array(d.rgb) - truth.rgb) < 3.0, clip.caption
            assert math.hypot(d.x - truth.x, d.y - truth.y) < 0.3, clip.caption
            area = UNIT_AREA[truth.shape] * truth.radius**2 / SIDE**2
            assert d.area == pytest.approx(area, rel=0.15), clip.caption


def test_real_clip_with_a_recoloured_object_is_caught():
    clip = single_object_clips(1)[0]
    frames = clip.frames.copy()
    truth = np.array(clip.states[0][0].rgb)
    changed = np.all(frames[8:] == truth, axis=-1)  # the object's fully covered pixels from frame 8 on
    frames[8:][changed] = (truth * 0.6).astype(np.uint8)
    result = object_identity_change(frames)
    expected = np.linalg.norm(truth - (truth * 0.6).astype(np.uint8)) / (255 * math.sqrt(3))
    values = dict(result.colour_series)
    assert max(values[f] for f in range(1, 8)) < 0.005
    assert [values[f] for f in range(8, 17)] == pytest.approx([expected] * 9, abs=0.01)


# ------------------------------------------------------------ bad input

@pytest.mark.parametrize("video, message", [
    (np.zeros((4, 16, 16, 3), dtype=np.float32), "dtype uint8"),
    (np.zeros((1, 16, 16, 3), dtype=np.uint8), "at least 2 frames"),
    (np.zeros((0, 16, 16, 3), dtype=np.uint8), "at least 2 frames"),
    (np.zeros((4, 0, 16, 3), dtype=np.uint8), "empty"),
    (np.zeros((4, 16, 16, 4), dtype=np.uint8), r"\(T, H, W, 3\)"),
    (np.zeros((16, 16, 3), dtype=np.uint8), r"\(T, H, W, 3\)"),
    ([[0]], "numpy uint8 array"),
])
def test_bad_input_is_a_clear_error(video, message):
    with pytest.raises(ValueError, match=message):
        object_identity_change(video)


def test_no_object_is_an_error_not_zero():
    with pytest.raises(ValueError, match="no object found in any of the 5 frames"):
        object_identity_change(blank(5))
    rows = np.rint(np.linspace(0, 90, SIDE)).astype(np.uint8)  # a gradient alone is background
    video = blank(5)
    video[..., 2] = rows[:, None]
    with pytest.raises(ValueError, match="no object found"):
        object_identity_change(video)


def test_objects_too_brief_to_track_are_an_error():
    video = blank(4)
    paint(video[1], 10, 10, 8, (255, 255, 255))
    paint(video[2], 10, 10, 8, (255, 255, 255))
    with pytest.raises(ValueError, match="none was tracked for 3 frames or more"):
        object_identity_change(video)
    assert len(detect_objects(video[1])) == 1


# ------------------------------------------------------------ suite registry

@pytest.mark.parametrize("name, quantity", [("object_colour_change", "colour"), ("object_size_change", "size")])
def test_registered_metric_scores_through_the_registry(name, quantity):
    video = blank(6)
    for t in range(6):
        side = 8 if t < 3 else 16
        paint(video[t], 32 - side // 2, 32 - side // 2, side, (200, 40, 40) if t < 4 else (200, 140, 40))
    entry = get_metric(name)
    scorer = entry.build(entry.args_model.model_validate({}))
    result = scorer.score(video, ClipContext(fps=8, prompt="x", task="t2v"))
    direct = object_identity_change(video)
    assert result.value == pytest.approx(getattr(direct, quantity), abs=1e-12)
    assert result.value > 0
    expected = [(f / 8, v) for f, v in getattr(direct, f"{quantity}_series")]
    np.testing.assert_allclose(np.asarray(result.series), np.asarray(expected), rtol=1e-6)
    assert result.series[0][0] == pytest.approx(1 / 8)
    assert entry.higher_is_better is False
    assert scorer.version == VERSION and "connected components" in scorer.extractor
