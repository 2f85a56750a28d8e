"""Text-to-video pipelines: a latent generator (STARFlow-V or a diffusion baseline) over a frozen
video autoencoder's latents.

Video frames are uint8 ``(T, H, W, 3)``. A clip of T frames is generated as ``1 + ceil((T-1)/4)``
latent frames (the autoencoder's causal 4x time compression), decoded to ``1 + 4k`` frames and
cut to T.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generator.autoencoder import VideoAutoencoder
from generator.samplers import JacobiInverter, JacobiOptions, PassCounter
from generator import diffusion as schedule
from generator.starflow import StarFlowV
from generator.video_diffusion import VideoDiffusion


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def clip_seed(seed: int, video: np.ndarray, caption: str) -> int:
    """A 63-bit seed from ``seed``, a clip's frames (shape, type and bytes) and its caption (BLAKE2b)."""
    video = np.ascontiguousarray(video)
    digest = hashlib.blake2b(digest_size=8, person=b"vbf-clip-seed")
    for part in (str(int(seed)).encode(), f"{video.shape} {video.dtype}".encode(), video.data, caption.encode()):
        digest.update(len(part).to_bytes(8, "little"))  # length-prefixed: no two inputs give the same stream
        digest.update(part)
    return int.from_bytes(digest.digest(), "little") >> 1


class LatentVideoPipeline:
    """What every latent generator shares: videos to tokens and back, conditioning frames,
    likelihood of held-out clips and the description recorded with runs."""

    def __init__(self, model: Any, autoencoder: VideoAutoencoder, *, name: str,
                 info: dict[str, Any] | None = None) -> None:
        self.model, self.autoencoder = model.eval(), autoencoder.eval()
        self.name, self._info = name, dict(info or {})
        self.last_sampling: dict[str, Any] = {}

    @property
    def frame_size(self) -> int:
        return self.model.latent_height * self.autoencoder.config.spatial_factor

    def latent_frames_for(self, num_frames: int) -> int:
        return 1 + math.ceil((num_frames - 1) / self.autoencoder.config.temporal_factor)

    # ------------------------------------------------------------ video <-> tokens

    def encode(self, videos: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (B, 1+4k, H, W, 3) -> standardised latent tokens (B, 1+k, tokens per frame, token dim)."""
        frames = torch.as_tensor(np.ascontiguousarray(videos))
        return self.model.tokens_from_latents(self.autoencoder.encode_frames(frames))

    def decode(self, tokens: torch.Tensor, num_frames: int) -> np.ndarray:
        """Latent tokens -> uint8 (B, num_frames, H, W, 3)."""
        return self.autoencoder.decode_to_frames(self.model.latents_from_tokens(tokens))[:, :num_frames].cpu().numpy()

    # ------------------------------------------------------------ generation and likelihood

    def condition_tokens(self, frames: np.ndarray) -> torch.Tensor:
        """Given first frames uint8 (B, K, H, W, 3) -> latent tokens of their first 1 + 4*floor((K-1)/4)
        frames (the autoencoder encodes whole groups of 4 after the first frame)."""
        usable = 1 + (frames.shape[1] - 1) // self.autoencoder.config.temporal_factor * self.autoencoder.config.temporal_factor
        return self.encode(frames[:, :usable])

    @torch.no_grad()
    def bits_per_dim(self, videos: np.ndarray, captions: list[str], seed: int = 0) -> list[float]:
        """Bits per latent dimension of each clip (noise-augmented standardised latent space):
        exact for the flow, an upper bound for diffusion (``likelihood_kind``). Clips must fit
        the model's window (``likelihood_frames``).

        Each clip's random draws (its noise augmentation; for diffusion, the bound's Monte Carlo
        noise levels and noise) come from its own generator, seeded by ``seed`` and the clip's
        content and caption (:func:`clip_seed`): a clip's value never depends on the batch it
        came in, and different clips get independent draws, so a mean over clips scored one at a
        time averages the Monte Carlo error away instead of repeating one draw for every clip."""
        tokens = self.encode(videos)
        values = [self.model.bits_per_dim(tokens[i:i + 1], [caption],
                                          torch.Generator().manual_seed(clip_seed(seed, video, caption)))
                  for i, (video, caption) in enumerate(zip(videos, captions))]
        return torch.cat(values).tolist()

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.model.kind, "parameters": self.model.num_parameters()["total"],
                "autoencoder_parameters": self.autoencoder.num_parameters(),
                "likelihood": self.likelihood_kind,
                "likelihood_space": f"latent (standardised, noise-augmented sigma={self.model.config.noise_sigma})",
                **self._info}

    likelihood_kind = "exact"

    def _clock(self) -> float:
        """Wall time after the device has finished queued work (CUDA runs asynchronously)."""
        device = next(self.model.parameters()).device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    @property
    def frame_causal(self) -> bool:
        """Whether a frame depends only on the frames before it (so the first can be shown early)."""
        return bool(getattr(self.model.config, "causal", True))

    def first_frame_clip(self, num_frames: int, given_frames: int = 0) -> int:
        """Frames of the shortest clip whose generation includes the first generated frame of a
        ``num_frames`` clip: for a frame-causal model, the given frames' latent frames plus one
        (sampled, denoised, decoded); for a bidirectional one, the whole first window, since every
        frame of a window waits for the last denoising step."""
        factor = self.autoencoder.config.temporal_factor
        if not self.frame_causal:
            return min(num_frames, self.likelihood_frames)
        given_latents = 0 if given_frames == 0 else 1 + (given_frames - 1) // factor
        return min(num_frames, 1 + factor * given_latents)

    @property
    def likelihood_frames(self) -> int:
        """The longest clip (video frames) the model scores in one piece: its training window."""
        return 1 + self.autoencoder.config.temporal_factor * (self.model.max_latent_frames - 1)


class StarFlowPipeline(LatentVideoPipeline):
    def __init__(self, model: StarFlowV, autoencoder: VideoAutoencoder, *, name: str = "starflow-v",
                 info: dict[str, Any] | None = None) -> None:
        super().__init__(model, autoencoder, name=name, info=info)

    @torch.no_grad()
    def sample(self, captions: list[str], num_frames: int, *, seed: int = 0, guidance: float = 0.0,
               denoise: bool = True, condition_frames: np.ndarray | None = None,
               jacobi: JacobiOptions | None = None, context_frames: int | None = None,
               check_against_sequential: bool = False) -> np.ndarray:
        """uint8 videos (B, num_frames, H, W, 3), one per caption.

        ``condition_frames`` (B, K, H, W, 3): the clips start with these frames (i2v: K = 1;
        continuation: K > 1) and the model continues them. ``jacobi`` inverts the flow by
        block-Jacobi iteration instead of token by token. Clips longer than the training length
        are made by a sliding window that re-reads ``context_frames`` latent frames (see
        ``StarFlowV.sample_noisy``).

        ``last_sampling`` then holds what the call cost: seconds spent in the flow, the denoiser
        and the decoder, the flow's network evaluations, and for Jacobi its iterations per block. With
        ``check_against_sequential`` the same noise is also inverted token by token, and
        ``last_sampling`` adds that reference's seconds and network evaluations and the largest absolute difference
        between the two samplers' latents (before denoising).
        """
        condition = None if condition_frames is None else self.condition_tokens(condition_frames)
        latent_frames = self.latent_frames_for(num_frames)

        def invert_flow(inverter: JacobiInverter | None) -> tuple[torch.Tensor, float, int]:
            started = self._clock()
            with PassCounter(self.model.flow) as passes:
                noisy = self.model.sample_noisy(captions, latent_frames, generator=torch.Generator().manual_seed(seed),
                                                guidance=guidance, condition=condition, invert=inverter,
                                                context_frames=context_frames)
            return noisy, self._clock() - started, passes.count

        inverter = JacobiInverter(jacobi) if jacobi is not None else None
        noisy, flow_seconds, passes = invert_flow(inverter)
        stats: dict[str, Any] = {"sampler": "jacobi" if inverter else "sequential", "flow_seconds": flow_seconds,
                                 "network_evaluations": passes}
        if inverter is not None:
            stats["iterations"] = inverter.stats.iterations
        if check_against_sequential:
            reference, reference_seconds, reference_passes = invert_flow(None)
            stats.update(reference_seconds=reference_seconds, reference_network_evaluations=reference_passes,
                         max_abs_latent_difference=float((noisy - reference).abs().max()))
        started = self._clock()
        tokens = self.model.finish(noisy, condition, denoise=denoise)
        stats["denoise_seconds"] = self._clock() - started
        started = self._clock()
        videos = self.decode(tokens, num_frames)
        stats["decode_seconds"] = self._clock() - started
        self.last_sampling = stats
        return videos


class DiffusionPipeline(LatentVideoPipeline):
    """A diffusion baseline (``generator.video_diffusion``) over the same autoencoder."""

    likelihood_kind = "upper bound (continuous-time ELBO)"

    def __init__(self, model: VideoDiffusion, autoencoder: VideoAutoencoder, *, name: str = "diffusion",
                 info: dict[str, Any] | None = None) -> None:
        super().__init__(model, autoencoder, name=name, info=info)

    @torch.no_grad()
    def sample(self, captions: list[str], num_frames: int, *, seed: int = 0, guidance: float = 0.0,
               sampler: str | None = None, steps: int = 50, shift: float | None = None,
               condition_frames: np.ndarray | None = None, context_frames: int | None = None,
               sink: bool = False) -> np.ndarray:
        """uint8 videos (B, num_frames, H, W, 3), one per caption.

        ``sampler``: ``"few_step"`` (timesteps 1000, 750, 500, 250, shift 5 by default) or
        ``"euler"`` (``steps`` Euler steps on the probability-flow ODE, shift 3 by default); by
        default the one the checkpoint was made for (a distilled student's ``few_step``, else ``euler``).
        ``condition_frames`` start the clips (image-to-video, continuation); ``sink`` keeps the
        first frame in every window of a long causal clip.
        """
        sampler = sampler or self._info.get("sampler", "euler")
        if sampler == "few_step":
            timesteps = schedule.few_step_timesteps(5.0 if shift is None else shift)
        elif sampler == "euler":
            timesteps = schedule.euler_timesteps(steps, 3.0 if shift is None else shift)
        else:
            raise ValueError(f"unknown diffusion sampler {sampler!r} (few_step or euler)")
        condition = None if condition_frames is None else self.condition_tokens(condition_frames)
        started = self._clock()
        with PassCounter(self.model.transformer) as passes:
            tokens = self.model.sample(captions, self.latent_frames_for(num_frames),
                                       generator=torch.Generator().manual_seed(seed), timesteps=timesteps,
                                       few_step=sampler == "few_step", guidance=guidance, condition=condition,
                                       context_frames=context_frames, sink=sink)
        stats: dict[str, Any] = {"sampler": sampler, "denoising_steps": len(timesteps) - 1,
                                 "sampling_seconds": self._clock() - started,
                                 "network_evaluations": passes.count}
        started = self._clock()
        videos = self.decode(tokens, num_frames)
        stats["decode_seconds"] = self._clock() - started
        self.last_sampling = stats
        return videos
