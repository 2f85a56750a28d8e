"""Video generators: a STARFlow-V-style normalizing flow over a causal video autoencoder.

``generator.load(name_or_path)`` returns a ready pipeline, offline, for every shipped checkpoint
(``generator/checkpoints/<name>.pt``) or for a file you trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"


def checkpoint_path(name_or_path: str | Path) -> Path:
    """A shipped checkpoint's file from its name, or the given path; FileNotFoundError naming both."""
    path = Path(name_or_path).expanduser()
    if path.suffix == ".pt" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        return path
    shipped = CHECKPOINT_DIR / f"{name_or_path}.pt"
    if not shipped.is_file():
        raise FileNotFoundError(f"no shipped checkpoint named {str(name_or_path)!r} "
                                f"(shipped: {', '.join(shipped_names()) or 'none'})")
    return shipped


def shipped_names() -> list[str]:
    return sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt") if not p.name.endswith(".train.pt"))


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> Any:
    """What a checkpoint file holds, read without running code from it; ValueError naming the file
    when it cannot be.

    ``torch.load(weights_only=True)`` rebuilds only tensors and plain containers and values, and
    refuses a pickle that names any other class or function: a file that would run code when loaded.
    """
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch's bug-report request for an unusual pickle protocol
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch signals a refused, corrupt or foreign file with many exception types
        if "Weights only load failed" in str(error):
            problem = (f"cannot be read safely: it holds something other than tensors and plain values "
                       f"({_refusal_reason(error)}), so it was not loaded and nothing in it ran")
        else:
            detail = str(error).strip()[:200] or "empty"
            problem = f"is not a readable torch checkpoint ({type(error).__name__}: {detail})"
        raise ValueError(f"{path} {problem}. Use a checkpoint written by `vbf train` or a shipped one "
                         f"({', '.join(shipped_names()) or 'none shipped'})") from error


def _refusal_reason(error: Exception) -> str:
    """torch's reason in one line, without its advice to retry with weights_only=False, which is
    exactly what would run the file's code."""
    reason = str(error).split("WeightsUnpickler error:", 1)[-1].strip()
    return reason.split(" Please use")[0].splitlines()[0] if reason else "unknown reason"


def shipped_name_or_path(path: Path) -> str:
    """How a checkpoint refers to another: by name when it is shipped, else by absolute path."""
    path = Path(path).resolve()
    return path.stem if path.parent == CHECKPOINT_DIR.resolve() else str(path)


def load(name_or_path: str | Path, device: str = "cpu"):
    """The pipeline stored under ``name_or_path`` — STARFlow-V or a diffusion baseline — with its
    autoencoder found and checked."""
    from generator.autoencoder import VideoAutoencoder
    from generator.pipeline import DiffusionPipeline, StarFlowPipeline, file_sha256
    from generator.train import load_model

    path = checkpoint_path(name_or_path)
    model, info = load_model(path, map_location=device)
    if "autoencoder" not in info:
        raise ValueError(f"{path} is a training checkpoint without its autoencoder's name; load the exported file "
                         "that `vbf train starflow` writes (-o), or use generator.train.load_model")
    autoencoder_path = checkpoint_path(info["autoencoder"])
    expected = info.get("autoencoder_sha256")
    if expected and file_sha256(autoencoder_path) != expected:
        raise ValueError(f"{autoencoder_path} is not the autoencoder {path.name} was trained with (sha256 differs)")
    autoencoder = VideoAutoencoder.load(autoencoder_path, map_location=device)
    pipeline = StarFlowPipeline if model.kind == "starflow" else DiffusionPipeline
    return pipeline(model.to(device), autoencoder.to(device), name=path.stem,
                    info={**info, "checkpoint_sha256": file_sha256(path)})
