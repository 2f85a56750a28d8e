"""The runner: suite -> units -> videos -> per-sample records -> aggregates -> report.

A unit is one (model, task, clip length, prompt, seed). Each unit is generated, checked, stored
(content-addressed, so identical videos share one file) and scored; its record is appended to the
run's ``samples.jsonl`` the moment it finishes, then indexed in the SQLite store. ``--resume``
reads that log back and computes only the units that have no record, so an interrupted run
continues without repeating or duplicating work.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import re
import shutil
import sys
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml
from pydantic import ValidationError
from tqdm.auto import tqdm

from metrics.files import file_sha256
from metrics.throughput import GenerationMeter
from metrics.video import check_video
from vbench_flow.aggregate import aggregate_records
from vbench_flow.distributed import Shard, current_shard
from vbench_flow.environment import capture_environment
from vbench_flow.errors import ConfigError, DiskFull, EvaluationError, RunInterrupted, VideoReadError, disk_full
from vbench_flow.locking import RunLock, describe_holder, lock_holder
from vbench_flow.prompts import Unit, load_prompts, plan_units
from vbench_flow.protocol import Prompt
from metrics.streaming import ClipContext, resolve_device
from vbench_flow.registry import BuildContext, get_metric, get_model_type
from vbench_flow.scoring import (ClipScores, MetricPlan, VideoFile, describe, peak_rss_mb, score_clip,
                                stop_if_disk_full)
from vbench_flow.set_metrics import aggregate_set_metric, reference_set
from vbench_flow.store import DEFAULT_RUNS_DIR, SampleRecord, Store, open_store
from vbench_flow.suite import ResolvedSuite, Suite, open_data_source, task_condition_frames
from vbench_flow.video_io import num_frames_for, write_video

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=,+-]*")


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    expected: int
    done: int
    failed: int
    computed: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    # metric -> (clips it could not score, the first reason)
    metric_errors: dict[str, tuple[int, str]] = field(default_factory=dict)
    # metric -> (clips its definition leaves out, the first reason)
    metric_excluded: dict[str, tuple[int, str]] = field(default_factory=dict)
    report: Path | None = None
    combined_report: Path | None = None  # the suite's report.output, on the first outcome

    @property
    def status(self) -> str:
        return "complete" if self.failed == 0 and self.done == self.expected else "partial"

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "complete" else 2


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

    def shard_logs(self) -> list[Path]:
        """Per-rank logs of a distributed run that has not merged them yet (it was killed)."""
        return sorted(self.root.glob("samples.rank*.jsonl"))

    @staticmethod
    def _read_log(path: Path) -> Iterator[SampleRecord]:
        if not path.exists():
            return
        with path.open() as handle:
            for line in handle:
                if not line.endswith("\n"):
                    break
                try:
                    yield SampleRecord.model_validate_json(line)
                except ValueError:
                    continue

    def read_records(self) -> dict[str, SampleRecord]:
        """The last record of each unit, from the run's log and any unmerged per-rank logs; a line
        cut short by a kill is ignored (its unit reruns)."""
        records: dict[str, SampleRecord] = {}
        for path in [self.samples, *self.shard_logs()]:
            for record in self._read_log(path):
                known = records.get(record.unit_id)
                if known is None or record.finished >= known.finished:  # a retried unit's newer record wins
                    records[record.unit_id] = record
        return records

    def append(self, record: SampleRecord, log: Path | None = None) -> None:
        log = log or self.samples
        try:
            self._drop_partial_tail(log)
            with log.open("a") as handle:
                handle.write(record.model_dump_json() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise disk_full(exc, log) or exc

    def merge_shard_logs(self) -> list[SampleRecord]:
        """Move the per-rank records into ``samples.jsonl`` (in rank order) and delete the rank logs."""
        merged = []
        for path in self.shard_logs():
            for record in self._read_log(path):
                self.append(record)
                merged.append(record)
            path.unlink()
        return merged

    def _drop_partial_tail(self, log: Path) -> None:
        # A kill mid-write leaves an unterminated last line; cut it so the next record starts clean.
        if not log.exists() or log.stat().st_size == 0:
            return
        with log.open("rb+") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return
            handle.seek(0)
            handle.truncate(handle.read().rfind(b"\n") + 1)

    def store_video(self, frames: np.ndarray, fps: float) -> tuple[str, str]:
        sha = video_digest(frames, fps)
        relative = Path("videos") / sha[:2] / f"{sha}.mp4"
        target = self.root / relative
        if not target.exists():
            try:
                write_video(target, frames, fps)  # atomic: a file cut short never passes for the video
            except Exception as exc:
                raise disk_full(exc, target) or exc
        return relative.as_posix(), sha

    def keep_external(self, source: Path, mode: str) -> tuple[str, str]:
        """A video file a generator handed back, by ``mode``: "reference" stores its absolute path;
        "copy" and "hardlink" put it into the run folder (content-addressed, like stored clips) so
        the run stays whole if the source moves. Returns (path to store, sha256)."""
        sha = file_sha256(source)
        if mode == "reference":
            return str(source.resolve()), sha
        relative = Path("videos") / sha[:2] / f"{sha}{source.suffix.lower()}"
        target = self.root / relative
        if target.exists():
            return relative.as_posix(), sha
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            if mode == "hardlink":
                os.link(source, partial)
            else:
                shutil.copyfile(source, partial)
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            if mode == "hardlink" and exc.errno == errno.EXDEV:
                raise ConfigError(f"cannot hardlink {source} into {self.root}: they are on different file systems",
                                  where="external_videos", fix="use external_videos: copy") from None
            raise disk_full(exc, target) or exc
        return relative.as_posix(), sha


# ground-truth clips kept in memory for a prompt's other seeds (the shapes world's are a few MB)
TRUTH_CACHE_BYTES = 256 * 1024 * 1024
# a dataset model's clips whose scores are kept for reuse under the next task (the latest; ~0.5 MB
# each for a 30 s clip's series and features): 64 prompts at two lengths; past that a clip is
# scored again, which costs time, not correctness
CLIP_SCORES_KEPT = 128


def _with_new_defaults(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """A run's stored config with the defaults of options a newer vbench-flow added, at any depth
    (so resuming an older run is no change while they keep their defaults); as stored when it no
    longer validates (then it differs, and the run is refused)."""
    if stored is None:
        return None
    try:
        return Suite.model_validate(stored).model_dump(mode="json")
    except ValidationError:
        return stored


# ---------------------------------------------------------------- the runner

class Runner:
    def __init__(self, resolved: ResolvedSuite, store: Store | None, run_dir: Path, run_id: str, *,
                 sweep: str | None = None, progress: bool = True, retry_failed: bool = False,
                 shard: Shard = Shard()) -> None:
        self.resolved, self.suite, self.shard = resolved, resolved.suite, shard
        self.store, self.run_id, self.sweep = store, run_id, sweep
        self.folder = RunFolder(run_dir)
        self.progress, self.retry_failed = progress, retry_failed
        self.fps = self.suite.generation_fps
        self.cache_dir = run_dir.parent / "cache"
        self.data = open_data_source(self.suite, resolved.directory)
        self._ground_truth: dict[tuple[str, int], np.ndarray] = {}
        # scores of the clips this process scored, by (model, video sha256, prompt, frames): a unit that
        # shows the same clip again (a dataset's real clip under each task) reuses what does not read the task
        self._clip_scores: OrderedDict[tuple, ClipScores] = OrderedDict()
        self.scorers = {m.name: get_metric(m.name).build(get_metric(m.name).args_model.model_validate(m.args))
                        for m in self.suite.metrics}
        self.metric_info = {m.name: {"higher_is_better": get_metric(m.name).higher_is_better, "kind": get_metric(m.name).kind,
                                     "version": self.scorers[m.name].version, "extractor": self.scorers[m.name].extractor,
                                     "args": self.scorers[m.name].args.model_dump(mode="json")}
                            for m in self.suite.metrics}
        self.model_info: dict[str, Any] = {}

    # ------------------------------------------------------------ set-up

    def _check_unchanged(self) -> None:
        stored_path = self.folder.root / "config.yaml"
        stored = yaml.safe_load(stored_path.read_text()) if stored_path.exists() else None
        current = self.resolved.config()
        stored = _with_new_defaults(stored)
        if stored is not None and stored != current:
            changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
            raise ConfigError(f"the suite changed since run {self.run_id!r} started (changed: {', '.join(changed)})",
                              fix="drop --resume to start a new run, or restore the suite as it was")

    def _register(self, expected: int) -> None:
        """Folder, resolved config and store row first, so an interrupt at any later point is resumable."""
        self.folder.root.mkdir(parents=True, exist_ok=True)
        (self.folder.root / "config.yaml").write_text(yaml.safe_dump(self.resolved.config(), sort_keys=False))
        self.store.upsert_run(
            self.run_id, suite=self.suite.name, variant=self.resolved.variant, sweep=self.sweep,
            suite_path=str(self.resolved.path), status="running", seed=self.suite.seed,
            config_hash=self.resolved.config_hash(), config_json=self.resolved.config(),
            run_dir=str(self.folder.root.resolve()), expected=expected)
        for name, info in self.metric_info.items():
            self.store.set_metric_info(self.run_id, name, info["version"], info["extractor"], info["higher_is_better"],
                                       info["kind"], info["args"])
        self._record_environment()

    def _record_environment(self) -> None:
        """The first session's environment is the run's; each resumed session is appended to sessions.jsonl."""
        environment = capture_environment()
        first = self.folder.root / "environment.json"
        if not first.exists():
            first.write_text(json.dumps(environment, indent=2))
            self.store.upsert_run(self.run_id, env_json=environment)
        with (self.folder.root / "sessions.jsonl").open("a") as handle:
            handle.write(json.dumps(environment) + "\n")

    # ------------------------------------------------------------ execution

    def execute(self, *, resuming: bool = False) -> RunOutcome:
        units = plan_units(self.suite, load_prompts(self.suite, self.data, self.resolved.directory))
        problem = None
        if self.shard.is_writer:  # one process registers the run; the others wait for it
            try:
                if resuming:
                    self._check_unchanged()
                self._register(len(units))
            except Exception as exc:  # shared, not raised: the other ranks would wait for rank 0 forever
                problem = exc
        problem = self.shard.share(problem)
        if problem is not None:
            raise problem
        records = self.folder.read_records()
        if self.shard.is_writer:
            for record in records.values():  # the log may be ahead of the store after a kill
                self.store.record_sample(self.run_id, record)
        pending = [u for u in units if u.unit_id not in records
                   or (self.retry_failed and records[u.unit_id].status == "failed")]
        if self.shard.distributed:  # every rank shards rank 0's list, never its own later reading
            wanted = set(self.shard.share([u.unit_id for u in pending]))
            pending = [u for u in units if u.unit_id in wanted]
        ranks = f" over {self.shard.world} processes" if self.shard.distributed else ""
        self._say(f"run {self.run_id}: {len(units)} units, {len(units) - len(pending)} already finished, "
                  f"{len(pending)} to compute{ranks}")
        try:
            for record in self._compute(pending):
                records[record.unit_id] = record
        except KeyboardInterrupt:
            if self.shard.is_writer and not self.shard.distributed:
                self._finish(units, records, interrupted=True)
            raise
        if self.shard.distributed:
            self.shard.barrier()
            models = self.shard.gather(self.model_info)
            if self.shard.is_writer:
                for record in self.folder.merge_shard_logs():
                    self.store.record_sample(self.run_id, record)
                    records[record.unit_id] = record
                self.model_info = {name: info for part in models for name, info in part.items()}
        return self._finish(units, records, computed=len(pending))

    def _finish(self, units: list[Unit], records: dict[str, SampleRecord], *, interrupted: bool = False,
                computed: int = 0) -> RunOutcome:
        """Status and aggregates, written by rank 0; every rank returns rank 0's outcome."""
        outcome, problem = None, None
        if self.shard.is_writer:
            try:
                outcome = self._write_outcome(units, records, interrupted=interrupted, computed=computed)
            except Exception as exc:  # shared, not raised: the other ranks would wait for rank 0 forever
                problem = exc
        outcome, problem = self.shard.share((outcome, problem))
        if problem is not None:
            raise problem
        return outcome

    def _write_outcome(self, units: list[Unit], records: dict[str, SampleRecord], *, interrupted: bool,
                       computed: int) -> RunOutcome:
        planned = {u.unit_id for u in units}
        # sorted: the aggregates (bootstrap draws, float sums) must not depend on the order units finished in
        mine = sorted((r for uid, r in records.items() if uid in planned), key=lambda r: r.unit_id)
        failures = [(r.unit_id, r.error or "unknown error") for r in mine if r.status == "failed"]
        outcome = RunOutcome(self.run_id, self.folder.root, len(units), sum(r.status == "ok" for r in mine),
                             len(failures), computed, failures, _metric_error_counts(mine),
                             _metric_error_counts(mine, excluded=True))
        rows = aggregate_records(mine, self.metric_info, confidence=self.suite.gate.confidence,
                                 resamples=self.suite.gate.resamples, seed=self.suite.seed)
        if not interrupted:
            try:
                rows += self._set_metric_rows(mine)
            except DiskFull:
                raise  # not the run's fault: it stays resumable ('interrupted')
            except EvaluationError:
                self.store.upsert_run(self.run_id, status="partial", expected=outcome.expected, done=outcome.done,
                                      failed=outcome.failed)
                raise
        self.store.set_aggregates(self.run_id, rows)
        # the status last: a run is 'complete' only once every aggregate is written
        self.store.upsert_run(self.run_id, status="interrupted" if interrupted else outcome.status,
                              expected=outcome.expected, done=outcome.done, failed=outcome.failed)
        if self.model_info:
            self.store.upsert_run(self.run_id, models_json=self.model_info)
        return outcome

    def _set_metric_rows(self, records: list[SampleRecord]) -> list[Any]:
        """FVD and other set-level values per group, against reference features of each clip length."""
        rows = []
        for spec in self.suite.metrics:
            if not get_metric(spec.name).set_level:
                continue
            scorer = self.scorers[spec.name]
            lengths = sorted({r.clip_seconds for r in records if r.status == "ok" and spec.name in r.features})
            references = {}
            for seconds in lengths:
                try:
                    reference = reference_set(scorer, self.data, self.suite.reference, num_frames_for(seconds, self.fps),
                                              self.fps, self.cache_dir / "reference-features", progress=self.progress)
                except Exception as exc:
                    stop_if_disk_full(exc)
                    raise EvaluationError(describe(exc, f"the reference clips of metric {spec.name!r} ({seconds:g} s) "
                                                         "could not be scored"),
                                          fix="every unit is saved: fix the reference and rerun with --resume") from None
                path = reference.save(self.folder.root / "reference" / f"{safe_id(spec.name)}-{seconds:g}s.npz")
                self.store.set_reference(self.run_id, spec.name, seconds, reference.digest, reference.clips,
                                         path.relative_to(self.folder.root).as_posix())
                references[seconds] = reference
            rows += aggregate_set_metric(spec.name, scorer, records, references, self.metric_info[spec.name],
                                         confidence=self.suite.gate.confidence, seed=self.suite.seed)
        return rows

    def _compute(self, pending: list[Unit]) -> Iterator[SampleRecord]:
        by_model: dict[str, list[Unit]] = defaultdict(list)
        for unit in pending:
            by_model[unit.model].append(unit)
        first_batch = 0
        for spec in self.suite.models:
            batches = list(_batches(by_model.get(spec.name, []), spec.batch_size))
            # whole batches go round-robin over the ranks: each clip is made exactly as in one process
            mine = [b for i, b in enumerate(batches, first_batch) if self.shard.mine(i)]
            first_batch += len(batches)
            units = [unit for batch in mine for unit in batch]
            if not units:
                continue
            bar = tqdm(total=len(units), desc=f"{spec.name}", unit="clip", disable=not self.progress, file=sys.stderr, leave=True)
            try:
                generator = self._build(spec)
                self.model_info[spec.name] = {"type": spec.type, **_model_info(generator)}
            except (Exception, SystemExit) as exc:  # a model that cannot be built fails its units, not the run
                stop_if_disk_full(exc)
                reason = describe(exc, "could not build the model")
                for unit in units:
                    yield self._save(self._failure(unit, reason, "build"))
                    bar.update()
                bar.close()
                continue
            for batch in mine:
                for record in self._generate_batch(generator, spec, batch):
                    yield self._save(record)
                    bar.update()
            bar.close()

    def _build(self, spec: Any) -> Any:
        entry = get_model_type(spec.type)
        ctx = BuildContext(spec.name, self.resolved.directory, self.data, spec.checkpoint)
        return entry.build(entry.args_model.model_validate(spec.args), ctx)

    def _save(self, record: SampleRecord) -> SampleRecord:
        if self.shard.distributed:  # rank 0 merges the rank logs and fills the store at the end
            self.folder.append(record, self.folder.root / f"samples.rank{self.shard.rank}.jsonl")
            return record
        self.folder.append(record)
        self.store.record_sample(self.run_id, record)
        return record

    def _generate_batch(self, generator: Any, spec: Any, batch: list[Unit]) -> list[SampleRecord]:
        first = batch[0]
        num_frames = num_frames_for(first.clip_seconds, self.fps)
        try:
            conditions = self._conditions(batch, num_frames)
            with GenerationMeter() as meter:
                videos = generator.generate([u.prompt for u in batch], first.clip_seconds, self.fps, first.seed,
                                            task=first.task, condition_frames=conditions, **spec.sampler)
            if len(videos) != len(batch):
                raise RuntimeError(f"generate() returned {len(videos)} videos for {len(batch)} prompts")
            reported = generator.generation_stats() if hasattr(generator, "generation_stats") else {}
        except (Exception, SystemExit) as exc:  # a generator's sys.exit() fails its units, not the run
            stop_if_disk_full(exc)
            if len(batch) > 1:  # isolate the failing prompt(s): retry one by one
                return [r for unit in batch for r in self._generate_batch(generator, spec, [unit])]
            return [self._failure(first, describe(exc, "generation failed"), "generate")]
        generation = _generation_record(reported, meter, len(batch))
        return [self._finish_unit(unit, video, num_frames, generation, generator) for unit, video in zip(batch, videos)]

    def _conditions(self, batch: list[Unit], num_frames: int) -> list[np.ndarray] | None:
        count = task_condition_frames(self.suite, batch[0].task)
        if count == 0:
            return None
        return [self._truth(unit.prompt, count) for unit in batch]

    def _truth(self, prompt: Prompt, num_frames: int) -> np.ndarray:
        """The prompt's real clip, kept for its other seeds while the kept clips fit TRUTH_CACHE_BYTES."""
        key = (prompt.id, num_frames)
        if key not in self._ground_truth:
            clip = self.data.ground_truth(prompt, num_frames, self.fps)
            if sum(c.nbytes for c in self._ground_truth.values()) + clip.nbytes > TRUTH_CACHE_BYTES:
                self._ground_truth.clear()
            if clip.nbytes > TRUTH_CACHE_BYTES:
                return clip
            self._ground_truth[key] = clip
        return self._ground_truth[key]

    def _finish_unit(self, unit: Unit, video: Any, num_frames: int, generation: dict[str, Any],
                     generator: Any = None) -> SampleRecord:
        """Store the clip and score it in one pass. A video file a generator hands back (a
        ``folder`` model's) is referenced by path and sha256, not re-encoded, and read in chunks."""
        generate_seconds = generation["seconds"]
        external = isinstance(video, VideoFile)
        if not external:
            problem = _check_generated(video, num_frames, unit.clip_seconds, self.fps)
            if problem:
                return self._failure(unit, problem, "check", generate_seconds=generate_seconds)
        try:
            relative, sha = self.folder.keep_external(Path(video), self.suite.external_videos) if external else \
                self.folder.store_video(video, self.fps)
        except ConfigError:
            raise
        except Exception as exc:
            stop_if_disk_full(exc)
            return self._failure(unit, describe(exc, "could not store the video"), "store")
        started = time.perf_counter()
        plans = [MetricPlan(m.name, self.scorers[m.name], get_metric(m.name).set_level)
                 for m in self.suite.metrics if m.applies_to(unit.model)]
        truth_readers = [m for m in map(get_metric, (p.name for p in plans)) if m.needs_ground_truth]
        try:
            truth = self._truth(unit.prompt, num_frames) if any(not m.streams_ground_truth for m in truth_readers) \
                else None
        except Exception as exc:
            stop_if_disk_full(exc)
            return self._failure(unit, describe(exc, "could not read the ground truth"), "score",
                                 generate_seconds=generate_seconds, video=relative, sha=sha)
        # num_frames is exact: a generated clip was checked for it, a file is read to exactly that many frames
        ctx = ClipContext(fps=self.fps, num_frames=num_frames, prompt=str(unit.prompt), task=unit.task,
                            num_condition_frames=task_condition_frames(self.suite, unit.task), ground_truth=truth,
                            ground_truth_chunks=(partial(self.data.ground_truth_chunks, unit.prompt, num_frames, self.fps)
                                                 if truth_readers else None),
                            generation=generation, generator=generator)
        # a dataset model's clip is the prompt's real clip whatever the task: only it is kept for reuse
        key = (unit.model, sha, str(unit.prompt), num_frames) if self._is_dataset(unit.model) else None
        earlier = self._clip_scores.get(key) if key else None
        reused = {p.name for p in plans if earlier is not None and not get_metric(p.name).reads_task}
        try:
            scores = score_clip(video, [p for p in plans if p.name not in reused], ctx, num_frames,
                                self.suite.scoring.chunk_frames, self.suite.scoring.reader,
                                resolve_device(self.suite.scoring.device)) if earlier is None or len(reused) < len(plans) \
                else None
        except VideoReadError as exc:
            return self._failure(unit, exc.render(), "read", generate_seconds=generate_seconds, video=relative, sha=sha)
        if key is not None and earlier is None:
            self._clip_scores[key] = scores
            if len(self._clip_scores) > CLIP_SCORES_KEPT:
                self._clip_scores.popitem(last=False)
        elif earlier is not None:
            scores, fresh = earlier.only(reused), scores
            if fresh is not None:
                scores.add(fresh)
        return SampleRecord(**_unit_fields(unit), status="ok", video=relative, video_sha256=sha,
                            num_frames=scores.num_frames, height=scores.height, width=scores.width,
                            fps=self.fps, generate_seconds=generate_seconds,
                            score_seconds=time.perf_counter() - started, metric_seconds=scores.metric_seconds,
                            read_seconds=scores.read_seconds, peak_rss_mb=peak_rss_mb(),
                            metrics=scores.metrics, series=scores.series, generation=generation,
                            features=scores.features, metric_errors=scores.metric_errors,
                            metric_excluded=scores.metric_excluded)

    def _is_dataset(self, model: str) -> bool:
        return any(spec.name == model and spec.type == "dataset" for spec in self.suite.models)

    def _failure(self, unit: Unit, reason: str, stage: str, *, generate_seconds: float | None = None,
                 video: str | None = None, sha: str | None = None) -> SampleRecord:
        return SampleRecord(**_unit_fields(unit), status="failed", error=reason, stage=stage,
                            generate_seconds=generate_seconds, video=video, video_sha256=sha)

    def mark_stopped(self) -> None:
        """A run left by an interrupt or an error is not 'running'; best effort, since the store
        itself may be what failed (`vbf runs ls` also checks the run's lock)."""
        if not self.shard.is_writer or self.store is None:
            return
        try:
            if self.store.run(self.run_id)["status"] == "running":
                self.store.upsert_run(self.run_id, status="interrupted")
        except Exception:
            pass

    def _say(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr)


def _metric_error_counts(records: list[SampleRecord], excluded: bool = False) -> dict[str, tuple[int, str]]:
    """Per metric: how many clips it failed on (or, ``excluded``, left out by definition) and the first reason."""
    counts: dict[str, tuple[int, str]] = {}
    for record in records:
        for metric, reason in (record.metric_excluded if excluded else record.metric_errors).items():
            count, first = counts.get(metric, (0, reason))
            counts[metric] = (count + 1, first)
    return counts


def _model_info(generator: Any) -> dict[str, Any]:
    """What the generator says about itself (name, parameters, checkpoint hash), JSON-safe."""
    try:
        return json.loads(json.dumps(generator.info(), default=str))
    except (Exception, SystemExit) as exc:  # a broken info() must not fail the run
        return {"info_error": f"{type(exc).__name__}: {exc}"}


def _generation_record(reported: dict[str, Any], meter: GenerationMeter, batch_size: int) -> dict[str, Any]:
    """What one clip of a ``generate`` call cost: the call's seconds shared evenly by its clips,
    its peak memory, and what the generator reported about the whole call (generation_stats())."""
    measured = meter.record()
    record = {**reported, **measured, "batch_size": batch_size}
    record["seconds"] = measured["seconds"] / batch_size  # generator-reported timings stay per call
    return record


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
    try:
        check_video(video, name="generated video")
    except ValueError as exc:
        return str(exc)
    if video.shape[0] != num_frames:
        return f"the generator returned {video.shape[0]} frames; expected {num_frames} ({seconds:g} s at {fps:g} fps)"
    return None


# ---------------------------------------------------------------- entry point

def check_run_id(run_id: str) -> str:
    """A run id is a plain folder name: it can never step out of the runs folder."""
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise ConfigError(f"run id {run_id!r} is not a plain name", where="--run-id",
                          fix="use letters, digits and _ . = , + - starting with a letter or digit, "
                              "with no path separators (e.g. nightly-42)")
    return run_id


def _share_cores_with_torch() -> None:
    """OpenCV (the DIS flows) takes as many threads as torch has: under torchrun each process gets
    its share of the cores (OMP_NUM_THREADS), where OpenCV would otherwise start one thread per core
    in every process."""
    import cv2
    import torch

    cv2.setNumThreads(torch.get_num_threads())


def run_suite(resolved: list[ResolvedSuite], *, runs_dir: Path = DEFAULT_RUNS_DIR, run_id: str | None = None,
              resume: bool = False, retry_failed: bool = False, progress: bool = True) -> list[RunOutcome]:
    """Run every variant of a suite; returns one outcome per run.

    Each run's folder is created atomically (a new run never reuses a folder) and locked for the
    whole call, so two processes never write one run. With ``resume``, each variant continues
    where it stopped; a variant of a sweep that never started is started. Ctrl-C (or SIGTERM)
    raises :class:`RunInterrupted` and a full disk :class:`DiskFull`, both naming the command
    that continues the run.
    """
    shard = current_shard()
    _share_cores_with_torch()
    store = open_store(runs_dir) if shard.is_writer else None
    locks: list[RunLock] = []
    try:
        plan, problem = None, None
        if shard.is_writer:  # rank 0 decides the run ids and holds the locks; the others follow
            try:
                plan, locks = _plan_runs(store, resolved, runs_dir, run_id, resume)
            except Exception as exc:  # shared, not raised: the other ranks would wait for rank 0 forever
                problem = exc
        plan, problem = shard.share((plan, problem))
        if problem is not None:
            raise problem
        base_id, swept, ids, existed = plan
        continue_with = (f"vbf run {resolved[0].path} --resume --run-id {base_id}"
                         + (f" --runs-dir {runs_dir}" if runs_dir != DEFAULT_RUNS_DIR else ""))
        outcomes = []
        for item, this_id, exists in zip(resolved, ids, existed):
            runner = Runner(item, store, runs_dir / this_id, this_id, sweep=base_id if swept else None,
                            progress=progress and shard.is_writer, retry_failed=retry_failed, shard=shard)
            try:
                outcomes.append(runner.execute(resuming=resume and exists))
            except KeyboardInterrupt:
                runner.mark_stopped()
                raise RunInterrupted(f"interrupted during run {this_id!r}; every finished unit is saved",
                                     fix=f"continue with: {continue_with}") from None
            except BaseException as exc:
                runner.mark_stopped()
                full = disk_full(exc)
                if full is None:
                    raise
                raise DiskFull(f"run {this_id!r} stopped: {full.what}; every finished unit is saved",
                               fix=f"free some space, then continue with: {continue_with}") from None
        if shard.is_writer:  # still under the runs' locks
            _write_reports(store, resolved, outcomes, continue_with)
        return outcomes
    finally:
        for lock in locks:
            lock.release()
        if store is not None:
            store.close()


def _write_reports(store: Store, resolved: list[ResolvedSuite], outcomes: list[RunOutcome], continue_with: str) -> None:
    """Each run's ``report.html``, and the suite's ``report.output`` over all of them."""
    from vbench_flow.reporting import write_report

    targets = [([o.run_id], o.run_dir / "report.html") for o in outcomes]
    if resolved[0].suite.report.output:
        targets.append(([o.run_id for o in outcomes], resolved[0].resolve_path(resolved[0].suite.report.output)))
    for run_ids, path in targets:
        try:
            written = write_report(store, run_ids, path)
        except Exception as exc:
            full = disk_full(exc, path)
            if full is None:
                raise
            raise DiskFull(f"the report could not be written: {full.what}; every result is stored",
                           fix=f"free some space, then `{continue_with}` writes it") from None
        for outcome in outcomes:
            if outcome.run_id in run_ids and len(run_ids) == 1:
                outcome.report = written
    if len(targets) > len(outcomes):
        outcomes[0].combined_report = targets[-1][1]


def _plan_runs(store: Store, resolved: list[ResolvedSuite], runs_dir: Path, run_id: str | None,
               resume: bool) -> tuple[tuple[str, bool, list[str], list[bool]], list[RunLock]]:
    """((base id, swept, run id of each variant, whether its folder existed), the runs' locks).

    A new run's folders are created here, each with one ``mkdir`` that fails if it exists and
    locked at once, so two processes can never both start the same run; an id made from the
    suite's name and the time gets a ``-2``, ``-3``, ... suffix when that id is taken (two suites of
    one name in one second).
    """
    swept = len(resolved) > 1 or resolved[0].variant is not None
    if run_id is not None:
        check_run_id(run_id)
    runs_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        return _lock_existing_runs(store, resolved, runs_dir, run_id, swept)
    if run_id is not None:
        ids = _variant_ids(run_id, resolved)
        taken, locks = _claim_run_dirs(store, runs_dir, ids)
        if taken:
            holder = lock_holder(runs_dir / taken)
            raise ConfigError(f"run {taken!r} already exists in {runs_dir}"
                              + (f" and is in use by {describe_holder(holder)}" if holder else ""),
                              fix="add --resume to continue it, or choose another --run-id")
        return (run_id, swept, ids, [False] * len(ids)), locks
    stamp = f"{safe_id(resolved[0].suite.name)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    for attempt in itertools.count(1):
        base_id = stamp if attempt == 1 else f"{stamp}-{attempt}"
        ids = _variant_ids(base_id, resolved)
        taken, locks = _claim_run_dirs(store, runs_dir, ids)
        if taken is None:
            return (base_id, swept, ids, [False] * len(ids)), locks
    raise AssertionError("unreachable")


def _lock_existing_runs(store: Store, resolved: list[ResolvedSuite], runs_dir: Path, run_id: str | None,
                        swept: bool) -> tuple[tuple[str, bool, list[str], list[bool]], list[RunLock]]:
    base_id = run_id if run_id is not None else _latest_base_id(store, resolved[0].run_name)
    ids = _variant_ids(base_id, resolved)
    existed = [(runs_dir / this_id).is_dir() for this_id in ids]
    if not any(existed):
        raise ConfigError(f"cannot resume {base_id!r}: no run folder {runs_dir / ids[0]}"
                          + (" or of its other variants" if swept else ""), fix="drop --resume to start it")
    locks: list[RunLock] = []
    try:
        for this_id in ids:
            (runs_dir / this_id).mkdir(exist_ok=True)  # a variant of the sweep that never started
            locks.append(RunLock(runs_dir / this_id).acquire())
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return (base_id, swept, ids, existed), locks


def _latest_base_id(store: Store, run_name: str) -> str:
    latest = store.latest_run(run_name)
    if latest is None:
        raise ConfigError(f"nothing to resume: no earlier run of {run_name!r} in {store.path}",
                          fix="drop --resume to start a new run")
    return store.run(latest)["sweep"] or latest


def _variant_ids(base_id: str, resolved: list[ResolvedSuite]) -> list[str]:
    return [f"{base_id}.{safe_id(item.variant)}" if item.variant else base_id for item in resolved]


def _claim_run_dirs(store: Store, runs_dir: Path, ids: list[str]) -> tuple[str | None, list[RunLock]]:
    """Create and lock every run folder of ``ids``, or none: (None, the locks), or (the first id
    already taken by a folder or a stored run, []) with the folders made so far removed again."""
    claimed: list[RunLock] = []
    try:
        for this_id in ids:
            folder = runs_dir / this_id
            try:
                if store.has_run(this_id):
                    raise FileExistsError(folder)
                folder.mkdir()
            except FileExistsError:
                _give_up(claimed)
                return this_id, []
            claimed.append(RunLock(folder).acquire())
    except BaseException:
        _give_up(claimed)
        raise
    return None, claimed


def _give_up(claimed: list[RunLock]) -> None:
    """Unlock and remove run folders this process has just made (nothing else is in them)."""
    for lock in claimed:
        lock.path.unlink(missing_ok=True)
        lock.release()
        try:
            lock.run_dir.rmdir()
        except OSError:  # another process got in first; the folder is then theirs
            pass
