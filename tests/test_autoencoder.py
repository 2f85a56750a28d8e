"""The causal video autoencoder: shapes, causality, KL, standardisation, checkpoints, training."""

from __future__ import annotations

import itertools
import math
from typing import Any, Iterator

import pytest
import torch

from generator.autoencoder import (AutoencoderConfig, DiagonalGaussian, VideoAutoencoder, frames_to_video,
                                   video_to_frames)
from generator.train_autoencoder import evaluate_autoencoder, train_autoencoder

TINY = AutoencoderConfig(latent_channels=4, base_channels=4, channel_mults=(1, 2, 2))


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny convolutions gain nothing from a second thread, and two OpenMP threads stall whenever
    another process holds a core (measured: this file took 49 s instead of 13 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(seed: int = 0, config: AutoencoderConfig = TINY) -> VideoAutoencoder:
    torch.manual_seed(seed)
    return VideoAutoencoder(config).eval()


def squares_video(batch: int, frames: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 (B, T, H, W, 3): a coloured square sliding over a flat background."""
    g = torch.Generator().manual_seed(seed)
    video = torch.zeros(batch, frames, size, size, 3, dtype=torch.uint8)
    side = size // 4
    for b in range(batch):
        video[b] += torch.randint(0, 80, (3,), generator=g, dtype=torch.uint8)
        colour = torch.randint(120, 256, (3,), generator=g, dtype=torch.uint8)
        x0, y0 = (int(v) for v in torch.randint(0, size - side - frames // 2, (2,), generator=g))
        for t in range(frames):
            x = x0 + t // 2
            video[b, t, y0:y0 + side, x:x + side] = colour
    return video


@pytest.mark.parametrize("k", [0, 1, 4])
def test_shapes_round_trip(k: int) -> None:
    model = tiny_model()
    video = torch.rand(2, 3, 1 + 4 * k, 16, 24) * 2 - 1
    with torch.no_grad():
        posterior = model.encode(video)
        assert posterior.mean.shape == posterior.logvar.shape == (2, 4, 1 + k, 2, 3)
        assert model.decode(posterior.sample()).shape == video.shape
        recon, _ = model(video)
    assert recon.shape == video.shape


def test_five_second_clip_shapes() -> None:
    model = tiny_model()
    frames = torch.randint(0, 256, (1, 41, 64, 64, 3), dtype=torch.uint8)
    latents = model.encode_frames(frames)
    assert latents.shape == (1, 4, 11, 8, 8) and model.latent_shape(41, 64, 64) == (4, 11, 8, 8)
    assert model.decode_to_frames(latents).shape == frames.shape


def test_config_rejects_channels_the_shortcuts_cannot_group() -> None:
    with pytest.raises(ValueError, match="do not divide"):
        AutoencoderConfig(latent_channels=3)
    with pytest.raises(ValueError, match="do not divide"):
        AutoencoderConfig(base_channels=16, channel_mults=(1, 3, 4))


@pytest.mark.parametrize("frames, size", [(4, 16), (18, 16), (17, 12)])
def test_unfit_video_sizes_raise(frames: int, size: int) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        tiny_model().encode(torch.zeros(1, 3, frames, size, size))


def test_encoder_is_causal() -> None:
    model = tiny_model()
    video = torch.rand(1, 3, 17, 16, 16) * 2 - 1
    with torch.no_grad():
        base = model.encode(video).mean
        for j in range(4):
            after = video.clone()
            after[:, :, 4 * j + 1:] += torch.randn_like(after[:, :, 4 * j + 1:])
            changed = model.encode(after).mean
            # latents 0..j see only frames <= 4j; latent j+1 sees frame 4j+1, so the bound is tight
            torch.testing.assert_close(changed[:, :, :j + 1], base[:, :, :j + 1], rtol=0, atol=1e-6)
            assert (changed[:, :, j + 1] - base[:, :, j + 1]).abs().max() > 1e-3
            at_4j = video.clone()
            at_4j[:, :, 4 * j] += 1.0
            assert (model.encode(at_4j).mean[:, :, j] - base[:, :, j]).abs().max() > 1e-3


def test_decoder_is_causal() -> None:
    model = tiny_model()
    z = torch.randn(1, 4, 5, 2, 2)
    with torch.no_grad():
        base = model.decode(z)
        for j in range(5):
            after = z.clone()
            after[:, :, j] += 1.0
            changed = model.decode(after)
            # frame t reads latent ceil(t/4): latent j first reaches frame 4j-3 (frame 0 for j = 0)
            first = max(0, 4 * j - 3)
            torch.testing.assert_close(changed[:, :, :first], base[:, :, :first], rtol=0, atol=1e-6)
            assert (changed[:, :, first] - base[:, :, first]).abs().max() > 1e-3


@pytest.mark.parametrize("chunk", [1, 2, 3, 5])
def test_chunked_decoding_equals_one_pass(chunk: int) -> None:
    """Causal convolutions carry their last input frames across chunks, so decoding a long clip
    piece by piece (flat memory) gives the frames of one whole-clip pass."""
    model = tiny_model()
    latents = torch.randn(2, 4, 7, 2, 2)
    whole = model.decode_to_frames(latents, chunk_frames=None)
    pieces = model.decode_to_frames(latents, chunk_frames=chunk)
    assert pieces.shape == whole.shape == (2, 25, 16, 16, 3)
    assert (pieces.int() - whole.int()).abs().max() <= 1  # float rounding may flip a uint8 level
    assert all(m.stream is None for m in model.decoder.modules() if hasattr(m, "stream"))  # state cleared


def test_static_video_gives_identical_latent_frames() -> None:
    """Replicate past padding: a still video looks like an image that was always there."""
    model = tiny_model()
    video = (torch.rand(1, 3, 1, 16, 16) * 2 - 1).expand(-1, -1, 9, -1, -1)
    with torch.no_grad():
        z = model.encode(video).mean
    torch.testing.assert_close(z, z[:, :, :1].expand_as(z), rtol=0, atol=1e-5)


def test_kl_closed_form() -> None:
    zero = torch.zeros(3, 2, 5)
    assert torch.equal(DiagonalGaussian(zero, zero).kl(), torch.zeros(3))
    # N(1, 1) -> 0.5 * 1; N(-2, 4) -> 0.5 * (4 + 4 - 1 - ln 4)
    posterior = DiagonalGaussian(torch.tensor([[1.0, -2.0]]), torch.tensor([[0.0, math.log(4.0)]]))
    expected = 0.5 + 0.5 * (4.0 + 4.0 - 1.0 - math.log(4.0))
    torch.testing.assert_close(posterior.kl(), torch.tensor([expected]))


def test_posterior_sampling_is_seeded_and_scaled() -> None:
    mean, logvar = torch.full((1, 20000), 3.0), torch.full((1, 20000), math.log(0.25))
    posterior = DiagonalGaussian(mean, logvar)
    a = posterior.sample(torch.Generator().manual_seed(7))
    assert torch.equal(a, posterior.sample(torch.Generator().manual_seed(7)))
    assert abs(float(a.mean()) - 3.0) < 0.02 and abs(float(a.std()) - 0.5) < 0.02
    assert torch.equal(posterior.mode(), mean)


def test_standardisation_round_trip_and_fit() -> None:
    model = tiny_model()
    model.latent_mean.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    model.latent_std.copy_(torch.tensor([0.1, 2.0, 3.0, 1.5]))
    z = torch.randn(2, 4, 3, 2, 2)
    torch.testing.assert_close(model.normalize(model.denormalize(z)), z)
    torch.testing.assert_close(model.denormalize(model.normalize(z)), z)

    batches = [squares_video(3, 9, 32, seed=s) for s in range(3)]
    stats = model.fit_latent_stats(batches)
    assert len(stats["mean"]) == len(stats["std"]) == 4
    z = torch.cat([model.encode_frames(b) for b in batches]).transpose(0, 1).flatten(1)
    torch.testing.assert_close(z.mean(dim=1), torch.zeros(4), rtol=0, atol=1e-4)
    torch.testing.assert_close(z.std(dim=1, correction=0), torch.ones(4), rtol=0, atol=1e-4)


def test_frames_api_dtypes_and_ranges() -> None:
    model = tiny_model()
    frames = squares_video(2, 5, 16)
    latents = model.encode_frames(frames)
    assert latents.dtype == torch.float32 and latents.shape == (2, 4, 2, 2, 2)
    out = model.decode_to_frames(latents)
    assert out.dtype == torch.uint8 and out.shape == frames.shape
    with torch.no_grad():
        video = model.decode(model.denormalize(latents))  # (B, 3, T, H, W), unclamped
    expected = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1)
    assert torch.equal(out, expected)
    # the pixel <-> [-1, 1] conversions lose nothing: every uint8 value comes back
    every = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16, 1).expand(1, 1, 16, 16, 3)
    assert torch.equal(video_to_frames(frames_to_video(every)), every)
    with pytest.raises(ValueError, match="uint8"):
        model.encode_frames(frames.float())
    with pytest.raises(ValueError, match="decode_to_frames"):
        model.decode_to_frames(torch.zeros(1, 3, 2, 2, 2))


def test_save_load_round_trip(tmp_path) -> None:
    model = tiny_model()
    model.fit_latent_stats([squares_video(2, 5, 16)])
    model.info = {"steps": 3, "val_psnr": 12.5}
    path = tmp_path / "vae.pt"
    model.save(path)
    loaded = VideoAutoencoder.load(path, expected_config=TINY)
    assert loaded.config == TINY and loaded.info == model.info and not loaded.training
    frames = squares_video(1, 9, 16, seed=3)
    latents = model.encode_frames(frames)
    assert torch.equal(loaded.encode_frames(frames), latents)
    assert torch.equal(loaded.decode_to_frames(latents), model.decode_to_frames(latents))
    assert torch.equal(loaded.latent_std, model.latent_std)


def test_load_rejects_mismatched_config(tmp_path) -> None:
    path = tmp_path / "vae.pt"
    tiny_model().save(path)
    other = AutoencoderConfig(latent_channels=8, base_channels=4, channel_mults=(1, 2, 2))
    with pytest.raises(ValueError, match=r"different autoencoder config.*latent_channels"):
        VideoAutoencoder.load(path, expected_config=other)
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["base_channels"] = 8  # weights no longer fit the config they claim
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="weights do not match"):
        VideoAutoencoder.load(path)


def _fixed_batches(video: torch.Tensor, fail_after: int | None = None) -> Iterator[dict[str, Any]]:
    for i in itertools.count():
        if fail_after is not None and i >= fail_after:
            raise KeyboardInterrupt  # a run killed mid-way
        yield {"video": video, "caption": ["a square"] * len(video)}


def test_training_lowers_reconstruction_loss(tmp_path) -> None:
    video = squares_video(2, 5, 16)
    result = train_autoencoder(TINY, _fixed_batches(video), [{"video": video, "caption": ["x", "x"]}],
                               steps=60, lr=3e-3, seed=0, log_every=10, warmup_steps=5, stats_batches=1,
                               checkpoint_path=tmp_path / "vae.pt", progress=False)
    mse = [r["mse"] for r in result["history"]]
    assert len(mse) == 6 and mse[-1] < 0.5 * mse[0], mse
    assert set(result["val"]) == {"psnr", "ssim"} and result["val"]["psnr"] > 15.0
    loaded = VideoAutoencoder.load(tmp_path / "vae.pt")
    assert loaded.info["steps"] == 60 and loaded.info["val_psnr"] == pytest.approx(result["val"]["psnr"])
    assert evaluate_autoencoder(loaded, [{"video": video}]) == pytest.approx(result["val"])
    # continuing a finished model starts where it ended, and its info counts both runs
    more = train_autoencoder(TINY, _fixed_batches(video), [{"video": video}], steps=5, lr=1e-3, seed=0, log_every=5,
                             warmup_steps=1, stats_batches=1, init_from=tmp_path / "vae.pt", progress=False)
    assert more["model"].info["steps"] == 65 and more["history"][0]["mse"] < 0.5 * mse[0]
    with pytest.raises(ValueError, match="different autoencoder config"):
        train_autoencoder(AutoencoderConfig(base_channels=4, channel_mults=(1, 2, 2)), _fixed_batches(video), [],
                          steps=1, init_from=tmp_path / "vae.pt", progress=False)


def test_resume_matches_an_uninterrupted_run(tmp_path) -> None:
    video = squares_video(2, 5, 16)
    val = [{"video": video}]
    kwargs = dict(steps=8, lr=3e-3, seed=1, log_every=4, warmup_steps=2, stats_batches=1, progress=False,
                  checkpoint_every=4)
    straight = train_autoencoder(TINY, _fixed_batches(video), val, **kwargs)["model"]
    path = tmp_path / "vae.pt"
    with pytest.raises(KeyboardInterrupt):
        train_autoencoder(TINY, _fixed_batches(video, fail_after=6), val, checkpoint_path=path, **kwargs)
    assert torch.load(path, weights_only=True)["train_state"]["step"] == 4
    with pytest.raises(ValueError, match="different autoencoder config"):
        train_autoencoder(AutoencoderConfig(base_channels=4, channel_mults=(1, 2, 2)), _fixed_batches(video), val,
                          checkpoint_path=path, resume=True, **kwargs)
    resumed = train_autoencoder(TINY, _fixed_batches(video), val, checkpoint_path=path, resume=True, **kwargs)
    for a, b in zip(straight.state_dict().values(), resumed["model"].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="nothing to resume"):
        train_autoencoder(TINY, _fixed_batches(video), val, checkpoint_path=path, resume=True, **kwargs)
