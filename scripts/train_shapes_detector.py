"""Train the shapes-i3d FVD detector (metrics/checkpoints/shapes-i3d.pt).

    python scripts/train_shapes_detector.py --steps 2000 --threads 1    # the shipped model, 16-18 min on one core
    python scripts/train_shapes_detector.py --steps 30 --out /tmp/si.pt  # smoke test

Data: 16-frame clips rendered on the fly from the train split of the shapes world (random scene,
random start frame in 0..--max-start-seconds, so clips show scenes long in motion too; a 16-frame
64x64 clip renders in ~5 ms, batch 32 about a quarter of a training step, so every clip is new and nothing
overfits a pool). metrics/ never imports the harness: the label function (:func:`clip_labels`)
lives here and the data go to metrics.shapes_detector.train_shapes_detector.

Labels per clip (see metrics/shapes_detector.py): shape, colour and motion of the target object
(the largest, ties broken by colour: the first in OBJECT_COLORS), the background and the
number of objects.

Evaluation (stored in the checkpoint's info and printed): accuracy per head on --test-clips clips
of the test split (scene i for i < --test-clips, a random start frame each), before and after
training, next to the majority-class rate of that test set (the accuracy of always guessing the
most frequent class); and the feature-extraction speed in clips/s on the training threads.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from metrics.shapes_detector import (DEFAULT_CHECKPOINT, DEFAULT_CONFIG, DEFAULT_HEADS, build_shapes_detector,
                                     evaluate, parameter_count, save_shapes_detector, train_shapes_detector)
from vbench_flow.data.shapes import OBJECT_COLORS, SIZES, SceneSpec, ShapesWorld

CLIP_FRAMES = 16


def target_object(scene: SceneSpec) -> int:
    """Index of the clip's target object: the largest (size class); among equally large ones the
    one whose colour comes first in OBJECT_COLORS (colours differ within a scene). Both rules read
    only what is visible: tuple or drawing order would pick between two equally large objects by
    something the pixels do not show unless they overlap."""
    largest = max(SIZES[o.size] for o in scene.objects)
    tied = [k for k, o in enumerate(scene.objects) if SIZES[o.size] == largest]
    return min(tied, key=lambda k: OBJECT_COLORS.index(scene.objects[k].color))


def clip_labels(scene: SceneSpec) -> dict[str, str]:
    """Class names of one scene for every head of :data:`DEFAULT_HEADS`."""
    obj = scene.objects[target_object(scene)]
    return {"shape": obj.shape, "colour": obj.color, "motion": obj.motion, "background": scene.background,
            "objects": str(len(scene.objects))}


def label_index(labels: list[dict[str, str]]) -> dict[str, torch.Tensor]:
    """Per-clip label dicts -> ``{head: LongTensor}`` of class indices in DEFAULT_HEADS order."""
    lookup = {head: {c: i for i, c in enumerate(classes)} for head, classes in DEFAULT_HEADS.items()}
    return {head: torch.tensor([lookup[head][row[head]] for row in labels], dtype=torch.long) for head in DEFAULT_HEADS}


def render_clips(world: ShapesWorld, picks: list[tuple[int, int]]) -> tuple[np.ndarray, list[dict[str, str]]]:
    """uint8 clips (N, 16, 64, 64, 3) of (scene index, start frame) pairs, and their labels."""
    clips = np.empty((len(picks), CLIP_FRAMES, world.size, world.size, 3), dtype=np.uint8)
    labels = []
    for i, (index, start) in enumerate(picks):
        clip = world.clip(index, CLIP_FRAMES, start_frame=start)
        clips[i] = clip.frames
        labels.append(clip_labels(clip.scene))
    return clips, labels


def training_batches(batch_size: int, seed: int, max_start_seconds: float,
                     split: str = "train") -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Endless batches of (uint8 clips (B, 16, 64, 64, 3), {head: class indices (B,)})."""
    world = ShapesWorld(split)
    rng = np.random.default_rng([seed, 1])
    max_start = int(round(max_start_seconds * world.fps))
    while True:
        picks = [(int(rng.integers(0, len(world))), int(rng.integers(0, max_start + 1))) for _ in range(batch_size)]
        clips, labels = render_clips(world, picks)
        yield torch.from_numpy(clips), label_index(labels)


def test_set(count: int, seed: int, max_start_seconds: float) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Test-split scenes 0..count-1, one clip each at a random start frame, and their labels."""
    world = ShapesWorld("test")
    rng = np.random.default_rng([seed, 2])
    max_start = int(round(max_start_seconds * world.fps))
    clips, rows = render_clips(world, [(i, int(rng.integers(0, max_start + 1))) for i in range(count)])
    return clips, {head: [row[head] for row in rows] for head in DEFAULT_HEADS}


def majority_rate(labels: dict[str, list[str]]) -> dict[str, float]:
    """Accuracy of always guessing each head's most frequent class."""
    return {head: max(values.count(c) for c in set(values)) / len(values) for head, values in labels.items()}


def features_per_second(model: torch.nn.Module, clips: np.ndarray, batch_size: int = 32) -> float:
    model.features(clips[:batch_size], batch_size)  # warm-up
    t0 = time.perf_counter()
    model.features(clips, batch_size)
    return len(clips) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT,
                   help="checkpoint path; the default metrics/checkpoints/shapes-i3d.pt (in the repository, wherever "
                        "the script is run from) is what load_shapes_detector() reads")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--feature-dim", type=int, default=DEFAULT_CONFIG["feature_dim"],
                   help="width of the last stage = FVD feature dimension (<= 128)")
    p.add_argument("--max-start-seconds", type=float, default=30.0,
                   help="training and test clips start at a random time in 0..this in their scene (30 s = long-horizon)")
    p.add_argument("--test-clips", type=int, default=1000, help="test-split clips for the accuracies")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the other core is usually busy)")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    config = {**DEFAULT_CONFIG, "feature_dim": args.feature_dim}
    model = build_shapes_detector(config, seed=args.seed).to(args.device)
    parameters = parameter_count(model)
    print(f"heads {list(model.config['heads'])}; {parameters:,} parameters; config "
          f"{json.dumps({k: v for k, v in model.config.items() if k != 'heads'})}", flush=True)

    t0 = time.perf_counter()
    test_clips, test_labels = test_set(args.test_clips, args.seed, args.max_start_seconds)
    accuracy_before = evaluate(model, test_clips, test_labels)
    print(f"test set: {len(test_clips)} clips in {time.perf_counter() - t0:.1f} s; accuracy before training "
          f"{json.dumps({k: round(v, 3) for k, v in accuracy_before.items()})}", flush=True)

    batches = training_batches(args.batch_size, args.seed, args.max_start_seconds)
    model, info = train_shapes_detector(batches, steps=args.steps, lr=args.lr, weight_decay=args.weight_decay,
                                        warmup_steps=args.warmup_steps, seed=args.seed, model=model,
                                        device=args.device, log_every=args.log_every)

    t0 = time.perf_counter()
    info["data"] = {"train": f"shapes world train split, {CLIP_FRAMES}-frame clips of random scenes starting at "
                             f"0..{args.max_start_seconds} s, rendered on the fly", "size": 64, "fps": 8.0,
                    "labels": "shape, colour, motion of the largest object (ties: first colour in OBJECT_COLORS); "
                              "background; number of objects"}
    info["test"] = {"split": "test", "clips": len(test_clips), "scenes": f"0..{len(test_clips) - 1}",
                    "start": f"random in 0..{args.max_start_seconds} s",
                    "accuracy": evaluate(model, test_clips, test_labels), "accuracy_before": accuracy_before,
                    "majority_rate": majority_rate(test_labels),
                    "chance": {head: 1 / len(classes) for head, classes in DEFAULT_HEADS.items()}}
    info["features_per_second"] = features_per_second(model, test_clips[:256])
    info["eval_seconds"] = time.perf_counter() - t0
    info["threads"] = args.threads
    save_shapes_detector(args.out, model, info)
    summary = {k: info[k] for k in ("steps", "seconds", "seconds_per_step", "batch_size", "parameters", "feature_dim",
                                    "test", "features_per_second")}
    print(json.dumps(summary, indent=2), flush=True)
    print(f"saved {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB; {parameters:,} parameters, "
          f"{model.feature_dim}-d features)", flush=True)


if __name__ == "__main__":
    main()
