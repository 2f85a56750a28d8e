"""Aggregates over units: the mean of each metric per (model, task, clip length), with a
percentile-bootstrap confidence interval.

Seeds of one prompt are not independent samples of what a model does on prompts in general, so
each prompt's seeds are averaged first and the bootstrap resamples prompts (a cluster
bootstrap); ``n`` counts units. With one prompt there is no interval (NaN bounds).
"""

from __future__ import annotations

import zlib
from collections import defaultdict

import numpy as np
import pandas as pd
from scipy import stats

from vbench_flow.store import AggregateRow, SampleRecord


def bootstrap_ci(values: np.ndarray, *, confidence: float, resamples: int, seed: int) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean; NaN for one value, a point for identical values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=resamples,
                             method="percentile", vectorized=True, random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def group_seed(run_seed: int, *key: object) -> int:
    """A stable per-group seed, so adding a model does not change another model's interval."""
    return (run_seed * 1_000_003 + zlib.crc32("|".join(map(str, key)).encode())) % (2**32)


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
        low, high = bootstrap_ci(prompt_means, confidence=confidence, resamples=resamples,
                                 seed=group_seed(seed, model, task, seconds, metric))
        rows.append(AggregateRow(model=model, task=task, clip_seconds=seconds, metric=metric,
                                 value=float(prompt_means.mean()), ci_low=low, ci_high=high,
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
