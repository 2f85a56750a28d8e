"""Throughput: what generating a clip cost, measured around the generator call.

:class:`GenerationMeter` wraps one ``generate`` call and records its wall seconds and peak
memory above the level when the call began, sampled every few milliseconds on a background
thread. On glibc (Linux) the sample is the heap memory in use (``mallinfo2``: allocated chunks
plus mmapped blocks), which counts what the call holds rather than what the allocator keeps from
earlier calls; elsewhere it is the resident set size. When torch has CUDA initialised, the peak
CUDA memory allocated above the start is recorded too. Generators may add their own cost counts
(network evaluations, sampler iterations, a reference sampler's seconds); the per-clip values
below turn such a record into numbers a suite can aggregate and gate on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import sys
import threading
import time
from typing import Any, Callable, Mapping

import psutil

VERSION = "throughput-1"
MEGABYTE = 1024.0 * 1024.0


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _memory_probe() -> tuple[str, Callable[[], int]]:
    """(what is measured, a function returning it in bytes): glibc heap in use, else RSS."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallinfo2 = libc.mallinfo2
        mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        process = psutil.Process()
        return "rss", lambda: process.memory_info().rss

    def in_use() -> int:
        info = mallinfo2()
        return info.uordblks + info.hblkhd

    return "heap-in-use", in_use


class GenerationMeter:
    """``with GenerationMeter() as meter: generate(...)`` then ``meter.record()``."""

    def __init__(self, interval_seconds: float = 0.002) -> None:
        self.interval = interval_seconds
        self.memory_kind, self._memory = _memory_probe()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._baseline = self._peak = 0
        self._started = self.seconds = 0.0
        self._cuda = None
        self._cuda_start = 0

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, self._memory())

    def __enter__(self) -> "GenerationMeter":
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            self._cuda = torch.cuda
            self._cuda.reset_peak_memory_stats()
            self._cuda_start = self._cuda.memory_allocated()
        self._baseline = self._peak = self._memory()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self._started
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._peak = max(self._peak, self._memory())

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"seconds": self.seconds, "peak_memory_mb": (self._peak - self._baseline) / MEGABYTE,
                                  "memory_measure": self.memory_kind}
        if self._cuda is not None:
            record["peak_cuda_memory_mb"] = (self._cuda.max_memory_allocated() - self._cuda_start) / MEGABYTE
        return record


def generation_seconds(generation: Mapping[str, Any]) -> float:
    """Seconds the generator needed for the clip (``seconds``: the call's wall time shared by its
    ``batch_size`` clips); a reference sampler the generator ran in the same call only to check
    itself (``reference_seconds``, per call) and a separate run that timed the first frame
    (``first_frame_seconds``, per call) are not part of generating it."""
    extra = float(generation.get("reference_seconds", 0.0)) + float(generation.get("first_frame_seconds", 0.0))
    return float(generation["seconds"]) - extra / int(generation.get("batch_size", 1))


def frames_per_second(generation: Mapping[str, Any], generated_frames: int) -> float:
    """Frames the model made (given frames of i2v/v2v excluded) per second of generation."""
    if generated_frames < 1:
        raise ValueError("no frames were generated (every frame was given)")
    return generated_frames / generation_seconds(generation)


def peak_memory_mb(generation: Mapping[str, Any]) -> float:
    """Peak CUDA memory allocated when the generator used a GPU, else the CPU peak above the start."""
    return float(generation.get("peak_cuda_memory_mb", generation["peak_memory_mb"]))


def mean_iterations(generation: Mapping[str, Any]) -> float:
    iterations = generation.get("iterations")
    if not iterations:
        raise KeyError("iterations")
    return float(sum(iterations)) / len(iterations)


def speedup(generation: Mapping[str, Any]) -> float:
    """The reference sampler's seconds over this sampler's, on the same noise in the same call
    (both as the generator reported them for the whole call)."""
    own = float(generation["flow_seconds"])
    return float(generation["reference_seconds"]) / own if own > 0 else math.inf
