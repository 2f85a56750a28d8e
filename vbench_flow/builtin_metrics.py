"""The metrics the harness ships, registered for suites. Each is a class in ``metrics/`` that says
what it is (name, summary, direction, kind, options); nothing about a metric is kept here."""

from __future__ import annotations

from metrics import (caption_adherence, clipsim, fidelity, flicker, fvd, likelihood, long_clip, motion, object_identity, throughput,
                     vbench_metrics, warping)
from vbench_flow.registry import register_metric_class

BUILTIN_METRICS = (
    flicker.FlickerMetric,
    *throughput.COST_METRICS,
    warping.WarpingErrorMetric,
    clipsim.ClipsimMetric,
    flicker.FlickerDriftMetric,
    warping.WarpingErrorDriftMetric,
    clipsim.ClipsimDriftMetric,
    fvd.FvdMetric,
    fidelity.ContinuationPsnrMetric,
    fidelity.ContinuationSsimMetric,
    likelihood.BitsPerDimMetric,
    object_identity.ObjectColourChangeMetric,
    object_identity.ObjectSizeChangeMetric,
    motion.MotionMagnitudeMetric,
    *caption_adherence.CAPTION_METRICS,
    *vbench_metrics.VBENCH_METRICS,
    *long_clip.LONG_CLIP_METRICS,
)

for _metric in BUILTIN_METRICS:
    register_metric_class(_metric)
