"""The reference side of ``scripts/compare_vbench.py``: VBench's own functions on a list of videos.

Runs in a throw-away environment that has VBench's repository (and DINO's and OpenAI CLIP's) on
its path, never in the project's environment. Prints one JSON object: per dimension, per video,
the value VBench's code returns (plus the per-pair flow scores of dynamic degree and the static
filter, read where VBench passes them to its verdict functions).

    python scripts/vbench_oracle.py --weights DIR --dino-repo DINO_DIR --out result.json \
        --dimensions subject_consistency,dynamic_degree video1.mp4 video2.mp4

DIR holds the official files: dino_vitbase16_pretrain.pth, ViT-B-32.pt, ViT-L-14.pt,
raft-things.pth, amt-s.pth, musiq_spaq_ckpt-358bb6af.pth, sa_0_4_vit_l_14_linear.pth.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

DEVICE = "cpu"


def raft_args(weights: Path) -> SimpleNamespace:
    from easydict import EasyDict

    return EasyDict({"model": str(weights / "raft-things.pth"), "small": False, "mixed_precision": False,
                     "alternate_corr": False})


def recording_scores(model: object, verdict_method: str) -> list[list[float]]:
    """Wrap ``model.<verdict_method>`` (VBench's check on a video's pair scores) so that each call's
    scores are kept, in order, in the list returned."""
    seen: list[list[float]] = []
    verdict = getattr(model, verdict_method)
    setattr(model, verdict_method, lambda scores: (seen.append([float(s) for s in scores]), verdict(scores))[1])
    return seen


def subject_consistency(videos: list[str], weights: Path, dino_repo: Path) -> dict:
    from vbench.subject_consistency import subject_consistency as run

    hub = Path(tempfile.mkdtemp())  # VBench's DINO reads its weights from torch hub's cache, even in local mode
    (hub / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copyfile(weights / "dino_vitbase16_pretrain.pth", hub / "hub" / "checkpoints" / "dino_vitbase16_pretrain.pth")
    os.environ["TORCH_HOME"] = str(hub)
    torch.hub.set_dir(str(hub / "hub"))
    model = torch.hub.load(repo_or_dir=str(dino_repo), source="local", model="dino_vitb16").to(DEVICE)
    _, results = run(model, videos, DEVICE, False)
    shutil.rmtree(hub)
    return {r["video_path"]: r["video_results"] for r in results}


def background_consistency(videos: list[str], weights: Path, dino_repo: Path) -> dict:
    import clip
    from vbench.background_consistency import background_consistency as run

    model, preprocess = clip.load(str(weights / "ViT-B-32.pt"), device=DEVICE)
    _, results = run(model, preprocess, videos, DEVICE, False)
    return {r["video_path"]: r["video_results"] for r in results}


def dynamic_degree(videos: list[str], weights: Path, dino_repo: Path) -> dict:
    from vbench.dynamic_degree import DynamicDegree

    model = DynamicDegree(raft_args(weights), DEVICE)
    seen = recording_scores(model, "check_move")
    out = {}
    for video in videos:
        moved = model.infer(video)
        out[video] = {"dynamic": bool(moved), "scores": seen[-1]}
    return out


def static_filter(videos: list[str], weights: Path, dino_repo: Path) -> dict:
    import vbench.cli.static_filter as module

    module.DEVICE = DEVICE  # the module hard-codes 'cuda' for its frames
    model = module.StaticFilter(raft_args(weights), DEVICE)
    seen = recording_scores(model, "check_static")
    out = {}
    for video in videos:
        static = model.infer(video)
        out[video] = {"static": bool(static), "scores": seen[-1][:-2], "end_scores": seen[-1][-2:]}
    return out


def motion_smoothness(videos: list[str], weights: Path, dino_repo: Path) -> dict:
    import vbench
    from vbench.motion_smoothness import MotionSmoothness

    config = Path(vbench.__file__).parent / "third_party" / "amt" / "cfgs" / "AMT-S.yaml"
    model = MotionSmoothness(str(config), str(weights / "amt-s.pth"), DEVICE)
    return {video: float(model.motion_score(video)) for video in videos}


def imaging_quality(videos: list[str], weights: Path, dino_repo: Path) -> dict:
    from pyiqa.archs.musiq_arch import MUSIQ
    from vbench.imaging_quality import technical_quality

    model = MUSIQ(pretrained_model_path=str(weights / "musiq_spaq_ckpt-358bb6af.pth"))
    model.to(DEVICE)
    model.training = False  # as VBench sets it (the attribute only, not eval())
    _, results = technical_quality(model, videos, DEVICE)
    return {r["video_path"]: r["video_results"] / 100.0 for r in results}


def aesthetic_quality(videos: list[str], weights: Path, dino_repo: Path) -> dict:
    import clip
    from vbench.aesthetic_quality import get_aesthetic_model, laion_aesthetic

    head = get_aesthetic_model(str(weights)).to(DEVICE)
    model, _ = clip.load(str(weights / "ViT-L-14.pt"), device=DEVICE)
    _, results = laion_aesthetic(head, model, videos, DEVICE)
    return {r["video_path"]: r["video_results"] for r in results}


def temporal_flickering(videos: list[str], weights: Path, dino_repo: Path) -> dict:
    from vbench.temporal_flickering import temporal_flickering as run

    _, results = run(videos)
    return {r["video_path"]: float(r["video_results"]) for r in results}


NPY_FPS = 8.0
NPY_SUFFIX = ".npy.mp4"


def read_npy_too() -> None:
    """Let VBench's readers take ``.npy.mp4`` files (NumPy arrays, uint8 (T, H, W, 3) RGB, 8 fps, named
    .mp4 so VBench's own dispatch on the suffix takes its video path): the tests' clips, with no
    codec between the recorded values and the frames the tests rebuild. Only the reading is replaced
    (OpenCV's capture and ``load_video``'s tensor), never VBench's arithmetic."""
    import cv2
    import numpy as np
    import vbench.aesthetic_quality
    import vbench.background_consistency
    import vbench.imaging_quality
    import vbench.subject_consistency

    class NpyCapture:
        def __init__(self, path: str) -> None:
            self.frames = [f[..., ::-1].copy() for f in np.load(path)]  # OpenCV hands out BGR

        def isOpened(self) -> bool:
            return True

        def read(self):
            return (True, self.frames.pop(0)) if self.frames else (False, None)

        def get(self, prop: int) -> float:
            return NPY_FPS if prop == cv2.CAP_PROP_FPS else 0.0

        def release(self) -> None:
            self.frames = []

    capture = cv2.VideoCapture
    cv2.VideoCapture = lambda path, *a: NpyCapture(path) if str(path).endswith(NPY_SUFFIX) else capture(path, *a)
    for module in (vbench.subject_consistency, vbench.background_consistency, vbench.imaging_quality,
                   vbench.aesthetic_quality):
        original = module.load_video

        def load_video(path, *args, _original=original, **kwargs):
            if str(path).endswith(NPY_SUFFIX):  # what load_video returns for an mp4: a float tensor (T, C, H, W)
                return torch.Tensor(np.load(path).astype(np.uint8)).permute(0, 3, 1, 2)
            return _original(path, *args, **kwargs)

        module.load_video = load_video


DIMENSIONS = {f.__name__: f for f in (subject_consistency, background_consistency, dynamic_degree, static_filter,
                                      motion_smoothness, imaging_quality, aesthetic_quality, temporal_flickering)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="+")
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--dino-repo", type=Path, required=True)
    parser.add_argument("--dimensions", default=",".join(DIMENSIONS))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    read_npy_too()
    result: dict = {"values": {}, "seconds": {}}
    for name in args.dimensions.split(","):
        start = time.perf_counter()
        result["values"][name] = DIMENSIONS[name](args.videos, args.weights, args.dino_repo)
        result["seconds"][name] = time.perf_counter() - start
        print(f"{name}: {result['seconds'][name]:.1f} s", file=sys.stderr)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
