"""The standard extractors VBench's dimensions use, loaded from their official files, offline.

One entry point, :func:`load`, by name:

=================  ===========================  ============================================
name               official file (container)    network
=================  ===========================  ============================================
dino-vitb16        dino_vitbase16_pretrain.pth  DINO ViT-B/16 (bare state dict)
clip-vitb32        ViT-B-32.pt                  OpenAI CLIP ViT-B/32 (TorchScript archive)
clip-vitl14        ViT-L-14.pt                  OpenAI CLIP ViT-L/14 (TorchScript archive)
raft-things        raft-things.pth              RAFT (state dict, keys prefixed ``module.``)
amt-s              amt-s.pth                    AMT-S (``{"state_dict": ...}``)
musiq-spaq         musiq_spaq_ckpt-358bb6af.pth MUSIQ trained on SPAQ (pyiqa's architecture)
laion-aesthetic    sa_0_4_vit_l_14_linear.pth   LAION aesthetic head, ``nn.Linear(768, 1)``
i3d                i3d_pretrained_400.pt        Kinetics-400 I3D (FVD; see ``metrics.i3d``)
=================  ===========================  ============================================

Every file loads strictly into its architecture (a missing or unexpected key is an error that
names it). Nothing is downloaded at run time: a missing file is an error that names the URL and
the path to put it at (``vbf fetch NAME`` does both where the machine is online).

:func:`write_deterministic` writes a file in the official container filled with deterministic,
non-pretrained weights (``metrics.weights``): the tests and ``scripts/compare_vbench.py`` load the
same file into this project's code and into the reference code.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from metrics.weights import deterministic_state_dict

DEFAULT_DIR = Path.home() / ".cache" / "vbench-flow" / "extractors"


@dataclass(frozen=True)
class ExtractorFile:
    name: str
    description: str
    filename: str
    url: str
    # (path, device) -> the network, eval mode
    loader: Callable[[Path, str], Any]
    # the official container with a state dict of the right keys and shapes (values arbitrary)
    template: Callable[[], Any]
    # writes such a container to a path (torch.save, or a TorchScript archive for OpenAI CLIP)
    save: Callable[[Any, Path], None] = lambda container, path: torch.save(container, path)
    sha256: str | None = None
    sha256_prefix: str | None = None
    # a Python package the loader needs beyond the project's dependencies, with its install hint
    requires: tuple[str, str] | None = None

    @property
    def default_path(self) -> Path:
        return DEFAULT_DIR / self.filename


class ExtractorError(ValueError):
    """An extractor file is missing, unreadable or not the expected network; ``fix`` says what to do."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message if fix is None else f"{message}. {fix}")
        self.reason, self.fix = message, fix


def missing_file_error(name: str, path: Path, filename: str, url: str) -> ExtractorError:
    return ExtractorError(
        f"{name}: weights file not found at {path}",
        fix=f"Download {filename} from {url} on a machine with internet and put it at {path} "
            f"(or run `vbf fetch {name}` where the machine is online, or pass the file's path)")


def read_torch_file(path: str | Path, *, name: str, filename: str, url: str) -> Any:
    """A torch file read with ``weights_only=True`` (a data file never runs code)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise missing_file_error(name, path, filename, url)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # re-raised naming the file and what it should be
        raise ExtractorError(f"{name}: {path} is not a readable torch weights file "
                             f"({type(error).__name__}: {str(error)[:200]})",
                             fix=f"use the official {filename} from {url}") from None


def load_strict(module: nn.Module, state_dict: Mapping[str, Any], *, name: str, path: Path | str,
                filename: str, url: str) -> nn.Module:
    """``module.load_state_dict(state_dict, strict=True)`` with an error that names the keys."""
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise ExtractorError(f"{name}: {path} does not hold a state dict of tensors",
                             fix=f"use the official {filename} from {url}")
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state_dict) if expected[k].shape != state_dict[k].shape)
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong_shape:
            key = wrong_shape[0]
            parts.append(f"{len(wrong_shape)} of another shape (e.g. {key}: {tuple(state_dict[key].shape)} "
                         f"instead of {tuple(expected[key].shape)})")
        raise ExtractorError(f"{name}: {path} is not the expected network's weights: keys " + "; ".join(parts),
                             fix=f"use the official {filename} from {url}")
    module.load_state_dict(state_dict, strict=True)
    return module


def read_state_dict(module: nn.Module, path: str | Path, *, name: str, filename: str, url: str,
                    prefix: str = "", container_key: str | None = None) -> nn.Module:
    """Load a weights file into ``module`` strictly: the file's keys are ``prefix`` + the module's,
    under ``container_key`` when the official file wraps its state dict."""
    loaded = read_torch_file(path, name=name, filename=filename, url=url)
    if container_key is not None:
        if not isinstance(loaded, Mapping) or container_key not in loaded:
            raise ExtractorError(f"{name}: {path} has no {container_key!r} entry (the official {filename} "
                                 f"is {{{container_key!r}: state dict}})", fix=f"use the official file from {url}")
        loaded = loaded[container_key]
    if prefix:
        if not isinstance(loaded, Mapping) or not all(str(k).startswith(prefix) for k in loaded):
            raise ExtractorError(f"{name}: the keys of {path} do not all start with {prefix!r} as in the "
                                 f"official {filename}", fix=f"use the official file from {url}")
        loaded = {k[len(prefix):]: v for k, v in loaded.items()}
    return load_strict(module, loaded, name=name, path=path, filename=filename, url=url)


# ---------------------------------------------------------------- OpenAI CLIP (TorchScript archives)

CLIP_URLS = {
    "ViT-B-32": "https://openaipublic.azureedge.net/clip/models/"
                "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "ViT-L-14": "https://openaipublic.azureedge.net/clip/models/"
                "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
}
# (vision width, patch size): what the file's own shapes must say
CLIP_SHAPES = {"ViT-B-32": (768, 32), "ViT-L-14": (1024, 14)}
# OpenAI's archives also carry these three as tensors; both loaders drop them
CLIP_EXTRA_KEYS = {"input_resolution": 224, "context_length": 77, "vocab_size": 49408}


def _open_clip_architecture(model: str) -> nn.Module:
    """open_clip's OpenAI-layout model with QuickGELU and untrained weights (its "no pretrained
    weights" log line is expected here: the weights come from the official file)."""
    import logging

    import open_clip

    logging.disable(logging.WARNING)
    try:
        return open_clip.create_model(f"{model}-quickgelu", pretrained=None)
    finally:
        logging.disable(logging.NOTSET)


def _clip_template(model: str) -> dict[str, Tensor]:
    net = _open_clip_architecture(model)
    state = {k: v.half() if v.is_floating_point() and k != "logit_scale" else v for k, v in net.state_dict().items()}
    state.update({k: torch.tensor(v) for k, v in CLIP_EXTRA_KEYS.items()})
    return state


class _TensorTree(nn.Module):
    def forward(self) -> int:
        return 0


def save_torchscript_state(state: Mapping[str, Tensor], path: Path) -> None:
    """A TorchScript archive whose ``state_dict()`` is ``state``: the container OpenAI ships CLIP in."""
    root = _TensorTree()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        node = root
        for part in parents:
            if not hasattr(node, part):
                node.add_module(part, _TensorTree())
            node = getattr(node, part)
        node.register_buffer(leaf, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, yet it is the official container
        torch.jit.save(torch.jit.script(root), str(path))


def load_openai_clip(model: str, path: str | Path, device: str = "cpu", precision: str = "fp32") -> nn.Module:
    """An OpenAI CLIP checkpoint (TorchScript archive) as an open_clip model (QuickGELU), checked to
    be the ``model`` architecture. ``precision`` "fp16" casts as OpenAI's loader does on a GPU."""
    import open_clip

    name = f"clip-{model.replace('-', '').lower()}"
    filename, url = f"{model}.pt", CLIP_URLS[model]
    path = Path(path).expanduser()
    if not path.is_file():
        raise missing_file_error(name, path, filename, url)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            archive = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # not TorchScript: say which container is expected
        raise ExtractorError(f"{name}: {path} is not a TorchScript archive ({type(error).__name__}: "
                             f"{str(error)[:200]})", fix=f"use OpenAI's {filename} from {url}") from None
    state = archive.state_dict()
    width = state.get("visual.conv1.weight")
    if width is None or (width.shape[0], width.shape[-1]) != CLIP_SHAPES[model]:
        found = "no visual.conv1.weight" if width is None else f"width {width.shape[0]}, patch {width.shape[-1]}"
        raise ExtractorError(f"{name}: {path} is not {model} ({found})", fix=f"use OpenAI's {filename} from {url}")
    template = _open_clip_architecture(model)
    state = {k: v for k, v in state.items() if k not in CLIP_EXTRA_KEYS}
    load_strict(template, {k: v.float() if v.is_floating_point() else v for k, v in state.items()},
                name=name, path=path, filename=filename, url=url)
    if precision == "fp16":
        open_clip.model.convert_weights_to_lp(template, torch.float16)
    elif precision != "fp32":
        raise ValueError(f"precision must be fp32 or fp16, got {precision!r}")
    return template.eval().to(device)


# ---------------------------------------------------------------- the catalogue


def _dino() -> ExtractorFile:
    from metrics import dino

    return ExtractorFile("dino-vitb16", "DINO ViT-B/16 (subject consistency, identity decay)", dino.WEIGHTS_FILENAME,
                         dino.WEIGHTS_URL, lambda path, device: dino.load_dino_vitb16(path, device), dino.dino_template)


def _clip(model: str) -> ExtractorFile:
    use = "background consistency" if model == "ViT-B-32" else "aesthetic quality"
    return ExtractorFile(f"clip-{model.replace('-', '').lower()}", f"OpenAI CLIP {model} image tower ({use})",
                         f"{model}.pt", CLIP_URLS[model], lambda path, device: load_openai_clip(model, path, device),
                         lambda: _clip_template(model), save_torchscript_state, sha256=CLIP_URLS[model].split("/")[-2])


def _raft() -> ExtractorFile:
    from metrics import raft

    return ExtractorFile("raft-things", "RAFT trained on FlyingThings (dynamic degree, static filter)",
                         raft.WEIGHTS_FILENAME, raft.WEIGHTS_URL, lambda path, device: raft.load_raft_things(path, device),
                         raft.raft_things_template)


def _amt() -> ExtractorFile:
    from metrics import amt

    return ExtractorFile("amt-s", "AMT-S frame interpolation (motion smoothness)", amt.WEIGHTS_FILENAME,
                         amt.WEIGHTS_URL, lambda path, device: amt.load_amt_s(path, device), amt.amt_s_template)


def _musiq() -> ExtractorFile:
    from metrics import iqa

    return ExtractorFile("musiq-spaq", "MUSIQ trained on SPAQ, pyiqa's architecture (imaging quality)",
                         iqa.MUSIQ_FILENAME, iqa.MUSIQ_URL, lambda path, device: iqa.load_musiq(path, device),
                         iqa.musiq_template, sha256_prefix=iqa.MUSIQ_SHA256_PREFIX, requires=iqa.PYIQA_REQUIREMENT)


def _laion() -> ExtractorFile:
    from metrics import iqa

    return ExtractorFile("laion-aesthetic", "LAION aesthetic predictor head on CLIP ViT-L/14 (aesthetic quality)",
                         iqa.LAION_FILENAME, iqa.LAION_URL, lambda path, device: iqa.load_laion_head(path, device),
                         lambda: nn.Linear(768, 1).state_dict())


def _i3d() -> ExtractorFile:
    from metrics import i3d

    return ExtractorFile("i3d", "Kinetics-400 RGB I3D (FVD)", i3d.WEIGHTS_FILENAME, i3d.WEIGHTS_URL,
                         lambda path, device: i3d.load_i3d(path).to(device), lambda: i3d.InceptionI3d().state_dict())


CATALOGUE: dict[str, Callable[[], ExtractorFile]] = {
    "dino-vitb16": _dino,
    "clip-vitb32": lambda: _clip("ViT-B-32"),
    "clip-vitl14": lambda: _clip("ViT-L-14"),
    "raft-things": _raft,
    "amt-s": _amt,
    "musiq-spaq": _musiq,
    "laion-aesthetic": _laion,
    "i3d": _i3d,
}
NAMES = tuple(CATALOGUE)


def extractor_file(name: str) -> ExtractorFile:
    """What :func:`load` knows about ``name``: its file, URL, hash and loader."""
    if name not in CATALOGUE:
        raise ValueError(f"unknown extractor {name!r}; known: {', '.join(NAMES)}")
    return CATALOGUE[name]()


def load(name: str, path: str | Path | None = None, device: str = "cpu") -> Any:
    """The extractor ``name`` from its official file at ``path`` (default ``DEFAULT_DIR/<filename>``),
    loaded strictly, in eval mode, on ``device``. Never downloads."""
    entry = extractor_file(name)
    return entry.loader(Path(path).expanduser() if path is not None else entry.default_path, device)


def write_deterministic(name: str, path: str | Path, seed: int = 0) -> Path:
    """Write ``name``'s official container at ``path``, filled with deterministic non-pretrained weights."""
    entry = extractor_file(name)
    container = entry.template()
    if isinstance(container, Mapping) and all(isinstance(v, Mapping) for v in container.values()):
        container = {k: deterministic_state_dict(v, seed) for k, v in container.items()}  # e.g. {"state_dict": ...}
    else:
        container = deterministic_state_dict(container, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry.save(container, path)
    return path
