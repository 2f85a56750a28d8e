"""The shapes world: a procedural, deterministic, offline video data set.

A scene is a background and 1-3 coloured shapes, each moving along a trajectory defined
analytically in continuous time (seconds), in units of the frame (0..1 across), so a frame at
time ``t`` is computed directly: clips of any length, any start frame and any frame rate show
the same motion, and a 16 fps clip's even frames equal the 8 fps clip's frames exactly.

Caption grammar (always the same, so it can be parsed back)::

    caption  := objects " on a " background-phrase " background"
    objects  := obj | obj " and " obj | obj ", " obj " and " obj
    obj      := "a " size " " colour " " shape " " motion-phrase
    background-phrase := colour                          (solid)
                       | colour " to " colour " gradient" (vertical, top colour first)

e.g. "a large red circle bouncing on a dark blue background". The size word is always
present. Motion phrases are :data:`MOTIONS` values.

Scene ``seed`` = split start + index (:data:`SPLITS`); randomness comes from
``np.random.default_rng(seed)`` only.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from vbench_flow.errors import ConfigError

MIN_FRAME_SIZE, MAX_FRAME_SIZE = 16, 1024  # the world's frame sides; real videos are resized into this range

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "hexagon")

COLORS: dict[str, tuple[int, int, int]] = {
    # object colours
    "red": (230, 30, 30),
    "green": (40, 200, 60),
    "blue": (40, 90, 250),
    "yellow": (250, 220, 30),
    "purple": (150, 60, 210),
    "orange": (255, 140, 20),
    "cyan": (30, 220, 230),
    "pink": (255, 120, 190),
    "white": (255, 255, 255),
    # background-only colours
    "black": (0, 0, 0),
    "dark blue": (15, 25, 90),
    "dark green": (15, 70, 30),
    "dark gray": (60, 60, 60),
}

OBJECT_COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink", "white")

# name -> (top colour, bottom colour); solid backgrounds have both ends equal.
BACKGROUNDS: dict[str, tuple[str, str]] = {
    "black": ("black", "black"),
    "dark blue": ("dark blue", "dark blue"),
    "dark green": ("dark green", "dark green"),
    "dark gray": ("dark gray", "dark gray"),
    "white": ("white", "white"),
    "dark blue to black": ("dark blue", "black"),
    "dark green to black": ("dark green", "black"),
    "dark gray to black": ("dark gray", "black"),
}

# motion name -> caption phrase
FIXED_MOTIONS = ("static", "spinning")  # motions whose centre never moves

MOTIONS: dict[str, str] = {
    "static": "standing still",
    "bouncing": "bouncing",
    "gravity": "falling under gravity",  # and rebounding off the floor, forever
    "orbiting": "orbiting",
    "zigzagging": "zigzagging",
    "spinning": "spinning in place",
}

# size name -> circumradius as a fraction of the frame side
SIZES: dict[str, float] = {"small": 0.08, "medium": 0.12, "large": 0.17}

SPLITS: dict[str, tuple[int, int]] = {
    "train": (0, 1_000_000),
    "val": (1_000_000, 1_100_000),
    "test": (2_000_000, 2_100_000),
}

SUPERSAMPLE = 4
MAX_OBJECTS = 3
# Objects closer than this (Euclidean RGB) to a background end would be hard to see.
MIN_CONTRAST = 120.0


@dataclass(frozen=True)
class ObjectSpec:
    """One object and its trajectory; positions and speeds are in frame units (0..1 across).

    Meaning of the numeric fields per motion:
      static: (x, y) fixed.  spinning: (x, y) fixed, angle = 2*pi*phase + spin*t.
      bouncing: starts at (x, y), velocity (vx, vy), reflects off the walls.
      gravity: x starts at x and drifts with vx (reflecting); the bounce apex is at height y,
        the floor ``amplitude`` below it; one bounce lasts ``period`` s; ``phase`` in [0, 1).
      orbiting: circle of radius ``amplitude`` around (x, y), ``period`` s per turn (sign is
        the direction), starting at angle 2*pi*phase.
      zigzagging: x starts at x with speed vx (reflecting); y = y + amplitude * triangle wave
        of ``period`` s starting at ``phase``.
    """

    shape: str
    color: str
    size: str
    motion: str
    x: float
    y: float
    vx: float = 0.0
    vy: float = 0.0
    amplitude: float = 0.0
    period: float = 1.0
    phase: float = 0.0
    spin: float = 0.0

    def __post_init__(self) -> None:
        _check_name(self.shape, SHAPES, "shape")
        _check_name(self.color, OBJECT_COLORS, "color")
        _check_name(self.size, tuple(SIZES), "size")
        _check_name(self.motion, tuple(MOTIONS), "motion")
        if self.motion in ("gravity", "zigzagging") and not (self.period > 0 and self.amplitude >= 0):
            raise ConfigError(f"{self.motion} needs period > 0 and amplitude >= 0", where="ObjectSpec")
        if self.motion == "orbiting" and not (abs(self.period) > 0 and self.amplitude >= 0):
            raise ConfigError("orbiting needs a non-zero period and amplitude >= 0", where="ObjectSpec",
                              fix="the period's sign sets the direction")
        if self.motion == "spinning" and self.shape == "circle":
            # a spinning circle looks static, so its caption would lie
            raise ConfigError("a circle cannot be spinning", where="ObjectSpec", fix="pick another shape or motion")
        lo, hi = self.radius, 1.0 - self.radius
        for name, (a, b) in self._extent().items():
            if a < lo - 1e-9 or b > hi + 1e-9:
                raise ConfigError(
                    f"{self.motion} {self.size} object leaves the frame along {name}: spans [{a:.3f}, {b:.3f}]",
                    where="ObjectSpec", fix=f"keep the centre's path inside [{lo:.3f}, {hi:.3f}]",
                )

    @property
    def radius(self) -> float:
        return SIZES[self.size]

    @property
    def phrase(self) -> str:
        return f"a {self.size} {self.color} {self.shape} {MOTIONS[self.motion]}"

    def _extent(self) -> dict[str, tuple[float, float]]:
        """Range of the centre along each axis, where the motion does not fold it into the frame."""
        if self.motion in ("static", "spinning", "bouncing"):
            return {"x": (self.x, self.x), "y": (self.y, self.y)}
        if self.motion == "gravity":
            return {"x": (self.x, self.x), "y": (self.y, self.y + self.amplitude)}
        a = self.amplitude
        if self.motion == "orbiting":
            return {"x": (self.x - a, self.x + a), "y": (self.y - a, self.y + a)}
        return {"x": (self.x, self.x), "y": (self.y - a, self.y + a)}  # zigzagging


@dataclass(frozen=True)
class SceneSpec:
    """A background and the objects on it.

    Drawing order (see :func:`draw_order`): fixed objects (static, spinning) first, then moving
    ones, each group in tuple order, so a moving object is never hidden for good.
    """

    background: str
    objects: tuple[ObjectSpec, ...]
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_name(self.background, tuple(BACKGROUNDS), "background")
        if not 1 <= len(self.objects) <= MAX_OBJECTS:
            raise ConfigError(f"a scene has 1-{MAX_OBJECTS} objects, got {len(self.objects)}", where="SceneSpec")
        colors = [o.color for o in self.objects]
        if len(set(colors)) != len(colors):
            raise ConfigError(f"object colours must differ, got {colors}", where="SceneSpec")
        clash = set(colors) & set(BACKGROUNDS[self.background])
        if clash:
            raise ConfigError(f"object colour {sorted(clash)} equals the background's", where="SceneSpec")

    def draw_order(self) -> list[int]:
        fixed = [i for i, o in enumerate(self.objects) if o.motion in FIXED_MOTIONS]
        return fixed + [i for i in range(len(self.objects)) if i not in fixed]

    @property
    def caption(self) -> str:
        phrases = [o.phrase for o in self.objects]
        objects = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        top, bottom = BACKGROUNDS[self.background]
        background = top if top == bottom else f"{top} to {bottom} gradient"
        return f"{objects} on a {background} background"


@dataclass(frozen=True)
class ObjectState:
    """Ground truth for one object in one frame; x, y, radius in pixels (pixel i spans [i, i+1))."""

    obj: int
    t: float
    shape: str
    color: str
    rgb: tuple[int, int, int]
    x: float
    y: float
    radius: float
    angle: float  # radians, unwrapped; positive turns clockwise on screen (y points down)
    vx: float  # pixels per second
    vy: float


@dataclass
class Clip:
    """Frames (T, H, W, 3) uint8 of one scene, with per-frame ground truth ``states[frame][obj]``."""

    frames: np.ndarray
    fps: float
    caption: str
    scene: SceneSpec
    states: list[list[ObjectState]]
    prompt_id: str
    start_frame: int = 0

    @property
    def times(self) -> np.ndarray:
        return frame_times(self.start_frame, len(self.frames), self.fps)

    def table(self) -> list[dict[str, Any]]:
        return states_table(self.states, self.start_frame)


def _check_name(value: str, valid: tuple[str, ...], what: str) -> None:
    if value not in valid:
        raise ConfigError(f"unknown {what} {value!r}", where="shapes world", fix=f"use one of {', '.join(valid)}")


def frame_times(start_frame: int, num_frames: int, fps: float) -> np.ndarray:
    # integer / fps is correctly rounded, so the same instant gives the same float at any fps
    return np.arange(start_frame, start_frame + num_frames, dtype=np.float64) / float(fps)


def states_table(states: list[list[ObjectState]], start_frame: int = 0) -> list[dict[str, Any]]:
    """Flat rows (one per frame and object) ready for ``pandas.DataFrame``."""
    rows = []
    for i, frame_states in enumerate(states):
        for s in frame_states:
            row = asdict(s)
            r, g, b = row.pop("rgb")
            rows.append({"frame": start_frame + i, **row, "color_r": r, "color_g": g, "color_b": b})
    return rows


# ---------------------------------------------------------------- trajectories

def _fold(p0: float, v: float, t: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Constant-velocity motion reflected between lo and hi: position and velocity."""
    span = hi - lo
    if span <= 0:
        return np.full_like(t, lo), np.zeros_like(t)
    u = np.mod(p0 - lo + v * t, 2 * span)
    back = u > span
    return np.where(back, lo + 2 * span - u, lo + u), np.where(back, -v, v)


def trajectory(obj: ObjectSpec, t: np.ndarray) -> dict[str, np.ndarray]:
    """Centre x, y, velocity vx, vy (frame units, per second) and angle (radians) at times t."""
    t = np.asarray(t, dtype=np.float64)
    lo, hi = obj.radius, 1.0 - obj.radius
    zero = np.zeros_like(t)
    x, y, vx, vy, angle = np.full_like(t, obj.x), np.full_like(t, obj.y), zero, zero, zero
    if obj.motion == "spinning":
        angle = 2 * math.pi * obj.phase + obj.spin * t
    elif obj.motion == "bouncing":
        x, vx = _fold(obj.x, obj.vx, t, lo, hi)
        y, vy = _fold(obj.y, obj.vy, t, lo, hi)
    elif obj.motion == "gravity":
        x, vx = _fold(obj.x, obj.vx, t, lo, hi)
        # height above the floor is a parabola restarted at each bounce with the speed it landed
        # with, so g*height + v^2/2 is the same at every instant (g = 8*h / period^2)
        s = np.mod(t / obj.period + obj.phase, 1.0)
        h, T = obj.amplitude, obj.period
        y = obj.y + h - 4 * h * s * (1 - s)
        vy = -4 * h / T * (1 - 2 * s)
    elif obj.motion == "orbiting":
        w = 2 * math.pi / obj.period
        theta = 2 * math.pi * obj.phase + w * t
        x = obj.x + obj.amplitude * np.cos(theta)
        y = obj.y + obj.amplitude * np.sin(theta)
        vx, vy = -obj.amplitude * w * np.sin(theta), obj.amplitude * w * np.cos(theta)
    elif obj.motion == "zigzagging":
        x, vx = _fold(obj.x, obj.vx, t, lo, hi)
        frac = np.mod(t / obj.period + obj.phase, 1.0)
        y = obj.y + obj.amplitude * (4 * np.abs(frac - 0.5) - 1)
        vy = obj.amplitude * 4 / obj.period * np.where(frac >= 0.5, 1.0, -1.0)
    return {"x": x, "y": y, "vx": vx, "vy": vy, "angle": angle}


# ---------------------------------------------------------------- sampling

def _uniform_abs(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Magnitude in [lo, hi) with a random sign."""
    return float(rng.uniform(lo, hi)) * (1.0 if rng.random() < 0.5 else -1.0)


def _sample_object(rng: np.random.Generator, color: str, placed: list[ObjectSpec]) -> ObjectSpec:
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    size = tuple(SIZES)[int(rng.integers(len(SIZES)))]
    motions = [m for m in MOTIONS if not (m == "spinning" and shape == "circle")]
    motion = motions[int(rng.integers(len(motions)))]
    r = SIZES[size]
    lo, hi = r, 1.0 - r
    common = {"shape": shape, "color": color, "size": size, "motion": motion}
    if motion in FIXED_MOTIONS:
        x, y = _free_spot(rng, r, placed)
        spin = _uniform_abs(rng, 0.8, 2.5) if motion == "spinning" else 0.0
        return ObjectSpec(**common, x=x, y=y, phase=float(rng.random()), spin=spin)
    if motion == "bouncing":
        speed, heading = rng.uniform(0.2, 0.45), rng.uniform(math.radians(15), math.radians(75))
        quadrant = int(rng.integers(4)) * math.pi / 2  # keeps headings away from the axes
        return ObjectSpec(
            **common, x=float(rng.uniform(lo, hi)), y=float(rng.uniform(lo, hi)),
            vx=float(speed * math.cos(heading + quadrant)), vy=float(speed * math.sin(heading + quadrant)),
        )
    if motion == "gravity":
        h = float(rng.uniform(0.35, 0.9)) * (hi - lo)
        g = float(rng.uniform(1.5, 3.0))  # frame units / s^2
        return ObjectSpec(
            **common, x=float(rng.uniform(lo, hi)), y=hi - h, vx=_uniform_abs(rng, 0.03, 0.12),
            amplitude=h, period=2 * math.sqrt(2 * h / g), phase=float(rng.random()),
        )
    if motion == "orbiting":
        a = float(rng.uniform(0.1, min(0.3, 0.5 - r)))
        return ObjectSpec(
            **common, x=float(rng.uniform(lo + a, hi - a)), y=float(rng.uniform(lo + a, hi - a)),
            amplitude=a, period=_uniform_abs(rng, 2.0, 5.0), phase=float(rng.random()),
        )
    a = float(rng.uniform(0.08, min(0.2, 0.5 - r)))  # zigzagging
    return ObjectSpec(
        **common, x=float(rng.uniform(lo, hi)), y=float(rng.uniform(lo + a, hi - a)),
        vx=_uniform_abs(rng, 0.15, 0.35), amplitude=a, period=float(rng.uniform(0.8, 2.0)),
        phase=float(rng.random()),
    )


def _free_spot(rng: np.random.Generator, r: float, placed: list[ObjectSpec]) -> tuple[float, float]:
    """A position for a fixed object not overlapping other fixed objects (which would hide it)."""
    fixed = [o for o in placed if o.motion in FIXED_MOTIONS]
    x = y = 0.5
    for _ in range(200):
        x, y = float(rng.uniform(r, 1 - r)), float(rng.uniform(r, 1 - r))
        if all(math.hypot(x - o.x, y - o.y) >= r + o.radius for o in fixed):
            break
    return x, y


def _contrast(color: str, background: str) -> float:
    rgb = np.array(COLORS[color], dtype=float)
    return min(float(np.linalg.norm(rgb - COLORS[end])) for end in BACKGROUNDS[background])


def sample_scene(seed: int, max_objects: int = MAX_OBJECTS) -> SceneSpec:
    """The scene of one seed: every draw comes from ``np.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    background = tuple(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    palette = [c for c in OBJECT_COLORS if _contrast(c, background) >= MIN_CONTRAST]
    count = int(rng.integers(1, max_objects + 1))
    colors = [palette[i] for i in rng.permutation(len(palette))[:count]]
    objects: list[ObjectSpec] = []
    for color in colors:
        objects.append(_sample_object(rng, color, objects))
    return SceneSpec(background=background, objects=tuple(objects), seed=seed)


# ---------------------------------------------------------------- rendering

def _unit_polygon(shape: str) -> np.ndarray:
    """Vertices (k, 2) with circumradius 1, pointing up on screen (y down)."""
    def ring(n: int, start: float, radii: tuple[float, ...] = (1.0,)) -> np.ndarray:
        a = start + 2 * math.pi * np.arange(n) / n
        r = np.resize(np.array(radii), n)
        return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)

    if shape == "square":
        return ring(4, math.pi / 4)
    if shape == "triangle":
        return ring(3, -math.pi / 2)
    if shape == "diamond":
        # narrower than tall, so it never looks like a square turned 45 degrees
        return np.array([[0.0, -1.0], [0.6, 0.0], [0.0, 1.0], [-0.6, 0.0]])
    if shape == "star":
        return ring(10, -math.pi / 2, (1.0, 0.45))
    if shape == "hexagon":
        return ring(6, 0.0)
    raise ValueError(shape)


_POLYGONS = {s: _unit_polygon(s) for s in SHAPES if s != "circle"}


@lru_cache(maxsize=64)
def _background_image(background: str, side: int) -> Image.Image:
    top, bottom = (np.array(COLORS[c], dtype=np.float64) for c in BACKGROUNDS[background])
    w = ((np.arange(side) + 0.5) / side)[:, None]
    rows = np.rint(top * (1 - w) + bottom * w).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(np.broadcast_to(rows[:, None, :], (side, side, 3))))


def _draw_object(draw: ImageDraw.ImageDraw, shape: str, rgb: tuple[int, int, int], x: float, y: float,
                 r: float, angle: float) -> None:
    if shape == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=rgb)
        return
    c, s = math.cos(angle), math.sin(angle)
    v = _POLYGONS[shape] @ np.array([[c, s], [-s, c]]) * r + (x, y)
    draw.polygon(v.ravel().tolist(), fill=rgb)


def render_scene(scene: SceneSpec, times: np.ndarray, size: int) -> tuple[np.ndarray, list[list[ObjectState]]]:
    """Frames (T, size, size, 3) uint8 and ground-truth states[frame][obj] at ``times`` (s).

    Each frame depends only on its own time, so rendering is exact across clip lengths,
    start frames and frame rates.
    """
    times = np.asarray(times, dtype=np.float64)
    tracks = [trajectory(o, times) for o in scene.objects]
    frames = np.empty((len(times), size, size, 3), dtype=np.uint8)
    states: list[list[ObjectState]] = []
    background = _background_image(scene.background, size * SUPERSAMPLE)
    order = scene.draw_order()
    for i, t in enumerate(times.tolist()):
        frame_states = [
            ObjectState(
                obj=k, t=t, shape=o.shape, color=o.color, rgb=COLORS[o.color],
                x=float(tr["x"][i]) * size, y=float(tr["y"][i]) * size, radius=o.radius * size,
                angle=float(tr["angle"][i]), vx=float(tr["vx"][i]) * size, vy=float(tr["vy"][i]) * size,
            )
            for k, (o, tr) in enumerate(zip(scene.objects, tracks))
        ]
        img = background.copy()
        draw = ImageDraw.Draw(img)
        for k in order:
            st = frame_states[k]
            ss = SUPERSAMPLE
            _draw_object(draw, st.shape, st.rgb, st.x * ss, st.y * ss, st.radius * ss, st.angle)
        frames[i] = np.asarray(img.resize((size, size), Image.BOX))
        states.append(frame_states)
    return frames, states


# ---------------------------------------------------------------- the world

class ShapesWorld:
    """One split of the shapes world at a given frame size and rate.

    Scenes depend only on (split, index, max_objects), never on ``size`` or ``fps``.
    """

    def __init__(self, split: str = "train", size: int = 64, fps: float = 8.0, max_objects: int = 3) -> None:
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}", where="shapes world", fix=f"use one of {', '.join(SPLITS)}")
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or not 16 <= size <= 1024:
            raise ConfigError(f"size must be an integer in 16..1024, got {size!r}", where="shapes world",
                              fix="use e.g. size: 64")
        if not isinstance(fps, numbers.Real) or isinstance(fps, bool) or not math.isfinite(fps) or fps <= 0:
            raise ConfigError(f"fps must be a positive number, got {fps!r}", where="shapes world",
                              fix="use e.g. fps: 8")
        if not isinstance(max_objects, (int, np.integer)) or not 1 <= max_objects <= MAX_OBJECTS:
            raise ConfigError(f"max_objects must be in 1..{MAX_OBJECTS}, got {max_objects!r}", where="shapes world")
        self.split, self.size, self.fps, self.max_objects = split, int(size), float(fps), int(max_objects)
        self._start, self._stop = SPLITS[split]

    def __len__(self) -> int:
        return self._stop - self._start

    def __repr__(self) -> str:
        return f"ShapesWorld(split={self.split!r}, size={self.size}, fps={self.fps}, max_objects={self.max_objects})"

    def _check_index(self, index: int) -> int:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool) or not 0 <= index < len(self):
            raise ConfigError(f"index {index!r} is outside split {self.split!r} (0..{len(self) - 1})",
                              where="shapes world", fix="use a smaller index")
        return int(index)

    def seed(self, index: int) -> int:
        return self._start + self._check_index(index)

    def scene(self, index: int) -> SceneSpec:
        return _cached_scene(self.seed(index), self.max_objects)

    def caption(self, index: int) -> str:
        return self.scene(index).caption

    def prompt_id(self, index: int) -> str:
        return f"{self.split}-{self._check_index(index):06d}"

    def index_of(self, prompt_id: str) -> int:
        """Inverse of :meth:`prompt_id`."""
        prefix = f"{self.split}-"
        digits = prompt_id[len(prefix):] if isinstance(prompt_id, str) and prompt_id.startswith(prefix) else ""
        if not (digits.isascii() and digits.isdigit() and len(digits) >= 6 and int(digits) < len(self)):
            raise ConfigError(f"{prompt_id!r} is not a prompt id of split {self.split!r}", where="shapes world",
                              fix=f"ids look like {self.prompt_id(0)!r}")
        index = int(digits)
        if self.prompt_id(index) != prompt_id:  # e.g. extra leading zeros
            raise ConfigError(f"{prompt_id!r} is not a prompt id of split {self.split!r}", where="shapes world",
                              fix=f"ids look like {self.prompt_id(0)!r}")
        return index

    def clip(self, index: int, num_frames: int, start_frame: int = 0) -> Clip:
        """Frames start_frame .. start_frame + num_frames - 1 of scene ``index`` (frame k at k / fps s)."""
        if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
            raise ConfigError(f"num_frames must be a positive integer, got {num_frames!r}", where="shapes world")
        if not isinstance(start_frame, (int, np.integer)) or start_frame < 0:
            raise ConfigError(f"start_frame must be a non-negative integer, got {start_frame!r}", where="shapes world")
        scene = self.scene(index)
        frames, states = render_scene(scene, frame_times(int(start_frame), int(num_frames), self.fps), self.size)
        return Clip(frames=frames, fps=self.fps, caption=scene.caption, scene=scene, states=states,
                    prompt_id=self.prompt_id(index), start_frame=int(start_frame))


@lru_cache(maxsize=4096)
def _cached_scene(seed: int, max_objects: int) -> SceneSpec:
    return sample_scene(seed, max_objects)
