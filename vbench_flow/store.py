"""Results store: SQLite (WAL) holding runs, units, per-sample metric values and aggregates.

The per-sample JSONL log in each run folder is the record of truth, written first; the store is
an index over it that :meth:`Store.record_sample` fills idempotently (upserts keyed by
``(run, unit)``), so a run that died between the two writes loses nothing and duplicates
nothing when it resumes.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from vbench_flow.errors import ConfigError, disk_full

DEFAULT_RUNS_DIR = Path("runs")
STORE_NAME = "vbf.sqlite"
SCHEMA_VERSION = 2
# columns added since version 1: (table, column, type); a column added to version 2 (motion_counterpart)
# leaves older readers working (they select the columns they know), so it keeps the version
ADDED_COLUMNS = [("units", "height", "INTEGER"), ("units", "width", "INTEGER"), ("metric_info", "kind", "TEXT"),
                 ("metric_info", "args", "TEXT"), ("metric_info", "motion_counterpart", "TEXT")]
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, suite TEXT NOT NULL, variant TEXT, sweep TEXT, suite_path TEXT,
    created TEXT NOT NULL, updated TEXT NOT NULL, status TEXT NOT NULL, seed INTEGER,
    config_hash TEXT, config_json TEXT, env_json TEXT, models_json TEXT, run_dir TEXT,
    expected INTEGER DEFAULT 0, done INTEGER DEFAULT 0, failed INTEGER DEFAULT 0
);
CREATE TABLE IF NOT EXISTS units (
    run_id TEXT NOT NULL, unit_id TEXT NOT NULL, model TEXT, task TEXT, clip_seconds REAL,
    prompt_id TEXT, seed INTEGER, prompt TEXT, status TEXT, error TEXT, stage TEXT, video TEXT,
    video_sha256 TEXT, num_frames INTEGER, fps REAL, generate_seconds REAL, score_seconds REAL,
    finished TEXT, height INTEGER, width INTEGER, PRIMARY KEY (run_id, unit_id)
);
CREATE TABLE IF NOT EXISTS sample_metrics (
    run_id TEXT NOT NULL, unit_id TEXT NOT NULL, metric TEXT NOT NULL, value REAL,
    PRIMARY KEY (run_id, unit_id, metric)
);
CREATE TABLE IF NOT EXISTS sample_series (
    run_id TEXT NOT NULL, unit_id TEXT NOT NULL, metric TEXT NOT NULL, t_seconds REAL NOT NULL, value REAL,
    PRIMARY KEY (run_id, unit_id, metric, t_seconds)
);
CREATE TABLE IF NOT EXISTS metric_errors (
    run_id TEXT NOT NULL, unit_id TEXT NOT NULL, metric TEXT NOT NULL, error TEXT,
    PRIMARY KEY (run_id, unit_id, metric)
);
CREATE TABLE IF NOT EXISTS metric_excluded (
    run_id TEXT NOT NULL, unit_id TEXT NOT NULL, metric TEXT NOT NULL, reason TEXT,
    PRIMARY KEY (run_id, unit_id, metric)
);
CREATE TABLE IF NOT EXISTS sample_features (
    run_id TEXT NOT NULL, unit_id TEXT NOT NULL, metric TEXT NOT NULL, features_json TEXT NOT NULL,
    PRIMARY KEY (run_id, unit_id, metric)
);
CREATE TABLE IF NOT EXISTS reference_sets (
    run_id TEXT NOT NULL, metric TEXT NOT NULL, clip_seconds REAL NOT NULL, digest TEXT NOT NULL,
    clips INTEGER NOT NULL, path TEXT NOT NULL, PRIMARY KEY (run_id, metric, clip_seconds)
);
CREATE TABLE IF NOT EXISTS metric_info (
    run_id TEXT NOT NULL, metric TEXT NOT NULL, version TEXT, extractor TEXT, higher_is_better INTEGER,
    kind TEXT, args TEXT, motion_counterpart TEXT, PRIMARY KEY (run_id, metric)
);
CREATE TABLE IF NOT EXISTS aggregates (
    run_id TEXT NOT NULL, model TEXT NOT NULL, task TEXT NOT NULL, clip_seconds REAL NOT NULL,
    metric TEXT NOT NULL, value REAL, ci_low REAL, ci_high REAL, n INTEGER, higher_is_better INTEGER,
    metric_version TEXT, extractor TEXT, PRIMARY KEY (run_id, model, task, clip_seconds, metric)
);
"""


# set_metric_info's default: the registered metric's motion counterpart
FROM_REGISTRY = object()


def registered_motion_counterpart(metric: str) -> str | None:
    """``motion_counterpart`` of the registered metric ``metric`` (None when it has none or is not registered)."""
    from vbench_flow.registry import metric_types  # the registry imports every metric: only when needed

    entry = metric_types().get(metric)
    return entry.motion_counterpart if entry is not None else None


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SampleRecord(BaseModel):
    """One line of a run's ``samples.jsonl``: one unit, generated and scored (or failed)."""

    unit_id: str
    model: str
    task: str
    clip_seconds: float
    prompt_id: str
    seed: int
    prompt: str
    status: Literal["ok", "failed"]
    error: str | None = None
    stage: str | None = Field(None, description="where a failed unit failed: build, generate, check, store, read or score")
    video: str | None = Field(None, description="path relative to the run folder")
    video_sha256: str | None = None
    num_frames: int | None = None
    height: int | None = Field(None, description="frame size of the clip as scored (gates compare it)")
    width: int | None = None
    fps: float | None = None
    generate_seconds: float | None = None
    score_seconds: float | None = None
    metric_seconds: dict[str, float] = Field(default_factory=dict, description="wall seconds each metric took on this clip")
    read_seconds: float | None = Field(None, description="wall seconds spent decoding the clip's chunks (or slicing "
                                       "a generated array), apart from the metrics' own time")
    peak_rss_mb: float | None = Field(None, description="the scoring process's peak resident memory (MiB) once this "
                                      "unit was scored; it only grows, so it bounds every unit before it")
    metrics: dict[str, float] = Field(default_factory=dict)
    series: dict[str, list[tuple[float, float]]] = Field(default_factory=dict)
    generation: dict[str, Any] = Field(default_factory=dict, description="what generating the clip cost "
                                       "(seconds, peak memory, generator-reported sampler costs)")
    metric_errors: dict[str, str] = Field(default_factory=dict, description="metrics that could not score this clip "
                                          "(e.g. no object to track), with the reason; the other metrics stand")
    metric_excluded: dict[str, str] = Field(default_factory=dict, description="metrics whose definition leaves this "
                                            "clip out (e.g. flicker with the static filter on a moving clip), with why")
    features: dict[str, list[list[float]]] = Field(default_factory=dict, description="set-level metrics (FVD): "
                                                   "the clip's feature vectors, one per FVD window")
    finished: str = Field(default_factory=utc_now)


class AggregateRow(BaseModel):
    model: str
    task: str
    clip_seconds: float
    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    higher_is_better: bool
    metric_version: str
    extractor: str


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=30)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(f"results store {self.path} has schema version {version}; "
                                  f"this vbench-flow reads up to {SCHEMA_VERSION}",
                                  fix="use a newer vbench-flow, or point --runs-dir at a fresh folder")
            with self._conn:
                self._conn.executescript(SCHEMA)
                self._add_missing_columns()
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise disk_full(exc, self.path) or exc

    def _add_missing_columns(self) -> None:
        """Stores written by an older version gain the newer columns (empty for their runs)."""
        for table, column, kind in ADDED_COLUMNS:
            present = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                try:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                except sqlite3.OperationalError as exc:  # another process upgraded the store just now
                    if "duplicate column" not in str(exc):
                        raise

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._conn:
                yield self._conn
        except sqlite3.OperationalError as exc:
            raise disk_full(exc, self.path) or exc

    # ------------------------------------------------------------ writes

    def upsert_run(self, run_id: str, **fields: Any) -> None:
        fields = {k: (json.dumps(v, sort_keys=True) if isinstance(v, dict) else v) for k, v in fields.items()}
        fields["updated"] = utc_now()
        with self._tx() as db:
            exists = db.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if exists:
                sets = ", ".join(f"{k}=?" for k in fields)
                db.execute(f"UPDATE runs SET {sets} WHERE run_id=?", (*fields.values(), run_id))
            else:
                fields.setdefault("created", fields["updated"])
                cols = ", ".join(["run_id", *fields])
                db.execute(f"INSERT INTO runs ({cols}) VALUES ({', '.join('?' * (len(fields) + 1))})", (run_id, *fields.values()))

    def set_metric_info(self, run_id: str, metric: str, version: str, extractor: str, higher_is_better: bool,
                        kind: str, args: dict[str, Any] | None = None,
                        motion_counterpart: str | None | object = FROM_REGISTRY) -> None:
        """What a run's metric is: its version, extractor, direction, kind, the options it ran with and
        its motion counterpart (the metric that says how much a clip moves; by default what the
        registered metric says, None for an unregistered one). Runs stored before it read as None."""
        if motion_counterpart is FROM_REGISTRY:
            motion_counterpart = registered_motion_counterpart(metric)
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO metric_info (run_id, metric, version, extractor, higher_is_better, kind, "
                       "args, motion_counterpart) VALUES (?,?,?,?,?,?,?,?)",
                       (run_id, metric, version, extractor, int(higher_is_better), kind,
                        json.dumps(args or {}, sort_keys=True), motion_counterpart))

    def record_sample(self, run_id: str, record: SampleRecord) -> None:
        unit_cols = ("unit_id", "model", "task", "clip_seconds", "prompt_id", "seed", "prompt", "status", "error",
                     "stage", "video", "video_sha256", "num_frames", "fps", "generate_seconds", "score_seconds", "finished",
                     "height", "width")
        values = [getattr(record, c) for c in unit_cols]
        with self._tx() as db:
            db.execute(f"INSERT OR REPLACE INTO units (run_id, {', '.join(unit_cols)}) VALUES ({', '.join('?' * (len(unit_cols) + 1))})",
                       (run_id, *values))
            db.execute("DELETE FROM sample_metrics WHERE run_id=? AND unit_id=?", (run_id, record.unit_id))
            db.execute("DELETE FROM sample_series WHERE run_id=? AND unit_id=?", (run_id, record.unit_id))
            db.execute("DELETE FROM sample_features WHERE run_id=? AND unit_id=?", (run_id, record.unit_id))
            db.execute("DELETE FROM metric_errors WHERE run_id=? AND unit_id=?", (run_id, record.unit_id))
            db.execute("DELETE FROM metric_excluded WHERE run_id=? AND unit_id=?", (run_id, record.unit_id))
            db.executemany("INSERT INTO metric_excluded VALUES (?,?,?,?)",
                           [(run_id, record.unit_id, m, r) for m, r in record.metric_excluded.items()])
            db.executemany("INSERT INTO metric_errors VALUES (?,?,?,?)",
                           [(run_id, record.unit_id, m, e) for m, e in record.metric_errors.items()])
            db.executemany("INSERT INTO sample_features VALUES (?,?,?,?)",
                           [(run_id, record.unit_id, m, json.dumps(f)) for m, f in record.features.items()])
            db.executemany("INSERT INTO sample_metrics VALUES (?,?,?,?)",
                           [(run_id, record.unit_id, m, v) for m, v in record.metrics.items()])
            db.executemany("INSERT INTO sample_series VALUES (?,?,?,?,?)",
                           [(run_id, record.unit_id, m, t, v) for m, points in record.series.items() for t, v in points])

    def set_aggregates(self, run_id: str, rows: list[AggregateRow]) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM aggregates WHERE run_id=?", (run_id,))
            db.executemany(
                "INSERT INTO aggregates VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(run_id, r.model, r.task, r.clip_seconds, r.metric, r.value, r.ci_low, r.ci_high, r.n,
                  int(r.higher_is_better), r.metric_version, r.extractor) for r in rows],
            )

    def set_reference(self, run_id: str, metric: str, clip_seconds: float, digest: str, clips: int, path: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO reference_sets VALUES (?,?,?,?,?,?)",
                       (run_id, metric, clip_seconds, digest, clips, path))

    # ------------------------------------------------------------ reads

    def sample_features(self, run_id: str, metric: str) -> dict[str, np.ndarray]:
        """unit id -> (clips, D) features of a set-level metric, finished units only."""
        rows = self._conn.execute(
            "SELECT f.unit_id, f.features_json FROM sample_features f JOIN units u USING (run_id, unit_id) "
            "WHERE f.run_id=? AND f.metric=? AND u.status='ok' ORDER BY f.unit_id", (run_id, metric)).fetchall()
        return {unit: np.asarray(json.loads(text), dtype=np.float64) for unit, text in rows}

    def feature_dim(self, run_id: str, metric: str) -> int | None:
        """The length of a set-level metric's stored feature vectors (None when none are stored)."""
        row = self._conn.execute("SELECT features_json FROM sample_features WHERE run_id=? AND metric=? LIMIT 1",
                                 (run_id, metric)).fetchone()
        return len(json.loads(row[0])[0]) if row else None

    def metric_errors(self, run_id: str) -> pd.DataFrame:
        return self._frame("SELECT unit_id, metric, error FROM metric_errors WHERE run_id=? ORDER BY unit_id, metric", (run_id,))

    def metric_excluded(self, run_id: str) -> pd.DataFrame:
        """Clips a metric's definition leaves out (not failures), with why; empty for runs stored before."""
        return self._frame("SELECT e.unit_id, u.model, e.metric, e.reason FROM metric_excluded e JOIN units u "
                           "USING (run_id, unit_id) WHERE e.run_id=? ORDER BY e.unit_id, e.metric", (run_id,))

    def reference_sets(self, run_id: str) -> pd.DataFrame:
        return self._frame("SELECT * FROM reference_sets WHERE run_id=?", (run_id,))

    def _frame(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        return pd.read_sql_query(sql, self._conn, params=params)

    def runs(self) -> pd.DataFrame:
        return self._frame("SELECT run_id, suite, variant, sweep, status, created, updated, expected, done, failed, run_dir "
                           "FROM runs ORDER BY created, run_id")

    def run(self, run_id: str) -> dict[str, Any]:
        row = self._conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            known = self._conn.execute("SELECT run_id FROM runs ORDER BY created DESC LIMIT 5").fetchall()
            hint = ", ".join(r[0] for r in known) or "none yet"
            raise ConfigError(f"no run {run_id!r} in {self.path}", fix=f"`vbf runs ls` lists runs (latest: {hint})")
        out = dict(row)
        for key in ("config_json", "env_json", "models_json"):
            out[key.removesuffix("_json")] = json.loads(out.pop(key) or "{}")
        return out

    def has_run(self, run_id: str) -> bool:
        return self._conn.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone() is not None

    def latest_run(self, suite_run_name: str) -> str | None:
        row = self._conn.execute(
            "SELECT run_id FROM runs WHERE (CASE WHEN variant IS NULL THEN suite ELSE suite || '.' || variant END)=? "
            "ORDER BY created DESC, rowid DESC LIMIT 1", (suite_run_name,)).fetchone()
        return row[0] if row else None

    def sweep_runs(self, sweep: str) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT run_id FROM runs WHERE sweep=? ORDER BY run_id", (sweep,))]

    def units(self, run_id: str) -> pd.DataFrame:
        return self._frame("SELECT * FROM units WHERE run_id=? ORDER BY unit_id", (run_id,))

    def sample_metrics(self, run_id: str) -> pd.DataFrame:
        return self._frame(
            "SELECT u.run_id, u.model, u.task, u.clip_seconds, u.prompt_id, u.seed, u.unit_id, m.metric, m.value "
            "FROM sample_metrics m JOIN units u USING (run_id, unit_id) WHERE m.run_id=? ORDER BY u.unit_id, m.metric",
            (run_id,))

    def sample_series(self, run_id: str) -> pd.DataFrame:
        return self._frame(
            "SELECT u.model, u.task, u.clip_seconds, u.prompt_id, u.seed, s.metric, s.t_seconds, s.value "
            "FROM sample_series s JOIN units u USING (run_id, unit_id) WHERE s.run_id=?", (run_id,))

    def metric_info(self, run_id: str) -> pd.DataFrame:
        table = self._frame("SELECT * FROM metric_info WHERE run_id=?", (run_id,))
        # a run stored before counterparts were recorded has NULL: None, never NaN
        table["motion_counterpart"] = pd.Series([c if isinstance(c, str) and c else None for c in table["motion_counterpart"]],
                                                index=table.index, dtype=object)
        return table

    def aggregates(self, run_ids: list[str]) -> pd.DataFrame:
        marks = ", ".join("?" * len(run_ids))
        table = self._frame(f"SELECT * FROM aggregates WHERE run_id IN ({marks}) ORDER BY run_id, model, task, clip_seconds, metric",
                            tuple(run_ids))
        # SQLite keeps a missing interval (one prompt) as NULL: hand it back as NaN
        return table.astype({"value": float, "ci_low": float, "ci_high": float})

    def export(self, run_id: str, path: str | Path, fmt: str | None = None) -> Path:
        """Per-sample values (one row per unit and metric, failures included) as CSV, Parquet or JSON."""
        self.run(run_id)  # raises a clear error for an unknown run
        path = Path(path)
        fmt = (fmt or path.suffix.lstrip(".")).lower()
        units = self.units(run_id)
        values = self.sample_metrics(run_id)[["unit_id", "metric", "value"]]
        table = units.merge(values, on="unit_id", how="left")
        writers = {"csv": lambda: table.to_csv(path, index=False),
                   "parquet": lambda: table.to_parquet(path, index=False),
                   "json": lambda: table.to_json(path, orient="records", indent=1)}
        if fmt not in writers:
            raise ConfigError(f"unknown export format {fmt!r}", fix="use --format csv, parquet or json")
        path.parent.mkdir(parents=True, exist_ok=True)
        writers[fmt]()
        return path


def open_store(runs_dir: Path) -> Store:
    """The results store of a runs folder."""
    return Store(runs_dir / STORE_NAME)
