"""Training the generators: AdamW, EMA, gradient clipping, checkpoints, resume, periodic validation.

Runs in one process, or data-parallel under ``torchrun --nproc_per_node N`` (gloo on CPU, nccl
on GPUs) with no change: each rank draws its own batches, DistributedDataParallel averages the
gradients, rank 0 validates and writes checkpoints. A model may have several trainable parts
with separate optimisers: STARFlow-V's denoiser regresses a detached target computed from the
flow's gradient, so neither loss moves the other's weights.

Batches are dicts ``{"latents": (B, F, S, D) standardised latent tokens, "caption": list[str]}``;
the caller decides where they come from.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from generator import read_checkpoint
from generator.starflow import StarFlowConfig, StarFlowV


@dataclass
class TrainConfig:
    steps: int = 3000
    lr: float = 5e-4
    denoiser_lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    val_every: int = 250
    checkpoint_every: int = 250
    log_every: int = 25
    seed: int = 0


# ---------------------------------------------------------------- distributed helpers

class ResumeError(ValueError):
    """A training state that cannot be resumed here: not a training state, or made from other inputs."""


def _plain(value: Any) -> str:
    """A configuration as comparable text (tuples and lists alike, as a saved state returns them)."""
    return json.dumps(value, sort_keys=True, default=str)


def distributed_setup() -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group when launched by torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    if not (dist.is_available() and dist.is_initialized()):
        return module
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


# ---------------------------------------------------------------- checkpoints

MODEL_KINDS = ("starflow", "diffusion")
PLAIN_VALUES = (str, int, float, bool, type(None))


def require_plain(value: Any, where: str) -> None:
    """TypeError naming the first value in ``value`` that is not a tensor, dict/list/tuple or plain
    scalar: checkpoints are read with torch.load(weights_only=True), which refuses anything else
    (a numpy scalar, a Path, a dataclass), so such a file could not be loaded again."""
    kind = type(value)
    if isinstance(value, torch.Tensor) or kind in PLAIN_VALUES:
        return
    if kind in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"{where} has a key {key!r} of type {type(key).__name__}; use str or int keys")
            require_plain(item, f"{where}[{key!r}]")
        return
    if kind in (list, tuple):
        for index, item in enumerate(value):
            require_plain(item, f"{where}[{index}]")
        return
    raise TypeError(f"{where} is a {kind.__module__}.{kind.__qualname__}; a checkpoint holds only tensors, "
                    "dict/list/tuple, str, int, float, bool and None (convert it, e.g. float(x) or str(path))")


def save_checkpoint(path: Path, model: nn.Module, ema: AveragedModel, optimizers: dict[str, torch.optim.Optimizer],
                    step: int, history: list[dict[str, float]], extra: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # torch's own state dicts load with weights_only=True; what this code and its callers add is checked
    described = {"kind": model.kind, "config": model.config.to_dict(), "step": step, "history": history, "extra": extra}
    require_plain(described, "training state")
    state = {**described, "model": model.state_dict(), "ema": ema.module.state_dict(),
             "ema_state": ema.state_dict(),  # with n_averaged: a resumed EMA keeps averaging
             "optimizers": {k: o.state_dict() for k, o in optimizers.items()}}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def export_weights(path: Path, model: nn.Module, info: dict[str, Any]) -> None:
    """The shippable file: kind, config, EMA weights (float32) and info; no optimiser state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    described = {"kind": model.kind, "config": model.config.to_dict(), "info": info}
    require_plain(described, "exported checkpoint")
    torch.save({**described, "weights": model.state_dict()}, path)


def model_from_state(state: dict[str, Any]) -> nn.Module:
    """An untrained model of the kind and config a saved state records (files without a kind are flows)."""
    kind = state.get("kind", "starflow")
    if kind == "starflow":
        return StarFlowV(StarFlowConfig.from_dict(state["config"]))
    if kind == "diffusion":
        from generator.video_diffusion import DiffusionConfig, VideoDiffusion

        return VideoDiffusion(DiffusionConfig.from_dict(state["config"]))
    raise ValueError(f"unknown model kind {kind!r}")


def read_model_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """An exported file's or training checkpoint's saved state, read without running code from it;
    ValueError naming the file when it is unsafe, unreadable or holds no generator."""
    state = read_checkpoint(path, map_location)
    if not isinstance(state, dict) or "config" not in state or not ("weights" in state or "ema" in state):
        raise ValueError(f"{path} is not a generator checkpoint (no config and weights); use a file that "
                         "`vbf train starflow` or `vbf train diffusion` wrote")
    kind = state.get("kind", "starflow")
    if kind not in MODEL_KINDS:
        raise ValueError(f"{path} holds a model of unknown kind {kind!r} (known: {', '.join(MODEL_KINDS)})")
    return state


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """A model from an exported file (``weights``) or a training checkpoint (its EMA weights)."""
    state = read_model_state(path, map_location)
    model = model_from_state(state)
    model.load_state_dict(state["weights"] if "weights" in state else state["ema"])
    return model.eval(), state.get("info", state.get("extra", {}))


# ---------------------------------------------------------------- the loop

def _lr_at(step: int, config: TrainConfig, base: float) -> float:
    if step < config.warmup_steps:
        return base * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def validate(model: nn.Module, batches: list[dict[str, Any]], seed: int = 1234) -> float:
    """Mean of the model's validation value over held-out clips (fixed noise, so values are
    comparable across steps): exact bits/dim for the flow, the loss for diffusion models."""
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    values = [model.validation_values(b["latents"].to(model.device), b["caption"], generator) for b in batches]
    return float(torch.cat(values).mean())


def train_model(model: nn.Module, train_batches: Iterator[dict[str, Any]], val_batches: list[dict[str, Any]],
                config: TrainConfig, *, checkpoint: Path | None = None, resume: bool = False,
                progress: bool = True, on_log: Callable[[dict[str, float]], None] | None = None,
                on_validate: Callable[[nn.Module], dict[str, float]] | None = None,
                identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``model`` in place; returns the history, the EMA model's final validation value and the
    seconds spent training (summed over every resumed run) with the number of steps they cover
    (fewer than all when a resumed training state was saved without its seconds).

    The model names its trainable ``parts()`` (each gets its own AdamW, DDP wrapper and gradient
    clipping), computes and backpropagates its losses in ``training_step(latents, captions,
    generator, modules)`` and scores held-out clips with ``validation_values`` (logged under
    ``validation_name``). ``on_validate(ema_model)`` adds its values to each validation record
    (e.g. what the model's samples show of their captions). ``identity`` names the inputs the run
    depends on beyond the model (e.g. a teacher's file hash); it is saved with the training state,
    and resuming a state saved with a different one raises :class:`ResumeError`. A state saved
    without one is resumed and keeps none: its inputs were never recorded, so it never looks checked.
    """
    rank, world, device = distributed_setup()
    torch.manual_seed(config.seed)
    model.to(device)
    parts: dict[str, nn.Module] = model.parts()
    base_lr = {name: config.denoiser_lr if name == "denoiser" else config.lr for name in parts}
    optimizers = {name: torch.optim.AdamW(part.parameters(), lr=base_lr[name], betas=config.betas,
                                          weight_decay=config.weight_decay) for name, part in parts.items()}
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))
    step, history, seconds_before, timed_from = 0, [], 0.0, 0
    if resume and checkpoint is not None and checkpoint.exists():
        try:
            state = read_checkpoint(checkpoint, map_location=device)
        except ValueError as error:
            raise ResumeError(str(error)) from None
        if not isinstance(state, dict) or "optimizers" not in state:
            raise ResumeError(f"{checkpoint} is not a training checkpoint (no optimiser state); nothing to resume")
        if state.get("kind") != model.kind or _plain(state.get("config")) != _plain(model.config.to_dict()):
            raise ResumeError(f"{checkpoint} is the training state of another model (kind {state.get('kind')!r}, "
                              "or another configuration); resuming would mix two runs")
        extra = state.get("extra", {})
        saved_identity = extra.get("identity")
        if saved_identity is None:
            # a state saved before identities were recorded: its inputs stay unknown, not checked
            if identity is not None:
                warnings.warn(f"{checkpoint} records no inputs (saved before they were recorded): resuming it "
                              f"without checking that it was trained from {identity}", stacklevel=2)
            identity = None
        elif identity is not None and saved_identity != identity:
            differs = ", ".join(f"{key} {saved_identity.get(key)!r} (now {identity.get(key)!r})"
                                for key in sorted({*saved_identity, *identity}) if saved_identity.get(key) != identity.get(key))
            raise ResumeError(f"{checkpoint} was trained from other inputs: {differs}; resuming would mix two runs")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema_state"])
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        step, history = state["step"], state["history"]
        # a resumed run's clock goes on; a training state saved without one is timed from its step on
        seconds_before = float(extra.get("train_seconds", 0.0))
        timed_from = int(extra.get("timed_from_step", 0)) if "train_seconds" in extra else step
        for _ in range(step):  # the batches a straight run would already have used
            next(train_batches)
    modules = {name: wrap_ddp(part, device) for name, part in parts.items()}
    first = next(iter(parts))
    bar = tqdm(total=config.steps, initial=step, desc=f"train {type(model).__name__}", disable=not progress or rank != 0)
    started, tokens_seen = time.perf_counter(), 0
    while step < config.steps:
        model.train()
        batch = next(train_batches)
        latents = batch["latents"].to(device)
        for name, opt in optimizers.items():
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, config, base_lr[name])
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        # every step's random draws come from (seed, rank, step): a resumed run repeats a straight one
        generator = torch.Generator().manual_seed((config.seed * 1_000_003 + rank) * 1_000_003 + step)
        losses = model.training_step(latents, batch["caption"], generator, modules)
        norms = {name: torch.nn.utils.clip_grad_norm_(part.parameters(), config.grad_clip) for name, part in parts.items()}
        for opt in optimizers.values():
            opt.step()
        ema.update_parameters(model)
        step += 1
        tokens_seen += latents.shape[0] * latents.shape[1] * latents.shape[2] * world
        bar.update()
        record = None
        if step % config.log_every == 0 or step == config.steps:
            elapsed = time.perf_counter() - started
            record = {"step": step, **losses, "grad_norm": norms[first].item(), "tokens_per_second": tokens_seen / elapsed}
        if rank == 0 and val_batches and (step % config.val_every == 0 or step == config.steps):
            record = record or {"step": step}
            record[model.validation_name] = validate(ema.module, val_batches)
            if on_validate is not None:
                record.update(on_validate(ema.module))
        if record is not None and rank == 0:
            history.append(record)
            bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k != "step"})
            if on_log:
                on_log(record)
        if rank == 0 and checkpoint is not None and (step % config.checkpoint_every == 0 or step == config.steps):
            save_checkpoint(checkpoint, model, ema, optimizers, step, history,
                            {"train_config": asdict(config), "train_seconds": seconds_before + time.perf_counter() - started,
                             "timed_from_step": timed_from, "identity": identity})
    bar.close()
    if world > 1:
        dist.barrier()
    model.load_state_dict(ema.module.state_dict())
    last = next((h[model.validation_name] for h in reversed(history) if model.validation_name in h), None)
    return {"history": history, "steps": step, "world_size": world, model.validation_name: last,
            "train_seconds": seconds_before + time.perf_counter() - started, "timed_steps": step - timed_from}
