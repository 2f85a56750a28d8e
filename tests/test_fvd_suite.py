"""FVD as a set-level suite metric: per-clip features stored with each unit, reference features
from real clips cached by content hash, one value per (model, task, clip length) that equals a
direct computation, and an interval that resamples the generated and the reference units."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
import torch
from torch import nn

from metrics.fvd import FeatureStats, UnitFeatures, clip_windows, fvd_from_features, set_distances
from metrics.i3d import NUM_CLASSES, TorchScriptI3d, load_i3d_torchscript
from metrics.shapes_detector import load_shapes_detector
from vbench_flow.data.source import ShapesSource
from vbench_flow.stats import set_interval
from vbench_flow.store import Store
from tests.test_runner import vbf


SUITE = """\
name: fvd-suite
seed: 3
data: {type: shapes, size: 64, fps: 8}
clip_seconds: [CLIP]
prompts: {source: data, split: test, count: 4, seeds: [0]}
reference: {split: val, count: REFCOUNT}
models:
  - {name: real, type: dataset}
metrics:
  - {name: fvd, args: {windows: WINDOWS, bootstrap: 50}}
"""


def write(tmp_path: Path, *, clip: float = 2, refcount: int = 6, windows: str = "first", name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(SUITE.replace("CLIP", str(clip)).replace("REFCOUNT", str(refcount)).replace("WINDOWS", windows))
    return path


# ---------------------------------------------------------------- pieces


def test_clip_windows_first_and_all():
    video = np.arange(41 * 2 * 2 * 3, dtype=np.int64).reshape(41, 2, 2, 3).astype(np.uint8)
    first = clip_windows(video)
    assert len(first) == 1 and np.array_equal(first[0], video[:16])
    every = clip_windows(video, windows="all")
    assert [len(w) for w in every] == [16, 16] and np.array_equal(every[1], video[16:32])
    assert len(clip_windows(np.zeros((241, 2, 2, 3), np.uint8), windows="all")) == 15
    with pytest.raises(ValueError, match="too few"):
        clip_windows(video[:15])
    with pytest.raises(ValueError, match="windows"):
        clip_windows(video, windows="some")


def test_spread_windows_give_every_clip_the_same_count_from_its_first_frame_to_its_last():
    from metrics.fvd import FvdArgs, window_starts

    assert window_starts(41, windows="spread", count=12) == [0, 2, 5, 7, 9, 11, 14, 16, 18, 20, 23, 25]
    long = window_starts(241, windows="spread", count=12)
    assert len(long) == 12 and long[0] == 0 and long[-1] + 16 == 241  # the last window ends on the last frame
    assert window_starts(20, windows="spread", count=12) == [0, 1, 2, 3, 4]  # only 5 distinct starts
    assert window_starts(16, windows="spread", count=3) == [0]
    assert window_starts(241, windows="all") == list(range(0, 226, 16))
    with pytest.raises(ValidationError, match="window_count applies only with windows: spread"):
        FvdArgs(windows="all", window_count=4)


def test_weighted_union_of_units_equals_repeated_features():
    rng = np.random.default_rng(0)
    units = [rng.normal(size=(k, 4)) for k in (1, 3, 2)]
    merged = UnitFeatures(units).stats([2, 0, 1])
    direct = FeatureStats.of(np.concatenate([units[0], units[0], units[2]]))
    assert merged.count == direct.count == 4 and len(UnitFeatures(units)) == 3
    for estimator in ("unbiased", "biased", "ledoit_wolf"):
        np.testing.assert_allclose(merged.covariance(estimator), direct.covariance(estimator), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(merged.mean(), direct.mean(), rtol=1e-12)


def test_set_interval_contains_the_value_is_seeded_and_needs_two_units_a_side():
    rng = np.random.default_rng(1)
    real = UnitFeatures([rng.normal(size=(1, 3)) for _ in range(40)])
    fake = UnitFeatures([rng.normal(0.5, 1.0, size=(1, 3)) for _ in range(30)])
    value = fvd_from_features(real.stats(), fake.stats())

    def draw(real_counts, fake_counts, seed):
        return set_distances(real, fake, real_counts, fake_counts)

    estimate = set_interval(draw, (40, 30), value, confidence=0.95, resamples=200, seed=4)
    assert estimate.low < value < estimate.high and estimate.low >= 0
    assert estimate == set_interval(draw, (40, 30), value, confidence=0.95, resamples=200, seed=4)  # seeded
    assert np.isnan(set_interval(draw, (40, 1), value, confidence=0.95, resamples=50, seed=0).low)


class _EchoI3d(nn.Module):
    """A TorchScript-able stand-in with StyleGAN-V's call signature: returns 400 features that
    record the flags it was called with, so the wrapper's calling convention is checked."""

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                return_features: bool = False) -> torch.Tensor:
        flags = torch.tensor([float(rescale), float(resize), float(return_features)])
        out = x.mean(dim=(1, 2, 3, 4))[:, None].repeat(1, 400)
        out[:, :3] = flags
        return out


def test_torchscript_detector_is_called_like_stylegan_v(tmp_path):
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(_EchoI3d()).save(str(path))
    detector = load_i3d_torchscript(path)
    assert isinstance(detector, TorchScriptI3d)
    x = torch.full((2, 3, 16, 224, 224), 0.25)
    features = detector.features(x)
    assert features.shape == (2, NUM_CLASSES)
    assert features[0, :3].tolist() == [0.0, 0.0, 1.0]  # rescale=False, resize=False, return_features=True
    assert features[0, 3].item() == pytest.approx(0.25)
    with pytest.raises(FileNotFoundError, match="vbf fetch"):
        load_i3d_torchscript(tmp_path / "missing.pt")


# ---------------------------------------------------------------- in a suite


def _direct_fvd(real_features: list[np.ndarray], fake_features: list[np.ndarray]) -> float:
    return fvd_from_features(np.concatenate(real_features), np.concatenate(fake_features))


def test_suite_fvd_equals_a_direct_computation_and_caches_the_reference(tmp_path, capsys):
    suite = write(tmp_path)
    runs = tmp_path / "runs"
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "a", "--quiet") == 0
    store = Store(runs / "vbf.sqlite")
    row = store.aggregates(["a"]).set_index("metric").loc["fvd"]
    assert row["n"] == 4 and "shapes-i3d" in row["extractor"] and "reference" in row["metric_version"]

    # independently: the dataset model's clips are the test clips; features straight from the detector
    detector, _ = load_shapes_detector()
    data = ShapesSource(size=64, fps=8)
    fake = [detector.features(data.ground_truth(p, 17, 8.0)[None, :16]) for p in data.prompts("test", 0, 4)]
    real = [detector.features(data.ground_truth(p, 17, 8.0)[None, :16]) for p in data.prompts("val", 0, 6)]
    assert row["value"] == pytest.approx(_direct_fvd(real, fake), rel=1e-6)
    assert row["ci_low"] <= row["value"] <= row["ci_high"]
    stored = store.sample_features("a", "fvd")
    assert len(stored) == 4 and all(f.shape == (1, 128) for f in stored.values())
    # 4 feature vectors of 128 dimensions: the report marks the value, and validate warns before a run
    assert "n &lt; 2d" in (runs / "a" / "report.html").read_text()
    capsys.readouterr()
    assert vbf("validate", str(suite)) == 0
    assert "4 generated and 6 reference feature vectors per cell, under 2 x 128 dimensions" in capsys.readouterr().err
    inf = tmp_path / "inf.yaml"
    inf.write_text(suite.read_text().replace("windows: first", "windows: first, variant: fvd_inf"))
    assert vbf("validate", str(inf)) == 0
    assert "under 4 x 128 dimensions: fvd_inf's smallest subsamples" in capsys.readouterr().err

    cache = sorted((runs / "cache" / "reference-features").glob("*.npz"))
    assert len(cache) == 1
    stamp = cache[0].stat().st_mtime_ns
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "b", "--quiet") == 0
    assert cache[0].stat().st_mtime_ns == stamp  # reused, not recomputed
    assert store.aggregates(["b"]).set_index("metric").loc["fvd", "value"] == pytest.approx(row["value"], rel=1e-12)

    other = write(tmp_path, refcount=5, name="other.yaml")  # another reference set: another cache entry
    assert vbf("run", str(other), "--runs-dir", str(runs), "--run-id", "c", "--quiet") == 0
    assert len(list((runs / "cache" / "reference-features").glob("*.npz"))) == 2
    assert store.reference_sets("c")["clips"].tolist() == [5]
    store.close()


def test_long_clip_variant_pools_every_window(tmp_path, capsys):
    suite = write(tmp_path, clip=4, windows="all")  # 33 frames: 2 windows per clip
    runs = tmp_path / "runs"
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "a", "--quiet") == 0
    store = Store(runs / "vbf.sqlite")
    row = store.aggregates(["a"]).set_index("metric").loc["fvd"]
    assert row["n"] == 8 and "windows=all" in row["metric_version"] and "12 windows" in row["metric_version"]
    assert all(f.shape == (2, 128) for f in store.sample_features("a", "fvd").values())
    store.close()


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("reference: {split: val, count: 6}\n", ""), "no reference: block"),
    (lambda s: s.replace("count: 4, seeds", "count: 1, seeds"), "at least 2 clips"),
    (lambda s: s.replace("clip_seconds: [2]", "clip_seconds: [1]"), "at least 16 frames"),
])
def test_validation_catches_what_fvd_needs(tmp_path, capsys, edit, message):
    suite = write(tmp_path)
    suite.write_text(edit(suite.read_text()))
    assert vbf("validate", str(suite)) == 4
    assert message in capsys.readouterr().err
