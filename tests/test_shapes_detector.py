"""shapes-i3d, the offline FVD detector: features, labels, a tiny training run, checkpoints, FVD.

Everything runs on tiny models or a randomly initialised default one, on a few dozen rendered
clips; the shipped checkpoint is checked only where it exists.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from metrics.fvd import fvd_from_features
from metrics.shapes_detector import (
    DEFAULT_CHECKPOINT,
    DEFAULT_CONFIG,
    DEFAULT_HEADS,
    EXTRACTOR_NAME,
    MAX_FEATURE_DIM,
    build_shapes_detector,
    evaluate,
    extractor_id,
    load_shapes_detector,
    metric_version,
    parameter_count,
    preprocess,
    save_shapes_detector,
    shapes_fvd,
    train_shapes_detector,
)
from vbench_flow.data import shapes
from vbench_flow.data.shapes import ObjectSpec, SceneSpec, ShapesWorld

ROOT = Path(__file__).resolve().parents[1]
TINY = {"stem_channels": 8, "channels": [16], "feature_dim": 16, "blocks": 0, "pool": "mean+max"}


def _load_script():
    spec = importlib.util.spec_from_file_location("train_shapes_detector", ROOT / "scripts" / "train_shapes_detector.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


script = _load_script()


def _clips(split: str, indices, num_frames: int = 16, max_objects: int = 3, start: int = 0) -> np.ndarray:
    world = ShapesWorld(split, max_objects=max_objects)
    return np.stack([world.clip(i, num_frames, start_frame=start).frames for i in indices])


@pytest.fixture(scope="module")
def real_clips() -> np.ndarray:
    return _clips("test", range(96))


@pytest.fixture(scope="module")
def default_model():
    return build_shapes_detector(seed=0)


# ---------------------------------------------------------------- labels and config


def test_class_lists_are_the_shapes_world_ones():
    assert DEFAULT_HEADS["shape"] == shapes.SHAPES
    assert DEFAULT_HEADS["colour"] == shapes.OBJECT_COLORS
    assert DEFAULT_HEADS["motion"] == tuple(shapes.MOTIONS)
    assert DEFAULT_HEADS["background"] == tuple(shapes.BACKGROUNDS)
    assert len(DEFAULT_HEADS["objects"]) == shapes.MAX_OBJECTS
    assert {k: len(v) for k, v in DEFAULT_HEADS.items()} == {"shape": 6, "colour": 9, "motion": 6, "background": 8,
                                                            "objects": 3}


def test_target_object_is_the_largest_then_the_first_colour():
    small = ObjectSpec("circle", "red", "small", "static", x=0.2, y=0.2)
    large_moving = ObjectSpec("star", "green", "large", "bouncing", x=0.5, y=0.5, vx=0.2, vy=0.3)
    large_fixed = ObjectSpec("square", "blue", "large", "static", x=0.7, y=0.7)
    assert script.target_object(SceneSpec("black", (small, large_moving))) == 1
    # equal sizes: green comes before blue in OBJECT_COLORS, whatever the tuple or drawing order
    assert script.target_object(SceneSpec("black", (large_fixed, large_moving))) == 1
    assert script.target_object(SceneSpec("black", (large_moving, small, large_fixed))) == 0
    labels = script.clip_labels(SceneSpec("black", (small, large_fixed)))
    assert labels == {"shape": "square", "colour": "blue", "motion": "static", "background": "black", "objects": "2"}
    for i in range(50):  # every label of a real scene is a class of its head
        row = script.clip_labels(ShapesWorld("train").scene(i))
        assert all(row[h] in DEFAULT_HEADS[h] for h in DEFAULT_HEADS)


def test_feature_dim_is_at_most_128():
    assert DEFAULT_CONFIG["feature_dim"] <= MAX_FEATURE_DIM == 128
    plain = build_shapes_detector({"channels": [8, 16], "feature_dim": 16, "pool": "mean"})
    assert isinstance(plain.project, torch.nn.Identity)  # the mean-pooled last stage is the feature itself
    assert isinstance(build_shapes_detector(TINY).project, torch.nn.Linear)  # 32 pooled values -> 16
    assert plain.features(np.zeros((1, 16, 64, 64, 3), np.uint8)).shape == (1, 16)
    for bad in ({"feature_dim": 129}, {"feature_dim": 0}, {"depth": 3}, {"heads": {"colour": ["red"]}},
                {"channels": []}, {"pool": "median"}):
        with pytest.raises(ValueError):
            build_shapes_detector(bad)


# ---------------------------------------------------------------- features


def test_features_shape_dtype_and_determinism(default_model, real_clips):
    clips = real_clips[:8]
    features = default_model.features(clips)
    assert features.shape == (8, default_model.feature_dim) and default_model.feature_dim <= 128
    assert features.dtype == np.float64 and np.all(np.isfinite(features))
    assert np.array_equal(features, default_model.features(clips))
    # eval mode: a clip's feature does not depend on its batch; a list of clips works as an array
    np.testing.assert_allclose(default_model.features(list(clips), batch_size=3), features, rtol=1e-5, atol=1e-6)
    # the same seed gives the same network
    np.testing.assert_array_equal(build_shapes_detector(seed=0).features(clips), features)
    assert not np.allclose(build_shapes_detector(seed=1).features(clips), features)
    default_model.train()
    default_model.features(clips[:2])
    assert default_model.training  # mode restored
    default_model.eval()


def test_other_frame_sizes_are_resized_to_64(default_model, real_clips):
    clip = real_clips[:2]
    big = np.repeat(np.repeat(clip, 2, axis=2), 2, axis=3)  # 128x128, 2x2 blocks
    difference = (preprocess(big) - preprocess(clip)).abs()
    assert float(difference.mean()) < 0.01 and float(difference.max()) < 0.6  # only edges blur
    odd = np.stack([ShapesWorld("test", size=48).clip(i, 16).frames for i in range(2)])
    assert default_model.features(odd).shape == (2, default_model.feature_dim)
    flat = np.full((1, 16, 30, 50, 3), 200, np.uint8)
    np.testing.assert_allclose(preprocess(flat), np.full((1, 3, 16, 64, 64), 2 * 200 / 255 - 1), atol=1e-5)
    mixed = [clip[0], odd[0]]  # clips of different sizes in one call
    np.testing.assert_allclose(default_model.features(mixed)[0], default_model.features(clip[:1])[0], atol=1e-6)


@pytest.mark.parametrize("bad", [
    np.zeros((2, 16, 64, 64, 3), np.float32),        # not uint8
    np.zeros((2, 15, 64, 64, 3), np.uint8),          # not 16 frames
    np.zeros((2, 17, 64, 64, 3), np.uint8),
    np.zeros((2, 16, 64, 64), np.uint8),             # no channel axis
    np.zeros((2, 16, 64, 64, 4), np.uint8),          # RGBA
    np.zeros((16, 64, 64, 3), np.uint8),             # one clip without the batch axis
    np.zeros((0, 16, 64, 64, 3), np.uint8),          # no clips
])
def test_bad_input_raises_value_error(default_model, bad):
    with pytest.raises(ValueError):
        default_model.features(bad)


def test_bad_network_input_and_labels_raise_value_error(default_model, real_clips):
    with pytest.raises(ValueError):
        default_model(torch.zeros(1, 16, 64, 64, 3))
    with pytest.raises(ValueError):
        default_model.features(real_clips[:2], batch_size=0)
    with pytest.raises(ValueError, match="unknown classes"):
        evaluate(default_model, real_clips[:2], {"colour": ["red", "mauve"]})
    with pytest.raises(ValueError, match="unknown heads"):
        evaluate(default_model, real_clips[:2], {"size": ["small", "large"]})
    with pytest.raises(ValueError):
        evaluate(default_model, real_clips[:2], {"colour": ["red"]})


def test_default_model_is_small_and_fast(default_model):
    assert parameter_count(default_model) < 2_000_000  # ~3.5 MB of float32 weights


# ---------------------------------------------------------------- training


def test_tiny_training_run_learns_colour_above_chance():
    """40 steps of a 5k-parameter model on single-object clips: colour well above chance (1/9)
    (about 0.6 after 40 steps, 1 s on one core)."""
    torch.manual_seed(0)
    config = {**TINY, "heads": {"colour": list(DEFAULT_HEADS["colour"])}}
    world = ShapesWorld("train", max_objects=1)
    pool = np.stack([world.clip(i, 8).frames for i in range(96)])
    colours = [world.scene(i).objects[0].color for i in range(96)]
    rng = np.random.default_rng(0)

    def batches():
        while True:
            pick = rng.integers(0, len(pool), 16)
            yield torch.from_numpy(pool[pick]), {"colour": [colours[i] for i in pick]}

    test_world = ShapesWorld("test", max_objects=1)
    test = np.stack([test_world.clip(i, 8).frames for i in range(64)])
    truth = {"colour": [test_world.scene(i).objects[0].color for i in range(64)]}
    model = build_shapes_detector(config, seed=0)
    before = evaluate(model, test, truth)["colour"]
    model, info = train_shapes_detector(batches(), steps=40, lr=1e-2, warmup_steps=5, model=model, progress=False,
                                        log_every=20)
    after = evaluate(model, test, truth)["colour"]
    assert not model.training
    assert info["steps"] == 40 and info["batch_size"] == 16 and len(info["log"]) == 2
    assert info["log"][-1]["loss"] < info["log"][0]["loss"]
    assert after > 0.35 > 3 / 9, (before, after)
    assert after > before + 0.15


def test_training_rejects_a_finite_iterator_and_no_steps():
    clips = torch.zeros(2, 8, 64, 64, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="ran out"):
        train_shapes_detector([(clips, {"colour": ["red", "blue"]})], steps=2, config=TINY, progress=False)
    with pytest.raises(ValueError):
        train_shapes_detector([], steps=0, config=TINY, progress=False)


def test_script_batches_and_test_set_have_labels_for_every_head():
    clips, labels = next(script.training_batches(3, seed=0, max_start_seconds=2.0))
    assert clips.dtype == torch.uint8 and tuple(clips.shape) == (3, 16, 64, 64, 3)
    assert set(labels) == set(DEFAULT_HEADS)
    assert all(int(v.max()) < len(DEFAULT_HEADS[h]) for h, v in labels.items())
    test_clips, test_labels = script.test_set(2, seed=0, max_start_seconds=2.0)
    assert test_clips.shape == (2, 16, 64, 64, 3) and all(len(v) == 2 for v in test_labels.values())
    assert set(script.majority_rate(test_labels).values()) <= {0.5, 1.0}


# ---------------------------------------------------------------- checkpoints


def test_save_load_round_trip_gives_identical_features(tmp_path, real_clips):
    model = build_shapes_detector(TINY, seed=3)
    model.train()
    with torch.no_grad():  # move the BatchNorm running statistics off their initial values
        model(preprocess(real_clips[:8]))
    model.eval()
    path = save_shapes_detector(tmp_path / "si.pt", model, {"steps": 7, "test": {"accuracy": {"colour": 0.5}}})
    loaded, meta = load_shapes_detector(path)
    assert not loaded.training
    np.testing.assert_array_equal(loaded.features(real_clips[:6]), model.features(real_clips[:6]))
    assert meta["config"] == model.config and meta["info"]["feature_dim"] == 16 and meta["info"]["steps"] == 7
    assert meta["info"]["parameters"] == parameter_count(model)
    assert re.fullmatch(r"[0-9a-f]{64}", meta["sha256"])
    assert extractor_id(meta) == f"{EXTRACTOR_NAME} {meta['sha256'][:12]}"
    assert extractor_id(meta).startswith("shapes-i3d ")
    assert extractor_id(meta) in metric_version(meta) and "cov=biased" in metric_version(meta, estimator="biased")
    with pytest.raises(ValueError):
        extractor_id({})


def test_missing_checkpoint_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"scripts/train_shapes_detector\.py"):
        load_shapes_detector(tmp_path / "nope.pt")


def test_other_files_are_refused(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a shapes-i3d checkpoint"):
        load_shapes_detector(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable torch file"):
        load_shapes_detector(tmp_path / "junk.pt")


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="shipped checkpoint not trained yet "
                    "(python scripts/train_shapes_detector.py --steps 2000 --threads 1)")
def test_shipped_checkpoint(real_clips):
    assert DEFAULT_CHECKPOINT.stat().st_size < 8 * 2**20
    model, meta = load_shapes_detector()
    assert model.feature_dim <= 128 and meta["info"]["feature_dim"] == model.feature_dim
    assert set(meta["info"]["test"]["accuracy"]) == set(DEFAULT_HEADS)
    rows = [script.clip_labels(ShapesWorld("test").scene(i)) for i in range(48)]
    accuracy = evaluate(model, real_clips[:48], {h: [r[h] for r in rows] for h in ("colour", "background")})
    assert accuracy["colour"] > 0.6 and accuracy["background"] > 0.6, accuracy


# ---------------------------------------------------------------- FVD


def test_fvd_separates_inverted_colours_from_the_same_distribution(real_clips):
    """Random-initialised features already rank: two halves of the test split are closer than a half
    and the colour-inverted clips of the other half."""
    model = build_shapes_detector({"feature_dim": 32}, seed=0)
    a, b = real_clips[:48], real_clips[48:]
    fa, fb, fc = model.features(a), model.features(b), model.features(255 - b)
    same = fvd_from_features(fa, fb)
    inverted = fvd_from_features(fa, fc)
    assert 0 < same < inverted / 3, (same, inverted)
    assert fvd_from_features(fa, fa) == pytest.approx(0.0, abs=1e-6)
    assert shapes_fvd(a, b, model) == pytest.approx(same, rel=1e-6)
    assert shapes_fvd(a, b, model, estimator="biased") < same
    with pytest.raises(ValueError):
        shapes_fvd(a, b, model, estimator="median")
