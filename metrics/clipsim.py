"""CLIPSIM: text-video alignment as the mean CLIP cosine between each frame and the prompt.

Per video (Wu et al. 2021, as VBench/EvalCrafter report it)::

    CLIPSIM = 1/T * sum_t cos(E_img(frame_t), E_txt(prompt))

with both embeddings L2-normalised, i.e. the mean over frames of the per-frame cosine (not the
cosine of an averaged embedding), reported as the raw cosine in [-1, 1] (about 0.24-0.32 on
MSR-VTT with OpenAI ViT-B/32). Per set: the mean over videos (:class:`ClipsimAccumulator`).
A x100 scale is an option (``scale=100``), never the default, and is named in the version
string. No clamp is applied: torchmetrics' ``CLIPScore`` returns ``max(100 * mean cos, 0)`` with
HF weights, and its values must not be mixed with these.

Frames are preprocessed by open_clip's own eval transform for the model (resize of the shorter
side, bicubic, to the model's input size, centre crop, /255, CLIP mean/std normalisation), one
PIL image per frame, then encoded in batches.

A :class:`ClipScorer` is either a standard open_clip model from local weights
(:meth:`ClipScorer.from_open_clip`; nothing is ever downloaded) or the project's shapes-world
domain CLIP (:meth:`ClipScorer.from_domain_checkpoint`, see ``metrics.domain_clip``). Its
``extractor`` names the model and weights; values from different extractors are never compared.

The domain CLIP reads a compact vocabulary (the BPE tokens of the shapes-world captions), so its
scorer tokenises with ``metrics.domain_clip.CompactTokenizer``: a prompt with words outside that
vocabulary still scores, each unseen BPE token read as one "unknown" token (UNK), which is all
such a word can mean to a model that never saw it.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
import torch
import torch.nn.functional as F
from PIL import Image

from metrics.domain_clip import DEFAULT_CHECKPOINT, load_domain_clip, tokenizer_for
from metrics.files import file_sha256
from metrics.drift import drift_metric
from metrics.streaming import (ClipContext, Device, Metric, MetricArgs, MetricSetupError, PerFrameMetric, frame_digest,
                               resolve_device, rows_once_per_clip, share_with_others)
from metrics.video import check_video

HIGHER_IS_BETTER = True
DEFINITION = "clipsim/1"
SCALES = (1.0, 100.0)
# Where from_open_clip looks first for the weights of a pretrained tag.
OPEN_CLIP_DIR = Path.home() / ".cache" / "vbench-flow" / "open_clip"
OPEN_CLIP_URL_CACHE = Path.home() / ".cache" / "clip"  # open_clip's own download cache for URL weights
HF_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _describe_preprocess(cfg: dict[str, Any]) -> str:
    """What open_clip's eval transform does with this PreprocessCfg, in words for the version string."""
    # open_clip is imported where it is used: it costs seconds a run scoring no CLIP metric should not pay
    import open_clip
    from open_clip.transform import PreprocessCfg

    cfg = {**asdict(PreprocessCfg()), **cfg}
    size = cfg["size"] if isinstance(cfg["size"], int) else "x".join(str(s) for s in cfg["size"])
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    norm = ("CLIP mean/std" if (mean, std) == (open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
            else f"mean {list(mean)} std {list(std)}")
    geometry = {"shortest": f"shorter side {cfg['interpolation']} resize to {size}, centre crop {size}",
                "longest": f"longer side {cfg['interpolation']} resize to {size}, centre pad {size}",
                "squash": f"{cfg['interpolation']} resize to {size}x{size} (aspect not kept)"}[cfg["resize_mode"]]
    return f"open_clip eval transform: {geometry}, /255, {norm}"


def metric_version(*, scale: float = 1.0, preprocess: str | None = None) -> str:
    """Version string of one CLIPSIM variant (``preprocess``: the transform in words, default
    open_clip's standard one); values with different strings are not comparable."""
    if scale not in SCALES:
        raise ValueError(f"scale must be 1 (raw cosine, the default) or 100, got {scale!r}")
    preprocess = preprocess if preprocess is not None else _describe_preprocess({})
    scaled = "raw cosine" if scale == 1.0 else "x100 cosine"
    return (f"{DEFINITION} (mean over frames of cos(L2-normalised image emb, L2-normalised text emb), "
            f"{scaled}, no clamp; {preprocess})")


# ---------------------------------------------------------------- locating open_clip weights


def default_weights_path(name: str, tag: str, suffix: str = ".safetensors") -> Path:
    """Where to save the weights of open_clip model ``name`` with pretrained ``tag`` for this project
    (a ``.safetensors`` file, or a torch state dict as ``.pt``)."""
    return OPEN_CLIP_DIR / f"{name}-{tag}{suffix}"


def _hf_files(hf_hub: str) -> tuple[str, list[str]]:
    """open_clip's ``hf_hub`` field: "org/repo/filename", or "org/repo/" for the default files."""
    repo, _, filename = hf_hub.rpartition("/")
    return repo, [filename] if filename else list(HF_FILENAMES)


def _where_to_get(name: str, tag: str, cfg: dict[str, Any]) -> str:
    """Download sources paired with the local path each should be saved as."""
    lines = []
    if cfg.get("hf_hub"):
        repo, files = _hf_files(cfg["hf_hub"])
        for f in files:
            target = default_weights_path(name, tag, ".safetensors" if f.endswith(".safetensors") else ".pt")
            lines.append(f"https://huggingface.co/{repo}/resolve/main/{f} -> {target}")
    if cfg.get("url"):
        lines.append(f"{cfg['url']} -> {default_weights_path(name, tag, '.pt')}")
    return "; ".join(lines) or "no known source"


def _tag_candidates(name: str, tag: str, cfg: dict[str, Any]) -> list[Path]:
    """Local places the weights of a tag may already be: ours first, then HF's and open_clip's caches."""
    candidates = [default_weights_path(name, tag, suffix) for suffix in (".safetensors", ".pt", ".bin")]
    if cfg.get("hf_hub"):
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # no HF hub installed: our directory and the URL cache still count
            try_to_load_from_cache = None
        repo, files = _hf_files(cfg["hf_hub"])
        for f in files if try_to_load_from_cache else []:
            found = try_to_load_from_cache(repo, f)  # local lookup only, never a download
            if isinstance(found, str):
                candidates.append(Path(found))
    if cfg.get("url"):
        candidates.append(OPEN_CLIP_URL_CACHE / Path(cfg["url"]).name)
    return candidates


def _is_torchscript(path: Path) -> bool:
    """OpenAI's original CLIP files are TorchScript archives (a code/ folder in the zip)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.split("/", 1)[-1].startswith("code/") for n in archive.namelist())


def _needs_unsafe_load(path: Path, cfg: dict[str, Any]) -> bool:
    """True for a TorchScript file that torch.load(weights_only=True) refuses. Allowed only when it is
    the published OpenAI file (its sha256 is in the URL); any other one raises ValueError."""
    if not _is_torchscript(path):
        return False
    url = cfg.get("url", "")
    expected = url.split("/")[-2] if "openaipublic" in url else ""
    if expected and file_sha256(path).startswith(expected):
        return True
    raise ValueError(f"{path} is a TorchScript archive, which torch.load(weights_only=True) cannot read and which "
                     "is not the published OpenAI file; use the open_clip .safetensors or state-dict weights instead")


def resolve_open_clip_weights(name: str, pretrained: str | Path) -> tuple[Path, dict[str, Any]]:
    """The local weights file for ``pretrained`` (a tag of ``name`` or a file path) and the tag's
    config (empty for a path). Raises FileNotFoundError saying where to put the file."""
    import open_clip

    if name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {name!r}; open_clip.list_models() has e.g. ViT-B-32, ViT-L-14")
    cfg = dict(open_clip.get_pretrained_cfg(name, str(pretrained))) if isinstance(pretrained, str) else {}
    if cfg:
        candidates = _tag_candidates(name, str(pretrained), cfg)
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FileNotFoundError(
                f"open_clip weights for {name} '{pretrained}' not found locally (looked at "
                f"{', '.join(str(c) for c in candidates)}). Save one of these files (source -> local path): "
                f"{_where_to_get(name, str(pretrained), cfg)}; or pass the file's path as pretrained. "
                "Nothing is downloaded automatically.")
        return found, cfg
    path = Path(pretrained).expanduser()
    if not path.is_file():
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise FileNotFoundError(
            f"open_clip weights file {path} not found, and {str(pretrained)!r} is not a pretrained tag of {name} "
            f"(its tags: {', '.join(tags) or 'none'}). Put the weights at {path}, or name a tag and save its "
            f"weights as {default_weights_path(name, '<tag>')}.")
    return path, {}


# ---------------------------------------------------------------- the scorer


class ClipScorer:
    """A CLIP model, its preprocessing and tokenizer, named by ``extractor``, scoring uint8 videos.

    Text embeddings are cached per prompt (a suite scores each prompt for many seeds).
    """

    def __init__(self, model: torch.nn.Module, preprocess: Callable[[Image.Image], torch.Tensor],
                 tokenizer: Callable[[list[str]], torch.Tensor], *, extractor: str, batch_size: int = 64,
                 device: str | torch.device = "cpu", scale: float = 1.0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        import open_clip

        self.preprocessing = _describe_preprocess(dict(open_clip.get_model_preprocess_cfg(model)))
        self.version = metric_version(scale=scale, preprocess=self.preprocessing)
        self.model = model.to(device).eval()
        self.preprocess, self.tokenizer = preprocess, tokenizer
        self.extractor, self.batch_size, self.device, self.scale = extractor, batch_size, torch.device(device), scale
        self._text_cache: dict[str, torch.Tensor] = {}

    def __repr__(self) -> str:
        return f"ClipScorer({self.extractor!r}, scale={self.scale:g})"

    @property
    def embedding_key(self) -> str:
        """What a frame's image embedding depends on (the weights and the preprocessing): the key
        under which the metrics of one clip share it (CLIPSIM, its drift, offline consistency)."""
        return f"image embeddings {self.extractor} {self.preprocessing}"

    @classmethod
    def from_open_clip(cls, name: str, pretrained: str | Path, *, quick_gelu: bool | None = None,
                       batch_size: int = 64, device: str = "cpu", scale: float = 1.0) -> ClipScorer:
        """An open_clip model from local weights: ``pretrained`` is a tag (e.g. "openai", looked up in
        :data:`OPEN_CLIP_DIR` and the open_clip / HF caches) or a weights file.

        A tag brings its own preprocessing and activation (OpenAI weights need QuickGELU); for a bare
        file the model name's config decides (use e.g. "ViT-B-32-quickgelu" for OpenAI weights) unless
        ``quick_gelu`` is given. The extractor is "open_clip NAME TAG", or for a file
        "open_clip NAME FILENAME sha256:PREFIX".
        """
        import open_clip

        path, cfg = resolve_open_clip_weights(name, pretrained)
        if quick_gelu is None:
            quick_gelu = bool(cfg.get("quick_gelu", False))
        overrides = {k: cfg[c] for k, c in (("image_mean", "mean"), ("image_std", "std"),
                                            ("image_interpolation", "interpolation"),
                                            ("image_resize_mode", "resize_mode")) if c in cfg}
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=str(path), force_quick_gelu=quick_gelu, pretrained_image=False, pretrained_text=False,
            device=device, weights_only=not _needs_unsafe_load(path, cfg), **overrides)
        extractor = (f"open_clip {name} {pretrained}" if cfg
                     else f"open_clip {name} {path.name} sha256:{file_sha256(path)[:12]}")
        if quick_gelu != bool(cfg.get("quick_gelu", False)) and "quickgelu" not in name.lower():
            extractor += f" quick_gelu={quick_gelu}"
        return cls(model, preprocess, open_clip.get_tokenizer(name), extractor=extractor, batch_size=batch_size,
                   device=device, scale=scale)

    @classmethod
    def from_domain_checkpoint(cls, path: str | Path = DEFAULT_CHECKPOINT, *, batch_size: int = 64,
                               device: str = "cpu", scale: float = 1.0) -> ClipScorer:
        """The shapes-world domain CLIP from a ``metrics.domain_clip`` checkpoint; extractor
        "domain-clip NAME SHA256-PREFIX" (the file's hash, so retrained weights never compare).

        The tokenizer is the checkpoint's own (``metrics.domain_clip.tokenizer_for``): for a model
        with a compact vocabulary, open_clip's BPE tokens mapped to compact ids. Prompts with words
        outside the vocabulary still score: their unseen BPE tokens become UNK (compact id 1), so
        such a word contributes "some unknown word" to the text embedding, not an error.
        """
        import open_clip
        from open_clip.transform import PreprocessCfg, image_transform_v2

        model, meta = load_domain_clip(path, device=device)
        preprocess = image_transform_v2(PreprocessCfg(**open_clip.get_model_preprocess_cfg(model)), is_train=False)
        extractor = f"domain-clip {meta['name']} {meta['sha256'][:12]}"
        return cls(model, preprocess, tokenizer_for(model), extractor=extractor, batch_size=batch_size,
                   device=device, scale=scale)

    # ------------------------------------------------------------ embeddings

    def preprocess_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (T, H, W, 3) -> the model's input (T, 3, S, S), one open_clip transform per frame."""
        frames = check_video(frames)
        return torch.stack([self.preprocess(Image.fromarray(np.ascontiguousarray(f))) for f in frames])

    @torch.inference_mode()
    def image_embeddings(self, frames: np.ndarray) -> torch.Tensor:
        """L2-normalised image embeddings (T, D), float64, encoded ``batch_size`` frames at a time."""
        frames = check_video(frames)
        chunks = []
        for start in range(0, frames.shape[0], self.batch_size):
            x = self.preprocess_frames(frames[start:start + self.batch_size]).to(self.device)
            chunks.append(self.model.encode_image(x).double())
        return F.normalize(torch.cat(chunks), dim=-1)

    @torch.inference_mode()
    def text_embedding(self, prompt: str) -> torch.Tensor:
        """L2-normalised text embedding (D,), float64 (with a compact-vocabulary domain model, words
        outside its vocabulary are read as UNK tokens; see :meth:`from_domain_checkpoint`)."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
        if prompt not in self._text_cache:
            tokens = self.tokenizer([prompt]).to(self.device)
            self._text_cache[prompt] = F.normalize(self.model.encode_text(tokens).double()[0], dim=-1)
        return self._text_cache[prompt]

    # ------------------------------------------------------------ the metric

    def score_per_frame(self, frames: np.ndarray, prompt: str) -> np.ndarray:
        """Per-frame ``scale * cos(E_img(frame_t), E_txt(prompt))``, shape (T,), float64."""
        text = self.text_embedding(prompt)
        return (self.image_embeddings(frames) @ text).cpu().numpy() * self.scale

    def score(self, frames: np.ndarray, prompt: str) -> float:
        """CLIPSIM of one video: the mean of :meth:`score_per_frame` over its frames."""
        return float(self.score_per_frame(frames, prompt).mean())

    def accumulator(self) -> ClipsimAccumulator:
        return ClipsimAccumulator(extractor=self.extractor, version=self.version)


class Clipsim(PerFrameMetric):
    """CLIPSIM of one clip against its prompt, streamed: one cosine per frame, encoded per chunk."""

    name = "clipsim"
    higher_is_better = HIGHER_IS_BETTER

    def __init__(self, model: ClipScorer, prompt: str, fps: float = 1.0, *, cache: dict | None = None,
                 owner: object = None) -> None:
        self.model, self.prompt = model, prompt
        self.extractor, self.version = model.extractor, model.version
        self.cache, self.cache_key = share_with_others(cache, model.embedding_key, owner or self)
        super().__init__(fps)

    def frame_values(self, chunk: np.ndarray) -> np.ndarray:
        rows = rows_once_per_clip(self.cache, self.cache_key, chunk, frame_digest,
                                  lambda indices: self.model.image_embeddings(chunk[indices]))
        return (torch.stack(rows) @ self.model.text_embedding(self.prompt)).cpu().numpy() * self.model.scale


def clipsim(frames: np.ndarray, prompt: str, model: ClipScorer) -> float:
    """CLIPSIM of one uint8 video (T, H, W, 3) against its prompt with ``model``; higher is better."""
    return Clipsim(model, prompt).score(frames).value


def clipsim_per_frame(frames: np.ndarray, prompt: str, model: ClipScorer) -> np.ndarray:
    """Per-frame cosines (T,), for plots of alignment over time in long videos."""
    return model.score_per_frame(frames, prompt)


@dataclass
class ClipsimAccumulator:
    """Set-level CLIPSIM (mean over videos) from sums, so shards merge exactly."""

    extractor: str
    version: str
    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    def update(self, value: float) -> ClipsimAccumulator:
        """Add one video's CLIPSIM; returns self."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"CLIPSIM value must be finite, got {value}")
        self.count += 1
        self.total += value
        self.total_sq += value * value
        return self

    def merge(self, other: ClipsimAccumulator) -> ClipsimAccumulator:
        """A new accumulator for both sets; refuses sets scored with a different extractor or version."""
        if (self.extractor, self.version) != (other.extractor, other.version):
            raise ValueError(f"cannot merge CLIPSIM from {other.extractor!r} / {other.version!r} into "
                             f"{self.extractor!r} / {self.version!r}: different extractors are not comparable")
        return ClipsimAccumulator(self.extractor, self.version, self.count + other.count,
                                  self.total + other.total, self.total_sq + other.total_sq)

    def compute(self) -> float:
        """The mean CLIPSIM over the videos added."""
        if self.count == 0:
            raise ValueError("no videos were added")
        return self.total / self.count

    def std(self) -> float:
        """Sample standard deviation over videos (0 for one video)."""
        if self.count < 2:
            return 0.0
        return math.sqrt(max(0.0, (self.total_sq - self.total ** 2 / self.count) / (self.count - 1)))


class ClipsimArgs(MetricArgs):
    model: str = Field("domain", description="'domain' (the shipped shapes-world CLIP, or a domain checkpoint "
                       "given as checkpoint:) or an open_clip architecture name, e.g. ViT-B-32")
    pretrained: str | None = Field(None, description="open_clip: a pretrained tag (e.g. openai) or a local weights file")
    checkpoint: str | None = Field(None, description="domain: a domain-CLIP .pt file (default: the shipped one)")
    device: Device = Field("auto", description="where the image and text towers run (auto: CUDA when present)")


class ClipsimMetric(Metric):
    name = "clipsim"
    summary = "CLIPSIM: mean over frames of the cosine between CLIP image and prompt embeddings (raw, in [-1, 1])"
    higher_is_better = HIGHER_IS_BETTER
    Args = ClipsimArgs

    def __init__(self, args: ClipsimArgs | None = None) -> None:
        super().__init__(args)
        args, device = self.args, resolve_device(self.args.device)
        if args.model != "domain" and not args.pretrained:
            raise MetricSetupError(f"CLIPSIM with open_clip model {args.model!r} needs pretrained: (a tag or a "
                                   "weights file)", fix="e.g. pretrained: openai")
        try:
            self.scorer = (ClipScorer.from_domain_checkpoint(args.checkpoint or DEFAULT_CHECKPOINT, device=device)
                           if args.model == "domain" else ClipScorer.from_open_clip(args.model, args.pretrained,
                                                                                     device=device))
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            raise MetricSetupError(str(exc)) from None
        self.extractor, self.version = self.scorer.extractor, self.scorer.version

    def streaming(self, ctx: ClipContext) -> Clipsim:
        return Clipsim(self.scorer, ctx.prompt, ctx.fps, cache=ctx.shared, owner=self)


ClipsimDriftMetric = drift_metric(ClipsimMetric, "slope per second of CLIPSIM over windows (negative: drifting away from the prompt)")
