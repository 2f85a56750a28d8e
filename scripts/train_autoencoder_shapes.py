"""Train the shipped shapes-world video autoencoder (generator/checkpoints/vae-shapes64.pt).

    # the shipped checkpoint: 3600 steps, then 1800 more from it on a fresh pool (34 min in all)
    python scripts/train_autoencoder_shapes.py --steps 3600 --out /tmp/stage1.pt
    python scripts/train_autoencoder_shapes.py --steps 1800 --lr 5e-4 --warmup-steps 50 --seed 1 \
        --init-from /tmp/stage1.pt
    python scripts/train_autoencoder_shapes.py --steps 60 --data workers --out /tmp/x.pt   # measure data

Data: a pre-rendered pool beat rendering on the fly (60 compiled steps, batch 8: pool 13.1
clips/s, in-process 12.3, one DataLoader worker 10.1 since the worker competes for the cores).

Builds the data from the harness's shapes world and hands it to generator.train_autoencoder
(generator/ itself never imports vbench_flow). Training clips: 17 frames (1 + 4*4) at 8 fps from
the train split, starting up to --max-start-seconds into their scene; validation: the first 17
frames of a fixed set of val-split scenes. Writes a PNG of originals above reconstructions.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from generator.autoencoder import AutoencoderConfig, VideoAutoencoder
from generator.train_autoencoder import train_autoencoder
from vbench_flow.data.torch_data import ShapesClips, ShapesStream, collate_clips

FRAMES = 17


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # the worker renders with numpy/PIL; leave the cores to training


def stream_batches(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Clips rendered on the fly: in this process (--data inline) or in one worker process."""
    stream = ShapesStream("train", FRAMES, seed=args.seed, max_start_seconds=args.max_start_seconds)
    workers = 1 if args.data == "workers" else 0
    loader = DataLoader(stream, batch_size=args.batch_size, collate_fn=collate_clips, num_workers=workers,
                        worker_init_fn=_one_thread if workers else None, prefetch_factor=4 if workers else None,
                        persistent_workers=bool(workers))
    return iter(loader)


def pool_batches(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """A pre-rendered pool of clips, sampled with replacement (--data pool): rendering is paid once."""
    t0 = time.perf_counter()
    stream = ShapesStream("train", FRAMES, seed=args.seed, max_start_seconds=args.max_start_seconds)
    videos = torch.empty(args.pool_size, FRAMES, 64, 64, 3, dtype=torch.uint8)
    captions = []
    for i, clip in enumerate(itertools.islice(iter(stream), args.pool_size)):
        videos[i] = clip["video"]
        captions.append(clip["caption"])
    print(f"rendered a pool of {args.pool_size} clips in {time.perf_counter() - t0:.1f}s", flush=True)
    rng = torch.Generator().manual_seed(args.seed)
    while True:
        idx = torch.randint(0, args.pool_size, (args.batch_size,), generator=rng)
        yield {"video": videos[idx], "caption": [captions[i] for i in idx.tolist()]}


def val_batches(count: int, batch_size: int) -> list[dict[str, Any]]:
    clips = ShapesClips("val", FRAMES, count)
    return [collate_clips([clips[i] for i in range(s, min(s + batch_size, count))]) for s in range(0, count, batch_size)]


def recon_strip(model: VideoAutoencoder, batch: dict[str, Any], path: Path, clips: int = 4,
                frames: tuple[int, ...] = (0, 1, 4, 8, 12, 16), scale: int = 2) -> None:
    """Rows: clip 1 original, clip 1 reconstruction, clip 2 original, ...; columns: frames."""
    original = batch["video"][:clips]
    recon = model.reconstruct_frames(original)
    rows = []
    for o, r in zip(original, recon):
        for video in (o, r):
            rows.append(np.concatenate([np.pad(video[t].numpy(), ((1, 1), (1, 1), (0, 0)), constant_values=128)
                                        for t in frames], axis=1))
    grid = np.concatenate(rows, axis=0)
    image = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("generator/checkpoints/vae-shapes64.pt"))
    p.add_argument("--png", type=Path, default=None, help="default: <out without .pt>-recon.png")
    p.add_argument("--steps", type=int, default=3600)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latent-channels", type=int, default=8)
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--kl-weight", type=float, default=1e-6)
    p.add_argument("--data", choices=("pool", "workers", "inline"), default="pool")
    p.add_argument("--pool-size", type=int, default=8192)
    p.add_argument("--max-start-seconds", type=float, default=25.0)
    p.add_argument("--val-clips", type=int, default=64)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--fp32", dest="bf16", action="store_false", help="train in float32 instead of bf16 autocast")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 because a 2-thread step stalls badly whenever anything else "
                        "holds a core (measured 3.3 s vs 0.7 s per step) and gains little when nothing does")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init-from", type=Path, default=None, help="continue training a finished checkpoint")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = AutoencoderConfig(latent_channels=args.latent_channels, base_channels=args.base_channels,
                               kl_weight=args.kl_weight)
    train = pool_batches(args) if args.data == "pool" else stream_batches(args)
    val = val_batches(args.val_clips, args.batch_size)
    t0 = time.perf_counter()
    result = train_autoencoder(config, train, val, steps=args.steps, lr=args.lr, seed=args.seed, log_every=25,
                               checkpoint_path=args.out, resume=args.resume, checkpoint_every=args.checkpoint_every,
                               eval_every=args.eval_every, use_compile=args.compile, bf16=args.bf16,
                               init_from=args.init_from, warmup_steps=args.warmup_steps)
    model = result["model"]
    recon_strip(model, val[0], args.png or args.out.with_name(args.out.stem + "-recon.png"))
    summary = {"config": vars(args) | {"out": str(args.out), "png": str(args.png), "init_from": str(args.init_from)},
               "parameters": model.num_parameters(), "checkpoint_bytes": args.out.stat().st_size,
               "wall_seconds": round(time.perf_counter() - t0, 1), "train_seconds": round(result["seconds"], 1),
               "clips_per_second": round(result["clips_per_second"], 2), "val": result["val"],
               "latent_stats": result["latent_stats"], "last_log": result["history"][-1] if result["history"] else None}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
