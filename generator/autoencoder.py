"""A small causal 3D-convolutional video VAE: the latent space of the flow generator.

Compression is 8x in space and 4x in time with the first frame on its own, as in the video
VAE STARFlow-V builds on: T = 1 + 4k frames of HxW become 1 + k latent frames of H/8 x W/8.
Every temporal padding sits on the past side only, so latent frame j sees input frames <= 4j and
decoded frame t sees latent frames <= ceil(t/4): the flow can generate latents causally and
stream them through the decoder.

Past padding replicates the first frame rather than inserting zeros: a constant video then maps
to constant features at every layer, so the first latent frame is exactly the latent of a still
image (what image-to-video conditioning feeds in) and no artificial mid-grey frame marks the
start of a clip (clips cut from the middle of a video look like any other).

Cost is what shapes the layers: on a 2-core CPU a single 32-channel 3x3x3 conv at 64x64x17 costs
more than this whole model, so a 2x2 space-to-depth patchify moves all convolutions to 32x32
and below (as LTX-Video's VAE does with 4x4), and each time halving happens as early as possible.
Channel counts stay powers of two (oneDNN ran a 24-channel model 6x slower than a 16-channel one).

Training speed is what shapes the skips: every down/up-sampling and both latent ends carry a
parameter-free shortcut (DC-AE's residual autoencoding; Wan 2.2's VAE has the same AvgDown3D /
DupUp3D pair), so from the first step block averages of the pixels reach the latents and come
back, and the convolutions learn only the residual. Without them colours were still wrong after
600 steps; with them a 300-step image run went from 21.6 to 25.1 dB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generator import read_checkpoint

CHECKPOINT_FORMAT = "vbf-video-vae-1"


@dataclass(frozen=True)
class AutoencoderConfig:
    latent_channels: int = 8
    base_channels: int = 16
    # One entry per resolution level below the patchified input (32, 16, 8 at 64x64);
    # between consecutive levels space and time both halve, so 3 levels + patch 2 = 8x, 4x.
    channel_mults: tuple[int, ...] = (1, 2, 4)
    res_blocks: int = 1
    patch_size: int = 2
    kl_weight: float = 1e-6  # per latent element, against a per-pixel-mean MSE

    def __post_init__(self) -> None:
        # YAML and JSON round trips hand back lists; the dataclass is frozen and compared by value.
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        if len(self.channel_mults) != 3:
            raise ValueError(f"channel_mults needs 3 levels (two 2x space+time halvings), got {self.channel_mults}")
        # the parameter-free shortcuts split or merge channels in whole groups
        chans = [self.base_channels * m for m in self.channel_mults]
        if chans[-1] % self.latent_channels or any(8 * a % b for a, b in zip(chans, chans[1:])):
            raise ValueError(f"channels {chans} and latent_channels {self.latent_channels} do not divide evenly "
                             "for the shortcuts: use powers of two")

    @property
    def spatial_factor(self) -> int:
        return self.patch_size * 2 ** (len(self.channel_mults) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** (len(self.channel_mults) - 1)


class DiagonalGaussian:
    """The encoder's posterior q(z|x) = N(mean, exp(logvar)), elementwise."""

    def __init__(self, mean: Tensor, logvar: Tensor) -> None:
        self.mean = mean
        # The clamp keeps exp() finite early in training, when the encoder's output is arbitrary.
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        return self.mean + self.std * noise

    def mode(self) -> Tensor:
        return self.mean

    def kl(self) -> Tensor:
        """KL(q || N(0, I)) in nats, summed over all but the batch dimension: shape (B,)."""
        kl = 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar)
        return kl.flatten(1).sum(dim=1)


class CausalConv3d(nn.Conv3d):
    """Conv3d with 'same' zero padding in space and past-only replicate padding in time.

    With a temporal stride of 2 and kernel 3, 1 + 2m frames become 1 + m and output j covers
    input frames 2j-2..2j: output 0 sees the first frame alone (its two pads are copies of it).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: tuple[int, int, int] = (1, 1, 1)) -> None:
        super().__init__(c_in, c_out, kernel, stride=stride, padding=(0, kernel // 2, kernel // 2))
        self.time_pad = kernel - 1
        self.stream: dict[str, Tensor] | None = None  # set while decoding chunk by chunk

    def forward(self, x: Tensor) -> Tensor:
        if self.time_pad:
            past = self.stream.get("past") if self.stream is not None else None
            if past is None:
                past = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
            x = torch.cat([past, x], dim=2)
            if self.stream is not None:  # the next chunk's past: a copy, so the chunk itself can be freed
                self.stream["past"] = x[:, :, -self.time_pad:].clone()
        return super().forward(x)


class ChannelRMSNorm(nn.Module):
    """RMS norm over channels at each voxel (as in Wan's VAE). GroupNorm would pool over time
    and so leak the future into the past; this norm is per voxel, hence causal and cheap."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps) * self.weight.view(1, -1, 1, 1, 1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = ChannelRMSNorm(c_in), CausalConv3d(c_in, c_out)
        self.norm2, self.conv2 = ChannelRMSNorm(c_out), CausalConv3d(c_out, c_out)
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


def _fold(x: Tensor, channels: int) -> Tensor:
    """Parameter-free 2x space-time downsampling (DC-AE's residual shortcut, Wan 2.2's AvgDown3D):
    every 2x2x2 block goes into channels, then groups of channels are averaged down to `channels`.
    One replicated past frame pairs frame 0 with itself, so output j holds frames 2j-1 and 2j."""
    b, c, t, h, w = x.shape
    x = torch.cat([x[:, :, :1], x], dim=2)
    x = x.view(b, c, (t + 1) // 2, 2, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 7, 2, 4, 6)
    return x.reshape(b, channels, c * 8 // channels, (t + 1) // 2, h // 2, w // 2).mean(dim=2)


def _unfold(x: Tensor, channels: int, drop: int = 1) -> Tensor:
    """The inverse shortcut (Wan 2.2's DupUp3D): channels are duplicated and spread over a 2x2x2
    block; the copy of frame 0 that would precede it is dropped, so 1 + k frames become 1 + 2k."""
    b, c, t, h, w = x.shape
    x = x.repeat_interleave(channels * 8 // c, dim=1).view(b, channels, 2, 2, 2, t, h, w)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, channels, 2 * t, 2 * h, 2 * w)
    return x[:, :, drop:]


class Downsample(nn.Module):
    """2x in space and time: a stride-2 causal conv (output j reads frames 2j-2..2j) learning a
    residual over the parameter-free fold, which from step 0 carries block averages of the
    input through the bottleneck; the same trick makes DC-AE's high compression trainable."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(c_in, c_out, stride=(2, 2, 2))
        self.c_out = c_out

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) + _fold(x, self.c_out)


class Upsample(nn.Module):
    """2x in space (nearest) and in time, mirroring Downsample: each frame is repeated twice and the
    first copy of frame 0 dropped, so 1 + k frames become 1 + 2k and output t comes from input
    ceil(t/2), never from the future; a causal conv learns a residual over the unfold shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(c_in, c_out)
        self.c_out = c_out
        self.stream: dict[str, bool] | None = None  # set while decoding chunk by chunk

    def forward(self, x: Tensor) -> Tensor:
        # only the clip's first frame loses its leading copy; later chunks of a stream keep both
        drop = 0 if self.stream is not None and self.stream.get("started") else 1
        if self.stream is not None:
            self.stream["started"] = True
        up = x.repeat_interleave(2, dim=2)[:, :, drop:]
        up = F.interpolate(up, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        return self.conv(up) + _unfold(x, self.c_out, drop)


def _blocks(c_in: int, c_out: int, n: int) -> list[nn.Module]:
    return [ResBlock(c_in if i == 0 else c_out, c_out) for i in range(n)]


class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        chans = [cfg.base_channels * m for m in cfg.channel_mults]
        self.conv_in = CausalConv3d(3 * cfg.patch_size**2, chans[0])
        layers: list[nn.Module] = []
        for level, c in enumerate(chans):
            layers += _blocks(c, c, cfg.res_blocks)
            if level + 1 < len(chans):
                layers.append(Downsample(c, chans[level + 1]))
        self.body = nn.Sequential(*layers)
        self.norm_out = ChannelRMSNorm(chans[-1])
        self.conv_out = CausalConv3d(chans[-1], 2 * cfg.latent_channels)
        self.latent_channels = cfg.latent_channels

    def forward(self, x: Tensor) -> Tensor:
        """-> (mean, logvar); the mean adds channel-group averages of the features (DC-AE's
        output shortcut), closing a parameter-free path from pixel-block averages to latents."""
        h = self.body(self.conv_in(x))
        mean, logvar = self.conv_out(F.silu(self.norm_out(h))).chunk(2, dim=1)
        b, c, t, hh, ww = h.shape
        shortcut = h.view(b, self.latent_channels, c // self.latent_channels, t, hh, ww).mean(dim=2)
        return mean + shortcut, logvar


class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        chans = [cfg.base_channels * m for m in reversed(cfg.channel_mults)]
        self.conv_in = CausalConv3d(cfg.latent_channels, chans[0])
        layers: list[nn.Module] = []
        for level, c in enumerate(chans):
            layers += _blocks(c, c, cfg.res_blocks)
            if level + 1 < len(chans):
                layers.append(Upsample(c, chans[level + 1]))
        self.body = nn.Sequential(*layers)
        self.norm_out = ChannelRMSNorm(chans[-1])
        self.conv_out = CausalConv3d(chans[-1], 3 * cfg.patch_size**2)

    def forward(self, z: Tensor) -> Tensor:
        # input shortcut (DC-AE): each latent channel copied into a group of feature channels
        h = self.conv_in(z) + z.repeat_interleave(self.conv_in.out_channels // z.shape[1], dim=1)
        return self.conv_out(F.silu(self.norm_out(self.body(h))))


def _space_to_depth(x: Tensor, p: int) -> Tensor:
    return F.pixel_unshuffle(x.transpose(1, 2), p).transpose(1, 2)


def _depth_to_space(x: Tensor, p: int) -> Tensor:
    return F.pixel_shuffle(x.transpose(1, 2), p).transpose(1, 2)


def frames_to_video(frames: Tensor) -> Tensor:
    """uint8 (B, T, H, W, 3) -> float (B, 3, T, H, W) in [-1, 1]."""
    return frames.permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


def video_to_frames(video: Tensor) -> Tensor:
    """float (B, 3, T, H, W) in [-1, 1] -> uint8 (B, T, H, W, 3), rounded."""
    return video.clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1)


class VideoAutoencoder(nn.Module):
    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        # Identity until fit_latent_stats; saved with the weights so the flow sees the same scale.
        self.register_buffer("latent_mean", torch.zeros(config.latent_channels))
        self.register_buffer("latent_std", torch.ones(config.latent_channels))
        self.info: dict[str, Any] = {}

    # --- shapes -----------------------------------------------------------------------------

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, t, h, w) of the latents of a (frames, height, width) video; raises if it has none."""
        cfg, s, r = self.config, self.config.spatial_factor, self.config.temporal_factor
        if frames < 1 or (frames - 1) % r or height % s or width % s:
            raise ValueError(f"video of {frames} frames of {height}x{width} does not fit the autoencoder: "
                             f"needs 1 + {r}k frames and sides divisible by {s} (e.g. 17 or 41 frames of 64x64)")
        return cfg.latent_channels, 1 + (frames - 1) // r, height // s, width // s

    # --- the VAE ----------------------------------------------------------------------------

    def encode(self, video: Tensor) -> DiagonalGaussian:
        """video float (B, 3, T, H, W) in [-1, 1], T = 1 + 4k -> posterior over (B, C, 1 + k, H/8, W/8)."""
        self.latent_shape(*video.shape[2:])
        return DiagonalGaussian(*self.encoder(_space_to_depth(video, self.config.patch_size)))

    def decode(self, z: Tensor) -> Tensor:
        """latents (B, C, 1 + k, h, w), unstandardised -> video (B, 3, 1 + 4k, 8h, 8w), unclamped."""
        return _depth_to_space(self.decoder(z), self.config.patch_size)

    def forward(self, video: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, DiagonalGaussian]:
        posterior = self.encode(video)
        return self.decode(posterior.sample(generator)), posterior

    # --- latent standardisation -------------------------------------------------------------

    def _per_channel(self, v: Tensor, z: Tensor) -> Tensor:
        return v.to(z.dtype).view(1, -1, *([1] * (z.dim() - 2)))

    def normalize(self, z: Tensor) -> Tensor:
        return (z - self._per_channel(self.latent_mean, z)) / self._per_channel(self.latent_std, z)

    def denormalize(self, z: Tensor) -> Tensor:
        return z * self._per_channel(self.latent_std, z) + self._per_channel(self.latent_mean, z)

    @torch.no_grad()
    def fit_latent_stats(self, videos: Iterable[Tensor]) -> dict[str, list[float]]:
        """Set latent_mean / latent_std per channel from the posterior means of uint8 video batches
        (B, T, H, W, 3); sums in float64 so many batches add up exactly enough."""
        device = self.latent_mean.device
        n, s1 = 0, torch.zeros_like(self.latent_mean, dtype=torch.float64)
        s2 = torch.zeros_like(s1)
        for frames in videos:
            z = self.encode(frames_to_video(frames.to(device))).mode().double()
            z = z.transpose(0, 1).flatten(1)  # (C, everything else)
            n += z.shape[1]
            s1 += z.sum(dim=1)
            s2 += z.pow(2).sum(dim=1)
        if n == 0:
            raise ValueError("fit_latent_stats got no videos")
        mean = s1 / n
        std = (s2 / n - mean.pow(2)).clamp_min(0).sqrt().clamp_min(1e-6)
        self.latent_mean.copy_(mean.float())
        self.latent_std.copy_(std.float())
        return {"mean": mean.tolist(), "std": std.tolist()}

    # --- what the flow model calls ----------------------------------------------------------

    @torch.no_grad()
    def encode_frames(self, frames: Tensor) -> Tensor:
        """uint8 frames (B, T, H, W, 3) -> standardised posterior-mode latents (B, C, 1 + k, H/8, W/8)."""
        if frames.dtype != torch.uint8 or frames.dim() != 5 or frames.shape[-1] != 3:
            raise ValueError(f"encode_frames wants uint8 (B, T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
        video = frames_to_video(frames.to(self.latent_mean.device))
        return self.normalize(self.encode(video).mode())

    @torch.no_grad()
    def reconstruct_frames(self, frames: Tensor) -> Tensor:
        """uint8 frames (B, T, H, W, 3) -> the uint8 frames they come back as through the latents."""
        return self.decode_to_frames(self.encode_frames(frames))

    @torch.no_grad()
    def decode_to_frames(self, latents: Tensor, chunk_frames: int | None = 12) -> Tensor:
        """standardised latents (B, C, 1 + k, h, w) -> uint8 frames (B, 1 + 4k, 8h, 8w, 3).

        The decoder is causal, so it runs ``chunk_frames`` latent frames at a time, each causal
        convolution carrying its last input frames over to the next chunk: the frames equal one
        whole-clip pass (up to float rounding) while memory stays that of one chunk, whatever
        the clip's length. ``None`` decodes in one pass. (Chunks much shorter than 12 latent
        frames leave torch's fast 3D-convolution path on CPU and cost more time and memory, so a
        short last chunk is padded to full length.)
        """
        if latents.dim() != 5 or latents.shape[1] != self.config.latent_channels:
            raise ValueError(f"decode_to_frames wants (B, {self.config.latent_channels}, t, h, w), "
                             f"got {tuple(latents.shape)}")
        z = self.denormalize(latents.to(self.latent_mean.device, torch.float32))
        if chunk_frames is None:
            return video_to_frames(self.decode(z))
        streaming = [m for m in self.decoder.modules() if isinstance(m, (CausalConv3d, Upsample))]
        for module in streaming:
            module.stream = {}
        try:
            r = self.config.temporal_factor
            out = None  # filled in place: a list of chunks joined at the end would hold the clip twice
            for i in range(0, z.shape[2], chunk_frames):
                chunk = z[:, :, i:i + chunk_frames]
                real = chunk.shape[2]
                # every chunk the same length (repeating the last latent frame; the decoder is causal,
                # so the padding changes nothing before it): one convolution algorithm, flat memory
                padded = torch.cat([chunk, chunk[:, :, -1:].expand(-1, -1, chunk_frames - real, -1, -1)], dim=2)
                frames = video_to_frames(self.decode(padded))[:, :(1 + r * (real - 1)) if i == 0 else r * real]
                if out is None:
                    out = frames.new_empty((frames.shape[0], 1 + r * (z.shape[2] - 1), *frames.shape[2:]))
                    start = 0
                out[:, start:start + frames.shape[1]] = frames
                start += frames.shape[1]
            return out
        finally:
            for module in streaming:
                module.stream = None

    # --- checkpoints ------------------------------------------------------------------------

    def save(self, path: str | Path, train_state: dict[str, Any] | None = None) -> None:
        """Write config, weights (latent stats included) and info; a trainer adds its train_state
        to make the file resumable, and the finished model is saved without one."""
        ckpt = {"format": CHECKPOINT_FORMAT, "config": asdict(self.config), "info": dict(self.info),
                "state_dict": {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}}
        if train_state is not None:
            ckpt["train_state"] = train_state
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(ckpt, tmp)
        tmp.replace(path)  # never leave a half-written checkpoint behind an interrupted run

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], expected: AutoencoderConfig | None = None,
                        source: str = "checkpoint") -> "VideoAutoencoder":
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{source} is not a video autoencoder checkpoint "
                             f"(format {ckpt.get('format')!r}, expected {CHECKPOINT_FORMAT!r})")
        known = {f.name for f in fields(AutoencoderConfig)}
        unknown = sorted(set(ckpt["config"]) - known)
        if unknown:
            raise ValueError(f"{source} has config fields this code does not know: {unknown}")
        config = AutoencoderConfig(**ckpt["config"])
        if expected is not None and expected != config:
            diff = {k: (getattr(config, k), getattr(expected, k)) for k in known
                    if getattr(config, k) != getattr(expected, k)}
            raise ValueError(f"{source} was trained with a different autoencoder config; "
                             f"field: (checkpoint, expected) = {diff}")
        model = cls(config)
        try:
            model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as err:
            raise ValueError(f"{source}: weights do not match its own config {config}: {err}") from err
        model.info = dict(ckpt.get("info", {}))
        return model

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu",
             expected_config: AutoencoderConfig | None = None) -> "VideoAutoencoder":
        """Load a saved model; with expected_config, a checkpoint of any other config raises ValueError."""
        ckpt = read_checkpoint(path, map_location)
        return cls.from_checkpoint(ckpt, expected_config, source=str(path)).eval()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

