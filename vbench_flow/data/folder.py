"""Real videos with captions, listed in a ``.csv`` or ``.jsonl`` manifest.

Each record needs ``video`` (a path relative to the root, by default the manifest's folder)
and ``caption``; ``id`` and ``split`` are optional, and ``split`` is kept in ``meta``. Any other
column is refused, so a misspelt one cannot silently drop its values. A video must lie inside
the root unless ``allow_outside_root`` is set. Manifest mistakes fail at load time with the line
number; missing or broken videos only when read.
"""

from __future__ import annotations

import csv
import io
import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from vbench_flow.errors import ConfigError, VideoReadError, read_utf8
from vbench_flow.registry import did_you_mean
from vbench_flow.video_io import iter_clip

MANIFEST_SUFFIXES = (".csv", ".jsonl")
REQUIRED_FIELDS = ("video", "caption")
# split is read by vbench_flow.data.source.FolderSource to define the data set's splits
KNOWN_FIELDS = (*REQUIRED_FIELDS, "id", "split")


@dataclass(frozen=True)
class FolderRecord:
    """One manifest row; ``line`` is where it starts in the manifest (1-based)."""

    id: str
    video: Path
    caption: str
    meta: dict[str, Any] = field(default_factory=dict)
    line: int = 0


class VideoFolder:
    """A data set of real videos and their captions, read from a manifest."""

    def __init__(self, manifest: str | Path, root: str | Path | None = None, *,
                 allow_outside_root: bool = False) -> None:
        self.manifest = Path(manifest)
        if self.manifest.suffix.lower() not in MANIFEST_SUFFIXES:
            raise ConfigError(f"unknown manifest type {self.manifest.suffix or '(no suffix)'!r}",
                              where=str(self.manifest),
                              fix=f"use a {' or '.join(MANIFEST_SUFFIXES)} file")
        if not self.manifest.is_file():
            raise ConfigError("manifest file does not exist", where=str(self.manifest),
                              fix=f"check the path (relative paths start at {Path.cwd()})")
        self.root = Path(root) if root is not None else self.manifest.parent
        self.allow_outside_root = allow_outside_root
        rows = read_manifest_rows(self.manifest, REQUIRED_FIELDS, KNOWN_FIELDS)
        self.records: list[FolderRecord] = self._build_records(rows)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> FolderRecord:
        return self.records[index]

    def __iter__(self) -> Iterator[FolderRecord]:
        return iter(self.records)

    def missing_videos(self) -> list[str]:
        """Paths of listed videos that are not files (as the manifest resolves them)."""
        return [str(record.video) for record in self.records if not record.video.is_file()]

    def clip(self, index: int, num_frames: int, fps: float, size: int | None = None) -> np.ndarray:
        """The first ``num_frames`` frames of video ``index`` at ``fps``, optionally resized square."""
        return np.concatenate(list(self.chunks(index, num_frames, fps, size)))

    def chunks(self, index: int, num_frames: int, fps: float, size: int | None = None) -> Iterator[np.ndarray]:
        """:meth:`clip` as consecutive chunks, decoded and resized one chunk at a time."""
        record = self.records[index]
        if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral) or num_frames < 1:
            raise ConfigError(f"num_frames must be a positive integer, got {num_frames!r}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1):
            raise ConfigError(f"size must be a positive integer or None, got {size!r}")
        try:
            for chunk in iter_clip(record.video, num_frames, fps):
                yield chunk if size is None else np.stack(
                    [cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA) for frame in chunk])
        except VideoReadError as exc:
            raise VideoReadError(exc.what, where=f"{exc.where} ({self._origin(record)})", fix=exc.fix) from exc

    def _origin(self, record: FolderRecord) -> str:
        return f"id {record.id!r}, {self.manifest} line {record.line}"

    def _build_records(self, rows: Iterator[tuple[int, dict[str, Any]]]) -> list[FolderRecord]:
        records: list[FolderRecord] = []
        first_line: dict[str, int] = {}
        for line, row in rows:
            record = self._record(len(records), line, row)
            if record.id in first_line:
                raise self._error(line, f"duplicate id {record.id!r} (first used on line {first_line[record.id]})",
                                  "id", "give every row a unique id, or drop the id column to number rows")
            first_line[record.id] = line
            records.append(record)
        if not records:
            raise ConfigError("manifest lists no videos", where=str(self.manifest),
                              fix="add rows with video and caption fields")
        return records

    def _record(self, index: int, line: int, row: dict[str, Any]) -> FolderRecord:
        for name in REQUIRED_FIELDS:
            if row.get(name) is None:
                raise self._error(line, f"missing field {name!r}", name, f"add a {name} value to every row")
            if not isinstance(row[name], str):
                raise self._error(line, f"field {name!r} must be text, got {type(row[name]).__name__}", name,
                                  "quote the value")
        caption, video = row["caption"].strip(), row["video"].strip()
        if not caption:
            raise self._error(line, "empty caption", "caption", "write a caption for every video")
        if not video:
            raise self._error(line, "empty video path", "video", "give the video's path relative to the root")
        record_id = self._record_id(index, line, row.get("id"))
        meta = {key: value for key, value in row.items() if key not in ("id", *REQUIRED_FIELDS)}
        path = video_under_root(video, self.root, allow_outside_root=self.allow_outside_root,
                                where=f"{self.manifest}:{line} (field 'video')", opt_in="data.allow_outside_root")
        return FolderRecord(record_id, path, caption, meta, line)

    def _record_id(self, index: int, line: int, raw: Any) -> str:
        if raw is None or raw == "":
            return f"folder-{index:06d}"
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            raise self._error(line, f"id must be text or an integer, got {type(raw).__name__}", "id",
                              "use a string id")
        return str(raw).strip()

    def _error(self, line: int, what: str, key: str, fix: str) -> ConfigError:
        return ConfigError(what, where=f"{self.manifest}:{line} (field {key!r})", fix=fix)


def read_manifest_rows(path: Path, required: tuple[str, ...],
                       known: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for each record of a ``.csv`` or ``.jsonl`` manifest.

    A CSV header without a ``required`` column fails at once; JSONL rows are checked by the caller.
    A column outside ``known`` fails with a suggestion: on the CSV header line, or on the JSONL row.
    """
    if path.suffix.lower() == ".csv":
        return _csv_rows(path, required, known)
    return _jsonl_rows(path, known)


def video_under_root(video: str, root: Path, *, allow_outside_root: bool, where: str, opt_in: str) -> Path:
    """``root / video`` (``~`` expanded), refused unless its real location lies inside ``root``.

    A manifest is a data set's boundary: a shared manifest must not pull in files from elsewhere on
    the machine. ``..``, an absolute path and a symlink anywhere along the path can each lead out,
    so both sides are resolved before comparing; ``opt_in`` names the setting that allows it.
    """
    try:
        path = root / Path(video).expanduser()
    except RuntimeError as exc:  # ~name of a user this machine does not know
        raise ConfigError(f"cannot expand {video!r}: {exc}", where=where, fix="spell the path out") from None
    if allow_outside_root:
        return path
    real_root, real_path = root.resolve(), path.resolve()
    if not real_path.is_relative_to(real_root):
        raise ConfigError(f"video {video!r} resolves to {real_path}, outside the root {real_root}", where=where,
                          fix=f"move the video under {real_root} and list it relative to that folder, "
                              f"or set {opt_in}: true")
    return path


def _check_known_columns(names: Iterable[str], known: tuple[str, ...], path: Path, line: int) -> None:
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown column {name!r}{did_you_mean(name, known)}",
                              where=f"{path}:{line} (field {name!r})",
                              fix=f"rename or remove it; the known columns are {', '.join(known)}")


def _csv_rows(path: Path, required: tuple[str, ...], known: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    # read whole (manifests are small) so a non-UTF-8 file is one clear error; utf-8-sig drops the
    # byte-order mark spreadsheet exports put before the header
    with io.StringIO(read_utf8(path, "the manifest"), newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        # a misspelt column explains a missing required one better than "missing column" does
        _check_known_columns(header, known, path, 1)
        for name in required:
            if name not in header:
                raise ConfigError(f"missing column {name!r} (header has {', '.join(header) or 'nothing'})",
                                  where=f"{path}:1 (field {name!r})",
                                  fix=f"add a {name} column to the header row")
        for row in reader:
            if None in row:
                raise ConfigError(f"row has {len(header) + len(row[None])} fields but the header has {len(header)}",
                                  where=f"{path}:{reader.line_num}",
                                  fix="quote values that contain commas")
            yield reader.line_num, row


def _jsonl_rows(path: Path, known: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    with io.StringIO(read_utf8(path, "the manifest")) as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"not valid JSON: {exc.msg} (column {exc.colno})", where=f"{path}:{line}",
                                  fix="write one JSON object per line") from exc
            if not isinstance(row, dict):
                raise ConfigError(f"expected a JSON object, got {type(row).__name__}", where=f"{path}:{line}",
                                  fix='write one object per line, e.g. {"video": "a.mp4", "caption": "..."}')
            _check_known_columns(row, known, path, line)
            yield line, row


def missing_files_message(paths: list[str], what: str = "video file(s)") -> str:
    """'N video file(s) listed but not found: a, b, c and K more'."""
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    return f"{len(paths)} {what} listed but not found: {shown}"
