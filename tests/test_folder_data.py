"""The manifest-backed data set of real videos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vbench_flow.data.folder import FolderRecord, VideoFolder
from vbench_flow.errors import ConfigError, VideoReadError
from vbench_flow.video_io import write_video

HEIGHT, WIDTH = 40, 56


def counting_video(num_frames: int) -> np.ndarray:
    """Frame t is flat grey with red level 10*t, so a decoded frame names its source index."""
    frames = np.full((num_frames, HEIGHT, WIDTH, 3), 90, np.uint8)
    frames[..., 0] = (np.arange(num_frames) * 10).astype(np.uint8)[:, None, None]
    return frames


def frame_numbers(frames: np.ndarray) -> list[int]:
    return [round(float(frame[..., 0].mean()) / 10) for frame in frames]


@pytest.fixture()
def clips(tmp_path: Path) -> Path:
    folder = tmp_path / "clips"
    write_video(folder / "long.mp4", counting_video(24), 8)  # 2.875 s
    write_video(folder / "short.mp4", counting_video(12), 8)  # 1.375 s
    halves = np.zeros((4, HEIGHT, WIDTH, 3), np.uint8)
    halves[:, :, : WIDTH // 2] = (250, 0, 0)
    halves[:, :, WIDTH // 2:] = (0, 0, 250)
    write_video(folder / "halves.gif", halves, 4)
    return folder


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_jsonl(path: Path, rows: list[object | str]) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- loading

def test_csv_manifest(clips):
    manifest = write_csv(clips / "clips.csv", "id,video,caption,split\n"
                                              "a,long.mp4,  a counting clip ,train\n"
                                              'b,short.mp4,"short, but fine",test\n')
    data = VideoFolder(manifest)
    assert len(data) == 2
    first, second = data[0], data[1]
    assert isinstance(first, FolderRecord)
    assert (first.id, first.video, first.caption, first.meta) == ("a", clips / "long.mp4", "a counting clip",
                                                                   {"split": "train"})
    assert (second.caption, second.line) == ("short, but fine", 3)
    assert [r.id for r in data] == ["a", "b"] == [r.id for r in data.records]
    assert data.missing_videos() == []


def test_csv_without_ids_numbers_rows_and_uses_the_given_root(clips, tmp_path):
    manifest = write_csv(tmp_path / "lists" / "m.csv", "\ufeffvideo,caption\nlong.mp4,one\nshort.mp4,two\n")
    data = VideoFolder(manifest, root=clips)
    assert [r.id for r in data] == ["folder-000000", "folder-000001"]
    assert [r.video for r in data] == [clips / "long.mp4", clips / "short.mp4"]
    assert data[0].meta == {}


def test_jsonl_manifest_keeps_split_in_meta(clips):
    manifest = write_jsonl(clips / "clips.jsonl", [
        {"video": "long.mp4", "caption": "counting", "id": 7, "split": "train"},
        "",
        {"video": "halves.gif", "caption": "red then blue"},
    ])
    data = VideoFolder(manifest)
    assert [r.id for r in data] == ["7", "folder-000001"]
    assert [r.meta for r in data] == [{"split": "train"}, {}]
    assert [r.line for r in data] == [1, 3]


# ---------------------------------------------------------------- manifest errors

def _config_error(manifest: Path, *words: str) -> str:
    with pytest.raises(ConfigError) as info:
        VideoFolder(manifest)
    message = str(info.value)
    for word in (str(manifest), *words):
        assert word in message, f"{word!r} not in {message!r}"
    return message


def test_csv_missing_column(tmp_path):
    _config_error(write_csv(tmp_path / "m.csv", "video,id\na.mp4,x\n"), "m.csv:1", "missing column 'caption'")
    # a column the manifest does not know is named first: it is often the required one, misnamed
    _config_error(write_csv(tmp_path / "n.csv", "video,text\na.mp4,hello\n"), "n.csv:1", "unknown column 'text'",
                  "video, caption, id, split")


def test_csv_empty_caption_names_line(tmp_path):
    _config_error(write_csv(tmp_path / "m.csv", "video,caption\na.mp4,fine\nb.mp4,  \n"), "m.csv:3", "caption")


def test_csv_short_row_names_line_and_field(tmp_path):
    _config_error(write_csv(tmp_path / "m.csv", "video,caption\na.mp4,fine\nb.mp4\n"), "m.csv:3", "'caption'")


def test_csv_extra_fields_name_line(tmp_path):
    _config_error(write_csv(tmp_path / "m.csv", "video,caption\na.mp4,one, two\n"), "m.csv:2", "quote")


def test_jsonl_missing_field_names_line(tmp_path):
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"video": "a.mp4", "caption": "x"}, {"caption": "no video"}])
    _config_error(manifest, "m.jsonl:2", "'video'")


def test_jsonl_caption_must_be_text(tmp_path):
    _config_error(write_jsonl(tmp_path / "m.jsonl", [{"video": "a.mp4", "caption": 3}]), "m.jsonl:1", "caption")


def test_jsonl_unparsable_line(tmp_path):
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"video": "a.mp4", "caption": "x"}, '{"video": "b.mp4",'])
    _config_error(manifest, "m.jsonl:2", "JSON")


def test_jsonl_line_must_be_an_object(tmp_path):
    _config_error(write_jsonl(tmp_path / "m.jsonl", ['["a.mp4", "x"]']), "m.jsonl:1", "object")


def test_duplicate_id_names_both_lines(tmp_path):
    manifest = write_csv(tmp_path / "m.csv", "id,video,caption\nx,a.mp4,one\ny,b.mp4,two\nx,c.mp4,three\n")
    _config_error(manifest, "m.csv:4", "duplicate id 'x'", "line 2")


def test_unknown_suffix_and_missing_or_empty_manifest(tmp_path):
    _config_error(write_csv(tmp_path / "m.txt", "video,caption\n"), ".txt", ".csv")
    _config_error(tmp_path / "absent.jsonl", "does not exist")
    _config_error(write_csv(tmp_path / "empty.csv", "video,caption\n"), "no videos")


# ---------------------------------------------------------------- videos

def test_missing_video_is_reported_lazily(clips):
    manifest = write_csv(clips / "m.csv", "video,caption\nlong.mp4,here\ngone.mp4,not here\n")
    data = VideoFolder(manifest)
    assert data.missing_videos() == [str(clips / "gone.mp4")]
    with pytest.raises(VideoReadError) as info:
        data.clip(1, 4, 8)
    message = str(info.value)
    assert str(clips / "gone.mp4") in message and "m.csv line 3" in message and "does not exist" in message


def test_clip_takes_the_first_frames_at_the_requested_fps(clips):
    data = VideoFolder(write_csv(clips / "m.csv", "video,caption\nlong.mp4,count\nhalves.gif,gif\n"))
    native = data.clip(0, 9, 8)
    assert native.shape == (9, HEIGHT, WIDTH, 3) and native.dtype == np.uint8
    assert frame_numbers(native) == list(range(9))
    assert frame_numbers(data.clip(0, 6, 4)) == [0, 2, 4, 6, 8, 10]
    assert frame_numbers(data.clip(0, 5, 16)) == [0, 1, 1, 2, 2]  # 0.5-frame ties round up
    assert data.clip(1, 3, 4).shape == (3, HEIGHT, WIDTH, 3)


def test_clip_too_short_says_what_the_file_has(clips):
    data = VideoFolder(write_csv(clips / "m.csv", "id,video,caption\nshort,short.mp4,twelve frames\n"))
    assert len(data.clip(0, 12, 8)) == 12
    with pytest.raises(VideoReadError) as info:
        data.clip(0, 13, 8)
    message = str(info.value)
    for word in (str(clips / "short.mp4"), "12 frames at 8 fps", "1.38 s", "13 frames", "m.csv line 2"):
        assert word in message, f"{word!r} not in {message!r}"
    assert len(data.clip(0, 7, 4)) == 7  # 1.375 s + half a 4 fps period reaches t = 1.5 s
    with pytest.raises(VideoReadError, match="gives 7 frames at 4 fps; 8 frames"):
        data.clip(0, 8, 4)


def test_clip_of_corrupt_video_names_the_manifest_line(clips):
    (clips / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    data = VideoFolder(write_csv(clips / "m.csv", "video,caption\nlong.mp4,ok\nbroken.mp4,bad\n"))
    assert data.missing_videos() == []
    with pytest.raises(VideoReadError, match="m.csv line 3"):
        data.clip(1, 4, 8)


def test_clip_resize_to_square(clips):
    data = VideoFolder(write_csv(clips / "m.csv", "video,caption\nhalves.gif,red and blue\nlong.mp4,count\n"))
    frames = data.clip(0, 4, 4, size=16)
    assert frames.shape == (4, 16, 16, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[:, :, :8], np.broadcast_to(np.array([250, 0, 0], np.uint8), (4, 16, 8, 3)))
    np.testing.assert_array_equal(frames[:, :, 8:], np.broadcast_to(np.array([0, 0, 250], np.uint8), (4, 16, 8, 3)))
    counted = data.clip(1, 5, 8, size=24)
    assert counted.shape == (5, 24, 24, 3) and frame_numbers(counted) == list(range(5))


@pytest.mark.parametrize("kwargs", [{"num_frames": 0}, {"fps": 0}, {"size": 0}, {"num_frames": 2.0}])
def test_clip_rejects_bad_arguments(clips, kwargs):
    data = VideoFolder(write_csv(clips / "m.csv", "video,caption\nlong.mp4,count\n"))
    with pytest.raises(ConfigError):
        data.clip(**{"index": 0, "num_frames": 4, "fps": 8, **kwargs})
