"""Scoring one clip: read it once, in chunks, and feed every metric of the unit.

Each metric (``metrics.streaming.Metric``) gives the clip a streaming state (``streaming(ctx)``;
``feature_stream(fps, num_frames)`` for set-level features) that sees each chunk as it is read and keeps only
its own small state, so a video file of any length is scored in the memory of one chunk.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vbench_flow.errors import VbfError, disk_full
from metrics.streaming import ClipContext, NotScored
from vbench_flow.video_io import DEFAULT_CHUNK_FRAMES, frames_per_chunk, iter_clip

VideoFile = (str, os.PathLike)


@dataclass
class ClipScores:
    num_frames: int = 0
    height: int | None = None
    width: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    features: dict[str, list[list[float]]] = field(default_factory=dict)
    metric_seconds: dict[str, float] = field(default_factory=dict)
    metric_errors: dict[str, str] = field(default_factory=dict)
    # metrics whose definition leaves this clip out (metrics.streaming.NotScored), with the reason
    metric_excluded: dict[str, str] = field(default_factory=dict)
    # time spent decoding a video file's chunks (None for a clip handed over as an array)
    read_seconds: float | None = None

    def only(self, names: set[str]) -> ClipScores:
        """These scores restricted to the metrics ``names`` (no timings: nothing was computed for them)."""
        def pick(table: dict) -> dict:
            return {k: v for k, v in table.items() if k in names}

        return ClipScores(self.num_frames, self.height, self.width, pick(self.metrics), pick(self.series),
                          pick(self.features), metric_errors=pick(self.metric_errors),
                          metric_excluded=pick(self.metric_excluded))

    def add(self, other: ClipScores) -> None:
        """Take in ``other``'s metrics (scored on the same clip)."""
        for mine, theirs in ((self.metrics, other.metrics), (self.series, other.series), (self.features, other.features),
                             (self.metric_seconds, other.metric_seconds), (self.metric_errors, other.metric_errors),
                             (self.metric_excluded, other.metric_excluded)):
            mine.update(theirs)
        if other.read_seconds is not None:
            self.read_seconds = other.read_seconds


@dataclass
class MetricPlan:
    """One metric of the unit: its scorer and whether it is set-level (features, not a value)."""

    name: str
    scorer: Any
    set_level: bool


class NonFiniteValue(ValueError):
    """A metric gave NaN or infinity: no value, and said so (JSON would turn it into null)."""


def require_finite(values: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        example = values[bad].flat[0]
        raise NonFiniteValue(f"{what} is not finite ({int(bad.sum())} of {values.size} numbers, e.g. {example})")


def stop_if_disk_full(exc: BaseException) -> None:
    """A full disk stops the run (a plain --resume continues it once there is space); any other
    failure belongs to the unit or metric at hand."""
    full = disk_full(exc)
    if full is not None:
        raise full from None


def describe(exc: BaseException, context: str) -> str:
    if isinstance(exc, VbfError):
        return exc.render()
    if isinstance(exc, NonFiniteValue):
        return f"{context}: {exc}"
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{context}: {type(exc).__name__}: {exc}{where}"


def peak_rss_mb() -> float | None:
    """This process's peak resident memory so far, in MiB (it only ever grows); None where the
    platform does not say (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def clip_chunks(video: Any, fps: float, num_frames: int, chunk_frames: int | None = None,
                reader: str = "pyav", device: str = "cpu") -> Iterator[np.ndarray]:
    """Consecutive chunks of a clip (``chunk_frames``, default by frame size: ``frames_per_chunk``):
    views of an array, or frames decoded from a file at ``fps`` by ``reader`` (at most
    ``num_frames``; a shorter file raises VideoReadError naming it)."""
    if not isinstance(video, VideoFile):
        chunk_frames = frames_per_chunk(*video.shape[1:3], most=chunk_frames or DEFAULT_CHUNK_FRAMES)
        yield from (video[i:i + chunk_frames] for i in range(0, len(video), chunk_frames))
        return
    yield from iter_clip(video, num_frames, fps, chunk_frames=chunk_frames, reader=reader, device=device)


def score_clip(video: Any, plans: list[MetricPlan], ctx: ClipContext, num_frames: int,
               chunk_frames: int | None = None, reader: str = "pyav", device: str = "cpu") -> ClipScores:
    """Every metric of ``plans`` on one clip (an array or a video file), in one pass over it.

    A metric that fails records its reason in ``metric_errors`` and the others go on; a file that
    cannot be read raises VideoReadError, and a full disk DiskFull."""
    scores = ClipScores()
    streams: dict[str, Any] = {}
    for plan in plans:
        clock = time.perf_counter()
        try:
            stream = plan.scorer.feature_stream(ctx.fps, ctx.num_frames) if plan.set_level else plan.scorer.streaming(ctx)
        except (Exception, SystemExit) as exc:
            _fail(scores, plan.name, exc)
            continue
        finally:
            scores.metric_seconds[plan.name] = time.perf_counter() - clock
        streams[plan.name] = stream
    chunks = clip_chunks(video, ctx.fps, num_frames, chunk_frames, reader, device)
    for chunk in _timed(chunks, scores) if isinstance(video, VideoFile) else chunks:
        scores.num_frames += len(chunk)
        scores.height, scores.width = int(chunk.shape[1]), int(chunk.shape[2])
        for name in list(streams):
            clock = time.perf_counter()
            try:
                streams[name].update(chunk)
            except (Exception, SystemExit) as exc:
                _fail(scores, name, exc)
                del streams[name]
            finally:
                scores.metric_seconds[name] += time.perf_counter() - clock
    for plan in plans:
        if plan.name in streams:
            _finish(scores, plan, streams[plan.name])
    return scores


def _timed(chunks: Iterator[np.ndarray], scores: ClipScores) -> Iterator[np.ndarray]:
    """``chunks``, adding the time each took to arrive to ``scores.read_seconds``."""
    scores.read_seconds = 0.0
    while True:
        clock = time.perf_counter()
        chunk = next(chunks, None)
        scores.read_seconds += time.perf_counter() - clock
        if chunk is None:
            return
        yield chunk


def _finish(scores: ClipScores, plan: MetricPlan, stream: Any) -> None:
    """The metric's value (or set-level features) from its stream."""
    clock = time.perf_counter()
    try:
        if plan.set_level:
            values = np.asarray(stream.features(), dtype=np.float64)
            require_finite(values, "its features")
            scores.features[plan.name] = values.tolist()
            return
        try:
            result = stream.compute()
        except NotScored as reason:  # left out by the metric's own definition: no value, no failure
            scores.metric_excluded[plan.name] = str(reason)
            return
        value = float(result.value)
        points = [(float(t), float(v)) for t, v in result.series or []]
        require_finite(np.array([value]), "its value")
        require_finite(np.array(points, dtype=np.float64), "its series over time")
    except (Exception, SystemExit) as exc:  # this metric has no value for this clip; the others still count
        _fail(scores, plan.name, exc)
        return
    finally:
        scores.metric_seconds[plan.name] = scores.metric_seconds.get(plan.name, 0.0) + time.perf_counter() - clock
    scores.metrics[plan.name] = value
    if points:
        scores.series[plan.name] = points


def _fail(scores: ClipScores, name: str, exc: BaseException) -> None:
    stop_if_disk_full(exc)
    scores.metric_errors[name] = describe(exc, f"metric {name!r} failed")
