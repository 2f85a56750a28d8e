"""VBench's dimensions: each formula against an independent computation, and each dimension against
the values VBench's own code gave on the same clips and weights (recorded by
``scripts/compare_vbench.py --record``)."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from metrics import extractors, vbench
from metrics.streaming import ClipContext, NotScored
from metrics.weights import deterministic_state_dict

FIXTURE = Path(__file__).parent / "fixtures" / "vbench_reference.json"


def compare_script():
    """scripts/compare_vbench.py, whose clips and texture the recorded values were computed on."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "compare_vbench.py"
    spec = importlib.util.spec_from_file_location("compare_vbench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    return compare_script().texture(height, width, seed)


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text())["values"]


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    return compare_script().recorded_clips()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """The official files of the cheap extractors, with the deterministic weights (seed 0) the
    reference values were recorded with."""
    folder = tmp_path_factory.mktemp("vbench-weights")
    for name in ("dino-vitb16", "raft-things", "amt-s"):
        extractors.write_deterministic(name, folder / extractors.extractor_file(name).filename, seed=0)
    return folder


def load(name: str, folder: Path) -> torch.nn.Module:
    return extractors.load(name, folder / extractors.extractor_file(name).filename)


@functools.lru_cache(maxsize=1)
def clip_b32_state() -> dict[str, torch.Tensor]:
    """The seed-0 state of ViT-B-32.pt (fp16, as the archive holds it)."""
    return deterministic_state_dict(extractors._clip_template("ViT-B-32"), 0)


def clip_b32() -> torch.nn.Module:
    """CLIP ViT-B/32 with the seed-0 weights of ViT-B-32.pt, built in memory (writing the 300 MB
    TorchScript archive is the loader tests' business)."""
    state = clip_b32_state()
    model = extractors._open_clip_architecture("ViT-B-32")
    model.load_state_dict({k: v.float() for k, v in state.items() if k not in extractors.CLIP_EXTRA_KEYS})
    return model.eval()


# ---------------------------------------------------------------- formulas, independently


def test_consistency_terms_are_the_clamped_mean_of_previous_and_first_frame_cosines():
    angles = np.array([0.0, 0.3, 1.0, 2.5, 2.6])
    features = torch.tensor(np.stack([np.cos(angles), np.sin(angles)], axis=1), dtype=torch.float32)
    expected = [(max(0.0, math.cos(angles[i] - angles[i - 1])) + max(0.0, math.cos(angles[i] - angles[0]))) / 2
                for i in range(1, 5)]
    assert vbench.consistency_terms(features) == pytest.approx(expected, abs=1e-6)
    # cos(2.5) < 0: the first-frame term is clamped to zero, not allowed to pull the mean down
    assert vbench.consistency_terms(features)[2] == pytest.approx(math.cos(1.5) / 2, abs=1e-6)


def test_top_magnitude_mean_takes_int_of_the_fraction_of_pixels():
    magnitudes = np.arange(100, dtype=np.float32).reshape(10, 10)
    flow = np.stack([magnitudes * 0.6, magnitudes * 0.8])  # |(0.6 m, 0.8 m)| = m
    assert vbench.top_magnitude_mean(flow, 0.05) == pytest.approx(np.mean([99, 98, 97, 96, 95]), rel=1e-6)
    assert vbench.top_magnitude_mean(flow, 0.02) == pytest.approx(98.5, rel=1e-6)
    # 11 x 11 x 0.05 = 6.05 -> 6 pixels (int, not round)
    flow = np.zeros((2, 11, 11), dtype=np.float32)
    flow[0].flat[:7] = [10, 20, 30, 40, 50, 60, 70]
    assert vbench.top_magnitude_mean(flow, 0.05) == pytest.approx(np.mean([70, 60, 50, 40, 30, 20]), rel=1e-6)


@pytest.mark.parametrize("fps, interval", [(8, 1), (12, 2), (20, 2), (25, 3), (29.97, 4), (30, 4), (4, 1), (60, 8)])
def test_dynamic_degree_samples_every_round_fps_over_8_frames(fps, interval):
    assert vbench.sampling_interval(fps) == interval  # 20 fps: round(2.5) = 2, half to even as VBench's Python


def test_dynamic_rule_thresholds_and_counts():
    # 144 x 176: threshold 6 * 144 / 256 = 3.375 px; 16 sampled frames need round(4) = 4 moving pairs
    scores = [3.376] * 4 + [3.375] * 11
    assert vbench.is_dynamic(scores, 16, 144, 176)
    assert not vbench.is_dynamic(scores[1:] + [0.0], 16, 144, 176)
    # 2 sampled frames: round(0.5) = 0 pairs needed, so one pair of any score is dynamic; no pair is not
    assert vbench.is_dynamic([0.0], 2, 144, 176)
    assert not vbench.is_dynamic([], 1, 144, 176)
    # 6 sampled frames: round(1.5) = 2
    assert not vbench.is_dynamic([4.0, 0, 0, 0, 0], 6, 144, 176)


def test_static_rule_counts_consecutive_pairs_and_bounds_the_end_pairs():
    # 128 px: threshold 1.5 px; 16 frames allow round(2) = 2 moving pairs; end pairs up to 1.5 * 2 * 2 = 6
    assert vbench.is_static([2.0, 2.0] + [0.0] * 13, [6.0, 0.0], 16, 128, 200)
    assert not vbench.is_static([2.0, 2.0, 2.0] + [0.0] * 12, [0.0, 0.0], 16, 128, 200)
    assert not vbench.is_static([0.0] * 15, [6.01, 0.0], 16, 128, 200)
    # 4 frames: round(0.5) = 0 moving pairs allowed, and the end pairs must be exactly still
    assert not vbench.is_static([0.0, 0.0, 0.0], [0.001, 0.0], 4, 128, 200)


def test_preprocessing_sizes_and_normalisation():
    frames = np.full((2, 144, 177, 3), 128, dtype=np.uint8)
    dino = vbench.dino_input(frames)
    assert dino.shape == (2, 3, 224, 275)  # long side int(224 * 177 / 144) = int(275.3), no crop
    expected = (128 / 255 - np.array(vbench.IMAGENET_MEAN)) / np.array(vbench.IMAGENET_STD)
    assert dino[0, :, 100, 100].numpy() == pytest.approx(expected, abs=1e-5)
    clip = vbench.clip_input(frames)
    assert clip.shape == (2, 3, 224, 224)
    expected = (128 / 255 - np.array(vbench.CLIP_MEAN)) / np.array(vbench.CLIP_STD)
    assert clip[0, :, 0, 0].numpy() == pytest.approx(expected, abs=1e-4)
    # the crop is centred with Python's round: (275 - 224) / 2 = 25.5 -> 26 columns dropped on the left
    ramp = np.broadcast_to(np.arange(177, dtype=np.uint8)[None, None, :, None], (1, 144, 177, 3)).copy()
    left = vbench.clip_input(ramp)[0, 0, 50, 0] * vbench.CLIP_STD[0] * 255 + vbench.CLIP_MEAN[0] * 255
    resized = TF.resize(vbench.as_float_frames(ramp), 224, interpolation=InterpolationMode.BICUBIC, antialias=False)
    assert float(left) == pytest.approx(float(resized[0, 0, 50, 26]), abs=1e-3)
    big = vbench.musiq_input(np.zeros((1, 720, 1280, 3), dtype=np.uint8))
    assert big.shape == (1, 3, 288, 512)  # longer side to 512: int(0.4 * 720) x int(0.4 * 1280)
    assert vbench.musiq_input(np.zeros((1, 300, 500, 3), dtype=np.uint8)).shape == (1, 3, 300, 500)


def test_motion_smoothness_compares_odd_frames_with_midpoints_of_their_even_neighbours():
    seen = []

    def midpoint(first, second):
        seen.append(len(first))
        return (first + second) / 2

    frames = np.stack([np.full((8, 8, 3), 10 * t, dtype=np.uint8) for t in range(6)])
    frames[3] += 5  # frame 3 is off the straight line by 5 levels
    result = vbench.MotionSmoothness(midpoint, 8.0, batch_size=1).score(frames)
    # odd frames 1 and 3 are compared (frame 5 has no right neighbour): |diffs| 0 and 5 -> mean 2.5
    assert result.value == pytest.approx((255 - 2.5) / 255)
    assert sum(seen) == 2


def test_truncation_to_uint8_is_not_rounding():
    assert vbench.to_uint8_truncated(torch.full((1, 3, 1, 1), 0.999 / 255 * 200))[0, 0, 0, 0] == 199
    assert vbench.to_uint8_truncated(torch.full((1, 3, 1, 1), 1.2))[0, 0, 0, 0] == 255


def test_small_frames_are_refused_for_raft_and_amt_not_turned_into_nan():
    flow = lambda a, b: torch.zeros(len(a), 2, *a.shape[-2:])  # noqa: E731
    state = vbench.DynamicDegree(flow, 8.0, min_side=vbench.RAFT_MIN_SIDE)
    with pytest.raises(ValueError, match="too small"):
        state.update(np.zeros((3, 64, 200, 3), dtype=np.uint8))
    state = vbench.DynamicDegree(flow, 8.0, min_side=vbench.RAFT_MIN_SIDE)
    state.update(np.zeros((3, 121, 200, 3), dtype=np.uint8))  # padded to 128: accepted


# ---------------------------------------------------------------- equal to VBench's code (recorded values)


# The networks run on the real clip only (one core in CI); the compare script covers the other clips.


def test_subject_consistency_equals_vbench(reference, clips, weights):
    dino = load("dino-vitb16", weights)
    assert vbench.subject_consistency(clips["carphone"], dino, batch_size=5) == pytest.approx(
        reference["subject_consistency"]["carphone"], rel=1e-6)


def test_background_consistency_equals_vbench(reference, clips):
    assert vbench.background_consistency(clips["carphone"], clip_b32()) == pytest.approx(
        reference["background_consistency"]["carphone"], rel=1e-6)


def test_dynamic_degree_and_static_filter_equal_vbench(reference, clips, weights):
    from metrics.raft import ITERS

    flow = vbench.raft_flow_fn(load("raft-things", weights))
    computed: dict[bytes, torch.Tensor] = {}

    def each_pair_once(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        # at 8 fps both dimensions look at the same consecutive pairs: RAFT runs once per pair
        keys = [a.numpy().tobytes() + b.numpy().tobytes() for a, b in zip(first, second)]
        todo = [i for i, key in enumerate(keys) if key not in computed]
        if todo:
            for i, out in zip(todo, flow(first[todo], second[todo])):
                computed[keys[i]] = out
        return torch.stack([computed[key] for key in keys])

    frames, height, width = clips["carphone"], *clips["carphone"].shape[1:3]
    dynamic, static = reference["dynamic_degree"]["carphone"], reference["static_filter"]["carphone"]
    state = vbench.DynamicDegree(each_pair_once, 8.0, batch_size=4, min_side=vbench.RAFT_MIN_SIDE)
    result = state.score(frames)
    assert [v for _, v in result.series] == pytest.approx(dynamic["scores"], rel=1e-6)
    assert (result.value == 1.0) == dynamic["dynamic"]
    state = vbench.StaticFilter(each_pair_once, 8.0, batch_size=6, min_side=vbench.RAFT_MIN_SIDE)
    state.update(frames)
    consecutive, ends = state.finish()
    assert consecutive == pytest.approx(static["scores"], rel=1e-6)
    assert ends == pytest.approx(static["end_scores"], rel=1e-6)
    assert vbench.is_static(consecutive, ends, len(frames), height, width) == static["static"]
    assert ITERS == 20
    # (untrained RAFT sees large flow even in the still clip, so recorded verdicts agree across clips;
    # the rules that turn scores into verdicts are checked on their own above, and on real motion offline below)


def test_motion_smoothness_equals_vbench(reference, clips, weights):
    amt = load("amt-s", weights)
    for name, frames in clips.items():
        assert vbench.motion_smoothness(frames, amt) == pytest.approx(reference["motion_smoothness"][name], rel=1e-6), name


def test_imaging_quality_equals_vbench(reference, clips, tmp_path):
    pytest.importorskip("pyiqa", reason="MUSIQ needs the optional pyiqa (pip install '.[iqa]')")
    path = extractors.write_deterministic("musiq-spaq", tmp_path / "musiq.pth", seed=0)
    musiq = extractors.load("musiq-spaq", path)
    for name, frames in clips.items():
        assert vbench.imaging_quality(frames, musiq) == pytest.approx(reference["imaging_quality"][name], rel=1e-6)


def test_flicker_equals_vbench(reference, clips):
    from metrics.flicker import temporal_flickering

    for name, frames in clips.items():
        assert temporal_flickering(frames) == pytest.approx(reference["temporal_flickering"][name], rel=1e-8), name


# ---------------------------------------------------------------- as suite metrics


@pytest.mark.parametrize("name", ["imaging_quality", "aesthetic_quality", "subject_consistency"])
def test_standard_extractors_without_their_file_are_a_setup_error_naming_url_and_path(name, tmp_path):
    from vbench_flow.errors import ConfigError
    from vbench_flow.registry import get_metric

    entry = get_metric(name)
    args = entry.args_model.model_validate({"extractor": "standard", "weights": str(tmp_path / "missing.pth")})
    with pytest.raises(ConfigError) as error:
        entry.build(args)
    message = str(error.value)
    assert ("missing.pth" in message and "https://" in message) or "pip install 'vbench-flow[iqa]'" in message


def test_per_frame_quality_streams_and_scales_as_vbench():
    scores = lambda frames: torch.tensor(frames.reshape(len(frames), -1)[:, 0], dtype=torch.float32)  # noqa: E731
    frames = np.arange(7, dtype=np.uint8)[:, None, None, None] * np.ones((7, 4, 4, 3), dtype=np.uint8) * 10
    musiq = vbench.PerFrameQuality(scores, 8.0, name="imaging_quality", version="", extractor="", combine="musiq")
    assert musiq.score(frames).value == pytest.approx(30 / 100)  # mean of 0, 10, ..., 60, / 100
    aesthetic = vbench.PerFrameQuality(scores, 8.0, name="aesthetic_quality", version="", extractor="",
                                       combine="aesthetic")
    aesthetic.update(frames[:3])
    aesthetic.update(frames[3:])
    assert aesthetic.compute().value == pytest.approx(30 / 10)


def test_offline_dimensions_tell_a_still_clip_from_a_moving_one():
    from vbench_flow.registry import get_metric

    base = texture(64, 64, seed=2)
    moving = np.stack([np.roll(base, 3 * t, axis=1) for t in range(17)])  # 3 px/frame > 1.5 px, VBench's bar at 64 px
    still = np.repeat(moving[:1], 17, axis=0)
    ctx = ClipContext(fps=8.0)
    values = {}
    for name in ("dynamic_degree", "static_filter", "motion_smoothness", "subject_consistency"):
        entry = get_metric(name)
        metric = entry.build(entry.args_model.model_validate({"device": "cpu"}))
        assert "offline" not in metric.extractor and metric.extractor != "dino-vitb16"
        values[name] = (metric.score(moving, ctx).value, metric.score(still, ctx).value)
    assert values["dynamic_degree"] == (1.0, 0.0)
    assert values["static_filter"] == (0.0, 1.0)
    assert values["motion_smoothness"][1] == 1.0 > values["motion_smoothness"][0] > 0.9
    assert values["subject_consistency"][1] == pytest.approx(1.0, abs=1e-6)
    assert values["subject_consistency"][0] < 1.0 - 1e-4


def test_long_protocol_averages_two_second_clips_with_the_tail_padded_by_earlier_frames():
    from metrics.vbench_metrics import LongProtocol

    def make_state(frames):
        return vbench.PerFrameQuality(lambda f: torch.tensor(f[:, 0, 0, 0], dtype=torch.float32), 4.0,
                                      name="q", version="", extractor="", combine="aesthetic")

    frames = np.arange(19, dtype=np.uint8)[:, None, None, None] * np.ones((19, 2, 2, 3), dtype=np.uint8)
    long = LongProtocol(make_state, 4.0, name="q", version="", extractor="", higher_is_better=True)
    for start in range(0, 19, 5):
        long.update(frames[start:start + 5])
    result = long.compute()
    # 8-frame clips at 4 fps: [0, 8), [8, 16), and the tail [11, 19) borrowing frames 11-15
    assert [t for t, _ in result.series] == [0.0, 2.0, 11 / 4]
    assert [v for _, v in result.series] == pytest.approx([3.5 / 10, 11.5 / 10, 14.5 / 10])
    assert result.value == pytest.approx((0.35 + 1.15 + 1.45) / 3)


def test_vbf_fetch_installs_an_extractor_file_only_after_it_loads_strictly(weights, tmp_path):
    from vbench_flow.fetch import FetchError, extractor_entry, fetch

    entry = extractor_entry("amt-s")
    path, _, installed = fetch(entry, source=weights / "amt-s.pth", destination=tmp_path / "amt-s.pth", progress=False)
    assert installed and path.is_file()
    with pytest.raises(FetchError, match="does not load"):
        fetch(entry, source=weights / "raft-things.pth", destination=tmp_path / "other.pth", progress=False)
    assert not (tmp_path / "other.pth").exists()


def test_openai_clip_loads_from_its_torchscript_container_and_refuses_other_files(tmp_path):
    path = extractors.write_deterministic("clip-vitb32", tmp_path / "ViT-B-32.pt", seed=0)
    loaded = extractors.load("clip-vitb32", path).state_dict()
    expected = clip_b32_state()
    for key, value in loaded.items():  # every tensor of the archive, in float32 (the file holds fp16)
        assert torch.equal(value, expected[key].float()), key
    # an archive of another architecture (its first convolution is all that is read before refusing)
    extractors.save_torchscript_state({"visual.conv1.weight": torch.zeros(768, 3, 32, 32)}, tmp_path / "b32.pt")
    with pytest.raises(extractors.ExtractorError, match="not ViT-L-14 .width 768, patch 32"):
        extractors.load("clip-vitl14", tmp_path / "b32.pt")
    torch.save({"visual.conv1.weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(extractors.ExtractorError, match="not a TorchScript archive"):
        extractors.load("clip-vitb32", tmp_path / "plain.pt")
    with pytest.raises(extractors.ExtractorError, match="not found.*https://openaipublic"):
        extractors.load("clip-vitb32", tmp_path / "missing.pt")


def test_dino_refuses_a_file_with_a_renamed_key(tmp_path):
    from metrics.dino import dino_template

    state = dino_template()
    state["head.weight"] = state.pop("norm.weight")
    torch.save(state, tmp_path / "dino.pth")
    with pytest.raises(extractors.ExtractorError, match="missing .*norm.weight.*unexpected .*head.weight"):
        extractors.load("dino-vitb16", tmp_path / "dino.pth")


def test_fp16_clip_takes_fp16_images():
    """The precision VBench's GPU numbers use: the image tower in fp16 (its first convolution says so,
    whatever the text tower's dtype), fed fp16 images."""

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.visual = torch.nn.Module()
            self.visual.conv1 = torch.nn.Conv2d(3, 4, 32, 32).half()
            self.positional_embedding = torch.nn.Parameter(torch.zeros(2))  # float32, listed first

        def encode_image(self, images: torch.Tensor) -> torch.Tensor:
            assert images.dtype == torch.float16  # what an fp16 convolution needs (a CPU may lack the kernel)
            return images.float().mean(dim=(2, 3)).half()

    features = vbench.clip_features(Tower(), batch_size=2)(np.zeros((2, 224, 224, 3), dtype=np.uint8))
    assert features.dtype == torch.float16 and features.shape == (2, 3)


def test_known_length_stops_the_flows_once_the_verdict_is_settled_with_the_same_verdict(monkeypatch):
    calls = []

    def flow(first, second):
        calls.append(len(first))
        return torch.full((len(first), 2, *first.shape[-2:]), 3.0)  # every pair moves 4.2 px > 0.75 at 64 px

    def streamed(cls, frames, flow_fn=flow):
        state = cls(flow_fn, 8.0, batch_size=2, total_frames=len(frames))
        for start in range(0, len(frames), 5):
            state.update(frames[start:start + 5])
        return state.compute()

    frames = np.zeros((33, 64, 64, 3), dtype=np.uint8)
    for cls in (vbench.DynamicDegree, vbench.StaticFilter):
        full = cls(flow, 8.0, batch_size=2).score(frames)
        count_all = sum(calls)
        calls.clear()
        assert streamed(cls, frames).value == full.value
        # dynamic needs round(4 * 33 / 16) = 8 moving pairs; static scores its end pair first (4.2 px is
        # under 0.75 * 4 * 2 = 6, so not settled) and is then settled after round(2 * 33 / 16) + 1 = 5
        # consecutive pairs: the batches shrink to what could still be needed, not one flow more
        assert sum(calls) == (8 if cls is vbench.DynamicDegree else 1 + 5) < count_all
        calls.clear()
    with pytest.raises(ValueError, match="announced"):
        vbench.StaticFilter(flow, 8.0, total_frames=40).score(frames)

    def displacement(first, second):  # frame t is uniformly t: a pair's flow is their difference in x and y
        calls.append(len(first))
        shift = (second - first).mean(dim=(1, 2, 3))[:, None, None, None]
        return shift.expand(len(first), 2, *first.shape[-2:]).clone()

    ramp = np.stack([np.full((64, 64, 3), t, dtype=np.uint8) for t in range(33)])
    reference = vbench.StaticFilter(displacement, 8.0, batch_size=2).score(ramp)
    calls.clear()
    assert streamed(vbench.StaticFilter, ramp, displacement).value == reference.value == 0.0
    assert sum(calls) == 1  # the first -> last pair moved 45 px > 6: settled by one flow
    calls.clear()
    monkeypatch.setattr(vbench, "HOLD_BYTES", 0)  # a clip too large to hold streams its consecutive pairs
    assert streamed(vbench.StaticFilter, ramp, displacement).value == 0.0 and sum(calls) == 5


def test_streamed_verdicts_equal_the_rule_on_every_pair_whatever_the_length_chunks_and_order(monkeypatch):
    """Random pair scores: with a known or unknown length, early exit, the held end pair first or
    not, any chunking and batch size, and every length from 1 frame (count 0 for T <= 4), the
    verdict is VBench's rule applied to every pair's score."""
    rng = np.random.default_rng(0)
    lookup: dict[tuple[int, int], float] = {}

    def flow(first, second):  # frame t is uniformly t; a pair's flow is (score, 0) px everywhere
        values = [lookup[(int(a[0, 0, 0]), int(b[0, 0, 0]))] for a, b in zip(first, second)]
        out = torch.zeros((len(first), 2, *first.shape[-2:]))
        out[:, 0] = torch.tensor(values)[:, None, None]
        return out

    verdicts = {vbench.StaticFilter: set(), vbench.DynamicDegree: set()}
    for case in range(300):
        frames_count, fps = int(rng.integers(1, 34)), float(rng.choice([8.0, 16.0, 24.0]))
        lookup.clear()
        levels = rng.choice([0.1, 1.0, 2.0, 4.0, 12.0], size=(34, 34), p=[0.45, 0.2, 0.15, 0.1, 0.1])
        lookup.update({(a, b): float(levels[a, b]) for a in range(34) for b in range(34)})
        frames = np.stack([np.full((64, 64, 3), t, dtype=np.uint8) for t in range(frames_count)])
        consecutive = [lookup[(t, t + 1)] for t in range(frames_count - 1)]
        ends = [lookup[(0, frames_count - 1)], lookup[(frames_count - 1, 0)]]
        sampled = list(range(0, frames_count, vbench.sampling_interval(fps)))
        expected = {vbench.StaticFilter: vbench.is_static(consecutive, ends, frames_count, 64, 64),
                    vbench.DynamicDegree: vbench.is_dynamic([lookup[(a, b)] for a, b in zip(sampled, sampled[1:])],
                                                            len(sampled), 64, 64)}
        monkeypatch.setattr(vbench, "HOLD_BYTES", int(rng.choice([0, 1 << 20])))
        for cls, verdict in expected.items():
            state = cls(flow, fps, batch_size=int(rng.integers(1, 4)),
                        total_frames=frames_count if rng.random() < 0.8 else None)
            start = 0
            while start < frames_count:
                step = int(rng.integers(1, 9))
                state.update(frames[start:start + step])
                start += step
            assert state.compute().value == float(verdict), (cls.__name__, case, frames_count, fps)
            verdicts[cls].add(verdict)
    assert all(seen == {True, False} for seen in verdicts.values())  # both verdicts were reached


def test_flicker_options_that_would_be_ignored_are_refused():
    from pydantic import ValidationError

    from metrics.flicker import FlickerArgs

    with pytest.raises(ValidationError, match="apply only with static_filter: true"):
        FlickerArgs(static_filter_extractor="standard")
    with pytest.raises(ValidationError, match="segment_seconds does not apply"):
        FlickerArgs(protocol="vbench-long", segment_seconds=1.0)
    FlickerArgs(static_filter=True, static_filter_extractor="standard", protocol="vbench-long")  # all apply


def test_flicker_with_the_static_filter_leaves_moving_clips_out_and_says_why():
    from metrics.flicker import FlickerArgs, FlickerMetric
    from vbench_flow.scoring import MetricPlan, score_clip

    base = texture(64, 64, seed=3)
    still = np.stack([base] * 17)
    moving = np.stack([np.roll(base, 3 * t, axis=1) for t in range(17)])
    plans = [MetricPlan("flicker", FlickerMetric(FlickerArgs(static_filter=True)), False)]
    scored = score_clip(still, plans, ClipContext(fps=8.0, num_frames=17), 17)
    assert scored.metrics["flicker"] == 1.0 and not scored.metric_excluded
    scored = score_clip(moving, plans, ClipContext(fps=8.0, num_frames=17), 17)
    assert "flicker" not in scored.metrics and not scored.metric_errors
    assert "static clips only" in scored.metric_excluded["flicker"]
    assert "static clips only" in FlickerMetric(FlickerArgs(static_filter=True)).version


@pytest.mark.parametrize("known_length", [True, False])
def test_flicker_under_vbench_long_filters_each_2s_clip_and_averages_the_static_ones(known_length):
    """VBench-Long cuts the video into int(fps)*2-frame clips (the last padded with earlier frames),
    runs the static filter on each and scores flicker on the static clips only."""
    from metrics.flicker import FlickerArgs, FlickerMetric, TemporalFlickering

    base = texture(64, 64, seed=5)
    still = [np.minimum(base, 254) + np.uint8(t % 2) for t in range(16)]  # a 1-level shimmer: static, flicker below 1
    calmer = [np.minimum(base, 254) + np.uint8(t % 4 == 0) for t in range(16)]  # static, flickering less
    moving = [np.roll(base, 3 * t, axis=1) for t in range(24)]
    frames = np.stack(still + moving + calmer)  # 56 frames at 8 fps: clips 0-15, 16-31, 32-47, 40-55
    ctx = ClipContext(fps=8.0, num_frames=56 if known_length else None)

    def run(args: FlickerArgs):
        state = FlickerMetric(args).streaming(ctx)
        for start in range(0, 56, 7):
            state.update(frames[start:start + 7])
        return state.compute()

    raw = run(FlickerArgs(protocol="vbench-long"))
    clips = [frames[0:16], frames[16:32], frames[32:48], frames[40:56]]
    assert [t for t, _ in raw.series] == [0.0, 2.0, 4.0, 5.0]
    assert raw.value == pytest.approx(np.mean([TemporalFlickering().score(c).value for c in clips]), abs=1e-12)
    filtered = run(FlickerArgs(protocol="vbench-long", static_filter=True))
    kept = [TemporalFlickering().score(frames[0:16]).value, TemporalFlickering().score(frames[40:56]).value]
    assert filtered.series == [(0.0, kept[0]), (5.0, kept[1])] and kept[0] != kept[1]  # two static clips kept
    assert filtered.value == pytest.approx(np.mean(kept), abs=1e-12)
    with pytest.raises(NotScored, match="all 4 of the video's 2 s clips left out.*static clips only"):
        state = FlickerMetric(FlickerArgs(protocol="vbench-long", static_filter=True)).streaming(ctx)
        state.update(np.stack(moving + moving[:16] + moving[:16]))
        state.compute()


@pytest.mark.parametrize("total", [5, 8, 16, 19])
def test_long_protocol_with_a_known_length_streams_the_tail_and_equals_the_buffered_way(total):
    from metrics.vbench_metrics import LongProtocol

    def make_state(frames):
        return vbench.PerFrameQuality(lambda f: torch.tensor(f[:, 0, 0, 0], dtype=torch.float32), 4.0,
                                      name="q", version="", extractor="", combine="aesthetic")

    frames = (np.arange(total, dtype=np.uint8) * 7)[:, None, None, None] * np.ones((total, 2, 2, 3), dtype=np.uint8)
    results = []
    for known in (None, total):
        state = LongProtocol(make_state, 4.0, name="q", version="", extractor="", higher_is_better=True,
                             total_frames=known)
        for start in range(0, total, 3):
            state.update(frames[start:start + 3])
        results.append(state.compute())
        assert not state._recent if known else True  # nothing buffered when the length is known
    assert results[0].series == results[1].series and results[0].value == results[1].value


def test_validate_names_each_missing_official_file_and_its_url(tmp_path, capsys):
    from vbench_flow.cli import main

    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: t\nseed: 0\ndata: {type: shapes, size: 64, fps: 8}\nclip_seconds: [5]\ntasks: [t2v]\n"
        "prompts: {source: data, split: test, count: 1, seeds: [0]}\nmodels:\n  - {name: real, type: dataset}\n"
        f"metrics:\n  - {{name: subject_consistency, args: {{extractor: standard, weights: {tmp_path}/dino.pth}}}}\n"
        "  - {name: flicker, args: {static_filter: true, static_filter_extractor: standard, "
        f"static_filter_weights: {tmp_path}/raft.pth}}}}\n")
    with pytest.raises(SystemExit) as info:
        main(["validate", str(suite)])
    err = capsys.readouterr().err
    assert info.value.code == 4
    assert f"{tmp_path}/dino.pth" in err and "dl.fbaipublicfiles.com" in err
    assert f"{tmp_path}/raft.pth" in err and "vbf fetch raft-things" in err
