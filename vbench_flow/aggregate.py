"""Aggregates over units: the mean of each metric per (model, task, clip length), with its
interval from :mod:`vbench_flow.stats`.

Seeds of one prompt are not independent samples of what a model does on prompts in general, so
each prompt's seeds are averaged first and the interval resamples prompts; ``n`` counts units.
With one prompt there is no interval (NaN bounds).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from vbench_flow.stats import group_seed, mean_interval
from vbench_flow.store import AggregateRow, SampleRecord


def aggregate_records(records: list[SampleRecord], metric_info: dict[str, dict], *, confidence: float,
                      resamples: int, seed: int) -> list[AggregateRow]:
    """One row per (model, task, clip length, metric) over the units that finished."""
    groups: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        if record.status != "ok":
            continue
        for metric, value in record.metrics.items():
            groups[(record.model, record.task, record.clip_seconds, metric)][record.prompt_id].append(value)
    rows = []
    for (model, task, seconds, metric), by_prompt in sorted(groups.items()):
        info = metric_info[metric]
        prompt_means = np.array([np.mean(v) for v in by_prompt.values()])
        estimate = mean_interval(prompt_means, confidence=confidence, resamples=resamples,
                                 seed=group_seed(seed, model, task, seconds, metric))
        rows.append(AggregateRow(model=model, task=task, clip_seconds=seconds, metric=metric,
                                 value=estimate.value, ci_low=estimate.low, ci_high=estimate.high,
                                 n=sum(len(v) for v in by_prompt.values()),
                                 higher_is_better=info["higher_is_better"], metric_version=info["version"],
                                 extractor=info["extractor"]))
    return rows


READ = "(read)"  # the row of metric_costs for decoding the clips themselves


def metric_costs(records: list[SampleRecord]) -> pd.DataFrame:
    """What scoring cost, per model and metric: frames scored per second of the metric's own time
    (the seconds each record keeps per metric; a set-level metric's time is its per-clip features),
    plus a ``(read)`` row: frames per second of decoding alone."""
    rows = [(r.model, r.clip_seconds, metric, r.num_frames, seconds)
            for r in records if r.status == "ok" and r.num_frames
            for metric, seconds in [*r.metric_seconds.items(), *([(READ, r.read_seconds)] if r.read_seconds else [])]]
    table = pd.DataFrame(rows, columns=["model", "clip_seconds", "metric", "frames", "seconds"])
    if table.empty:
        return table
    out = table.groupby(["model", "clip_seconds", "metric"], sort=False).agg(
        clips=("frames", "size"), frames=("frames", "sum"), seconds=("seconds", "sum")).reset_index()
    out["frames_per_second"] = out["frames"] / out["seconds"]
    return out


def peak_memory(records: list[SampleRecord]) -> pd.DataFrame:
    """The process's peak resident memory (MiB) once each model's clips of each length were scored.
    Units run in the order the suite lists its clip lengths, so with the shortest listed first,
    equal values mean the longer clips needed no more memory."""
    rows = [(r.model, r.clip_seconds, r.peak_rss_mb) for r in records if r.status == "ok" and r.peak_rss_mb]
    table = pd.DataFrame(rows, columns=["model", "clip_seconds", "peak_rss_mb"])
    return table.groupby(["model", "clip_seconds"], sort=False).agg(
        clips=("peak_rss_mb", "size"), peak_rss_mb=("peak_rss_mb", "max")).reset_index() if not table.empty else table
