"""The shapes world: determinism, splits, truthful captions, motion physics, rendering, preview."""

from __future__ import annotations

import re

import numpy as np
import pytest

from vbench_flow.data.preview import make_grid
from vbench_flow.video_io import num_frames_for
from vbench_flow.data.shapes import (
    BACKGROUNDS,
    COLORS,
    MOTIONS,
    OBJECT_COLORS,
    SHAPES,
    SIZES,
    SPLITS,
    ObjectSpec,
    SceneSpec,
    ShapesWorld,
    render_scene,
    sample_scene,
    states_table,
    trajectory,
)
from vbench_flow.errors import ConfigError


def _alt(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_PHRASE_TO_MOTION = {v: k for k, v in MOTIONS.items()}
_OBJ = re.compile(
    rf"a ({_alt(SIZES)}) ({_alt(OBJECT_COLORS)}) ({_alt(SHAPES)}) ({_alt(MOTIONS.values())})"
)
_BG = re.compile(rf" on a ({_alt(c for c in COLORS)})(?: to ({_alt(c for c in COLORS)}) gradient)? background$")


def parse_caption(caption: str) -> tuple[str, list[tuple[str, str, str, str]]]:
    """Caption -> (background, [(size, colour, shape, motion)]); fails on anything off-grammar."""
    bg = _BG.search(caption)
    assert bg, caption
    top, bottom = bg.group(1), bg.group(2) or bg.group(1)
    background = next(name for name, ends in BACKGROUNDS.items() if ends == (top, bottom))
    objects_text = caption[: bg.start()]
    parts = re.split(r", | and (?=a )", objects_text)
    objects = []
    for part in parts:
        m = _OBJ.fullmatch(part)
        assert m, (part, caption)
        objects.append((m.group(1), m.group(2), m.group(3), _PHRASE_TO_MOTION[m.group(4)]))
    return background, objects


# ------------------------------------------------------------ determinism and splits

def test_same_seed_same_scene_frames_and_caption():
    a, b = ShapesWorld("val"), ShapesWorld("val")
    assert sample_scene(1_000_007) == sample_scene(1_000_007)
    ca, cb = a.clip(7, 12), b.clip(7, 12)
    assert ca.caption == cb.caption and ca.scene == cb.scene
    np.testing.assert_array_equal(ca.frames, cb.frames)
    assert ca.states == cb.states


def test_different_seeds_differ():
    world = ShapesWorld()
    captions = [world.caption(i) for i in range(200)]
    assert len(set(captions)) > 190
    assert world.scene(0) != world.scene(1)
    assert not np.array_equal(world.clip(0, 4).frames, world.clip(1, 4).frames)
    # the same index in another split is another scene
    assert ShapesWorld("test").scene(0) != world.scene(0)


def test_splits_are_disjoint_and_lengths_match():
    ranges = sorted(SPLITS.values())
    for (a0, a1), (b0, b1) in zip(ranges, ranges[1:]):
        assert a0 < a1 <= b0 < b1
    for split, (start, stop) in SPLITS.items():
        world = ShapesWorld(split)
        assert len(world) == stop - start
        assert world.seed(0) == start and world.seed(len(world) - 1) == stop - 1
        assert world.scene(3).seed == start + 3


def test_prompt_id_round_trip_and_foreign_ids():
    world = ShapesWorld("train")
    for i in (0, 1, 42, 999_999):
        pid = world.prompt_id(i)
        assert pid == f"train-{i:06d}"
        assert world.index_of(pid) == i
    for bad in ("val-000001", "train-1", "train-0000001", "train-abc", "train-1000000", "", "test-000000"):
        with pytest.raises(ConfigError):
            world.index_of(bad)
    with pytest.raises(ConfigError):
        world.prompt_id(len(world))


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError) as err:
        ShapesWorld("training")
    assert all(name in str(err.value) for name in SPLITS)
    for size in (8, 64.5, "64", 4096):
        with pytest.raises(ConfigError):
            ShapesWorld(size=size)
    for fps in (0, -8, float("nan")):
        with pytest.raises(ConfigError):
            ShapesWorld(fps=fps)
    with pytest.raises(ConfigError):
        ShapesWorld(max_objects=0)
    world = ShapesWorld()
    for index in (-1, len(world)):
        with pytest.raises(ConfigError):
            world.scene(index)
    with pytest.raises(ConfigError):
        world.clip(0, 0)
    with pytest.raises(ConfigError):
        world.clip(0, 5, start_frame=-1)


def test_invalid_specs_raise_config_error():
    red = dict(shape="circle", color="red", size="large", motion="static", x=0.5, y=0.5)
    with pytest.raises(ConfigError):
        ObjectSpec(**{**red, "x": 0.1})  # large object would stick out of the frame
    with pytest.raises(ConfigError):
        ObjectSpec(**{**red, "motion": "orbiting", "amplitude": 0.4, "period": 3.0})
    with pytest.raises(ConfigError):
        ObjectSpec(**{**red, "motion": "spinning", "spin": 1.0})  # invisible rotation
    with pytest.raises(ConfigError):
        ObjectSpec(**{**red, "color": "dark blue"})
    with pytest.raises(ConfigError):
        SceneSpec("white", (ObjectSpec(**{**red, "color": "white"}),))
    with pytest.raises(ConfigError):
        SceneSpec("black", (ObjectSpec(**red), ObjectSpec(**{**red, "shape": "star"})))


# ------------------------------------------------------------ captions

def test_captions_match_scene_parameters():
    world = ShapesWorld("train")
    for i in range(400):
        scene = world.scene(i)
        background, objects = parse_caption(world.caption(i))
        assert background == scene.background
        assert objects == [(o.size, o.color, o.shape, o.motion) for o in scene.objects]
        colors = [o.color for o in scene.objects]
        assert len(set(colors)) == len(colors)
        assert not set(colors) & set(BACKGROUNDS[scene.background])
        assert 1 <= len(objects) <= 3


def test_caption_examples():
    obj = ObjectSpec("circle", "red", "small", "bouncing", 0.5, 0.5, vx=0.2, vy=0.3)
    sq = ObjectSpec("square", "green", "large", "orbiting", 0.5, 0.5, amplitude=0.2, period=3.0)
    assert SceneSpec("dark blue", (obj,)).caption == "a small red circle bouncing on a dark blue background"
    assert (SceneSpec("black", (obj, sq)).caption
            == "a small red circle bouncing and a large green square orbiting on a black background")
    assert SceneSpec("dark blue to black", (obj,)).caption.endswith("on a dark blue to black gradient background")


def test_generator_covers_the_vocabulary():
    scenes = [sample_scene(s) for s in range(1500)]
    objects = [o for sc in scenes for o in sc.objects]
    assert {o.shape for o in objects} == set(SHAPES)
    assert {o.color for o in objects} == set(OBJECT_COLORS)
    assert {o.motion for o in objects} == set(MOTIONS)
    assert {o.size for o in objects} == set(SIZES)
    assert {sc.background for sc in scenes} == set(BACKGROUNDS)
    assert {len(sc.objects) for sc in scenes} == {1, 2, 3}
    assert not any(o.shape == "circle" and o.motion == "spinning" for o in objects)
    assert all(len(sample_scene(s, max_objects=1).objects) == 1 for s in range(50))


# ------------------------------------------------------------ rendering

@pytest.mark.parametrize("shape", SHAPES)
def test_object_pixels_have_the_captioned_colour(shape):
    for color in ("red", "cyan", "yellow"):
        obj = ObjectSpec(shape, color, "large", "static", 0.4, 0.6)
        scene = SceneSpec("dark gray", (obj,))
        frames, states = render_scene(scene, np.zeros(1), 64)
        st = states[0][0]
        assert (st.x, st.y, st.radius) == pytest.approx((0.4 * 64, 0.6 * 64, SIZES["large"] * 64))
        assert tuple(frames[0, int(st.y), int(st.x)]) == COLORS[color]
        assert tuple(frames[0, 2, 2]) == COLORS["dark gray"]  # far from the object


def test_world_objects_show_their_colour_at_their_centre():
    # topmost object at its own centre: its colour must be there (anti-aliasing only at edges)
    world, checked = ShapesWorld("test"), 0
    for i in range(60):
        clip = world.clip(i, 3)
        top = clip.scene.draw_order()[-1]
        st = clip.states[1][top]
        pixel = clip.frames[1, int(st.y), int(st.x)]
        assert tuple(pixel) == COLORS[st.color], (clip.caption, st)
        checked += 1
    assert checked == 60


def test_objects_stay_inside_the_frame():
    times = np.arange(241) / 8.0
    for seed in range(600):
        for obj in sample_scene(seed).objects:
            tr = trajectory(obj, times)
            for axis in ("x", "y"):
                assert tr[axis].min() >= obj.radius - 1e-9 and tr[axis].max() <= 1 - obj.radius + 1e-9, obj
    world = ShapesWorld("val", size=48)
    for i in range(5):
        for frame in world.clip(i, 241).states:
            for st in frame:
                assert st.radius <= st.x <= 48 - st.radius and st.radius <= st.y <= 48 - st.radius


def test_clip_lengths_for_durations():
    assert num_frames_for(5, 8) == 41 and num_frames_for(30, 8) == 241
    world = ShapesWorld()
    assert world.clip(2, num_frames_for(5, 8)).frames.shape == (41, 64, 64, 3)
    clip = world.clip(2, num_frames_for(30, 8))
    assert clip.frames.shape == (241, 64, 64, 3) and clip.frames.dtype == np.uint8
    assert len(clip.states) == 241 and clip.prompt_id == "train-000002" and clip.fps == 8.0
    assert ShapesWorld(size=32).clip(2, 3).frames.shape == (3, 32, 32, 3)


def test_time_continuity_across_start_frames_and_frame_rates():
    w8, w16 = ShapesWorld("val", fps=8.0), ShapesWorld("val", fps=16.0)
    for i in range(6):
        full, part = w8.clip(i, 20), w8.clip(i, 10, start_frame=5)
        np.testing.assert_array_equal(part.frames, full.frames[5:15])
        assert part.states == full.states[5:15]
        fast = w16.clip(i, 40)
        np.testing.assert_array_equal(fast.frames[::2], full.frames)
        assert [[s.x for s in f] for f in fast.states[::2]] == [[s.x for s in f] for f in full.states]
        # odd frames are new in-between instants, not copies
        assert fast.states[1][0].t == pytest.approx(1 / 16)


def test_states_table_rows():
    clip = ShapesWorld().clip(4, 6, start_frame=3)
    rows = states_table(clip.states, clip.start_frame)
    assert rows == clip.table()
    assert len(rows) == 6 * len(clip.scene.objects)
    assert rows[0]["frame"] == 3 and rows[-1]["frame"] == 8
    columns = {"frame", "obj", "t", "x", "y", "radius", "angle", "vx", "vy", "shape", "color",
               "color_r", "color_g", "color_b"}
    assert columns == set(rows[0])
    assert (rows[0]["color_r"], rows[0]["color_g"], rows[0]["color_b"]) == COLORS[rows[0]["color"]]


# ------------------------------------------------------------ motions

def test_bouncing_reflects_off_the_walls():
    obj = ObjectSpec("square", "blue", "medium", "bouncing", 0.3, 0.6, vx=0.41, vy=-0.27)
    _, states = render_scene(SceneSpec("black", (obj,)), np.arange(241) / 8.0, 64)
    x = np.array([f[0].x for f in states])
    vx = np.array([f[0].vx for f in states])
    r = obj.radius * 64
    assert x.min() >= r and x.max() <= 64 - r
    assert x.min() < r + 3 and x.max() > 64 - r - 3  # it reaches both walls
    flips = np.nonzero(np.sign(vx[1:]) != np.sign(vx[:-1]))[0]
    assert len(flips) >= 4
    assert set(np.abs(vx).round(9)) == {round(0.41 * 64, 9)}  # speed is kept
    # between flips the frame-to-frame motion agrees with the velocity sign
    steady = np.sign(vx[1:]) == np.sign(vx[:-1])
    assert np.all(np.sign(np.diff(x))[steady] == np.sign(vx[1:])[steady])


def test_gravity_conserves_energy_and_peak_height():
    obj = ObjectSpec("circle", "pink", "small", "gravity", 0.5, 0.3, vx=0.05, amplitude=0.5, period=1.1, phase=0.3)
    t = np.arange(0, 12, 1e-3)
    tr = trajectory(obj, t)
    g = 8 * obj.amplitude / obj.period**2
    floor = obj.y + obj.amplitude
    energy = g * (floor - tr["y"]) + 0.5 * tr["vy"] ** 2
    assert np.ptp(energy) < 1e-9 * energy.max()
    smooth = floor - tr["y"] > 0.01  # the derivative jumps at floor contact
    np.testing.assert_allclose(np.gradient(tr["y"], t)[smooth], tr["vy"][smooth], atol=0.02)
    assert tr["y"].max() <= floor + 1e-12
    # apexes: one per bounce, all at the same height
    interior = (tr["y"][1:-1] < tr["y"][:-2]) & (tr["y"][1:-1] <= tr["y"][2:])
    peaks = tr["y"][1:-1][interior]
    assert len(peaks) >= 10
    np.testing.assert_allclose(peaks, obj.y, atol=1e-5)
    # it falls: downward velocity grows before each floor contact
    assert tr["vy"].max() == pytest.approx(4 * obj.amplitude / obj.period, rel=1e-3)


def test_orbit_zigzag_and_spin_follow_their_definitions():
    t = np.arange(0, 10, 0.05)
    orbit = ObjectSpec("star", "yellow", "small", "orbiting", 0.5, 0.5, amplitude=0.25, period=-3.0, phase=0.1)
    tr = trajectory(orbit, t)
    np.testing.assert_allclose(np.hypot(tr["x"] - 0.5, tr["y"] - 0.5), 0.25)
    np.testing.assert_allclose(trajectory(orbit, t + 3.0)["x"], tr["x"], atol=1e-12)  # one turn per period

    zig = ObjectSpec("hexagon", "green", "small", "zigzagging", 0.2, 0.5, vx=0.3, amplitude=0.15, period=1.0)
    tz = trajectory(zig, t)
    assert tz["y"].min() == pytest.approx(0.35, abs=0.02) and tz["y"].max() == pytest.approx(0.65, abs=0.02)
    assert set(np.abs(tz["vx"]).round(9)) == {0.3}
    assert np.all(np.abs(tz["vy"]) == pytest.approx(4 * 0.15 / 1.0))

    spin = ObjectSpec("triangle", "red", "medium", "spinning", 0.5, 0.5, spin=1.5)
    ts = trajectory(spin, t)
    np.testing.assert_allclose(np.diff(ts["angle"]), 1.5 * 0.05)
    assert np.ptp(ts["x"]) == 0 and np.ptp(ts["y"]) == 0
    frames, _ = render_scene(SceneSpec("black", (spin,)), np.array([0.0, 0.5]), 64)
    assert not np.array_equal(frames[0], frames[1])  # the rotation is visible
    still = ObjectSpec("triangle", "red", "medium", "static", 0.5, 0.5)
    frames, _ = render_scene(SceneSpec("black", (still,)), np.array([0.0, 7.5]), 64)
    np.testing.assert_array_equal(frames[0], frames[1])


# ------------------------------------------------------------ preview

def test_make_grid_shape_hold_and_captions():
    world = ShapesWorld()
    clips = [world.clip(i, n) for i, n in enumerate((5, 3, 5, 2, 4))]
    grid = make_grid([c.frames for c in clips], [c.caption for c in clips], columns=2, scale=2)
    assert grid.dtype == np.uint8 and grid.ndim == 4 and grid.shape[0] == 5 and grid.shape[-1] == 3
    gap, tile = 2, 128
    assert grid.shape[2] == 2 * (tile + gap) + gap
    cell_h = (grid.shape[1] - gap) // 3 - gap
    caption_h = cell_h - tile
    assert caption_h >= 10 and grid.shape[1] == 3 * (cell_h + gap) + gap
    # first tile is the nearest-neighbour upscale; the second holds its last frame
    up = clips[0].frames.repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_array_equal(grid[:, gap:gap + tile, gap:gap + tile], up)
    x1 = gap + tile + gap
    np.testing.assert_array_equal(grid[4, gap:gap + tile, x1:x1 + tile], grid[2, gap:gap + tile, x1:x1 + tile])
    # caption band has text in it, and it does not change over time
    band = grid[:, gap + tile:gap + cell_h, gap:gap + tile]
    assert (band[0] > 128).any()
    np.testing.assert_array_equal(band[0], band[-1])
    # the unused sixth cell of the 2x3 grid stays empty
    y2 = gap + 2 * (cell_h + gap)
    assert len(np.unique(grid[0, y2:y2 + cell_h, x1:x1 + tile].reshape(-1, 3), axis=0)) == 1
    with pytest.raises(ConfigError):
        make_grid([clips[0].frames], ["a", "b"])
    with pytest.raises(ConfigError):
        make_grid([], [])
