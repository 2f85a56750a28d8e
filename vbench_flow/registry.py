"""Registry of generator types and metrics that suites can name.

Built-in entries register themselves when ``vbench_flow.builtin_models`` and
``vbench_flow.builtin_metrics`` are imported; the lookup functions import them on first use so
a suite never depends on import order. Each entry carries a pydantic model of its ``args`` so a
suite's misspelt argument is caught by ``vbf validate`` before any compute.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from metrics.streaming import Metric, MetricArgs, MetricSetupError
from vbench_flow.errors import ConfigError

if TYPE_CHECKING:
    from vbench_flow.data.source import DataSource
    from vbench_flow.protocol import Generator


# every args model (a metric's or a model type's) forbids unknown keys
Args = MetricArgs


@dataclass
class BuildContext:
    """What a generator factory may use: where the suite lives and its data world."""

    model_name: str
    suite_dir: Path
    data: "DataSource"
    checkpoint: str | None = None


@dataclass(frozen=True)
class ModelType:
    name: str
    summary: str
    args_model: type[Args]
    build: Callable[[Any, BuildContext], "Generator"]
    # Returns problems (messages) found without building: missing files, bad module paths.
    check: Callable[[Any, BuildContext], list[str]] | None = None
    needs_data_prompts: bool = False
    # Options for generate(); None means the type takes none.
    sampler_model: type[Args] | None = None


@dataclass(frozen=True)
class MetricType:
    name: str
    summary: str
    args_model: type[Args]
    higher_is_better: bool
    build: Callable[[Any], Metric]  # the configured metric (see register_metric_class)
    needs_ground_truth: bool = False
    # reads the ground truth chunk by chunk beside the clip (never the whole real clip at once)
    streams_ground_truth: bool = False
    # "quality" of a clip; "cost" of generating it (read from what was measured around generate);
    # "set": the scorer is a SetScorer and the value exists per group, not per clip
    kind: str = "quality"
    # the fewest frames a clip needs for this metric (FVD: 16)
    min_frames: int = 2
    # the metric that measures how much a clip moves (``Metric.motion_counterpart``): a "better"
    # verdict of this (consistency) metric is only a win when the model moves about as much as the real clips
    motion_counterpart: str | None = None
    # False: read against the real clips, never ranked in "who won" (``Metric.ranked``)
    ranked: bool = True
    # the value depends on the unit's task or generate() call, so it is never reused for another
    # unit that shows the same clip (``Metric.reads_task``)
    reads_task: bool = False
    # args -> the files the configured metric will load that are not there, each with how to get it
    missing_files: Callable[[Any], list[str]] = lambda args: []

    def __post_init__(self) -> None:
        if self.kind not in METRIC_KINDS:
            raise ValueError(f"metric {self.name!r}: kind must be one of {METRIC_KINDS}, got {self.kind!r}")

    @property
    def set_level(self) -> bool:
        return self.kind == "set"


METRIC_KINDS = ("quality", "cost", "set")
_MODEL_TYPES: dict[str, ModelType] = {}
_METRICS: dict[str, MetricType] = {}
_BUILTINS = ("vbench_flow.builtin_models", "vbench_flow.builtin_metrics")


def register_model(entry: ModelType) -> ModelType:
    if entry.name in _MODEL_TYPES:
        raise ValueError(f"model type {entry.name!r} is registered twice")
    _MODEL_TYPES[entry.name] = entry
    return entry


def register_metric(entry: MetricType) -> MetricType:
    if entry.name in _METRICS:
        raise ValueError(f"metric {entry.name!r} is registered twice")
    _METRICS[entry.name] = entry
    return entry


def register_metric_class(cls: type[Metric]) -> MetricType:
    """Register a ``metrics.streaming.Metric`` subclass: the class says what the metric is."""
    def build(args: Any) -> Metric:
        try:
            return cls(args)
        except MetricSetupError as exc:
            raise ConfigError(str(exc), where=f"{cls.name}.args", fix=exc.fix) from None

    return register_metric(MetricType(name=cls.name, summary=cls.summary, args_model=cls.Args,
                                      higher_is_better=cls.higher_is_better, build=build,
                                      needs_ground_truth=cls.needs_ground_truth,
                                      streams_ground_truth=cls.streams_ground_truth, kind=cls.kind,
                                      min_frames=cls.min_frames,
                                      motion_counterpart=getattr(cls, "motion_counterpart", None),
                                      missing_files=getattr(cls, "missing_files", lambda args: []),
                                      ranked=getattr(cls, "ranked", True), reads_task=cls.reads_task))


def _load_builtins() -> None:
    for module in _BUILTINS:
        importlib.import_module(module)


def model_types() -> dict[str, ModelType]:
    _load_builtins()
    return dict(_MODEL_TYPES)


def metric_types() -> dict[str, MetricType]:
    _load_builtins()
    return dict(_METRICS)


def did_you_mean(name: str, known: list[str] | tuple[str, ...] | set[str]) -> str:
    """' — did you mean 'x'?' for the closest known name, or a list of valid names."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    if close:
        return f" — did you mean {close[0]!r}?"
    return f" (known: {', '.join(sorted(known))})"


def get_model_type(name: str, *, where: str | None = None) -> ModelType:
    types = model_types()
    if name not in types:
        raise ConfigError(f"unknown model type {name!r}{did_you_mean(name, types)}", where=where,
                          fix="`vbf ls models` lists the model types")
    return types[name]


def get_metric(name: str, *, where: str | None = None) -> MetricType:
    metrics = metric_types()
    if name not in metrics:
        raise ConfigError(f"unknown metric {name!r}{did_you_mean(name, metrics)}", where=where,
                          fix="`vbf ls metrics` lists the metrics")
    return metrics[name]
