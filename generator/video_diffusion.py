"""Latent video diffusion baselines over the same tokens, text encoder and autoencoder as the flow.

One transformer, two attention patterns:

- ``causal=True`` — autoregressive chunked diffusion (the CausVid / Self-Forcing family): tokens of
  latent frame f attend to the text, to every token of frames < f and to their own frame. Trained
  with a noise level per frame (diffusion forcing), so a frame can be denoised next to clean
  context frames; sampled one frame at a time with a KV cache of the clean frames.
- ``causal=False`` — bidirectional clip diffusion: full attention over the clip, one noise level
  per clip, the per-clip quality ceiling; long clips by extension conditioned on the last frames.

Both learn the rectified-flow velocity (``generator.diffusion``). Some training clips start with
clean frames (noise level 0, no loss): image-to-video, continuation and the causal model's context
are then in distribution. Captions are dropped 10% of the time for classifier-free guidance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn

from generator import diffusion as schedule
from generator.starflow import latents_to_tokens, tokens_to_latents
from generator.text import TextConfig, TextEncoder, caption_tokens
from generator.transformer import KVCache, Transformer


@dataclass
class DiffusionConfig:
    causal: bool = True
    token_dim: int = 32               # defaults: the shapes-world model, the size of the flow's deep block
    frame_height: int = 4
    frame_width: int = 4
    max_frames: int = 5               # latent frames with positions: the training length
    width: int = 128
    depth: int = 4
    heads: int = 4
    text: TextConfig = field(default_factory=TextConfig)
    patch_size: int = 2
    noise_sigma: float = 0.5          # the flow's noise augmentation: likelihood bounds are for x + sigma eps
    caption_dropout: float = 0.1
    clean_prefix: float = 0.25        # share of training clips whose first frames are given clean

    @property
    def tokens_per_frame(self) -> int:
        return self.frame_height * self.frame_width

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DiffusionConfig":
        return cls(text=TextConfig(**data["text"]), **{k: v for k, v in data.items() if k != "text"})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def timestep_features(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of t in [0, 1] (scaled to a 1000-step grid): (...,) -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = 1000.0 * t.float()[..., None] * freqs
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class VideoDiffusion(nn.Module):
    kind = "diffusion"
    validation_name = "val_loss"

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.text_encoder = TextEncoder(c.text)
        self.text_proj = nn.Linear(c.text.width, c.width)
        self.embed = nn.Linear(c.token_dim, c.width)
        self.spatial_pos = nn.Parameter(torch.randn(c.tokens_per_frame, c.width) * 0.02)
        self.frame_pos = nn.Parameter(torch.randn(c.max_frames, c.width) * 0.02)
        self.time_embed = nn.Sequential(nn.Linear(c.width, c.width), nn.SiLU(), nn.Linear(c.width, c.width))
        self.transformer = Transformer(c.width, c.depth, c.heads)
        self.head = nn.Linear(c.width, c.token_dim)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    @property
    def max_latent_frames(self) -> int:
        """Latent frames the model has positions for (its training window)."""
        return self.config.max_frames

    @property
    def latent_height(self) -> int:
        return self.config.frame_height * self.config.patch_size

    # ------------------------------------------------------------ tokens and conditioning

    def tokens_from_latents(self, latents: Tensor) -> Tensor:
        return latents_to_tokens(latents, self.config.patch_size)

    def latents_from_tokens(self, tokens: Tensor) -> Tensor:
        c = self.config
        return tokens_to_latents(tokens, c.frame_height, c.frame_width, c.patch_size)

    def caption_tokens(self, captions: list[str], drop: Tensor | None = None) -> Tensor:
        return caption_tokens(self.text_encoder, captions, drop).to(self.device)

    def text_prefix(self, tokens: Tensor) -> Tensor:
        return self.text_proj(self.text_encoder(tokens.to(self.device)))

    def frame_inputs(self, z: Tensor, t: Tensor, first_frame: int = 0) -> Tensor:
        """Noisy tokens (B, F, S, D) at noise levels t (B, F) -> transformer inputs (B, F*S, W)."""
        b, f, s, _ = z.shape
        if first_frame + f > self.config.max_frames:
            raise ValueError(f"the model has positions for {self.config.max_frames} latent frames; "
                             f"asked for frames {first_frame}..{first_frame + f - 1}")
        time = self.time_embed(timestep_features(t, self.config.width).to(z.dtype))
        h = self.embed(z) + self.spatial_pos + self.frame_pos[first_frame:first_frame + f, None] + time[:, :, None]
        return h.reshape(b, f * s, -1)

    def attention_mask(self, prefix_len: int, frames: int) -> Tensor:
        """Who may attend to whom (True = allowed): the text sees itself; frame tokens see the
        text and frames up to their own (causal) or every frame (bidirectional)."""
        s = self.config.tokens_per_frame
        n = prefix_len + frames * s
        frame_of = torch.cat([torch.full((prefix_len,), -1), torch.arange(frames).repeat_interleave(s)]).to(self.device)
        if self.config.causal:
            allowed = frame_of[None, :] <= frame_of[:, None]
        else:
            allowed = torch.ones(n, n, dtype=torch.bool, device=self.device)
        allowed[:prefix_len, prefix_len:] = False
        return allowed

    def velocity(self, z: Tensor, t: Tensor, prefix: Tensor, first_frame: int = 0) -> Tensor:
        """One full pass: the predicted velocity of every frame (B, F, S, D) at noise levels t (B, F)."""
        b, f, s, d = z.shape
        p = prefix.shape[1]
        inputs = torch.cat([prefix, self.frame_inputs(z, t, first_frame)], dim=1)
        hidden = self.transformer(inputs, mask=self.attention_mask(p, f))
        return self.head(hidden[:, p:]).view(b, f, s, d)

    def forward(self, z: Tensor, t: Tensor, tokens: Tensor) -> Tensor:
        return self.velocity(z, t, self.text_prefix(tokens))

    # ------------------------------------------------------------ training

    def parts(self) -> dict[str, nn.Module]:
        return {"model": self}

    def _training_noise(self, latents: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Noise levels (B, F) — logit-normal, per frame (causal) or per clip — with a clean
        prefix of 1..F-1 frames for a share of the clips, and the noise itself."""
        b, f = latents.shape[:2]
        t = torch.sigmoid(torch.randn(b, f if self.config.causal else 1, generator=generator)).expand(b, f).clone()
        if f > 1:
            given = torch.rand(b, generator=generator) < self.config.clean_prefix
            prefix = torch.randint(1, f, (b,), generator=generator)
            t[given[:, None] & (torch.arange(f)[None] < prefix[:, None])] = 0.0
        return t.to(latents), torch.randn(latents.shape, generator=generator).to(latents)

    def _loss(self, latents: Tensor, tokens: Tensor, generator: torch.Generator, module: nn.Module | None = None) -> Tensor:
        """Mean squared velocity error per clip over its noisy frames (B,)."""
        t, noise = self._training_noise(latents, generator)
        z = schedule.add_noise(latents, noise, t[..., None, None])
        predicted = (module or self)(z, t, tokens)
        error = (predicted - schedule.velocity_target(latents, noise)).pow(2).mean(dim=(2, 3))
        weight = (t > 0).to(error)
        return (error * weight).sum(1) / weight.sum(1).clamp_min(1)

    def training_step(self, latents: Tensor, captions: list[str], generator: torch.Generator,
                      modules: dict[str, nn.Module] | None = None) -> dict[str, float]:
        drop = torch.rand(latents.shape[0], generator=generator) < self.config.caption_dropout
        loss = self._loss(latents, self.caption_tokens(captions, drop), generator, (modules or {}).get("model")).mean()
        loss.backward()
        return {"loss": loss.item()}

    @torch.no_grad()
    def validation_values(self, latents: Tensor, captions: list[str], generator: torch.Generator) -> Tensor:
        return self._loss(latents, self.caption_tokens(captions), generator)

    # ------------------------------------------------------------ likelihood (a bound)

    @torch.no_grad()
    def bits_per_dim(self, latents: Tensor, captions: list[str], generator: torch.Generator | None = None,
                     samples: int = 16) -> Tensor:
        """An upper bound on the bits per latent dimension of ``latents + sigma_n eps`` (B,) —
        the density the flow reports exactly. Causal: the chain rule over frames, each frame
        bounded given the earlier noise-augmented frames (fed at their own noise level);
        bidirectional: one bound over the whole clip."""
        sigma_n = self.config.noise_sigma
        latents = latents.to(self.device)
        y = latents + sigma_n * torch.randn(latents.shape, generator=generator).to(latents)
        prefix = self.text_prefix(self.caption_tokens(captions))
        b, f = y.shape[:2]
        if not self.config.causal:
            def clip_estimate(z: Tensor, t: Tensor) -> Tensor:
                tt = t[:, None].expand(b, f)
                return schedule.predict_clean(z, self.velocity(z, tt, prefix), t.view(b, 1, 1, 1))
            nats = schedule.likelihood_bound(y, clip_estimate, sigma_n, generator, samples)
        else:
            t_context = sigma_n / (1 + sigma_n)  # z_t0 = (1 - t0) y: noise-augmented frames as diffusion inputs
            nats = torch.zeros(b, dtype=y.dtype, device=y.device)
            for k in range(f):
                context = (1 - t_context) * y[:, :k]

                def frame_estimate(z: Tensor, t: Tensor, context: Tensor = context, k: int = k) -> Tensor:
                    levels = torch.cat([torch.full((b, k), t_context).to(t), t[:, None]], dim=1)
                    v = self.velocity(torch.cat([context, z], dim=1), levels, prefix)[:, k:]
                    return schedule.predict_clean(z, v, t.view(b, 1, 1, 1))
                nats += schedule.likelihood_bound(y[:, k:k + 1], frame_estimate, sigma_n, generator, samples)
        return nats / (y[0].numel() * math.log(2))

    # ------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(self, captions: list[str], num_frames: int, *, generator: torch.Generator | None = None,
               timesteps: list[float], few_step: bool, guidance: float = 0.0, condition: Tensor | None = None,
               context_frames: int | None = None, sink: bool = False, use_cache: bool = True) -> Tensor:
        """Clean latent tokens (B, num_frames, S, D); ``condition`` (B, K, S, D) are given first frames.

        ``timesteps`` run from 1 to 0; ``few_step`` picks the re-noising update (else Euler).
        Clips longer than ``max_frames`` continue in windows that re-read the last
        ``context_frames`` frames (default: half the window); ``sink`` (causal only) keeps the
        clip's first frame at the front of every window as an attention sink. ``use_cache=False``
        recomputes the context each step (the reference the KV-cached sampler is checked against).
        """
        c = self.config
        k = 0 if condition is None else condition.shape[1]
        window = c.max_frames
        context = context_frames if context_frames is not None else max(1, window // 2)
        if not 1 <= context < window:
            raise ValueError(f"context_frames must be in 1..{window - 1}, got {context}")
        if not 0 <= k < min(num_frames, window):
            raise ValueError(f"{k} given latent frames: give fewer than {min(num_frames, window)}")
        if sink and not c.causal:
            raise ValueError("an attention sink needs the causal model")
        if sink and context < 2:
            raise ValueError("an attention sink needs context_frames >= 2 (the sink plus at least one recent frame)")
        b = len(captions)
        prefix = self.text_prefix(self.caption_tokens(captions))
        if guidance:
            prefix = torch.cat([prefix, self.text_prefix(self.caption_tokens([""] * b))])
        dtype = self.head.weight.dtype
        noise = lambda *shape: torch.randn(shape, generator=generator).to(self.device, dtype)  # noqa: E731
        frames = [] if condition is None else list(condition.to(self.device).unbind(1))

        def denoise(z: Tensor, predict: Callable[[Tensor, float], Tensor]) -> Tensor:
            for t, t_next in zip(timesteps[:-1], timesteps[1:]):
                v = predict(torch.cat([z, z]) if guidance else z, t)
                if guidance:
                    v = v[:b] + guidance * (v[:b] - v[b:])
                z = (schedule.few_step_update(z, v, t, t_next, noise(*z.shape)) if few_step
                     else schedule.euler_update(z, v, t, t_next))
            return z

        if c.causal:
            reader = CachedContext(self, prefix) if use_cache else FullContext(self, prefix)
            reader.reset(frames)
            while len(frames) < num_frames:
                if reader.position == window:
                    kept = frames[-context:] if not sink else [frames[0]] + frames[-(context - 1):]
                    reader.reset(kept)
                position = reader.position
                frames.append(denoise(noise(b, c.tokens_per_frame, c.token_dim),
                                      lambda z, t, position=position: reader.velocity(z, t, position)))
                reader.commit(frames[-1])
        else:
            while len(frames) < num_frames:
                given = frames[-context:] if len(frames) > k else frames
                new = min(window - len(given), num_frames - len(frames))
                given_tokens = torch.stack(given, 1) if given else noise(b, 0, c.tokens_per_frame, c.token_dim)
                g = given_tokens.shape[1]

                def predict(z: Tensor, t: float, given_tokens: Tensor = given_tokens, g: int = g) -> Tensor:
                    both = torch.cat([given_tokens, given_tokens]) if guidance else given_tokens
                    levels = torch.cat([torch.zeros(z.shape[0], g), torch.full((z.shape[0], z.shape[1]), t)], 1).to(z)
                    return self.velocity(torch.cat([both, z], 1), levels, prefix)[:, g:]
                frames += list(denoise(noise(b, new, c.tokens_per_frame, c.token_dim), predict).unbind(1))
        return torch.stack(frames[:num_frames], dim=1)

    def num_parameters(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        text = count(self.text_encoder) + count(self.text_proj)
        return {"text": text, "transformer": count(self) - text, "total": count(self)}


class CachedContext:
    """The causal sampler's context as a KV cache: the text, then each finished (clean) frame
    committed once; a frame being denoised attends to it without being stored."""

    def __init__(self, model: VideoDiffusion, prefix: Tensor) -> None:
        self.model, self.prefix, self.position = model, prefix, 0
        self.cache: KVCache | None = None

    def reset(self, frames: list[Tensor]) -> None:
        m = self.model
        self.cache = m.transformer.new_cache(self.prefix.shape[0], self.prefix.shape[1] + m.config.max_frames * m.config.tokens_per_frame, self.prefix)
        m.transformer(self.prefix, cache=self.cache, causal=False)
        self.position = 0
        for frame in frames:
            self.commit(frame)

    def _inputs(self, z: Tensor, t: float, position: int) -> Tensor:
        doubled = z if z.shape[0] == self.prefix.shape[0] else torch.cat([z, z])
        levels = torch.full((doubled.shape[0], 1), t, device=z.device, dtype=z.dtype)
        return self.model.frame_inputs(doubled[:, None], levels, position)

    def velocity(self, z: Tensor, t: float, position: int) -> Tensor:
        hidden = self.model.transformer(self._inputs(z, t, position), cache=self.cache, causal=False, commit=False)
        return self.model.head(hidden)

    def commit(self, frame: Tensor) -> None:
        self.model.transformer(self._inputs(frame, 0.0, self.position), cache=self.cache, causal=False, commit=True)
        self.position += 1


class FullContext:
    """The same context recomputed in one full masked pass per step (no cache)."""

    def __init__(self, model: VideoDiffusion, prefix: Tensor) -> None:
        self.model, self.prefix, self.frames, self.position = model, prefix, [], 0

    def reset(self, frames: list[Tensor]) -> None:
        self.frames, self.position = list(frames), len(frames)

    def velocity(self, z: Tensor, t: float, position: int) -> Tensor:
        n = self.prefix.shape[0]
        context = [f if f.shape[0] == n else torch.cat([f, f]) for f in self.frames]
        clip = torch.stack(context + [z], dim=1)
        levels = torch.zeros(n, clip.shape[1], device=z.device, dtype=z.dtype)
        levels[:, -1] = t
        return self.model.velocity(clip, levels, self.prefix)[:, -1]

    def commit(self, frame: Tensor) -> None:
        self.frames.append(frame)
        self.position += 1
