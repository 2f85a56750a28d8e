"""STARFlow-V: text encoder + global-local flow + causal denoiser, over standardised latents.

The model works on latent token grids ``(B, F, S, D)``: F latent frames of S = h*w tokens, each
token one latent pixel of D channels. The autoencoder that maps videos to these latents is a
separate, frozen module (``generator.autoencoder``); the pipeline joins the two.

Training (``training_step``): latents get noise ``sigma_n * eps``; the flow's exact NLL of the
noisy latents is the loss (per dimension); the gradient of that NLL with respect to the noisy
input, detached and scaled by ``sigma_n``, is the denoiser's regression target.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generator.denoiser import CausalDenoiser, DenoiserConfig
from generator.flow import BlockInverter, FlowConfig, GlobalLocalFlow, gaussian_nll
from generator.text import TextConfig, TextEncoder, caption_tokens


@dataclass
class StarFlowConfig:
    flow: FlowConfig = field(default_factory=FlowConfig)
    text: TextConfig = field(default_factory=TextConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    patch_size: int = 2               # a token is a patch_size^2 patch of latent pixels
    noise_sigma: float = 0.5          # noise augmentation on standardised latents
    caption_dropout: float = 0.1      # trains the unconditional model for guidance
    first_frame_dropout: float = 0.25  # clips that start mid-video (sliding windows need them)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StarFlowConfig":
        return cls(flow=FlowConfig(**data["flow"]), text=TextConfig(**data["text"]),
                   denoiser=DenoiserConfig(**data["denoiser"]),
                   **{k: v for k, v in data.items() if k not in ("flow", "text", "denoiser")})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def latents_to_tokens(latents: Tensor, patch: int) -> Tensor:
    """Autoencoder latents (B, C, F, h, w) -> tokens (B, F, (h/p)(w/p), p*p*C), raster order."""
    b, c, f, h, w = latents.shape
    x = latents.view(b, c, f, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 3, 5, 4, 6, 1).reshape(b, f, (h // patch) * (w // patch), patch * patch * c)


def tokens_to_latents(tokens: Tensor, grid_height: int, grid_width: int, patch: int) -> Tensor:
    """Inverse of :func:`latents_to_tokens`."""
    b, f, _, d = tokens.shape
    c = d // (patch * patch)
    x = tokens.view(b, f, grid_height, grid_width, patch, patch, c)
    return x.permute(0, 6, 1, 2, 4, 3, 5).reshape(b, c, f, grid_height * patch, grid_width * patch)


class TextConditionedFlow(nn.Module):
    """Text encoder + global-local flow: the exact likelihood of latent clips given captions.

    Kept apart from the denoiser so that data-parallel training can wrap each in its own
    DistributedDataParallel (a wrapper expects gradients for every parameter it holds).
    """

    def __init__(self, config: StarFlowConfig) -> None:
        super().__init__()
        self.text_encoder = TextEncoder(config.text)
        self.text_proj = nn.Linear(config.text.width, config.flow.deep_width)
        self.flow = GlobalLocalFlow(config.flow)

    def text_prefix(self, tokens: Tensor) -> Tensor:
        return self.text_proj(self.text_encoder(tokens.to(self.text_proj.weight.device)))

    def forward(self, noisy: Tensor, tokens: Tensor) -> Tensor:
        """Exact NLL in nats of each latent clip (B,), given caption tokens."""
        z, logdet = self.flow(noisy, self.text_prefix(tokens))
        return gaussian_nll(z, logdet)


class StarFlowV(nn.Module):
    kind = "starflow"
    validation_name = "val_bits_per_dim"

    def __init__(self, config: StarFlowConfig) -> None:
        super().__init__()
        self.config = config
        self.prior = TextConditionedFlow(config)
        self.denoiser = CausalDenoiser(config.denoiser, config.flow.token_dim, config.flow.tokens_per_frame,
                                       config.flow.max_frames)

    @property
    def flow(self) -> GlobalLocalFlow:
        return self.prior.flow

    @property
    def device(self) -> torch.device:
        return self.prior.text_proj.weight.device

    @property
    def max_latent_frames(self) -> int:
        """Latent frames the model has positions for (its training window)."""
        return self.config.flow.max_frames

    @property
    def latent_height(self) -> int:
        return self.config.flow.frame_height * self.config.patch_size

    # ------------------------------------------------------------ conditioning

    def caption_tokens(self, captions: list[str], drop: Tensor | None = None) -> Tensor:
        """Token ids; rows where ``drop`` is True get the empty caption (the unconditional model)."""
        return caption_tokens(self.prior.text_encoder, captions, drop).to(self.device)

    def text_prefix(self, tokens: Tensor) -> Tensor:
        return self.prior.text_prefix(tokens)

    def tokens_from_latents(self, latents: Tensor) -> Tensor:
        return latents_to_tokens(latents, self.config.patch_size)

    def latents_from_tokens(self, tokens: Tensor) -> Tensor:
        f = self.config.flow
        return tokens_to_latents(tokens, f.frame_height, f.frame_width, self.config.patch_size)

    # ------------------------------------------------------------ likelihood

    def forward(self, noisy: Tensor, tokens: Tensor) -> Tensor:
        """Exact NLL in nats of each noisy latent clip (B,), given caption tokens."""
        return self.prior(noisy, tokens)

    def bits_per_dim(self, latents: Tensor, captions: list[str], generator: torch.Generator | None = None) -> Tensor:
        """Exact bits per latent dimension of the noise-augmented latents ``x + sigma_n eps`` (B,)."""
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        noisy = latents + self.config.noise_sigma * noise
        return self(noisy, self.caption_tokens(captions)) / (latents[0].numel() * math.log(2))

    # ------------------------------------------------------------ training

    def parts(self) -> dict[str, nn.Module]:
        """What training optimises separately: the flow with its text encoder, and the denoiser."""
        return {"flow": self.prior, "denoiser": self.denoiser}

    def validation_values(self, latents: Tensor, captions: list[str], generator: torch.Generator) -> Tensor:
        return self.bits_per_dim(latents, captions, generator)

    def training_step(self, latents: Tensor, captions: list[str], generator: torch.Generator,
                      modules: dict[str, nn.Module] | None = None) -> dict[str, float]:
        """Backpropagate the flow's NLL per dimension and the flow-score-matching denoiser loss.

        One backward pass through the flow gives both its parameter gradients and the input
        gradient: clip i's NLL depends on clip i alone, so the gradient of the batch mean with
        respect to clip i's input is dNLL_i/dx~_i / (B D). The denoiser regresses
        ``sigma_n * dNLL_i/dx~_i`` (detached), in its own backward pass.
        ``modules`` may hold DistributedDataParallel wrappers of the ``parts()``; they default
        to the bare modules.
        """
        modules = modules or {}
        c = self.config
        b = latents.shape[0]
        if latents.shape[1] > 1 and torch.rand((), generator=generator) < c.first_frame_dropout:
            latents = latents[:, 1:]
        drop = torch.rand(b, generator=generator) < c.caption_dropout
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        noisy = (latents + c.noise_sigma * noise).requires_grad_(True)
        dims = latents[0].numel()
        nll = modules.get("flow", self.prior)(noisy, self.caption_tokens(captions, drop))
        flow_loss = nll.mean() / dims
        flow_loss.backward()
        target = (c.noise_sigma * noisy.grad * (b * dims)).detach()
        denoiser_loss = F.mse_loss(modules.get("denoiser", self.denoiser)(noisy.detach()), target)
        denoiser_loss.backward()
        return {"flow_loss": flow_loss.item(), "denoiser_loss": denoiser_loss.item(),
                "train_bits_per_dim": nll.detach().mean().item() / (dims * math.log(2))}

    def score_target(self, noisy: Tensor, tokens: Tensor, flow_module: nn.Module | None = None) -> tuple[Tensor, Tensor]:
        """Each clip's NLL (B,), differentiable for the flow's loss, and the denoiser's target
        ``sigma_n * d NLL_i / d x~_i`` (detached: flow score matching never trains the flow)."""
        noisy = noisy.detach().requires_grad_(True)
        nll = (flow_module or self.prior)(noisy, tokens)
        (grad,) = torch.autograd.grad(nll.sum(), noisy, retain_graph=True)
        return nll, (self.config.noise_sigma * grad).detach()

    # ------------------------------------------------------------ sampling (sequential reference)

    @torch.no_grad()
    def denoise(self, noisy: Tensor) -> Tensor:
        """One denoising step over any number of latent frames.

        Clips longer than the denoiser's positions go in overlapping chunks: a chunk's first
        frame only gives context and its last only look-ahead, so every kept frame sees one
        frame before it and the frame after it, as in training.
        """
        frames, window = noisy.shape[1], self.config.flow.max_frames
        if frames <= window:
            return noisy - self.config.noise_sigma * self.denoiser(noisy)
        if window < 3:
            raise ValueError("chunked denoising needs the denoiser to cover at least 3 latent frames")
        out = torch.empty_like(noisy)
        start = 0
        while True:
            end = min(start + window, frames)
            chunk = noisy[:, start:end] - self.config.noise_sigma * self.denoiser(noisy[:, start:end])
            keep_from = 0 if start == 0 else 1
            keep_to = end - start if end == frames else end - start - 1
            out[:, start + keep_from:start + keep_to] = chunk[:, keep_from:keep_to]
            if end == frames:
                return out
            start = end - 2

    @torch.no_grad()
    def sample(self, captions: list[str], num_frames: int, *, generator: torch.Generator | None = None,
               guidance: float = 0.0, denoise: bool = True, temperature: float = 1.0,
               condition: Tensor | None = None, invert: BlockInverter | None = None,
               context_frames: int | None = None) -> Tensor:
        """Latent tokens (B, num_frames, S, D) for each caption.

        ``condition`` (B, K, S, D) are clean latent tokens of given first frames (image- or
        video-to-video): they get the training noise, run forward to fill the caches, and are
        returned unchanged as the first K frames. ``invert`` picks the block inverter (default:
        exact sequential; ``generator.samplers.JacobiInverter`` for Jacobi iteration).
        """
        noisy = self.sample_noisy(captions, num_frames, generator=generator, guidance=guidance,
                                  temperature=temperature, condition=condition, invert=invert,
                                  context_frames=context_frames)
        return self.finish(noisy, condition, denoise=denoise)

    @torch.no_grad()
    def sample_noisy(self, captions: list[str], num_frames: int, *, generator: torch.Generator | None = None,
                     guidance: float = 0.0, temperature: float = 1.0, condition: Tensor | None = None,
                     invert: BlockInverter | None = None, context_frames: int | None = None) -> Tensor:
        """The flow's own samples: noise-augmented latent tokens (B, num_frames, S, D), given
        frames included (with their noise), before the denoiser.

        Clips longer than the deep block's ``max_frames`` are made by a sliding window: after
        each window the caches are dropped, the last ``context_frames`` generated frames
        (default: half the window) are read afresh as given frames at positions 0..C-1, and the
        window continues. The deep block's memory stays that of one window; the kept tokens and
        time grow linearly.

        Windows only run the deep block: a generated frame's deep-level tokens (the shallow stack's
        output) are kept, so the next window reads them as they are instead of running the shallow
        blocks forward over frames they just inverted, and the shallow blocks, which see one frame
        at a time, invert every generated frame in one batch at the end (token by token: see
        :meth:`GlobalLocalFlow.shallow_inverse`).
        """
        f = self.config.flow
        k = 0 if condition is None else condition.shape[1]
        if not 0 <= k < num_frames:
            raise ValueError(f"{k} given latent frames leave nothing to generate in {num_frames}")
        window = f.max_frames
        context = context_frames if context_frames is not None else max(1, window // 2)
        if not 1 <= context < window:
            raise ValueError(f"context_frames must be in 1..{window - 1}, got {context}")
        if k >= window:
            raise ValueError(f"{k} given latent frames fill the {window}-frame window; give at most {window - 1}")
        dtype = self.flow.frame_pos.dtype
        noise = lambda *shape: torch.randn(shape, generator=generator, dtype=dtype).to(self.device)  # noqa: E731
        text = self.text_prefix(self.caption_tokens(captions))
        uncond = self.text_prefix(self.caption_tokens([""] * len(captions))) if guidance else None
        given_noisy = None if condition is None else condition.to(self.device) + self.config.noise_sigma * noise(*condition.shape)
        deep = None if given_noisy is None else self.flow.shallow_forward(given_noisy)[0]
        while (have := 0 if deep is None else deep.shape[1]) < num_frames:
            given = None if deep is None else deep[:, max(0, have - (context if have > k else k)):]
            start = 0 if given is None else given.shape[1]
            new = min(window - start, num_frames - have)
            z = noise(len(captions), new, f.tokens_per_frame, f.token_dim) * temperature
            generated = self.flow.deep_inverse(z, text, given=given, uncond_text=uncond, guidance=guidance, invert=invert)
            deep = generated if deep is None else torch.cat([deep, generated], dim=1)
        frames = self.flow.shallow_inverse(deep[:, k:])
        return frames if given_noisy is None else torch.cat([given_noisy, frames], dim=1)

    @torch.no_grad()
    def finish(self, noisy: Tensor, condition: Tensor | None = None, *, denoise: bool = True) -> Tensor:
        """The clean clip from :meth:`sample_noisy`'s output: one denoising step, and the given
        frames put back exactly."""
        clean = self.denoise(noisy) if denoise else noisy
        return clean if condition is None else torch.cat([condition.to(clean), clean[:, condition.shape[1]:]], dim=1)

    def num_parameters(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return {"text": count(self.prior.text_encoder) + count(self.prior.text_proj), "flow": count(self.flow),
                "denoiser": count(self.denoiser), "total": count(self)}
