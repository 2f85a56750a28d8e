"""Manifest hardening shared by the folder data set and the folder model: videos stay inside the
root, match fields apply per row with the most specific row winning, unknown columns are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vbench_flow.builtin_models import FolderGenerator
from vbench_flow.data.folder import VideoFolder
from vbench_flow.errors import ConfigError
from vbench_flow.protocol import Prompt
from vbench_flow.video_io import write_video
from tests.test_runner import vbf, write_suite

FPS, SECONDS = 4, 1  # 5-frame clips keep every read fast


def write_grey_video(path: Path, level: int) -> Path:
    """A flat clip whose grey level names it once decoded."""
    write_video(path, np.full((SECONDS * FPS + 1, 16, 16, 3), level, np.uint8), FPS)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def assert_mentions(error: pytest.ExceptionInfo, *words: str) -> None:
    message = str(error.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


LEVELS = {"any.mp4": 40, "seed3.mp4": 120, "seed3-i2v.mp4": 200}


def scored_video(generator: FolderGenerator, seed: int, task: str = "t2v") -> str:
    """Which of the LEVELS clips the generator hands back for prompt 'p'."""
    [path] = generator.generate([Prompt("a grey square", "p")], SECONDS, FPS, seed=seed, task=task)
    return Path(path).name


@pytest.fixture()
def clips(tmp_path: Path) -> Path:
    for name, level in LEVELS.items():
        write_grey_video(tmp_path / name, level)
    return tmp_path


# ---------------------------------------------------------------- folder model: per-row match fields

@pytest.mark.parametrize("seed_row_first", [False, True])
def test_seed_on_some_jsonl_rows_only_scores_the_seed_3_video_for_seed_3(tmp_path, clips, seed_row_first):
    rows = [{"video": "any.mp4", "prompt_id": "p"}, {"video": "seed3.mp4", "prompt_id": "p", "seed": 3}]
    generator = FolderGenerator(write_jsonl(tmp_path / "m.jsonl", rows[::-1] if seed_row_first else rows))
    assert scored_video(generator, seed=3) == "seed3.mp4"
    assert scored_video(generator, seed=0) == scored_video(generator, seed=7) == "any.mp4"


def test_empty_csv_cell_is_a_wildcard_and_the_most_specific_row_wins(tmp_path, clips):
    manifest = write_text(tmp_path / "m.csv", "video,prompt_id,seed,task\n"
                                              "any.mp4,p,,\n"
                                              "seed3.mp4,p,3,\n"
                                              "seed3-i2v.mp4,p,3,i2v\n")
    generator = FolderGenerator(manifest)
    assert scored_video(generator, seed=3, task="i2v") == "seed3-i2v.mp4"
    assert scored_video(generator, seed=3, task="t2v") == "seed3.mp4"
    assert scored_video(generator, seed=1, task="i2v") == "any.mp4"


def test_rows_fitting_one_unit_with_neither_more_specific_name_both_lines(tmp_path, clips):
    rows = [{"video": "any.mp4", "prompt_id": "p"},
            {"video": "seed3.mp4", "prompt_id": "p", "seed": 3},
            {"video": "seed3-i2v.mp4", "prompt_id": "p", "task": "i2v"}]
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    with pytest.raises(ConfigError) as error:
        FolderGenerator(manifest)
    assert_mentions(error, f"{manifest}:3", "lines 2 and 3", "seed=3", "task='i2v'", "add a row naming seed and task")
    # a row naming both fields settles the units the two rows share
    settled = write_jsonl(tmp_path / "settled.jsonl", [*rows, {"video": "any.mp4", "prompt_id": "p", "seed": 3,
                                                               "task": "i2v"}])
    generator = FolderGenerator(settled)
    assert scored_video(generator, seed=3, task="i2v") == "any.mp4"
    assert scored_video(generator, seed=3, task="t2v") == "seed3.mp4"
    assert scored_video(generator, seed=0, task="i2v") == "seed3-i2v.mp4"


def test_duplicate_rows_name_both_lines(tmp_path, clips):
    manifest = write_text(tmp_path / "m.csv", "video,prompt_id,seed\nany.mp4,p,3\nseed3.mp4,p,\nseed3.mp4,p,3\n")
    with pytest.raises(ConfigError) as error:
        FolderGenerator(manifest)
    assert_mentions(error, f"{manifest}:4", "first on line 2")


# ---------------------------------------------------------------- unknown columns

def test_folder_model_unknown_csv_column_suggests_the_known_one(tmp_path):
    manifest = write_text(tmp_path / "m.csv", "video,prompt_id,sead\na.mp4,p,3\n")
    with pytest.raises(ConfigError) as error:
        FolderGenerator(manifest)
    assert_mentions(error, f"{manifest}:1", "unknown column 'sead'", "did you mean 'seed'",
                    "video, prompt_id, prompt, seed, task, clip_seconds")


def test_folder_data_unknown_jsonl_column_names_its_line(tmp_path):
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"video": "a.mp4", "caption": "one"},
                                                  {"video": "b.mp4", "caption_": "two"}])
    with pytest.raises(ConfigError) as error:
        VideoFolder(manifest)
    assert_mentions(error, f"{manifest}:2", "unknown column 'caption_'", "did you mean 'caption'",
                    "video, caption, id, split")


# ---------------------------------------------------------------- videos stay inside the root

def _outside_paths(tmp_path: Path) -> dict[str, str]:
    """Video paths, as a manifest in tmp_path/root lists them, that each lead out of that root."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "inside").mkdir(parents=True)
    write_grey_video(outside / "x.mp4", 90)
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "inside" / "x.mp4").symlink_to(outside / "x.mp4")
    return {"dotdot": "inside/../../outside/x.mp4", "absolute": str(outside / "x.mp4"),
            "symlinked folder": "linked/x.mp4", "symlinked file": "inside/x.mp4"}


OUTSIDE_KINDS = ["dotdot", "absolute", "symlinked folder", "symlinked file"]


def _open(kind: str, manifest: Path, **options: bool) -> VideoFolder | FolderGenerator:
    return VideoFolder(manifest, **options) if kind == "data" else FolderGenerator(manifest, **options)


def _manifest(tmp_path: Path, kind: str, video: str) -> Path:
    """A manifest in tmp_path/root whose line 1 is a video inside the root and line 2 is ``video``."""
    column = "caption" if kind == "data" else "prompt_id"
    write_text(tmp_path / "root" / "ok.mp4", "")  # only listed, never decoded
    return write_jsonl(tmp_path / "root" / "m.jsonl", [{"video": "ok.mp4", column: "first"},
                                                       {"video": video, column: "second"}])


@pytest.mark.parametrize("kind", ["data", "model"])
@pytest.mark.parametrize("leaves_by", OUTSIDE_KINDS)
def test_video_outside_the_root_names_manifest_line_and_fix(tmp_path, kind, leaves_by):
    manifest = _manifest(tmp_path, kind, _outside_paths(tmp_path)[leaves_by])
    with pytest.raises(ConfigError) as error:
        _open(kind, manifest)
    assert_mentions(error, f"{manifest}:2", "outside the root", str((tmp_path / "root").resolve()),
                    "allow_outside_root: true", "move the video under")


@pytest.mark.parametrize("kind", ["data", "model"])
@pytest.mark.parametrize("leaves_by", OUTSIDE_KINDS)
def test_allow_outside_root_accepts_them(tmp_path, kind, leaves_by):
    manifest = _manifest(tmp_path, kind, _outside_paths(tmp_path)[leaves_by])
    opened = _open(kind, manifest, allow_outside_root=True)
    assert opened.missing_videos() == []


@pytest.mark.parametrize("kind", ["data", "model"])
def test_paths_that_stay_inside_the_root_are_accepted_when_strict(tmp_path, kind):
    root = tmp_path / "root"
    write_grey_video(root / "clips" / "a.mp4", 90)
    (root / "alias").symlink_to(root / "clips", target_is_directory=True)
    for video in ("clips/../clips/a.mp4", str(root / "clips" / "a.mp4"), "alias/a.mp4"):
        opened = _open(kind, _manifest(tmp_path, kind, video), allow_outside_root=False)
        assert opened.missing_videos() == [], video


# ---------------------------------------------------------------- through `vbf validate`


FOLDER_MODEL_SUITE = """\
    name: outside
    data: {{type: shapes, size: 16, fps: 4}}
    clip_seconds: [1]
    prompts: {{source: inline, texts: [a red circle]}}
    models:
      - {{name: external, type: folder, args: {{manifest: m.csv{options}}}}}
    metrics:
      - {{name: flicker}}
    """

FOLDER_DATA_SUITE = """\
    name: real
    data: {{type: folder, manifest: clips.jsonl, size: 16, fps: 4{options}}}
    clip_seconds: [1]
    prompts: {{source: data, split: all, count: 1}}
    models:
      - {{name: real, type: dataset}}
    metrics:
      - {{name: flicker}}
    """


def test_validate_refuses_a_folder_model_video_outside_the_root(tmp_path, capsys):
    write_grey_video(tmp_path / "x.mp4", 90)
    write_text(tmp_path / "suite" / "m.csv", "video,prompt_id,seed\n../x.mp4,inline-0000,\n")
    strict = write_suite(tmp_path / "suite", FOLDER_MODEL_SUITE.format(options=""))
    assert vbf("validate", str(strict)) == 4
    err = capsys.readouterr().err
    for word in (f"{tmp_path / 'suite' / 'm.csv'}:2", "outside the root", "args.allow_outside_root: true"):
        assert word in err, f"{word!r} not in {err!r}"
    allowed = write_suite(tmp_path / "suite", FOLDER_MODEL_SUITE.format(options=", allow_outside_root: true"))
    assert vbf("validate", str(allowed)) == 0, capsys.readouterr().err


def test_validate_refuses_a_data_video_behind_a_symlink_and_a_misspelt_column(tmp_path, capsys):
    write_grey_video(tmp_path / "elsewhere" / "x.mp4", 90)
    suite_dir = tmp_path / "suite"
    suite_dir.mkdir()
    (suite_dir / "x.mp4").symlink_to(tmp_path / "elsewhere" / "x.mp4")
    manifest = write_jsonl(suite_dir / "clips.jsonl", [{"video": "x.mp4", "caption": "grey"}])
    strict = write_suite(suite_dir, FOLDER_DATA_SUITE.format(options=""))
    assert vbf("validate", str(strict)) == 4
    err = capsys.readouterr().err
    for word in (f"{manifest}:1", "outside the root", "data.allow_outside_root: true"):
        assert word in err, f"{word!r} not in {err!r}"
    allowed = write_suite(suite_dir, FOLDER_DATA_SUITE.format(options=", allow_outside_root: true"))
    assert vbf("validate", str(allowed)) == 0, capsys.readouterr().err
    write_jsonl(manifest, [{"video": "x.mp4", "caption": "grey", "spilt": "test"}])
    assert vbf("validate", str(allowed)) == 4
    err = capsys.readouterr().err
    assert f"{manifest}:1" in err and "unknown column 'spilt' — did you mean 'split'?" in err


@pytest.mark.parametrize("seed", ["1.5", "true"])
def test_a_seed_that_is_not_an_integer_is_refused(tmp_path, seed):
    (tmp_path / "a.mp4").write_bytes(b"")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(f'{{"video": "a.mp4", "prompt_id": "p", "seed": {seed}}}\n')
    with pytest.raises(ConfigError, match="seed must be an integer"):
        FolderGenerator(manifest)
