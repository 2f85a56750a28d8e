"""Domain CLIP: a small open_clip model for the 64x64 shapes world, trained in this project.

Pretrained CLIPs were trained on photographs at 224 px and cannot be downloaded on every machine;
CLIPSIM on the shapes world needs a text-image model that reads *its* captions ("a large red
circle bouncing on a dark blue background"). This module defines one in open_clip's own config
format (the ``{"embed_dim", "vision_cfg", "text_cfg"}`` dict of open_clip's model_configs JSON
files, built with ``open_clip.CLIP(**cfg)`` exactly as ``open_clip.create_model`` does), tokenises
with open_clip's BPE tokenizer, and trains it with open_clip's ``ClipLoss`` (symmetric InfoNCE).

Compact vocabulary: a model built with ``vocab`` (the sorted open_clip BPE ids that occur in its
training captions, :func:`build_vocab`) has a text embedding table of ``len(vocab) + 2`` rows
instead of 49,408 (compact id 0 is padding, 1 is "unknown", then the vocabulary in ascending
open_clip id order), which takes the default model from about 8 M to 1.7 M parameters and its
checkpoint from ~32 MB to ~7 MB. :func:`tokenizer_for` returns the matching
:class:`CompactTokenizer`: open_clip's BPE tokenizer followed by the id map, any BPE token outside
the vocabulary becoming UNK. Ascending order keeps the end-of-text token (49407, the largest
open_clip id) the largest compact id, so open_clip's ``argmax`` text pooling still finds it. Such
a model is still an ``open_clip.CLIP`` built from an open_clip config (``vocab_size`` set to the
compact size), but it must be fed compact ids: open_clip's own tokenizer would index past its
table. Without a vocabulary the model keeps open_clip's full vocabulary and tokenizer.

It knows nothing about the shapes world itself (``metrics`` never imports the harness):
:func:`train_domain_clip` takes batches of ``(uint8 frames (B, 64, 64, 3), captions)`` and
:func:`zero_shot_accuracy` takes labelled frames and class prompts; ``scripts/train_domain_clip.py``
builds both from ``vbench_flow.data.shapes``.

A checkpoint (:func:`save_domain_clip`) is one torch file holding the model config, the
preprocessing config, the tokenizer settings (with the vocabulary, if any), the weights and an
``info`` dict (steps, seconds, losses, zero-shot accuracies); :func:`load_domain_clip` rebuilds the
model from it alone.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from metrics.files import file_sha256, read_checkpoint
from metrics.schedules import warmup_cosine

if TYPE_CHECKING:  # open_clip is imported where it is used: importing it costs seconds a run that scores no CLIP metric should not pay
    import open_clip
    from open_clip.loss import ClipLoss

FORMAT = "vbench-flow/domain-clip/1"
NAME = "shapes64"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "domain-clip-shapes64.pt"

# open_clip model config (same schema as open_clip/model_configs/*.json). vocab_size is open_clip's
# full BPE vocabulary; build_domain_clip(vocab=...) replaces it by the compact size (the shipped
# model is built that way by scripts/train_domain_clip.py). Context 40 because the longest
# shapes-world caption (3 objects, "falling under gravity", "zigzagging", a gradient background)
# is 39 tokens with start/end tokens, and 32 would cut the background off.
DOMAIN_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 128, "head_width": 32, "layers": 4},
    "text_cfg": {"context_length": 40, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4},
}


def preprocess_cfg(size: int) -> dict[str, Any]:
    """open_clip PreprocessCfg fields: standard CLIP preprocessing (shorter side to ``size``,
    bicubic, centre crop, OpenAI mean/std); 64x64 shapes-world frames pass through unresized."""
    import open_clip

    return {"size": size, "mode": "RGB", "mean": open_clip.OPENAI_DATASET_MEAN, "std": open_clip.OPENAI_DATASET_STD,
            "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0}

Batch = tuple[torch.Tensor | np.ndarray, Sequence[str]]

# Compact token ids: padding and unknown first, then the vocabulary in ascending open_clip id order.
PAD, UNK = 0, 1


# ---------------------------------------------------------------- tokenizers


@functools.lru_cache(maxsize=8)
def _bpe_tokenizer(context_length: int) -> open_clip.SimpleTokenizer:
    """One open_clip BPE tokenizer per context length (building one reads the merges file)."""
    import open_clip

    return open_clip.SimpleTokenizer(context_length=context_length)


def _special_ids() -> tuple[int, int, int]:
    """open_clip's (start-of-text, end-of-text, vocabulary size): 49406, 49407, 49408."""
    import open_clip

    bpe = _bpe_tokenizer(open_clip.tokenizer.DEFAULT_CONTEXT_LENGTH)
    return bpe.sot_token_id, bpe.eot_token_id, bpe.vocab_size


def build_vocab(texts: Iterable[str]) -> list[int]:
    """The sorted open_clip BPE ids that occur in ``texts``, start- and end-of-text included.

    Texts are encoded whole (no context-length cut), so a long text still contributes all its
    tokens. Id 0 (the BPE token "!") is left out: open_clip pads with 0, so after tokenisation it
    means padding.
    """
    import open_clip

    bpe = _bpe_tokenizer(open_clip.tokenizer.DEFAULT_CONTEXT_LENGTH)
    ids = {bpe.sot_token_id, bpe.eot_token_id}
    for text in texts:
        ids.update(bpe.encode(text))
    ids.discard(0)
    return sorted(ids)


def check_vocab(vocab: Sequence[int]) -> list[int]:
    """``vocab`` as a list of ints after checking it is a usable compact vocabulary: distinct
    open_clip ids in 1..49407 in ascending order, start- and end-of-text included."""
    sot, eot, size = _special_ids()
    ids = [int(i) for i in vocab]
    if any(int(i) != i for i in vocab):
        raise ValueError("vocab must hold integer open_clip token ids")
    if not ids or any(not 0 < i < size for i in ids):
        raise ValueError(f"vocab must be a non-empty list of open_clip token ids in 1..{size - 1} "
                         "(0 is padding); build it with build_vocab(captions)")
    if any(a >= b for a, b in zip(ids, ids[1:])):
        raise ValueError("vocab must be sorted ascending without repeats, so that end-of-text keeps the largest "
                         "compact id (open_clip pools the text at the argmax token); build it with build_vocab")
    if sot not in ids or eot not in ids:
        raise ValueError(f"vocab must contain the start- and end-of-text tokens ({sot}, {eot}); "
                         "build it with build_vocab(captions)")
    return ids


class CompactTokenizer:
    """open_clip's BPE tokenizer followed by a map from open_clip ids to compact ids.

    Called like ``open_clip.SimpleTokenizer``: ``tokenizer(texts, context_length=None)`` with a
    string or a list of strings gives a LongTensor (B, context_length). Compact ids: 0 padding,
    1 (UNK) for any BPE token outside the vocabulary, then ``vocab[k]`` -> ``k + 2``; the
    end-of-text token gets the largest id, ``len(vocab) + 1``. Truncation is open_clip's (cut to
    the context length, end-of-text in the last place).
    """

    def __init__(self, vocab: Sequence[int], context_length: int = 77) -> None:
        self.vocab = check_vocab(vocab)
        self.context_length = int(context_length)
        self.bpe = _bpe_tokenizer(self.context_length)
        self.vocab_size = len(self.vocab) + 2
        lookup = torch.full((self.bpe.vocab_size,), UNK, dtype=torch.long)
        lookup[torch.tensor(self.vocab)] = torch.arange(2, self.vocab_size)
        lookup[0] = PAD
        self.lookup = lookup
        self.pad_token_id, self.unk_token_id = PAD, UNK
        self.sot_token_id = int(lookup[self.bpe.sot_token_id])
        self.eot_token_id = int(lookup[self.bpe.eot_token_id])

    def __repr__(self) -> str:
        return f"CompactTokenizer({len(self.vocab)} BPE tokens + PAD, UNK; context_length={self.context_length})"

    def to_compact(self, ids: torch.Tensor) -> torch.Tensor:
        """open_clip token ids (any shape) -> compact ids."""
        return self.lookup[torch.as_tensor(ids, dtype=torch.long)]

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.LongTensor:
        return self.to_compact(self.bpe(texts, context_length=context_length or self.context_length))


# ---------------------------------------------------------------- model


def build_domain_clip(config: Mapping[str, Any] | None = None, *, vocab: Sequence[int] | None = None,
                      seed: int | None = 0) -> open_clip.CLIP:
    """A randomly initialised ``open_clip.CLIP`` from an open_clip config dict (default
    :data:`DOMAIN_CLIP_CONFIG`), with its preprocessing config attached.

    With ``vocab`` (sorted open_clip BPE ids, :func:`build_vocab`) the text tower's ``vocab_size``
    becomes ``len(vocab) + 2`` and the model reads compact ids (:class:`CompactTokenizer`);
    without it the config's vocabulary (open_clip's full one by default) is used as is.
    ``seed`` makes the initialisation reproducible without touching the global RNG; None uses it.
    The config (with the effective ``vocab_size``) and the vocabulary are kept on the model
    (``model.model_cfg``, ``model.vocab``, None without one) so :func:`save_domain_clip` can
    store them.
    """
    import open_clip

    cfg = copy.deepcopy(dict(config if config is not None else DOMAIN_CLIP_CONFIG))
    missing = {"embed_dim", "vision_cfg", "text_cfg"} - set(cfg)
    if missing:
        raise ValueError("an open_clip model config needs embed_dim, vision_cfg and text_cfg; "
                         f"missing {sorted(missing)}")
    if vocab is not None:
        vocab = check_vocab(vocab)
        text_cfg = dict(cfg["text_cfg"])
        if text_cfg.get("hf_model_name"):
            raise ValueError("a compact vocabulary needs open_clip's own text tower, not an HF one")
        if text_cfg.get("pool_type", "argmax") != "argmax" or text_cfg.get("embed_cls"):
            raise ValueError("a compact vocabulary relies on open_clip's argmax text pooling (end-of-text has the "
                             f"largest compact id); got pool_type={text_cfg.get('pool_type')!r}, "
                             f"embed_cls={text_cfg.get('embed_cls')!r}")
        text_cfg["vocab_size"] = len(vocab) + 2
        cfg["text_cfg"] = text_cfg
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = open_clip.CLIP(**copy.deepcopy(cfg))
    open_clip.set_model_preprocess_cfg(model, preprocess_cfg(cfg["vision_cfg"].get("image_size", 224)))
    model.model_cfg = cfg
    model.vocab = vocab
    return model.eval()


def model_config(model: torch.nn.Module) -> dict[str, Any]:
    """The open_clip config a domain model was built from (see :func:`build_domain_clip`)."""
    cfg = getattr(model, "model_cfg", None)
    if not isinstance(cfg, dict):
        raise ValueError("this model was not built by build_domain_clip/load_domain_clip (no model_cfg attribute)")
    return copy.deepcopy(cfg)


def model_vocab(model: torch.nn.Module) -> list[int] | None:
    """The compact vocabulary of a domain model (sorted open_clip ids), None for the full one."""
    model_config(model)  # raises for a model not built here
    vocab = getattr(model, "vocab", None)
    return None if vocab is None else list(vocab)


def tokenizer_for(model_or_config: torch.nn.Module | Mapping[str, Any], *,
                  vocab: Sequence[int] | None = None) -> CompactTokenizer | open_clip.SimpleTokenizer:
    """The tokenizer a domain model reads, with its context length: a :class:`CompactTokenizer`
    for a model with a compact vocabulary (``model.vocab``), else open_clip's BPE tokenizer (what
    ``open_clip.get_tokenizer`` returns for a config without an HF text tower). Both are called as
    ``tokenizer(list_of_texts) -> LongTensor (B, context_length)``. For a config dict, pass the
    model's ``vocab`` if it has one."""
    if isinstance(model_or_config, Mapping):
        cfg = model_or_config
    else:
        cfg = model_config(model_or_config)
        if vocab is None:
            vocab = model_vocab(model_or_config)
    context_length = int(cfg["text_cfg"].get("context_length", 77))
    if vocab is None:
        return _bpe_tokenizer(context_length)
    tokenizer = CompactTokenizer(vocab, context_length)
    expected = int(cfg["text_cfg"].get("vocab_size", 49408))
    if tokenizer.vocab_size != expected:
        raise ValueError(f"a vocabulary of {len(tokenizer.vocab)} tokens gives {tokenizer.vocab_size} compact ids, "
                         f"but the model's text tower has vocab_size {expected}")
    return tokenizer


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def frames_to_input(frames: torch.Tensor | np.ndarray, model: torch.nn.Module) -> torch.Tensor:
    """uint8 frames (B, H, W, 3) already at the model's square input size -> normalised (B, 3, H, W).

    The tensor shortcut of open_clip's eval transform for frames that need no resize or crop
    (ToTensor's /255, then Normalize), used for training and zero-shot evaluation where
    per-image PIL round trips would cost more than the model; other sizes raise ValueError.
    """
    import open_clip

    x = torch.as_tensor(frames)
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg["size"] if isinstance(cfg["size"], int) else tuple(cfg["size"])[0]
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3 or tuple(x.shape[1:3]) != (size, size):
        raise ValueError(f"frames: expected uint8 (B, {size}, {size}, 3), got {x.dtype} {tuple(x.shape)}; "
                         "other sizes go through the full CLIP transform (metrics.clipsim.ClipScorer)")
    device = next(model.parameters()).device
    mean = torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1)
    return (x.to(device).permute(0, 3, 1, 2).float() / 255.0 - mean) / std


# ---------------------------------------------------------------- training


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """open_clip's training convention: no weight decay on gains, biases, norms and the logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if skip else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def contrastive_loss(model: open_clip.CLIP, frames: torch.Tensor | np.ndarray, captions: Sequence[str],
                     loss_fn: ClipLoss | None = None, *,
                     tokenizer: Callable[[list[str]], torch.Tensor] | None = None) -> torch.Tensor:
    """open_clip's ClipLoss (mean of image->text and text->image cross-entropy) on one batch
    (captions tokenised by ``tokenizer``, default :func:`tokenizer_for` the model)."""
    from open_clip.loss import ClipLoss

    if len(captions) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(captions)} captions")
    device = next(model.parameters()).device
    tokens = (tokenizer or tokenizer_for(model))(list(captions)).to(device)
    image_features, text_features, logit_scale = model(frames_to_input(frames, model), tokens)[:3]
    return (loss_fn or ClipLoss())(image_features, text_features, logit_scale)


@torch.no_grad()
def evaluate_loss(model: open_clip.CLIP, frames: torch.Tensor | np.ndarray, captions: Sequence[str]) -> float:
    """The contrastive loss on a fixed batch, in eval mode (for before/after comparisons)."""
    was_training = model.training
    model.eval()
    try:
        return float(contrastive_loss(model, frames, captions))
    finally:
        model.train(was_training)


def train_domain_clip(batches: Iterable[Batch], *, steps: int, lr: float = 1e-3, weight_decay: float = 0.1,
                      warmup_steps: int = 100, config: Mapping[str, Any] | None = None,
                      vocab: Sequence[int] | None = None, seed: int = 0, model: open_clip.CLIP | None = None,
                      device: str = "cpu", progress: bool = True,
                      log_every: int = 50) -> tuple[open_clip.CLIP, dict[str, Any]]:
    """Train a domain CLIP contrastively on ``(frames uint8 (B, S, S, 3), captions)`` batches.

    ``steps`` optimizer steps of AdamW (betas 0.9/0.98, eps 1e-6, open_clip's ViT settings) with a
    warm-up + cosine schedule; the logit scale is clamped to [0, ln 100] after every step, as
    open_clip's trainer does. A fresh model comes from ``config``, ``vocab`` and ``seed`` unless
    ``model`` is given. Returns the model in eval mode and an info dict (steps, seconds,
    seconds_per_step, hyper-parameters, parameter count, text ``vocab_size``, losses logged every
    ``log_every`` steps as smoothed means).
    """
    from open_clip.loss import ClipLoss

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if model is None:
        model = build_domain_clip(config, vocab=vocab, seed=seed)
    model.to(device).train()
    tokenizer = tokenizer_for(model)
    optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    warmup_steps = min(warmup_steps, steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup_steps, steps))
    loss_fn = ClipLoss()
    log: list[dict[str, float]] = []
    window: list[float] = []
    batch_size = 0
    iterator = iter(batches)
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="domain-clip", disable=not progress, dynamic_ncols=True)
    for step in bar:
        try:
            frames, captions = next(iterator)
        except StopIteration:
            raise ValueError(f"batches ran out after {step} of {steps} steps; pass an endless iterator") from None
        batch_size = len(captions)
        loss = contrastive_loss(model, frames, captions, loss_fn, tokenizer=tokenizer)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0.0, math.log(100.0))
        window.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            log.append({"step": step + 1, "loss": float(np.mean(window)), "lr": optimizer.param_groups[0]["lr"],
                        "logit_scale": model.logit_scale.exp().item(),
                        "seconds": time.perf_counter() - start})
            bar.set_postfix(loss=f"{log[-1]['loss']:.3f}", scale=f"{log[-1]['logit_scale']:.1f}")
            window = []
    seconds = time.perf_counter() - start
    info = {"steps": steps, "seconds": seconds, "seconds_per_step": seconds / steps, "batch_size": batch_size,
            "lr": lr, "weight_decay": weight_decay, "warmup_steps": warmup_steps, "seed": seed,
            "loss": "open_clip.loss.ClipLoss", "optimizer": "AdamW(0.9, 0.98, eps=1e-6) warmup+cosine",
            "parameters": parameter_count(model), "vocab_size": int(model.vocab_size), "log": log}
    return model.eval(), info


# ---------------------------------------------------------------- zero-shot evaluation


@torch.no_grad()
def class_embeddings(model: open_clip.CLIP, prompts: Mapping[str, Sequence[str]]) -> tuple[list[str], torch.Tensor]:
    """One unit vector per class: the normalised mean of its prompts' normalised text embeddings
    (CLIP's prompt ensembling; a single prompt is just its embedding)."""
    classes = list(prompts)
    if not classes or any(not list(prompts[c]) for c in classes):
        raise ValueError("every class needs at least one prompt")
    device = next(model.parameters()).device
    tokenizer = tokenizer_for(model)
    rows = []
    for c in classes:
        text = model.encode_text(tokenizer(list(prompts[c])).to(device), normalize=True)
        rows.append(F.normalize(text.mean(dim=0), dim=-1))
    return classes, torch.stack(rows)


@torch.no_grad()
def image_embeddings(model: open_clip.CLIP, frames: torch.Tensor | np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised image embeddings (N, D) of uint8 frames at the model's input size."""
    model.eval()
    return torch.cat([model.encode_image(frames_to_input(frames[i:i + batch_size], model), normalize=True)
                      for i in range(0, len(frames), batch_size)])


def zero_shot_accuracy(model: open_clip.CLIP, frames: torch.Tensor | np.ndarray, labels: Mapping[str, Sequence[str]],
                       prompts: Mapping[str, Mapping[str, Sequence[str]]]) -> dict[str, float]:
    """Zero-shot classification accuracy per task.

    ``labels[task][i]`` is the true class of ``frames[i]`` for that task (e.g. ``"colour"``:
    ``"red"``), ``prompts[task][class]`` the prompts of each class (e.g. ``["a red shape"]``). Each
    frame is assigned the class whose prompt embedding has the highest cosine with its image
    embedding; the result maps each task to the fraction of frames classified correctly.
    """
    if set(labels) != set(prompts):
        raise ValueError(f"labels and prompts must name the same tasks, got {sorted(labels)} and {sorted(prompts)}")
    images = image_embeddings(model, frames)
    result = {}
    for task, truth in labels.items():
        if len(truth) != len(images):
            raise ValueError(f"{task}: {len(truth)} labels for {len(images)} frames")
        classes, text = class_embeddings(model, prompts[task])
        unknown = set(truth) - set(classes)
        if unknown:
            raise ValueError(f"{task}: labels {sorted(unknown)} have no prompts")
        predicted = (images @ text.T).argmax(dim=1).tolist()
        result[task] = float(np.mean([classes[p] == t for p, t in zip(predicted, truth)]))
    return result


# ---------------------------------------------------------------- checkpoints


def save_domain_clip(path: str | Path, model: open_clip.CLIP, info: Mapping[str, Any] | None = None,
                     *, name: str = NAME) -> Path:
    """Write model config, preprocessing config, tokenizer settings (with the compact vocabulary,
    if the model has one), float32 weights and ``info`` to one torch file (atomically: a partly
    written file never replaces a good one)."""
    import open_clip

    path = Path(path)
    cfg = model_config(model)
    vocab = model_vocab(model)
    context_length = int(cfg["text_cfg"].get("context_length", 77))
    if vocab is None:
        tokenizer = {"kind": "open_clip.SimpleTokenizer", "context_length": context_length}
    else:
        tokenizer = {"kind": "compact open_clip BPE", "context_length": context_length, "vocab": vocab,
                     "pad_id": PAD, "unk_id": UNK}
    preprocess = open_clip.get_model_preprocess_cfg(model)
    checkpoint = {
        "format": FORMAT,
        "name": name,
        "model_cfg": cfg,
        "preprocess_cfg": {k: (list(v) if isinstance(v, tuple) else v) for k, v in preprocess.items()},
        "tokenizer": tokenizer,
        "state_dict": {k: v.detach().to("cpu", torch.float32).clone() for k, v in model.state_dict().items()},
        "info": dict(info or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)
    return path


def load_domain_clip(path: str | Path = DEFAULT_CHECKPOINT,
                     device: str = "cpu") -> tuple[open_clip.CLIP, dict[str, Any]]:
    """The model (eval mode) and the checkpoint's metadata (everything but the weights, plus
    ``sha256`` of the file). A missing file raises FileNotFoundError saying how to make it."""
    import open_clip

    path = Path(path)
    checkpoint = read_checkpoint(path, name="domain-CLIP", expected_format=FORMAT,
                                 train_script="scripts/train_domain_clip.py", default_path=DEFAULT_CHECKPOINT,
                                 hint="; open_clip weights for a named architecture go through ClipScorer.from_open_clip")
    model = build_domain_clip(checkpoint["model_cfg"], vocab=(checkpoint.get("tokenizer") or {}).get("vocab"),
                              seed=None)
    preprocess = {k: (tuple(v) if isinstance(v, list) else v) for k, v in checkpoint["preprocess_cfg"].items()}
    open_clip.set_model_preprocess_cfg(model, preprocess)
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    meta = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    meta["sha256"] = file_sha256(path)
    return model.to(device).eval(), meta
