"""Continuation fidelity: how closely generated frames follow the ground truth they continue.

For image-to-video and continuation with a known real future, each generated frame (the given
frames are excluded) is compared with the real frame at the same time: PSNR (data range 255) and
SSIM (Gaussian window 11, sigma 1.5, on RGB in [0, 1]) from torchmetrics, per frame, then
averaged. The per-frame values show how fast a model loses the real trajectory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from metrics.streaming import ClipContext, Metric, MetricResult, StreamingMetric
from metrics.video import check_video

VERSION = "fidelity/1 (per generated frame vs ground truth: PSNR data range 255, SSIM gaussian 11 / 1.5; torchmetrics)"
MAX_PSNR = 100.0  # identical frames have infinite PSNR; reported as this cap


def _pair(video: np.ndarray, truth: np.ndarray, given: int) -> tuple[torch.Tensor, torch.Tensor]:
    video = check_video(video, min_frames=given + 1)
    truth = check_video(truth, min_frames=1)
    if truth.shape[1:] != video.shape[1:] or truth.shape[0] < video.shape[0]:
        raise ValueError(f"ground truth {truth.shape} does not cover the video {video.shape} frame for frame")
    to_tensor = lambda x: torch.from_numpy(np.ascontiguousarray(x[given:video.shape[0]])).permute(0, 3, 1, 2).double()  # noqa: E731
    return to_tensor(video), to_tensor(truth)


def psnr_per_frame(video: np.ndarray, truth: np.ndarray, given: int = 0) -> np.ndarray:
    """PSNR in dB of each frame after the ``given`` ones (capped at MAX_PSNR for identical frames)."""
    # torchmetrics' image package is imported on use: it pulls in torchvision, seconds a run without these metrics should not pay
    from torchmetrics.functional.image import peak_signal_noise_ratio

    fake, real = _pair(video, truth, given)
    values = [peak_signal_noise_ratio(f[None], r[None], data_range=255.0).item() for f, r in zip(fake, real)]
    return np.minimum(np.array(values), MAX_PSNR)


def ssim_per_frame(video: np.ndarray, truth: np.ndarray, given: int = 0) -> np.ndarray:
    """SSIM of each frame after the ``given`` ones."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    fake, real = _pair(video, truth, given)
    values = structural_similarity_index_measure(fake / 255.0, real / 255.0, data_range=1.0, reduction="none")
    return values.numpy()


PerFrame = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


class ContinuationFidelity(StreamingMetric):
    """Per-frame fidelity streamed: each chunk's generated frames are compared with the ground-truth
    frames at the same times as they arrive, the ground truth itself read chunk by chunk beside the
    clip (``ground_truth``: a whole array, or a function giving a fresh iterator of its chunks);
    the series places frame t at t / fps."""

    higher_is_better = True
    extractor = "none (pixels against the ground truth)"
    version = VERSION
    min_frames = 1

    def __init__(self, per_frame: PerFrame, name: str, ground_truth: np.ndarray | Callable[[], Iterator[np.ndarray]],
                 given: int = 0, fps: float = 1.0) -> None:
        self.per_frame, self.name, self.given = per_frame, name, given
        self._truth_source = (lambda: iter([ground_truth])) if isinstance(ground_truth, np.ndarray) else ground_truth
        super().__init__(fps)

    def reset(self) -> None:
        self.frames_seen = 0
        self._values: list[np.ndarray] = []
        self._truth = self._truth_source()
        self._held: np.ndarray | None = None  # ground-truth frames read and not yet passed
        self._held_start = 0  # the frame number of _held[0]

    def _truth_frames(self, start: int, end: int, frame_shape: tuple[int, ...]) -> np.ndarray:
        """Ground-truth frames [start, end); frames before ``start`` are dropped (starts never go back)."""
        while self._held is None or self._held_start + len(self._held) < end:
            chunk = next(self._truth, None)
            if chunk is None:
                have = self._held_start + (0 if self._held is None else len(self._held))
                raise ValueError(f"the ground truth has {have} frames; the video has at least {end}: it does not "
                                 "cover the video frame for frame")
            chunk = check_video(chunk, name="ground truth", min_frames=1)
            self._held = chunk if self._held is None else np.concatenate([self._held, chunk])
        self._held = self._held[start - self._held_start:]
        self._held_start = start
        frames = self._held[:end - start]
        if frames.shape[1:] != frame_shape:
            raise ValueError(f"ground truth frames are {frames.shape[1:]}, the video's {frame_shape}: it does not "
                             "cover the video frame for frame")
        return frames

    def update(self, chunk: np.ndarray) -> None:
        chunk = check_video(chunk, name=f"{self.name} chunk")
        start, end = self.frames_seen, self.frames_seen + len(chunk)
        self.frames_seen = end
        first = max(start, self.given)
        if first < end:
            truth = self._truth_frames(first, end, chunk.shape[1:])
            self._values.append(self.per_frame(chunk[first - start:], truth, 0))

    def compute(self) -> MetricResult:
        if not self._values:
            raise ValueError(f"{self.name}: no generated frame to compare (the clip has {self.frames_seen} frames, "
                             f"{self.given} given)")
        values = np.concatenate(self._values)
        return MetricResult(float(values.mean()),
                            [((self.given + i) / self.fps, float(v)) for i, v in enumerate(values)])


class ContinuationPsnrMetric(Metric):
    name = "continuation_psnr"
    summary = "PSNR (dB) of each generated frame against the real one at the same time, averaged"
    higher_is_better = True
    needs_ground_truth = True
    reads_task = True  # it scores the frames after the task's condition frames
    extractor, version = ContinuationFidelity.extractor, VERSION
    per_frame: PerFrame = staticmethod(psnr_per_frame)

    streams_ground_truth = True

    def streaming(self, ctx: ClipContext) -> ContinuationFidelity:
        truth = ctx.ground_truth_chunks or ctx.ground_truth
        if truth is None:
            raise ValueError("continuation fidelity needs the ground-truth clip of the prompt")
        return ContinuationFidelity(self.per_frame, self.name, truth, ctx.num_condition_frames, ctx.fps)


class ContinuationSsimMetric(ContinuationPsnrMetric):
    name = "continuation_ssim"
    summary = "SSIM of each generated frame against the real one at the same time, averaged"
    per_frame = staticmethod(ssim_per_frame)
