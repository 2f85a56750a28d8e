"""Registry of generator types and metrics that suites can name.

Built-in entries register themselves when ``vbench_flow.builtin_models`` and
``vbench_flow.builtin_metrics`` are imported; the lookup functions import them on first use so
a suite never depends on import order. Each entry carries a pydantic model of its ``args`` so a
suite's misspelt argument is caught by ``vbf validate`` before any compute.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from vbench_flow.errors import ConfigError

if TYPE_CHECKING:
    from vbench_flow.data.source import DataSource
    from vbench_flow.protocol import Generator


class Args(BaseModel):
    """Base of every ``args`` model: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


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


@dataclass
class SampleContext:
    """What a per-video metric may know about the sample it scores."""

    fps: float
    prompt: str
    task: str
    num_condition_frames: int = 0
    ground_truth: np.ndarray | None = None
    # measured around generate() (seconds, peak memory) plus what the generator reported
    generation: dict[str, Any] = field(default_factory=dict)
    # the generator itself, for metrics about the model rather than the clip (likelihood)
    generator: Any = None


@dataclass
class SampleScore:
    value: float
    # Values over time (e.g. per 2 s segment): list of (time in seconds, value).
    series: list[tuple[float, float]] = field(default_factory=list)


class VideoScorer(Protocol):
    extractor: str
    version: str

    def score(self, video: np.ndarray, ctx: SampleContext) -> SampleScore: ...


class SetScorer(Protocol):
    """A set-level metric (FVD): each clip gives feature vectors, and the value of a group of
    units (model, task, clip length) is a distance between their features and those of real
    reference clips, computed when the run is aggregated."""

    extractor: str
    version: str

    def features(self, video: np.ndarray, fps: float) -> np.ndarray: ...  # (clips, D)

    def distance(self, real: Any, fake: Any) -> float: ...  # FeatureStats -> value

    def interval(self, real: Any, fake_units: list[Any], *, confidence: float, seed: int) -> tuple[float, float]: ...


@dataclass(frozen=True)
class MetricType:
    name: str
    summary: str
    args_model: type[Args]
    higher_is_better: bool
    build: Callable[[Any], VideoScorer | SetScorer]
    needs_ground_truth: bool = False
    # "quality" of a clip; "cost" of generating it (read from what was measured around generate);
    # "set": the scorer is a SetScorer and the value exists per group, not per clip
    kind: str = "quality"
    # the fewest frames a clip needs for this metric (FVD: 16)
    min_frames: int = 2

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
