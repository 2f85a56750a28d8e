"""Metrics the harness ships, registered for suites. The computations live in ``metrics/``."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
from pydantic import Field

from metrics import clipsim, drift, fidelity, flicker, fvd, i3d, object_identity, shapes_detector, throughput, warping
from metrics.files import file_sha256
from metrics.streaming import MetricResult, StreamingMetric
from vbench_flow.errors import ConfigError
from vbench_flow.registry import Args, MetricType, SampleContext, SampleScore, get_metric, register_metric


class FlickerArgs(Args):
    segment_seconds: float = Field(2.0, gt=0, description="window for the over-time series (VBench-Long uses 2 s)")


class FlickerScorer:
    extractor = flicker.EXTRACTOR

    def __init__(self, args: FlickerArgs) -> None:
        self.segment_seconds = args.segment_seconds
        self.version = flicker.TemporalFlickering(segment_seconds=args.segment_seconds).version

    def streaming(self, ctx: SampleContext) -> flicker.TemporalFlickering:
        return flicker.TemporalFlickering(ctx.fps, self.segment_seconds)

    def score(self, video: np.ndarray, ctx: SampleContext) -> SampleScore:
        result = self.streaming(ctx).score(video)
        return SampleScore(value=result.value, series=result.series)


register_metric(MetricType(
    name="flicker",
    summary="VBench temporal flickering: (255 - mean |frame[t+1]-frame[t]|) / 255, higher is steadier",
    args_model=FlickerArgs,
    higher_is_better=flicker.HIGHER_IS_BETTER,
    build=FlickerScorer,
))


# ---------------------------------------------------------------- cost of generation

class NoArgs(Args):
    pass


class GenerationCostScorer:
    """A per-clip value read from what the harness measured around ``generate`` (and what the
    generator reported about itself); it never looks at the pixels."""

    extractor = "none (measured around generate)"
    version = throughput.VERSION

    def __init__(self, name: str, value: Callable[[dict[str, Any], SampleContext, np.ndarray], float]) -> None:
        self.name, self._value = name, value

    def streaming(self, ctx: SampleContext) -> "GenerationCost":
        return GenerationCost(self, ctx)

    def value(self, ctx: SampleContext, num_frames: int) -> float:
        try:
            return self._value(ctx.generation, ctx, num_frames)
        except KeyError as missing:
            raise ValueError(f"metric {self.name!r} needs {missing.args[0]!r} from the generator, which did not "
                             "report it (only generators that expose generation_stats() report sampler costs)") from None

    def score(self, video: np.ndarray, ctx: SampleContext) -> SampleScore:
        return SampleScore(value=self.value(ctx, len(video)))


class GenerationCost(StreamingMetric):
    """A cost metric in the streaming pass: it only counts the frames it is shown."""

    kind = "cost"

    def __init__(self, scorer: GenerationCostScorer, ctx: SampleContext) -> None:
        self.scorer, self.ctx = scorer, ctx
        self.name, self.version, self.extractor = scorer.name, scorer.version, scorer.extractor
        super().__init__(ctx.fps)

    def reset(self) -> None:
        self.frames_seen = 0

    def update(self, chunk: np.ndarray) -> None:
        self.frames_seen += len(chunk)

    def compute(self) -> MetricResult:
        return MetricResult(self.scorer.value(self.ctx, self.frames_seen))


def _cost_metric(name: str, summary: str, higher_is_better: bool,
                 value: Callable[[dict[str, Any], SampleContext, int], float]) -> None:
    register_metric(MetricType(name=name, summary=summary, args_model=NoArgs, higher_is_better=higher_is_better,
                               build=lambda _args: GenerationCostScorer(name, value), kind="cost"))


_cost_metric("frames_per_second", "generated frames (given frames excluded) per second of generate() wall time", True,
             lambda g, ctx, frames: throughput.frames_per_second(g, frames - ctx.num_condition_frames))
_cost_metric("generate_seconds", "wall seconds of generate() per clip (a self-check reference run excluded)", False,
             lambda g, ctx, video: throughput.generation_seconds(g))
_cost_metric("peak_memory_mb", "peak memory during generate(): CUDA allocated, or CPU heap in use above the start (MiB)", False,
             lambda g, ctx, video: throughput.peak_memory_mb(g))
_cost_metric("latency_to_first_frame", "seconds until the first generated frame exists (a separate timed call: the "
             "first latent frame for causal models, the first window for bidirectional ones; needs measure_first_frame)",
             False, lambda g, ctx, video: float(g["first_frame_seconds"]))
_cost_metric("network_evaluations", "transformer passes the sampler made (generator-reported)", False,
             lambda g, ctx, video: float(g["network_evaluations"]))
_cost_metric("sampler_iterations", "mean Jacobi iterations per block (generator-reported)", False,
             lambda g, ctx, video: throughput.mean_iterations(g))
_cost_metric("speedup_vs_sequential", "sequential seconds / this sampler's seconds, same noise, same call "
             "(needs check_against_sequential)", True, lambda g, ctx, video: throughput.speedup(g))
_cost_metric("latent_max_abs_diff", "max |latent - sequential latent| on the same noise (needs check_against_sequential)",
             False, lambda g, ctx, video: float(g["max_abs_latent_difference"]))


# ---------------------------------------------------------------- warping error

class WarpingArgs(Args):
    estimator: Literal["dis", "dis-medium", "farneback", "raft"] = Field(
        warping.DEFAULT_ESTIMATOR, description="optical flow: OpenCV DIS (fast preset; dis-medium refines more at a "
        "third of the speed), OpenCV Farneback, or torchvision RAFT (local weights needed)")
    flow_size: int | None = Field(None, ge=16, description="working resolution: frames are area-resized so their "
                                  "longer side is at most this before flow and error (default: native; named in "
                                  "the version, since the value depends on it)")


class WarpingScorer:
    def __init__(self, args: WarpingArgs) -> None:
        try:
            self.estimator = warping.get_estimator(args.estimator if args.estimator != "raft" else warping.raft_flow())
        except FileNotFoundError as exc:
            raise ConfigError(str(exc), where="warping_error.args.estimator",
                              fix="place the RAFT weights there, or use estimator: dis") from None
        self.flow_size = args.flow_size
        self.extractor = f"optical flow: {self.estimator.name}"
        self.version = warping.WarpingError(estimator=self.estimator, flow_size=args.flow_size).version

    def streaming(self, ctx: SampleContext) -> warping.WarpingError:
        return warping.WarpingError(ctx.fps, self.estimator, self.flow_size)

    def score(self, video: np.ndarray, ctx: SampleContext) -> SampleScore:
        result = self.streaming(ctx).score(video)
        return SampleScore(value=result.value, series=result.series)


register_metric(MetricType(
    name="warping_error",
    summary="Lai et al. 2018: mean over frame pairs of the occlusion-masked squared error of frame t+1 warped to t",
    args_model=WarpingArgs,
    higher_is_better=warping.HIGHER_IS_BETTER,
    build=WarpingScorer,
))


# ---------------------------------------------------------------- CLIPSIM

class ClipsimArgs(Args):
    model: str = Field("domain", description="'domain' (the shipped shapes-world CLIP, or a domain checkpoint "
                       "given as checkpoint:) or an open_clip architecture name, e.g. ViT-B-32")
    pretrained: str | None = Field(None, description="open_clip: a pretrained tag (e.g. openai) or a local weights file")
    checkpoint: str | None = Field(None, description="domain: a domain-CLIP .pt file (default: the shipped one)")


def _clip_scorer(args: ClipsimArgs) -> Any:
    try:
        if args.model == "domain":
            return clipsim.ClipScorer.from_domain_checkpoint(args.checkpoint or clipsim.DEFAULT_CHECKPOINT)
        if not args.pretrained:
            raise ConfigError(f"CLIPSIM with open_clip model {args.model!r} needs pretrained: (a tag or a weights file)",
                              where="clipsim.args.pretrained", fix="e.g. pretrained: openai")
        return clipsim.ClipScorer.from_open_clip(args.model, args.pretrained)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise ConfigError(str(exc), where="clipsim.args") from None


class ClipsimScorer:
    def __init__(self, args: ClipsimArgs) -> None:
        self.scorer = _clip_scorer(args)
        self.extractor, self.version = self.scorer.extractor, self.scorer.version

    def streaming(self, ctx: SampleContext) -> clipsim.Clipsim:
        return clipsim.Clipsim(self.scorer, ctx.prompt, ctx.fps)

    def score(self, video: np.ndarray, ctx: SampleContext) -> SampleScore:
        result = self.streaming(ctx).score(video)
        return SampleScore(value=result.value, series=result.series)


register_metric(MetricType(
    name="clipsim",
    summary="CLIPSIM: mean over frames of the cosine between CLIP image and prompt embeddings (raw, in [-1, 1])",
    args_model=ClipsimArgs,
    higher_is_better=clipsim.HIGHER_IS_BETTER,
    build=ClipsimScorer,
))


# ---------------------------------------------------------------- drift over time

class DriftArgs(Args):
    window_seconds: float = Field(5.0, gt=0, description="window length (VBench-Long uses 2 s; 5 s for 30 s clips)")


def _register_drift(base: str, summary: str, make: Callable[[], Any]) -> None:
    """``BASE_drift``: the slope of the base metric over windows, from the base's own per-frame or
    per-pair values (``metrics.drift.Drift``), in the same pass over the clip."""
    entry = get_metric(base)

    class DriftScorer:
        def __init__(self, args: DriftArgs) -> None:
            self.window_seconds = args.window_seconds
            self.scorer = make()
            self.extractor = self.scorer.extractor
            self.version = f"{drift.VERSION}; of {self.scorer.version}; windows {args.window_seconds:g}s"

        def streaming(self, ctx: SampleContext) -> drift.Drift:
            return drift.Drift(self.scorer.streaming(ctx), self.window_seconds)

        def score(self, video: np.ndarray, ctx: SampleContext) -> SampleScore:
            result = self.streaming(ctx).score(video)
            return SampleScore(value=result.value, series=result.series)

    register_metric(MetricType(name=f"{base}_drift", summary=summary, args_model=DriftArgs,
                               higher_is_better=entry.higher_is_better, build=DriftScorer))


_register_drift("flicker", "slope per second of flicker over windows (negative: the clip flickers more as it goes)",
                lambda: FlickerScorer(FlickerArgs()))
_register_drift("warping_error", "slope per second of the warping error over windows (positive: less consistent as it goes)",
                lambda: WarpingScorer(WarpingArgs()))
_register_drift("clipsim", "slope per second of CLIPSIM over windows (negative: drifting away from the prompt)",
                lambda: ClipsimScorer(ClipsimArgs()))


# ---------------------------------------------------------------- FVD (set-level)

class FvdArgs(Args):
    extractor: Literal["shapes-i3d", "i3d", "i3d-torchscript"] = Field(
        "shapes-i3d", description="shapes-i3d: the shipped shapes-world detector (offline default); i3d: the "
        "Kinetics-400 I3D state dict i3d_pretrained_400.pt; i3d-torchscript: StyleGAN-V's i3d_torchscript.pt "
        "(`vbf fetch i3d` downloads them where there is internet)")
    weights: str | None = Field(None, description="the extractor's file (default: the shipped shapes-i3d, or "
                                "~/.cache/vbench-flow/<file> for i3d)")
    sha256: str | None = Field(None, description="i3d: the hash the weights file must have")
    estimator: Literal["unbiased", "biased", "ledoit_wolf"] = Field(
        "unbiased", description="covariance: / (n-1) as the original FVD, / n as StyleGAN-V, or Ledoit-Wolf shrinkage")
    windows: Literal["first", "all"] = Field(
        "first", description="first: FVD_16 on each clip's first 16 frames; all: every non-overlapping 16-frame "
        "window of the clip (the long-clip variant)")
    preprocessing: Literal["stretch", "center_crop"] = Field(
        "stretch", description="i3d: stretch frames to 224x224 (original FVD) or resize the shorter side and crop")
    batch_size: int = Field(16, ge=1, le=1024)
    bootstrap: int = Field(200, ge=0, le=10_000, description="resamples of the generated units for the interval "
                           "(0: no interval)")


class FvdScorer:
    """Features per clip now; FVD per (model, task, clip length) against the suite's reference clips
    when the run is aggregated (``vbench_flow.set_metrics``)."""

    def __init__(self, args: FvdArgs) -> None:
        self.args = args
        try:
            if args.extractor == "shapes-i3d":
                self.detector, meta = shapes_detector.load_shapes_detector(args.weights or shapes_detector.DEFAULT_CHECKPOINT)
                self.extractor = shapes_detector.extractor_id(meta)
                base = shapes_detector.metric_version(meta, estimator=args.estimator)
                self._features = lambda clips: self.detector.features(clips, args.batch_size)
            else:
                self.detector = (i3d.load_i3d(args.weights, args.sha256) if args.extractor == "i3d" else
                                 i3d.load_i3d_torchscript(args.weights or i3d.DEFAULT_WEIGHTS_PATH.with_name(
                                     i3d.TORCHSCRIPT_FILENAME), args.sha256))
                weights = Path(args.weights or (i3d.DEFAULT_WEIGHTS_PATH if args.extractor == "i3d" else
                                                i3d.DEFAULT_WEIGHTS_PATH.with_name(i3d.TORCHSCRIPT_FILENAME))).expanduser()
                self.extractor = f"{args.extractor} (Kinetics-400) {file_sha256(weights)[:12]}"
                base = fvd.metric_version(estimator=args.estimator, mode=args.preprocessing)
                self._features = lambda clips: fvd.extract_features(clips, self.detector, batch_size=args.batch_size,
                                                                    mode=args.preprocessing)
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            raise ConfigError(str(exc), where="fvd.args", fix="`vbf fetch i3d` downloads the I3D weights, or use "
                              "extractor: shapes-i3d (offline)") from None
        self.version = f"{base}; windows={args.windows}"

    def features(self, video: np.ndarray, fps: float) -> np.ndarray:
        return np.asarray(self._features(fvd.clip_windows(video, windows=self.args.windows)), dtype=np.float64)

    def feature_stream(self, fps: float) -> fvd.WindowFeatures:
        return fvd.WindowFeatures(self._features, windows=self.args.windows, batch_windows=self.args.batch_size)

    def distance(self, real: fvd.FeatureStats, fake: fvd.FeatureStats) -> float:
        return fvd.fvd_from_features(real, fake, estimator=self.args.estimator)

    def interval(self, real: fvd.FeatureStats, fake_units: list[fvd.FeatureStats], *, confidence: float,
                 seed: int) -> tuple[float, float]:
        return fvd.bootstrap_fvd_interval(real, fake_units, estimator=self.args.estimator, resamples=self.args.bootstrap,
                                          confidence=confidence, seed=seed)


register_metric(MetricType(
    name="fvd",
    summary="Fréchet Video Distance of each (model, task, clip length) set against real reference clips "
            "(shapes-i3d features offline, Kinetics I3D where its weights are present)",
    args_model=FvdArgs, higher_is_better=fvd.HIGHER_IS_BETTER, build=FvdScorer, kind="set",
    min_frames=fvd.CLIP_FRAMES,
))


# ---------------------------------------------------------------- continuation fidelity

class FidelityScorer:
    extractor = "none (pixels against the ground truth)"
    version = fidelity.VERSION

    def __init__(self, per_frame: Callable[[np.ndarray, np.ndarray, int], np.ndarray]) -> None:
        self.per_frame = per_frame

    def score(self, video: np.ndarray, ctx: SampleContext) -> SampleScore:
        if ctx.ground_truth is None:
            raise ValueError("continuation fidelity needs the ground-truth clip of the prompt")
        values = self.per_frame(video, ctx.ground_truth, ctx.num_condition_frames)
        start = ctx.num_condition_frames
        return SampleScore(value=float(values.mean()), series=[((start + i) / ctx.fps, float(v)) for i, v in enumerate(values)])


for _name, _summary, _fn, _higher in (
        ("continuation_psnr", "PSNR (dB) of each generated frame against the real one at the same time, averaged", fidelity.psnr_per_frame, True),
        ("continuation_ssim", "SSIM of each generated frame against the real one at the same time, averaged", fidelity.ssim_per_frame, True)):
    register_metric(MetricType(name=_name, summary=_summary, args_model=NoArgs, higher_is_better=_higher,
                               build=lambda _args, fn=_fn: FidelityScorer(fn), needs_ground_truth=True))


# ---------------------------------------------------------------- likelihood

class LikelihoodScorer:
    """Bits per dimension the model assigns to the prompt's real clip (its first training window),
    through the generator's own ``bits_per_dim``; the model's info says exact or bound and in
    which space. One value per unit, independent of the generated clip."""

    extractor = "the generator's own likelihood (see the model's info: exact or upper bound, and its space)"
    version = "bits-per-dim/1 (held-out real clip of the prompt, first training window)"

    def __init__(self, _args: NoArgs) -> None:
        pass

    def score(self, video: np.ndarray, ctx: SampleContext) -> SampleScore:
        if ctx.generator is None or not hasattr(ctx.generator, "bits_per_dim"):
            raise ValueError("this model defines no likelihood (its generator has no bits_per_dim); "
                             "limit the metric to the models that do with models: [...]")
        if ctx.ground_truth is None:
            raise ValueError("bits_per_dim scores the prompt's real clip, which this unit does not have")
        score = ctx.generator.bits_per_dim
        takes_prompts = len(inspect.signature(score).parameters) >= 2  # the older contract: bits_per_dim(videos)
        (value,) = score([ctx.ground_truth], [ctx.prompt]) if takes_prompts else score([ctx.ground_truth])
        return SampleScore(value=float(value))


register_metric(MetricType(
    name="bits_per_dim",
    summary="the model's bits per dimension on the prompt's real clip (exact for flows, a bound for diffusion)",
    args_model=NoArgs, higher_is_better=False, build=LikelihoodScorer, needs_ground_truth=True,
))


# ---------------------------------------------------------------- object identity (colour and size over time)

class ObjectIdentityScorer:
    """Colour or size change of each tracked object against its first frame (metrics.object_identity)."""

    extractor = "none (background subtraction + connected components + Hungarian tracking)"
    version = object_identity.VERSION

    def __init__(self, quantity: Literal["colour", "size"]) -> None:
        self.quantity = quantity

    def score(self, video: np.ndarray, ctx: SampleContext) -> SampleScore:
        change = object_identity.object_identity_change(video)
        value, series = ((change.colour, change.colour_series) if self.quantity == "colour"
                         else (change.size, change.size_series))
        return SampleScore(value=value, series=[(frame / ctx.fps, v) for frame, v in series])


for _name, _quantity, _summary in (
        ("object_colour_change", "colour", ("mean RGB distance / (255 sqrt 3) of each tracked object's colour to "
                                            "its colour in its first frame (shapes-world-like videos; own definition)")),
        ("object_size_change", "size", ("mean |ln(area / first area)| of each tracked object "
                                        "(shapes-world-like videos; own definition)"))):
    register_metric(MetricType(name=_name, summary=_summary, args_model=NoArgs,
                               higher_is_better=object_identity.HIGHER_IS_BETTER,
                               build=lambda _args, quantity=_quantity: ObjectIdentityScorer(quantity)))
