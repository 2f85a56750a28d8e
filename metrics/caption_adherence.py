"""Caption adherence: does each frame still show what the caption says? (shapes-world captions; own definition)

No learned network: the caption is parsed, and each frame's objects come from
:func:`metrics.object_identity.detect_objects` (background fit, connected colour regions), named by
colour and shape. A caption names 1-3 objects, each with a size, one of the shapes world's
:data:`OBJECT_COLORS` and one of its shapes, in the shapes world's grammar ("a large red circle
bouncing and a small blue star spinning in place on a black background").

Per frame:

1. Every detected object gets a colour name: the nearest :data:`PALETTE` colour (Euclidean RGB) to
   its dominant colour, or none when that is farther than :data:`MAX_COLOUR_DISTANCE` (60, under
   the 81 between the closest palette pair, yellow and orange); and a shape:
   :func:`metrics.shape_geometry.classify_shape` of the outline it shows (objects in contact or
   hiding one another show partial outlines: real clips lose some shape matches there, which is
   part of their ceiling).
2. Captioned objects are matched one-to-one to detected ones by Hungarian assignment on cost
   ``3 [colour differs] + [shape differs] - area / 1000`` (colour outweighs two shape mismatches, so
   a match never trades an object shown in its colour for two shapes; ties go to the larger
   object). A captioned object left without a detection is *missing*.
3. A captioned object is *shown in its colour* when its match has the caption's colour, and *in its
   shape* when its match has the caption's shape. It is *duplicated* when more than one detection
   carries its colour.

Values per clip, each the mean over frames (or over (frame, captioned object) pairs) and each with
its series over time, higher is better:

- ``caption_colour_recall``: captioned objects shown in their colour;
- ``caption_shape_accuracy``: captioned objects shown in their shape (a missing object counts as wrong);
  like colour recall, every frame names every captioned object, so both are means over frames;
- ``caption_count_accuracy``: frames showing exactly as many objects as the caption names;
- ``object_permanence``: frames where every captioned object is shown exactly once, in its colour and
  shape (a captioned object missing, duplicated, or changed in colour or shape breaks the frame);
- ``caption_adherence``: per frame, captioned objects shown in colour and shape, over the larger of the
  caption's and the frame's object counts (so extra objects cost as much as missing ones);
- ``caption_hold_seconds``: when the clip first stops matching its caption, in seconds from its start:
  the first frame of the first run of frames that break permanence or the count and that lasts at
  least ``min_mismatch_seconds`` (1 s) or to the clip's end (a clip that loses an object in its
  last second has stopped matching too); a clip that never does holds for its whole length, ``T / fps``.

Real clips give the ceiling: objects that overlap hide one another for a few frames. On 200 test
clips of 5 s: adherence 0.92, colour recall 0.99, shape accuracy 0.93, count accuracy 0.96,
object permanence 0.84, hold 4.4 of 5.1 s (a third of object-frames have another object within
1.5 px of their outline; ``tests/test_caption_adherence.py`` holds separated objects to 98 %).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from pydantic import Field
from scipy.optimize import linear_sum_assignment

from metrics.object_identity import FOREGROUND_DISTANCE, DetectingState, Detection, share_detections
from metrics.shape_geometry import SHAPES
from metrics.streaming import ClipContext, Metric, MetricArgs, MetricResult, StreamingMetric
from metrics.video import check_video

# Copies of the shapes world's object colours (metrics never imports the harness; a test checks they agree).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30), "green": (40, 200, 60), "blue": (40, 90, 250), "yellow": (250, 220, 30),
    "purple": (150, 60, 210), "orange": (255, 140, 20), "cyan": (30, 220, 230), "pink": (255, 120, 190),
    "white": (255, 255, 255),
}
OBJECT_COLORS: tuple[str, ...] = tuple(PALETTE)
SIZE_WORDS = ("small", "medium", "large")
MAX_COLOUR_DISTANCE = 60.0
MIN_MISMATCH_SECONDS = 1.0
_AREA_TIE_BREAK = 1e-3
COLOUR_WEIGHT = 3.0  # a colour mismatch costs more than two shape mismatches

VERSION = ("caption-adherence/1 (own definition: shapes-world captions; object-identity/1 detections named by the "
           f"nearest palette colour within RGB {MAX_COLOUR_DISTANCE:g} and by moment-signature shape; Hungarian "
           "match on 3 x colour + shape mismatch; missing objects count as wrong; a mismatch to the clip's end ends the hold)")
EXTRACTOR = "none (background subtraction + palette colours + moment shape signatures)"

# one object phrase: size, colour and shape words, then its motion phrase (any words but "and")
_OBJECT = re.compile(rf"a ({'|'.join(SIZE_WORDS)}) ({'|'.join(OBJECT_COLORS)}) ({'|'.join(SHAPES)})( [a-z ]+)?")


@dataclass(frozen=True)
class CaptionObject:
    size: str
    colour: str
    shape: str


def parse_caption(caption: str) -> tuple[CaptionObject, ...]:
    """The objects a shapes-world caption names, in order; ValueError for any other text."""
    objects_part, on, background = caption.partition(" on a ")
    phrases = re.split(r", | and ", objects_part)
    matches = [_OBJECT.fullmatch(phrase) for phrase in phrases]
    if not (on and background.endswith(" background")) or not all(matches):
        raise ValueError(f"prompt {caption!r} is not a shapes-world caption (\"a <size> <colour> <shape> <motion>"
                         f"[, ... and ...] on a <colour> background\" with colours {', '.join(OBJECT_COLORS)} and "
                         f"shapes {', '.join(SHAPES)}); caption adherence needs one")
    found = tuple(CaptionObject(*match.groups()[:3]) for match in matches)
    colours = [obj.colour for obj in found]
    if len(set(colours)) != len(colours):
        raise ValueError(f"prompt {caption!r} names the colour of more than one object ({', '.join(colours)}); caption "
                         "adherence tells objects apart by colour, as the shapes world does, so each needs its own")
    return found


def colour_name(rgb: tuple[float, float, float]) -> str | None:
    """The nearest palette colour, or None when even that is farther than :data:`MAX_COLOUR_DISTANCE`."""
    names = list(PALETTE)
    distances = np.linalg.norm(np.array([PALETTE[n] for n in names], dtype=np.float64) - np.asarray(rgb), axis=1)
    nearest = int(np.argmin(distances))
    return names[nearest] if distances[nearest] <= MAX_COLOUR_DISTANCE else None


@dataclass(frozen=True)
class FrameCheck:
    """What one frame shows of its caption, per captioned object (in caption order)."""

    in_colour: tuple[bool, ...]
    in_shape: tuple[bool, ...]
    colour_copies: tuple[int, ...]  # detections carrying the object's colour
    detected: int

    @property
    def count_ok(self) -> bool:
        return self.detected == len(self.in_colour)

    @property
    def permanent(self) -> bool:
        return all(self.in_colour) and all(self.in_shape) and all(c == 1 for c in self.colour_copies)

    @property
    def matches(self) -> bool:
        return self.permanent and self.count_ok

    @property
    def adherence(self) -> float:
        shown = sum(c and s for c, s in zip(self.in_colour, self.in_shape))
        return shown / max(len(self.in_colour), self.detected)


def check_frame(caption: tuple[CaptionObject, ...], found: list[Detection]) -> FrameCheck:
    """Match one frame's detections to the caption's objects (see the module doc)."""
    colours = [colour_name(d.rgb) for d in found]
    in_colour, in_shape = [False] * len(caption), [False] * len(caption)
    if found:
        cost = np.array([[COLOUR_WEIGHT * float(colour != obj.colour) + float(d.shape != obj.shape)
                          - _AREA_TIE_BREAK * d.area for d, colour in zip(found, colours)] for obj in caption])
        for i, j in zip(*linear_sum_assignment(cost)):
            in_colour[i] = colours[j] == caption[i].colour
            in_shape[i] = found[j].shape == caption[i].shape
    copies = tuple(sum(c == obj.colour for c in colours) for obj in caption)
    return FrameCheck(tuple(in_colour), tuple(in_shape), copies, len(found))


def first_mismatch(matches: list[bool], run: int) -> int | None:
    """The first frame of the first run of frames that do not match and that is at least ``run`` long or
    lasts to the end; None if there is none."""
    start = None
    for frame, ok in enumerate(matches):
        if ok:
            start = None
            continue
        start = frame if start is None else start
        if frame - start + 1 >= run:
            return start
    return start


QUANTITIES = ("adherence", "colour_recall", "shape_accuracy", "count_accuracy", "permanence", "hold_seconds")


def summarise(checks: list[FrameCheck], fps: float, quantity: str,
              min_mismatch_seconds: float = MIN_MISMATCH_SECONDS) -> MetricResult:
    """A clip's value and series of one quantity from its frames' checks."""
    times = [frame / fps for frame in range(len(checks))]
    if quantity == "hold_seconds":
        matches = [c.matches for c in checks]
        start = first_mismatch(matches, max(1, math.ceil(min_mismatch_seconds * fps - 1e-9)))
        return MetricResult(len(checks) / fps if start is None else start / fps,
                            [(t, float(m)) for t, m in zip(times, matches)])
    per_frame_values = {
        "adherence": lambda c: c.adherence,
        "colour_recall": lambda c: float(np.mean(c.in_colour)),
        "shape_accuracy": lambda c: float(np.mean(c.in_shape)),
        "count_accuracy": lambda c: float(c.count_ok),
        "permanence": lambda c: float(c.permanent),
    }[quantity]
    values = [per_frame_values(c) for c in checks]
    return MetricResult(float(np.mean(values)), list(zip(times, values)))


class CaptionCheck(DetectingState):
    """Each frame is checked against the caption as the clip streams (a few numbers per frame are
    kept); detections are shared with the object-identity metrics of the clip."""

    extractor, version = EXTRACTOR, VERSION
    higher_is_better = True
    min_frames = 1

    def __init__(self, fps: float, prompt: str, quantity: str = "adherence", *,
                 min_mismatch_seconds: float = MIN_MISMATCH_SECONDS, cache: dict | None = None,
                 owner: object = None) -> None:
        if quantity not in QUANTITIES:
            raise ValueError(f"quantity must be one of {', '.join(QUANTITIES)}, got {quantity!r}")
        if not min_mismatch_seconds > 0:
            raise ValueError(f"min_mismatch_seconds must be positive, got {min_mismatch_seconds}")
        self.name = "caption_" + quantity if quantity != "permanence" else "object_permanence"
        self.caption = parse_caption(prompt)
        self.quantity, self.min_mismatch_seconds = quantity, min_mismatch_seconds
        self.foreground_distance = FOREGROUND_DISTANCE
        self.cache, self.cache_key = share_detections(cache, FOREGROUND_DISTANCE, owner or self)
        super().__init__(fps)

    def reset(self) -> None:
        self.checks: list[FrameCheck] = []
        self.frame_shape: tuple[int, int] | None = None

    def update(self, chunk: np.ndarray) -> None:
        self.checks += [check_frame(self.caption, frame_found) for frame_found in self.detect(chunk)]

    def merge(self, following: StreamingMetric) -> None:
        if type(following) is not type(self) or (following.caption, following.quantity, following.min_mismatch_seconds) != (
                self.caption, self.quantity, self.min_mismatch_seconds):
            raise TypeError(f"{self.name}: cannot merge the state of another metric, caption or option")
        if None not in (self.frame_shape, following.frame_shape) and following.frame_shape != self.frame_shape:
            raise ValueError(f"{self.name}: merged frames are {following.frame_shape}, earlier frames {self.frame_shape}")
        self.frame_shape = self.frame_shape or following.frame_shape
        self.checks += following.checks

    def compute(self) -> MetricResult:
        if not self.checks:
            raise ValueError(f"{self.name}: needs at least 1 frame")
        return summarise(self.checks, self.fps, self.quantity, self.min_mismatch_seconds)


def caption_adherence(frames: np.ndarray, caption: str, fps: float = 8.0, quantity: str = "adherence") -> float:
    """One quantity (see :data:`QUANTITIES`) of one uint8 (T, H, W, 3) video against its shapes-world caption."""
    return caption_scores(frames, caption, fps, (quantity,))[quantity]


def caption_scores(frames: np.ndarray, caption: str, fps: float, quantities: tuple[str, ...]) -> dict[str, float]:
    """Several quantities of one video against its caption, from one detection pass."""
    video, shared = check_video(frames), {}
    return {q: CaptionCheck(fps, caption, q, cache=shared).score(video).value for q in quantities}


class HoldArgs(MetricArgs):
    min_mismatch_seconds: float = Field(MIN_MISMATCH_SECONDS, gt=0)


class CaptionAdherenceMetric(Metric):
    name = "caption_adherence"
    summary = ("per frame, captioned objects shown in their colour and shape over the larger of the caption's and "
               "the frame's object counts (shapes-world captions; own definition)")
    higher_is_better = True
    min_frames = 1
    quantity = "adherence"
    extractor, version = EXTRACTOR, VERSION

    def __init__(self, args: MetricArgs | None = None) -> None:
        super().__init__(args)
        if self.quantity == "hold_seconds":
            self.version = f"{VERSION}; mismatch runs >= {self.args.min_mismatch_seconds:g} s"

    def streaming(self, ctx: ClipContext) -> CaptionCheck:
        return CaptionCheck(ctx.fps, ctx.prompt, self.quantity, cache=ctx.shared, owner=self,
                            **self.args.model_dump())


def _caption_metric(quantity: str, name: str, summary: str, args: type[MetricArgs] | None = None) -> type[Metric]:
    attributes = {"name": name, "summary": summary, "quantity": quantity}
    if args is not None:
        attributes["Args"] = args
    cls = type(f"{''.join(p.title() for p in name.split('_'))}Metric", (CaptionAdherenceMetric,), attributes)
    return cls


CaptionColourRecallMetric = _caption_metric(
    "colour_recall", "caption_colour_recall", "captioned objects shown in their colour, per (frame, object)")
CaptionShapeAccuracyMetric = _caption_metric(
    "shape_accuracy", "caption_shape_accuracy",
    "captioned objects shown in their shape, per (frame, object); a missing object counts as wrong")
CaptionCountAccuracyMetric = _caption_metric(
    "count_accuracy", "caption_count_accuracy", "frames showing exactly as many objects as the caption names")
ObjectPermanenceMetric = _caption_metric(
    "permanence", "object_permanence",
    "frames where every captioned object is shown exactly once, in its colour and shape")
CaptionHoldSecondsMetric = _caption_metric(
    "hold_seconds", "caption_hold_seconds",
    "seconds until the clip first stops matching its caption for min_mismatch_seconds (the whole clip if never)",
    HoldArgs)

CAPTION_METRICS = (CaptionAdherenceMetric, CaptionColourRecallMetric, CaptionShapeAccuracyMetric,
                   CaptionCountAccuracyMetric, ObjectPermanenceMetric, CaptionHoldSecondsMetric)
