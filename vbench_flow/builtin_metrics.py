"""Metrics the harness ships, registered for suites. The computations live in ``metrics/``."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from metrics import flicker
from vbench_flow.registry import Args, MetricType, SampleContext, SampleScore, register_metric


class FlickerArgs(Args):
    segment_seconds: float = Field(2.0, gt=0, description="window for the over-time series (VBench-Long uses 2 s)")


class FlickerScorer:
    extractor = "none (pixel differences)"

    def __init__(self, args: FlickerArgs) -> None:
        self.segment_seconds = args.segment_seconds
        self.version = f"{flicker.VERSION}; segments {args.segment_seconds:g}s"

    def score(self, video: np.ndarray, ctx: SampleContext) -> SampleScore:
        segments = flicker.flicker_per_segment(video, ctx.fps, self.segment_seconds)
        return SampleScore(
            value=flicker.temporal_flickering(video),
            series=[(s.start_seconds, s.value) for s in segments],
        )


register_metric(MetricType(
    name="flicker",
    summary="VBench temporal flickering: (255 - mean |frame[t+1]-frame[t]|) / 255, higher is steadier",
    args_model=FlickerArgs,
    higher_is_better=flicker.HIGHER_IS_BETTER,
    build=FlickerScorer,
))
