"""The runner: suite -> units -> videos -> per-sample records -> aggregates -> report.

A unit is one (model, task, clip length, prompt, seed). Each unit is generated, checked, stored
(content-addressed, so identical videos share one file) and scored; its record is appended to the
run's ``samples.jsonl`` the moment it finishes, then indexed in the SQLite store. ``--resume``
reads that log back and computes only the units that have no record, so an interrupted run
continues without repeating or duplicating work.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml
from tqdm.auto import tqdm

from vbench_flow.aggregate import aggregate_records
from vbench_flow.environment import capture_environment
from vbench_flow.errors import ConfigError, VbfError
from vbench_flow.protocol import Prompt
from vbench_flow.registry import BuildContext, SampleContext, get_metric, get_model_type
from vbench_flow.store import SampleRecord, Store
from vbench_flow.suite import ResolvedSuite, Suite, open_data_source, task_condition_frames
from vbench_flow.video_io import num_frames_for, write_video

DEFAULT_RUNS_DIR = Path(os.environ.get("VBF_RUNS_DIR", "runs"))
STORE_NAME = "vbf.sqlite"


@dataclass(frozen=True)
class Unit:
    model: str
    task: str
    clip_seconds: float
    prompt: Prompt
    seed: int

    @property
    def unit_id(self) -> str:
        return f"{self.model}/{self.task}/{self.clip_seconds:g}s/{self.prompt.id}/seed{self.seed}"


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    expected: int
    done: int
    failed: int
    computed: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    report: Path | None = None

    @property
    def exit_code(self) -> int:
        return 0 if self.failed == 0 and self.done == self.expected else 2


# ---------------------------------------------------------------- prompts and units

def _read_prompt_file(path: Path) -> list[tuple[str | None, str]]:
    if path.suffix == ".jsonl":
        out = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                out.append((item.get("id"), str(item["text"])))
            except (json.JSONDecodeError, KeyError, AttributeError):
                raise ConfigError("each JSONL line needs a 'text' field (and optionally 'id')", where=f"{path}:{number}") from None
        return out
    return [(None, line.strip()) for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def load_prompts(resolved: ResolvedSuite, data: Any) -> list[Prompt]:
    suite = resolved.suite
    spec = suite.prompts
    if spec.source == "data":
        return data.prompts(spec.split, spec.start, suite.prompt_count() or 8)
    if spec.source == "file":
        items = _read_prompt_file(resolved.resolve_path(spec.file or ""))
    else:
        items = [(None, text) for text in spec.texts or []]
    count = suite.prompt_count() or len(items)
    selected = items[spec.start:spec.start + count]
    if not selected:
        raise ConfigError(f"no prompts selected (start {spec.start}, count {count}, {len(items)} available)", where="prompts")
    return [Prompt(text, pid or f"{spec.source}-{spec.start + i:04d}", {"source": spec.source})
            for i, (pid, text) in enumerate(selected)]


def plan_units(suite: Suite, prompts: list[Prompt]) -> list[Unit]:
    return [Unit(m.name, task, float(seconds), prompt, seed)
            for m in suite.models for task in suite.tasks for seconds in suite.clip_seconds
            for prompt in prompts for seed in suite.prompts.seeds]


# ---------------------------------------------------------------- the run folder

def safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", text)


def video_digest(frames: np.ndarray, fps: float) -> str:
    digest = hashlib.sha256()
    digest.update(f"{frames.shape}|{fps:.6f}|".encode())
    digest.update(np.ascontiguousarray(frames).data)
    return digest.hexdigest()


class RunFolder:
    """``config.yaml``, ``environment.json``, ``samples.jsonl`` and ``videos/`` of one run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.samples = root / "samples.jsonl"

    def read_records(self) -> dict[str, SampleRecord]:
        """The last record of each unit; a line cut short by a kill is ignored (its unit reruns)."""
        records: dict[str, SampleRecord] = {}
        if not self.samples.exists():
            return records
        with self.samples.open() as handle:
            for line in handle:
                if not line.endswith("\n"):
                    break
                try:
                    record = SampleRecord.model_validate_json(line)
                except ValueError:
                    continue
                records[record.unit_id] = record
        return records

    def append(self, record: SampleRecord) -> None:
        self._drop_partial_tail()
        with self.samples.open("a") as handle:
            handle.write(record.model_dump_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _drop_partial_tail(self) -> None:
        # A kill mid-write leaves an unterminated last line; cut it so the next record starts clean.
        if not self.samples.exists() or self.samples.stat().st_size == 0:
            return
        with self.samples.open("rb+") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return
            handle.seek(0)
            handle.truncate(handle.read().rfind(b"\n") + 1)

    def store_video(self, frames: np.ndarray, fps: float) -> tuple[str, str]:
        sha = video_digest(frames, fps)
        relative = Path("videos") / sha[:2] / f"{sha}.mp4"
        if not (self.root / relative).exists():
            write_video(self.root / relative, frames, fps)
        return relative.as_posix(), sha


# ---------------------------------------------------------------- the runner

class Runner:
    def __init__(self, resolved: ResolvedSuite, store: Store, run_dir: Path, run_id: str, *,
                 sweep: str | None = None, progress: bool = True, retry_failed: bool = False) -> None:
        self.resolved, self.suite = resolved, resolved.suite
        self.store, self.run_id, self.sweep = store, run_id, sweep
        self.folder = RunFolder(run_dir)
        self.progress, self.retry_failed = progress, retry_failed
        self.fps = self.suite.generation_fps
        self.data = open_data_source(self.suite, resolved.directory)
        self._ground_truth: dict[tuple[str, int], np.ndarray] = {}
        self.scorers = {m.name: get_metric(m.name).build(get_metric(m.name).args_model.model_validate(m.args))
                        for m in self.suite.metrics}

    # ------------------------------------------------------------ set-up

    def _prepare_folder(self, resuming: bool) -> None:
        config_path = self.folder.root / "config.yaml"
        if resuming:
            stored = yaml.safe_load(config_path.read_text()) if config_path.exists() else None
            if stored is not None and stored != self.resolved.config():
                changed = sorted(k for k in set(stored) | set(self.resolved.config()) if stored.get(k) != self.resolved.config().get(k))
                raise ConfigError(f"the suite changed since run {self.run_id!r} started (changed: {', '.join(changed)})",
                                  fix="drop --resume to start a new run, or restore the suite as it was")
        self.folder.root.mkdir(parents=True, exist_ok=True)
        config_path.write_text(yaml.safe_dump(self.resolved.config(), sort_keys=False))
        (self.folder.root / "environment.json").write_text(json.dumps(capture_environment(), indent=2))

    def _register(self, expected: int, status: str) -> None:
        self.store.upsert_run(
            self.run_id, suite=self.suite.name, variant=self.resolved.variant, sweep=self.sweep,
            suite_path=str(self.resolved.path), status=status, seed=self.suite.seed,
            config_hash=self.resolved.config_hash(), config_json=self.resolved.config(),
            env_json=json.loads((self.folder.root / "environment.json").read_text()),
            run_dir=str(self.folder.root.resolve()), expected=expected)
        for spec in self.suite.metrics:
            scorer, entry = self.scorers[spec.name], get_metric(spec.name)
            self.store.set_metric_info(self.run_id, spec.name, scorer.version, scorer.extractor, entry.higher_is_better)

    # ------------------------------------------------------------ execution

    def execute(self, *, resuming: bool = False) -> RunOutcome:
        self._prepare_folder(resuming)
        units = plan_units(self.suite, load_prompts(self.resolved, self.data))
        self._register(len(units), "running")
        records = self.folder.read_records()
        for record in records.values():  # the log may be ahead of the store after a kill
            self.store.record_sample(self.run_id, record)
        pending = [u for u in units if u.unit_id not in records
                   or (self.retry_failed and records[u.unit_id].status == "failed")]
        self._say(f"run {self.run_id}: {len(units)} units, {len(units) - len(pending)} already finished, {len(pending)} to compute")
        try:
            for record in self._compute(pending):
                records[record.unit_id] = record
        except KeyboardInterrupt:
            self._finish(units, records, "interrupted")
            raise
        return self._finish(units, records, None, computed=len(pending))

    def _finish(self, units: list[Unit], records: dict[str, SampleRecord], status: str | None, computed: int = 0) -> RunOutcome:
        planned = {u.unit_id for u in units}
        mine = [r for uid, r in records.items() if uid in planned]
        done = sum(r.status == "ok" for r in mine)
        failures = [(r.unit_id, r.error or "unknown error") for r in mine if r.status == "failed"]
        status = status or ("complete" if not failures and done == len(units) else "partial")
        self.store.upsert_run(self.run_id, status=status, expected=len(units), done=done, failed=len(failures))
        info = {m.name: {"higher_is_better": get_metric(m.name).higher_is_better, "version": self.scorers[m.name].version,
                         "extractor": self.scorers[m.name].extractor} for m in self.suite.metrics}
        self.store.set_aggregates(self.run_id, aggregate_records(mine, info, confidence=self.suite.gate.confidence,
                                                                 resamples=self.suite.gate.resamples, seed=self.suite.seed))
        return RunOutcome(self.run_id, self.folder.root, len(units), done, len(failures), computed, failures)

    def _compute(self, pending: list[Unit]) -> Iterator[SampleRecord]:
        by_model: dict[str, list[Unit]] = defaultdict(list)
        for unit in pending:
            by_model[unit.model].append(unit)
        for spec in self.suite.models:
            units = by_model.get(spec.name)
            if not units:
                continue
            bar = tqdm(total=len(units), desc=f"{spec.name}", unit="clip", disable=not self.progress, file=sys.stderr, leave=True)
            try:
                generator = self._build(spec)
            except Exception as exc:  # a model that cannot be built fails its units, not the run
                reason = _describe(exc, "could not build the model")
                for unit in units:
                    yield self._save(self._failure(unit, reason, "build"))
                    bar.update()
                bar.close()
                continue
            for batch in _batches(units, spec.batch_size):
                for record in self._generate_batch(generator, spec, batch):
                    yield self._save(record)
                    bar.update()
            bar.close()

    def _build(self, spec: Any) -> Any:
        entry = get_model_type(spec.type)
        ctx = BuildContext(spec.name, self.resolved.directory, self.data, spec.checkpoint)
        return entry.build(entry.args_model.model_validate(spec.args), ctx)

    def _save(self, record: SampleRecord) -> SampleRecord:
        self.folder.append(record)
        self.store.record_sample(self.run_id, record)
        return record

    def _generate_batch(self, generator: Any, spec: Any, batch: list[Unit]) -> list[SampleRecord]:
        first = batch[0]
        num_frames = num_frames_for(first.clip_seconds, self.fps)
        started = time.perf_counter()
        try:
            conditions = self._conditions(batch, num_frames)
            videos = generator.generate([u.prompt for u in batch], first.clip_seconds, self.fps, first.seed,
                                        task=first.task, condition_frames=conditions, **spec.sampler)
            if len(videos) != len(batch):
                raise RuntimeError(f"generate() returned {len(videos)} videos for {len(batch)} prompts")
        except Exception as exc:
            if len(batch) > 1:  # isolate the failing prompt(s): retry one by one
                return [r for unit in batch for r in self._generate_batch(generator, spec, [unit])]
            return [self._failure(first, _describe(exc, "generation failed"), "generate")]
        seconds_each = (time.perf_counter() - started) / len(batch)
        return [self._finish_unit(unit, video, num_frames, seconds_each) for unit, video in zip(batch, videos)]

    def _conditions(self, batch: list[Unit], num_frames: int) -> list[np.ndarray] | None:
        count = task_condition_frames(self.suite, batch[0].task)
        if count == 0:
            return None
        return [self._truth(unit.prompt, num_frames)[:count] for unit in batch]

    def _truth(self, prompt: Prompt, num_frames: int) -> np.ndarray:
        key = (prompt.id, num_frames)
        if key not in self._ground_truth:
            if len(self._ground_truth) > 64:
                self._ground_truth.clear()
            self._ground_truth[key] = self.data.ground_truth(prompt, num_frames, self.fps)
        return self._ground_truth[key]

    def _finish_unit(self, unit: Unit, video: Any, num_frames: int, generate_seconds: float) -> SampleRecord:
        problem = _check_generated(video, num_frames, unit.clip_seconds, self.fps)
        if problem:
            return self._failure(unit, problem, "check", generate_seconds=generate_seconds)
        try:
            relative, sha = self.folder.store_video(video, self.fps)
        except Exception as exc:
            return self._failure(unit, _describe(exc, "could not store the video"), "store")
        started = time.perf_counter()
        metrics: dict[str, float] = {}
        series: dict[str, list[tuple[float, float]]] = {}
        needs_truth = any(get_metric(m.name).needs_ground_truth for m in self.suite.metrics)
        ctx = SampleContext(fps=self.fps, prompt=str(unit.prompt), task=unit.task,
                            num_condition_frames=task_condition_frames(self.suite, unit.task),
                            ground_truth=self._truth(unit.prompt, num_frames) if needs_truth else None)
        for spec in self.suite.metrics:
            try:
                score = self.scorers[spec.name].score(video, ctx)
            except Exception as exc:
                return self._failure(unit, _describe(exc, f"metric {spec.name!r} failed"), "score",
                                     generate_seconds=generate_seconds, video=relative, sha=sha)
            metrics[spec.name] = float(score.value)
            if score.series:
                series[spec.name] = [(float(t), float(v)) for t, v in score.series]
        return SampleRecord(**_unit_fields(unit), status="ok", video=relative, video_sha256=sha,
                            num_frames=int(video.shape[0]), fps=self.fps, generate_seconds=generate_seconds,
                            score_seconds=time.perf_counter() - started, metrics=metrics, series=series)

    def _failure(self, unit: Unit, reason: str, stage: str, *, generate_seconds: float | None = None,
                 video: str | None = None, sha: str | None = None) -> SampleRecord:
        return SampleRecord(**_unit_fields(unit), status="failed", error=reason, stage=stage,
                            generate_seconds=generate_seconds, video=video, video_sha256=sha)

    def _say(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr)


def _unit_fields(unit: Unit) -> dict[str, Any]:
    return {"unit_id": unit.unit_id, "model": unit.model, "task": unit.task, "clip_seconds": unit.clip_seconds,
            "prompt_id": unit.prompt.id, "seed": unit.seed, "prompt": str(unit.prompt)}


def _batches(units: list[Unit], size: int) -> Iterator[list[Unit]]:
    """Consecutive units that share (task, clip length, seed), at most ``size`` at a time."""
    batch: list[Unit] = []
    for unit in units:
        if batch and (len(batch) == size or (unit.task, unit.clip_seconds, unit.seed) != (batch[0].task, batch[0].clip_seconds, batch[0].seed)):
            yield batch
            batch = []
        batch.append(unit)
    if batch:
        yield batch


def _check_generated(video: Any, num_frames: int, seconds: float, fps: float) -> str | None:
    if not isinstance(video, np.ndarray) or video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        described = f"{type(video).__name__} {getattr(video, 'dtype', '')} {getattr(video, 'shape', '')}".strip()
        return f"the generator returned {described}; expected a uint8 array (T, H, W, 3)"
    if video.shape[0] != num_frames:
        return f"the generator returned {video.shape[0]} frames; expected {num_frames} ({seconds:g} s at {fps:g} fps)"
    return None


def _describe(exc: BaseException, context: str) -> str:
    if isinstance(exc, VbfError):
        return exc.render()
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{context}: {type(exc).__name__}: {exc}{where}"


# ---------------------------------------------------------------- entry point

def open_store(runs_dir: Path) -> Store:
    return Store(runs_dir / STORE_NAME)


def _new_run_id(resolved: list[ResolvedSuite]) -> str:
    return f"{safe_id(resolved[0].suite.name)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run_suite(resolved: list[ResolvedSuite], *, runs_dir: Path = DEFAULT_RUNS_DIR, run_id: str | None = None,
              resume: bool = False, retry_failed: bool = False, progress: bool = True) -> list[RunOutcome]:
    """Run every variant of a suite; returns one outcome per run."""
    store = open_store(runs_dir)
    try:
        swept = len(resolved) > 1 or resolved[0].variant is not None
        base_id = run_id
        if resume and base_id is None:
            latest = store.latest_run(resolved[0].run_name)
            if latest is None:
                raise ConfigError(f"nothing to resume: no earlier run of {resolved[0].run_name!r} in {store.path}",
                                  fix="drop --resume to start a new run")
            base_id = store.run(latest)["sweep"] or latest
        base_id = safe_id(base_id or _new_run_id(resolved))
        outcomes = []
        for item in resolved:
            this_id = f"{base_id}.{safe_id(item.variant)}" if item.variant else base_id
            run_dir = runs_dir / this_id
            if run_dir.exists() and not resume:
                raise ConfigError(f"run {this_id!r} already exists in {runs_dir}",
                                  fix="add --resume to continue it, or choose another --run-id")
            if resume and not run_dir.exists():
                raise ConfigError(f"cannot resume {this_id!r}: {run_dir} does not exist", fix="drop --resume to start it")
            runner = Runner(item, store, run_dir, this_id, sweep=base_id if swept else None,
                            progress=progress, retry_failed=retry_failed)
            outcomes.append(runner.execute(resuming=resume))
        return outcomes
    finally:
        store.close()
