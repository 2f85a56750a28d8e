"""The generator protocol: what the harness needs from any video generator.

A generator is any object with

``generate(prompts, seconds, fps, seed, task="t2v", condition_frames=None, **sampler_opts) -> list[video]``
    ``prompts`` is a list of strings (the harness passes :class:`Prompt`, a ``str`` that also
    carries a stable ``id`` and data-set ``meta``; generators that only want text can ignore
    both). ``seconds`` and ``fps`` fix the clip length: ``round(seconds * fps) + 1`` frames.
    ``seed`` makes the call deterministic. ``task`` is ``"t2v"`` (text only), ``"i2v"`` (the first
    frame is given) or ``"v2v"`` (the first frames are given, continue them);
    ``condition_frames[i]`` is the uint8 (K, H, W, 3) array given for ``prompts[i]``.
    Each returned video is a uint8 (T, H, W, 3) RGB array, one per prompt, in order, or the path
    of a video file (as the ``folder`` type returns): the harness then reads the file in chunks
    at ``fps``, scores its first ``round(seconds * fps) + 1`` frames as it reads them, and refers
    to the file by path and sha256 instead of copying it into the run.

``info() -> dict``
    At least ``name``, ``parameters`` (int, 0 for non-neural sources) and ``checkpoint_sha256``
    (or ``None``), recorded with every run.

``bits_per_dim(videos, prompts) -> list[float]`` (optional; ``bits_per_dim(videos)`` also works)
    Likelihood of held-out real clips (given their prompts, for conditional models), for
    generators that define one (the ``bits_per_dim`` metric); ``info()["likelihood"]`` says
    whether it is exact or a bound.

``generation_stats() -> dict`` (optional)
    What the last ``generate`` call cost, in the generator's own terms (network evaluations,
    sampler iterations per block, ...); recorded with each clip beside the wall seconds and peak
    memory the harness measures, and read by the cost metrics (``vbf ls metrics``).
"""

from __future__ import annotations

import os
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

TASKS = ("t2v", "i2v", "v2v")


class Prompt(str):
    """A prompt's text that also carries its stable id and where it came from."""

    id: str
    meta: dict[str, Any]

    def __new__(cls, text: str, id: str, meta: dict[str, Any] | None = None) -> "Prompt":
        prompt = super().__new__(cls, text)
        prompt.id = id
        prompt.meta = dict(meta or {})
        return prompt

    def __reduce__(self):  # keep id and meta through pickling (multiprocessing, torch.distributed)
        return (Prompt, (str(self), self.id, self.meta))


@runtime_checkable
class Generator(Protocol):
    def generate(
        self,
        prompts: Sequence[str],
        seconds: float,
        fps: float,
        seed: int,
        task: str = "t2v",
        condition_frames: Sequence[np.ndarray] | None = None,
        **sampler_opts: Any,
    ) -> list[np.ndarray | str | os.PathLike]: ...

    def info(self) -> dict[str, Any]: ...
