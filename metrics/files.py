"""Files the metrics load: content hashes that name an extractor's weights in every result, and
the checkpoints of the extractors the project trains itself."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path: str | Path, *, name: str, expected_format: str, train_script: str,
                    default_path: Path, hint: str = "") -> dict[str, Any]:
    """A project-trained extractor's checkpoint dict, or an error that says how to get a good one:
    FileNotFoundError naming the training command for a missing file, ValueError for a file that
    is not readable or not of ``expected_format``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} checkpoint not found at {path}. Train it with `python {train_script} --out {path}` "
            f"(the default --out is {default_path}), or pass the path of an existing checkpoint.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # re-raised naming the file and the expected format
        raise ValueError(f"{path} is not a readable torch file ({type(error).__name__}: {str(error)[:300]})") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != expected_format:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path} is not a {name} checkpoint (format {found!r}, expected {expected_format!r}){hint}")
    return checkpoint
