"""Likelihood as a metric: the bits per dimension a generator assigns to the prompt's real clip.

It is a property of the model, not of the generated clip: the value comes from the generator's
own ``bits_per_dim`` (exact for normalizing flows, an upper bound for diffusion; the model's info
says which and in which space) on the held-out real clip of the prompt. The generated clip
streams past without being looked at.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from metrics.streaming import ClipContext, Metric, MetricResult, StreamingMetric

VERSION = "bits-per-dim/1 (held-out real clip of the prompt, first training window)"


class ModelLikelihood(StreamingMetric):
    name = "bits_per_dim"
    higher_is_better = False
    extractor = "the generator's own likelihood (see the model's info: exact or upper bound, and its space)"
    version = VERSION
    min_frames = 0

    def __init__(self, generator: Any, ground_truth: np.ndarray, prompt: str, fps: float = 1.0) -> None:
        self.generator, self.ground_truth, self.prompt = generator, ground_truth, prompt
        super().__init__(fps)

    def reset(self) -> None:
        pass

    def update(self, chunk: np.ndarray) -> None:
        pass

    def compute(self) -> MetricResult:
        score = self.generator.bits_per_dim
        takes_prompts = len(inspect.signature(score).parameters) >= 2  # the older contract: bits_per_dim(videos)
        (value,) = score([self.ground_truth], [self.prompt]) if takes_prompts else score([self.ground_truth])
        return MetricResult(float(value))


class BitsPerDimMetric(Metric):
    name = "bits_per_dim"
    summary = "the model's bits per dimension on the prompt's real clip (exact for flows, a bound for diffusion)"
    higher_is_better = False
    needs_ground_truth = True
    extractor, version = ModelLikelihood.extractor, VERSION

    def streaming(self, ctx: ClipContext) -> ModelLikelihood:
        if ctx.generator is None or not hasattr(ctx.generator, "bits_per_dim"):
            raise ValueError("this model defines no likelihood (its generator has no bits_per_dim); "
                             "limit the metric to the models that do with models: [...]")
        if ctx.ground_truth is None:
            raise ValueError("bits_per_dim scores the prompt's real clip, which this unit does not have")
        return ModelLikelihood(ctx.generator, ctx.ground_truth, ctx.prompt, ctx.fps)
