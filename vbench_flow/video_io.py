"""Reading, resampling and writing videos.

In memory a video is a ``uint8`` array of shape ``(T, H, W, 3)`` (RGB) plus an fps float.
Decoding uses decord; PyAV supplies metadata (the display matrix) and decodes whatever
decord gets wrong (rotated files, some frame widths); Pillow reads and writes GIFs;
encoding is PyAV (libx264).
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import decord
import numpy as np
from av.video.reformatter import Colorspace
from PIL import Image, ImageSequence, UnidentifiedImageError

from vbench_flow.errors import ConfigError, VideoReadError

__all__ = [
    "READERS",
    "VideoInfo",
    "iter_chunks",
    "num_frames_for",
    "probe_video",
    "read_video",
    "resample_fps",
    "resampled_indices",
    "write_video",
    "write_video_chunks",
]

WRITABLE_SUFFIXES = (".mp4", ".gif")
_log = logging.getLogger(__name__)
_REENCODE_FIX = ("re-download the file, or re-encode it: "
                 "ffmpeg -i INPUT -c:v libx264 -pix_fmt yuv420p OUTPUT.mp4")
# Tolerance for float fps arithmetic: 30000/1001 fps times a frame count is never exact.
_EPS = 1e-9
# decord decodes in chunks so a long video never needs two full copies in memory.
_DECORD_CHUNK = 32
# (a, b, c, d) of a display matrix snapped to a quarter turn; identity means "as stored".
Orientation = tuple[int, int, int, int]
_IDENTITY: Orientation = (1, 0, 0, 1)
# display matrices that only rotate, and their counter-clockwise degrees
_ROTATIONS: dict[Orientation, int] = {_IDENTITY: 0, (0, -1, 1, 0): 90, (0, 1, -1, 0): 270, (-1, 0, 0, -1): 180}
# Written into GIF comments: GIF delays are whole centiseconds, too coarse for most fps.
_GIF_FPS_TAG = "vbench-flow fps="
_GIF_MIN_DELAY_MS = 10


@dataclass(frozen=True)
class VideoInfo:
    """What a file holds, as :func:`read_video` would return it at its native fps."""

    num_frames: int
    fps: float
    width: int
    height: int

    @property
    def seconds(self) -> float:
        """Time spanned from the first to the last frame."""
        return (self.num_frames - 1) / self.fps


# ---------------------------------------------------------------- frame counts and resampling

def num_frames_for(seconds: float, fps: float) -> int:
    """Frames in a clip of ``seconds`` at ``fps``, both ends included (5 s at 8 fps = 41)."""
    _check_positive("seconds", seconds)
    _check_positive("fps", fps)
    return round(seconds * fps) + 1


def resampled_indices(num_frames: int, src_fps: float, dst_fps: float) -> np.ndarray:
    """Source frame for each target time k/dst_fps within the source duration.

    The nearest source frame is taken, ties rounding up, so the choice is deterministic. The last
    target may lie up to half a target period past the last source frame (it then takes the last
    frame): a 150-frame 30 fps file spans 4.97 s between first and last frame, and this is what
    lets it yield the 41 frames of a 5 s clip at 8 fps.
    """
    _check_count("num_frames", num_frames)
    _check_positive("src_fps", src_fps)
    _check_positive("dst_fps", dst_fps)
    if src_fps == dst_fps:
        return np.arange(num_frames, dtype=np.int64)
    count = _target_count(int(num_frames), src_fps, dst_fps)
    return np.array([min(_nearest_source(k, src_fps, dst_fps), num_frames - 1) for k in range(count)], dtype=np.int64)


def resample_fps(frames: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """``frames`` at ``src_fps`` re-timed to ``dst_fps`` by nearest-frame selection."""
    if len(frames) < 1:
        raise ConfigError("cannot resample a video with no frames")
    if src_fps == dst_fps:
        return frames
    return frames[resampled_indices(len(frames), src_fps, dst_fps)]


def _target_count(num_frames: int, src_fps: float, dst_fps: float) -> int:
    duration = (num_frames - 1) / src_fps
    return math.floor(duration * dst_fps + 0.5 + _EPS) + 1


def _nearest_source(k: int, src_fps: float, dst_fps: float) -> int:
    return math.floor(k * src_fps / dst_fps + 0.5 + _EPS)


def _wanted_indices(total: int, native_fps: float, fps: float | None, max_frames: int | None) -> np.ndarray:
    indices = np.arange(total, dtype=np.int64) if fps is None else resampled_indices(total, native_fps, fps)
    return indices if max_frames is None else indices[:max_frames]


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


# ---------------------------------------------------------------- reading

def read_video(path: str | Path, *, fps: float | None = None,
               max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode a video as a player shows it: ``(frames, fps)``.

    ``fps`` resamples to that rate (nearest frame); ``max_frames`` keeps only the first
    frames of the result. Any unreadable input raises :class:`VideoReadError`.
    """
    if fps is not None:
        _check_positive("fps", fps)
    if max_frames is not None:
        _check_count("max_frames", max_frames)
    path = _existing_file(Path(path))
    if _is_gif(path):
        frames, native = _read_gif(path)
        return frames[_wanted_indices(len(frames), native, fps, max_frames)], fps or native
    orientation, width, height = _probe_orientation(path)
    if orientation == _IDENTITY:
        decoded = _read_decord(path, fps, max_frames, (height, width))
        if decoded is not None:
            return decoded[0], fps or decoded[1]
    frames, native = _read_pyav(path, fps, max_frames)
    return _orient(frames, orientation), fps or native


# PyAV is the default: on a 30 s 1080p file it decodes as fast as decord (about 54 frames/s on
# one core) in 254 MB of resident memory, where decord's reader grows to 1.78 GB; torchcodec is an
# option where its FFmpeg libraries are installed (suites/perf_real.yaml measures all three)
READERS = ("pyav", "decord", "torchcodec")
DEFAULT_CHUNK_FRAMES = 48
# a chunk holds at most this many decoded bytes: 48 frames of 64x64, 10 of 1080p, 2 of 4K
CHUNK_BYTES = 64 * 1024 * 1024


def frames_per_chunk(height: int, width: int, most: int = DEFAULT_CHUNK_FRAMES) -> int:
    """Frames of ``height`` x ``width`` in one chunk: ``most``, or fewer to stay within CHUNK_BYTES."""
    return max(1, min(most, CHUNK_BYTES // (height * width * 3)))


def iter_chunks(path: str | Path, *, fps: float | None = None, max_frames: int | None = None,
                chunk_frames: int | None = None, reader: str = "pyav", device: str = "cpu") -> Iterator[np.ndarray]:
    """The frames :func:`read_video` returns, as consecutive chunks of at most ``chunk_frames``
    frames and at most CHUNK_BYTES (:func:`frames_per_chunk`): memory holds one chunk, whatever the
    clip's length or size. ``device`` is where torchcodec decodes ("cuda": on the GPU).

    ``reader``: ``pyav`` decodes as a stream in bounded memory; ``decord`` reads frame ranges by
    index (its reader's memory grows with the file; it cannot apply rotation and fails on some
    frame widths, where it raises). Resampling to ``fps`` picks the same frames as
    :func:`read_video`. A corrupt or truncated file raises VideoReadError naming it.
    """
    if fps is not None:
        _check_positive("fps", fps)
    if max_frames is not None:
        _check_count("max_frames", max_frames)
    if chunk_frames is not None:
        _check_count("chunk_frames", chunk_frames)
    if reader not in READERS:
        raise ConfigError(f"unknown video reader {reader!r}", fix=f"use one of {', '.join(READERS)}")
    path = _existing_file(Path(path))
    if _is_gif(path):  # GIFs are small, and their frame timing needs every delay first
        frames, native = _read_gif(path)
        frames = frames[_wanted_indices(len(frames), native, fps, max_frames)]
        chunk_frames = frames_per_chunk(*frames.shape[1:3], most=chunk_frames or DEFAULT_CHUNK_FRAMES)
        yield from (frames[i:i + chunk_frames] for i in range(0, len(frames), chunk_frames))
        return
    orientation, width, height = _probe_orientation(path)
    chunk_frames = frames_per_chunk(height, width, most=chunk_frames or DEFAULT_CHUNK_FRAMES)
    if reader == "torchcodec":
        yield from _torchcodec_chunks(path, fps, max_frames, chunk_frames, orientation,
                                      (width, height) if orientation[0] == 0 else (height, width), device)
        return
    if reader == "decord":
        opened = _decord_chunks(path, fps, max_frames, (height, width), chunk_frames) \
            if orientation == _IDENTITY else None
        if opened is None:
            raise VideoReadError("decord cannot read this file (rotated, or a frame width it fails on)",
                                 where=str(path), fix="use reader: pyav")
        yield from opened[0]
        return
    for chunk in _pyav_chunks(path, fps, max_frames, chunk_frames):
        yield _orient(chunk, orientation)


def _decord_chunks(path: Path, fps: float | None, max_frames: int | None, stored_hw: tuple[int, int],
                   chunk_frames: int) -> tuple[Iterator[np.ndarray], float] | None:
    """(chunks by index ranges, the native fps), or None when decord cannot open the file or
    misreads its first chunk; a failure after the first chunk is a VideoReadError."""
    reader = _open_decord(path)
    length = _decord_length(reader) if reader is not None else None
    if length is None:
        return None
    indices = _wanted_indices(*length, fps, max_frames)

    def batch(start: int) -> np.ndarray | None:
        wanted = indices[start:start + chunk_frames]
        try:
            frames = reader.get_batch(wanted.tolist()).asnumpy()
        except (decord.DECORDError, RuntimeError, IndexError) as exc:
            _log.debug("decord failed on %s frames %s..%s: %s", path, wanted[0], wanted[-1], exc)
            return None
        return frames if frames.shape == (len(wanted), *stored_hw, 3) else None

    first = batch(0)
    if first is None:
        return None

    def rest() -> Iterator[np.ndarray]:
        yield first
        for start in range(chunk_frames, len(indices), chunk_frames):
            frames = batch(start)
            if frames is None:
                raise VideoReadError(f"decoding failed after {start} frames; the file is truncated or corrupt",
                                     where=str(path), fix=_REENCODE_FIX)
            yield frames

    return rest(), length[1]


def torchcodec_decoder() -> type:
    """torchcodec's VideoDecoder, or a ConfigError saying how to install it (it is optional, and it
    needs FFmpeg's shared libraries, which its wheel does not bundle)."""
    try:
        from torchcodec.decoders import VideoDecoder
    except (ImportError, OSError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"the torchcodec reader cannot load ({reason})", where="scoring.reader",
                          fix="pip install torchcodec and the FFmpeg libraries it needs (e.g. apt install "
                              "libavcodec59 libavformat59 libavutil57 libswscale6 libavdevice59 libavfilter8), "
                              "or use reader: pyav") from None
    return VideoDecoder


def _torchcodec_chunks(path: Path, fps: float | None, max_frames: int | None, chunk_frames: int,
                       orientation: Orientation, displayed_hw: tuple[int, int],
                       device: str = "cpu") -> Iterator[np.ndarray]:
    """Frames by index ranges through torchcodec, decoded on ``device`` (CUDA: NVDEC). torchcodec
    applies pure rotations itself (since 0.11); a file whose rotation it does not report as ours
    is refused rather than scored the wrong way up."""
    if orientation not in _ROTATIONS:
        raise VideoReadError("torchcodec does not apply mirrored display matrices", where=str(path),
                             fix="use reader: pyav")
    decoder_type = torchcodec_decoder()
    try:
        decoder = decoder_type(str(path), dimension_order="NHWC", seek_mode="exact", device=device)
        total, native = decoder.metadata.num_frames, decoder.metadata.average_fps
    except (RuntimeError, ValueError) as exc:
        raise _unreadable(path, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__) from None
    rotation = getattr(decoder.metadata, "rotation", None)
    if _ROTATIONS[orientation] and (rotation is None or round(rotation) % 360 != _ROTATIONS[orientation]):
        raise VideoReadError(f"this torchcodec reports rotation {rotation} for a file rotated "
                             f"{_ROTATIONS[orientation]} degrees (torchcodec applies rotation from 0.11 on)",
                             where=str(path), fix="pip install 'torchcodec>=0.11', or use reader: pyav")
    if not total or not native:
        raise VideoReadError("torchcodec found no frame count or frame rate", where=str(path), fix="use reader: pyav")
    indices = _wanted_indices(total, native, fps, max_frames)
    for start in range(0, len(indices), chunk_frames):
        wanted = indices[start:start + chunk_frames].tolist()
        try:
            frames = decoder.get_frames_at(wanted).data.cpu().numpy()
        except (RuntimeError, IndexError, ValueError) as exc:
            raise VideoReadError(f"decoding failed after {start} frames ({str(exc).splitlines()[0][:200]}); the file "
                                 "is truncated or corrupt", where=str(path), fix=_REENCODE_FIX) from None
        if frames.shape != (len(wanted), *displayed_hw, 3):
            raise VideoReadError(f"torchcodec returned frames of shape {frames.shape[1:3]}, expected {displayed_hw}",
                                 where=str(path), fix="use reader: pyav")
        yield frames


def _pyav_chunks(path: Path, fps: float | None, max_frames: int | None, chunk_frames: int) -> Iterator[np.ndarray]:
    """Frames as stored, decoded as a stream. A frame picked for a target time is held back until
    enough of the file has been seen to know that the target lies within the clip."""
    ready: list[np.ndarray] = []
    held: list[tuple[int, np.ndarray]] = []  # (target number, frame) not yet known to be inside
    emitted, count, frame = 0, 0, None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]  # no frame threading: it hides the errors of truncated files
            native = _stream_fps(stream, path)
            targets = _target_stream(native, fps)
            k, target = 0, next(targets)
            for index, frame in enumerate(container.decode(stream)):
                count = index + 1
                rgb = None
                while target == index:
                    rgb = frame.to_ndarray(format="rgb24") if rgb is None else rgb
                    held.append((k, rgb))
                    k, target = k + 1, next(targets)
                known = k if fps is None else _target_count(count, native, fps)
                while held and held[0][0] < known:
                    ready.append(held.pop(0)[1])
                if max_frames is not None and emitted + len(ready) >= max_frames:
                    ready = ready[:max_frames - emitted]
                    break
                if len(ready) >= chunk_frames:
                    yield np.stack(ready[:chunk_frames])
                    emitted += chunk_frames
                    ready = ready[chunk_frames:]
    except av.FFmpegError as exc:
        raise VideoReadError(f"decoding failed after {emitted + len(ready)} frames ({_ffmpeg_reason(exc)}); "
                             "the file is truncated or corrupt", where=str(path), fix=_REENCODE_FIX) from exc
    if count == 0:
        raise VideoReadError("video has no frames", where=str(path), fix=_REENCODE_FIX)
    if fps is not None and (max_frames is None or emitted + len(ready) < max_frames):
        # the last target times may fall up to half a period past the last frame: they show it
        last = frame.to_ndarray(format="rgb24")
        missing = _target_count(count, native, fps) - k
        ready += [last] * max(0, missing)  # (frames still held lie past the clip's end)
        if max_frames is not None:
            ready = ready[:max_frames - emitted]
    for start in range(0, len(ready), chunk_frames):
        yield np.stack(ready[start:start + chunk_frames])


def iter_clip(path: str | Path, num_frames: int, fps: float, **options: object) -> Iterator[np.ndarray]:
    """The first ``num_frames`` frames of a video at ``fps`` as :func:`iter_chunks` gives them
    (``options``: chunk_frames, reader, device); a shorter video raises :func:`too_short`'s error
    once its frames have been read."""
    seen = 0
    for chunk in iter_chunks(path, fps=fps, max_frames=num_frames, **options):
        seen += len(chunk)
        yield chunk
    if seen < num_frames:
        raise too_short(Path(path), seen, num_frames, fps)


def too_short(path: Path, got: int, num_frames: int, fps: float) -> VideoReadError:
    """The error for a video that gave ``got`` frames at ``fps`` where ``num_frames`` were asked for."""
    info = probe_video(path)
    return VideoReadError(
        f"video too short: it has {info.num_frames} frames at {info.fps:g} fps ({info.seconds:.2f} s), "
        f"which gives {got} frames at {fps:g} fps; {num_frames} frames "
        f"({(num_frames - 1) / fps:.2f} s) were asked for",
        where=str(path), fix="use a longer video, or ask for fewer seconds or a lower fps")


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, fps and displayed size of a video (decodes it only where decord cannot)."""
    path = _existing_file(Path(path))
    if _is_gif(path):
        frames, native = _read_gif(path)
        return VideoInfo(len(frames), native, frames.shape[2], frames.shape[1])
    orientation, width, height = _probe_orientation(path)
    reader = _open_decord(path) if orientation == _IDENTITY else None
    length = _decord_length(reader) if reader is not None else None
    if length is None:  # counted by decoding, one chunk at a time
        count, shape = 0, (height, width)
        for chunk in iter_chunks(path):
            count, shape = count + len(chunk), chunk.shape[1:3]
        with av.open(str(path)) as container:
            native = _stream_fps(container.streams.video[0], path)
        return VideoInfo(count, native, shape[1], shape[0])
    return VideoInfo(length[0], length[1], width, height)


def _existing_file(path: Path) -> Path:
    if not path.exists():
        raise VideoReadError("video file does not exist", where=str(path),
                             fix=f"check the path (relative paths start at {Path.cwd()})")
    if not path.is_file():
        raise VideoReadError("expected a video file, found a directory or special file", where=str(path),
                             fix="point at the video file itself")
    if path.stat().st_size == 0:
        raise VideoReadError("video file is empty (0 bytes)", where=str(path), fix=_REENCODE_FIX)
    return path


def _is_gif(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(6) in (b"GIF87a", b"GIF89a")


def _unreadable(path: Path, reason: str) -> VideoReadError:
    return VideoReadError(f"cannot decode video ({reason}); the file is corrupt, truncated or not a video",
                          where=str(path), fix=_REENCODE_FIX)


def _ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0]


def _probe_orientation(path: Path) -> tuple[Orientation, int, int]:
    """Display orientation and stored (width, height) from PyAV's first decoded frame.

    The display matrix rides on decoded frames as side data in FFmpeg 8; older muxers
    only wrote a clockwise ``rotate`` tag, which is the fallback.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError("file has no video stream", where=str(path),
                                     fix="pass a video file, not audio or an image")
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            if first is None:
                raise VideoReadError("video has no frames", where=str(path), fix=_REENCODE_FIX)
            matrix = first.side_data.get("DISPLAYMATRIX")
            if matrix is not None:
                orientation = _snap_display_matrix(np.frombuffer(bytes(matrix), dtype=np.int32))
            else:
                orientation = _rotate_tag_orientation(stream.metadata.get("rotate", "0"))
            return orientation, first.width, first.height
    except av.FFmpegError as exc:
        raise _unreadable(path, _ffmpeg_reason(exc)) from exc


def _snap_display_matrix(matrix: np.ndarray) -> Orientation:
    # FFmpeg maps source (x, y) to (a*x + c*y, b*x + d*y); snap to the nearest quarter turn.
    a, b, c, d = (float(v) for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    if abs(a) + abs(d) == 0 and abs(b) + abs(c) == 0:
        return _IDENTITY
    if abs(a) + abs(d) >= abs(b) + abs(c):
        return (1 if a >= 0 else -1, 0, 0, 1 if d >= 0 else -1)
    return (0, 1 if b >= 0 else -1, 1 if c >= 0 else -1, 0)


def _rotate_tag_orientation(tag: str) -> Orientation:
    try:
        clockwise = round(float(tag) / 90) % 4
    except ValueError:
        return _IDENTITY
    return [(1, 0, 0, 1), (0, 1, -1, 0), (-1, 0, 0, -1), (0, -1, 1, 0)][clockwise]


def _orient(frames: np.ndarray, orientation: Orientation) -> np.ndarray:
    """Apply a snapped display matrix; pure rotations equal ``np.rot90`` over (H, W).

    Matches ffmpeg's autorotate: (0,-1,1,0) is a quarter turn counter-clockwise, i.e.
    ``np.rot90(frames, 1, axes=(1, 2))``; negative determinants add a mirror.
    """
    a, b, c, d = orientation
    if orientation == _IDENTITY:
        return frames
    if a == 0:
        out = frames.transpose(0, 2, 1, 3)
        out = out[:, ::-1] if b < 0 else out
        out = out[:, :, ::-1] if c < 0 else out
    else:
        out = frames[:, ::-1] if d < 0 else frames
        out = out[:, :, ::-1] if a < 0 else out
    return np.ascontiguousarray(out)


def _open_decord(path: Path) -> decord.VideoReader | None:
    decord.logging.set_level(decord.logging.QUIET)  # failures fall back to PyAV, which explains them
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0))
    except (decord.DECORDError, RuntimeError) as exc:
        _log.debug("decord cannot open %s: %s", path, exc)
        return None


def _decord_length(reader: decord.VideoReader) -> tuple[int, float] | None:
    total, native = len(reader), float(reader.get_avg_fps())
    if total < 1 or not math.isfinite(native) or native <= 0:
        return None
    return total, native


def _read_decord(path: Path, fps: float | None, max_frames: int | None,
                 stored_hw: tuple[int, int]) -> tuple[np.ndarray, float] | None:
    """Frames via decord, or None wherever decord fails or disagrees with the stream.

    decord 0.6.0 raises on some frame widths (8, 16, 24, 48, 72, ...) and
    half-applies rotation tags; PyAV then decodes the file and reports real damage.
    """
    opened = _decord_chunks(path, fps, max_frames, stored_hw, _DECORD_CHUNK)
    if opened is None:
        return None
    chunks, native = opened
    try:
        return np.concatenate(list(chunks)), native
    except VideoReadError:
        return None


def _read_pyav(path: Path, fps: float | None, max_frames: int | None) -> tuple[np.ndarray, float]:
    """Frames as stored (no rotation), with the stream's frame rate."""
    frames = np.concatenate(list(_pyav_chunks(path, fps, max_frames, DEFAULT_CHUNK_FRAMES)))
    return frames, _pyav_fps(path)


def _pyav_fps(path: Path) -> float:
    try:
        with av.open(str(path)) as container:
            return _stream_fps(container.streams.video[0], path)
    except av.FFmpegError as exc:
        raise _unreadable(path, _ffmpeg_reason(exc)) from exc


def _target_stream(native: float, fps: float | None) -> Iterator[int]:
    k = 0
    while True:
        yield k if fps is None else _nearest_source(k, native, fps)
        k += 1


def _stream_fps(stream: av.video.stream.VideoStream, path: Path) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    raise VideoReadError("video reports no frame rate", where=str(path), fix=_REENCODE_FIX)


def _read_gif(path: Path) -> tuple[np.ndarray, float]:
    """All frames of a GIF, each repeated for as many frame periods as it is shown.

    Pillow merges identical consecutive frames when writing (adding their delays), so
    the delays are divided by the frame period: the fps our writer records in a comment,
    else the shortest delay.
    """
    try:
        with Image.open(path) as image:
            tagged = _gif_tagged_fps(image.info.get("comment"))
            frames, delays = [], []
            for frame in ImageSequence.Iterator(image):
                frames.append(np.asarray(frame.convert("RGB")))
                delays.append(frame.info.get("duration") or 0)
    except (UnidentifiedImageError, OSError, EOFError, SyntaxError, ValueError) as exc:
        raise _unreadable(path, str(exc) or type(exc).__name__) from exc
    if not frames:
        raise VideoReadError("GIF has no frames", where=str(path), fix=_REENCODE_FIX)
    # Browsers show a zero delay as 100 ms; do the same.
    delays = [d if d > 0 else 100 for d in delays]
    period = max(1000 / tagged, _GIF_MIN_DELAY_MS) if tagged else min(delays)
    repeats = [max(1, math.floor(d / period + 0.5)) for d in delays]
    return np.repeat(np.stack(frames), repeats, axis=0), tagged or 1000 / period


def _gif_tagged_fps(comment: bytes | str | None) -> float | None:
    if isinstance(comment, bytes):
        comment = comment.decode("latin-1")
    if not comment or not comment.startswith(_GIF_FPS_TAG):
        return None
    try:
        fps = float(comment[len(_GIF_FPS_TAG):])
    except ValueError:
        return None
    return fps if math.isfinite(fps) and fps > 0 else None


# ---------------------------------------------------------------- writing

def write_video(path: str | Path, frames: np.ndarray, fps: float, *, crf: int = 18) -> Path:
    """Write ``frames`` to ``.mp4`` (H.264, yuv420p, faststart) or ``.gif``, atomically.

    Odd mp4 sizes are padded to even by repeating the last row/column.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITABLE_SUFFIXES:
        raise ConfigError(f"cannot write videos with suffix {path.suffix!r}", where=str(path),
                          fix=f"use one of {', '.join(WRITABLE_SUFFIXES)}")
    _check_frames(frames, path)
    _check_positive("fps", fps)
    if isinstance(crf, bool) or not isinstance(crf, numbers.Integral) or not 0 <= crf <= 51:
        raise ConfigError(f"crf must be an integer in 0..51, got {crf!r}", where=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory so os.replace is an atomic rename; hidden so globs skip it.
    partial = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        if suffix == ".mp4":
            _write_mp4(partial, [frames], fps, crf)
        else:
            _write_gif(partial, frames, fps)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _check_frames(frames: object, path: Path) -> None:
    if not isinstance(frames, np.ndarray):
        got = type(frames).__name__
    elif frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        got = f"{frames.dtype} array of shape {frames.shape}"
    else:
        return
    raise ConfigError(f"frames must be a uint8 array of shape (T, H, W, 3) with T >= 1, got {got}",
                      where=str(path),
                      fix="convert floats in [0, 1] with (x * 255).round().clip(0, 255).astype(np.uint8)")


def write_video_chunks(path: str | Path, chunks: Iterable[np.ndarray], fps: float, *, crf: int = 18,
                       preset: str = "medium") -> Path:
    """Write consecutive uint8 (T, H, W, 3) chunks as one H.264 ``.mp4``, atomically, holding one
    chunk at a time (for clips too long to hold); ``preset`` is libx264's speed/size trade-off."""
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ConfigError(f"chunked writing makes .mp4 files, not {path.suffix!r}", where=str(path))
    _check_positive("fps", fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        _write_mp4(partial, chunks, fps, crf, preset)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _write_mp4(path: Path, chunks: Iterable[np.ndarray], fps: float, crf: int, preset: str = "medium") -> None:
    rate = Fraction(fps).limit_denominator(100_000)
    index = 0
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": preset})
        stream.pix_fmt = "yuv420p"
        # Tag what the RGB->YUV conversion below uses, so browsers pick the same matrix.
        stream.codec_context.colorspace = 6  # AVCOL_SPC_SMPTE170M (BT.601)
        stream.codec_context.color_range = 1  # limited (MPEG) range
        for chunk in chunks:
            _check_frames(chunk, path)
            chunk = _pad_even(chunk)
            if index == 0:
                stream.width, stream.height = chunk.shape[2], chunk.shape[1]
            elif (chunk.shape[2], chunk.shape[1]) != (stream.width, stream.height):
                raise ConfigError(f"chunk frames are {chunk.shape[2]}x{chunk.shape[1]}, earlier frames "
                                  f"{stream.width}x{stream.height}", where=str(path))
            for rgb in chunk:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame = frame.reformat(format="yuv420p", dst_colorspace=Colorspace.ITU601)
                frame.pts = index
                index += 1
                container.mux(stream.encode(frame))
        if index == 0:
            raise ConfigError("no frames to write", where=str(path))
        container.mux(stream.encode(None))


def _pad_even(frames: np.ndarray) -> np.ndarray:
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not pad_h and not pad_w:
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    images = [Image.fromarray(np.ascontiguousarray(rgb)) for rgb in frames]
    # GIF delays are whole centiseconds (Pillow truncates), so the exact fps goes in a
    # comment for _read_gif; browsers turn delays under 10 ms into 100 ms.
    duration = max(_GIF_MIN_DELAY_MS, round(1000 / fps))
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration,
                   loop=0, optimize=False, comment=f"{_GIF_FPS_TAG}{float(fps)!r}".encode("ascii"))
