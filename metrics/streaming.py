"""Streaming metrics: one object per metric that sees a clip as consecutive chunks.

A clip of any length is scored without holding it: ``update(chunk)`` with consecutive uint8
(T, H, W, 3) chunks of one clip (any sizes, one frame included), then ``compute()`` for the value
and its series over time. Streaming over any chunking gives what one ``update`` with the whole
clip gives. ``merge(other)`` joins the state of the part of the clip that directly follows, so
parts of one long clip can be scored in parallel. Each metric's functional twin (e.g.
``metrics.flicker.temporal_flickering``) is one update and one compute.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from metrics.video import check_video

Kind = Literal["quality", "cost", "set"]


class MetricArgs(BaseModel):
    """A metric's options as a suite gives them: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class NoArgs(MetricArgs):
    pass


@dataclass
class ClipContext:
    """What a metric may know about the clip it scores besides its frames."""

    fps: float
    # the clip's length when known before it is read (the harness knows it): lets a metric stop
    # early once its value is settled (VBench's motion verdicts)
    num_frames: int | None = None
    prompt: str = ""
    task: str = "t2v"
    num_condition_frames: int = 0
    # the prompt's real clip, whole (for metrics that need it at once, e.g. a model's likelihood) ...
    ground_truth: np.ndarray | None = None
    # ... or as a fresh iterator of consecutive chunks (for metrics that compare frame by frame)
    ground_truth_chunks: Callable[[], Iterator[np.ndarray]] | None = None
    # measured around generate() (seconds, peak memory) plus what the generator reported
    generation: dict[str, Any] = field(default_factory=dict)
    # the generator itself, for metrics about the model rather than the clip (likelihood)
    generator: Any = None
    # results several metrics of this clip compute alike (an extractor's features of a frame, the
    # flow of a pair), shared so each is computed once per clip; dropped with the clip
    shared: dict = field(default_factory=dict)


Device = Literal["auto", "cpu", "cuda"]


def resolve_device(device: str) -> str:
    """'auto' is CUDA where a GPU is visible, else the CPU."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class NotScored(Exception):
    """The clip is outside the metric's definition, so it has no value: not a failure (e.g. VBench's
    temporal flickering is defined on static clips only). The message says why."""


class MetricSetupError(ValueError):
    """A metric cannot be configured as asked (a missing weights file, a bad option); ``fix`` says
    what to do. The harness reports it as a configuration error of the metric's args."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


class Metric(ABC):
    """A metric as suites name it: what it is (name, summary, direction, kind, options) as class
    attributes, configured once per suite from its options (loading any network then), and a fresh
    streaming state for each clip (:meth:`streaming`).

    ``version`` and ``extractor`` are set by ``__init__``: they depend on the options. A set-level
    metric (kind "set") gives feature streams instead (see ``metrics.fvd.FvdMetric``).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    higher_is_better: ClassVar[bool]
    kind: ClassVar[Kind] = "quality"
    Args: ClassVar[type[MetricArgs]] = NoArgs
    needs_ground_truth: ClassVar[bool] = False
    # True: the metric reads the ground truth from ``ctx.ground_truth_chunks`` as the clip streams
    streams_ground_truth: ClassVar[bool] = False
    min_frames: ClassVar[int] = 2
    # True: the value depends on the unit's task (its condition frames) or on its generate() call,
    # not only on the clip, its prompt and the model; False lets the harness reuse a value for
    # another unit that shows the same clip of the same prompt (a dataset's real clip under each task)
    reads_task: ClassVar[bool] = False
    # the name of the metric that measures how much the clip moves (e.g. "motion_magnitude"): a
    # consistency win is only a win when the model moves about as much as the real clips (the report
    # and the gate flag a "better" consistency verdict of a model that moves far less as static)
    motion_counterpart: ClassVar[str | None] = None
    version: str
    extractor: str

    def __init__(self, args: MetricArgs | None = None) -> None:
        self.args = args if args is not None else self.Args()

    @classmethod
    def missing_files(cls, args: MetricArgs) -> list[str]:
        """The files this metric would load with ``args`` that do not exist, each saying how to get it
        (``vbf validate`` reports them before any compute)."""
        return []

    def streaming(self, ctx: ClipContext) -> "StreamingMetric":
        """The state that scores one clip chunk by chunk (every per-clip metric has one)."""
        raise NotImplementedError(f"{self.name} is set-level: its clips give feature_stream()s")

    def score(self, video: np.ndarray, ctx: ClipContext) -> "MetricResult":
        """The whole clip at once: one update and one compute."""
        return self.streaming(ctx).score(video)


@dataclass
class MetricResult:
    value: float
    # values over time: (seconds from the clip's start, value)
    series: list[tuple[float, float]] = field(default_factory=list)


class StreamingMetric(ABC):
    """What a metric is (name, direction, kind, version, extractor) and its state for one clip."""

    name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    kind: ClassVar[Kind] = "quality"
    min_frames: ClassVar[int] = 1
    version: str
    extractor: str

    def __init__(self, fps: float) -> None:
        if not fps > 0:
            raise ValueError(f"{type(self).__name__}: fps must be positive, got {fps}")
        self.fps = float(fps)
        self.reset()

    @abstractmethod
    def reset(self) -> None:
        """Forget the clip seen so far."""

    @abstractmethod
    def update(self, chunk: np.ndarray) -> None:
        """The next frames of the clip, uint8 (T, H, W, 3)."""

    @abstractmethod
    def compute(self) -> MetricResult:
        """The value (and series) of every frame given so far."""

    def merge(self, following: "StreamingMetric") -> None:
        """Take in the state of the part of the clip that comes right after this one."""
        raise NotImplementedError(f"{self.name}: this metric's state cannot be merged")

    def score(self, frames: np.ndarray) -> MetricResult:
        """The whole clip in one call (the functional form)."""
        self.reset()
        self.update(frames)
        return self.compute()


class DerivedState(StreamingMetric):
    """A state computed from another state of the same clip (a drift, a contrast, a decay curve):
    chunks, resets and merges go to ``base``, so it streams whenever the base does."""

    def __init__(self, base: StreamingMetric) -> None:
        self.base = base
        super().__init__(base.fps)

    def reset(self) -> None:
        self.base.reset()

    def update(self, chunk: np.ndarray) -> None:
        self.base.update(chunk)

    def merge(self, following: "StreamingMetric") -> None:
        if type(following) is not type(self):
            raise TypeError(f"{self.name}: cannot merge a {type(following).__name__}")
        self.base.merge(following.base)


def derived_metric(base: type[Metric], *, suffix: str, summary: str, args: type[MetricArgs], higher_is_better: bool,
                   describe: Callable[[Metric, Any], str], state: Callable[[StreamingMetric, Any], StreamingMetric],
                   class_suffix: str, min_frames: int | None = None) -> type[Metric]:
    """The metric ``BASE<suffix>`` computed from ``base``'s streaming state in the same pass (the base
    at its default options, or at ``args.base_args`` where the args model has that field):
    ``state(base_state, args)`` wraps it, ``describe(base, args)`` is the version. It keeps the
    base's extractor and motion counterpart (a still clip has no drift either)."""

    class Derived(Metric):
        name = f"{base.name}{suffix}"
        Args = args
        motion_counterpart = base.motion_counterpart

        def __init__(self, options: MetricArgs | None = None) -> None:
            super().__init__(options)
            base_args = getattr(self.args, "base_args", None)
            self.base = base(base.Args.model_validate(base_args)) if base_args else base()
            self.extractor = self.base.extractor
            self.version = describe(self.base, self.args)

        def streaming(self, ctx: ClipContext) -> StreamingMetric:
            return state(self.base.streaming(ctx), self.args)

    Derived.summary, Derived.higher_is_better = summary, higher_is_better
    Derived.min_frames = min_frames if min_frames is not None else base.min_frames
    Derived.__name__ = Derived.__qualname__ = f"{base.__name__.removesuffix('Metric')}{class_suffix}Metric"
    return Derived


class ValueSequenceMetric(StreamingMetric):
    """A metric that keeps one number per frame or per frame pair, in order (a few KB for any clip)."""

    def reset(self) -> None:
        self.frames_seen = 0
        self._values: list[np.ndarray] = []

    @property
    def values(self) -> np.ndarray:
        """Every value so far, in order."""
        if self.frames_seen < self.min_frames:
            raise ValueError(f"{self.name}: needs at least {self.min_frames} frames, got {self.frames_seen}")
        return np.concatenate(self._values)

    @abstractmethod
    def window(self, start: int, end: int) -> float:
        """The metric of frames [start, end) alone, from the values kept."""


class PerFrameMetric(ValueSequenceMetric):
    """A metric that is the mean of one value per frame (the series is every frame's value)."""

    @abstractmethod
    def frame_values(self, chunk: np.ndarray) -> np.ndarray:
        """One value per frame of ``chunk`` (uint8 (T, H, W, 3))."""

    def update(self, chunk: np.ndarray) -> None:
        chunk = check_video(chunk, name=f"{self.name} chunk")
        self._values.append(np.asarray(self.frame_values(chunk), dtype=np.float64))
        self.frames_seen += len(chunk)

    def merge(self, following: "StreamingMetric") -> None:
        if type(following) is not type(self):
            raise TypeError(f"{self.name}: cannot merge a {type(following).__name__}")
        self._values.extend(following._values)
        self.frames_seen += following.frames_seen

    def window(self, start: int, end: int) -> float:
        return float(self.values[start:end].mean())

    def compute(self) -> MetricResult:
        values = self.values
        return MetricResult(float(values.mean()), [(t / self.fps, float(v)) for t, v in enumerate(values)])


class PairwiseMetric(ValueSequenceMetric):
    """A metric of consecutive frame pairs. It keeps the first and last frame it has seen (the last
    pairs with the next chunk's first frame) and one value per pair; pair ``i`` compares frames
    ``i`` and ``i + 1``."""

    min_frames = 2

    def reset(self) -> None:
        super().reset()
        self.first: np.ndarray | None = None
        self.last: np.ndarray | None = None

    @abstractmethod
    def pair_values(self, earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
        """One value per pair (earlier[i], later[i]); both uint8 (N, H, W, 3)."""

    def update(self, chunk: np.ndarray) -> None:
        chunk = check_video(chunk, name=f"{self.name} chunk")
        if self.last is not None:
            if chunk.shape[1:] != self.last.shape:
                raise ValueError(f"{self.name}: chunk frames are {chunk.shape[1:]}, earlier frames {self.last.shape}")
            self._values.append(self.pair_values(self.last[None], chunk[:1]))
        if len(chunk) > 1:
            self._values.append(self.pair_values(chunk[:-1], chunk[1:]))
        if self.first is None:
            self.first = chunk[0].copy()
        self.last = chunk[-1].copy()
        self.frames_seen += len(chunk)

    def merge(self, following: "StreamingMetric") -> None:
        if type(following) is not type(self):
            raise TypeError(f"{self.name}: cannot merge a {type(following).__name__}")
        if following.first is None:
            return
        if self.last is None:
            self.first, self.last, self.frames_seen = following.first, following.last, following.frames_seen
            self._values = list(following._values)
            return
        self._values.append(self.pair_values(self.last[None], following.first[None]))
        self._values.extend(following._values)
        self.last = following.last
        self.frames_seen += following.frames_seen

    def window(self, start: int, end: int) -> float:
        """The mean of the pairs inside frames [start, end) (pair i joins frames i and i + 1)."""
        return float(self.values[start:end - 1].mean())


# ---------------------------------------------------------------- results shared by a clip's metrics


def frame_digest(frame: np.ndarray) -> bytes:
    """A frame's content key (BLAKE2b, 16 bytes): about 5 ms for a 1080p frame, against ~100 ms of network."""
    return hashlib.blake2b(np.ascontiguousarray(frame).data, digest_size=16).digest()


def pair_digest(pair: tuple[np.ndarray, np.ndarray]) -> bytes:
    return frame_digest(pair[0]) + frame_digest(pair[1])


def share_with_others(cache: dict | None, key: str, owner: object) -> tuple[dict | None, str]:
    """(the clip's cache, the key) for a state that computes what ``key`` names on behalf of
    ``owner`` (the configured metric; a derived metric's base, or VBench-Long's clip states, count
    as their own owner): a result kept for the whole clip is worth its memory only when another
    metric of the clip computes the same, so caching turns on once a second owner registers the key."""
    if cache is None:
        return None, key
    cache.setdefault(("owners", key), set()).add(owner)
    return cache, key


def shared_by_several(cache: dict | None, key: str) -> bool:
    return cache is not None and len(cache[("owners", key)]) > 1


def cached_rows(cache: dict, key: str, items: Sequence[Any], digests: Sequence[bytes],
                compute: Callable[[list[int]], Sequence[Any]]) -> list[Any]:
    """One result per item, each computed once per clip: ``cache`` (the clip's ``ClipContext.shared``)
    keeps results by ``key`` (what computes them: extractor and weights) and content ``digests``."""
    keys = [(key, digest) for digest in digests]
    missing = [i for i, k in enumerate(keys) if k not in cache]
    if missing:
        for i, row in zip(missing, compute(missing)):
            cache[keys[i]] = row
    return [cache[k] for k in keys]


def rows_once_per_clip(cache: dict | None, key: str, items: Sequence[Any], digest: Callable[[Any], bytes],
                       compute: Callable[[list[int]], Sequence[Any]]) -> list[Any]:
    """``compute(indices)`` gives one row per item (an extractor's feature of a frame, the flow of a
    pair). When another metric of the clip registered ``key`` too (:func:`share_with_others`), rows
    are kept by content and computed once for all of them; otherwise they are computed and not kept."""
    if not shared_by_several(cache, key):
        return list(compute(list(range(len(items)))))
    return cached_rows(cache, key, items, [digest(item) for item in items], compute)
