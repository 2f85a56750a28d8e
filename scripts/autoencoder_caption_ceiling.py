"""How much of what a caption says survives the shipped autoencoder: the caption scores of real
test clips beside those of the same clips encoded and decoded by it. Every shipped generator
samples latents and decodes them with this autoencoder, so the second row is the most any of
them can score.

    python scripts/autoencoder_caption_ceiling.py                       # 32 test clips of 5 s
    python scripts/autoencoder_caption_ceiling.py --clips 64 --seconds 30
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from generator import checkpoint_path
from generator.autoencoder import VideoAutoencoder
from metrics.caption_adherence import caption_scores
from vbench_flow.data.shapes import ShapesWorld
from vbench_flow.video_io import num_frames_for

QUANTITIES = ("adherence", "colour_recall", "shape_accuracy", "count_accuracy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--autoencoder", default="vae-shapes64")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    autoencoder = VideoAutoencoder.load(checkpoint_path(args.autoencoder))
    world = ShapesWorld(args.split, size=64, fps=8.0)
    frames = num_frames_for(args.seconds, world.fps)
    scores: dict[str, list[dict[str, float]]] = {"real clips": [], f"through {args.autoencoder}": []}
    for index in range(args.clips):
        clip = world.clip(index, frames)
        decoded = autoencoder.reconstruct_frames(torch.from_numpy(clip.frames)[None])[0]
        for row, video in zip(scores, (clip.frames, decoded.numpy())):
            scores[row].append(caption_scores(video, clip.caption, world.fps, QUANTITIES))
    print(f"{args.clips} {args.split} clips of {args.seconds:g} s ({frames} frames), mean per clip")
    print("| clips | " + " | ".join(QUANTITIES) + " |\n|---|" + "---|" * len(QUANTITIES))
    for row, values in scores.items():
        print(f"| {row} | " + " | ".join(f"{np.mean([v[q] for v in values]):.3f}" for q in QUANTITIES) + " |")


if __name__ == "__main__":
    main()
