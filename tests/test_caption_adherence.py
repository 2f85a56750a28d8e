"""Caption adherence against rendered ground truth (metrics.caption_adherence's docstring).

Shape signatures against their closed forms; the detector against the shapes world's own
rendering (every object, colour and shape known); the clip values against clips edited to lose an
object, change a colour or change a shape at a known frame, where every value follows by counting.
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
import pytest

from metrics import caption_adherence as ca
from metrics import shape_geometry
from metrics.caption_adherence import (CaptionCheck, FrameCheck, caption_adherence, check_frame, first_mismatch,
                                       parse_caption, summarise)
from metrics.object_identity import Detection, detect_objects
from metrics.streaming import ClipContext
from vbench_flow.data import shapes
from vbench_flow.data.shapes import ObjectSpec, SceneSpec, ShapesWorld, frame_times, render_scene
from vbench_flow.registry import get_metric

FPS = 8.0
FRAMES = 41


# ------------------------------------------------------------ copies of the shapes world agree

def test_palette_shapes_and_outlines_are_the_shapes_worlds():
    assert ca.OBJECT_COLORS == shapes.OBJECT_COLORS
    assert ca.PALETTE == {c: shapes.COLORS[c] for c in shapes.OBJECT_COLORS}
    assert ca.SIZE_WORDS == tuple(shapes.SIZES)
    assert shape_geometry.SHAPES == shapes.SHAPES
    for shape in shapes.SHAPES:
        expected = None if shape == "circle" else shapes._unit_polygon(shape)
        got = shape_geometry.outline(shape)
        assert (got is None) == (expected is None)
        if expected is not None:
            np.testing.assert_allclose(got, expected, atol=1e-12)


def test_captions_parse_back_to_their_scenes():
    world = ShapesWorld("test")
    for index in range(300):
        scene = world.scene(index)
        assert parse_caption(scene.caption) == tuple(ca.CaptionObject(o.size, o.color, o.shape) for o in scene.objects)


@pytest.mark.parametrize("text", ["a large red circle bouncing and a small red star spinning in place on a black background",
                                  "a cat on a mat", "a large red circle bouncing", "", "a large red blob on a black background",
                                  "a large red circle bouncing and a huge blue star on a black background"])
def test_other_text_is_refused_with_the_grammar(text):
    with pytest.raises(ValueError, match="not a shapes-world caption|more than one object"):
        parse_caption(text)


def test_colours_are_named_within_the_limit_only():
    red = np.array(shapes.COLORS["red"], dtype=float)
    away = np.array([0.0, 0.0, 1.0])  # toward (230, 30, 30 + d): nothing else of the palette is as near
    assert ca.colour_name(red + 59 * away) == "red" and ca.colour_name(red + 61 * away) is None
    # yellow and orange, the closest pair (81 apart): the midpoint's nearer side wins
    yellow, orange = (np.array(shapes.COLORS[c], dtype=float) for c in ("yellow", "orange"))
    assert ca.colour_name(0.45 * yellow + 0.55 * orange) == "orange"


def test_matching_never_trades_a_colour_for_two_shapes():
    """Caption: red circle, blue square. Shown: a red square and a green circle. Colour outweighs shape,
    so the red object is the red circle shown in the wrong shape, and the blue square is missing."""
    caption = parse_caption("a large red circle bouncing and a small blue square bouncing on a black background")
    check = check_frame(caption, [Detection(0, 10, 10, 0.05, shapes.COLORS["red"], False, "square"),
                                  Detection(0, 50, 50, 0.05, shapes.COLORS["green"], False, "circle")])
    assert check.in_colour == (True, False) and check.in_shape == (False, False)


# ------------------------------------------------------------ shape signatures: closed forms

def test_reference_signatures_equal_their_closed_forms():
    refs = shape_geometry.reference_signatures()
    # disc: compactness 1, no k-fold symmetry
    np.testing.assert_allclose(refs["circle"], [1, 0, 0, 0, 0, 0], atol=2e-3)
    # square of side s: C11 = A s^2 / 6, so compactness 3 / pi; |sum z^4| = s^6 / 60 against A (C11/A)^2 = s^6 / 36
    np.testing.assert_allclose(refs["square"][[0, 3]], [3 / math.pi, 36 / 60], atol=2e-3)
    # equilateral triangle: polar moment sqrt(3) a^4 / 48, area sqrt(3) a^2 / 4 -> compactness 4.5 / (sqrt(3) pi)
    assert refs["triangle"][0] == pytest.approx(4.5 / (math.sqrt(3) * math.pi), abs=2e-3)
    # regular n-gons: symmetry strengths vanish off multiples of n
    for shape, order in (("triangle", 3), ("square", 4), ("star", 5), ("hexagon", 6)):
        for k, strength in zip(shape_geometry.SYMMETRY_ORDERS, refs[shape][1:]):
            if k % order:
                assert strength < 0.015, (shape, k)  # the raster's own asymmetry
            else:
                assert strength > 0.3, (shape, k)
    assert refs["diamond"][1] > 0.4  # narrower than tall: 2-fold


def test_signature_ignores_rotation_scale_and_position():
    rng = np.random.default_rng(0)
    side = 512
    for shape in ("triangle", "star", "diamond"):
        signatures = []
        for _ in range(3):
            angle, radius = rng.uniform(0, 2 * math.pi), rng.uniform(60, 200)
            c, s = math.cos(angle), math.sin(angle)
            points = shape_geometry.outline(shape) @ np.array([[c, s], [-s, c]]) * radius + rng.uniform(220, 290, 2)
            canvas = np.zeros((side, side), np.uint8)
            cv2.fillPoly(canvas, [np.round(points * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
            rows, cols = np.nonzero(canvas)
            signatures.append(shape_geometry.signature(rows, cols, np.ones(len(rows)), pixel_variance=0.0))
        np.testing.assert_allclose(signatures, [shape_geometry.reference_signatures()[shape]] * 3, atol=0.03)


def test_a_signature_is_its_shape_up_to_the_distance_limit():
    star = shape_geometry.reference_signatures()["star"]
    limit = shape_geometry.MAX_SIGNATURE_DISTANCE
    for offset, expected in ((limit - 0.01, "star"), (limit + 0.01, shape_geometry.IRREGULAR)):
        moved = star.copy()
        moved[4] += offset  # five-fold symmetry, away from every other reference
        assert shape_geometry.classify_shape(moved) == expected


def test_a_long_bar_is_irregular_and_a_disc_is_a_circle():
    yy, xx = np.mgrid[0:64, 0:64] + 0.5
    bar = (np.abs(xx - 32) < 18) & (np.abs(yy - 32) < 5)
    disc = (xx - 32) ** 2 + (yy - 32) ** 2 < 10 ** 2
    for mask, expected in ((bar, shape_geometry.IRREGULAR), (disc, "circle")):
        rows, cols = np.nonzero(mask)
        assert shape_geometry.classify_shape(shape_geometry.signature(rows, cols, np.ones(len(rows)))) == expected


# ------------------------------------------------------------ the detector on rendered ground truth

def test_detector_reads_every_attribute_of_separated_objects_in_real_test_clips():
    """Frames of real test clips where no two objects come within 1.5 px (ground truth says every
    captioned object is visible, apart from the others): at least 98 % right per attribute."""
    world = ShapesWorld("test")
    colour, shape, count = [], [], []
    for index in range(0, 240, 6):
        clip = world.clip(index, FRAMES)
        caption = parse_caption(clip.caption)
        for states, frame in zip(clip.states[::2], clip.frames[::2]):
            if any(math.hypot(a.x - b.x, a.y - b.y) <= a.radius + b.radius + 1.5
                   for k, a in enumerate(states) for b in states[k + 1:]):
                continue
            check = check_frame(caption, detect_objects(frame))
            colour += check.in_colour
            shape += check.in_shape
            count.append(check.count_ok)
    assert len(count) > 500
    assert np.mean(colour) >= 0.98 and np.mean(shape) >= 0.98 and np.mean(count) >= 0.98


def test_real_clips_give_a_high_ceiling():
    world = ShapesWorld("test")
    values = [caption_adherence(world.clip(i, FRAMES).frames, world.caption(i), FPS) for i in range(0, 60, 5)]
    assert np.mean(values) > 0.88 and np.median(values) > 0.95  # contact frames cost a few percent


# ------------------------------------------------------------ edited clips: every value by counting

RED_CIRCLE = ObjectSpec("circle", "red", "large", "static", x=0.25, y=0.28)
BLUE_STAR = ObjectSpec("star", "blue", "large", "static", x=0.72, y=0.7)
YELLOW_TRIANGLE = ObjectSpec("triangle", "yellow", "large", "static", x=0.27, y=0.74)
SCENE = SceneSpec("black", (RED_CIRCLE, BLUE_STAR, YELLOW_TRIANGLE))


def spliced(change_at: int, later: SceneSpec, until: int = FRAMES) -> np.ndarray:
    """SCENE's frames, with ``later``'s from ``change_at`` to ``until`` (exclusive)."""
    times = frame_times(0, FRAMES, FPS)
    frames, _ = render_scene(SCENE, times, 64)
    frames[change_at:until] = render_scene(later, times[change_at:until], 64)[0]
    return frames


def values(frames: np.ndarray, caption: str = SCENE.caption) -> dict[str, float]:
    shared: dict = {}  # one detection pass for all quantities, as in the harness
    checks = [CaptionCheck(FPS, caption, q, cache=shared) for q in ca.QUANTITIES]
    return {check.quantity: check.score(frames).value for check in checks}


def test_the_unedited_scene_matches_its_caption_everywhere():
    frames, _ = render_scene(SCENE, frame_times(0, FRAMES, FPS), 64)
    assert values(frames) == {"adherence": 1.0, "colour_recall": 1.0, "shape_accuracy": 1.0, "count_accuracy": 1.0,
                              "permanence": 1.0, "hold_seconds": FRAMES / FPS}


def test_an_object_lost_mid_way():
    got = values(spliced(20, replace(SCENE, objects=(RED_CIRCLE, YELLOW_TRIANGLE))))
    seen = 20 * 3 + 21 * 2  # (frame, captioned object) pairs shown
    assert got == pytest.approx({"adherence": (20 + 21 * 2 / 3) / FRAMES, "colour_recall": seen / 123,
                                 "shape_accuracy": seen / 123, "count_accuracy": 20 / FRAMES,
                                 "permanence": 20 / FRAMES, "hold_seconds": 20 / FPS})


def test_a_colour_change_mid_way():
    purple_star = replace(BLUE_STAR, color="purple")
    got = values(spliced(24, replace(SCENE, objects=(RED_CIRCLE, purple_star, YELLOW_TRIANGLE))))
    assert got == pytest.approx({"adherence": (24 + 17 * 2 / 3) / FRAMES, "colour_recall": (24 * 3 + 17 * 2) / 123,
                                 "shape_accuracy": 1.0, "count_accuracy": 1.0, "permanence": 24 / FRAMES,
                                 "hold_seconds": 24 / FPS})


def test_a_shape_change_mid_way():
    square = replace(YELLOW_TRIANGLE, shape="square")
    got = values(spliced(30, replace(SCENE, objects=(RED_CIRCLE, BLUE_STAR, square))))
    assert got == pytest.approx({"adherence": (30 + 11 * 2 / 3) / FRAMES, "colour_recall": 1.0,
                                 "shape_accuracy": (30 * 3 + 11 * 2) / 123, "count_accuracy": 1.0,
                                 "permanence": 30 / FRAMES, "hold_seconds": 30 / FPS})


def test_a_duplicated_object_breaks_permanence_and_count_not_recall():
    twin = replace(BLUE_STAR, x=0.72, y=0.25)
    frames, _ = render_scene(SCENE, frame_times(0, FRAMES, FPS), 64)  # a second blue star from frame 12 on
    twin_frames, _ = render_scene(SceneSpec("black", (twin,)), frame_times(12, FRAMES - 12, FPS), 64)
    blue = np.all(twin_frames == shapes.COLORS["blue"], axis=-1)
    frames[12:][blue] = shapes.COLORS["blue"]
    got = values(frames)
    assert got["colour_recall"] == 1.0 and got["shape_accuracy"] == 1.0
    assert got["permanence"] == pytest.approx(12 / FRAMES) and got["count_accuracy"] == pytest.approx(12 / FRAMES)
    assert got["adherence"] == pytest.approx((12 + 29 * 3 / 4) / FRAMES)
    assert got["hold_seconds"] == pytest.approx(12 / FPS)


def test_a_short_glitch_does_not_end_the_hold_but_a_second_long_one_does():
    without_star = replace(SCENE, objects=(RED_CIRCLE, YELLOW_TRIANGLE))
    short = values(spliced(10, without_star, until=17))  # 7 frames, under 1 s at 8 fps
    assert short["hold_seconds"] == FRAMES / FPS and short["permanence"] == pytest.approx(34 / FRAMES)
    long = values(spliced(10, without_star, until=18))  # 8 frames: 1 s
    assert long["hold_seconds"] == pytest.approx(10 / FPS) and long["permanence"] == pytest.approx(33 / FRAMES)


def test_a_clip_without_objects_shows_nothing_of_its_caption():
    dark = np.zeros((9, 64, 64, 3), np.uint8)
    assert values(dark) == {"adherence": 0.0, "colour_recall": 0.0, "shape_accuracy": 0.0, "count_accuracy": 0.0,
                            "permanence": 0.0, "hold_seconds": 0.0}


def test_first_mismatch_runs_and_hold_definition():
    assert first_mismatch([True, False, False, True, False, False, False], 3) == 4
    assert first_mismatch([True, False, False, True], 3) is None
    assert first_mismatch([True, False, False], 3) == 1  # a run that lasts to the end counts however short
    assert first_mismatch([False], 1) == 0 and first_mismatch([True] * 4, 2) is None
    ok = FrameCheck((True,), (True,), (1,), 1)
    bad = FrameCheck((False,), (False,), (0,), 0)
    checks = [ok] * 5 + [bad] * 4 + [ok] * 3
    assert summarise(checks, 4.0, "hold_seconds", 1.0).value == 5 / 4  # a run of 4 frames = 1 s at 4 fps
    assert summarise(checks, 4.0, "hold_seconds", 1.25).value == 12 / 4  # needs 5 frames: never
    # the shape is the outline a detection shows, judged for every captioned object in every frame
    check = check_frame(parse_caption(SCENE.caption), [Detection(0, 10, 10, 0.05, shapes.COLORS["red"], True, "star"),
                                                       Detection(0, 50, 50, 0.05, shapes.COLORS["blue"], False, "star"),
                                                       Detection(0, 20, 50, 0.05, shapes.COLORS["yellow"], True,
                                                                 "triangle")])
    assert check.in_colour == (True, True, True) and check.in_shape == (False, True, True)
    assert summarise([check], 1.0, "shape_accuracy").value == pytest.approx(2 / 3)
    assert not check.permanent and check.adherence == pytest.approx(2 / 3)


# ------------------------------------------------------------ streaming, sharing, registry

def test_streaming_in_chunks_and_merging_equal_one_call():
    frames = spliced(20, replace(SCENE, objects=(RED_CIRCLE, YELLOW_TRIANGLE)))
    for quantity in ca.QUANTITIES:
        whole = CaptionCheck(FPS, SCENE.caption, quantity).score(frames)
        chunked = CaptionCheck(FPS, SCENE.caption, quantity)
        for start in range(0, FRAMES, 7):
            chunked.update(frames[start:start + 7])
        head, tail = CaptionCheck(FPS, SCENE.caption, quantity), CaptionCheck(FPS, SCENE.caption, quantity)
        head.update(frames[:13])
        tail.update(frames[13:])
        head.merge(tail)
        assert chunked.compute() == whole and head.compute() == whole


def test_registered_metrics_share_one_detection_pass(monkeypatch):
    import metrics.object_identity as oi
    calls = []
    original = oi.detect_objects
    monkeypatch.setattr(oi, "detect_objects", lambda *a, **k: calls.append(1) or original(*a, **k))
    frames, _ = render_scene(SCENE, frame_times(0, 9, FPS), 64)
    ctx = ClipContext(fps=FPS, prompt=SCENE.caption)
    names = ["caption_adherence", "caption_colour_recall", "caption_shape_accuracy", "caption_count_accuracy",
             "object_permanence", "caption_hold_seconds", "object_colour_change"]
    streams = [build(name).streaming(ctx) for name in names]
    for stream in streams:
        stream.update(frames)
    assert len(calls) == 9
    assert [s.compute().value for s in streams[:5]] == [1.0] * 5
    assert streams[5].compute().value == 9 / FPS
    for name in names[:6]:
        assert get_metric(name).higher_is_better


def build(name: str, args: dict | None = None):
    entry = get_metric(name)
    return entry.build(entry.args_model.model_validate(args or {}))


def test_hold_option_changes_the_version_and_bad_prompts_say_why():
    assert build("caption_hold_seconds", {"min_mismatch_seconds": 2}).version.endswith("mismatch runs >= 2 s")
    with pytest.raises(ValueError, match="not a shapes-world caption"):
        build("caption_adherence").streaming(ClipContext(fps=FPS, prompt="a cat on a mat"))


def test_the_shipped_autoencoder_keeps_colours_and_loses_shapes_and_counts():
    """The README's ceiling for every shipped generator (scripts/autoencoder_caption_ceiling.py): real
    test clips encoded and decoded by vae-shapes64 keep their colours but not their shapes or counts."""
    import torch

    from generator import checkpoint_path
    from generator.autoencoder import VideoAutoencoder

    autoencoder = VideoAutoencoder.load(checkpoint_path("vae-shapes64"))
    world = ShapesWorld("test", size=64, fps=8.0)
    scores = {"real": [], "decoded": []}
    for index in range(6):
        clip = world.clip(index, 9)
        decoded = autoencoder.reconstruct_frames(torch.from_numpy(clip.frames)[None])[0]
        for row, video in (("real", clip.frames), ("decoded", decoded.numpy())):
            quantities = ("colour_recall", "shape_accuracy", "count_accuracy")
            scores[row].append(list(ca.caption_scores(video, clip.caption, 8.0, quantities).values()))
    real, decoded = np.mean(scores["real"], axis=0), np.mean(scores["decoded"], axis=0)
    assert real.min() > 0.85 and decoded[0] > 0.85  # colours survive
    assert decoded[1] < real[1] - 0.3 and decoded[2] < real[2] - 0.3, (real, decoded)
