"""Warping error (Lai et al., ECCV 2018, "Learning Blind Video Temporal Consistency").

For each consecutive pair, frame t+1 is warped back to frame t with the forward flow t->t+1
(``warp(V_{t+1})(x) = V_{t+1}(x + f(x))``, bilinear, coordinates clamped to the image) and
compared with frame t on the pixels that are visible in both::

    E_pair = sum_i M(i) ||V_t(i) - warp(V_{t+1})(i)||^2 / sum_i M(i)        RGB in [0, 1]
    E_warp = mean over the T-1 pairs of E_pair

The mask sum counts all 3 channels (so E_pair is the mean squared difference over visible
pixel-channels); when nothing is visible it is H*W*3, as in Lai's evaluation code, and the pair
then contributes 0 (``WarpingErrors.visible_fraction`` shows such pairs). The non-occlusion
mask M is Ruder et al. (2016)'s, as Lai's code computes it; a pixel of frame t is occluded when

1. forward-backward check: ``|f + b~|^2 > 0.01 (|f|^2 + |b~|^2) + 0.5``, where
   ``b~(x) = b(x + f(x))`` is the backward flow t+1->t warped into frame t; or
2. motion boundary: ``|grad u|^2 + |grad v|^2 > 0.01 |f|^2 + 0.002`` for f = (u, v),
   with forward differences (zero in the last row/column).

Flow is estimated, so the value depends on the estimator: the paper used FlowNet2, EvalCrafter
uses RAFT (and divides by pixels, not pixel-channels: 3x this value). The weight-free OpenCV
estimators (DIS with its "fast" preset, the default, and Farneback) run anywhere; torchvision's
RAFT is used only from local weights. Every result and version string names its estimator, and
values from different estimators must never be compared.

The metric runs each pair through :func:`pair_error` (float32, fused); :func:`warp`,
:func:`occlusion_mask` and :func:`masked_warp_error` state the definition in float64 and the
tests hold the two together.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from pydantic import Field

from metrics.drift import drift_metric
from metrics.streaming import (ClipContext, Device, Metric, MetricArgs, MetricResult, MetricSetupError,
                               PairwiseMetric, pair_digest, resolve_device, rows_once_per_clip, share_with_others)
from metrics.video import check_video, fit_longer_side

HIGHER_IS_BETTER = False
DEFINITION = "lai2018-warping-error/2"  # /2: float32 fused warp and masks (/1 was float64)

# Ruder et al. 2016 occlusion constants, as in Lai et al.'s detect_occlusion.
FB_RELATIVE = 0.01
FB_ABSOLUTE = 0.5
BOUNDARY_RELATIVE = 0.01
BOUNDARY_ABSOLUTE = 0.002

# OpenCV's reference Farneback parameters (samples/python/opt_flow.py).
FARNEBACK_PARAMS = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5,
                    "poly_sigma": 1.2, "flags": 0}
DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}

RAFT_WEIGHTS = "torchvision Raft_Large_Weights.C_T_SKHT_V2"
RAFT_FILENAME = "raft_large_C_T_SKHT_V2-ff5fadd5.pth"
RAFT_URL = f"https://download.pytorch.org/models/{RAFT_FILENAME}"
DEFAULT_RAFT_PATH = Path.home() / ".cache" / "vbench-flow" / RAFT_FILENAME
RAFT_UPDATES = 12  # torchvision's default number of recurrent refinements
RAFT_MIN_SIDE = 128  # torchvision's RAFT refuses smaller inputs (its correlation pyramid needs 16 px at 1/8)

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
FLOW_BATCH = 8  # pairs per batched flow call: 16 frames of 1080p are 100 MB on the GPU


# ---------------------------------------------------------------- flow estimators


@dataclass(frozen=True)
class FlowEstimator:
    """A named optical-flow estimator.

    ``estimator(a, b)`` takes two uint8 RGB frames (H, W, 3) and returns the float32 flow a->b,
    shape (H, W, 2) as (dx, dy), such that ``a(x) ~ b(x + flow(x))`` (what :func:`warp` expects).
    ``name`` says which estimator and settings; it goes into every result.
    """

    name: str
    estimate: FlowFn
    # the flows of many pairs at once, (N, H, W, 3) x 2 -> (N, H, W, 2) (RAFT on a GPU); None: pair by pair
    estimate_batch: FlowFn | None = None

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._checked(self.estimate(a, b), a.shape[:2])

    def many(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The flow of each pair (a[i], b[i]), (N, H, W, 2), batched where the estimator can."""
        if self.estimate_batch is None:
            return np.stack([self(x, y) for x, y in zip(a, b)])
        return self._checked(self.estimate_batch(a, b), a.shape[:3])

    def _checked(self, flow: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        flow = np.asarray(flow, dtype=np.float32)
        if flow.shape != (*shape, 2):
            raise ValueError(f"{self.name} returned flow of shape {flow.shape}, expected {(*shape, 2)}")
        if not np.isfinite(flow).all():
            raise ValueError(f"{self.name} returned NaN or infinite flow for frames of size {shape[-1]}x{shape[-2]}")
        return flow


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def _farneback_name() -> str:
    return "opencv-farneback(" + ",".join(f"{k}={v}" for k, v in FARNEBACK_PARAMS.items()) + ", gray)"


def farneback_flow() -> FlowEstimator:
    """OpenCV Farneback on grayscale frames with OpenCV's reference parameters (the default)."""
    p = FARNEBACK_PARAMS

    def estimate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(_gray(a), _gray(b), None, p["pyr_scale"], p["levels"], p["winsize"],
                                            p["iterations"], p["poly_n"], p["poly_sigma"], p["flags"])

    return FlowEstimator(_farneback_name(), estimate)


def dis_flow(preset: str = "fast") -> FlowEstimator:
    """OpenCV DIS (dense inverse search) on grayscale frames; ``preset`` as in OpenCV. The "fast"
    preset (the default estimator) keeps native 720p at about 6 pairs/s on one core, with the
    warp; "medium" refines more at a third of the speed."""
    if preset not in DIS_PRESETS:
        raise ValueError(f"DIS preset must be one of {sorted(DIS_PRESETS)}, got {preset!r}")

    def estimate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # A fresh object per call: DIS is not thread-safe, and a call on small frames changes its
        # settings for every later call (a 64x64 frame first made later 240p flows differ 27x)
        return cv2.DISOpticalFlow_create(DIS_PRESETS[preset]).calc(_gray(a), _gray(b), None)

    return FlowEstimator(f"opencv-dis(preset={preset}, gray)", estimate)


def _raft_name(num_flow_updates: int) -> str:
    return (f"torchvision-raft_large({RAFT_WEIGHTS}, {num_flow_updates} updates, "
            f"sides < {RAFT_MIN_SIDE} px upscaled by an integer factor)")


def _raft_candidates() -> list[Path]:
    """Where :func:`raft_flow` looks: our cache, then the file torchvision itself would have cached."""
    import torch.hub

    return [DEFAULT_RAFT_PATH, Path(torch.hub.get_dir()) / "checkpoints" / RAFT_FILENAME]


def raft_flow(weights_path: str | Path | None = None, *, num_flow_updates: int = RAFT_UPDATES,
              device: str = "cpu") -> FlowEstimator:
    """torchvision's RAFT-large from a local weights file; nothing is ever downloaded.

    ``weights_path`` defaults to the first existing of ``DEFAULT_RAFT_PATH`` and torch hub's
    checkpoint cache. Frames are scaled to [-1, 1] (torchvision's OpticalFlow preset) and padded
    by edge replication to multiples of 8, which RAFT needs; the flow is cropped back. Frames with
    a side under 128 px (the 64x64 shapes world) are first upscaled bilinearly by the smallest
    integer factor k reaching 128, and the flow is block-averaged back and divided by k.
    """
    candidates = [Path(weights_path).expanduser()] if weights_path is not None else _raft_candidates()
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise FileNotFoundError(
            f"RAFT weights not found at {' or '.join(str(c) for c in candidates)}. Save {RAFT_FILENAME} "
            f"({RAFT_WEIGHTS}) there (or pass raft_flow the path where it is); it comes from {RAFT_URL} "
            "(the 8 hex digits in the name are the start of its sha256). Nothing is downloaded automatically; "
            "the weight-free estimators 'farneback' and 'dis' need no file.")
    if num_flow_updates < 1:
        raise ValueError(f"num_flow_updates must be >= 1, got {num_flow_updates}")
    batch = _raft_estimate_fn(str(path), num_flow_updates, device)
    return FlowEstimator(_raft_name(num_flow_updates), lambda a, b: batch(a[None], b[None])[0], batch)


@functools.lru_cache(maxsize=2)
def _raft_estimate_fn(path: str, num_flow_updates: int, device: str) -> FlowFn:
    """Load once per (file, updates, device): building RAFT and reading 20 MB per video would dominate."""
    import torch
    import torch.nn.functional as F
    from torchvision.models.optical_flow import raft_large

    model = raft_large(weights=None, progress=False)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except Exception as error:  # re-raised with the file and the expected weights named
        raise ValueError(f"{path} is not a raft_large state dict ({type(error).__name__}: {str(error)[:300]}); "
                         f"use {RAFT_FILENAME} from {RAFT_URL}") from error
    model = model.eval().to(device)

    def to_tensor(frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().to(device)
        h, w = frames.shape[1:3]
        x = F.pad(x, (0, -w % 8, 0, -h % 8), mode="replicate")
        return x / 127.5 - 1.0

    def estimate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Flows of the pairs (a[i], b[i]), a and b uint8 (N, H, W, 3), in one batch."""
        h, w = a.shape[1:3]
        k = -(-RAFT_MIN_SIDE // min(h, w))  # ceil; 1 when the frames are large enough
        if k > 1:
            a, b = (np.stack([cv2.resize(f, (w * k, h * k), interpolation=cv2.INTER_LINEAR) for f in x]) for x in (a, b))
        with torch.inference_mode():
            flows = model(to_tensor(a), to_tensor(b), num_flow_updates=num_flow_updates)
        flow = flows[-1][:, :, :h * k, :w * k].permute(0, 2, 3, 1).cpu().numpy()
        # With centre-aligned resizing, original pixel x sits at the centre of up-pixels kx..kx+k-1.
        return flow if k == 1 else np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) / k for f in flow])

    return estimate


ESTIMATORS: dict[str, Callable[[], FlowEstimator]] = {
    "dis": dis_flow, "dis-medium": functools.partial(dis_flow, "medium"), "farneback": farneback_flow,
    "raft": raft_flow}
DEFAULT_ESTIMATOR = "dis"
_ESTIMATOR_NAMES = {"farneback": _farneback_name(), "dis": "opencv-dis(preset=fast, gray)",
                    "dis-medium": "opencv-dis(preset=medium, gray)",
                    "raft": _raft_name(RAFT_UPDATES)}


def get_estimator(estimator: str | FlowEstimator) -> FlowEstimator:
    """A :class:`FlowEstimator` by name ("dis", "dis-medium", "farneback", "raft" from local weights)
    or as given."""
    if isinstance(estimator, FlowEstimator):
        return estimator
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise ValueError(f"unknown flow estimator {estimator!r}; use one of {sorted(ESTIMATORS)} "
                         "or a FlowEstimator (e.g. raft_flow(path), dis_flow('fast'))")
    return ESTIMATORS[estimator]()


def estimator_name(estimator: str | FlowEstimator) -> str:
    """The name results carry, without building the estimator (no RAFT weights needed)."""
    if isinstance(estimator, FlowEstimator):
        return estimator.name
    if not isinstance(estimator, str) or estimator not in _ESTIMATOR_NAMES:
        return get_estimator(estimator).name  # raises the ValueError for unknown names
    return _ESTIMATOR_NAMES[estimator]


def _version(flow_name: str) -> str:
    return (f"{DEFINITION} (RGB [0,1] float32, squared error / visible pixel-channels, backward bilinear warp with "
            f"border clamp, occlusion fb {FB_RELATIVE}/{FB_ABSOLUTE} + motion boundary "
            f"{BOUNDARY_RELATIVE}/{BOUNDARY_ABSOLUTE}; flow={flow_name})")


def metric_version(estimator: str | FlowEstimator = DEFAULT_ESTIMATOR) -> str:
    """Version string of the metric with one estimator; different strings are not comparable."""
    return _version(estimator_name(estimator))


VERSION = metric_version()


# ---------------------------------------------------------------- warping and occlusion


def _check_flow(flow: object, shape: tuple[int, int], name: str = "flow") -> np.ndarray:
    if not isinstance(flow, np.ndarray) or flow.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name}: expected a float32/float64 numpy array (H, W, 2), "
                         f"got {getattr(flow, 'dtype', type(flow).__name__)}")
    if flow.shape != (*shape, 2):
        raise ValueError(f"{name}: expected shape {(*shape, 2)} (dx, dy per pixel), got {tuple(flow.shape)}")
    if not np.isfinite(flow).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return flow


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: ``out(y, x) = image(y + flow[y, x, 1], x + flow[y, x, 0])``.

    Bilinear, with the sampling coordinates clamped to the image (border replication), which is
    ``grid_sample(padding_mode="border", align_corners=True)`` and FlowNet2's Resample2d that
    Lai et al. used. ``image`` is float32/float64, (H, W) or (H, W, C); the result has its dtype.
    """
    if not isinstance(image, np.ndarray) or image.dtype not in (np.float32, np.float64):
        raise ValueError(f"warp: image must be a float32/float64 numpy array, got "
                         f"{getattr(image, 'dtype', type(image).__name__)}; convert uint8 frames with x / 255.0")
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"warp: image must be a non-empty (H, W) or (H, W, C) array, got {image.shape}")
    h, w = image.shape[:2]
    flow = _check_flow(flow, (h, w))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    x = np.clip(xs + flow[..., 0], 0, w - 1)
    y = np.clip(ys + flow[..., 1], 0, h - 1)
    x0, y0 = np.floor(x).astype(np.intp), np.floor(y).astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    ax, ay = x - x0, y - y0
    if image.ndim == 3:
        ax, ay = ax[..., None], ay[..., None]
    src = image.astype(np.float64, copy=False)
    top = src[y0, x0] * (1 - ax) + src[y0, x1] * ax
    bottom = src[y1, x0] * (1 - ax) + src[y1, x1] * ax
    return (top * (1 - ay) + bottom * ay).astype(image.dtype, copy=False)


def _squared_norm(flow: np.ndarray) -> np.ndarray:
    return flow[..., 0].astype(np.float64) ** 2 + flow[..., 1].astype(np.float64) ** 2


def forward_backward_occlusion(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """True where ``|f + b~|^2 > 0.01 (|f|^2 + |b~|^2) + 0.5``, with ``b~ = warp(backward, forward)``.

    A pixel whose forward motion is not undone by the backward motion found where it lands was
    not visible in the next frame (or the flow is wrong there); either way it is not compared.
    """
    shape = forward.shape[:2] if isinstance(forward, np.ndarray) else ()
    forward = _check_flow(forward, shape, "forward flow")
    backward = _check_flow(backward, shape, "backward flow")
    warped = warp(backward.astype(np.float64), forward)
    threshold = FB_RELATIVE * (_squared_norm(forward) + _squared_norm(warped)) + FB_ABSOLUTE
    return _squared_norm(forward + warped) > threshold


def motion_boundary(forward: np.ndarray) -> np.ndarray:
    """True where ``|grad u|^2 + |grad v|^2 > 0.01 |f|^2 + 0.002`` (forward differences, zero at the
    last row/column, as in Lai et al.'s compute_flow_gradients): flow is unreliable at motion edges."""
    forward = _check_flow(forward, forward.shape[:2] if isinstance(forward, np.ndarray) else (), "forward flow")
    f = forward.astype(np.float64)
    grad = np.zeros(f.shape[:2])
    dx = f[:, 1:] - f[:, :-1]
    dy = f[1:, :] - f[:-1, :]
    grad[:, :-1] += (dx ** 2).sum(axis=-1)
    grad[:-1, :] += (dy ** 2).sum(axis=-1)
    return grad > BOUNDARY_RELATIVE * _squared_norm(f) + BOUNDARY_ABSOLUTE


def occlusion_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Occluded pixels of frame t (bool, H x W): forward-backward inconsistent or on a motion boundary."""
    return forward_backward_occlusion(forward, backward) | motion_boundary(forward)


def masked_warp_error(frame: np.ndarray, next_frame: np.ndarray, forward: np.ndarray,
                      visible: np.ndarray) -> float:
    """One pair's error: squared RGB difference in [0, 1] between ``frame`` and ``next_frame`` warped
    back by ``forward``, summed over visible pixels and channels, divided by their count
    (H*W*3 when nothing is visible, as in Lai's code). Frames are uint8 (H, W, 3).

    The float64 statement of the definition; :func:`pair_error` computes the same in float32."""
    current = frame.astype(np.float64) / 255.0
    warped = warp(next_frame.astype(np.float64) / 255.0, forward)
    weight = np.broadcast_to(np.asarray(visible, dtype=np.float64)[..., None], current.shape)
    count = weight.sum() or float(current.size)
    return float((weight * (current - warped) ** 2).sum() / count)


def _planes(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) numpy -> (C, H, W) torch view, no copy."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def _normalised(coordinate: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates to ``grid_sample``'s [-1, 1] with align_corners=True, in place."""
    return coordinate.mul_(2 / (size - 1)).sub_(1) if size > 1 else coordinate.zero_()


def pair_error(frame: np.ndarray, next_frame: np.ndarray, forward: np.ndarray,
               backward: np.ndarray) -> tuple[float, float]:
    """One pair's ``(E_pair, visible fraction)``: the occlusion mask of :func:`occlusion_mask` and the
    error of :func:`masked_warp_error`, fused in float32 torch ops on contiguous planes.

    ``next_frame`` and the backward flow are warped together by one bilinear border-clamped
    ``grid_sample``. Sampling positions carry float32's precision of absolute pixel coordinates
    (about 4e-5 px at 1280 px), as FlowNet2's Resample2d in Lai et al.'s evaluation does, so
    values agree with the float64 statement to about 1e-5 relative at 360p and 1e-4 at 1080p (a
    pixel exactly at an occlusion threshold may flip). At 720p this is 90 ms a pair instead of
    the float64 path's 800.
    """
    h, w = forward.shape[:2]
    with torch.inference_mode():
        flow = _planes(forward.astype(np.float32, copy=False))
        fu, fv = flow[0].contiguous(), flow[1].contiguous()
        source = torch.empty((1, 5, h, w))
        source[0, :3] = _planes(next_frame)
        source[0, :3] *= 1 / 255
        source[0, 3:] = _planes(backward.astype(np.float32, copy=False))
        grid = torch.empty((1, h, w, 2))
        _normalised(torch.add(fu, torch.arange(w, dtype=torch.float32), out=grid[0, ..., 0]), w)
        _normalised(torch.add(fv, torch.arange(h, dtype=torch.float32)[:, None], out=grid[0, ..., 1]), h)
        warped = torch.nn.functional.grid_sample(source, grid, mode="bilinear", padding_mode="border",
                                                 align_corners=True)[0]
        bu, bv = warped[3], warped[4]
        forward_norm = fu * fu + fv * fv
        occluded = ((fu + bu).square_() + (fv + bv).square_()
                    > (forward_norm + bu * bu + bv * bv).mul_(FB_RELATIVE).add_(FB_ABSOLUTE))
        gradient = torch.zeros((h, w))
        for component in (fu, fv):  # forward differences, zero in the last column / row
            gradient[:, :-1] += (component[:, 1:] - component[:, :-1]).square_()
            gradient[:-1] += (component[1:] - component[:-1]).square_()
        occluded |= gradient > forward_norm.mul_(BOUNDARY_RELATIVE).add_(BOUNDARY_ABSOLUTE)
        visible = ~occluded
        squared = (_planes(frame).float().mul_(1 / 255) - warped[:3]).square_().sum(0)
        visible_count = int(visible.sum())
        total = float(squared.mul_(visible).sum(dtype=torch.float64))
    return total / (3 * (visible_count or h * w)), visible_count / (h * w)


# ---------------------------------------------------------------- the metric


@dataclass(frozen=True)
class WarpingErrors:
    """Per-pair warping errors of one video (pair t compares frames t and t+1), named by estimator."""

    values: np.ndarray            # (T-1,) E_pair
    visible_fraction: np.ndarray  # (T-1,) share of frame t's pixels in the mask; 0 means E_pair = 0 by convention
    estimator: str
    version: str

    @property
    def mean(self) -> float:
        """E_warp: the mean over pairs."""
        return float(self.values.mean())


def warping_error_from_flows(frames: np.ndarray, forward_flows: np.ndarray, backward_flows: np.ndarray,
                             *, estimator: str = "given flows") -> WarpingErrors:
    """Per-pair errors with the flows supplied: ``forward_flows[t]`` is t->t+1, ``backward_flows[t]``
    t+1->t, each (T-1, H, W, 2). The core of :func:`warping_error_per_pair`, and the way to score
    with ground-truth or externally computed flow."""
    frames = check_video(frames, min_frames=2)
    t, h, w = frames.shape[:3]
    for name, flows in (("forward_flows", forward_flows), ("backward_flows", backward_flows)):
        if not isinstance(flows, np.ndarray) or flows.shape != (t - 1, h, w, 2):
            raise ValueError(f"{name}: expected an array of shape {(t - 1, h, w, 2)} (one flow per frame pair), "
                             f"got {getattr(flows, 'shape', type(flows).__name__)}")
    for name, flows in (("forward_flows", forward_flows), ("backward_flows", backward_flows)):
        _check_flow(flows, (t - 1, h, w), name)  # finite floats
    values, visible_fraction = np.empty(t - 1), np.empty(t - 1)
    for i in range(t - 1):
        values[i], visible_fraction[i] = pair_error(frames[i], frames[i + 1], forward_flows[i], backward_flows[i])
    return WarpingErrors(values, visible_fraction, estimator, _version(estimator))


class WarpingError(PairwiseMetric):
    """E_warp of a clip streamed in chunks: each pair's E_pair is kept (one float), and the series
    places pair t -> t+1 at the time of frame t."""

    name = "warping_error"
    higher_is_better = HIGHER_IS_BETTER

    def __init__(self, fps: float = 1.0, estimator: str | FlowEstimator = DEFAULT_ESTIMATOR,
                 flow_size: int | None = None, *, cache: dict | None = None, owner: object = None) -> None:
        if flow_size is not None and flow_size < 16:
            raise ValueError(f"flow_size must be at least 16 pixels, got {flow_size}")
        self.flow, self.flow_size = get_estimator(estimator), flow_size
        self.extractor = f"optical flow: {self.flow.name}"
        self.version = _version(self.flow.name) + (f"; working size {flow_size} (longer side, area resize)"
                                                   if flow_size else "")
        self.cache, self.cache_key = share_with_others(cache, f"warping pairs {self.version}", owner or self)
        super().__init__(fps)

    def working_frames(self, frames: np.ndarray) -> np.ndarray:
        """Frames at the working resolution: the longer side ``flow_size`` (never enlarged)."""
        return fit_longer_side(frames, self.flow_size)

    def pair_values(self, earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
        # the drift of this metric scores the same pairs: each pair's error is computed once per clip
        return np.array(rows_once_per_clip(self.cache, self.cache_key, list(zip(earlier, later)), pair_digest,
                                           lambda indices: self._pair_errors(earlier[indices], later[indices])))

    def _pair_errors(self, earlier: np.ndarray, later: np.ndarray) -> list[float]:
        earlier, later = self.working_frames(earlier), self.working_frames(later)
        values = []
        for start in range(0, len(earlier), FLOW_BATCH):  # a batched estimator (RAFT) sees pairs together
            a, b = earlier[start:start + FLOW_BATCH], later[start:start + FLOW_BATCH]
            forward, backward = self.flow.many(a, b), self.flow.many(b, a)
            values += [pair_error(*pair)[0] for pair in zip(a, b, forward, backward)]
        return values

    def compute(self) -> MetricResult:
        values = self.values
        return MetricResult(float(values.mean()), [(t / self.fps, float(v)) for t, v in enumerate(values)])


def warping_error_per_pair(frames: np.ndarray, estimator: str | FlowEstimator = DEFAULT_ESTIMATOR) -> WarpingErrors:
    """Per-pair warping errors of a uint8 video (T, H, W, 3), flow from ``estimator``, for plots over time."""
    frames = check_video(frames, min_frames=2)
    flow = get_estimator(estimator)
    forward = np.stack([flow(a, b) for a, b in itertools.pairwise(frames)])
    backward = np.stack([flow(b, a) for a, b in itertools.pairwise(frames)])
    return warping_error_from_flows(frames, forward, backward, estimator=flow.name)


def warping_error(frames: np.ndarray, estimator: str | FlowEstimator = DEFAULT_ESTIMATOR) -> float:
    """Lai et al.'s warping error of one uint8 video (T, H, W, 3); lower is more consistent."""
    return WarpingError(estimator=estimator).score(check_video(frames, min_frames=2)).value


class WarpingArgs(MetricArgs):
    estimator: Literal["dis", "dis-medium", "farneback", "raft"] = Field(
        DEFAULT_ESTIMATOR, description="optical flow: OpenCV DIS (fast preset; dis-medium refines more at a "
        "third of the speed), OpenCV Farneback, or torchvision RAFT (local weights needed)")
    flow_size: int | None = Field(None, ge=16, description="working resolution: frames are area-resized so their "
                                  "longer side is at most this before flow and error (default: native; named in "
                                  "the version, since the value depends on it)")
    device: Device = Field("auto", description="raft: where it runs (auto: CUDA when present)")


class WarpingErrorMetric(Metric):
    name = "warping_error"
    summary = "Lai et al. 2018: mean over frame pairs of the occlusion-masked squared error of frame t+1 warped to t"
    higher_is_better = HIGHER_IS_BETTER
    Args = WarpingArgs
    motion_counterpart = "motion_magnitude"  # a still clip warps perfectly

    def __init__(self, args: WarpingArgs | None = None) -> None:
        super().__init__(args)
        try:
            self.estimator = (raft_flow(device=resolve_device(self.args.device)) if self.args.estimator == "raft"
                              else get_estimator(self.args.estimator))
        except FileNotFoundError as exc:
            raise MetricSetupError(str(exc), fix="place the RAFT weights there, or use estimator: dis") from None
        self.extractor = f"optical flow: {self.estimator.name}"
        self.version = WarpingError(estimator=self.estimator, flow_size=self.args.flow_size).version

    def streaming(self, ctx: ClipContext) -> WarpingError:
        return WarpingError(ctx.fps, self.estimator, self.args.flow_size, cache=ctx.shared, owner=self)


WarpingErrorDriftMetric = drift_metric(WarpingErrorMetric, "slope per second of the warping error over windows (positive: less consistent as it goes)")
