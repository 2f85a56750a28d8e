"""Train the shapes-world domain CLIP (metrics/checkpoints/domain-clip-shapes64.pt).

    python scripts/train_domain_clip.py --steps 3000 --threads 1
    python scripts/train_domain_clip.py --steps 50 --out /tmp/dc.pt          # smoke test

Data: (frame, caption) pairs rendered on the fly from the train split of the shapes world, one
frame per pair from a random scene at a random time in [0, --max-start-seconds] (a 64x64 frame
renders in ~1 ms, under a tenth of a training step, so every pair is new and nothing overfits a
pool). metrics/ never imports the harness: this script builds the data and hands it to
metrics.domain_clip.train_domain_clip.

Vocabulary: the model's text tower has a compact vocabulary, the open_clip BPE tokens of the first
--vocab-captions train-split captions plus every zero-shot prompt (:func:`shapes_world_vocab`),
so its embedding table has ~50 rows instead of 49,408 and the checkpoint is a few MB; the
vocabulary is stored in the checkpoint, and its size and the parameter count in its info.

Evaluation (stored in the checkpoint's info and printed):
- zero-shot colour and shape accuracy on frames of single-object test-split scenes (first frame
  and one at a random time of each), with two prompt sets: "simple" ("a red shape", "a circle")
  and "caption" (CLIP prompt ensembling in the caption grammar: colour c is the mean embedding of
  "a {size} c {shape}" over every size and shape; shape s of "a {size} {colour} s"). Chance is
  1/9 for colour and 1/6 for shape;
- the contrastive loss on a fixed batch of val-split pairs before and after training.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from metrics.domain_clip import (DEFAULT_CHECKPOINT, DOMAIN_CLIP_CONFIG, build_domain_clip, build_vocab,
                                 evaluate_loss, parameter_count, save_domain_clip, train_domain_clip,
                                 zero_shot_accuracy)
from vbench_flow.data.shapes import OBJECT_COLORS, SHAPES, SIZES, ShapesWorld


def frame_caption_batches(split: str, batch_size: int, seed: int,
                          max_start_seconds: float) -> Iterator[tuple[torch.Tensor, list[str]]]:
    """Endless batches of (uint8 frames (B, 64, 64, 3), captions), one random frame per scene."""
    world = ShapesWorld(split)
    rng = np.random.default_rng([seed, 1])
    max_start = int(round(max_start_seconds * world.fps))
    while True:
        frames = np.empty((batch_size, world.size, world.size, 3), dtype=np.uint8)
        captions = []
        for i in range(batch_size):
            clip = world.clip(int(rng.integers(0, len(world))), 1, start_frame=int(rng.integers(0, max_start + 1)))
            frames[i] = clip.frames[0]
            captions.append(clip.caption)
        yield torch.from_numpy(frames), captions


def zero_shot_set(clips: int, seed: int, max_start_seconds: float) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Frames of single-object test-split scenes (first frame and one random frame of each) and their
    colour and shape labels: with one object the label of a frame is unambiguous."""
    world = ShapesWorld("test", max_objects=1)
    rng = np.random.default_rng([seed, 2])
    max_start = int(round(max_start_seconds * world.fps))
    frames, labels = [], {"colour": [], "shape": []}
    for index in range(clips):
        obj = world.scene(index).objects[0]
        for start in (0, int(rng.integers(1, max_start + 1))):
            frames.append(world.clip(index, 1, start_frame=start).frames[0])
            labels["colour"].append(obj.color)
            labels["shape"].append(obj.shape)
    return np.stack(frames), labels


def zero_shot_prompts() -> dict[str, dict[str, dict[str, list[str]]]]:
    return {
        "simple": {"colour": {c: [f"a {c} shape"] for c in OBJECT_COLORS},
                   "shape": {s: [f"a {s}"] for s in SHAPES}},
        "caption": {"colour": {c: [f"a {size} {c} {s}" for size in SIZES for s in SHAPES] for c in OBJECT_COLORS},
                    "shape": {s: [f"a {size} {c} {s}" for size in SIZES for c in OBJECT_COLORS] for s in SHAPES}},
    }


VOCAB_CAPTIONS = 5000


def vocab_texts(captions: int = VOCAB_CAPTIONS) -> list[str]:
    """The texts the vocabulary is built from: the first ``captions`` train-split captions and every
    zero-shot prompt."""
    world = ShapesWorld("train")
    texts = [world.caption(i) for i in range(captions)]
    for tasks in zero_shot_prompts().values():
        for classes in tasks.values():
            for class_prompts in classes.values():
                texts.extend(class_prompts)
    return texts


def shapes_world_vocab(captions: int = VOCAB_CAPTIONS) -> list[int]:
    """The domain CLIP's compact vocabulary: sorted open_clip BPE ids of :func:`vocab_texts`."""
    return build_vocab(vocab_texts(captions))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT,
                   help="checkpoint path; the default metrics/checkpoints/domain-clip-shapes64.pt (in the repository, "
                        "wherever the script is run from) is what ClipScorer.from_domain_checkpoint() reads")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-start-seconds", type=float, default=30.0,
                   help="training frames come from times 0..this in their scene (30 s = long-horizon clips)")
    p.add_argument("--zero-shot-clips", type=int, default=300, help="single-object test scenes (2 frames each)")
    p.add_argument("--val-pairs", type=int, default=128, help="val-split pairs for the before/after loss")
    p.add_argument("--vocab-captions", type=int, default=VOCAB_CAPTIONS,
                   help="train-split captions whose BPE tokens (with the zero-shot prompts') form the vocabulary")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the other core is usually busy)")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    vocab = shapes_world_vocab(args.vocab_captions)
    model = build_domain_clip(DOMAIN_CLIP_CONFIG, vocab=vocab, seed=args.seed).to(args.device)
    parameters = parameter_count(model)
    print(f"domain CLIP: {parameters:,} parameters, vocabulary {len(vocab)} BPE tokens "
          f"(text vocab_size {model.vocab_size} with PAD and UNK), config {json.dumps(model.model_cfg)}", flush=True)

    val_frames, val_captions = next(frame_caption_batches("val", args.val_pairs, args.seed, args.max_start_seconds))
    zs_frames, zs_labels = zero_shot_set(args.zero_shot_clips, args.seed, args.max_start_seconds)
    prompts = zero_shot_prompts()
    val_loss_before = evaluate_loss(model, val_frames, val_captions)
    zero_shot_before = {name: zero_shot_accuracy(model, zs_frames, zs_labels, p) for name, p in prompts.items()}

    batches = frame_caption_batches("train", args.batch_size, args.seed, args.max_start_seconds)
    model, info = train_domain_clip(batches, steps=args.steps, lr=args.lr, weight_decay=args.weight_decay,
                                    warmup_steps=args.warmup_steps, seed=args.seed, model=model,
                                    device=args.device, log_every=args.log_every)

    t0 = time.perf_counter()
    info["data"] = {"train": f"shapes world train split, 1 random frame per scene at 0..{args.max_start_seconds} s, "
                             "rendered on the fly", "size": 64, "fps": 8.0}
    info["val_loss"] = {"before": val_loss_before, "after": evaluate_loss(model, val_frames, val_captions),
                        "pairs": len(val_captions)}
    info["zero_shot"] = {
        "before": zero_shot_before,
        "after": {name: zero_shot_accuracy(model, zs_frames, zs_labels, p) for name, p in prompts.items()},
        "frames": len(zs_frames), "scenes": args.zero_shot_clips, "split": "test", "max_objects": 1,
        "chance": {"colour": 1 / len(OBJECT_COLORS), "shape": 1 / len(SHAPES)},
    }
    info["eval_seconds"] = time.perf_counter() - t0
    info["parameters"] = parameters
    info["vocab"] = {"bpe_tokens": len(vocab), "vocab_size": int(model.vocab_size),
                     "source": f"first {args.vocab_captions} train-split captions and the zero-shot prompts"}
    info["threads"] = args.threads
    save_domain_clip(args.out, model, info)
    summary = {k: info[k] for k in ("steps", "seconds", "seconds_per_step", "batch_size", "parameters", "vocab",
                                    "val_loss", "zero_shot")}
    print(json.dumps(summary, indent=2), flush=True)
    print(f"saved {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB; {parameters:,} parameters, "
          f"vocab_size {model.vocab_size})", flush=True)


if __name__ == "__main__":
    main()
