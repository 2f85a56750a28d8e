"""FVD against its definition: Fréchet distance of Gaussians fitted to I3D logits of 16-frame clips.

Nothing here downloads weights: the I3D tests check the classic pytorch-i3d layout (names,
shapes, parameter count) and strict round trips through load_i3d with randomly initialised
weights; the Fréchet distance is checked against closed forms and an independent route.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metrics.fvd import (
    VERSION,
    FeatureStats,
    check_clips,
    extract_features,
    frechet_distance,
    frechet_distances,
    fvd,
    fvd_from_features,
    metric_version,
)
from metrics.i3d import (
    WEIGHTS_URL,
    InceptionI3d,
    file_sha256,
    load_i3d,
    preprocess_for_i3d,
    same_padding,
)

ESTIMATORS = ("unbiased", "biased", "ledoit_wolf")

# Parameters of piergiaj/pytorch-i3d's InceptionI3d(400): conv weights, BatchNorm weight and
# bias, logits weight and bias. The same figure is printed for that module by independent
# projects (e.g. IBM action-recognition-pytorch's model table, "i3d ... 12,697,264"); 12.29 M of
# it is the trunk, 0.41 M the 400-class head.
CLASSIC_PARAMETER_COUNT = 12_697_264


# ---------------------------------------------------------------- independent references


def _trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """Tr sqrt(s1 s2) = Tr sqrt(s1^1/2 s2 s1^1/2), the symmetric route, by eigendecomposition."""
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root @ s2 @ root
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum())


def _frechet_by_eigen(mu1, s1, mu2, s2) -> float:
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * _trace_sqrt_product(s1, s2))


def _ledoit_wolf_from_raw(x: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf (as sklearn.covariance.ledoit_wolf) from the raw features."""
    n, p = x.shape
    xc = x - x.mean(axis=0)
    emp = xc.T @ xc / n
    mu = np.trace(emp) / p
    beta_ = np.sum((xc ** 2).sum(axis=1) ** 2)           # sum_k ||x_k - mean||^4
    delta_ = np.sum(emp ** 2)
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2 * mu * np.trace(emp) + p * mu ** 2) / p
    shrinkage = min(beta, delta) / delta
    return (1 - shrinkage) * emp + shrinkage * mu * np.eye(p)


def _covariance_from_raw(x: np.ndarray, estimator: str) -> np.ndarray:
    if estimator == "unbiased":
        return np.cov(x, rowvar=False, ddof=1)
    if estimator == "biased":
        return np.cov(x, rowvar=False, ddof=0)
    return _ledoit_wolf_from_raw(x)


def _features(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mixing + rng.normal(loc=shift, size=d) + 3.0


# ---------------------------------------------------------------- Fréchet distance


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = rng.uniform(0.1, 3.0, size=6), rng.uniform(0.1, 3.0, size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_frechet_distance_one_dimensional_gaussians():
    # N(1, 4) vs N(-2, 9): (1+2)^2 + (2 - 3)^2 = 10
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(10.0, abs=1e-12)


def test_frechet_distance_is_zero_for_identical_gaussians():
    rng = np.random.default_rng(1)
    stats = FeatureStats.of(_features(rng, 200, 12))
    value = frechet_distance(stats.mean(), stats.covariance(), stats.mean(), stats.covariance())
    assert abs(value) < 1e-9


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_fvd_matches_independent_computation(estimator):
    rng = np.random.default_rng(2)
    real, fake = _features(rng, 300, 24), _features(rng, 250, 24, shift=0.5)
    s_real, s_fake = _covariance_from_raw(real, estimator), _covariance_from_raw(fake, estimator)
    expected = _frechet_by_eigen(real.mean(0), s_real, fake.mean(0), s_fake)
    assert fvd_from_features(real, fake, estimator=estimator) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(real.mean(0), s_real, fake.mean(0), s_fake) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_fvd_with_fewer_clips_than_dimensions(estimator):
    # below D clips the plain covariances are singular (the n < 400 case of real FVD)
    rng = np.random.default_rng(3)
    real, fake = _features(rng, 12, 30), _features(rng, 15, 30, shift=0.3)
    expected = _frechet_by_eigen(real.mean(0), _covariance_from_raw(real, estimator),
                                 fake.mean(0), _covariance_from_raw(fake, estimator))
    assert fvd_from_features(real, fake, estimator=estimator) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_rejects_bad_shapes_and_values():
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.array([np.nan, 0]), np.eye(2), np.zeros(2), np.eye(2))


def test_frechet_distance_rejects_large_imaginary_part():
    # a "covariance" with negative eigenvalues: sqrtm of the product is genuinely complex
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), np.diag([1.0, -4.0]), np.zeros(2), np.eye(2))


# ---------------------------------------------------------------- FeatureStats


def test_covariances_match_numpy_and_raw_ledoit_wolf():
    rng = np.random.default_rng(4)
    x = _features(rng, 150, 10)
    stats = FeatureStats.of(x)
    np.testing.assert_allclose(stats.mean(), x.mean(0), rtol=0, atol=1e-12)
    for estimator in ESTIMATORS:
        np.testing.assert_allclose(stats.covariance(estimator), _covariance_from_raw(x, estimator), rtol=0, atol=1e-11)
    assert 0.0 < stats.ledoit_wolf_shrinkage() < 1.0


def test_merge_of_halves_equals_whole():
    rng = np.random.default_rng(5)
    x = _features(rng, 301, 16)
    whole = FeatureStats.of(x)
    merged = FeatureStats.of(x[:117]).merge(FeatureStats().update(x[117:200]).update(x[200:]))
    assert merged.count == whole.count == 301
    np.testing.assert_allclose(merged.mean(), whole.mean(), rtol=0, atol=1e-12)
    for estimator in ESTIMATORS:
        np.testing.assert_allclose(merged.covariance(estimator), whole.covariance(estimator), rtol=0, atol=1e-12)
    # merging with an empty accumulator changes nothing; neither input is modified
    assert FeatureStats().merge(whole).to_dict() == whole.to_dict()
    assert FeatureStats.of(x[:117]).count == 117


def test_feature_stats_json_round_trip_is_exact():
    rng = np.random.default_rng(6)
    stats = FeatureStats.of(_features(rng, 40, 5))
    stats.extras["extractor"] = "test"
    restored = FeatureStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert restored.to_dict() == stats.to_dict()
    np.testing.assert_array_equal(restored.covariance("ledoit_wolf"), stats.covariance("ledoit_wolf"))
    assert FeatureStats.from_dict(FeatureStats().to_dict()).count == 0


def test_feature_stats_input_checks():
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats.of(np.ones((1, 4))).covariance()
    with pytest.raises(ValueError, match="at least 1"):
        FeatureStats().mean()
    with pytest.raises(ValueError, match="dimension"):
        FeatureStats.of(np.ones((3, 4))).update(np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        FeatureStats().update(np.ones(4))
    with pytest.raises(ValueError, match="estimator"):
        FeatureStats.of(np.random.default_rng(0).normal(size=(5, 3))).covariance("shrunk")


# ---------------------------------------------------------------- input checks


def _clips(n: int, frames: int = 16, size: int = 8, dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, size=(n, frames, size, size, 3)).astype(dtype)


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="uint8"):
        check_clips(_clips(2, dtype=np.float32))
    with pytest.raises(ValueError, match="no clips"):
        check_clips(np.zeros((0, 16, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="no clips"):
        check_clips([])
    with pytest.raises(ValueError, match="too few"):
        check_clips(_clips(2, frames=8))
    with pytest.raises(ValueError, match="exactly 16"):
        check_clips(_clips(2, frames=17))
    with pytest.raises(ValueError, match="at least 2 clips"):
        fvd_from_features(np.ones((1, 4)), np.ones((5, 4)))
    with pytest.raises(ValueError, match="uint8"):
        preprocess_for_i3d(_clips(1).astype(np.float32))
    # the video checks run before the detector is touched
    with pytest.raises(ValueError, match="too few"):
        fvd(_clips(2, frames=8), _clips(2), detector=None)


def test_network_input_checks(one_thread):
    model = InceptionI3d().eval()
    with pytest.raises(ValueError, match="at least 9 frames"):
        model(torch.zeros(1, 3, 8, 224, 224))
    with pytest.raises(ValueError, match="float"):
        model(torch.zeros(1, 3, 16, 224, 224, dtype=torch.uint8))
    with torch.inference_mode(), pytest.raises(ValueError, match="193..224 pixels"):
        model.features(torch.zeros(1, 3, 9, 225, 193))  # a 2x1 logits map, not one vector
    with pytest.raises(RuntimeError, match="eval"):
        model.train().features(torch.zeros(1, 3, 16, 224, 224))


# ---------------------------------------------------------------- preprocessing


def _tf1_resize_bilinear(frame: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 tf.image.resize_bilinear (align_corners=False, half_pixel_centers=False), pixel by pixel."""
    in_h, in_w = frame.shape[:2]
    out = np.zeros((out_h, out_w, frame.shape[2]))
    for y in range(out_h):
        sy = y * in_h / out_h
        y0 = int(np.floor(sy))
        y1, fy = min(y0 + 1, in_h - 1), sy - y0
        for x in range(out_w):
            sx = x * in_w / out_w
            x0 = int(np.floor(sx))
            x1, fx = min(x0 + 1, in_w - 1), sx - x0
            top = frame[y0, x0] * (1 - fx) + frame[y0, x1] * fx
            bottom = frame[y1, x0] * (1 - fx) + frame[y1, x1] * fx
            out[y, x] = top * (1 - fy) + bottom * fy
    return out


def test_stretch_matches_tf1_resize_bilinear_and_scales_to_minus_one_one():
    videos = _clips(1, frames=2, size=8)
    videos = np.concatenate([videos, videos[:, :, :, :5]], axis=3)  # non-square 8 x 13
    out = preprocess_for_i3d(videos, size=20)
    assert out.shape == (1, 3, 2, 20, 20) and out.dtype == torch.float32
    expected = 2 * _tf1_resize_bilinear(videos[0, 1].astype(np.float64), 20, 20) / 255 - 1
    np.testing.assert_allclose(out[0, :, 1].permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_half_pixel_sampling_matches_torch_interpolate():
    videos = _clips(2, frames=3, size=12)
    out = preprocess_for_i3d(videos, size=31, sampling="half_pixel")
    frames = torch.from_numpy(videos).float().permute(0, 1, 4, 2, 3).flatten(0, 1)
    expected = F.interpolate(frames, size=(31, 31), mode="bilinear", align_corners=False)
    expected = (2 * expected / 255 - 1).view(2, 3, 3, 31, 31).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_default_preprocessing_is_identity_rescale_at_224():
    videos = _clips(1, frames=2, size=224)
    out = preprocess_for_i3d(videos)
    expected = 2 * torch.from_numpy(videos).double().permute(0, 4, 1, 2, 3) / 255 - 1
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)
    assert out.min() >= -1 and out.max() <= 1


def test_center_crop_keeps_the_middle():
    # 224 x 448: the shorter side is already 224, so the crop is exactly columns 112..335
    videos = np.random.default_rng(8).integers(0, 256, size=(1, 2, 224, 448, 3)).astype(np.uint8)
    out = preprocess_for_i3d(videos, mode="center_crop")
    expected = 2 * torch.from_numpy(videos[:, :, :, 112:336]).double().permute(0, 4, 1, 2, 3) / 255 - 1
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)
    small = preprocess_for_i3d(_clips(1, frames=2, size=10)[:, :, :, :7], mode="center_crop", size=14)
    assert small.shape == (1, 3, 2, 14, 14)
    with pytest.raises(ValueError, match="mode"):
        preprocess_for_i3d(videos, mode="letterbox")


def test_same_padding_matches_tensorflow_rule():
    for size in range(1, 20):
        for kernel in (1, 2, 3, 7):
            for stride in (1, 2):
                total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
                assert same_padding(size, kernel, stride) == (total // 2, total - total // 2)


# ---------------------------------------------------------------- I3D layout and loading


def _unit(cin: int, cout: int, taps: int) -> int:
    return cin * cout * taps + 2 * cout  # conv (no bias) + BatchNorm weight and bias


def _classic_parameter_count() -> int:
    """From GoogLeNet's inception table (Szegedy et al. 2015), inflated: 3x3 -> 3x3x3 taps."""
    total = _unit(3, 64, 7 ** 3) + _unit(64, 64, 1) + _unit(64, 192, 27)
    blocks = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64),
              (480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64),
              (512, 128, 128, 256, 24, 64, 64), (512, 112, 144, 288, 32, 64, 64),
              (528, 256, 160, 320, 32, 128, 128), (832, 256, 160, 320, 32, 128, 128),
              (832, 384, 192, 384, 48, 128, 128)]
    for cin, b0, b1a, b1b, b2a, b2b, b3b in blocks:
        total += (_unit(cin, b0, 1) + _unit(cin, b1a, 1) + _unit(b1a, b1b, 27) + _unit(cin, b2a, 1)
                  + _unit(b2a, b2b, 27) + _unit(cin, b3b, 1))
    return total + 1024 * 400 + 400


def test_classic_layout_names_shapes_and_parameter_count():
    model = InceptionI3d(num_classes=400)
    state = model.state_dict()
    expected_shapes = {
        "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
        "Conv3d_1a_7x7.bn.weight": (64,),
        "Conv3d_1a_7x7.bn.running_var": (64,),
        "Conv3d_2b_1x1.conv3d.weight": (64, 64, 1, 1, 1),
        "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
        "Mixed_3b.b0.conv3d.weight": (64, 192, 1, 1, 1),
        "Mixed_3b.b1a.conv3d.weight": (96, 192, 1, 1, 1),
        "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
        "Mixed_3b.b2a.conv3d.weight": (16, 192, 1, 1, 1),
        "Mixed_3b.b2b.conv3d.weight": (32, 16, 3, 3, 3),
        "Mixed_3b.b3b.conv3d.weight": (32, 192, 1, 1, 1),
        "Mixed_4f.b1b.bn.running_mean": (320,),
        "Mixed_5b.b2b.conv3d.weight": (128, 32, 3, 3, 3),
        "Mixed_5c.b3b.conv3d.weight": (128, 832, 1, 1, 1),
        "logits.conv3d.weight": (400, 1024, 1, 1, 1),
        "logits.conv3d.bias": (400,),
    }
    for key, shape in expected_shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert "Conv3d_1a_7x7.bn.num_batches_tracked" in state
    # 57 conv+BN units with 6 entries each, plus the logits conv weight and bias
    assert len(state) == 57 * 6 + 2
    prefixes = {"Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "logits"} | {
        f"Mixed_{b}" for b in ("3b", "3c", "4b", "4c", "4d", "4e", "4f", "5b", "5c")}
    assert {key.split(".")[0] for key in state} == prefixes
    assert {key.split(".")[1] for key in state if key.startswith("Mixed_")} == {"b0", "b1a", "b1b", "b2a", "b2b", "b3b"}
    count = sum(p.numel() for p in model.parameters())
    assert count == _classic_parameter_count() == CLASSIC_PARAMETER_COUNT
    bn = model.Conv3d_1a_7x7.bn
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)


@pytest.fixture
def one_thread():
    """The network tests run single-threaded (CI has 2 cores); the setting is restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _randomised_model(seed: int = 0) -> InceptionI3d:
    torch.manual_seed(seed)
    model = InceptionI3d(num_classes=400)
    for module in model.modules():  # non-trivial BatchNorm statistics, so a bad load would show
        if isinstance(module, nn.BatchNorm3d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.8, 1.2)
    return model.eval()


def test_state_dict_round_trip_gives_identical_logits(tmp_path, one_thread):
    model = _randomised_model()
    path = tmp_path / "i3d_pretrained_400.pt"
    torch.save(model.state_dict(), path)
    loaded = load_i3d(path, sha256=file_sha256(path))
    assert not loaded.training
    x = torch.randn(1, 3, 9, 193, 193, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    with torch.inference_mode():
        logits, again = model(x), loaded(x)
        features = loaded.features(x)
    assert logits.shape == (1, 400, 1)
    assert torch.equal(logits, again)
    assert features.shape == (1, 400) and torch.equal(features, logits.mean(dim=2))


def test_loads_tf_converted_file_without_num_batches_tracked(tmp_path):
    # the published file was written from a hand-built dict: no num_batches_tracked entries
    model = _randomised_model(1)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "converted.pt"
    torch.save(state, path)
    loaded = load_i3d(path)
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_missing_weights_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "i3d_pretrained_400.pt"
    with pytest.raises(FileNotFoundError) as info:
        load_i3d(path)
    assert str(path) in str(info.value) and WEIGHTS_URL in str(info.value)


def test_wrong_files_are_refused_with_the_file_named(tmp_path):
    model = InceptionI3d()
    good = tmp_path / "good.pt"
    torch.save(model.state_dict(), good)
    with pytest.raises(ValueError, match="sha256"):
        load_i3d(good, sha256="0" * 64)
    other = {k: v for k, v in model.state_dict().items() if not k.startswith("logits")}
    other["logits.conv3d.weight"] = torch.zeros(600, 1024, 1, 1, 1)
    other["logits.conv3d.bias"] = torch.zeros(600)
    wrong = tmp_path / "k600.pt"
    torch.save(other, wrong)
    with pytest.raises(ValueError, match="layout") as info:
        load_i3d(wrong)
    assert str(wrong) in str(info.value) and "logits.conv3d.weight" in str(info.value)
    not_a_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(ValueError, match="not a state dict") as info:
        load_i3d(not_a_dict)
    assert str(not_a_dict) in str(info.value)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt"):
        load_i3d(garbage)


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:FutureWarning")
def test_torchscript_with_another_layout_is_refused(tmp_path):
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(nn.Linear(2, 2)).save(str(path))
    with pytest.raises(ValueError, match="layout") as info:
        load_i3d(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- end to end (stub detector)


class _MeanColourDetector(nn.Module):
    """Stands in for I3D: per-clip mean and spread of each colour channel (6 features)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def features(self, videos: torch.Tensor) -> torch.Tensor:
        return torch.cat([videos.mean(dim=(2, 3, 4)), videos.std(dim=(2, 3, 4))], dim=1) + self.anchor


def test_fvd_end_to_end_equals_fvd_of_features(one_thread):
    rng = np.random.default_rng(9)
    real = rng.integers(0, 256, size=(6, 16, 10, 12, 3)).astype(np.uint8)
    fake = [np.clip(clip.astype(int) + 40, 0, 255).astype(np.uint8) for clip in rng.integers(0, 200, size=(5, 16, 10, 12, 3))]
    detector = _MeanColourDetector()
    value = fvd(real, fake, detector, batch_size=4)
    expected = fvd_from_features(extract_features(real, detector), extract_features(fake, detector))
    assert value == pytest.approx(expected, rel=1e-12) and value > 0
    assert fvd(real, real, detector) == pytest.approx(0.0, abs=1e-9)


def test_version_names_the_variant():
    assert "cov=unbiased" in VERSION and "16-frame" in VERSION and "stretch" in VERSION
    assert metric_version(estimator="biased") != VERSION
    with pytest.raises(ValueError, match="estimator"):
        metric_version(estimator="mle")


@pytest.mark.parametrize("rank", [None, 12])
def test_distances_to_a_reference_decomposed_once_equal_frechet_distance(rank):
    """The eigvalsh route through S_r^(1/2) S S_r^(1/2) is the same number as scipy's sqrtm route,
    for full-rank and rank-deficient (few clips, many dimensions) covariances."""
    rng = np.random.default_rng(0)
    d = 24
    def gaussian(shift):
        samples = rng.normal(size=(rank or 4 * d, d)) @ rng.normal(size=(d, d)) * 0.3 + shift
        return samples.mean(0), np.cov(samples, rowvar=False)
    (mu_r, sigma_r), (mu_g, sigma_g) = gaussian(0.0), gaussian(0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = frechet_distance(mu_r, sigma_r, mu_g, sigma_g)
    # one reference decomposed once against two Gaussians: itself and the generated one
    found = frechet_distances(mu_r[None], sigma_r[None], np.stack([mu_g, mu_r]), np.stack([sigma_g, sigma_r]))
    assert found[0] == pytest.approx(expected, rel=1e-6, abs=1e-8)
    assert found[1] == pytest.approx(0.0, abs=1e-6 * np.trace(sigma_r))


def test_batched_distances_equal_scipys_sqrtm_route_to_1e_8():
    """The resampling path (moments of weighted unions, batched eigh) gives the numbers the
    sqrtm route gives on the same draws."""
    from metrics.fvd import UnitFeatures, set_distances

    rng = np.random.default_rng(3)
    mixing = rng.normal(size=(32, 32)) / np.sqrt(32)
    real = UnitFeatures([rng.normal(size=(k, 32)) @ mixing for k in rng.integers(1, 3, 80)])
    fake = UnitFeatures([rng.normal(0.3, 1.0, size=(k, 32)) @ mixing for k in rng.integers(1, 3, 70)])
    real_counts = np.stack([np.bincount(rng.integers(0, 80, 80), minlength=80) for _ in range(5)])
    fake_counts = np.stack([np.bincount(rng.integers(0, 70, 70), minlength=70) for _ in range(5)])
    batched = set_distances(real, fake, real_counts, fake_counts)
    for value, rc, fc in zip(batched, real_counts, fake_counts):
        a, b = real.stats(rc), fake.stats(fc)
        assert value == pytest.approx(frechet_distance(a.mean(), a.covariance(), b.mean(), b.covariance()), rel=1e-8)
