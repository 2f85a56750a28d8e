"""The shapes world as torch data sets for training generators and domain extractors.

``generator/`` trains on any data set whose items are ``{"video": uint8 tensor (T, H, W, 3),
"caption": str}``; these adapters make the shapes world one. Clips are rendered on the fly
(a 17-frame 64x64 clip takes a few milliseconds), so training never runs out of data.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from vbench_flow.data.shapes import ShapesWorld


class ShapesClips(Dataset):
    """A fixed, indexable set: item i is scene ``start + i`` of the split, from its first frame."""

    def __init__(self, split: str, num_frames: int, count: int, *, size: int = 64, fps: float = 8.0,
                 start: int = 0, max_objects: int = 3) -> None:
        self.world = ShapesWorld(split=split, size=size, fps=fps, max_objects=max_objects)
        self.num_frames, self.count, self.start = num_frames, count, start

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict[str, Any]:
        clip = self.world.clip(self.start + i, self.num_frames)
        return {"video": torch.from_numpy(clip.frames), "caption": clip.caption, "index": self.start + i}


class ShapesStream(IterableDataset):
    """An endless stream of training clips: random scenes, random start times, seeded.

    ``max_start_seconds`` > 0 starts clips mid-video, so a model also learns scenes already
    in motion (what sliding-window long-horizon generation needs). Each (rank, worker) draws
    from its own seeded generator, so data-parallel processes see different clips.
    """

    def __init__(self, split: str, num_frames: int, *, size: int = 64, fps: float = 8.0, seed: int = 0,
                 max_start_seconds: float = 0.0, rank: int = 0, max_objects: int = 3) -> None:
        self.world = ShapesWorld(split=split, size=size, fps=fps, max_objects=max_objects)
        self.num_frames, self.seed, self.rank = num_frames, seed, rank
        self.max_start_frame = int(round(max_start_seconds * fps))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, self.rank, worker])
        while True:
            index = int(rng.integers(0, len(self.world)))
            start = int(rng.integers(0, self.max_start_frame + 1)) if self.max_start_frame else 0
            clip = self.world.clip(index, self.num_frames, start_frame=start)
            yield {"video": torch.from_numpy(clip.frames), "caption": clip.caption, "index": index}


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"video": torch.stack([item["video"] for item in items]), "caption": [item["caption"] for item in items],
            "index": torch.tensor([item["index"] for item in items])}
