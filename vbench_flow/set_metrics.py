"""Set-level metrics (FVD) in a run: real reference features and one value per group of units.

Every clip's features are stored with its record as the clip is scored (so a resumed or sharded
run loses none); the value of a group -- (model, task, clip length) -- is computed when the run is
aggregated, against the features of the suite's ``reference`` clips: real clips of the same length
at the same fps. Reference features are cached under ``<runs dir>/cache/reference-features`` by a
content hash of the clips themselves and the metric version, so a changed data set, length, fps
or extractor never reuses stale statistics; the run folder keeps a copy (``reference/``) that the
gate reads.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm.auto import tqdm

from metrics.fvd import (FVD_INF_FRACTIONS, FeatureStats, FvdArgs, UnitFeatures, set_distance, set_distances,
                         window_starts)
from vbench_flow.stats import group_seed, set_delta, set_interval
from vbench_flow.store import AggregateRow, SampleRecord


@dataclass
class ReferenceSet:
    """Per-clip features of the real reference clips (one array per clip) and their content hash."""

    features: list[np.ndarray]
    digest: str

    @cached_property
    def units(self) -> UnitFeatures:  # once per set: every group of a run compares with it
        return UnitFeatures(self.features)

    @cached_property
    def stats(self) -> FeatureStats:
        return self.units.stats()

    @property
    def clips(self) -> int:
        return len(self.features)

    def save(self, path: Path) -> Path:
        """Atomically, as .npz: the clips' features stacked, with each clip's row count."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        with tmp.open("wb") as handle:
            np.savez(handle, stacked=np.concatenate(self.features), counts=np.array([len(f) for f in self.features]),
                     digest=np.array(self.digest))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path) -> ReferenceSet:
        """The saved set; ValueError naming ``path`` when the file is not one (cut short, overwritten)."""
        try:
            with np.load(path, allow_pickle=False) as data:  # a cache file never runs code when read
                stacked, counts, digest = data["stacked"], data["counts"], str(data["digest"])
        except Exception as exc:  # zip, npy-header and key errors all mean the same: not a saved set
            raise ValueError(f"{path} is not a readable reference-feature file ({type(exc).__name__}: {exc})") from None
        if stacked.ndim != 2 or counts.ndim != 1 or counts.sum() != len(stacked) or (counts < 1).any() \
                or not np.isfinite(stacked).all():
            raise ValueError(f"{path} is not a readable reference-feature file (inconsistent arrays)")
        return cls(np.split(stacked, np.cumsum(counts)[:-1]), digest)


def _clip_digest(chunks: Iterator[np.ndarray], num_frames: int) -> bytes:
    """sha256 of the clip's shape and bytes, chunk by chunk (equal to hashing the whole clip)."""
    digest = None
    for chunk in chunks:
        if digest is None:
            digest = hashlib.sha256(f"{(num_frames, *chunk.shape[1:])}|".encode())
        digest.update(np.ascontiguousarray(chunk).data)
    if digest is None:
        raise ValueError("a reference clip has no frames")
    return digest.digest()


def _clip_features(scorer: Any, chunks: Iterator[np.ndarray], fps: float, num_frames: int) -> np.ndarray:
    stream = scorer.feature_stream(fps, num_frames)
    for chunk in chunks:
        stream.update(chunk)
    return np.asarray(stream.features(), dtype=np.float64)


def reference_set(scorer: Any, data: Any, reference: Any, num_frames: int, fps: float, cache_dir: Path, *,
                  progress: bool = True) -> ReferenceSet:
    """The reference features for clips of ``num_frames`` frames at ``fps``, from the cache when the
    clips and the metric version are the ones cached. Each clip is read chunk by chunk, twice on a
    miss -- once to hash, once to extract -- so no clip is ever held whole."""
    prompts = data.prompts(reference.split, reference.start, reference.count)
    content = hashlib.sha256(f"{scorer.version}|{num_frames}|{fps:.6f}|".encode())
    for prompt in prompts:
        content.update(_clip_digest(data.ground_truth_chunks(prompt, num_frames, fps), num_frames))
    digest = content.hexdigest()
    cached = cache_dir / f"{digest}.npz"
    if cached.exists():
        try:
            found = ReferenceSet.load(cached)
        except ValueError as exc:
            print(f"warning: {exc}; rebuilding it from the reference clips", file=sys.stderr)
        else:
            if found.digest == digest and found.clips == len(prompts):
                return found
            print(f"warning: {cached} holds another reference set; rebuilding it from the reference clips",
                  file=sys.stderr)
    bar = tqdm(prompts, desc=f"reference features ({num_frames} frames)", unit="clip", disable=not progress,
               file=sys.stderr)
    result = ReferenceSet([_clip_features(scorer, data.ground_truth_chunks(prompt, num_frames, fps), fps, num_frames)
                           for prompt in bar], digest)
    result.save(cached)
    return result


def aggregate_set_metric(name: str, scorer: Any, records: list[SampleRecord], references: dict[float, ReferenceSet],
                         info: dict[str, Any], *, confidence: float, seed: int) -> list[AggregateRow]:
    """One row per (model, task, clip length) of the finished units that carry features of ``name``.

    ``n`` counts the generated clips (FVD windows) that entered the value; the row's version names
    the reference set (its hash and size), because FVD against another reference is another number.
    """
    groups: dict[tuple, list[np.ndarray]] = defaultdict(list)
    for record in records:
        if record.status == "ok" and name in record.features:
            groups[(record.model, record.task, record.clip_seconds)].append(np.asarray(record.features[name]))
    rows = []
    for (model, task, seconds), per_unit in sorted(groups.items()):
        reference = references[seconds]
        fake_units, real_units = UnitFeatures(per_unit), reference.units
        fake = fake_units.stats()
        group = group_seed(seed, model, task, seconds, name)
        value = scorer.distance(real_units, fake_units, seed=group) if fake.count >= 2 else float("nan")
        estimate = set_interval(
            lambda real_counts, fake_counts, draw_seed: scorer.resampled(real_units, fake_units, real_counts,
                                                                         fake_counts, draw_seed),
            (len(real_units), len(fake_units)), value, confidence=confidence, resamples=scorer.args.bootstrap, seed=group)
        rows.append(AggregateRow(model=model, task=task, clip_seconds=seconds, metric=name, value=value,
                                 ci_low=estimate.low, ci_high=estimate.high, n=fake.count,
                                 higher_is_better=info["higher_is_better"],
                                 metric_version=f"{info['version']}; reference {reference.digest[:12]} "
                                                f"({reference.clips} real clips, {reference.stats.count} windows)",
                                 extractor=info["extractor"]))
    return rows


def feature_dimension(args: dict[str, Any]) -> int:
    """The length of the feature vectors FVD with these options compares (without loading a network
    where the extractor's size is fixed)."""
    from metrics import fvd, i3d, shapes_detector

    parsed = fvd.FvdArgs.model_validate(args)
    if parsed.extractor != "shapes-i3d":
        return i3d.NUM_CLASSES
    checkpoint = shapes_detector.read_checkpoint(
        Path(parsed.weights or shapes_detector.DEFAULT_CHECKPOINT), name=shapes_detector.EXTRACTOR_NAME,
        expected_format=shapes_detector.FORMAT, train_script=shapes_detector.TRAIN_SCRIPT,
        default_path=shapes_detector.DEFAULT_CHECKPOINT)
    return int(checkpoint["config"]["feature_dim"])


def covariance_warnings(suite: Any, prompts: int) -> list[str]:
    """One line per FVD cell of ``suite`` whose generated or reference set will hold fewer feature
    vectors than twice their dimension (a rank-deficient covariance: the value is biased upward)."""
    from vbench_flow.video_io import num_frames_for

    warnings = []
    for spec in suite.metrics:
        if spec.name != "fvd":
            continue
        dim = feature_dimension(spec.args)
        args = FvdArgs.model_validate(spec.args)
        # fvd_inf fits FVD down to its smallest subsample, where 1/N behaviour needs the same margin
        smallest = FVD_INF_FRACTIONS[0] if args.variant == "fvd_inf" else 1.0
        for seconds in suite.clip_seconds:
            frames = num_frames_for(seconds, suite.generation_fps)
            per_clip = len(window_starts(frames, windows=args.windows, count=args.spread_count)) if frames >= 16 else 0
            generated, reference = prompts * len(suite.prompts.seeds) * per_clip, suite.reference.count * per_clip
            if smallest * min(generated, reference) < 2 * dim:
                what = "fvd_inf's smallest subsamples" if smallest < 1 else "the covariance"
                warnings.append(f"fvd at {seconds:g} s: {generated} generated and {reference} reference feature "
                                f"vectors per cell, under {2 / smallest:g} x {dim} dimensions: {what} rank-deficient or "
                                "nearly, and the value biased upward (fvd_inf far off); score more clips or prompts "
                                "(windows: all counts every 16-frame window, windows: spread a number per clip)")
                continue
            distinct = prompts * len(suite.prompts.seeds) * min(per_clip, frames // 16)
            if distinct < 2 * dim:
                warnings.append(f"fvd at {seconds:g} s: the {per_clip} windows of each clip overlap, so the "
                                f"{generated} generated vectors per cell hold only {distinct} windows' worth of distinct "
                                f"frames: the covariance has full rank, but FVD's small-sample bias is nearer that of "
                                f"{distinct} vectors (its interval resamples whole clips, so its width accounts for "
                                "the overlap); more clips would lower it")
    return warnings


# the most draws of a set-level difference: each costs one symmetric eigenvalue problem a side
MAX_SET_LEVEL_RESAMPLES = 500


@dataclass(frozen=True)
class SetDelta:
    """A set-level metric of one group of units minus another's, against one reference set."""

    delta: float
    low: float
    high: float
    n: int
    paired: bool
    draws: int


def set_level_delta(args: dict[str, Any], reference: ReferenceSet, current: dict[tuple[str, int], np.ndarray],
                    baseline: dict[tuple[str, int], np.ndarray], *, confidence: float, resamples: int,
                    seed: int) -> SetDelta:
    """FVD of ``current`` minus FVD of ``baseline`` (per-unit features keyed by (prompt, seed)), both
    against ``reference``, with the percentile interval of :func:`vbench_flow.stats.set_delta`:
    the same units drawn on both sides when the keys pair, independent draws otherwise.
    ValueError when the two sides hold different numbers of units (FVD's bias depends on n)."""
    if len(current) != len(baseline):
        raise ValueError(f"n differs: {len(current)} clips against {len(baseline)}")
    fvd_args = FvdArgs.model_validate(args)
    cur_keys, base_keys = sorted(current), sorted(baseline)
    cur_units = UnitFeatures([current[k] for k in cur_keys])
    base_units = UnitFeatures([baseline[k] for k in base_keys])

    def value(units: UnitFeatures) -> float:
        return set_distance(reference.units, units, variant=fvd_args.variant, estimator=fvd_args.estimator, seed=seed)

    def draws_of(units: UnitFeatures):  # every draw's value at once (batched symmetric eigenvalue problems)
        return lambda counts: set_distances(reference.units, units, None, counts, variant=fvd_args.variant,
                                            estimator=fvd_args.estimator, seed=seed)

    delta = value(cur_units) - value(base_units)
    paired, n = cur_keys == base_keys, len(cur_keys)
    low, high, draws = set_delta(draws_of(cur_units), draws_of(base_units), n, value=delta, paired=paired,
                                 confidence=confidence, resamples=min(resamples, MAX_SET_LEVEL_RESAMPLES), seed=seed)
    return SetDelta(float(delta), float(low), float(high), n, paired, draws)
