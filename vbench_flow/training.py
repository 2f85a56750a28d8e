"""Training the generators on the shapes world: data in, shipped checkpoint out.

``generator/`` trains on any batches; this module supplies shapes-world batches, for the flow
and for the diffusion baselines alike (same autoencoder, tokens, text encoder and data). Clips are
encoded once by the frozen autoencoder into a pool of latent token grids (clips start at random
times, so mid-video starts are in the data), then sampled with a seeded generator. Under
``torchrun`` every rank encodes its own pool (seed + rank) and rank 0 validates and exports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from generator.autoencoder import VideoAutoencoder
from generator.denoiser import DenoiserConfig
from generator.flow import FlowConfig
from generator.pipeline import file_sha256
from generator.starflow import StarFlowConfig, StarFlowV, latents_to_tokens
from generator.video_diffusion import DiffusionConfig, VideoDiffusion
from generator.text import TextConfig, build_vocab
from generator.train import ResumeError, TrainConfig, distributed_setup, export_weights, train_model
from vbench_flow.data.shapes import ShapesWorld
from vbench_flow.errors import ConfigError
from vbench_flow.data.torch_data import ShapesClips, ShapesStream, collate_clips


MODELS = ("starflow", "ar-diffusion", "bidir-diffusion")


@dataclass
class ShapesRecipe:
    """Everything that decides a shapes-world training run (recorded in the checkpoint)."""

    model: str = "starflow"            # one of MODELS
    autoencoder: str = "vae-shapes64"
    frames: int = 17                   # 1 + 4k video frames per training clip -> 1 + k latent frames
    size: int = 64
    fps: float = 8.0
    pool_clips: int = 4096
    val_clips: int = 64
    max_start_seconds: float = 25.0
    batch_size: int = 16
    seed: int = 0
    flow: dict[str, Any] = field(default_factory=dict)       # FlowConfig overrides
    text: dict[str, Any] = field(default_factory=dict)       # TextConfig overrides
    denoiser: dict[str, Any] = field(default_factory=dict)   # DenoiserConfig overrides
    diffusion: dict[str, Any] = field(default_factory=dict)  # DiffusionConfig overrides
    noise_sigma: float = 0.5
    patch_size: int = 2


def encode_clips(autoencoder: VideoAutoencoder, loader: Any, count: int, desc: str, patch: int) -> tuple[torch.Tensor, list[str]]:
    """Latent tokens (N, F, S, D) and captions of the first ``count`` clips a loader yields."""
    tokens, captions = [], []
    with tqdm(total=count, desc=desc, unit="clip") as bar:
        for batch in loader:
            take = min(len(batch["caption"]), count - len(captions))
            tokens.append(latents_to_tokens(autoencoder.encode_frames(batch["video"][:take]), patch))
            captions.extend(batch["caption"][:take])
            bar.update(take)
            if len(captions) >= count:
                break
    return torch.cat(tokens), captions


def pool_batches(tokens: torch.Tensor, captions: list[str], batch_size: int, seed: int) -> Iterator[dict[str, Any]]:
    generator = torch.Generator().manual_seed(seed)
    while True:
        index = torch.randint(0, tokens.shape[0], (batch_size,), generator=generator)
        yield {"latents": tokens[index], "caption": [captions[int(i)] for i in index]}


def _geometry(recipe: ShapesRecipe, autoencoder: VideoAutoencoder) -> dict[str, int]:
    """Token dimension, token grid and training length in latent frames, shared by every model."""
    channels, latent_frames, height, width = autoencoder.latent_shape(recipe.frames, recipe.size, recipe.size)
    p = recipe.patch_size
    if height % p or width % p:
        raise ValueError(f"latent frames of {height}x{width} do not split into {p}x{p} patches")
    return {"token_dim": channels * p * p, "frame_height": height // p, "frame_width": width // p,
            "max_frames": latent_frames}


def _text_config(recipe: ShapesRecipe) -> TextConfig:
    # 5,000 training captions use every word the world has (46 BPE tokens; 2,000 already do)
    world = ShapesWorld("train", size=recipe.size, fps=recipe.fps)
    return TextConfig(**{"vocab": build_vocab(world.caption(i) for i in range(5_000)), **recipe.text})


def model_config(recipe: ShapesRecipe, autoencoder: VideoAutoencoder) -> StarFlowConfig:
    flow = FlowConfig(**{**_geometry(recipe, autoencoder), **recipe.flow})
    return StarFlowConfig(flow=flow, text=_text_config(recipe), denoiser=DenoiserConfig(**recipe.denoiser),
                          noise_sigma=recipe.noise_sigma, patch_size=recipe.patch_size)


def diffusion_config(recipe: ShapesRecipe, autoencoder: VideoAutoencoder) -> DiffusionConfig:
    """A baseline over the same tokens and text encoder, its transformer the size of the flow's deep block."""
    flow = FlowConfig(**recipe.flow)
    size = {"width": flow.deep_width, "depth": flow.deep_depth, "heads": flow.heads}
    return DiffusionConfig(**{**_geometry(recipe, autoencoder), **size, "causal": recipe.model == "ar-diffusion",
                              "text": _text_config(recipe), "patch_size": recipe.patch_size,
                              "noise_sigma": recipe.noise_sigma, **recipe.diffusion})


def build_model(recipe: ShapesRecipe, autoencoder: VideoAutoencoder) -> StarFlowV | VideoDiffusion:
    if recipe.model not in MODELS:
        raise ValueError(f"unknown model {recipe.model!r} (one of {', '.join(MODELS)})")
    if recipe.model == "starflow":
        return StarFlowV(model_config(recipe, autoencoder))
    return VideoDiffusion(diffusion_config(recipe, autoencoder))


CAPTION_TRACKING_CLIPS = 8


def caption_tracker(autoencoder: VideoAutoencoder, recipe: ShapesRecipe, count: int = CAPTION_TRACKING_CLIPS,
                    seed: int = 0, **sample_options: Any) -> Any:
    """``on_validate`` for ``train_model``: the mean caption adherence and colour recall of the model's
    samples (``recipe.frames`` frames; ``sample_options`` or the pipeline's default sampler) for the first
    ``count`` validation captions."""
    from generator.pipeline import DiffusionPipeline, StarFlowPipeline
    from metrics.caption_adherence import caption_scores

    captions = [ShapesWorld("val", size=recipe.size, fps=recipe.fps).caption(i) for i in range(count)]

    def track(model: torch.nn.Module) -> dict[str, float]:
        pipeline = (StarFlowPipeline if model.kind == "starflow" else DiffusionPipeline)(model, autoencoder, name="training")
        videos = pipeline.sample(captions, recipe.frames, seed=seed, **sample_options)
        quantities = ("adherence", "colour_recall")
        scores = [caption_scores(video, caption, recipe.fps, quantities) for video, caption in zip(videos, captions)]
        return {f"val_caption_{q}": float(np.mean([s[q] for s in scores])) for q in quantities}
    return track


def train_resumable(model: torch.nn.Module, train_batches: Iterator[dict[str, Any]], val_batches: list[dict[str, Any]],
                    config: TrainConfig, *, checkpoint: Path, resume: bool, progress: bool,
                    on_validate: Callable[[torch.nn.Module], dict[str, float]] | None,
                    identity: dict[str, Any]) -> dict[str, Any]:
    """``generator.train.train_model``, with a training state that cannot be resumed reported as
    the user's --checkpoint / --resume mistake it is."""
    try:
        return train_model(model, train_batches, val_batches, config, checkpoint=checkpoint, resume=resume,
                           progress=progress, on_validate=on_validate, identity=identity)
    except ResumeError as error:
        raise ConfigError(str(error), where="--checkpoint",
                          fix="to start over, give --checkpoint a new path (or leave it out: OUT.train.pt) and "
                              "drop --resume; to continue, give it the training state of this same run") from None


def train_on_shapes(recipe: ShapesRecipe, train: TrainConfig, *, out: Path, checkpoint: Path,
                    resume: bool = False, progress: bool = True,
                    caption_tracking_clips: int = CAPTION_TRACKING_CLIPS) -> dict[str, Any]:
    """Train ``recipe.model`` on the shapes world and export ``out``; returns the measurements."""
    from generator import checkpoint_path, shipped_name_or_path

    rank, world_size, _ = distributed_setup()
    autoencoder_file = checkpoint_path(recipe.autoencoder)
    autoencoder_sha256 = file_sha256(autoencoder_file)
    autoencoder = VideoAutoencoder.load(autoencoder_file)
    torch.manual_seed(recipe.seed)
    model = build_model(recipe, autoencoder)
    stream = ShapesStream("train", recipe.frames, size=recipe.size, fps=recipe.fps, seed=recipe.seed, rank=rank,
                          max_start_seconds=recipe.max_start_seconds)
    started = time.perf_counter()
    pool, captions = encode_clips(autoencoder, DataLoader(stream, batch_size=64, collate_fn=collate_clips),
                                  recipe.pool_clips, f"encode training pool (rank {rank})", recipe.patch_size)
    val_set = ShapesClips("val", recipe.frames, recipe.val_clips, size=recipe.size, fps=recipe.fps)
    val_tokens, val_captions = encode_clips(autoencoder, DataLoader(val_set, batch_size=64, collate_fn=collate_clips),
                                            recipe.val_clips, "encode validation clips", recipe.patch_size)
    val = [{"latents": val_tokens[i:i + 32], "caption": val_captions[i:i + 32]} for i in range(0, len(val_captions), 32)]
    encode_seconds = time.perf_counter() - started
    result = train_resumable(model, pool_batches(pool, captions, recipe.batch_size, recipe.seed * 7919 + rank), val,
                             train, checkpoint=checkpoint, resume=resume, progress=progress,
                             on_validate=(caption_tracker(autoencoder, recipe, caption_tracking_clips)
                                          if caption_tracking_clips else None),
                             identity={"model": recipe.model, "autoencoder_sha256": autoencoder_sha256})
    history = result["history"]
    info = {
        "autoencoder": shipped_name_or_path(autoencoder_file), "autoencoder_sha256": autoencoder_sha256,
        "recipe": recipe.__dict__, "train_config": train.__dict__, "steps": result["steps"],
        "world_size": world_size, "train_seconds": round(result["train_seconds"], 1), "timed_steps": result["timed_steps"],
        "encode_seconds": round(encode_seconds, 1),
        "tokens_per_second": next((h["tokens_per_second"] for h in reversed(history) if "tokens_per_second" in h), None),
        model.validation_name: result[model.validation_name], "parameters": model.num_parameters(),
        "bits_per_dim_space": f"latent (standardised, noise-augmented sigma={recipe.noise_sigma})",
        "history": history,
    }
    if model.kind == "diffusion" and rank == 0:
        generator = torch.Generator().manual_seed(1234)
        bound = torch.cat([model.bits_per_dim(b["latents"], b["caption"], generator) for b in val])
        info["val_bits_per_dim_bound"] = float(bound.mean())
    if rank == 0:
        export_weights(out, model, info)
        write_sample_grid(out, recipe)
    return info


def write_sample_grid(checkpoint: Path, recipe: ShapesRecipe, count: int = 8, seed: int = 0) -> Path:
    """A GIF grid of samples for validation captions beside the real clips, next to the checkpoint."""
    import generator
    from vbench_flow.data.preview import make_grid
    from vbench_flow.video_io import write_video

    pipe = generator.load(checkpoint)
    world = ShapesWorld("val", size=recipe.size, fps=recipe.fps)
    captions = [world.caption(i) for i in range(count)]
    samples = pipe.sample(captions, recipe.frames, seed=seed)
    real = [world.clip(i, recipe.frames).frames for i in range(count)]
    grid = make_grid([v for pair in zip(real, samples) for v in pair],
                     [text for c in captions for text in (f"real: {c}", f"generated: {c}")], columns=4)
    path = checkpoint.with_name(checkpoint.stem + "-samples.gif")
    write_video(path, grid, recipe.fps)
    return path


def caption_batches(split: str, batch_size: int, frames: int, tokens_per_frame: int, seed: int,
                    size: int = 64, fps: float = 8.0) -> Iterator[dict[str, Any]]:
    """Endless batches of random captions of ``split`` (distillation needs no clips: the student makes
    its own); ``latents`` is an empty (B, F, S, 0) placeholder that only counts tokens."""
    world = ShapesWorld(split, size=size, fps=fps)
    rng = np.random.default_rng(seed)
    while True:
        indices = rng.integers(0, len(world), batch_size)
        yield {"latents": torch.zeros(batch_size, frames, tokens_per_frame, 0),
               "caption": [world.caption(int(i)) for i in indices]}


def distill_on_shapes(teacher_name: str, train: TrainConfig, *, batch_size: int, val_captions: int, out: Path,
                      checkpoint: Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Distil the causal diffusion teacher into a few-step student on its own rollouts
    (``generator.distill``) and export the student, loadable by ``generator.load``."""
    from generator import checkpoint_path, shipped_name_or_path
    from generator.distill import STUDENT_SHIFT, TEACHER_SHIFT, TEACHER_STEPS, SelfRolloutDistillation
    from generator.train import load_model

    rank, world_size, _ = distributed_setup()
    try:
        teacher_file = checkpoint_path(teacher_name)
        teacher, teacher_info = load_model(teacher_file)
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(str(error), where="--teacher", fix="name a shipped causal diffusion checkpoint "
                          "(ar-diffusion-shapes64) or a .pt file `vbf train diffusion --kind ar` wrote") from None
    if getattr(teacher, "kind", None) != "diffusion" or not teacher.config.causal:
        raise ConfigError(f"{teacher_file} is not a causal (autoregressive) diffusion model", where="--teacher",
                          fix="distil ar-diffusion-shapes64 or another `vbf train diffusion --kind ar` checkpoint")
    method, teacher_sha256 = SelfRolloutDistillation(teacher), file_sha256(teacher_file)
    autoencoder = VideoAutoencoder.load(checkpoint_path(teacher_info["autoencoder"]))
    tracker = caption_tracker(autoencoder, ShapesRecipe(model="ar-diffusion"), sampler="few_step")
    frames, tokens = method.num_frames, teacher.config.tokens_per_frame
    val_world = ShapesWorld("val")
    val = [{"latents": torch.zeros(len(chunk), frames, tokens, 0), "caption": [val_world.caption(i) for i in chunk]}
           for chunk in np.array_split(np.arange(val_captions), max(1, val_captions // 16))]
    result = train_resumable(method, caption_batches("train", batch_size, frames, tokens, train.seed * 7919 + rank),
                             val, train, checkpoint=checkpoint, resume=resume, progress=progress,
                             on_validate=lambda method: tracker(method.student),
                             identity={"teacher_sha256": teacher_sha256})
    info = {
        "autoencoder": teacher_info["autoencoder"], "autoencoder_sha256": teacher_info.get("autoencoder_sha256"),
        "distilled_from": shipped_name_or_path(teacher_file), "teacher_sha256": teacher_sha256,
        "method": (f"self-rollout consistency distillation: student few-step states (shift {STUDENT_SHIFT:g}) regress "
                   f"the teacher's {TEACHER_STEPS}-step Euler ODE end point (shift {TEACHER_SHIFT:g})"),
        "sampler": "few_step", "train_config": train.__dict__, "batch_size": batch_size, "steps": result["steps"],
        "world_size": world_size, "train_seconds": round(result["train_seconds"], 1), "timed_steps": result["timed_steps"],
        method.validation_name: result[method.validation_name], "parameters": teacher.num_parameters(),
        "history": result["history"],
    }
    if rank == 0:
        export_weights(out, method.student, info)
        write_sample_grid(out, ShapesRecipe(model="ar-diffusion"))
    return info
