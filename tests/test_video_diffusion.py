"""The diffusion baselines: attention patterns, the KV-cached sampler against the uncached one,
seeding, conditioning, the likelihood bound and training."""

from __future__ import annotations

import pytest
import torch

from generator import diffusion as schedule
from generator.text import TextConfig, build_vocab
from generator.train import TrainConfig, train_model, validate
from generator.video_diffusion import DiffusionConfig, VideoDiffusion
from tests.test_starflow_training import CAPTIONS, structured_batches


def tiny(causal: bool, **overrides) -> VideoDiffusion:
    torch.manual_seed(0)
    config = DiffusionConfig(causal=causal, token_dim=2, frame_height=2, frame_width=2, max_frames=4, width=16,
                             depth=2, heads=2, text=TextConfig(vocab=build_vocab(CAPTIONS), max_len=12, width=16,
                                                               depth=1, heads=2), **overrides)
    model = VideoDiffusion(config).double().eval()
    torch.nn.init.normal_(model.head.weight, std=0.3)  # a non-trivial velocity
    return model


def test_causal_model_never_reads_later_frames_and_bidirectional_does():
    z = torch.randn(2, 4, 4, 2, dtype=torch.float64)
    t = torch.rand(2, 4, dtype=torch.float64)
    for causal in (True, False):
        model = tiny(causal)
        prefix = model.text_prefix(model.caption_tokens(CAPTIONS[:2]))
        base = model.velocity(z, t, prefix)
        later = z.clone()
        later[:, 2] += 1.0
        changed = model.velocity(later, t, prefix)
        earlier_moved = (changed[:, :2] - base[:, :2]).abs().max()
        assert (earlier_moved < 1e-12) == causal, earlier_moved
        assert (changed[:, 2] - base[:, 2]).abs().max() > 1e-3  # a frame reads itself (bidirectionally)


@pytest.mark.parametrize("few_step", [True, False])
@pytest.mark.parametrize("options", [{}, {"guidance": 2.0}, {"sink": True, "context_frames": 2}])
def test_kv_cached_sampler_equals_the_uncached_one(few_step, options):
    """9 latent frames from a 4-frame model: three windows, the cache dropped and refilled each time."""
    model = tiny(True)
    timesteps = schedule.few_step_timesteps() if few_step else schedule.euler_timesteps(4)
    run = lambda use_cache: model.sample(CAPTIONS[:2], 9, generator=torch.Generator().manual_seed(3),  # noqa: E731
                                         timesteps=timesteps, few_step=few_step, use_cache=use_cache, **options)
    cached, uncached = run(True), run(False)
    assert cached.shape == (2, 9, 4, 2)
    assert (cached - uncached).abs().max() < 1e-10


@pytest.mark.parametrize("causal", [True, False])
def test_same_seed_same_clip_and_given_frames_are_kept(causal):
    model = tiny(causal)
    given = torch.randn(2, 2, 4, 2, dtype=torch.float64)
    sample = lambda seed: model.sample(CAPTIONS[:2], 7, generator=torch.Generator().manual_seed(seed),  # noqa: E731
                                       timesteps=schedule.euler_timesteps(3), few_step=False, condition=given)
    first, again, other = sample(0), sample(0), sample(1)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(first[:, :2], given)


def test_sampler_options_are_checked():
    model = tiny(False)
    with pytest.raises(ValueError, match="attention sink needs the causal model"):
        model.sample(CAPTIONS[:1], 3, timesteps=[1.0, 0.0], few_step=False, sink=True)
    with pytest.raises(ValueError, match="sink needs context_frames >= 2"):
        tiny(True).sample(CAPTIONS[:1], 6, timesteps=[1.0, 0.0], few_step=False, sink=True, context_frames=1)
    with pytest.raises(ValueError, match="context_frames must be in 1..3"):
        tiny(True).sample(CAPTIONS[:1], 6, timesteps=[1.0, 0.0], few_step=False, context_frames=4)


def test_likelihood_bound_is_finite_and_training_lowers_it_and_the_loss():
    val = [next(structured_batches(99, batch=16))]
    for causal in (True, False):
        model = tiny(causal).float()
        g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
        before_loss = validate(model, val)
        before_bound = model.bits_per_dim(val[0]["latents"], val[0]["caption"], g(), samples=8).mean().item()
        config = TrainConfig(steps=150, lr=3e-3, warmup_steps=10, val_every=150, ema_decay=0.9, log_every=50, seed=0)
        result = train_model(model, structured_batches(0), val, config, progress=False)
        bound = model.bits_per_dim(val[0]["latents"], val[0]["caption"], g(), samples=8).mean().item()
        assert result["val_loss"] < before_loss - 0.2, (causal, before_loss, result["val_loss"])
        assert bound < before_bound - 0.2, (causal, before_bound, bound)


def test_per_frame_noise_levels_and_clean_prefixes_in_training():
    model = tiny(True, clean_prefix=1.0)
    latents = torch.zeros(64, 4, 4, 2, dtype=torch.float64)
    t, _ = model._training_noise(latents, torch.Generator().manual_seed(0))
    assert (t[:, 0] == 0).all() and (t[:, -1] > 0).all()  # every clip: 1..3 given frames, the last noisy
    assert t[:, 1:].std(dim=0).min() > 0.05  # causal: a level per frame
    bidirectional = tiny(False, clean_prefix=0.0)
    t, _ = bidirectional._training_noise(latents, torch.Generator().manual_seed(0))
    assert torch.equal(t, t[:, :1].expand_as(t))  # bidirectional: one level per clip
