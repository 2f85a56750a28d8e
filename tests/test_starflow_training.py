"""STARFlow-V training: the flow-score-matching target, learning, determinism, resume, and DDP."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from generator.denoiser import DenoiserConfig, frame_window_mask
from generator.flow import FlowConfig
from generator.starflow import StarFlowConfig, StarFlowV
from generator.text import TextConfig, TextEncoder, build_vocab
from generator.train import TrainConfig, load_model, train_model

CAPTIONS = ["a red circle bouncing", "a blue square orbiting", "a green star spinning"]


def tiny_config(**overrides) -> StarFlowConfig:
    config = StarFlowConfig(
        flow=FlowConfig(token_dim=2, frame_height=2, frame_width=2, max_frames=4, shallow_blocks=2, shallow_depth=1,
                        shallow_width=16, deep_depth=2, deep_width=32, heads=2),
        text=TextConfig(vocab=build_vocab(CAPTIONS), max_len=12, width=16, depth=1, heads=2),
        denoiser=DenoiserConfig(width=16, depth=1, heads=2, window=2, lookahead=1),
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def structured_batches(seed: int, batch: int = 8, frames: int = 4):
    """Latent clips whose frames are strongly correlated in time: there is something to learn."""
    g = torch.Generator().manual_seed(seed)
    while True:
        base = 1.5 * torch.randn(batch, 1, 4, 2, generator=g)
        drift = 0.3 * torch.randn(batch, 1, 4, 2, generator=g)
        t = torch.arange(frames, dtype=torch.float32).view(1, frames, 1, 1)
        captions = [CAPTIONS[int(i)] for i in torch.randint(0, 3, (batch,), generator=g)]
        yield {"latents": base + drift * t, "caption": captions}


def test_score_target_is_sigma_times_the_nll_gradient():
    torch.manual_seed(0)
    model = StarFlowV(tiny_config()).double()
    for p in model.flow.parameters():  # non-trivial flow
        torch.nn.init.normal_(p, std=0.2)
    noisy = torch.randn(2, 3, 4, 2, dtype=torch.float64)
    tokens = model.caption_tokens(CAPTIONS[:2])
    nll, target = model.score_target(noisy, tokens)
    eps = 1e-6
    for index in [(0, 0, 0, 0), (1, 2, 3, 1), (0, 1, 2, 1)]:
        plus, minus = noisy.clone(), noisy.clone()
        plus[index] += eps
        minus[index] -= eps
        b = index[0]
        numeric = (model(plus, tokens)[b] - model(minus, tokens)[b]) / (2 * eps)
        assert target[index].item() == pytest.approx(model.config.noise_sigma * numeric.item(), rel=1e-5, abs=1e-7)


def test_training_step_regresses_the_denoiser_on_the_score_target():
    """The one-backward shortcut (batch-mean input gradient x B D) equals the per-clip NLL gradient."""
    torch.manual_seed(0)
    model = StarFlowV(tiny_config(first_frame_dropout=0.0, caption_dropout=0.0)).double()
    for p in model.flow.parameters():
        torch.nn.init.normal_(p, std=0.2)
    torch.nn.init.normal_(model.denoiser.head.weight, std=0.1)
    latents = torch.randn(3, 3, 4, 2, dtype=torch.float64)
    captions = CAPTIONS
    model.training_step(latents, captions, torch.Generator().manual_seed(5))
    got = {n: p.grad.clone() for n, p in model.denoiser.named_parameters()}
    # replay the step's random draws to rebuild its noisy input, then the loss from the definition
    g = torch.Generator().manual_seed(5)
    torch.rand((), generator=g), torch.rand(3, generator=g)
    noisy = latents + model.config.noise_sigma * torch.randn(latents.shape, generator=g).double()
    _, target = model.score_target(noisy, model.caption_tokens(captions))
    model.zero_grad()
    torch.nn.functional.mse_loss(model.denoiser(noisy), target).backward()
    for name, p in model.denoiser.named_parameters():
        assert torch.allclose(got[name], p.grad, rtol=1e-6, atol=1e-10), name


def test_patch_tokens_round_trip():
    from generator.starflow import latents_to_tokens, tokens_to_latents

    latents = torch.arange(2 * 3 * 2 * 4 * 6, dtype=torch.float32).view(2, 3, 2, 4, 6)
    tokens = latents_to_tokens(latents, 2)
    assert tokens.shape == (2, 2, 6, 12)
    # token 1 of frame 0 is the patch at rows 0-1, columns 2-3, all channels
    assert torch.equal(tokens[0, 0, 1].view(2, 2, 3).permute(2, 0, 1), latents[0, :, 0, 0:2, 2:4])
    assert torch.equal(tokens_to_latents(tokens, 2, 3, 2), latents)


def test_denoiser_window_has_one_frame_of_lookahead():
    mask = frame_window_mask(num_frames=5, tokens_per_frame=2, window=2, lookahead=1)
    frame_allowed = mask[::2, ::2]  # one token per frame
    expected = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(frame_allowed, expected)
    torch.manual_seed(0)
    model = StarFlowV(tiny_config())
    torch.nn.init.normal_(model.denoiser.head.weight, std=0.5)
    x = torch.randn(1, 4, 4, 2)
    out = model.denoiser(x)
    later = x.clone()
    later[:, 3] += 1.0
    changed = model.denoiser(later)
    assert torch.equal(out[:, :2], changed[:, :2])  # frame 3 is more than one frame ahead of frames 0-1
    assert (out[:, 2] - changed[:, 2]).abs().max() > 1e-4  # but within frame 2's look-ahead


def test_text_encoder_vocabulary():
    encoder = TextEncoder(TextConfig(vocab=build_vocab(CAPTIONS), max_len=12, width=8, depth=1, heads=2))
    known, unknown = encoder.tokenize(["a red circle", "a purple circle"])
    assert (known > 1).sum() == 5  # start, a, red, circle, end
    assert (unknown == 1).sum() == 1  # 'purple' never occurred in training
    empty = encoder.tokenize([""])[0]
    assert (empty > 0).sum() == 2  # start and end only: the unconditional caption


def _train(seed: int, steps: int, tmp_path=None, resume=False, checkpoint_every=1000):
    torch.manual_seed(seed)
    model = StarFlowV(tiny_config())
    val = [next(structured_batches(99, batch=16))]
    config = TrainConfig(steps=steps, lr=3e-3, denoiser_lr=3e-3, warmup_steps=10, val_every=max(steps, 1), ema_decay=0.9,
                         checkpoint_every=checkpoint_every, log_every=10, seed=seed)
    ckpt = tmp_path / "ckpt.pt" if tmp_path else None
    result = train_model(model, structured_batches(seed), val, config, checkpoint=ckpt, resume=resume, progress=False)
    return model, result


def test_training_lowers_validation_bits_per_dim():
    from generator.train import validate

    torch.manual_seed(0)
    untrained = StarFlowV(tiny_config())
    val = [next(structured_batches(99, batch=16))]
    before = validate(untrained, val)
    model, result = _train(seed=0, steps=150)
    after = result["val_bits_per_dim"]
    assert after < before - 0.5, (before, after)
    assert result["history"][-1]["denoiser_loss"] < result["history"][0]["denoiser_loss"]


def test_training_is_deterministic_and_resumes(tmp_path):
    a, _ = _train(seed=3, steps=8)
    b, _ = _train(seed=3, steps=8)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    _, first = _train(seed=3, steps=4, tmp_path=tmp_path, checkpoint_every=4)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert state["step"] == 4
    assert 0 < state["extra"]["train_seconds"] <= first["train_seconds"]
    # the clock goes on across a resume: what the checkpoint says was spent is part of the total
    state["extra"]["train_seconds"] = 1000.0
    torch.save(state, tmp_path / "ckpt.pt")
    resumed, result = _train(seed=3, steps=8, tmp_path=tmp_path, resume=True, checkpoint_every=4)
    assert result["steps"] == 8 and torch.load(tmp_path / "ckpt.pt", weights_only=True)["step"] == 8
    assert 1000.0 < result["train_seconds"] < 1000.0 + first["train_seconds"] * 20
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["extra"]["train_seconds"] > 1000.0
    assert first["timed_steps"] == 4 and result["timed_steps"] == 8
    # a training state saved without its seconds: the total covers only the steps timed after it
    del state["extra"]["train_seconds"]
    torch.save(state, tmp_path / "ckpt.pt")
    _, partial = _train(seed=3, steps=8, tmp_path=tmp_path, resume=True, checkpoint_every=4)
    assert partial["timed_steps"] == 4 and partial["train_seconds"] < 1000.0
    # 4 steps + resume for 4 is the straight 8-step run: same data, same noise, same EMA
    for (name, pa), pb in zip(a.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(pa, pb, atol=1e-6), name
    loaded, _ = load_model(tmp_path / "ckpt.pt")
    for (name, pa), pb in zip(resumed.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_resuming_a_state_made_from_other_inputs_is_refused(tmp_path):
    from generator.train import ResumeError

    def run(identity, steps, resume, model_config=None):
        torch.manual_seed(0)
        config = TrainConfig(steps=steps, lr=3e-3, denoiser_lr=3e-3, warmup_steps=1, val_every=100, checkpoint_every=2,
                             log_every=10, seed=0)
        model = StarFlowV(model_config or tiny_config())
        return train_model(model, structured_batches(0), [], config, checkpoint=tmp_path / "c.pt",
                           resume=resume, progress=False, identity=identity)

    run({"teacher_sha256": "aaa"}, 2, resume=False)
    with pytest.raises(ResumeError, match="aaa"):
        run({"teacher_sha256": "bbb"}, 4, resume=True)
    with pytest.raises(ResumeError, match=r"autoencoder_sha256 None \(now 'ccc'\)"):  # a key the saved state lacks
        run({"teacher_sha256": "aaa", "autoencoder_sha256": "ccc"}, 4, resume=True)
    other = tiny_config()
    other.noise_sigma = 0.25
    with pytest.raises(ResumeError, match="another model"):
        run({"teacher_sha256": "aaa"}, 4, resume=True, model_config=other)
    assert run({"teacher_sha256": "aaa"}, 4, resume=True)["steps"] == 4
    (tmp_path / "c.pt").write_bytes(b"not a torch file")
    with pytest.raises(ResumeError):
        run({"teacher_sha256": "aaa"}, 4, resume=True)
    # a state saved before identities were recorded is resumed, and keeps no identity after it
    run({"teacher_sha256": "aaa"}, 2, resume=False)
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    del state["extra"]["identity"]
    torch.save(state, tmp_path / "c.pt")
    with pytest.warns(UserWarning, match="records no inputs"):
        assert run({"teacher_sha256": "bbb"}, 4, resume=True)["steps"] == 4
    assert torch.load(tmp_path / "c.pt", weights_only=True)["extra"]["identity"] is None
    torch.save({"weights": {}}, tmp_path / "c.pt")  # an exported model, not a training state
    with pytest.raises(ResumeError, match="not a training checkpoint"):
        run({"teacher_sha256": "aaa"}, 4, resume=True)


# ---------------------------------------------------------------- data parallel

def _flow_grads(model: StarFlowV, module, noisy: torch.Tensor, captions: list[str]) -> dict[str, torch.Tensor]:
    model.zero_grad()
    nll, _ = model.score_target(noisy, model.caption_tokens(captions), module)
    (nll.mean() / noisy[0].numel()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _ddp_worker(rank: int, world: int, port: int, noisy: torch.Tensor, captions: list[str], state: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model = StarFlowV(tiny_config()).double()
    model.load_state_dict(state)
    ddp = torch.nn.parallel.DistributedDataParallel(model.prior)
    share = noisy.shape[0] // world
    grads = _flow_grads(model, ddp, noisy[rank * share:(rank + 1) * share], captions[rank * share:(rank + 1) * share])
    if rank == 0:
        torch.save(grads, out)
    dist.destroy_process_group()


def test_two_process_ddp_gradients_match_single_process(tmp_path):
    torch.manual_seed(0)
    model = StarFlowV(tiny_config()).double()
    for p in model.flow.parameters():
        torch.nn.init.normal_(p, std=0.1)
    noisy = torch.randn(4, 3, 4, 2, dtype=torch.float64)
    captions = [CAPTIONS[i % 3] for i in range(4)]
    single = _flow_grads(model, model, noisy, captions)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "grads.pt")
    mp.spawn(_ddp_worker, args=(2, port, noisy, captions, model.state_dict(), out), nprocs=2, join=True)
    parallel = torch.load(out, weights_only=True)
    assert set(parallel) == set(single)
    for name in single:
        assert torch.allclose(parallel[name], single[name], atol=1e-10, rtol=1e-8), name


def test_sliding_window_extends_past_the_training_length():
    torch.manual_seed(0)
    model = StarFlowV(tiny_config()).double().eval()  # max_frames = 4
    for p in model.flow.parameters():
        torch.nn.init.normal_(p, std=0.05)
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    one_window = model.sample(CAPTIONS[:1], 4, generator=g(), denoise=False)
    long = model.sample(CAPTIONS[:1], 11, generator=g(), denoise=False)
    assert long.shape[1] == 11 and torch.isfinite(long).all()
    assert torch.allclose(long[:, :4], one_window, atol=1e-9)  # the first window is an ordinary clip
    # after the first window, each window restarts with the last 2 frames re-read as context:
    # replay the noise draws (4 frames, then 2 new per window, then the last 1)
    gen = g()
    draws = [torch.randn((1, n, 4, 2), generator=gen, dtype=torch.float64) for n in (4, 2, 2, 2, 1)]
    text = model.text_prefix(model.caption_tokens(CAPTIONS[:1]))
    frames = model.flow.inverse(draws[0], text)
    for z in draws[1:]:
        frames = torch.cat([frames, model.flow.inverse(z, text, given=frames[:, -2:])], dim=1)
    assert torch.allclose(long, frames, atol=1e-9)


@pytest.mark.parametrize("given, context, jacobi", [(1, None, False), (3, 1, False), (1, 3, True)])
def test_sliding_window_from_given_frames_equals_reading_each_window_afresh(given, context, jacobi):
    """Windows keep the deep-level tokens of their context and invert the shallow blocks once at
    the end: the same clip as re-reading each window's context frames forward through the flow."""
    from generator.samplers import JacobiInverter, JacobiOptions

    torch.manual_seed(0)
    model = StarFlowV(tiny_config()).double().eval()  # max_frames = 4
    for p in model.flow.parameters():
        torch.nn.init.normal_(p, std=0.05)
    condition = torch.randn(1, given, 4, 2, dtype=torch.float64)
    invert = JacobiInverter(JacobiOptions(block_size=2, later_block_factor=1, tolerance=1e-14)) if jacobi else None
    clip = model.sample_noisy(CAPTIONS[:1], 10, generator=torch.Generator().manual_seed(7), condition=condition,
                              context_frames=context, invert=invert)
    gen = torch.Generator().manual_seed(7)
    frames = condition + model.config.noise_sigma * torch.randn((1, given, 4, 2), generator=gen, dtype=torch.float64)
    text = model.text_prefix(model.caption_tokens(CAPTIONS[:1]))
    keep = context or 2
    while frames.shape[1] < 10:
        read = frames[:, -(keep if frames.shape[1] > given else given):]
        z = torch.randn((1, min(4 - read.shape[1], 10 - frames.shape[1]), 4, 2), generator=gen, dtype=torch.float64)
        frames = torch.cat([frames, model.flow.inverse(z, text, given=read)], dim=1)
    assert clip.shape == frames.shape == (1, 10, 4, 2)
    assert torch.equal(clip[:, :given], frames[:, :given])  # the given frames come back as they went in
    assert torch.allclose(clip, frames, atol=1e-8)


def test_chunked_denoising_equals_one_pass_where_windows_agree():
    torch.manual_seed(0)
    model = StarFlowV(tiny_config()).double().eval()
    torch.nn.init.normal_(model.denoiser.head.weight, std=0.3)
    noisy = torch.randn(1, 9, 4, 2, dtype=torch.float64)
    out = model.denoise(noisy)
    assert out.shape == noisy.shape
    # chunk [0, 4) keeps frames 0-2: they equal a pass over frames 0-3 alone
    assert torch.allclose(out[:, :3], model.denoise(noisy[:, :4])[:, :3])
    # chunk [2, 6) keeps frames 3-4 (frame 2 is context, frame 5 look-ahead)
    assert torch.allclose(out[:, 3:5], model.denoise(noisy[:, 2:6])[:, 1:3])
    # the last chunk keeps through the end
    assert torch.allclose(out[:, -1:], model.denoise(noisy[:, 6:9])[:, -1:])


@pytest.mark.parametrize("name, value", [("starflow-v-shapes64", "val_bits_per_dim"), ("ar-diffusion-shapes64", "val_loss")])
def test_16k_checkpoints_are_the_shipped_recipes_trained_twice_as_long(name, value):
    """The README's claim for the -16k files: the same recipe, data, seed and schedule shape as the
    shipped model, 16,000 steps instead of 8,000, and a lower validation value at the end."""
    from generator import checkpoint_path
    from generator.train import read_model_state

    shipped, longer = (read_model_state(checkpoint_path(n))["info"] for n in (name, f"{name}-16k"))
    # the 8,000-step flow's recipe predates the model and diffusion fields (starflow, {} then and now)
    assert {k: longer["recipe"][k] for k in shipped["recipe"]} == shipped["recipe"]
    assert longer["recipe"]["model"] == shipped["recipe"].get("model", "starflow") and longer["recipe"]["diffusion"] == {}
    assert longer["world_size"] == shipped["world_size"] == 1
    assert longer["autoencoder_sha256"] == shipped["autoencoder_sha256"]
    assert {k: v for k, v in longer["train_config"].items() if k != "steps"} == \
           {k: v for k, v in shipped["train_config"].items() if k != "steps"}
    assert (shipped["steps"], longer["steps"]) == (8000, 16000) and longer["timed_steps"] == 16000
    assert longer[value] < shipped[value] - 0.02
