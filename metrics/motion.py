"""Motion magnitude: how much a clip moves, in pixels per frame.

Per consecutive frame pair, the mean over pixels of the optical-flow magnitude ``|f(x)|`` (flow
t -> t+1 from OpenCV DIS, "medium" preset, on grayscale frames: :func:`metrics.warping.dis_flow`);
the clip's value is the mean over its T-1 pairs, and its series is each pair's value at the time
of its first frame. A still clip scores 0; a texture translating 3 px a frame scores about 3.

It is the *motion counterpart* of the consistency metrics (flicker, warping error, object
colour / size change, ...: their ``motion_counterpart``): a model that barely moves looks
consistent for free, so a consistency win only counts when the model moves about as much as the
real clips. ``higher_is_better`` is True because the harness knows only two directions, but the
value is meant to be read against the real clips' (closer to real is better; far above real is
jitter, far below is a still picture): the report and the gate flag a model whose motion is more
than ``report.static_margin`` (relative) below the real clips' as "static".

Flow is estimated, so values from different estimators are not comparable; the version names it.
"""

from __future__ import annotations

import numpy as np

from metrics.streaming import ClipContext, Metric, MetricResult, PairwiseMetric
from metrics.video import check_video
from metrics.warping import FLOW_BATCH, FlowEstimator, dis_flow

DEFINITION = "motion-magnitude/1"
HIGHER_IS_BETTER = True  # read against the real clips: see the module docstring
DIS_PRESET = "medium"


def _version(flow_name: str) -> str:
    return f"{DEFINITION} (mean over pixels of |flow t->t+1| in px/frame, mean over pairs; flow={flow_name})"


def _extractor(flow_name: str) -> str:
    return f"optical flow: {flow_name}"


class MotionMagnitude(PairwiseMetric):
    """Mean optical-flow magnitude of a clip streamed in chunks: one float per frame pair is kept."""

    name = "motion_magnitude"
    higher_is_better = HIGHER_IS_BETTER

    def __init__(self, fps: float = 1.0, estimator: FlowEstimator | None = None) -> None:
        self.flow = estimator if estimator is not None else dis_flow(DIS_PRESET)
        self.extractor = _extractor(self.flow.name)
        self.version = _version(self.flow.name)
        super().__init__(fps)

    def pair_values(self, earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
        values: list[float] = []
        for start in range(0, len(earlier), FLOW_BATCH):
            flows = self.flow.many(earlier[start:start + FLOW_BATCH], later[start:start + FLOW_BATCH])
            magnitude = np.sqrt(np.square(flows, dtype=np.float64).sum(axis=-1))
            values += magnitude.mean(axis=(1, 2)).tolist()
        return np.asarray(values, dtype=np.float64)

    def compute(self) -> MetricResult:
        values = self.values
        return MetricResult(float(values.mean()), [(t / self.fps, float(v)) for t, v in enumerate(values)])


def motion_magnitude(frames: np.ndarray) -> float:
    """Mean optical-flow magnitude (px/frame) of a uint8 video (T, H, W, 3); 0 for a still clip."""
    return MotionMagnitude().score(check_video(frames, min_frames=2)).value


class MotionMagnitudeMetric(Metric):
    name = "motion_magnitude"
    summary = ("mean over frame pairs of the mean optical-flow magnitude (px/frame, OpenCV DIS medium); "
               "read against the real clips: far below them is a static model")
    higher_is_better = HIGHER_IS_BETTER
    ranked = False  # no model "wins" motion: it is read against the real clips
    extractor = _extractor(dis_flow(DIS_PRESET).name)
    version = _version(dis_flow(DIS_PRESET).name)

    def streaming(self, ctx: ClipContext) -> MotionMagnitude:
        return MotionMagnitude(ctx.fps)
