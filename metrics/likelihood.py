"""Likelihood as a metric: the bits per dimension a generator assigns to the prompt's real clip.

It is a property of the model, not of the generated clip: the value comes from the generator's
own ``bits_per_dim`` (exact for normalizing flows, an upper bound for diffusion; the model's info
says which and in which space) on the held-out real clip of the prompt. The generated clip
streams past without being looked at.
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any

import numpy as np

from metrics.streaming import ClipContext, Metric, MetricResult, StreamingMetric, frame_digest

VERSION = "bits-per-dim/1 (held-out real clip of the prompt, first training window)"


class ModelLikelihood(StreamingMetric):
    name = "bits_per_dim"
    higher_is_better = False
    extractor = "the generator's own likelihood (see the model's info: exact or upper bound, and its space)"
    version = VERSION
    min_frames = 0

    def __init__(self, generator: Any, ground_truth: np.ndarray, prompt: str, fps: float = 1.0, *,
                 known: dict | None = None) -> None:
        self.generator, self.ground_truth, self.prompt = generator, ground_truth, prompt
        self.known = known  # values this generator already gave, by (prompt, real clip): its other tasks' units
        super().__init__(fps)

    def reset(self) -> None:
        pass

    def update(self, chunk: np.ndarray) -> None:
        pass

    def compute(self) -> MetricResult:
        key = (self.prompt, self.ground_truth.shape, frame_digest(self.ground_truth))
        if self.known is not None and key in self.known:
            return MetricResult(self.known[key])
        score = self.generator.bits_per_dim
        takes_prompts = len(inspect.signature(score).parameters) >= 2  # the older contract: bits_per_dim(videos)
        (value,) = score([self.ground_truth], [self.prompt]) if takes_prompts else score([self.ground_truth])
        if self.known is not None:
            self.known[key] = float(value)
        return MetricResult(float(value))


class BitsPerDimMetric(Metric):
    name = "bits_per_dim"
    summary = "the model's bits per dimension on the prompt's real clip (exact for flows, a bound for diffusion)"
    higher_is_better = False
    needs_ground_truth = True
    extractor, version = ModelLikelihood.extractor, VERSION

    def __init__(self, args: Any = None) -> None:
        super().__init__(args)
        # per generator (held weakly: a model built later never sees another's values), the values it
        # gave: the same real clip and prompt come back under every task, and the value is the model's
        self._known: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _known_for(self, generator: Any) -> dict | None:
        try:
            return self._known.setdefault(generator, {})
        except TypeError:  # a generator that cannot be referenced weakly is simply scored every time
            return None

    def streaming(self, ctx: ClipContext) -> ModelLikelihood:
        if ctx.generator is None or not hasattr(ctx.generator, "bits_per_dim"):
            raise ValueError("this model defines no likelihood (its generator has no bits_per_dim); "
                             "limit the metric to the models that do with models: [...]")
        if ctx.ground_truth is None:
            raise ValueError("bits_per_dim scores the prompt's real clip, which this unit does not have")
        return ModelLikelihood(ctx.generator, ctx.ground_truth, ctx.prompt, ctx.fps, known=self._known_for(ctx.generator))
