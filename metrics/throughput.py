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

from metrics.streaming import ClipContext, Metric, MetricResult, StreamingMetric

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


def stage_seconds(generation: Mapping[str, Any], *keys: str) -> float:
    """Seconds per clip the generator reported for one stage of its call (the first of ``keys`` it
    reported: the flow calls its latent sampler's time ``flow_seconds``, diffusion ``sampling_seconds``)."""
    for key in keys:
        if key in generation:
            return float(generation[key]) / int(generation.get("batch_size", 1))
    raise KeyError(" or ".join(keys))


def evaluations_vs_sequential(generation: Mapping[str, Any]) -> float:
    """Network evaluations of this sampler over the token-by-token reference's, same noise, same call."""
    return float(generation["network_evaluations"]) / float(generation["reference_network_evaluations"])


# ---------------------------------------------------------------- cost metrics

CostValue = Callable[[Mapping[str, Any], ClipContext, int], float]


class GenerationCost(StreamingMetric):
    """A cost metric in the streaming pass: it only counts the frames it is shown; the value is read
    from what was measured around generate() (and what the generator reported about itself)."""

    kind = "cost"

    def __init__(self, metric: "GenerationCostMetric", ctx: ClipContext) -> None:
        self.metric, self.ctx = metric, ctx
        self.name, self.version, self.extractor = metric.name, metric.version, metric.extractor
        self.higher_is_better = metric.higher_is_better
        super().__init__(ctx.fps)

    def reset(self) -> None:
        self.frames_seen = 0

    def update(self, chunk: Any) -> None:
        self.frames_seen += len(chunk)

    def compute(self) -> MetricResult:
        try:
            return MetricResult(self.metric.value(self.ctx.generation, self.ctx, self.frames_seen))
        except KeyError as missing:
            raise ValueError(f"metric {self.name!r} needs {missing.args[0]!r} from the generator, which did not "
                             "report it (only generators that expose generation_stats() report sampler costs)") from None


class GenerationCostMetric(Metric):
    """A per-clip cost read from what the harness measured around ``generate``; never the pixels."""

    kind = "cost"
    reads_task = True  # what this unit's generate() call cost
    extractor = "none (measured around generate)"
    version = VERSION
    value: CostValue

    def streaming(self, ctx: ClipContext) -> GenerationCost:
        return GenerationCost(self, ctx)


def cost_metric(name: str, summary: str, higher_is_better: bool, value: CostValue) -> type[GenerationCostMetric]:
    attributes = {"name": name, "summary": summary, "higher_is_better": higher_is_better, "value": staticmethod(value)}
    return type("".join(part.title() for part in name.split("_")) + "Metric", (GenerationCostMetric,), attributes)


COST_METRICS: tuple[type[GenerationCostMetric], ...] = (
    cost_metric("frames_per_second", "generated frames (given frames excluded) per second of generate() wall time",
                True, lambda g, ctx, frames: frames_per_second(g, frames - ctx.num_condition_frames)),
    cost_metric("generate_seconds", "wall seconds of generate() per clip (a self-check reference run excluded)",
                False, lambda g, ctx, frames: generation_seconds(g)),
    cost_metric("peak_memory_mb", "peak memory during generate(): CUDA allocated, or CPU heap in use above the "
                "start (MiB)", False, lambda g, ctx, frames: peak_memory_mb(g)),
    cost_metric("latency_to_first_frame", "seconds until the first generated frame exists (a separate timed call: "
                "the first latent frame for causal models, the first window for bidirectional ones; needs "
                "measure_first_frame)", False, lambda g, ctx, frames: float(g["first_frame_seconds"])),
    cost_metric("network_evaluations", "transformer passes the sampler made (generator-reported)", False,
                lambda g, ctx, frames: float(g["network_evaluations"])),
    cost_metric("sampler_iterations", "mean Jacobi iterations per block (generator-reported)", False,
                lambda g, ctx, frames: mean_iterations(g)),
    cost_metric("speedup_vs_sequential", "sequential seconds / this sampler's seconds, same noise, same call "
                "(needs check_against_sequential)", True, lambda g, ctx, frames: speedup(g)),
    cost_metric("latent_sampling_seconds", "seconds per clip in the latent sampler: the flow's inversion, or the "
                "diffusion denoising loop (generator-reported)", False,
                lambda g, ctx, frames: stage_seconds(g, "flow_seconds", "sampling_seconds")),
    cost_metric("denoiser_seconds", "seconds per clip in the flow's one-step denoiser (generator-reported)", False,
                lambda g, ctx, frames: stage_seconds(g, "denoise_seconds")),
    cost_metric("decoder_seconds", "seconds per clip decoding latents to frames (generator-reported)", False,
                lambda g, ctx, frames: stage_seconds(g, "decode_seconds")),
    cost_metric("evaluations_vs_sequential", "network evaluations / the token-by-token reference's on the same "
                "noise (needs check_against_sequential)", False, lambda g, ctx, frames: evaluations_vs_sequential(g)),
    cost_metric("latent_max_abs_diff", "max |latent - sequential latent| on the same noise (needs "
                "check_against_sequential)", False, lambda g, ctx, frames: float(g["max_abs_latent_difference"])),
)
