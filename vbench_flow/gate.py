"""Gating: does a run regress against a baseline, beyond each metric's margin, with confidence?

``vbf gate RUN --baseline BASELINE`` compares one run with a baseline (another run in the store,
or a committed baseline file written by ``--update-baseline``) and gives one verdict per
(model, task, clip length, metric).

Pairing and the interval
------------------------
Units are keyed by ``(model, task, clip_seconds, prompt_id, seed)``. For each group
(model, task, clip length, metric), with ``C`` and ``B`` the units of the run and of the baseline
that have a finite value:

* **paired** when ``C == B`` (every unit has its partner): ``delta_i = current_i - baseline_i``,
  and the interval is a bootstrap of the mean paired delta, resampling the pairs.
  When some prompt has several seeds, its pairs are resampled together (a cluster bootstrap over
  prompts, as :mod:`vbench_flow.aggregate` does: seeds of one prompt are not independent samples);
  with one seed per prompt this is exactly resampling pairs.
* **unpaired** when ``C`` and ``B`` share no unit but have the same prompts and the same number of
  units (the same suite rerun with a different seed set): the interval is a bootstrap of
  ``mean(current) - mean(baseline)`` that resamples the two sides independently (again by prompt).
  This is deliberately conservative: the spread between prompts counts against both sides, although
  with the same prompts it cancels in the difference of means, so the interval is wider than the
  seed noise alone. A rerun with new seeds therefore gives ``pass`` or ``inconclusive``; only a
  change larger than the prompt-to-prompt spread can show as ``regress``. (Resampling seeds within
  each prompt would be tighter but, with one seed per prompt, has no variance at all and would
  turn seed noise into false regressions.)
* anything else is ``not comparable`` (some but not all units pair, the prompts differ, or ``n``
  differs).

Intervals come from :mod:`vbench_flow.stats` (per-sample deltas: expanded percentile intervals;
FVD deltas: the percentile interval of resampled differences; each coverage-tested in tests/test_stats.py) at the suite's ``gate.confidence`` with ``gate.resamples`` resamples, seeded from
the suite seed and the group (:func:`vbench_flow.stats.group_seed`), so a verdict is reproducible. Fewer than two resampling units (prompts) give no interval (NaN).

The verdict rule
----------------
Orient the interval so that positive means better: ``[lo, hi] = [ci_low, ci_high]`` when higher is
better, ``[-ci_high, -ci_low]`` when lower is better. With the metric's margin ``m >= 0``:

* ``regress``       when ``hi < -m``: worse than the margin, with confidence;
* ``pass``          when ``lo >= -m``: cannot be worse than the margin (a change of exactly the
  margin is not "beyond" it; identical runs pass even with ``m = 0``);
* ``inconclusive``  otherwise, and when there is no interval.

Before that, a group is ``not comparable`` (with its reason) when the metric's version or extractor
differs, the frame size of the model's scored clips or the generation fps differs, the metric or group is missing
on one side, or the units do not pair as above. A metric with no ``margin`` in the suite is
compared and reported with verdict ``not gated``; it never affects the exit code.

Set-level metrics (FVD)
-----------------------
FVD has one value per group, from the per-clip features every unit stores. The gate resamples
those features: each draw takes units with replacement (the same (prompt, seed) draws on both
sides when the units pair, independent draws otherwise), recomputes FVD of both sides against
their fixed reference statistics (the variant the run used: FVD or FVD_inf), and the interval is
the percentile interval of the differences (:func:`vbench_flow.set_metrics.set_level_delta`; at most 500 draws,
each one symmetric eigenvalue problem a side for plain FVD: the reference is decomposed once). Beyond the checks above, FVD is
``not comparable`` when the two sides used different reference clips (their content hashes
differ), a different number of generated clips, or when either side lacks stored features.

Exit codes (``vbf gate``)
-------------------------
0 every gated metric passes (``inconclusive`` counts as a pass unless ``--strict`` /
``gate.strict``; ``not comparable`` metrics are reported and skipped); 1 at least one ``regress``;
2 evaluation error: the run is not complete (failed or missing units); 3 under strict, some gated
metric is ``inconclusive`` or ``not comparable``; 4 configuration error: unknown run, missing or
malformed baseline file, a baseline run that is not complete, no metric has a margin, or every
gated metric is ``not comparable`` (nothing was actually gated). Precedence: 2, then 1, then 4,
then 3. JUnit XML (``--junit``) has one testcase per gated metric: a failure for ``regress`` (and,
under strict, for ``inconclusive`` / ``not comparable``), skipped with the reason otherwise.

Static models
-------------
A consistency metric (one with a ``motion_counterpart``, e.g. flicker -> motion_magnitude) improves
for free when the model stops moving. When the run's mean of the counterpart for a (model, task,
clip length) is more than ``report.static_margin`` (relative, default 0.05) below the baseline's, the
comparison carries the reason in ``static``; an improvement (PASS with the whole interval on the
better side of 0) then reads "static: not a win" in the markdown row and the JUnit testcase's
system-out (and a ``static`` property). Verdicts and the exit code do not change: a regression
stays a regression.

Baseline files
--------------
JSON (``suites/baselines/<suite>.json`` by default), written deliberately by
``vbf gate RUN --update-baseline``::

    {"format": "vbench-flow gate baseline", "format_version": 2,
     "suite": "smoke", "variant": null, "run_id": "...", "created": "...", "config_hash": "...",
     "seed": 0, "resolutions": {"real": "64x64"}, "fps": 8.0,
     "metrics": {"flicker": {"version": "...", "extractor": "...", "higher_is_better": true}},
     "units": [{"model": "real", "task": "t2v", "clip_seconds": 5.0, "prompt_id": "test-000000",
                "seed": 0, "metrics": {"flicker": 0.981}}, ...],
     "aggregates": [{"model": "real", "task": "t2v", "clip_seconds": 5.0, "metric": "flicker",
                     "value": 0.98, "n": 6}, ...]}

Values are stored with full float precision (JSON repr), so gating against the file gives exactly
what gating against the run gives.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from vbench_flow.motion_check import moves_too_little, real_clip_model, suite_static_margin
from vbench_flow.errors import ConfigError, EvaluationError
from vbench_flow.prompts import resolve_relative
from vbench_flow.set_metrics import ReferenceSet, set_level_delta
from vbench_flow.stats import group_seed, paired_delta, unpaired_delta

PASS, REGRESS, INCONCLUSIVE, NOT_COMPARABLE, NOT_GATED = "pass", "regress", "inconclusive", "not comparable", "not gated"
BASELINE_FORMAT = "vbench-flow gate baseline"


# ---------------------------------------------------------------- what is compared

@dataclass
class MetricComparison:
    model: str
    task: str
    clip_seconds: float
    metric: str
    value: float
    baseline_value: float
    delta: float
    ci_low: float
    ci_high: float
    n: int
    paired: bool
    higher_is_better: bool
    margin: float | None
    verdict: str
    reason: str
    # the run's model moves far less than the baseline's here (its motion counterpart more than
    # report.static_margin below): why, or None. An improvement of a consistency metric is then no win.
    static: str | None = None

    @property
    def gated(self) -> bool:
        return self.margin is not None

    @property
    def improved(self) -> bool:
        """Better than the baseline with confidence: the whole interval on the better side of 0."""
        if self.verdict not in (PASS, NOT_GATED) or math.isnan(self.ci_low) or math.isnan(self.ci_high):
            return False
        return self.ci_low > 0 if self.higher_is_better else self.ci_high < 0

    @property
    def static_not_a_win(self) -> bool:
        """An improvement that only comes from not moving (a regression is never hidden by this)."""
        return self.static is not None and self.improved

    @property
    def where(self) -> str:
        return f"{self.model}, {self.task}, {self.clip_seconds:g} s"

    def describe(self, confidence: float | None = None) -> str:
        """One line: metric, model, task, clip length, delta and interval, verdict and why."""
        level = f"{confidence:.0%} " if confidence else ""
        direction = "higher is better" if self.higher_is_better else "lower is better"
        margin = "no margin" if self.margin is None else f"margin {self.margin:g}"
        if math.isnan(self.delta):
            numbers = ""
        else:
            numbers = (f": {_num(self.baseline_value)} -> {_num(self.value)}, delta {_signed(self.delta)} "
                       f"[{level}CI {_num(self.ci_low)}, {_num(self.ci_high)}] ({direction}, {margin})")
        return f"{self.verdict.upper()} {self.metric} ({self.where}){numbers}: {self.reason}"


@dataclass
class GateSide:
    """One side of a comparison, from a run in the store or from a baseline file."""

    label: str
    suite: str
    variant: str | None
    run_id: str
    seed: int
    resolutions: dict[str, str]  # model -> "WxH" of the clips it scored (several sizes: "WxH, WxH")
    fps: float
    metric_info: dict[str, dict[str, Any]]
    samples: pd.DataFrame  # model, task, clip_seconds, prompt_id, seed, metric, value
    aggregates: pd.DataFrame  # model, task, clip_seconds, metric, value, n
    config: dict[str, Any] = field(default_factory=dict)
    config_hash: str | None = None
    suite_path: str | None = None
    # set-level metrics: (model, task, clip_seconds, metric) -> {(prompt_id, seed): (clips, D) features}
    features: dict[tuple[str, str, float, str], dict[tuple[str, int], np.ndarray]] = field(default_factory=dict)
    # (metric, clip_seconds) -> the reference clips' features and their content hash
    references: dict[tuple[str, float], ReferenceSet] = field(default_factory=dict)
    # metric -> the options it ran with (runs recorded since the store kept them; not in baseline files)
    metric_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    # metric -> its motion counterpart (runs recorded since the store kept them; not in baseline files)
    motion_counterparts: dict[str, str] = field(default_factory=dict)

    def values(self, model: str, task: str, clip_seconds: float, metric: str) -> dict[tuple[str, int], float]:
        s = self.samples
        rows = s[(s["model"] == model) & (s["task"] == task) & (s["clip_seconds"] == clip_seconds) & (s["metric"] == metric)]
        return {(str(r.prompt_id), int(r.seed)): float(r.value) for r in rows.itertuples(index=False)
                if r.value is not None and np.isfinite(r.value)}

    def mean_value(self, model: str, task: str, clip_seconds: float, metric: str) -> float:
        """The mean of the per-sample values, else the group value of a set-level metric, else NaN."""
        values = self.values(model, task, clip_seconds, metric)
        if values:
            return float(np.mean(list(values.values())))
        a = self.aggregates
        rows = a[(a["model"] == model) & (a["task"] == task) & (a["clip_seconds"] == clip_seconds) & (a["metric"] == metric)]
        return float(rows["value"].iloc[0]) if len(rows) and pd.notna(rows["value"].iloc[0]) else math.nan

    def kind(self, model: str, task: str, clip_seconds: float, metric: str) -> str | None:
        """'per_sample' (values per unit), 'set_level' (only a group value), or None (absent)."""
        s, a = self.samples, self.aggregates
        if ((s["model"] == model) & (s["task"] == task) & (s["clip_seconds"] == clip_seconds) & (s["metric"] == metric)).any():
            return "per_sample"
        if ((a["model"] == model) & (a["task"] == task) & (a["clip_seconds"] == clip_seconds) & (a["metric"] == metric)).any():
            return "set_level"
        return None

    def keys(self) -> set[tuple[str, str, float, str]]:
        cols = ["model", "task", "clip_seconds", "metric"]
        out = set()
        for frame in (self.samples, self.aggregates):
            out |= {(str(m), str(t), float(c), str(x)) for m, t, c, x in frame[cols].itertuples(index=False)}
        return out


SAMPLE_COLUMNS = ["model", "task", "clip_seconds", "prompt_id", "seed", "metric", "value"]
AGGREGATE_COLUMNS = ["model", "task", "clip_seconds", "metric", "value", "n"]


def _generation_fps(config: dict[str, Any]) -> float:
    data = config.get("data") or {}
    return float(config.get("fps") or data.get("fps") or 8.0)


def scored_resolutions(units: pd.DataFrame) -> dict[str, str]:
    """Model -> the frame size(s) of its finished clips, as scored ("WxH"; several joined by ", ").
    Units stored before sizes were recorded have none and are left out."""
    if units.empty or "width" not in units:
        return {}
    sized = units[(units["status"] == "ok") & units["width"].notna() & units["height"].notna()]
    return {str(model): ", ".join(sorted({f"{int(w)}x{int(h)}" for w, h in zip(group["width"], group["height"])}))
            for model, group in sized.groupby("model")}


def side_from_run(store: Any, run_id: str) -> GateSide:
    run = store.run(run_id)  # ConfigError naming recent runs when unknown
    config = run["config"] or {}
    fps = _generation_fps(config)
    resolutions = scored_resolutions(store.units(run_id))
    samples = store.sample_metrics(run_id)
    samples = samples[SAMPLE_COLUMNS].astype({"clip_seconds": float, "seed": int, "value": float}) if not samples.empty \
        else pd.DataFrame(columns=SAMPLE_COLUMNS)
    aggregates = store.aggregates([run_id])
    aggregates = aggregates[AGGREGATE_COLUMNS].astype({"clip_seconds": float}) if not aggregates.empty \
        else pd.DataFrame(columns=AGGREGATE_COLUMNS)
    stored = store.metric_info(run_id).to_dict("records")
    info = {r["metric"]: {"version": r["version"], "extractor": r["extractor"], "higher_is_better": bool(r["higher_is_better"])}
            for r in stored}
    metric_args = {r["metric"]: json.loads(r["args"]) for r in stored if r.get("args")}
    counterparts = {r["metric"]: r["motion_counterpart"] for r in stored
                    if isinstance(r.get("motion_counterpart"), str) and r["motion_counterpart"]}
    features, references = _set_level_from_run(store, run_id, run)
    return GateSide(label=f"run {run_id}", suite=run["suite"], variant=run["variant"], run_id=run_id,
                    seed=int(run["seed"] or 0), resolutions=resolutions, fps=fps, metric_info=info, samples=samples,
                    aggregates=aggregates, config=config, config_hash=run.get("config_hash"), suite_path=run.get("suite_path"),
                    features=features, references=references, metric_args=metric_args,
                    motion_counterparts=counterparts)


def _load_reference(path: Path, run: dict[str, Any]) -> ReferenceSet:
    try:
        return ReferenceSet.load(path)
    except ValueError as exc:
        raise ConfigError(str(exc), where=f"run {run['run_id']}",
                          fix=f"`vbf run {run.get('suite_path') or 'SUITE'} --resume --run-id {run['run_id']}` "
                              "writes it again from the reference clips") from None


def _set_level_from_run(store: Any, run_id: str, run: dict[str, Any]) -> tuple[dict, dict]:
    """Per-unit features and reference sets of a run's set-level metrics (FVD)."""
    sets = store.reference_sets(run_id)
    references = {(r["metric"], float(r["clip_seconds"])): _load_reference(Path(run["run_dir"]) / r["path"], run)
                  for r in sets.to_dict("records") if (Path(run["run_dir"]) / r["path"]).is_file()}
    units = store.units(run_id).set_index("unit_id")
    features: dict[tuple, dict[tuple[str, int], np.ndarray]] = {}
    for metric in sorted(set(sets["metric"])) if not sets.empty else []:
        for unit_id, values in store.sample_features(run_id, metric).items():
            u = units.loc[unit_id]
            key = (str(u["model"]), str(u["task"]), float(u["clip_seconds"]), metric)
            features.setdefault(key, {})[(str(u["prompt_id"]), int(u["seed"]))] = values
    return features, references


# ---------------------------------------------------------------- per-metric comparators

@dataclass(frozen=True)
class GateSettings:
    confidence: float
    resamples: int
    seed: int


Comparator = Callable[[GateSide, GateSide, tuple[str, str, float, str], float | None, bool, GateSettings], MetricComparison]


def _comparison(key: tuple[str, str, float, str], *, higher_is_better: bool, margin: float | None, verdict: str,
                reason: str, value: float = math.nan, baseline_value: float = math.nan, delta: float = math.nan,
                ci: tuple[float, float] = (math.nan, math.nan), n: int = 0, paired: bool = False) -> MetricComparison:
    model, task, clip_seconds, metric = key
    return MetricComparison(model=model, task=task, clip_seconds=clip_seconds, metric=metric, value=value,
                            baseline_value=baseline_value, delta=delta, ci_low=ci[0], ci_high=ci[1], n=n, paired=paired,
                            higher_is_better=higher_is_better, margin=margin, verdict=verdict, reason=reason)


def verdict_for(ci_low: float, ci_high: float, *, higher_is_better: bool, margin: float | None,
                confidence: float) -> tuple[str, str]:
    """The verdict rule (see the module docstring) for a raw interval of current - baseline."""
    if margin is None:
        return NOT_GATED, "no margin in the suite: reported, not gated"
    if math.isnan(ci_low) or math.isnan(ci_high):
        return INCONCLUSIVE, "no interval (fewer than 2 prompts)"
    low, high = (ci_low, ci_high) if higher_is_better else (-ci_high, -ci_low)
    if high < -margin:
        return REGRESS, f"worse than the margin {margin:g} with {confidence:.0%} confidence"
    if low >= -margin:
        return PASS, f"not worse than the margin {margin:g} with {confidence:.0%} confidence"
    return INCONCLUSIVE, f"the interval straddles the margin {margin:g}: more prompts or seeds would decide"


def compare_per_sample(current: GateSide, baseline: GateSide, key: tuple[str, str, float, str], margin: float | None,
                       higher_is_better: bool, settings: GateSettings) -> MetricComparison:
    cur, base = current.values(*key), baseline.values(*key)
    common = cur.keys() & base.keys()
    if not cur or not base:
        side = "run" if not cur else "baseline"
        return _comparison(key, higher_is_better=higher_is_better, margin=margin, verdict=NOT_COMPARABLE,
                           reason=f"no finite per-sample values in the {side}")
    seed = group_seed(settings.seed, *key)
    if common and len(common) == len(cur) == len(base):
        units = sorted(common)
        c = np.array([cur[u] for u in units])
        b = np.array([base[u] for u in units])
        prompts = np.array([u[0] for u in units])
        several = len(set(prompts)) < len(units)
        delta, low, high = paired_delta(c, b, confidence=settings.confidence, resamples=settings.resamples,
                                        seed=seed, clusters=prompts if several else None)
        how = f"paired over {len(units)} units" + (f" ({len(set(prompts))} prompts resampled)" if several else "")
        paired, n = True, len(units)
    elif not common and {u[0] for u in cur} == {u[0] for u in base} and len(cur) == len(base):
        cu, bu = sorted(cur), sorted(base)
        c, b = np.array([cur[u] for u in cu]), np.array([base[u] for u in bu])
        cp, bp = np.array([u[0] for u in cu]), np.array([u[0] for u in bu])
        several = len(set(cp)) < len(cu) or len(set(bp)) < len(bu)
        delta, low, high = unpaired_delta(c, b, confidence=settings.confidence, resamples=settings.resamples,
                                          seed=seed, current_clusters=cp if several else None,
                                          baseline_clusters=bp if several else None)
        seeds_c, seeds_b = sorted({u[1] for u in cu}), sorted({u[1] for u in bu})
        how = f"unpaired (no common (prompt, seed) units: seeds {seeds_c} vs {seeds_b}; {len(cu)} units each)"
        paired, n = False, len(cu)
    else:
        if common:
            why = f"only {len(common)} units pair; the run has {len(cur)} and the baseline {len(base)}"
        elif len(cur) != len(base):
            why = f"n differs: {len(cur)} units in the run, {len(base)} in the baseline, none paired"
        else:
            why = "no (prompt, seed) units in common and the prompts differ"
        return _comparison(key, higher_is_better=higher_is_better, margin=margin, verdict=NOT_COMPARABLE, reason=why,
                           n=len(cur), value=float(np.mean(list(cur.values()))),
                           baseline_value=float(np.mean(list(base.values()))))
    verdict, why = verdict_for(low, high, higher_is_better=higher_is_better, margin=margin, confidence=settings.confidence)
    return _comparison(key, higher_is_better=higher_is_better, margin=margin, verdict=verdict, reason=f"{why}; {how}",
                       value=float(c.mean()), baseline_value=float(b.mean()), delta=delta, ci=(low, high), n=n, paired=paired)


def compare_set_level(current: GateSide, baseline: GateSide, key: tuple[str, str, float, str], margin: float | None,
                      higher_is_better: bool, settings: GateSettings) -> MetricComparison:
    """FVD by feature resampling (see the module docstring)."""
    metric, seconds = key[3], key[2]
    values = dict(value=current.mean_value(*key), baseline_value=baseline.mean_value(*key))

    def refuse(reason: str) -> MetricComparison:
        return _comparison(key, higher_is_better=higher_is_better, margin=margin, verdict=NOT_COMPARABLE,
                           reason=reason, **values)

    cur, base = current.features.get(key), baseline.features.get(key)
    cur_ref, base_ref = current.references.get((metric, seconds)), baseline.references.get((metric, seconds))
    if not cur or not base or cur_ref is None or base_ref is None:
        side = "run" if not cur or cur_ref is None else "baseline"
        return refuse(f"the {side} has no stored per-clip features or reference set for {metric}")
    if cur_ref.digest != base_ref.digest:
        return refuse(f"different reference clips (content hash {cur_ref.digest[:12]} vs baseline {base_ref.digest[:12]})")
    if metric not in current.metric_args:
        return refuse(f"the run did not record the options {metric} ran with (older runs do not); re-run it")
    if len(cur) != len(base):
        return refuse(f"n differs: {len(cur)} clips in the run, {len(base)} in the baseline")
    found = set_level_delta(current.metric_args[metric], cur_ref, cur, base, confidence=settings.confidence,
                            resamples=settings.resamples, seed=group_seed(settings.seed, *key))
    delta, low, high, n, paired, draws = (found.delta, found.low, found.high, found.n, found.paired, found.draws)
    verdict, why = verdict_for(float(low), float(high), higher_is_better=higher_is_better, margin=margin,
                               confidence=settings.confidence)
    how = (f"features resampled {'in pairs' if paired else 'independently'} over {n} units, {draws} draws, "
           f"reference {cur_ref.digest[:12]}")
    return _comparison(key, higher_is_better=higher_is_better, margin=margin, verdict=verdict, reason=f"{why}; {how}",
                       delta=delta, ci=(float(low), float(high)), n=n, paired=paired, **values)


# Dispatch on what kind of values a metric has.
COMPARATORS: dict[str, Comparator] = {"per_sample": compare_per_sample, "set_level": compare_set_level}


def _not_comparable_reason(current: GateSide, baseline: GateSide, key: tuple[str, str, float, str]) -> str | None:
    model, task, clip_seconds, metric = key
    cur_info, base_info = current.metric_info.get(metric), baseline.metric_info.get(metric)
    cur_kind, base_kind = current.kind(*key), baseline.kind(*key)
    if cur_kind is None:
        return f"not measured in the run (the baseline has {metric} for {model}, {task}, {clip_seconds:g} s)"
    if base_kind is None:
        return "not in the baseline (a new metric or group: update the baseline)"
    if cur_info and base_info:
        if cur_info["extractor"] != base_info["extractor"]:
            return f"extractor differs: {cur_info['extractor']!r} vs baseline {base_info['extractor']!r}"
        if cur_info["version"] != base_info["version"]:
            return f"metric version differs: {cur_info['version']!r} vs baseline {base_info['version']!r}"
    size, base_size = current.resolutions.get(model), baseline.resolutions.get(model)
    if size is None or base_size is None:
        return (f"the frame size of {model}'s clips is not recorded in the "
                f"{'run' if size is None else 'baseline'} (made by an older vbench-flow: rerun it or update the baseline)")
    if size != base_size:
        return f"frame size differs: {size} vs baseline {base_size}"
    if current.fps != baseline.fps:
        return f"fps differs: {current.fps:g} vs baseline {baseline.fps:g}"
    return None


def suite_margins(config: dict[str, Any]) -> dict[str, float]:
    """Per-metric margins from a resolved suite config (metrics without one are not gated)."""
    return {m["name"]: float(m["margin"]) for m in config.get("metrics") or [] if m.get("margin") is not None}



def static_reason(current: GateSide, baseline: GateSide, key: tuple[str, str, float, str],
                  static_margin: float) -> str | None:
    """Why the run's model is static in this group, as the report decides it: its metric's motion
    counterpart (mean over the model's clips of this task and clip length) is more than
    ``static_margin`` (relative) below the real clips' of the same run; None when not static, when
    the metric has no counterpart, or when the run has no real clips or no such values."""
    model, task, clip_seconds, metric = key
    counterpart = current.motion_counterparts.get(metric) or baseline.motion_counterparts.get(metric)
    real = real_clip_model(current.config)
    if not counterpart or real is None or real == model:
        return None
    motion = current.mean_value(model, task, clip_seconds, counterpart)
    reference = current.mean_value(real, task, clip_seconds, counterpart)
    if not moves_too_little(motion, reference, static_margin):
        return None
    return (f"moves {_num(motion)} vs real {_num(reference)} ({counterpart}, more than {static_margin:.0%} less): "
            f"a better {metric} is no win")


def compare_sides(current: GateSide, baseline: GateSide, *, margins: dict[str, float] | None = None,
                  confidence: float = 0.95, resamples: int = 1000, seed: int = 0,
                  static_margin: float | None = None) -> list[MetricComparison]:
    """One comparison per (model, task, clip length, metric) on either side, sorted. A comparison
    whose run side moves far less than the baseline (:func:`static_reason`; ``static_margin`` from the
    run's suite ``report.static_margin`` when None) carries why in ``static``."""
    margins = suite_margins(current.config) if margins is None else margins
    static_margin = suite_static_margin(current.config) if static_margin is None else static_margin
    settings = GateSettings(confidence, resamples, seed)
    out = []
    for key in sorted(current.keys() | baseline.keys()):
        metric = key[3]
        info = current.metric_info.get(metric) or baseline.metric_info.get(metric) or {}
        higher_is_better = bool(info.get("higher_is_better", True))
        margin = margins.get(metric)
        reason = _not_comparable_reason(current, baseline, key)
        if reason is not None:  # still show both sides' values, for reading
            out.append(_comparison(key, higher_is_better=higher_is_better, margin=margin, verdict=NOT_COMPARABLE,
                                   reason=reason, value=current.mean_value(*key), baseline_value=baseline.mean_value(*key),
                                   n=len(current.values(*key))))
            continue
        kinds = {current.kind(*key), baseline.kind(*key)}
        kind = "set_level" if "set_level" in kinds else "per_sample"
        comparison = COMPARATORS[kind](current, baseline, key, margin, higher_is_better, settings)
        if comparison.verdict != NOT_COMPARABLE:
            comparison.static = static_reason(current, baseline, key, static_margin)
        out.append(comparison)
    return out


def compare_runs(store: Any, run_id: str, baseline_run_id: str, *, margins: dict[str, float] | None = None,
                 confidence: float = 0.95, resamples: int = 1000, seed: int = 0) -> list[MetricComparison]:
    """Compare two runs in ``store``. ``margins=None`` takes the margins from the run's suite;
    a dict gates exactly the metrics it names."""
    return compare_sides(side_from_run(store, run_id), side_from_run(store, baseline_run_id), margins=margins,
                         confidence=confidence, resamples=resamples, seed=seed)


# ---------------------------------------------------------------- baseline files

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _FileMetric(_Strict):
    version: str
    extractor: str
    higher_is_better: bool


class _FileUnit(_Strict):
    model: str
    task: str
    clip_seconds: float
    prompt_id: str
    seed: int
    metrics: dict[str, float | None]
    features: dict[str, list[list[float]]] = {}


class _FileReference(_Strict):
    metric: str
    clip_seconds: float
    digest: str
    counts: list[int]
    features: list[list[float]]


class _FileAggregate(_Strict):
    model: str
    task: str
    clip_seconds: float
    metric: str
    value: float | None
    n: int


class BaselineFile(_Strict):
    format: Literal["vbench-flow gate baseline"]
    format_version: Literal[2]
    suite: str
    variant: str | None = None
    run_id: str
    created: str
    config_hash: str | None = None
    seed: int
    resolutions: dict[str, str]
    fps: float
    metrics: dict[str, _FileMetric]
    units: list[_FileUnit]
    aggregates: list[_FileAggregate]
    references: list[_FileReference] = []


def _finite_or_none(value: Any) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def baseline_document(side: GateSide) -> dict[str, Any]:
    from vbench_flow.store import utc_now

    units: dict[tuple, dict[str, Any]] = {}
    for r in side.samples.sort_values(["model", "task", "clip_seconds", "prompt_id", "seed", "metric"]).itertuples(index=False):
        key = (r.model, r.task, float(r.clip_seconds), r.prompt_id, int(r.seed))
        units.setdefault(key, {"model": r.model, "task": r.task, "clip_seconds": float(r.clip_seconds),
                               "prompt_id": r.prompt_id, "seed": int(r.seed), "metrics": {}})["metrics"][r.metric] = _finite_or_none(r.value)
    for (model, task, seconds, metric), per_unit in sorted(side.features.items()):
        for (prompt_id, seed), values in sorted(per_unit.items()):
            unit = units.setdefault((model, task, seconds, prompt_id, seed), {
                "model": model, "task": task, "clip_seconds": seconds, "prompt_id": prompt_id, "seed": seed, "metrics": {}})
            unit.setdefault("features", {})[metric] = np.asarray(values).tolist()
    references = [{"metric": metric, "clip_seconds": seconds, "digest": ref.digest,
                   "counts": [len(f) for f in ref.features], "features": np.concatenate(ref.features).tolist()}
                  for (metric, seconds), ref in sorted(side.references.items())]
    aggregates = [{"model": r.model, "task": r.task, "clip_seconds": float(r.clip_seconds), "metric": r.metric,
                   "value": _finite_or_none(r.value), "n": int(r.n)} for r in side.aggregates.itertuples(index=False)]
    doc = {"format": BASELINE_FORMAT, "format_version": 2, "suite": side.suite, "variant": side.variant,
           "run_id": side.run_id, "created": utc_now(), "config_hash": side.config_hash, "seed": side.seed,
           "resolutions": dict(sorted(side.resolutions.items())), "fps": side.fps,
           "metrics": {name: dict(info) for name, info in sorted(side.metric_info.items())},
           "units": list(units.values()), "aggregates": aggregates, "references": references}
    BaselineFile.model_validate(doc)  # what is written can be read back
    return doc


def write_baseline(side: GateSide, path: Path) -> dict[str, Any]:
    doc = baseline_document(side)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    tmp.replace(path)
    return doc


def side_from_file(path: Path) -> GateSide:
    fix = "write it with `vbf gate RUN --update-baseline`"
    if not path.is_file():
        raise ConfigError(f"baseline file not found: {path}", where="--baseline", fix=fix + ", or pass a run id")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid JSON: {exc}", where=str(path), fix=fix) from None
    if isinstance(raw, dict) and raw.get("format") == BASELINE_FORMAT and raw.get("format_version") == 1:
        raise ConfigError("a version-1 baseline records the suite's data.size, not the frame size of the clips "
                          "actually scored, so it cannot be trusted to refuse clips of another size",
                          where=str(path), fix="rewrite it from a run: `vbf gate RUN --update-baseline`")
    try:
        doc = BaselineFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()[:5])
        more = f" (and {len(exc.errors()) - 5} more)" if len(exc.errors()) > 5 else ""
        raise ConfigError(f"not a vbench-flow baseline file: {problems}{more}", where=str(path), fix=fix) from None
    rows = [(u.model, u.task, u.clip_seconds, u.prompt_id, u.seed, metric, math.nan if v is None else v)
            for u in doc.units for metric, v in u.metrics.items()]
    samples = pd.DataFrame(rows, columns=SAMPLE_COLUMNS).astype({"clip_seconds": float, "value": float})
    aggregates = pd.DataFrame([(a.model, a.task, a.clip_seconds, a.metric, math.nan if a.value is None else a.value, a.n)
                               for a in doc.aggregates], columns=AGGREGATE_COLUMNS)
    features: dict[tuple, dict[tuple[str, int], np.ndarray]] = {}
    for u in doc.units:
        for metric, values in u.features.items():
            features.setdefault((u.model, u.task, u.clip_seconds, metric), {})[(u.prompt_id, u.seed)] = \
                np.asarray(values, dtype=np.float64)
    references = {(r.metric, r.clip_seconds): ReferenceSet(
        np.split(np.asarray(r.features, dtype=np.float64), np.cumsum(r.counts)[:-1]), r.digest) for r in doc.references}
    return GateSide(label=f"baseline file {path}", suite=doc.suite, variant=doc.variant, run_id=doc.run_id, seed=doc.seed,
                    resolutions=doc.resolutions, fps=doc.fps,
                    metric_info={k: v.model_dump() for k, v in doc.metrics.items()}, samples=samples,
                    aggregates=aggregates, config_hash=doc.config_hash, features=features, references=references)


def default_baseline_path(run: dict[str, Any]) -> Path:
    """``gate.baseline`` of the run's suite when it names a file, else ``<suite dir>/baselines/<suite>.json``."""
    suite_dir = Path(run["suite_path"]).parent if run.get("suite_path") else Path("suites")
    configured = ((run.get("config") or {}).get("gate") or {}).get("baseline")
    if configured and _looks_like_file(configured):
        return resolve_relative(configured, suite_dir)
    name = run["suite"] + (f".{run['variant']}" if run.get("variant") else "")
    return suite_dir / "baselines" / f"{name}.json"


def _looks_like_file(ref: str) -> bool:
    return ref.endswith(".json") or "/" in ref or "\\" in ref


def _has_run(store: Any, run_id: str) -> bool:
    return not store._frame("SELECT run_id FROM runs WHERE run_id=?", (run_id,)).empty


def resolve_baseline(store: Any, run: dict[str, Any], given: str | None) -> GateSide:
    """The baseline side: ``given`` (a file relative to the working folder, or a run id), else the
    suite's ``gate.baseline`` (a file relative to the suite file, or a run id), else the default file."""
    suite_dir = Path(run["suite_path"]).parent if run.get("suite_path") else Path(".")
    if given is not None:
        ref, base_dir, where = given, Path("."), "--baseline"
    else:
        configured = ((run.get("config") or {}).get("gate") or {}).get("baseline")
        if configured:
            ref, base_dir, where = configured, suite_dir, "gate.baseline"
        else:
            path = default_baseline_path(run)
            if not path.is_file():
                raise ConfigError(f"no baseline for run {run['run_id']!r}: --baseline not given, the suite has no "
                                  f"gate.baseline, and {path} does not exist", where="vbf gate",
                                  fix="pass --baseline RUN_ID_OR_FILE, or write one with `vbf gate RUN --update-baseline`")
            return side_from_file(path)
    path = resolve_relative(ref, base_dir)
    if path.is_file():
        return side_from_file(path)
    if _looks_like_file(ref):
        raise ConfigError(f"baseline file not found: {path}", where=where,
                          fix="check the path, or write it with `vbf gate RUN --update-baseline --baseline PATH`")
    if not _has_run(store, ref):
        raise ConfigError(f"baseline {ref!r} is neither a run in {store.path} nor a file ({path} does not exist)",
                          where=where, fix="`vbf runs ls` lists the runs; baseline files end in .json")
    base_run = store.run(ref)
    if base_run["status"] != "complete":
        raise ConfigError(f"baseline run {ref!r} is {base_run['status']} ({base_run['done']}/{base_run['expected']} units done, "
                          f"{base_run['failed']} failed)", where=where, fix="gate against a complete run")
    return side_from_run(store, ref)


def check_complete(run: dict[str, Any]) -> None:
    """Gating (and writing a baseline from) a run needs every unit scored."""
    if run["status"] != "complete" or (run["failed"] or 0) > 0 or (run["done"] or 0) != (run["expected"] or 0):
        raise EvaluationError(
            f"run {run['run_id']!r} is {run['status']}: {run['done']}/{run['expected']} units done, {run['failed']} failed; "
            "gating needs a complete run", where="vbf gate",
            fix=f"finish it with `vbf run SUITE --resume --run-id {run['run_id']}` (add --retry-failed for failed units)")


def check_gated_metrics_scored(store: Any, run: dict[str, Any]) -> None:
    """A gated metric that could not score some clips is an evaluation error, not a pass: the
    missing clips would otherwise only make the group 'not comparable'."""
    gated = set(suite_margins(run["config"] or {}))
    errors = store.metric_errors(run["run_id"])
    errors = errors[errors["metric"].isin(gated)] if not errors.empty else errors
    if not errors.empty:
        first = errors.iloc[0]
        raise EvaluationError(
            f"gated metric(s) {', '.join(sorted(set(errors['metric'])))} have no value for {len(errors)} clip(s) of run "
            f"{run['run_id']!r}, e.g. {first['unit_id']}: {first['error'].splitlines()[0]}", where="vbf gate",
            fix="fix what the metric needs (see the report's failures), or drop its margin from the suite")


# ---------------------------------------------------------------- the decision

@dataclass
class GateDecision:
    exit_code: int
    headline: str
    lines: list[str]


def decide(comparisons: list[MetricComparison], *, strict: bool, confidence: float) -> GateDecision:
    gated = [c for c in comparisons if c.gated]
    counts = {v: sum(c.verdict == v for c in gated) for v in (PASS, REGRESS, INCONCLUSIVE, NOT_COMPARABLE)}
    tally = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    regressions = [c for c in gated if c.verdict == REGRESS]
    if regressions:
        return GateDecision(1, f"FAIL: {len(regressions)} regression(s) beyond the margin ({tally})",
                            [c.describe(confidence) for c in regressions])
    if not gated:
        return GateDecision(4, "nothing gated: no metric in the suite has a margin", [])
    if counts[NOT_COMPARABLE] == len(gated):
        return GateDecision(4, "nothing gated: every gated metric is not comparable with the baseline",
                            [c.describe(confidence) for c in gated])
    undecided = [c for c in gated if c.verdict in (INCONCLUSIVE, NOT_COMPARABLE)]
    if strict and undecided:
        return GateDecision(3, f"FAIL (strict): {len(undecided)} gated metric(s) not shown to pass ({tally})",
                            [c.describe(confidence) for c in undecided])
    note = " (inconclusive counts as a pass; --strict fails it)" if counts[INCONCLUSIVE] else ""
    return GateDecision(0, f"PASS ({tally}){note}", [c.describe(confidence) for c in undecided])


# ---------------------------------------------------------------- output

def _num(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4g}"


def _signed(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:+.4g}"


def _ci(c: MetricComparison) -> str:
    return "" if math.isnan(c.ci_low) else f"[{_num(c.ci_low)}, {_num(c.ci_high)}]"


def text_table(comparisons: list[MetricComparison]) -> str:
    if not comparisons:
        return "(no metrics to compare)"
    table = pd.DataFrame([{
        "model": c.model, "task": c.task, "clip": f"{c.clip_seconds:g} s", "metric": c.metric,
        "baseline": _num(c.baseline_value), "current": _num(c.value), "delta": _signed(c.delta), "CI": _ci(c),
        "n": c.n, "margin": "-" if c.margin is None else f"{c.margin:g}",
        "verdict": c.verdict + (f" ({STATIC_NOT_A_WIN})" if c.static_not_a_win else "")} for c in comparisons])
    return table.to_string(index=False)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


VERDICT_MARKS = {PASS: "PASS", REGRESS: "**REGRESS**", INCONCLUSIVE: "INCONCLUSIVE", NOT_COMPARABLE: "NOT COMPARABLE",
                 NOT_GATED: "not gated"}
STATIC_NOT_A_WIN = "static: not a win"


def _verdict_mark(c: MetricComparison) -> str:
    return VERDICT_MARKS[c.verdict] + (f" · {STATIC_NOT_A_WIN}" if c.static_not_a_win else "")


def markdown_summary(comparisons: list[MetricComparison], decision: GateDecision, *, run_label: str,
                     baseline_label: str, confidence: float) -> str:
    """A GitHub step summary: headline, one table row per comparison, and the reasons."""
    lines = [f"## vbf gate: {_md(run_label)} vs {_md(baseline_label)}", "",
             f"**{_md(decision.headline)}** (exit code {decision.exit_code})", "",
             f"| metric | model | task | clip | baseline | current | delta [{confidence:.0%} CI] | margin | verdict |",
             "|---|---|---|---|---:|---:|---|---:|---|"]
    for c in comparisons:
        delta = "n/a" if math.isnan(c.delta) else f"{_signed(c.delta)} {_ci(c)}".strip()
        lines.append(f"| {_md(c.metric)} | {_md(c.model)} | {c.task} | {c.clip_seconds:g} s | {_num(c.baseline_value)} | "
                     f"{_num(c.value)} | {delta} | {'-' if c.margin is None else f'{c.margin:g}'} | {_verdict_mark(c)} |")
    lines += ["", ("Verdicts: REGRESS = the whole interval is worse than -margin; PASS = the whole interval is better "
                   "than -margin; INCONCLUSIVE = neither; metrics without a margin are reported, not gated."), ""]
    notes = [c for c in comparisons if c.verdict not in (PASS, NOT_GATED) or c.static_not_a_win]
    if notes:
        lines.append("Details:")
        lines.append("")
        lines += [f"- {_md(c.metric)} ({_md(c.where)}): {c.verdict}: {_md(c.reason)}"
                  + (f"; {STATIC_NOT_A_WIN}: {_md(c.static)}" if c.static_not_a_win else "") for c in notes]
        lines.append("")
    return "\n".join(lines)


def junit_xml(comparisons: list[MetricComparison], *, strict: bool, confidence: float, suite_name: str = "vbf.gate") -> str:
    """One <testcase> per gated metric: <failure> for a regression (and, under strict, for
    inconclusive / not comparable), <skipped> for inconclusive / not comparable otherwise."""
    gated = [c for c in comparisons if c.gated]
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(gated)), errors="0")
    failures = skipped = 0
    for c in gated:
        case = ET.SubElement(suite, "testcase", classname=f"vbf.gate.{c.model}.{c.task}.{c.clip_seconds:g}s",
                             name=c.metric, time="0")
        text = c.describe(confidence)
        if c.verdict == REGRESS:
            failures += 1
            ET.SubElement(case, "failure", message=text, type="regression").text = text
        elif c.verdict in (INCONCLUSIVE, NOT_COMPARABLE):
            if strict:
                failures += 1
                ET.SubElement(case, "failure", message=text, type=c.verdict.replace(" ", "_")).text = text
            else:
                skipped += 1
                ET.SubElement(case, "skipped", message=f"{c.verdict}: {c.reason}")
        else:
            if c.static_not_a_win:  # an improvement from not moving: said, never a failure
                properties = ET.SubElement(case, "properties")
                ET.SubElement(properties, "property", name="static", value=f"{STATIC_NOT_A_WIN}: {c.static}")
                text += f"\n{STATIC_NOT_A_WIN}: {c.static}"
            ET.SubElement(case, "system-out").text = text
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
