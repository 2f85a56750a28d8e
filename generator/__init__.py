"""Video generators: a STARFlow-V-style normalizing flow over a causal video autoencoder.

``generator.load(name_or_path)`` returns a ready pipeline, offline, for every shipped checkpoint
(``generator/checkpoints/<name>.pt``) or for a file you trained.
"""

from __future__ import annotations

from pathlib import Path

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
        names = sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt") if not p.name.endswith(".train.pt"))
        raise FileNotFoundError(f"no shipped checkpoint named {str(name_or_path)!r} (shipped: {', '.join(names) or 'none'})")
    return shipped


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
