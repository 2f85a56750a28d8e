"""Which shape is this region? Rotation- and scale-invariant moments against the shapes world's outlines.

A region is given as pixel centres with weights (its coverage share: 1 inside, fractions on
anti-aliased edges). Its *signature* is six numbers, each unchanged by rotation, scaling and
translation:

- compactness ``A^2 / (2 pi C11)``: 1 for a disc, lower for anything less round;
- for k = 2..6, the strength of k-fold symmetry ``|sum w z^k| / (A (C11 / A)^(k/2))``, where
  ``z`` is a pixel's offset from the weighted centroid as a complex number, ``A = sum w`` and
  ``C11 = sum w |z|^2``. A regular n-gon has non-zero strengths only at multiples of n, so a
  triangle shows at k = 3 (and 6), a square at 4, a five-pointed star at 5, a hexagon at 6, and the
  shapes world's diamond, which is narrower than tall, at 2 (and 4, 6).

Anti-aliasing spreads a region by a one-pixel box filter, which adds 1/12 px^2 per axis to
``C11 / A`` and nothing (to first order) to the symmetry sums; that spread is taken off ``C11``,
so small and large copies of a shape give the same signature.

A region is the shape whose reference signature is nearest (Euclidean, compactness weighted
:data:`COMPACTNESS_WEIGHT` = 4 times: it varies least with pixelation and separates the round
shapes), or ``"irregular"`` when none is within :data:`MAX_SIGNATURE_DISTANCE`: a blob that is
neither round nor any of the polygons. Reference signatures are those of the outlines rasterised
at 1024 px (``cv2.fillPoly`` with sub-pixel vertices), so they hold the continuous shapes' values.

Measured on shapes-world test frames (64x64, radii 5-11 px; 6,250 objects not touching another,
``tests/test_caption_adherence.py`` checks a sample): 99.9 % are classified right; the distance to
their own reference has median 0.07, 99th percentile 0.35 and 99.9th 0.8 (pixel-grid aliasing of
the smallest stars and triangles), while the nearest pair of references (circle, hexagon) is 0.49
apart and every other pair over 0.6.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

# Copies of the shapes world's outlines (metrics never imports the harness; a test checks they agree):
# vertices with circumradius 1, pointing up on screen (y down).
SHAPES = ("circle", "square", "triangle", "diamond", "star", "hexagon")
IRREGULAR = "irregular"
SYMMETRY_ORDERS = (2, 3, 4, 5, 6)
MAX_SIGNATURE_DISTANCE = 0.6
COMPACTNESS_WEIGHT = 4.0
REFERENCE_SIDE = 1024


def _ring(n: int, start: float, radii: tuple[float, ...] = (1.0,)) -> np.ndarray:
    angles = start + 2 * math.pi * np.arange(n) / n
    r = np.resize(np.array(radii), n)
    return np.stack([r * np.cos(angles), r * np.sin(angles)], axis=1)


def outline(shape: str) -> np.ndarray | None:
    """The (k, 2) unit outline of a polygonal shape; None for the circle."""
    polygons = {
        "square": lambda: _ring(4, math.pi / 4),
        "triangle": lambda: _ring(3, -math.pi / 2),
        "diamond": lambda: np.array([[0.0, -1.0], [0.6, 0.0], [0.0, 1.0], [-0.6, 0.0]]),
        "star": lambda: _ring(10, -math.pi / 2, (1.0, 0.45)),
        "hexagon": lambda: _ring(6, 0.0),
    }
    if shape == "circle":
        return None
    if shape not in polygons:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    return polygons[shape]()


def signature(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, pixel_variance: float = 2 / 12) -> np.ndarray:
    """The six-number signature (compactness, then k-fold symmetry for k = 2..6) of a weighted region."""
    weights = np.asarray(weights, dtype=np.float64)
    area = float(weights.sum())
    if area <= 0:
        raise ValueError("signature: the region has no weight")
    z = (np.asarray(cols, dtype=np.float64) + 0.5) + 1j * (np.asarray(rows, dtype=np.float64) + 0.5)
    z = z - (weights * z).sum() / area
    # the one-pixel box filter of anti-aliasing adds 1/12 px^2 per axis to the spread; removed
    spread = float((weights * np.abs(z) ** 2).sum()) - area * pixel_variance
    if spread <= 0:  # a single pixel: as round as it can be
        return np.array([1.0] + [0.0] * len(SYMMETRY_ORDERS))
    strengths = [abs((weights * z ** k).sum()) / (area * (spread / area) ** (k / 2)) for k in SYMMETRY_ORDERS]
    return np.array([area ** 2 / (2 * math.pi * spread), *strengths])


@functools.lru_cache(maxsize=1)
def reference_signatures() -> dict[str, np.ndarray]:
    """Each shape's signature, from its outline rasterised at :data:`REFERENCE_SIDE` px."""
    side, shift = REFERENCE_SIDE, 4  # cv2 takes vertices in fixed point with 4 fractional bits
    radius = side * 0.45
    references = {}
    for shape in SHAPES:
        canvas = np.zeros((side, side), dtype=np.uint8)
        vertices = outline(shape)
        if vertices is None:
            cv2.circle(canvas, (side * 8, side * 8), int(round(radius * 16)), 1, -1, cv2.LINE_8, shift)
        else:
            points = np.round((vertices * radius + side / 2) * (1 << shift)).astype(np.int32)
            cv2.fillPoly(canvas, [points], 1, cv2.LINE_8, shift)
        rows, cols = np.nonzero(canvas)
        references[shape] = signature(rows, cols, np.ones(len(rows)), pixel_variance=0.0)
    return references


def classify_shape(region_signature: np.ndarray) -> str:
    """The shape with the nearest reference signature, or ``"irregular"`` beyond the distance limit."""
    weights = np.array([COMPACTNESS_WEIGHT] + [1.0] * len(SYMMETRY_ORDERS))
    references = reference_signatures()
    distances = {shape: float(np.linalg.norm((region_signature - ref) * weights)) for shape, ref in references.items()}
    shape = min(distances, key=distances.get)
    return shape if distances[shape] <= MAX_SIGNATURE_DISTANCE else IRREGULAR
