"""Fréchet Video Distance (Unterthiner et al. 2018).

FVD is the Fréchet distance between two Gaussians fitted to I3D features of real and generated
16-frame clips: ``||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))``, in float64.

Per-clip features are folded into :class:`FeatureStats`, whose state is sums (count, sum, sum of
outer products, plus two higher-moment sums for Ledoit-Wolf), so shards merge exactly and the
statistics of a reference set can be cached. The covariance estimator is an option because the
references disagree: the original TF code divides by n-1 ("unbiased", the default), StyleGAN-V
and content-debiased FVD divide by n ("biased"); "ledoit_wolf" shrinks the biased covariance
towards a scaled identity, which helps below ~400 clips where the 400x400 covariance is singular.
Every variant is named in :func:`metric_version` so values from different variants are never
compared. FVD depends on n (it is biased upward for small n): store n with every value.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.linalg
import torch
from pydantic import Field, model_validator

from metrics.i3d import InceptionI3d, preprocess_for_i3d
from metrics.streaming import Device, Metric, MetricArgs, MetricSetupError, resolve_device
from metrics.video import check_video

HIGHER_IS_BETTER = False
CLIP_FRAMES = 16
ESTIMATORS = ("unbiased", "biased", "ledoit_wolf")


def metric_version(*, estimator: str = "unbiased", mode: str = "stretch", sampling: str = "tf1",
                   num_frames: int = CLIP_FRAMES) -> str:
    """The version string of one FVD variant; values with different strings are not comparable."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    return (f"fvd/1 (i3d-k400 rgb logits time-mean, {num_frames}-frame clips, {mode} 224 {sampling}-bilinear, "
            f"[-1,1], cov={estimator})")


VERSION = metric_version()


# ---------------------------------------------------------------- statistics


@dataclass
class FeatureStats:
    """Mergeable sufficient statistics of a set of feature vectors, all float64.

    ``total``/``outer`` give the mean and both plain covariance estimators; ``norm2_x`` (sum of
    ||x||^2 x) and ``norm4`` (sum of ||x||^4) are what the Ledoit-Wolf shrinkage intensity needs
    besides them, so that estimator is exact from sums too and no raw features are kept.
    Covariances come from ``outer / n - mean mean^T``: float64 is ample for I3D logits, but
    features with a mean far larger than their spread (|mean| / std > ~1e6) would lose precision.
    """

    dim: int | None = None
    count: int = 0
    total: np.ndarray | None = None      # (D,)   sum of x
    outer: np.ndarray | None = None      # (D, D) sum of x x^T
    norm2_x: np.ndarray | None = None    # (D,)   sum of ||x||^2 x
    norm4: float = 0.0                   # sum of ||x||^4
    extras: dict[str, Any] = field(default_factory=dict)  # free-form provenance (extractor, version)

    def _ensure(self, dim: int) -> None:
        if self.dim is None:
            self.dim = dim
            self.total, self.norm2_x = np.zeros(dim), np.zeros(dim)
            self.outer = np.zeros((dim, dim))
        elif dim != self.dim:
            raise ValueError(f"feature dimension {dim} does not match these statistics ({self.dim})")

    def update(self, features: np.ndarray | torch.Tensor) -> FeatureStats:
        """Add a batch of feature vectors (N, D); returns self."""
        if isinstance(features, torch.Tensor):
            features = features.detach().cpu().numpy()
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] == 0:
            raise ValueError(f"features: expected shape (N, D), got {tuple(x.shape)}")
        if not np.all(np.isfinite(x)):
            raise ValueError("features contain NaN or inf")
        self._ensure(x.shape[1])
        norm2 = np.einsum("nd,nd->n", x, x)
        self.count += x.shape[0]
        self.total += x.sum(axis=0)
        self.outer += x.T @ x
        self.norm2_x += norm2 @ x
        self.norm4 += float(norm2 @ norm2)
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """A new FeatureStats for the union of both sets (neither input is changed)."""
        merged = FeatureStats(extras={**self.extras, **other.extras})
        for part in (self, other):
            if part.dim is None:
                continue
            merged._ensure(part.dim)
            merged.count += part.count
            merged.total += part.total
            merged.outer += part.outer
            merged.norm2_x += part.norm2_x
            merged.norm4 += part.norm4
        return merged

    def _need(self, n: int, what: str) -> None:
        if self.count < n:
            raise ValueError(f"{what} needs at least {n} feature vectors (clips), got {self.count}")

    def mean(self) -> np.ndarray:
        self._need(1, "the mean")
        return self.total / self.count

    def _scatter(self) -> np.ndarray:
        """sum over x of (x - mean)(x - mean)^T, symmetrised."""
        mu = self.total / self.count
        scatter = self.outer - self.count * np.outer(mu, mu)
        return (scatter + scatter.T) / 2.0

    def ledoit_wolf_shrinkage(self) -> float:
        """The Ledoit-Wolf shrinkage intensity, as ``sklearn.covariance.ledoit_wolf_shrinkage``.

        beta needs sum_k ||x_k - mean||^4, expanded here into the stored sums:
        ||x - m||^2 = a - 2b + c with a = ||x||^2, b = x.m, c = ||m||^2.
        """
        self._need(2, "the Ledoit-Wolf covariance")
        n, p = self.count, self.dim
        mu_vec = self.total / n
        emp_cov = self._scatter() / n
        c = float(mu_vec @ mu_vec)
        sum_a = float(np.trace(self.outer))
        centred_norm4 = (self.norm4 + 4.0 * float(mu_vec @ self.outer @ mu_vec) + n * c * c
                         - 4.0 * float(mu_vec @ self.norm2_x) + 2.0 * c * sum_a - 4.0 * c * float(mu_vec @ self.total))
        trace = float(np.trace(emp_cov))
        mu = trace / p
        delta_ = float(np.sum(emp_cov ** 2))
        beta = (centred_norm4 / n - delta_) / (p * n)
        delta = (delta_ - 2.0 * mu * trace + p * mu * mu) / p
        beta = min(beta, delta)
        return 0.0 if beta <= 0.0 or delta <= 0.0 else beta / delta

    def covariance(self, estimator: str = "unbiased") -> np.ndarray:
        """(D, D) covariance: "unbiased" (/ (n-1), TF FVD), "biased" (/ n, StyleGAN-V) or
        "ledoit_wolf" ((1 - s) * biased + s * tr(biased)/D * I, s from :meth:`ledoit_wolf_shrinkage`)."""
        if estimator == "unbiased":
            self._need(2, "a covariance")
            return self._scatter() / (self.count - 1)
        if estimator == "biased":
            self._need(2, "a covariance")
            return self._scatter() / self.count
        if estimator == "ledoit_wolf":
            emp_cov = self._scatter() / self.count
            shrinkage = self.ledoit_wolf_shrinkage()
            shrunk = (1.0 - shrinkage) * emp_cov
            shrunk[np.diag_indices_from(shrunk)] += shrinkage * np.trace(emp_cov) / self.dim
            return shrunk
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state (lists of floats; float64 survives a JSON round trip exactly)."""
        return {"dim": self.dim, "count": self.count,
                "total": None if self.total is None else self.total.tolist(),
                "outer": None if self.outer is None else self.outer.tolist(),
                "norm2_x": None if self.norm2_x is None else self.norm2_x.tolist(),
                "norm4": self.norm4, "extras": dict(self.extras)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> FeatureStats:
        stats = cls(extras=dict(state.get("extras", {})))
        if state.get("dim") is not None:
            stats._ensure(int(state["dim"]))
            stats.count = int(state["count"])
            stats.total = np.asarray(state["total"], dtype=np.float64)
            stats.outer = np.asarray(state["outer"], dtype=np.float64)
            stats.norm2_x = np.asarray(state["norm2_x"], dtype=np.float64)
            stats.norm4 = float(state["norm4"])
            if stats.total.shape != (stats.dim,) or stats.outer.shape != (stats.dim, stats.dim):
                raise ValueError("FeatureStats.from_dict: array shapes do not match 'dim'")
        return stats

    @classmethod
    def of(cls, features: np.ndarray | torch.Tensor) -> FeatureStats:
        return cls().update(features)


# ---------------------------------------------------------------- distance


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    ``Tr sqrtm(sigma1 sigma2)`` uses scipy's Schur-based sqrtm; its result is real in exact
    arithmetic (the product of two PSD matrices has non-negative eigenvalues), so a tiny
    imaginary part is rounding and is dropped, while a large one means the inputs are not
    valid covariances and raises. A singular product that makes sqrtm non-finite is retried
    with 1e-6 added to both diagonals (as pytorch-fid does), with a warning.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"frechet_distance: shapes do not agree: mu1 {mu1.shape}, sigma1 {sigma1.shape}, "
                         f"mu2 {mu2.shape}, sigma2 {sigma2.shape}")
    for name, value in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"frechet_distance: {name} contains NaN or inf")
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.all(np.isfinite(covmean)):
        warnings.warn("frechet_distance: sqrtm(sigma1 sigma2) is not finite (singular product); "
                      "retrying with 1e-6 added to both diagonals", RuntimeWarning, stacklevel=2)
        offset = np.eye(d) * 1e-6
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        largest = float(np.abs(covmean.imag).max())
        if largest > 1e-3 * max(1.0, float(np.abs(covmean.real).max())):
            raise ValueError(f"frechet_distance: sqrtm(sigma1 sigma2) has an imaginary part of {largest:.3g}; "
                             "the covariances are probably not symmetric positive semi-definite")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fvd_from_features(real: np.ndarray | torch.Tensor | FeatureStats, fake: np.ndarray | torch.Tensor | FeatureStats,
                      estimator: str = "unbiased") -> float:
    """FVD between two sets given as per-clip features (N, D) or as FeatureStats."""
    stats = [x if isinstance(x, FeatureStats) else FeatureStats.of(x) for x in (real, fake)]
    for name, s in zip(("real", "fake"), stats):
        if s.count < 2:
            raise ValueError(f"{name}: FVD needs at least 2 clips for a covariance, got {s.count}")
    if stats[0].dim != stats[1].dim:
        raise ValueError(f"feature dimensions differ: real {stats[0].dim}, fake {stats[1].dim}")
    return frechet_distance(stats[0].mean(), stats[0].covariance(estimator),
                            stats[1].mean(), stats[1].covariance(estimator))


# ---------------------------------------------------------------- videos


def check_clips(videos: np.ndarray | Sequence[np.ndarray], *, num_frames: int = CLIP_FRAMES,
                name: str = "videos") -> list[np.ndarray]:
    """Validate a set of clips, each uint8 (num_frames, H, W, 3); returns them as a list.

    Accepts one (N, T, H, W, 3) array or a sequence of (T, H, W, 3) arrays (sizes may differ,
    every clip is resized). Exactly ``num_frames`` frames per clip: FVD_16 and FVD on other
    lengths are different metrics, so longer videos must be cut into clips by the caller.
    """
    if isinstance(videos, np.ndarray):
        if videos.ndim != 5:
            raise ValueError(f"{name}: expected (N, T, H, W, 3) uint8 clips, got an array of shape {tuple(videos.shape)}")
        clips = list(videos)
    else:
        clips = list(videos)
    if not clips:
        raise ValueError(f"{name}: no clips (FVD needs at least 2 per set; 2048 is the published convention)")
    for i, clip in enumerate(clips):
        check_video(clip, name=f"{name}[{i}]")
        if clip.shape[0] < num_frames:
            raise ValueError(f"{name}[{i}]: {clip.shape[0]} frames, too few: FVD uses clips of {num_frames} "
                             "consecutive frames")
        if clip.shape[0] > num_frames:
            raise ValueError(f"{name}[{i}]: {clip.shape[0]} frames, expected exactly {num_frames}: cut longer "
                             f"videos into {num_frames}-frame clips first (FVD on longer clips is a different metric)")
    return clips


def extract_features(videos: np.ndarray | Sequence[np.ndarray], detector: InceptionI3d, *,
                     batch_size: int = 8, mode: str = "stretch", sampling: str = "tf1",
                     num_frames: int = CLIP_FRAMES, name: str = "videos") -> np.ndarray:
    """Per-clip I3D features (N, 400), float64, computed in batches on the detector's device."""
    clips = check_clips(videos, num_frames=num_frames, name=name)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(detector.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(clips), batch_size):
            batch = torch.cat([preprocess_for_i3d(clip[None], mode=mode, sampling=sampling)
                               for clip in clips[start:start + batch_size]])
            out.append(detector.features(batch.to(device)).double().cpu().numpy())
    return np.concatenate(out)


def fvd(real_videos: np.ndarray | Sequence[np.ndarray], fake_videos: np.ndarray | Sequence[np.ndarray],
        detector: InceptionI3d, *, estimator: str = "unbiased", mode: str = "stretch", sampling: str = "tf1",
        num_frames: int = CLIP_FRAMES, batch_size: int = 8) -> float:
    """FVD between two sets of uint8 clips; name the variant with :func:`metric_version`."""
    metric_version(estimator=estimator)  # validates the estimator before any compute
    kwargs = {"batch_size": batch_size, "mode": mode, "sampling": sampling, "num_frames": num_frames}
    real = extract_features(real_videos, detector, name="real_videos", **kwargs)
    fake = extract_features(fake_videos, detector, name="fake_videos", **kwargs)
    return fvd_from_features(real, fake, estimator=estimator)


# ---------------------------------------------------------------- clips of longer videos and intervals

WINDOWS = ("first", "all", "spread")
SPREAD_WINDOWS = 12  # windows per clip under "spread" unless the suite says otherwise


def window_starts(total_frames: int, *, num_frames: int = CLIP_FRAMES, windows: str = "first",
                  count: int = SPREAD_WINDOWS) -> list[int]:
    """The first frame of each FVD window of a clip of ``total_frames`` frames:

    - "first": the first ``num_frames`` frames (FVD_16 of a generated clip);
    - "all": every non-overlapping window from the start (a 241-frame clip gives 15; a shorter tail
      is dropped);
    - "spread": ``count`` windows evenly spaced from the first frame to the last, overlapping on
      short clips (fewer when the clip has fewer distinct starts), so every clip weighs the same
      and a set of n clips has n * count windows whatever their length.
    """
    if windows not in WINDOWS:
        raise ValueError(f"windows must be one of {WINDOWS}, got {windows!r}")
    if total_frames < num_frames:
        raise ValueError(f"video: {total_frames} frames, too few: FVD uses clips of {num_frames} consecutive frames")
    if windows == "first":
        return [0]
    if windows == "all":
        return list(range(0, total_frames - num_frames + 1, num_frames))
    return sorted({int(s) for s in np.round(np.linspace(0, total_frames - num_frames, count))})


def clip_windows(video: np.ndarray, *, num_frames: int = CLIP_FRAMES, windows: str = "first",
                 count: int = SPREAD_WINDOWS) -> list[np.ndarray]:
    """The FVD clips of one video, as :func:`window_starts` places them."""
    check_video(video, name="video")
    starts = window_starts(video.shape[0], num_frames=num_frames, windows=windows, count=count)
    return [video[start:start + num_frames] for start in starts]


class WindowFeatures:
    """FVD features of one clip streamed in chunks: the last ``num_frames`` frames are kept, each
    window (as :func:`window_starts`) is taken when its last frame arrives, and full windows are
    encoded ``batch_windows`` at a time; memory holds at most that many windows. "spread" needs the
    clip's length (``total_frames``) before its first frame."""

    def __init__(self, encode: Callable[[list[np.ndarray]], np.ndarray], *, windows: str = "first",
                 num_frames: int = CLIP_FRAMES, batch_windows: int = 16, total_frames: int | None = None,
                 count: int = SPREAD_WINDOWS) -> None:
        if windows not in WINDOWS:
            raise ValueError(f"windows must be one of {WINDOWS}, got {windows!r}")
        if windows == "spread" and total_frames is None:
            raise ValueError("windows: spread places its windows by the clip's length, which was not given")
        self.encode, self.windows, self.num_frames, self.batch_windows = encode, windows, num_frames, batch_windows
        self.total_frames = total_frames
        self._ends: set[int] | None = None  # frame indices that close a window (None: every num_frames-th)
        if windows == "first":
            self._ends = {num_frames - 1}
        elif windows == "spread" and total_frames >= num_frames:
            self._ends = {s + num_frames - 1 for s in window_starts(total_frames, num_frames=num_frames,
                                                                    windows=windows, count=count)}
        self.frames_seen = 0
        self._recent: deque[np.ndarray] = deque(maxlen=num_frames)
        self._full: list[np.ndarray] = []     # full windows not yet encoded
        self._features: list[np.ndarray] = []

    def update(self, chunk: np.ndarray) -> None:
        chunk = check_video(chunk, name="fvd chunk")
        last_needed = max(self._ends) if self._ends is not None else None
        for frame in chunk:
            index = self.frames_seen
            self.frames_seen += 1
            if last_needed is not None and index > last_needed:
                continue
            self._recent.append(frame)
            closes = index in self._ends if self._ends is not None else (index + 1) % self.num_frames == 0
            if closes:
                self._full.append(np.stack(self._recent))
                if len(self._full) >= self.batch_windows:
                    self._flush()

    def _flush(self) -> None:
        if self._full:
            self._features.append(np.asarray(self.encode(self._full), dtype=np.float64))
            self._full = []

    def features(self) -> np.ndarray:
        """(windows, D) features of every window of the clip."""
        if self.total_frames is not None and self.frames_seen != self.total_frames:
            raise ValueError(f"video: {self.frames_seen} frames, but the clip was announced with {self.total_frames} "
                             "(its FVD windows were placed for that length)")
        self._flush()
        if not self._features:
            raise ValueError(f"video: {self.frames_seen} frames, too few: FVD uses clips of {self.num_frames} "
                             "consecutive frames")
        return np.concatenate(self._features)


class UnitFeatures:
    """The feature vectors of a set of units (a unit: one clip, with one row per FVD window), kept as
    rows, so that the statistics of any weighted union of units -- a resampling draw, a subsample --
    are a few matrix products over the rows, in memory linear in the number of windows."""

    def __init__(self, per_unit: Sequence[np.ndarray]) -> None:
        arrays = [np.asarray(f, dtype=np.float64).reshape(-1, np.shape(f)[-1]) for f in per_unit]
        if not arrays or any(len(a) == 0 for a in arrays):
            raise ValueError("UnitFeatures needs at least one unit, each with at least one feature vector")
        self.rows = np.concatenate(arrays)
        if not np.all(np.isfinite(self.rows)):
            raise ValueError("features contain NaN or inf")
        self.unit_of_row = np.repeat(np.arange(len(arrays)), [len(a) for a in arrays])
        self.norm2 = np.einsum("nd,nd->n", self.rows, self.rows)

    def __len__(self) -> int:
        return int(self.unit_of_row[-1]) + 1

    def stats(self, counts: Sequence[int] | np.ndarray | None = None) -> FeatureStats:
        """The statistics of the union, unit ``i`` counted ``counts[i]`` times (default once)."""
        if counts is None:
            return FeatureStats.of(self.rows)
        weights = np.asarray(counts, dtype=np.float64)[self.unit_of_row]
        out = FeatureStats()
        out._ensure(self.rows.shape[1])
        out.count = int(round(weights.sum()))
        out.total = weights @ self.rows
        out.outer = (self.rows.T * weights) @ self.rows
        out.norm2_x = (weights * self.norm2) @ self.rows
        out.norm4 = float(weights @ self.norm2 ** 2)
        return out

    def windows(self, counts: np.ndarray) -> np.ndarray:
        """Feature vectors in each weighted union (``counts``: K x units)."""
        return np.asarray(counts) @ np.bincount(self.unit_of_row)

    def moments(self, counts: np.ndarray, estimator: str = "unbiased") -> tuple[np.ndarray, np.ndarray]:
        """(K, D) means and (K, D, D) covariances of K weighted unions at once (``counts``: K x units)."""
        counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
        if estimator == "ledoit_wolf":
            parts = [self.stats(row) for row in counts]
            return np.stack([p.mean() for p in parts]), np.stack([p.covariance(estimator) for p in parts])
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        weights = counts[:, self.unit_of_row]
        n = weights.sum(axis=1)
        if np.any(n < 2):
            raise ValueError("a covariance needs at least 2 feature vectors (clips)")
        mean = weights @ self.rows / n[:, None]
        scatter = np.matmul(self.rows.T[None] * weights[:, None, :], self.rows) - n[:, None, None] * (
            mean[:, :, None] * mean[:, None, :])
        scatter = (scatter + scatter.transpose(0, 2, 1)) / 2.0
        return mean, scatter / (n - 1.0 if estimator == "unbiased" else n)[:, None, None]


def frechet_distances(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """Fréchet distances of K pairs of Gaussians at once ((K, D) means, (K, D, D) covariances; a
    first side of one Gaussian, (1, D) and (1, D, D), is decomposed once for all K).

    ``Tr sqrtm(S1 S2)`` equals ``Tr sqrtm(R S2 R)`` with ``R = S1^(1/2)`` (the two products have the
    same eigenvalues), and ``R S2 R`` is symmetric positive semi-definite, so the trace is the sum
    of the square roots of its ``eigvalsh`` eigenvalues: symmetric eigenvalue problems instead of a
    Schur square root of a non-symmetric matrix per pair (about 9x less at d = 128, and real and
    finite where sqrtm needs a retry)."""
    values, vectors = np.linalg.eigh(sigma1)
    root = (vectors * np.sqrt(np.clip(values, 0.0, None))[:, None, :]) @ vectors.transpose(0, 2, 1)
    product = root @ sigma2 @ root
    eigenvalues = np.linalg.eigvalsh((product + product.transpose(0, 2, 1)) / 2.0)
    diff = mu1 - mu2
    return (np.einsum("kd,kd->k", diff, diff) + np.trace(sigma1, axis1=1, axis2=2) + np.trace(sigma2, axis1=1, axis2=2)
            - 2.0 * np.sqrt(np.clip(eigenvalues, 0.0, None)).sum(axis=1))


FVD_INF_FRACTIONS = (0.5, 0.625, 0.75, 0.875, 1.0)  # of each set's units: FD(N) at five sizes N
FVD_INF_DRAWS = 4  # random subsamples per size below the whole set
VARIANTS = ("fvd", "fvd_inf")


BATCH_BYTES = 256 * 1024 * 1024  # covariance matrices held at once by the batched distances


# FVD_inf (Chong & Forsyth, CVPR 2020, for FID): FVD is biased upwards by about k / N at N clips,
# so a value depends on how many clips were scored. Both sets are subsampled to each of
# FVD_INF_FRACTIONS of their units (FVD_INF_DRAWS random subsamples per size below the whole), FVD
# is computed at each, a line FVD = FVD_inf + k / N is fitted by least squares in 1 / N, and its
# value at 1 / N = 0 is the estimate. Both sets shrink together: the reference set is finite too, and
# its own 1 / N term is extrapolated away with the generated set's. The extrapolation of a small
# distance may fall below 0. (set_distance(..., variant="fvd_inf"))


def set_distance(real_units: UnitFeatures, fake_units: UnitFeatures, *, variant: str = "fvd",
                 estimator: str = "unbiased", real_counts: np.ndarray | None = None,
                 fake_counts: np.ndarray | None = None, seed: int = 0) -> float:
    """FVD (``variant="fvd"``) or FVD_inf of two sets of units, each unit counted ``*_counts`` times."""
    return float(set_distances(real_units, fake_units, None if real_counts is None else [real_counts],
                               None if fake_counts is None else [fake_counts], variant=variant,
                               estimator=estimator, seed=seed)[0])


def set_distances(real_units: UnitFeatures, fake_units: UnitFeatures, real_counts: np.ndarray | None,
                  fake_counts: np.ndarray | None, *, variant: str = "fvd", estimator: str = "unbiased",
                  seed: int = 0) -> np.ndarray:
    """FVD or FVD_inf of B weighted draws at once (``*_counts``: B x units; None: every unit once),
    through batched symmetric eigenvalue problems (:func:`frechet_distances`), in chunks of at most
    :data:`BATCH_BYTES` of covariances. A fixed reference (``real_counts`` None, plain FVD) is
    decomposed once for every draw, as a gate's comparison needs. FVD_inf's subsamples come from
    ``seed``."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    fixed = real_units.moments(np.ones((1, len(real_units))), estimator) \
        if real_counts is None and variant == "fvd" else None
    real_counts = np.ones((1, len(real_units)), dtype=int) if real_counts is None else np.atleast_2d(real_counts)
    fake_counts = np.ones((1, len(fake_units)), dtype=int) if fake_counts is None else np.atleast_2d(fake_counts)
    draws = max(len(real_counts), len(fake_counts))
    real_counts = np.broadcast_to(real_counts, (draws, real_counts.shape[1])).astype(int)
    fake_counts = np.broadcast_to(fake_counts, (draws, fake_counts.shape[1])).astype(int)
    rng = np.random.default_rng(seed)
    per_draw = sum(1 if f >= 1.0 else FVD_INF_DRAWS for f in FVD_INF_FRACTIONS) if variant == "fvd_inf" else 1
    # a draw holds about six D x D temporaries (covariances, roots, products) and, while its covariance
    # is built, a D x rows weighted copy of the features
    dim, rows = real_units.rows.shape[1], max(len(real_units.rows), len(fake_units.rows))
    chunk = max(1, BATCH_BYTES // (per_draw * 8 * (6 * dim * dim + dim * rows)))
    out = np.empty(draws)
    for start in range(0, draws, chunk):
        real, fake = real_counts[start:start + chunk], fake_counts[start:start + chunk]
        if variant == "fvd_inf":
            real, fake = _subsamples(real, rng), _subsamples(fake, rng)
        values = frechet_distances(*(fixed or real_units.moments(real, estimator)), *fake_units.moments(fake, estimator))
        if variant == "fvd":
            out[start:start + chunk] = values
            continue
        x = (1.0 / fake_units.windows(fake)).reshape(-1, per_draw)
        y = values.reshape(-1, per_draw)
        centred = x - x.mean(axis=1, keepdims=True)
        spread = (centred ** 2).sum(axis=1)
        if np.any(spread <= 0):
            raise ValueError(f"fvd_inf needs subsamples of at least two sizes; {len(fake_units)} generated units "
                             "give one")
        slope = (centred * (y - y.mean(axis=1, keepdims=True))).sum(axis=1) / spread
        out[start:start + chunk] = y.mean(axis=1) - slope * x.mean(axis=1)  # the least-squares line at 1/N = 0
    return out


def _subsamples(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """FVD_inf's subsamples of each draw (rows of ``counts``, B x units), stacked draw by draw:
    (B * K) x units, how often each unit is drawn. Each subsample is a uniformly random subset,
    without replacement, of the draw's members (units counted as often as drawn): the members with
    the smallest random keys."""
    draws, units = counts.shape
    members = counts.sum(axis=1)
    sizes = np.array([_subsample_sizes(int(m)) for m in members])  # (B, K)
    longest = int(members.max())
    # member m of draw b is unit member_unit[b, m] (units in order); positions past a draw's members
    # get the key inf, so they are never chosen
    member_unit = (np.arange(longest)[None, :, None] >= np.cumsum(counts, axis=1)[:, None, :]).sum(axis=2)
    keys = rng.random((draws, sizes.shape[1], longest))
    keys[np.broadcast_to(np.arange(longest)[None, None, :] >= members[:, None, None], keys.shape)] = np.inf
    kth = np.take_along_axis(np.sort(keys, axis=2), sizes[:, :, None] - 1, axis=2)
    chosen = keys <= kth
    # one bin per (draw, size, unit): count the chosen members into them
    bins = (np.arange(draws * sizes.shape[1]).reshape(draws, -1, 1) * units + member_unit[:, None, :])[chosen]
    return np.bincount(bins, minlength=draws * sizes.shape[1] * units).reshape(draws * sizes.shape[1], units)


def _subsample_sizes(members: int) -> list[int]:
    return [min(members, max(2, round(fraction * members))) for fraction in FVD_INF_FRACTIONS
            for _ in range(1 if fraction >= 1.0 else FVD_INF_DRAWS)]


# ---------------------------------------------------------------- the registered metric


class FvdArgs(MetricArgs):
    extractor: Literal["shapes-i3d", "i3d", "i3d-torchscript"] = Field(
        "shapes-i3d", description="shapes-i3d: the shipped shapes-world detector (offline default); i3d: the "
        "Kinetics-400 I3D state dict i3d_pretrained_400.pt; i3d-torchscript: StyleGAN-V's i3d_torchscript.pt "
        "(`vbf fetch i3d` downloads them where there is internet)")
    weights: str | None = Field(None, description="the extractor's file (default: the shipped shapes-i3d, or "
                                "~/.cache/vbench-flow/<file> for i3d)")
    sha256: str | None = Field(None, description="i3d: the hash the weights file must have")
    estimator: Literal["unbiased", "biased", "ledoit_wolf"] = Field(
        "unbiased", description="covariance: / (n-1) as the original FVD, / n as StyleGAN-V, or Ledoit-Wolf shrinkage")
    windows: Literal["first", "all", "spread"] = Field(
        "first", description="first: FVD_16 on each clip's first 16 frames; all: every non-overlapping 16-frame "
        "window of the clip (the long-clip variant); spread: window_count windows evenly spaced over the clip "
        "(overlapping on short clips), so sets of 5 s and 30 s clips have equally many windows")
    window_count: int | None = Field(None, ge=1, le=1000, description=f"spread: windows per clip (default "
                                     f"{SPREAD_WINDOWS})")
    preprocessing: Literal["stretch", "center_crop"] = Field(
        "stretch", description="i3d: stretch frames to 224x224 (original FVD) or resize the shorter side and crop")
    variant: Literal["fvd", "fvd_inf"] = Field(
        "fvd", description="fvd: FVD of the n clips scored (grows as n shrinks); fvd_inf: extrapolated to "
        "infinitely many clips (Chong & Forsyth), comparable across n")
    batch_size: int = Field(16, ge=1, le=1024)
    bootstrap: int = Field(200, ge=0, le=10_000, description="resamples of the generated and the reference clips "
                           "for the interval (0: no interval)")
    device: Device = Field("auto", description="where the extractor runs (auto: CUDA when present)")


    @model_validator(mode="after")
    def _count_only_when_spread(self) -> FvdArgs:
        if self.window_count is not None and self.windows != "spread":
            raise ValueError(f"window_count applies only with windows: spread (windows is {self.windows!r}); "
                             "remove it, or set windows: spread")
        return self

    @property
    def spread_count(self) -> int:
        return self.window_count or SPREAD_WINDOWS


class FvdMetric(Metric):
    """Features per clip as it streams; FVD per group of units (model, task, clip length) against
    the suite's reference clips when the run is aggregated."""

    name = "fvd"
    summary = ("Fréchet Video Distance of each (model, task, clip length) set against real reference clips "
               "(shapes-i3d features offline, Kinetics I3D where its weights are present)")
    higher_is_better = HIGHER_IS_BETTER
    kind = "set"
    Args = FvdArgs
    min_frames = CLIP_FRAMES

    def __init__(self, args: FvdArgs | None = None) -> None:
        super().__init__(args)
        from metrics import i3d, shapes_detector
        from metrics.files import file_sha256

        args, device = self.args, resolve_device(self.args.device)
        fix = "`vbf fetch i3d` downloads the I3D weights, or use extractor: shapes-i3d (offline)"
        try:
            if args.extractor == "shapes-i3d":
                detector, meta = shapes_detector.load_shapes_detector(args.weights or shapes_detector.DEFAULT_CHECKPOINT)
                self.detector = detector.to(device)
                self.extractor = shapes_detector.extractor_id(meta)
                base = shapes_detector.metric_version(meta, estimator=args.estimator)
                self._features = lambda clips: self.detector.features(clips, args.batch_size)
            else:
                weights = Path(args.weights or (i3d.DEFAULT_WEIGHTS_PATH if args.extractor == "i3d" else
                                                i3d.DEFAULT_WEIGHTS_PATH.with_name(i3d.TORCHSCRIPT_FILENAME))).expanduser()
                self.detector = (i3d.load_i3d(weights, args.sha256, device=device) if args.extractor == "i3d" else
                                 i3d.load_i3d_torchscript(weights, args.sha256, device=device))
                self.extractor = f"{args.extractor} (Kinetics-400) {file_sha256(weights)[:12]}"
                base = metric_version(estimator=args.estimator, mode=args.preprocessing)
                self._features = lambda clips: extract_features(clips, self.detector, batch_size=args.batch_size,
                                                                mode=args.preprocessing)
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            raise MetricSetupError(str(exc), fix=fix) from None
        self.version = f"{base}; windows={args.windows}" + (f" {args.spread_count}" if args.windows == "spread" else "")
        if args.variant == "fvd_inf":
            self.version += (f"; fvd_inf (Chong & Forsyth: FD of both sets at {len(FVD_INF_FRACTIONS)} sizes from "
                             f"{FVD_INF_FRACTIONS[0]:g} to 1 of their clips, {FVD_INF_DRAWS} subsamples each, "
                             "fitted linear in 1/N, at 1/N = 0)")

    def features(self, video: np.ndarray, fps: float) -> np.ndarray:
        """The whole clip's window features at once (the twin of :meth:`feature_stream`)."""
        windows = clip_windows(video, windows=self.args.windows, count=self.args.spread_count)
        return np.asarray(self._features(windows), dtype=np.float64)

    def feature_stream(self, fps: float, num_frames: int | None = None) -> WindowFeatures:
        """A clip's window features as it streams (``num_frames``: its length, which "spread" needs)."""
        return WindowFeatures(self._features, windows=self.args.windows, batch_windows=self.args.batch_size,
                              total_frames=num_frames, count=self.args.spread_count)

    def distance(self, real_units: UnitFeatures, fake_units: UnitFeatures, *, seed: int = 0) -> float:
        """The metric's value for a generated set against a reference set. Plain FVD goes through
        scipy's ``sqrtm``, as other tools compute it."""
        if self.args.variant == "fvd":
            return fvd_from_features(real_units.stats(), fake_units.stats(), estimator=self.args.estimator)
        return set_distance(real_units, fake_units, variant="fvd_inf", estimator=self.args.estimator, seed=seed)

    def resampled(self, real_units: UnitFeatures, fake_units: UnitFeatures, real_counts: np.ndarray,
                  fake_counts: np.ndarray, seed: int) -> np.ndarray:
        """The value for B resampling draws (``*_counts``: B x units), batched."""
        return set_distances(real_units, fake_units, real_counts, fake_counts, variant=self.args.variant,
                             estimator=self.args.estimator, seed=seed)
