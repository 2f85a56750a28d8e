"""Object identity stability: colour and size of each tracked object over time.

This is vbench-flow's own definition (not a published metric), meant for shapes-world-like videos:
a few flat-coloured objects over a solid or smoothly graded background. Colours are RGB on the
0-255 scale, distances Euclidean; pixel (row, col) has centre (col + 0.5, row + 0.5), as in the
shapes world's ground truth.

Detection, per frame:

1. Background: per channel, a plane ``a + b*x + c*y`` fitted to the border ring (first and last
   row and column): it starts as the ring's per-channel median and is refitted
   :data:`BACKGROUND_REFITS` (3) times by least squares on the ring pixels within the foreground
   distance of the current fit, so objects touching the border do not pull it.
2. Foreground: pixels farther than ``foreground_distance`` (:data:`FOREGROUND_DISTANCE` = 60, half
   the shapes world's minimum object/background contrast of 120) from the background fit.
3. Regions: 8-connected foreground components (``scipy.ndimage.label``) of at least
   ``max(1, round(0.002 * H * W))`` pixels (8 at 64x64). A region is *mixed* (objects in contact)
   when at least that many of its interior pixels (the region eroded by one pixel, 4-neighbour;
   all its pixels if none remain) lie farther than the foreground distance from the interior's
   per-channel median colour; a mixed region is split by 2-means on colour into connected parts of
   the minimum area (at most :data:`MAX_SPLIT_DEPTH` = 2 levels), each again a region.
4. Measurements of a region: colour = mean RGB of its interior pixels within the foreground
   distance of their median (its dominant colour, untinted by anti-aliased edges); each pixel of
   the region and of the background pixels of its one-pixel (8-neighbour) rim gets the share
   ``clip(|I - B| / |C - B|, 0, 1)`` (I pixel, B background fit, C the region's colour), so
   anti-aliased edges count by how much of the object they hold; area = sum of shares / (H*W);
   centroid = share-weighted mean of the pixel centres; shape = :func:`metrics.shape_geometry.classify_shape`
   of the share-weighted pixels (for a part of a mixed region, of the outline it shows).

Tracking, frame by frame: regions from mixed components are not used (contact, overlap and
partial occlusion make both colour and visible area unreliable; the frame is skipped for those
objects). Each live track predicts its centroid by constant velocity from its last two matches
(its last position when it has one). A region is in a track's gate when its distance to the
prediction or to the track's last position is at most ``gate_fraction * max(H, W)`` (0.25; the
last position keeps a bouncing object in its gate). Tracks and regions are matched by Hungarian
assignment (``scipy.optimize.linear_sum_assignment``) on the distance to the prediction, within the
gate. A track left unmatched whose nearest in-gate region went to another track signals a merge
or full occlusion: that match is dropped for this frame. A region left unmatched starts a new
track (tracks start at their first appearance). A track unmatched in a frame has no measurement
there; after :data:`MAX_GAP_FRAMES` (2) unmatched frames in a row it ends, so an object that left
or stayed hidden longer comes back as a new track. Tracks matched in fewer than
``min_track_frames`` (3) frames are ignored as noise.

Values: per track, with ``c_0`` and ``a_0`` its colour and area in its first matched frame, at
each later matched frame t:

- colour change ``|c_t - c_0| / (255 * sqrt(3))``, in [0, 1];
- size change ``|ln(a_t / a_0)|``.

The first frame of a track is its reference, not a measurement. A video's value is the mean over
all (kept track, later matched frame) pairs, i.e. the mean over tracks weighted by their measured
frames; its series gives, for each frame with a measurement, the mean over the tracks measured
there. Lower is better; 0 means every object kept its colour and size. A video with no object, or
no track of ``min_track_frames``, raises ValueError (never a silent 0).

On shapes-world ground-truth clips (41 frames, test split) the colour change is ~0 and the size
change about 0.01 (rasterisation of moving and spinning polygons); rare multi-object clips whose
objects cross while moving fast reach 0.2 (a tracker swap).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from metrics.shape_geometry import classify_shape, signature
from metrics.streaming import (ClipContext, Metric, MetricResult, StreamingMetric, frame_digest, rows_once_per_clip,
                               share_with_others)
from metrics.video import check_video

FOREGROUND_DISTANCE = 60.0  # Euclidean RGB, 0-255 scale
MIN_AREA_FRACTION = 0.002  # of the frame: 8 px at 64x64
GATE_FRACTION = 0.25  # of max(H, W)
MIN_TRACK_FRAMES = 3
MAX_GAP_FRAMES = 2  # frames in a row a track may go unmatched and still continue
BACKGROUND_REFITS = 3
MAX_SPLIT_DEPTH = 2  # a component splits into at most 4 colour parts
COLOUR_SCALE = 255.0 * math.sqrt(3.0)  # largest RGB distance, so colour change is in [0, 1]

VERSION = ("object-identity/1 (own definition: border-plane background, RGB distance > 60, 8-connected "
           "regions >= 0.2% of frame split by colour, mixed regions untracked; Hungarian on predicted centroids, "
           "gate 0.25 side, gaps <= 2 frames, tracks >= 3 frames; colour |c_t - c_0| / (255 sqrt 3), "
           "size |ln(a_t / a_0)| of coverage area)")
HIGHER_IS_BETTER = False

_EIGHT = np.ones((3, 3), dtype=bool)
_FAR = 1e12  # cost of a pair outside the gate (linear_sum_assignment needs finite costs)


@dataclass(frozen=True)
class Detection:
    """One connected component in one frame; x, y in pixels, area as a fraction of the frame."""

    frame: int
    x: float
    y: float
    area: float
    rgb: tuple[float, float, float]
    touching: bool = False  # part of a mixed region (objects in contact): not used for tracking
    shape: str = ""  # metrics.shape_geometry's class of the outline it shows


@dataclass
class Track:
    detections: list[Detection] = field(default_factory=list)

    @property
    def first(self) -> Detection:
        return self.detections[0]

    @property
    def last(self) -> Detection:
        return self.detections[-1]

    def predict(self, frame: int) -> tuple[float, float]:
        """Centroid at ``frame`` by constant velocity from the last two matches."""
        last = self.last
        if len(self.detections) < 2:
            return last.x, last.y
        prev = self.detections[-2]
        steps = (frame - last.frame) / (last.frame - prev.frame)
        return last.x + (last.x - prev.x) * steps, last.y + (last.y - prev.y) * steps

    def colour_changes(self) -> list[tuple[int, float]]:
        """(frame, colour change) at each matched frame after the first."""
        ref = np.array(self.first.rgb)
        return [(d.frame, float(np.linalg.norm(np.array(d.rgb) - ref) / COLOUR_SCALE)) for d in self.detections[1:]]

    def size_changes(self) -> list[tuple[int, float]]:
        """(frame, size change) at each matched frame after the first."""
        ref = self.first.area
        return [(d.frame, abs(math.log(d.area / ref))) for d in self.detections[1:]]


@dataclass(frozen=True)
class IdentityChange:
    """Every (frame, change) measurement of the kept tracks, and the tracks."""

    colour_values: list[tuple[int, float]]
    size_values: list[tuple[int, float]]
    tracks: list[Track]

    @property
    def colour(self) -> float:
        """Video mean colour change (tracks weighted by their measured frames)."""
        return float(np.mean([v for _, v in self.colour_values]))

    @property
    def size(self) -> float:
        """Video mean size change (tracks weighted by their measured frames)."""
        return float(np.mean([v for _, v in self.size_values]))

    @property
    def colour_series(self) -> list[tuple[int, float]]:
        return _per_frame(self.colour_values)

    @property
    def size_series(self) -> list[tuple[int, float]]:
        return _per_frame(self.size_values)


def _per_frame(values: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """(frame, mean over the tracks measured at that frame), for frames with a measurement."""
    frames = sorted({f for f, _ in values})
    return [(f, float(np.mean([v for g, v in values if g == f]))) for f in frames]


@functools.lru_cache(maxsize=8)
def _plane_design(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The border ring of an (h, w) frame and the plane's design matrices (1, x, y) on the ring and
    on every pixel: the same for every frame of a clip, so built once per size."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    ring = np.zeros((h, w), dtype=bool)
    ring[[0, -1], :] = ring[:, [0, -1]] = True
    design = np.stack([np.ones(ring.sum()), xs[ring] / w, ys[ring] / h], axis=1)
    full = np.stack([np.ones(h * w), xs.ravel() / w, ys.ravel() / h], axis=1)
    for array in (ring, design, full):
        array.flags.writeable = False  # shared by every call
    return ring, design, full


def background_model(frame: np.ndarray, foreground_distance: float = FOREGROUND_DISTANCE) -> np.ndarray:
    """(H, W, 3) float background: a per-channel plane fitted robustly to the border ring."""
    h, w, _ = frame.shape
    ring, design, full = _plane_design(h, w)
    values = frame[ring].astype(np.float64)
    coef = np.zeros((3, 3))
    coef[0] = np.median(values, axis=0)
    for _ in range(BACKGROUND_REFITS):
        inliers = np.linalg.norm(values - design @ coef, axis=1) <= foreground_distance
        if inliers.sum() < 3:
            break
        coef = np.linalg.lstsq(design[inliers], values[inliers], rcond=None)[0]
    return (full @ coef).reshape(h, w, 3)


def _object_colour(pixels: np.ndarray, mask: np.ndarray, foreground_distance: float) -> np.ndarray:
    """Mean RGB of the region's interior pixels (eroded by one pixel, or all if none remain) that lie
    within ``foreground_distance`` of their per-channel median: its dominant colour."""
    interior = ndimage.binary_erosion(mask)
    core = pixels[interior if interior.any() else mask]
    close = np.linalg.norm(core - np.median(core, axis=0), axis=1) <= foreground_distance
    return core[close].mean(axis=0) if close.any() else core.mean(axis=0)


def _split_by_colour(pixels: np.ndarray, mask: np.ndarray, min_area: int, foreground_distance: float,
                     depth: int = 0) -> tuple[list[np.ndarray], bool]:
    """The colour-homogeneous parts (masks) of one connected region, and whether it held more than one
    colour (at least ``min_area`` interior pixels farther than ``foreground_distance`` from the median)."""
    interior = ndimage.binary_erosion(mask)
    core = pixels[interior if interior.any() else mask]
    centre = np.median(core, axis=0)
    distance = np.linalg.norm(core - centre, axis=1)
    if np.count_nonzero(distance > foreground_distance) < min_area:
        return [mask], False
    if depth >= MAX_SPLIT_DEPTH:
        return [mask], True
    centres = np.stack([centre, core[np.argmax(distance)]])
    for _ in range(10):  # 2-means on the interior colours
        side = np.argmin(np.linalg.norm(core[:, None] - centres[None], axis=2), axis=1)
        centres = np.stack([core[side == k].mean(axis=0) if np.any(side == k) else centres[k] for k in (0, 1)])
    side = np.argmin(np.linalg.norm(pixels[:, :, None] - centres, axis=-1), axis=-1)
    parts = []
    for k in (0, 1):
        labels, count = ndimage.label(mask & (side == k), structure=_EIGHT)
        for j in range(1, count + 1):
            if np.count_nonzero(labels == j) >= min_area:
                parts.extend(_split_by_colour(pixels, labels == j, min_area, foreground_distance, depth + 1)[0])
    return parts or [mask], True


def detect_objects(frame: np.ndarray, index: int = 0,
                   foreground_distance: float = FOREGROUND_DISTANCE) -> list[Detection]:
    """The objects of one (H, W, 3) uint8 frame: colour-homogeneous foreground regions of the minimum area."""
    h, w, _ = frame.shape
    pixels = frame.astype(np.float64)
    background = background_model(frame, foreground_distance)
    foreground = np.linalg.norm(pixels - background, axis=-1) > foreground_distance
    labels, count = ndimage.label(foreground, structure=_EIGHT)
    min_area = max(1, round(MIN_AREA_FRACTION * h * w))
    found = []
    for k in range(1, count + 1):
        if np.count_nonzero(labels == k) < min_area:
            continue
        parts, mixed = _split_by_colour(pixels, labels == k, min_area, foreground_distance)
        for part in parts:
            rgb = _object_colour(pixels, part, foreground_distance)
            rows, cols, share = _coverage(pixels, background, rgb, part, foreground)
            area = float(share.sum())
            x, y = float((cols + 0.5) @ share / area), float((rows + 0.5) @ share / area)
            shape = classify_shape(signature(rows, cols, share))
            found.append(Detection(index, x, y, area / (h * w), (float(rgb[0]), float(rgb[1]), float(rgb[2])),
                                   touching=mixed, shape=shape))
    return found


def _coverage(pixels: np.ndarray, background: np.ndarray, rgb: np.ndarray, part: np.ndarray,
              foreground: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and coverage shares of ``part``'s pixels and of its one-pixel (8-neighbour) rim of
    background pixels: each counts clip(|I - B| / |C - B|, 0, 1), the share of it the object holds."""
    near = ndimage.binary_dilation(part, structure=_EIGHT) & (part | ~foreground)
    contrast = np.linalg.norm(rgb - background[near], axis=-1)
    share = np.clip(np.linalg.norm(pixels[near] - background[near], axis=-1) / np.maximum(contrast, 1e-9), 0.0, 1.0)
    rows, cols = np.nonzero(near)
    return rows, cols, share


def track_objects(detections: list[list[Detection]], gate: float) -> list[Track]:
    """Tracks over frames (one list of detections per frame) by gated Hungarian assignment."""
    tracks: list[Track] = []
    for frame, found in enumerate(detections):
        live = [t for t in tracks if frame - t.last.frame - 1 <= MAX_GAP_FRAMES]
        cost = np.full((len(live), len(found)), np.inf)
        for i, track in enumerate(live):
            px, py = track.predict(frame)
            for j, d in enumerate(found):
                # in the gate around the prediction or the last position (a bounce reverses the velocity)
                if min(math.hypot(d.x - track.last.x, d.y - track.last.y), math.hypot(d.x - px, d.y - py)) <= gate:
                    cost[i, j] = math.hypot(d.x - px, d.y - py)
        matches: dict[int, int] = {}
        if live and found:
            finite = np.where(np.isfinite(cost), cost, _FAR)
            matches = {int(i): int(j) for i, j in zip(*linear_sum_assignment(finite)) if finite[i, j] < _FAR}
        # a track left without a match whose nearest in-gate object went to another track: merged or hidden
        shared = {int(np.argmin(cost[i])) for i in range(len(live)) if i not in matches and np.isfinite(cost[i]).any()}
        for i, j in matches.items():
            if j not in shared:
                live[i].detections.append(found[j])
        taken = set(matches.values())
        tracks.extend(Track([d]) for j, d in enumerate(found) if j not in taken)
    return tracks


def object_identity_change(frames: np.ndarray, *, foreground_distance: float = FOREGROUND_DISTANCE,
                           gate_fraction: float = GATE_FRACTION,
                           min_track_frames: int = MIN_TRACK_FRAMES) -> IdentityChange:
    """Colour and size change of the tracked objects of one uint8 (T, H, W, 3) video (see module doc)."""
    frames = check_video(frames, min_frames=2)
    stream = ObjectIdentity(foreground_distance=foreground_distance, gate_fraction=gate_fraction,
                            min_track_frames=min_track_frames)
    stream.update(frames)
    return stream.change()


def _change_from_detections(found: list[list[Detection]], frame_shape: tuple[int, int], foreground_distance: float,
                            gate_fraction: float, min_track_frames: int) -> IdentityChange:
    if not any(found):
        raise ValueError(f"frames: no object found in any of the {len(found)} frames (no connected region of at "
                         f"least {MIN_AREA_FRACTION:.1%} of the frame differs from the border-fitted background by "
                         f"more than RGB distance {foreground_distance:g}); this metric needs visible objects "
                         "on a solid or smoothly graded background")
    detections = [[d for d in frame_found if not d.touching] for frame_found in found]
    if not any(detections):
        raise ValueError(f"frames: objects were found only in contact with each other (regions of more than one "
                         f"colour) in all {len(found)} frames, so none could be tracked")
    all_tracks = track_objects(detections, gate_fraction * max(frame_shape))
    tracks = [t for t in all_tracks if len(t.detections) >= min_track_frames]
    if not tracks:
        longest = max(len(t.detections) for t in all_tracks)
        raise ValueError(f"frames: objects were found but none was tracked for {min_track_frames} frames or more "
                         f"(longest track: {longest} of {len(found)} frames); use a longer clip or lower "
                         "min_track_frames")
    return IdentityChange([m for t in tracks for m in t.colour_changes()],
                          [m for t in tracks for m in t.size_changes()], tracks)


def object_colour_change(frames: np.ndarray) -> float:
    """Mean colour change of the tracked objects, in [0, 1], lower is steadier."""
    return object_identity_change(frames).colour


def object_size_change(frames: np.ndarray) -> float:
    """Mean |log area ratio| of the tracked objects to their first frame, lower is steadier."""
    return object_identity_change(frames).size


def share_detections(cache: dict | None, foreground_distance: float, owner: object) -> tuple[dict | None, str]:
    """(the clip's cache, the key) under which every metric of the clip that reads objects finds them."""
    return share_with_others(cache, f"objects {VERSION} {foreground_distance:g}", owner)


def detections_per_frame(cache: dict | None, key: str, chunk: np.ndarray,
                         foreground_distance: float) -> list[list[Detection]]:
    """Each frame's detections (frame index 0), computed once per clip for all metrics sharing ``key``;
    kept by content, so a frame seen at another position of the clip is found there too."""
    return rows_once_per_clip(cache, key, chunk, frame_digest,
                              lambda indices: [detect_objects(chunk[i], 0, foreground_distance) for i in indices])


class DetectingState(StreamingMetric):
    """A clip state that reads each frame's objects, shared by every such metric of the clip
    (subclasses set ``foreground_distance``, ``cache`` and ``cache_key``, and ``frame_shape`` in reset)."""

    foreground_distance: float
    frame_shape: tuple[int, int] | None

    def detect(self, chunk: np.ndarray) -> list[list[Detection]]:
        """Each frame's detections of a checked chunk of the same frame size as the chunks before it."""
        chunk = check_video(chunk, name=f"{self.name} chunk")
        if self.frame_shape is not None and chunk.shape[1:3] != self.frame_shape:
            raise ValueError(f"{self.name}: chunk frames are {chunk.shape[1:3]}, earlier frames {self.frame_shape}")
        self.frame_shape = chunk.shape[1:3]
        return detections_per_frame(self.cache, self.cache_key, chunk, self.foreground_distance)


class ObjectIdentity(DetectingState):
    """Objects are detected frame by frame as the clip streams (a few numbers per object and frame
    are kept); tracking and the changes come at the end. ``quantity`` picks the value."""

    higher_is_better = HIGHER_IS_BETTER
    extractor = "none (background subtraction + connected components + Hungarian tracking)"
    version = VERSION
    min_frames = 2

    def __init__(self, fps: float = 1.0, quantity: str = "colour", *, foreground_distance: float = FOREGROUND_DISTANCE,
                 gate_fraction: float = GATE_FRACTION, min_track_frames: int = MIN_TRACK_FRAMES,
                 cache: dict | None = None, owner: object = None) -> None:
        if foreground_distance <= 0 or gate_fraction <= 0 or min_track_frames < 2:
            raise ValueError(f"need foreground_distance > 0, gate_fraction > 0 and min_track_frames >= 2, got "
                             f"{foreground_distance}, {gate_fraction}, {min_track_frames}")
        if quantity not in ("colour", "size"):
            raise ValueError(f"quantity must be 'colour' or 'size', got {quantity!r}")
        self.name = f"object_{quantity}_change"
        self.quantity, self.foreground_distance = quantity, foreground_distance
        self.gate_fraction, self.min_track_frames = gate_fraction, min_track_frames
        self.cache, self.cache_key = share_detections(cache, foreground_distance, owner or self)
        super().__init__(fps)

    def reset(self) -> None:
        self.found: list[list[Detection]] = []
        self.frame_shape: tuple[int, int] | None = None

    def update(self, chunk: np.ndarray) -> None:
        start = len(self.found)
        per_frame = self.detect(chunk)
        self.found += [[replace(d, frame=start + i) for d in found] for i, found in enumerate(per_frame)]

    def change(self) -> IdentityChange:
        if len(self.found) < self.min_frames:
            raise ValueError(f"{self.name}: needs at least {self.min_frames} frames, got {len(self.found)}")
        return _change_from_detections(self.found, self.frame_shape, self.foreground_distance, self.gate_fraction,
                                       self.min_track_frames)

    def compute(self) -> MetricResult:
        change = self.change()
        value, series = ((change.colour, change.colour_series) if self.quantity == "colour"
                         else (change.size, change.size_series))
        return MetricResult(value, [(frame / self.fps, v) for frame, v in series])


class ObjectColourChangeMetric(Metric):
    name = "object_colour_change"
    summary = ("mean RGB distance / (255 sqrt 3) of each tracked object's colour to its colour in its first frame "
               "(shapes-world-like videos; own definition)")
    higher_is_better = HIGHER_IS_BETTER
    extractor, version = ObjectIdentity.extractor, VERSION
    quantity = "colour"
    motion_counterpart = "motion_magnitude"  # objects that do not move keep their colour and size for free

    def streaming(self, ctx: ClipContext) -> ObjectIdentity:
        return ObjectIdentity(ctx.fps, self.quantity, cache=ctx.shared, owner=self)


class ObjectSizeChangeMetric(ObjectColourChangeMetric):
    name = "object_size_change"
    summary = "mean |ln(area / first area)| of each tracked object (shapes-world-like videos; own definition)"
    quantity = "size"
    motion_counterpart = "motion_magnitude"
