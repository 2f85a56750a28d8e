"""A suite's data world: where prompts and ground-truth clips come from.

Two kinds: the procedural shapes world (default, offline) and a folder of real videos listed
in a manifest. Both hand out :class:`Prompt` objects whose ``id`` is stable, and the
ground-truth clip of any prompt at any length and frame rate.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from vbench_flow.errors import ConfigError
from vbench_flow.protocol import Prompt


class DataSource(Protocol):
    kind: str

    def splits(self) -> tuple[str, ...]: ...

    def split_size(self, split: str) -> int: ...

    def prompts(self, split: str, start: int, count: int) -> list[Prompt]: ...

    def ground_truth(self, prompt: Prompt, num_frames: int, fps: float) -> np.ndarray: ...

    def ground_truth_chunks(self, prompt: Prompt, num_frames: int, fps: float) -> Iterator[np.ndarray]:
        """:meth:`ground_truth` as consecutive chunks, for metrics that stream it beside the clip."""
        ...

    def ground_truth_file(self, prompt: Prompt) -> Path | None:
        """The video file whose frames, read at any fps, are :meth:`ground_truth`'s; None when the
        frames are drawn or resized."""
        ...

    def describe(self) -> dict[str, Any]: ...


def _check_range(split: str, start: int, count: int, available: int) -> None:
    if start + count > available:
        raise ConfigError(
            f"asks for items {start}..{start + count - 1} of split {split!r}, which has {available}",
            where="prompts", fix="lower count or start",
        )


class ShapesSource:
    kind = "shapes"

    def __init__(self, size: int = 64, fps: float = 8.0, max_objects: int = 3) -> None:
        self.size, self.fps, self.max_objects = size, fps, max_objects

    @lru_cache(maxsize=16)
    def _world(self, split: str, fps: float):
        from vbench_flow.data.shapes import ShapesWorld

        return ShapesWorld(split=split, size=self.size, fps=fps, max_objects=self.max_objects)

    def splits(self) -> tuple[str, ...]:
        from vbench_flow.data.shapes import SPLITS

        return tuple(SPLITS)

    def split_size(self, split: str) -> int:
        return len(self._world(split, self.fps))

    def prompts(self, split: str, start: int, count: int) -> list[Prompt]:
        world = self._world(split, self.fps)
        _check_range(split, start, count, len(world))
        return [
            Prompt(world.caption(i), world.prompt_id(i), {"data": "shapes", "split": split, "index": i})
            for i in range(start, start + count)
        ]

    def ground_truth(self, prompt: Prompt, num_frames: int, fps: float) -> np.ndarray:
        world = self._world(prompt.meta["split"], float(fps))
        return world.clip(prompt.meta["index"], num_frames).frames

    def ground_truth_chunks(self, prompt: Prompt, num_frames: int, fps: float) -> Iterator[np.ndarray]:
        yield self.ground_truth(prompt, num_frames, fps)  # drawn, and small: one chunk

    def ground_truth_file(self, prompt: Prompt) -> Path | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"type": "shapes", "size": self.size, "fps": self.fps, "max_objects": self.max_objects}


class FolderSource:
    """Real videos with captions; an optional ``split`` column in the manifest defines splits."""

    kind = "folder"

    def __init__(self, manifest: Path, root: Path | None = None, size: int | None = None,
                 allow_outside_root: bool = False) -> None:
        from vbench_flow.data.folder import VideoFolder

        self.folder = VideoFolder(manifest, root, allow_outside_root=allow_outside_root)
        self.manifest, self.size = Path(manifest), size

    def _indices(self, split: str) -> list[int]:
        return [i for i, r in enumerate(self.folder.records) if split in ("all", str(r.meta.get("split", "all")))]

    def splits(self) -> tuple[str, ...]:
        return tuple(sorted({str(r.meta.get("split", "all")) for r in self.folder.records} | {"all"}))

    def split_size(self, split: str) -> int:
        return len(self._indices(split))

    def prompts(self, split: str, start: int, count: int) -> list[Prompt]:
        indices = self._indices(split)
        _check_range(split, start, count, len(indices))
        return [
            Prompt(self.folder.records[i].caption, self.folder.records[i].id, {"data": "folder", "split": split, "index": i})
            for i in indices[start:start + count]
        ]

    def ground_truth(self, prompt: Prompt, num_frames: int, fps: float) -> np.ndarray:
        return self.folder.clip(prompt.meta["index"], num_frames, fps, size=self.size)

    def ground_truth_chunks(self, prompt: Prompt, num_frames: int, fps: float) -> Iterator[np.ndarray]:
        return self.folder.chunks(prompt.meta["index"], num_frames, fps, size=self.size)

    def ground_truth_file(self, prompt: Prompt) -> Path | None:
        return Path(self.folder.records[prompt.meta["index"]].video) if self.size is None else None

    def describe(self) -> dict[str, Any]:
        return {"type": "folder", "manifest": str(self.manifest), "size": self.size, "videos": len(self.folder)}
