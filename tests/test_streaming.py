"""Streaming metrics: any chunking of a clip, down to one frame per chunk, gives what one call on
the whole clip gives; parts of a clip scored apart and merged give the same again."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import pytest

from metrics import clipsim, drift, flicker, warping
from metrics.streaming import StreamingMetric


def moving_clip(frames: int = 29, size: int = 24, seed: int = 0) -> np.ndarray:
    """A textured square drifting over noise: real motion for the flow, real differences for flicker."""
    rng = np.random.default_rng(seed)
    clip = rng.integers(0, 60, size=(frames, size, size, 3), dtype=np.uint8)
    texture = rng.integers(120, 256, size=(8, 8, 3), dtype=np.uint8)
    for t in range(frames):
        x = 2 + (t % (size - 10))
        clip[t, 6:14, x:x + 8] = texture
    return clip


def random_chunks(clip: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Consecutive chunks of random sizes, with several one-frame chunks."""
    cuts, at = [], 0
    while at < len(clip):
        size = int(rng.choice([1, 1, 2, 3, 5, 8]))
        cuts.append(clip[at:at + size])
        at += size
    return cuts


@lru_cache(maxsize=1)
def domain_clip() -> clipsim.ClipScorer:
    return clipsim.ClipScorer.from_domain_checkpoint(batch_size=4)  # batches that cut across chunks


def streamed(metric: StreamingMetric, chunks: list[np.ndarray]):
    metric.reset()
    for chunk in chunks:
        metric.update(chunk)
    return metric.compute()


METRICS = {
    "flicker": lambda: flicker.TemporalFlickering(fps=8, segment_seconds=1.0),
    "flicker_drift": lambda: drift.Drift(flicker.TemporalFlickering(fps=8), window_seconds=1.0),
    "warping_error": lambda: warping.WarpingError(fps=8, estimator="farneback"),
    "warping_error_drift": lambda: drift.Drift(warping.WarpingError(fps=8), window_seconds=1.0),
    "clipsim": lambda: clipsim.Clipsim(domain_clip(), "a red square moving right", fps=8),
    "clipsim_drift": lambda: drift.Drift(clipsim.Clipsim(domain_clip(), "a red square", fps=8), window_seconds=1.0),
}
# pixel metrics are exact; a network's batch composition may move its float32 outputs slightly
TOLERANCE = {name: 1e-5 if name.startswith("clipsim") else 1e-9 for name in METRICS}


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("split_seed", [0, 1, 2])
def test_any_chunking_equals_the_whole_clip(name, split_seed):
    clip = moving_clip()
    whole = METRICS[name]().score(clip)
    chunks = random_chunks(clip, np.random.default_rng(split_seed))
    assert min(map(len, chunks)) == 1
    parts = streamed(METRICS[name](), chunks)
    assert parts.value == pytest.approx(whole.value, abs=TOLERANCE[name], rel=0)
    assert len(parts.series) == len(whole.series)
    np.testing.assert_allclose(np.asarray(parts.series), np.asarray(whole.series), rtol=0, atol=TOLERANCE[name])


@pytest.mark.parametrize("name", sorted(METRICS))
def test_parts_scored_apart_and_merged_equal_the_whole_clip(name):
    clip = moving_clip()
    whole = METRICS[name]().score(clip)
    first, second, third = METRICS[name](), METRICS[name](), METRICS[name]()
    first.update(clip[:10])
    second.update(clip[10:11])
    third.update(clip[11:])
    first.merge(second)
    first.merge(third)
    merged = first.compute()
    assert merged.value == pytest.approx(whole.value, abs=TOLERANCE[name], rel=0)
    np.testing.assert_allclose(np.asarray(merged.series), np.asarray(whole.series), rtol=0, atol=TOLERANCE[name])


def test_functional_twins_are_one_update_and_one_compute():
    clip = moving_clip()
    assert flicker.temporal_flickering(clip) == flicker.TemporalFlickering().score(clip).value
    assert warping.warping_error(clip) == warping.WarpingError().score(clip).value
    # and they keep their definitions: flicker by hand, warping error through the per-pair reference
    by_hand = np.abs(np.diff(clip.astype(np.int64), axis=0)).reshape(len(clip) - 1, -1).mean(axis=1)
    assert flicker.temporal_flickering(clip) == pytest.approx((255 - by_hand.mean()) / 255, abs=1e-15)
    assert warping.warping_error(clip) == pytest.approx(warping.warping_error_per_pair(clip).mean, abs=1e-15)
    for metric, whole_clip_metric in ((flicker.TemporalFlickering(8), flicker.temporal_flickering),
                                      (warping.WarpingError(8), warping.warping_error),
                                      (clipsim.Clipsim(domain_clip(), "a red square", 8),
                                       lambda frames: clipsim.clipsim(frames, "a red square", domain_clip()))):
        # the drift's windows come from the base's values; they equal the metric run on each window
        windows = drift.per_window(clip, 8, 1.0, whole_clip_metric, min_frames=3)
        streamed_drift = drift.Drift(metric, 1.0).score(clip)
        np.testing.assert_allclose([v for _, v in streamed_drift.series], [w.value for w in windows], atol=1e-9)
        assert streamed_drift.value == pytest.approx(drift.drift_slope(windows), abs=1e-9)
    assert clipsim.clipsim(clip, "a red square", domain_clip()) == pytest.approx(
        domain_clip().score(clip, "a red square"), abs=1e-12)


def test_pair_state_is_one_number_per_pair_and_two_frames():
    clip = moving_clip(frames=40)
    metric = flicker.TemporalFlickering(fps=8)
    for start in range(0, 40, 7):
        metric.update(clip[start:start + 7])
    assert metric.frames_seen == 40 and metric.values.shape == (39,)
    assert metric.first.shape == metric.last.shape == clip.shape[1:]
    assert not np.shares_memory(metric.last, clip)  # the chunk can be freed


def test_chunks_of_another_frame_size_are_refused():
    metric = flicker.TemporalFlickering()
    metric.update(moving_clip(frames=3, size=24))
    with pytest.raises(ValueError, match="chunk frames are"):
        metric.update(moving_clip(frames=3, size=16))


def test_one_frame_is_not_enough():
    metric = flicker.TemporalFlickering()
    metric.update(moving_clip(frames=1))
    with pytest.raises(ValueError, match="at least 2 frames"):
        metric.compute()


# ---------------------------------------------------------------- FVD features and the harness's single pass

@pytest.mark.parametrize("windows", ["first", "all", "spread"])
def test_fvd_window_features_stream_like_the_whole_clip(windows):
    from vbench_flow.registry import get_metric

    entry = get_metric("fvd")
    options = {"windows": windows, "batch_size": 2} | ({"window_count": 9} if windows == "spread" else {})
    scorer = entry.build(entry.args_model.model_validate(options))
    clip = moving_clip(frames=70, size=32)
    whole = scorer.features(clip, 8)
    stream = scorer.feature_stream(8, len(clip))
    for chunk in random_chunks(clip, np.random.default_rng(3)):
        stream.update(chunk)
    assert stream.features().shape == whole.shape == ({"first": 1, "all": 4, "spread": 9}[windows], whole.shape[1])
    np.testing.assert_allclose(stream.features(), whole, rtol=0, atol=1e-5)
    if windows == "spread":  # overlapping windows: the 2nd starts 54 / 8 -> 7 frames in, not 16
        np.testing.assert_allclose(whole[1], scorer.features(clip[7:23], 8)[0], rtol=0, atol=1e-5)
        short = scorer.feature_stream(8, len(clip))
        short.update(clip[:60])
        with pytest.raises(ValueError, match="announced with 70"):
            short.features()


def test_a_video_file_is_scored_in_one_chunked_pass_in_bounded_memory(tmp_path):
    """Every streaming metric on a 400-frame file (4.9 MB decoded): Python's peak allocation is the
    same as for a 100-frame file and well under half the clip, so nothing holds the whole clip."""
    import tracemalloc

    from metrics.streaming import ClipContext
    from vbench_flow.registry import get_metric
    from vbench_flow.scoring import MetricPlan, score_clip
    from vbench_flow.video_io import write_video

    names = ["flicker", "flicker_drift", "warping_error", "warping_error_drift", "clipsim", "fvd", "generate_seconds"]
    plans = [MetricPlan(n, get_metric(n).build(get_metric(n).args_model.model_validate(
        {"window_seconds": 5} if n.endswith("_drift") else {})), get_metric(n).set_level) for n in names]
    ctx = ClipContext(fps=8, prompt="a square", task="t2v", generation={"seconds": 1.0})

    def peak_bytes(frames: int) -> int:
        path = write_video(tmp_path / f"clip{frames}.mp4", moving_clip(frames=frames, size=64), 8)
        score_clip(path, plans, ctx, frames, chunk_frames=16)  # warm-up: caches, lazy imports
        tracemalloc.start()
        scores = score_clip(path, plans, ctx, frames, chunk_frames=16)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert scores.metric_errors == {} and scores.num_frames == frames
        assert set(scores.metrics) == set(names) - {"fvd"} and len(scores.features["fvd"]) == 1
        return peak

    short, long = peak_bytes(100), peak_bytes(400)
    assert long < 1.3 * short, f"peak {long / 1e6:.2f} MB for 400 frames vs {short / 1e6:.2f} MB for 100"
    assert long < 400 * 64 * 64 * 3 / 2


def test_warping_flow_size_scores_at_the_working_resolution_and_names_it():
    clip = moving_clip(frames=6, size=64)
    small = np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA) for f in clip])
    at_32 = warping.WarpingError(estimator="dis", flow_size=32)
    assert at_32.score(clip).value == warping.WarpingError(estimator="dis").score(small).value
    assert "working size 32" in at_32.version and "working size" not in warping.WarpingError().version
    assert warping.WarpingError(estimator="dis", flow_size=128).score(clip).value == \
        warping.WarpingError(estimator="dis").score(clip).value  # never enlarged


def write_videos_and_manifest(manifest, clips: dict[str, np.ndarray], fps: float, header: list[str], row) -> None:
    """Each clip as a lossless ``NAME.mp4`` beside ``manifest``, and one manifest row per clip (``row(NAME)``)."""
    import csv

    from vbench_flow.video_io import write_video

    with open(manifest, "w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow(header)
        for name, clip in clips.items():
            write_video(manifest.parent / f"{name}.mp4", clip, fps, crf=0)
            rows.writerow(row(name))


def test_no_code_path_materialises_a_whole_clip(tmp_path, monkeypatch, capsys):
    """The harness end to end on a folder model's 15 s files with every streaming metric, while the
    whole-clip readers refuse to run and the chunked reader refuses to hand out more than one
    chunk's frames: the run still scores every clip, with the values one call on the whole clip
    gives."""
    import json
    import textwrap

    import vbench_flow.video_io as video_io
    from vbench_flow.cli import main

    fps, chunk, frames = 8, 6, 121
    clips = {f"test-00000{i}": moving_clip(frames=frames, size=48, seed=i) for i in range(2)}
    write_videos_and_manifest(tmp_path / "videos.csv", clips, fps, ["video", "prompt_id", "clip_seconds"],
                              lambda name: [f"{name}.mp4", name, 15])
    decoded = {p: video_io.read_video(tmp_path / f"{p}.mp4")[0] for p in clips}  # before the readers refuse

    def refuse(*args, **kwargs):
        raise AssertionError("a whole clip was materialised")

    chunked = video_io.iter_chunks

    def one_chunk_at_most(*args, **kwargs):
        for piece in chunked(*args, **kwargs):
            assert len(piece) <= chunk, f"a reader returned {len(piece)} frames where a chunk is {chunk}"
            yield piece

    for name in ("read_video", "_read_pyav", "_read_decord"):
        monkeypatch.setattr(video_io, name, refuse)
    monkeypatch.setattr(video_io, "iter_chunks", one_chunk_at_most)
    names = ["flicker", "flicker_drift", "warping_error", "warping_error_drift", "clipsim", "clipsim_drift", "fvd"]
    suite = tmp_path / "suite.yaml"
    suite.write_text(textwrap.dedent(f"""
name: streamed
data: {{type: shapes, size: 48, fps: {fps}}}
clip_seconds: [15]
prompts: {{source: data, split: test, count: 2}}
reference: {{split: val, count: 2}}
scoring: {{chunk_frames: {chunk}}}
models: [{{name: footage, type: folder, args: {{manifest: videos.csv}}}}]
metrics: [{", ".join("{name: " + n + "}" for n in names)}]
report: {{gallery: 0}}
"""))
    with pytest.raises(SystemExit) as info:
        main(["run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "streamed", "--quiet"])
    assert info.value.code == 0, capsys.readouterr().err
    lines = (tmp_path / "runs" / "streamed" / "samples.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 2 and all(r["status"] == "ok" and not r["metric_errors"] for r in records)
    for record in records:
        whole = decoded[record["prompt_id"]]
        assert record["num_frames"] == frames and record["read_seconds"] > 0 and record["peak_rss_mb"] > 0
        assert record["metrics"]["flicker"] == pytest.approx(flicker.temporal_flickering(whole), abs=1e-9)
        assert record["metrics"]["warping_error"] == pytest.approx(warping.warping_error(whole), abs=1e-9)
        assert len(record["features"]["fvd"]) == 1


def test_read_seconds_count_decoding_only_and_peak_memory_is_the_process_high_water_mark(tmp_path):
    """A metric that sleeps 80 ms a chunk: its time is its own, not the reader's; a clip handed over
    as an array has no decode time at all; the peak RSS is the kernel's high-water mark in MiB."""
    import time
    from pathlib import Path

    from metrics.streaming import ClipContext, Metric, MetricResult, StreamingMetric
    from vbench_flow.scoring import MetricPlan, peak_rss_mb, score_clip
    from vbench_flow.video_io import write_video

    class Slow(StreamingMetric):
        name, higher_is_better, min_frames = "slow", True, 1
        version = extractor = "test"

        def reset(self) -> None:
            self.count = 0

        def update(self, chunk: np.ndarray) -> None:
            time.sleep(0.08)
            self.count += len(chunk)

        def compute(self) -> MetricResult:
            return MetricResult(float(self.count))

    class SlowMetric(Metric):
        name, summary, higher_is_better = "slow", "sleeps", True

        def streaming(self, ctx: ClipContext) -> Slow:
            return Slow(ctx.fps)

    clip = moving_clip(frames=40, size=32)
    path = write_video(tmp_path / "clip.mp4", clip, 8)
    plans = [MetricPlan("slow", SlowMetric(), False)]
    scores = score_clip(path, plans, ClipContext(fps=8), 40, chunk_frames=4)
    assert scores.metrics["slow"] == 40 and scores.metric_seconds["slow"] >= 10 * 0.08
    # decoding 40 frames of 32x32 takes milliseconds; the 0.8 s of sleep must not be counted as reading
    # (a wide margin: the machine may be busy with other work)
    assert 0 < scores.read_seconds < 0.4
    assert score_clip(clip, plans, ClipContext(fps=8), 40, chunk_frames=4).read_seconds is None
    status = Path("/proc/self/status")
    if status.exists():  # Linux: VmHWM is the peak resident set in kB
        high_water = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM"))
        assert peak_rss_mb() == pytest.approx(high_water / 1024, rel=0.05)


class _LikelihoodStub:
    """A generator whose bits_per_dim depends on the clip it is given (the real clip of the prompt)."""

    def bits_per_dim(self, videos, prompts):
        return [float(np.asarray(v, dtype=np.float64).mean() / 255.0) for v in videos]


# per-clip metrics with no offline extractor: they run only from official weights files, which no
# test can download (tests/test_vbench.py checks their arithmetic and their refusal without the file)
NEEDS_OFFICIAL_WEIGHTS = {"imaging_quality", "aesthetic_quality", "imaging_quality_start_end_contrast",
                          "aesthetic_quality_start_end_contrast"}


def _registered_per_clip_metrics() -> list[str]:
    from vbench_flow.registry import metric_types

    return sorted(name for name, entry in metric_types().items()
                  if entry.kind != "set" and name not in NEEDS_OFFICIAL_WEIGHTS)


@pytest.mark.parametrize("name", _registered_per_clip_metrics())
def test_every_registered_metric_streams_and_any_chunking_equals_the_whole_clip(name):
    """Every shipped per-clip metric, built through the registry as a suite builds it, gives a
    streaming state (none needs the whole clip), and chunks of random sizes down to one frame give
    the value and series of one call on the whole clip."""
    from metrics.streaming import ClipContext
    from vbench_flow.data.shapes import ShapesWorld
    from vbench_flow.registry import get_metric

    world = ShapesWorld("test", size=64, fps=8)
    # 41 frames give a drift two 2 s windows; 25 frames are enough for the rest (FVD's 16, a VBench-Long
    # clip of 16 frames and its padded tail) and keep the network metrics quick
    frames = 41 if name.endswith("_drift") else 25
    clip, truth = world.clip(0, frames).frames, world.clip(1, frames).frames
    generation = {"seconds": 2.0, "peak_memory_mb": 12.0, "first_frame_seconds": 0.25, "network_evaluations": 40,
                  "iterations": [3, 4, 5], "flow_seconds": 1.0, "reference_seconds": 3.0,
                  "max_abs_latent_difference": 1e-4, "denoise_seconds": 0.1, "decode_seconds": 0.5,
                  "reference_network_evaluations": 160}
    ctx = ClipContext(fps=8, prompt=world.caption(0), task="i2v", num_condition_frames=2, ground_truth=truth,
                      generation=generation, generator=_LikelihoodStub())
    entry = get_metric(name)
    metric = entry.build(entry.args_model.model_validate({"window_seconds": 2} if name.endswith("_drift") else {}))
    assert metric.streaming(ctx) is not None, f"{name} needs the whole clip"
    whole = metric.streaming(ctx).score(clip)
    # network features batch as the chunks fall: float32 sums in another order
    tolerance = 1e-5 if name.startswith(("clipsim", "subject_", "background_", "identity_")) else 1e-9
    for seed in (0, 1):
        parts = metric.streaming(ctx)
        for chunk in random_chunks(clip, np.random.default_rng(seed)):
            parts.update(chunk)
        result = parts.compute()
        assert result.value == pytest.approx(whole.value, rel=tolerance, abs=tolerance), name
        assert len(result.series) == len(whole.series)
        for (t1, v1), (t2, v2) in zip(result.series, whole.series):
            assert t1 == t2 and v1 == pytest.approx(v2, rel=tolerance, abs=tolerance), name


def test_ground_truth_of_real_footage_streams_beside_the_clip(tmp_path, monkeypatch, capsys):
    """Continuation fidelity against a folder data set's real clips: the ground truth is read chunk by
    chunk beside the generated clip (whole-clip reads refuse), and the values equal the whole-clip
    computation."""
    import json
    import textwrap

    import vbench_flow.data.folder as folder
    import vbench_flow.video_io as video_io
    from metrics.fidelity import psnr_per_frame
    from vbench_flow.cli import main

    fps, chunk, frames = 8, 5, 81
    real = {f"real{i}": moving_clip(frames=frames, size=48, seed=i) for i in range(2)}
    generated = {name: np.clip(clip.astype(np.int16) + 9, 0, 255).astype(np.uint8) for name, clip in real.items()}
    write_videos_and_manifest(tmp_path / "data.csv", real, fps, ["video", "caption", "id", "split"],
                              lambda name: [f"{name}.mp4", f"a square, {name}", name, "test"])
    write_videos_and_manifest(tmp_path / "generated.csv", {f"gen-{n}": c for n, c in generated.items()}, fps,
                              ["video", "prompt_id", "clip_seconds"], lambda name: [f"{name}.mp4", name[4:], 10])
    expected = {name: psnr_per_frame(video_io.read_video(tmp_path / f"gen-{name}.mp4")[0],
                                     video_io.read_video(tmp_path / f"{name}.mp4")[0]).mean() for name in real}

    def refuse(*args, **kwargs):
        raise AssertionError("a whole clip was materialised")

    for name in ("read_video", "_read_pyav", "_read_decord"):
        monkeypatch.setattr(video_io, name, refuse)
    monkeypatch.setattr(folder.VideoFolder, "clip", refuse)
    suite = tmp_path / "suite.yaml"
    suite.write_text(textwrap.dedent(f"""
        name: truth
        data: {{type: folder, manifest: data.csv, size: null, fps: {fps}}}
        clip_seconds: [10]
        prompts: {{source: data, split: test, count: 2}}
        scoring: {{chunk_frames: {chunk}}}
        models: [{{name: footage, type: folder, args: {{manifest: generated.csv}}}}]
        metrics: [{{name: continuation_psnr}}, {{name: continuation_ssim}}, {{name: flicker}}]
        report: {{gallery: 0}}
        """))
    with pytest.raises(SystemExit) as info:
        main(["run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "t", "--quiet"])
    assert info.value.code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "runs" / "t" / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["status"] == "ok" and not r["metric_errors"] for r in records)
    for record in records:
        assert record["metrics"]["continuation_psnr"] == pytest.approx(expected[record["prompt_id"]], abs=1e-9)
        assert 0.5 < record["metrics"]["continuation_ssim"] < 1.0
        assert len(record["series"]["continuation_psnr"]) == frames


def test_metrics_of_one_clip_that_compute_the_same_rows_compute_them_once_and_give_what_they_give_alone(monkeypatch):
    """CLIPSIM, its drift and offline subject consistency share the domain CLIP's image embeddings,
    the warping error and its drift each pair's error, the object metrics each frame's detections:
    once per frame or pair (a frame repeated later is not recomputed), and every value equals the
    metric scored alone (to float32 rounding)."""
    from metrics import object_identity
    from metrics.streaming import ClipContext
    from vbench_flow.registry import get_metric
    from vbench_flow.scoring import MetricPlan, score_clip

    names = ["clipsim", "clipsim_drift", "subject_consistency", "warping_error", "warping_error_drift",
             "object_colour_change", "object_size_change"]
    options = {"subject_consistency": {"device": "cpu"}, "clipsim_drift": {"window_seconds": 1.0},
               "warping_error_drift": {"window_seconds": 1.0}}
    metrics = {n: get_metric(n).build(get_metric(n).args_model.model_validate(options.get(n, {}))) for n in names}
    clip = np.full((20, 32, 32, 3), 30, dtype=np.uint8)
    for t in range(20):  # two flat objects on a flat background (what the object metrics need), one moving
        clip[t, 4:12, 2 + t:10 + t] = (220, 40, 40)
        clip[t, 20:28, 20:28] = (40, 200, 60)
    clip[15:] = clip[:5]  # repeated content: rows are kept by what the frame is, not where
    calls = {"embedded": 0, "pairs": 0, "detected": 0}

    def counting(target, attr, key, size):
        original = getattr(target, attr)

        def wrapped(*args, **kwargs):
            calls[key] += size(args)
            return original(*args, **kwargs)
        monkeypatch.setattr(target, attr, wrapped)

    counting(clipsim.ClipScorer, "image_embeddings", "embedded", lambda a: len(a[1]))
    counting(warping.WarpingError, "_pair_errors", "pairs", lambda a: len(a[1]))
    counting(object_identity, "detect_objects", "detected", lambda a: 1)

    def scored(chosen: list[str]) -> dict[str, float]:
        plans = [MetricPlan(n, metrics[n], False) for n in chosen]
        ctx = ClipContext(fps=8.0, num_frames=len(clip), prompt="a red circle moving right")
        result = score_clip(clip, plans, ctx, len(clip), chunk_frames=6)
        assert not result.metric_errors and not result.metric_excluded
        return result.metrics

    together = scored(names)
    assert calls == {"embedded": 15, "pairs": 15, "detected": 15}  # 20 frames, 19 pairs, 5 repeated
    for name in names:
        alone = scored([name])
        # a network's float32 rows may differ in their last bits with the batch that computed them
        assert alone[name] == pytest.approx(together[name], rel=1e-5, abs=1e-8), name


def test_a_models_likelihood_of_a_real_clip_is_computed_once_whatever_the_task():
    """bits_per_dim is the model's, of the prompt's real clip: the units of the other tasks reuse
    it; another generator (or another clip or prompt) is scored anew."""
    from metrics.likelihood import BitsPerDimMetric
    from metrics.streaming import ClipContext

    class Generator:
        def __init__(self, offset: float) -> None:
            self.offset, self.calls = offset, 0

        def bits_per_dim(self, videos, prompts):
            self.calls += 1
            return [self.offset + float(videos[0].mean()) / 255]

    metric, truth = BitsPerDimMetric(), moving_clip(frames=9, size=16)
    first, second = Generator(1.0), Generator(2.0)

    def value(generator, clip=truth, prompt="a red circle", task="t2v"):
        ctx = ClipContext(fps=8.0, prompt=prompt, task=task, ground_truth=clip, generator=generator)
        return metric.score(clip, ctx).value

    values = [value(first, task=task) for task in ("t2v", "i2v", "v2v")]
    assert values[0] == values[1] == values[2] and first.calls == 1
    assert value(second) == pytest.approx(values[0] + 1.0) and second.calls == 1
    value(first, prompt="a blue square")
    value(first, clip=truth[::-1].copy())
    assert first.calls == 3
