"""Continuation fidelity: how closely generated frames follow the ground truth they continue.

For image-to-video and continuation with a known real future, each generated frame (the given
frames are excluded) is compared with the real frame at the same time: PSNR (data range 255) and
SSIM (Gaussian window 11, sigma 1.5, on RGB in [0, 1]) from torchmetrics, per frame, then
averaged. The per-frame values show how fast a model loses the real trajectory.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

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
    fake, real = _pair(video, truth, given)
    values = [peak_signal_noise_ratio(f[None], r[None], data_range=255.0).item() for f, r in zip(fake, real)]
    return np.minimum(np.array(values), MAX_PSNR)


def ssim_per_frame(video: np.ndarray, truth: np.ndarray, given: int = 0) -> np.ndarray:
    """SSIM of each frame after the ``given`` ones."""
    fake, real = _pair(video, truth, given)
    values = structural_similarity_index_measure(fake / 255.0, real / 255.0, data_range=1.0, reduction="none")
    return values.numpy()
