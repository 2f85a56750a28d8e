"""Collect what a report shows from the store, and hand it to ``reports`` to render.

Everything statistical happens here (deltas against a baseline with bootstrap intervals, the
mean-over-units drift curves, the Pareto front, the best variant of a sweep); ``reports`` gets
plain tables and only draws them.

Baselines: a *model* within each run (``report.baseline_model`` or ``--baseline-model``), a
*run* (``--baseline-run``: every other run is compared model by model against it), or both (one
model of one run that every other row is compared against). Deltas are ``row - baseline``,
paired over the units both have, keyed by (task, clip length, prompt, seed), the bootstrap
resampling prompts (a prompt's seeds are not independent draws); rows that share no unit with
their baseline fall back to an unpaired bootstrap.

Static models (:class:`MotionCheck`): a consistency metric (one with a ``motion_counterpart``) wins
for free on a model that barely moves. A row whose counterpart is more than ``report.static_margin``
below the real clips' has its "better" verdicts on such metrics shown as "static: not a win", and
is not counted in who won.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reports.html import (
    DEFAULT_EMBED_BUDGET,
    AblationView,
    Baseline,
    GalleryItem,
    GalleryRow,
    ParetoInput,
    ReportInput,
    RunSummary,
    render_report,
)
from vbench_flow.stats import band, group_seed, paired_delta, unpaired_delta
from metrics.files import file_sha256
from metrics.video import fit_longer_side
from vbench_flow.errors import ConfigError, VideoReadError
from vbench_flow.motion_check import REAL_CLIP_TYPES, moves_too_little, real_clip_model, suite_static_margin
from vbench_flow.registry import did_you_mean, metric_types
from vbench_flow.set_metrics import MAX_SET_LEVEL_RESAMPLES, set_level_delta
from vbench_flow.store import Store
from vbench_flow.video_io import iter_chunks, probe_video, write_video_chunks

ROW_KEY = ["run_id", "model", "task", "clip_seconds"]
UNIT_KEY = ["task", "clip_seconds", "prompt_id", "seed"]
# stores written before metrics recorded their kind: cost metrics are the ones with this extractor
COST_EXTRACTOR = "none (measured around generate)"


# ---------------------------------------------------------------- runs

def _summary(store: Store, run_id: str) -> RunSummary:
    run = store.run(run_id)
    units = store.units(run_id)
    failed = units[units["status"] == "failed"]
    return RunSummary(
        run_id=run_id, suite=run["suite"], variant=run["variant"], status=run["status"], created=run["created"],
        expected=int(run["expected"] or 0), done=int(run["done"] or 0), failed=int(run["failed"] or 0),
        seed=int(run["seed"] or 0), config=run["config"], environment=run["env"],
        failures=failed[["unit_id", "stage", "error"]].to_dict("records")
        + [{"unit_id": e["unit_id"], "stage": f"metric {e['metric']} (other metrics kept)", "error": e["error"]}
           for e in store.metric_errors(run_id).to_dict("records")],
        excluded=_excluded_counts(store.metric_excluded(run_id), units),
        metric_info=store.metric_info(run_id).to_dict("records"),
        sweep=run.get("sweep"),
    )


def _excluded_counts(excluded: pd.DataFrame, units: pd.DataFrame) -> list[dict[str, Any]]:
    """Per metric and model: how many of the model's finished clips the metric's definition left
    out (it depends on the model: flicker's static filter leaves out clips that move), and the
    first reason."""
    if excluded.empty:
        return []
    finished = units[units["status"] == "ok"].groupby("model").size()
    return [{"metric": metric, "model": model, "clips": len(group), "of": int(finished.get(model, 0)),
             "reason": group["reason"].iloc[0]}
            for (metric, model), group in excluded.groupby(["metric", "model"], sort=True)]


def rank_notes(store: Store, aggregates: pd.DataFrame) -> pd.DataFrame:
    """A ``rank_note`` on each set-level value (FVD) computed from fewer feature vectors than twice
    their dimension: its covariance is rank-deficient or nearly so, and the value biased upward."""
    aggregates = aggregates.assign(rank_note=None)
    if aggregates.empty:
        return aggregates
    dims: dict[tuple[str, str], int | None] = {}
    for index, row in aggregates.iterrows():
        key = (row["run_id"], row["metric"])
        if key not in dims:
            dims[key] = store.feature_dim(*key)
        dim = dims[key]
        if dim and row["n"] < 2 * dim:
            aggregates.at[index, "rank_note"] = (f"n = {int(row['n'])} feature vectors < 2 x {dim} dimensions: the "
                                                 "covariance is rank-deficient or nearly, and the value biased upward")
    return aggregates


def _is_cost(metric: str, info: dict[str, Any] | None) -> bool:
    """What generating a clip cost, not how good it is: as the metric itself says (its kind)."""
    if not info:
        return False
    kind = info.get("kind")
    return kind == "cost" if isinstance(kind, str) and kind else info.get("extractor") == COST_EXTRACTOR


def primary_metric(summaries: list[RunSummary], aggregates: pd.DataFrame) -> str | None:
    """The suite's ``primary: true`` metric, else its first metric that is not a cost of generation."""
    present = list(dict.fromkeys(aggregates["metric"])) if not aggregates.empty else []
    info = {i["metric"]: i for s in summaries for i in s.metric_info}
    for summary in summaries:
        for spec in summary.config.get("metrics", []):
            if spec.get("primary") and spec.get("name") in present:
                return spec["name"]
    for summary in summaries:
        for spec in summary.config.get("metrics", []):
            if spec.get("name") in present and not _is_cost(spec["name"], info.get(spec["name"])):
                return spec["name"]
    quality = [m for m in present if not _is_cost(m, info.get(m))]
    return quality[0] if quality else None


# ---------------------------------------------------------------- deltas against a baseline

def _resolve_baseline(summaries: list[RunSummary], aggregates: pd.DataFrame, baseline_model: str | None,
                      baseline_run: str | None, notes: list[str]) -> Baseline | None:
    models = sorted(set(aggregates["model"])) if not aggregates.empty else []
    given_model = baseline_model is not None
    if baseline_model is None and baseline_run is None:
        baseline_model = next((s.config.get("report", {}).get("baseline_model") for s in summaries
                               if s.config.get("report", {}).get("baseline_model")), None)
    if baseline_model is not None:
        scope = aggregates if baseline_run is None else aggregates[aggregates["run_id"] == baseline_run]
        if baseline_model not in set(scope["model"]):
            where = f"run {baseline_run!r}" if baseline_run else "the reported run(s)"
            if given_model:
                raise ConfigError(f"baseline model {baseline_model!r} has no results in {where}"
                                  f"{did_you_mean(baseline_model, models) if models else ''}", where="--baseline-model")
            notes.append(f"report.baseline_model {baseline_model!r} has no results in {where}; no deltas shown.")
            return None
    if baseline_run is not None and baseline_model is not None:
        return Baseline("run+model", baseline_run, baseline_model,
                        f"model {baseline_model} of run {baseline_run}: every other row is compared with it")
    if baseline_run is not None:
        return Baseline("run", baseline_run, None, f"run {baseline_run}: every other run is compared with it, model by model")
    if baseline_model is not None:
        return Baseline("model", None, baseline_model, f"model {baseline_model}: every other model is compared with it "
                        "within the same run")
    return None


def _baseline_row(baseline: Baseline, run_id: str, model: str) -> tuple[str, str] | None:
    """The (run, model) a row is compared with, or None for the baseline itself."""
    target = (baseline.run_id or run_id, baseline.model or model)
    if baseline.kind == "run" and run_id == baseline.run_id:
        return None
    return None if target == (run_id, model) else target


def _verdict(delta: float, low: float, high: float, higher_is_better: bool) -> str:
    if math.isnan(low) or math.isnan(high):
        return "n/a"
    if low > 0 or high < 0:
        return "better" if (delta > 0) == higher_is_better else "worse"
    return "same"


def compute_deltas(samples: pd.DataFrame, aggregates: pd.DataFrame, baseline: Baseline, *, confidence: float,
                   resamples: int, seed: int) -> pd.DataFrame:
    """One row per (run, model, task, clip length, metric) that has a baseline: ``delta`` (row - baseline)
    with its bootstrap interval, paired over shared units where there are any."""
    columns = [*ROW_KEY, "metric", "delta", "ci_low", "ci_high", "n", "paired", "higher_is_better", "verdict",
               "baseline_run", "baseline_model"]
    if samples.empty or aggregates.empty:
        return pd.DataFrame(columns=columns)
    direction = {m: bool(h) for m, h in zip(aggregates["metric"], aggregates["higher_is_better"])}
    by_row = {key: group for key, group in samples.groupby([*ROW_KEY, "metric"], sort=False)}
    out = []
    for (run_id, model, task, seconds, metric), current in by_row.items():
        target = _baseline_row(baseline, run_id, model)
        if target is None or metric not in direction:
            continue
        base = by_row.get((*target, task, seconds, metric))
        if base is None:
            continue
        merged = current.merge(base, on=["prompt_id", "seed"], suffixes=("", "_base"))
        group_rng = group_seed(seed, "delta", run_id, model, task, seconds, metric)
        if len(merged):  # resampled by prompt: a prompt's seeds are not independent draws (as in aggregate.py)
            delta, low, high = paired_delta(merged["value"].to_numpy(float), merged["value_base"].to_numpy(float),
                                            confidence=confidence, resamples=resamples, seed=group_rng,
                                            clusters=merged["prompt_id"].to_numpy())
            n, paired = len(merged), True
        else:
            delta, low, high = unpaired_delta(current["value"].to_numpy(float), base["value"].to_numpy(float),
                                              confidence=confidence, resamples=resamples, seed=group_rng,
                                              current_clusters=current["prompt_id"].to_numpy(),
                                              baseline_clusters=base["prompt_id"].to_numpy())
            n, paired = min(len(current), len(base)), False
        out.append({"run_id": run_id, "model": model, "task": task, "clip_seconds": float(seconds), "metric": metric,
                    "delta": float(delta), "ci_low": float(low), "ci_high": float(high), "n": int(n), "paired": paired,
                    "higher_is_better": direction[metric],
                    "verdict": _verdict(float(delta), float(low), float(high), direction[metric]),
                    "baseline_run": target[0], "baseline_model": target[1]})
    return pd.DataFrame(out, columns=columns)


def set_level_deltas(store: Store, run_ids: list[str], aggregates: pd.DataFrame, baseline: Baseline, *,
                     confidence: float, resamples: int, seed: int, notes: list[str] | None = None) -> pd.DataFrame:
    """The deltas of set-level metrics (FVD) against the baseline row, from the features every unit
    stored, both sides against the same reference clips (:func:`set_metrics.set_level_delta`;
    paired when the two rows hold the same (prompt, seed) units)."""
    from vbench_flow.gate import side_from_run  # a run's stored features, reference sets and metric options

    columns = [*ROW_KEY, "metric", "delta", "ci_low", "ci_high", "n", "paired", "higher_is_better", "verdict",
               "baseline_run", "baseline_model"]
    sides = {}
    for run_id in run_ids:
        try:
            sides[run_id] = side_from_run(store, run_id)
        except ConfigError as exc:  # e.g. an unreadable reference file: that run's FVD rows get no delta
            if notes is not None:
                notes.append(f"FVD deltas of run {run_id} are not shown: {exc.render()}")
    direction = {m: bool(h) for m, h in zip(aggregates["metric"], aggregates["higher_is_better"])}
    out = []
    for run_id, side in sides.items():
        for (model, task, seconds, metric), current in side.features.items():
            target = _baseline_row(baseline, run_id, model)
            other = sides.get(target[0]) if target else None
            if other is None or metric not in side.metric_args or metric not in direction:
                continue
            base = other.features.get((target[1], task, seconds, metric))
            reference, base_reference = side.references.get((metric, seconds)), other.references.get((metric, seconds))
            if not base or reference is None or base_reference is None or reference.digest != base_reference.digest \
                    or len(current) != len(base):  # another reference or another n: FVD's bias differs, no delta
                continue
            found = set_level_delta(side.metric_args[metric], reference, current, base, confidence=confidence,
                                    resamples=min(resamples, MAX_SET_LEVEL_RESAMPLES),
                                    seed=group_seed(seed, "delta", run_id, model, task, seconds, metric))
            out.append({"run_id": run_id, "model": model, "task": task, "clip_seconds": float(seconds), "metric": metric,
                        "delta": found.delta, "ci_low": found.low, "ci_high": found.high, "n": found.n,
                        "paired": found.paired, "higher_is_better": direction[metric],
                        "verdict": _verdict(found.delta, found.low, found.high, direction[metric]),
                        "baseline_run": target[0], "baseline_model": target[1]})
    return pd.DataFrame(out, columns=columns)


# ---------------------------------------------------------------- static models

STATIC = "static"  # the verdict a "better" consistency delta of a static model becomes


@dataclass
class MotionCheck:
    """Which rows are *static*: a consistency metric (one with a ``motion_counterpart``) wins for free
    on a model that barely moves, so a row whose counterpart (mean over its clips of that task and
    clip length) is more than ``report.static_margin`` (relative) below the real clips' is flagged,
    and its "better" verdicts on those metrics are not wins.

    The real clips are the report's baseline model when it is a dataset model, else the run's own
    (first) dataset model; without one nothing is flagged."""

    # (run_id, metric) -> the motion counterpart of the metric, where the run scored both
    counterparts: dict[tuple[str, str], str] = field(default_factory=dict)
    # (run_id, model, task, clip_seconds, counterpart) -> {"motion", "real", "real_model", "margin", "note"}
    flags: dict[tuple[str, str, str, float, str], dict[str, Any]] = field(default_factory=dict)
    # said once, near the results table
    notes: list[str] = field(default_factory=list)

    def flag(self, run_id: str, model: str, task: str, clip_seconds: float, metric: str) -> dict[str, Any] | None:
        """The static flag of a row on a metric (None: not static there, or the metric has no counterpart)."""
        counterpart = self.counterparts.get((run_id, metric))
        if counterpart is None:
            return None
        return self.flags.get((run_id, model, task, float(clip_seconds), counterpart))


def registered_counterpart(metric: str) -> str | None:
    entry = metric_types().get(metric)
    return entry.motion_counterpart if entry is not None else None


def _model_type(summary: RunSummary | None, model: str) -> str | None:
    if summary is None:
        return None
    for spec in summary.config.get("models") or []:
        if isinstance(spec, dict) and spec.get("name") == model:
            return spec.get("type")
    return None


def _real_reference(by_run: dict[str, RunSummary], baseline: Baseline | None, run_id: str) -> tuple[str, str] | None:
    """The (run, model) of the real clips a row's motion is read against: the report's baseline when
    it is a model of real clips, else the run's own (``motion_check.real_clip_model``)."""
    if baseline is not None and baseline.model is not None:
        target = (baseline.run_id or run_id, baseline.model)
        if _model_type(by_run.get(target[0]), target[1]) in REAL_CLIP_TYPES:
            return target
    summary = by_run.get(run_id)
    real = real_clip_model(summary.config if summary else None)
    return (run_id, real) if real else None


def motion_check(summaries: list[RunSummary], samples: pd.DataFrame, aggregates: pd.DataFrame,
                 baseline: Baseline | None) -> MotionCheck:
    """Flag the static rows of the runs (see :class:`MotionCheck`)."""
    check = MotionCheck()
    if aggregates.empty:
        return check
    by_run = {s.run_id: s for s in summaries}
    present = {run: set(group["metric"]) for run, group in aggregates.groupby("run_id")}
    missing: dict[str, str] = {}
    for s in summaries:
        scored = present.get(s.run_id, set())
        for info in s.metric_info:
            # runs stored before counterparts were recorded: the metric's registered one
            counterpart = info.get("motion_counterpart") or registered_counterpart(info["metric"])
            if not isinstance(counterpart, str) or not counterpart or info["metric"] not in scored:
                continue
            if counterpart in scored:
                check.counterparts[(s.run_id, info["metric"])] = counterpart
            else:
                missing.setdefault(info["metric"], counterpart)
    if missing:
        names = ", ".join(sorted(missing))
        wanted = ", ".join(sorted(set(missing.values())))
        check.notes.append(f"No motion counterpart scored for the consistency metric(s) {names} ({wanted} is not in "
                           "the run): their ▲ better verdicts do not check that a model moves about as much as the "
                           f"real clips. Add {{name: {sorted(set(missing.values()))[0]}}} to the suite's metrics.")
    used = {(run_id, c) for (run_id, _), c in check.counterparts.items()}
    if not used:
        return check
    means = samples.groupby([*ROW_KEY, "metric"])["value"].mean().to_dict() if not samples.empty else {}
    no_real = sorted({run_id for run_id, _ in used if _real_reference(by_run, baseline, run_id) is None})
    if no_real:
        check.notes.append(f"Run(s) {', '.join(no_real)} have no real clips (a dataset model) to read motion against, "
                           "so no consistency win there is checked for a static model.")
    for (run_id, model, task, seconds, metric), motion in means.items():
        if (run_id, metric) not in used:
            continue
        reference = _real_reference(by_run, baseline, run_id)
        if reference is None or reference == (run_id, model):
            continue
        real = means.get((*reference, task, seconds, metric))
        summary = by_run.get(run_id)
        margin = suite_static_margin(summary.config if summary else None)
        if real is None or not moves_too_little(motion, real, margin):
            continue
        note = (f"{model} moves {motion:.3g} vs real {real:.3g} ({metric}, {task}, {seconds:g} s): more than "
                f"{margin:.0%} less, so its consistency wins there are not wins")
        check.flags[(run_id, model, task, float(seconds), metric)] = {
            "motion": float(motion), "real": float(real), "real_model": reference[1], "margin": margin, "note": note}
    if check.flags:
        margins = sorted({f["margin"] for f in check.flags.values()})
        rows = "; ".join(f"{model}{f' · {run_id}' if len(summaries) > 1 else ''} in {task} · {seconds:g} s "
                         f"({metric} {f['motion']:.3g} vs real {f['real']:.3g})"
                         for (run_id, model, task, seconds, metric), f in sorted(check.flags.items()))
        check.notes.append(f"Static rows (motion more than {', '.join(f'{m:.0%}' for m in margins)} below the real "
                           f"clips'): {rows}. Their ▲ better verdicts on consistency metrics read \"static: not a "
                           "win\", and they are not counted in who won.")
    return check


def apply_motion_check(deltas: pd.DataFrame, check: MotionCheck) -> pd.DataFrame:
    """A "better" verdict of a static row on a metric with a motion counterpart becomes "static"
    (with ``static_note`` saying how much it moves); any other verdict stands (a worse stays worse)."""
    deltas = deltas.copy()
    notes: list[str | None] = []
    verdicts: list[str] = []
    for d in deltas.to_dict("records"):
        flag = check.flag(d["run_id"], d["model"], d["task"], d["clip_seconds"], d["metric"])
        static = flag is not None and d["verdict"] == "better"
        verdicts.append(STATIC if static else d["verdict"])
        notes.append(flag["note"] if static else None)
    deltas["verdict"] = pd.Series(verdicts, index=deltas.index, dtype=object)
    deltas["static_note"] = pd.Series(notes, index=deltas.index, dtype=object)
    return deltas


# ---------------------------------------------------------------- who won

# ---------------------------------------------------------------- scoreboards and answers

METRIC_GROUPS = ("quality", "caption adherence", "consistency", "motion", "long-horizon drift", "likelihood", "cost")
# a colour-blind-safe sequential palette (one hue, lightness only): best rank darkest
RANK_SHADES = ("#6baed6", "#9ecae1", "#c6dbef", "#deebf7", "#f7fbff")


def metric_group(metric: str, info: dict[str, Any] | None) -> str:
    """Where a metric sits on a scoreboard: what it says about a model."""
    entry = metric_types().get(metric)
    if _is_cost(metric, info):
        return "cost"
    if metric.startswith("bits_per_dim") or "likelihood" in metric:
        return "likelihood"
    if metric.startswith("caption_") or metric == "object_permanence":
        return "caption adherence"
    if metric.endswith(("_drift", "_start_end_contrast")) or metric == "identity_decay":
        return "long-horizon drift"
    counterparts = {t.motion_counterpart for t in metric_types().values() if t.motion_counterpart}
    if metric in counterparts or metric == "dynamic_degree":
        return "motion"
    if (entry is not None and entry.motion_counterpart) or (info or {}).get("motion_counterpart"):
        return "consistency"
    return "quality"


def scoreboards(aggregates: pd.DataFrame, deltas: pd.DataFrame, metric_order: list[str], summaries: list[RunSummary],
                motion: MotionCheck | None) -> list[dict[str, Any]]:
    """One scoreboard per (task, clip length): a row per model (the real clips first, as the
    reference), metrics grouped by what they measure; each cell the value and interval, shaded by
    its rank among the generators (real clips, static rows and unranked metrics are not shaded),
    with its delta's mark against the baseline."""
    if aggregates.empty:
        return []
    info = {i["metric"]: i for s in summaries for i in s.metric_info}
    real = {s.run_id: real_clip_model(s.config) for s in summaries}
    several_runs = aggregates["run_id"].nunique() > 1
    verdicts = {} if deltas.empty else {
        (d["run_id"], d["model"], d["task"], float(d["clip_seconds"]), d["metric"]): d for d in deltas.to_dict("records")}
    boards = []
    for (task, seconds), table in aggregates.groupby(["task", "clip_seconds"], sort=True):
        present = [m for m in metric_order if m in set(table["metric"])]
        groups = [(g, [m for m in present if metric_group(m, info.get(m)) == g]) for g in METRIC_GROUPS]
        groups = [(g, ms) for g, ms in groups if ms]
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for run_id, model in dict.fromkeys(zip(table["run_id"], table["model"])):
            label = f"{model} · {run_id}" if several_runs else model
            rows[(run_id, model)] = {"label": label, "real": real.get(run_id) == model, "cells": {}}
        for metric in present:
            column = table[table["metric"] == metric].dropna(subset=["value"])
            higher = bool(column["higher_is_better"].iloc[0]) if len(column) else True
            entry = metric_types().get(metric)
            ranked_rows = []
            for r in column.to_dict("records"):
                key = (r["run_id"], r["model"])
                flag = motion.flag(r["run_id"], r["model"], task, seconds, metric) if motion is not None else None
                delta = verdicts.get((r["run_id"], r["model"], task, float(seconds), metric))
                cell = {"value": r["value"], "low": r["ci_low"], "high": r["ci_high"], "n": int(r["n"]),
                        "rank_note": r.get("rank_note"), "static": flag["note"] if flag else None,
                        "verdict": delta["verdict"] if delta is not None else None, "shade": None}
                rows[key]["cells"][metric] = cell
                if not rows[key]["real"] and flag is None and (entry is None or entry.ranked):
                    ranked_rows.append((r["value"], key))
            ranked_rows.sort(key=lambda item: -item[0] if higher else item[0])
            for rank, (_, key) in enumerate(ranked_rows):
                shade = round(rank * (len(RANK_SHADES) - 1) / max(1, len(ranked_rows) - 1))
                rows[key]["cells"][metric]["shade"] = RANK_SHADES[shade]
                rows[key]["cells"][metric]["rank"] = rank + 1
        ordered = sorted(rows.values(), key=lambda row: not row["real"])
        columns = {m: {"metric": m, "higher_is_better": bool(table[table["metric"] == m]["higher_is_better"].iloc[0]),
                       "definition": (metric_types()[m].summary if m in metric_types() else ""),
                       "version": (info.get(m) or {}).get("version") or ""} for m in present}
        boards.append({"task": task, "clip_seconds": float(seconds), "groups": groups, "columns": columns,
                       "rows": ordered})
    return boards


def answers(boards: list[dict[str, Any]], primary: str | None, suite_order: list[str]) -> list[str]:
    """One sentence per setting, about the generators (the real clips are the reference, never the
    answer): who is best on the primary metric and whether the lead is clear, who drifts least on
    the suite's first drift metric, who is fastest."""
    out = []
    for board in boards:
        drift_metrics = [m for g, ms in board["groups"] if g == "long-horizon drift" for m in ms]
        drift = min(drift_metrics, key=lambda m: suite_order.index(m) if m in suite_order else len(suite_order),
                    default=None)
        parts = []
        for metric, verb in ((primary, "is best on {metric}"), (drift, "drifts least by {metric}"),
                             ("frames_per_second", "is fastest in frames per second")):
            contenders = [row for row in board["rows"] if metric and row["cells"].get(metric, {}).get("rank")]
            if not contenders:
                continue
            # a drift slope is better the flatter it is, whichever its sign; any other column by its rank
            flattest = metric == drift and metric.endswith("_drift")
            ranked = sorted(((abs(row["cells"][metric]["value"]) if flattest else row["cells"][metric]["rank"], i, row)
                             for i, row in enumerate(contenders)), key=lambda item: item[:2])
            ranked = [(key, row) for key, _, row in ranked]
            best = ranked[0][1]["cells"][metric]
            text = f"{ranked[0][1]['label']} {verb.format(metric=metric)} ({_interval_text(best)}"
            if len(ranked) > 1:
                second = ranked[1][1]["cells"][metric]
                apart = not (math.isnan(best["low"]) or math.isnan(second["low"])) and (
                    best["low"] > second["high"] or best["high"] < second["low"])
                text += (f", clearly ahead of {ranked[1][1]['label']}" if apart
                         else f", not separated from {ranked[1][1]['label']}")
            parts.append(text + ")")
        if parts:
            out.append(f"{board['clip_seconds']:g} s {board['task']}: " + "; ".join(parts) + ".")
    return out


def _interval_text(cell: dict[str, Any]) -> str:
    if math.isnan(cell["low"]):
        return f"{cell['value']:.4g}"
    return f"{cell['value']:.4g} [{cell['low']:.4g}, {cell['high']:.4g}]"


# ---------------------------------------------------------------- run history

def run_history(summaries: list[RunSummary], aggregates: pd.DataFrame) -> pd.DataFrame:
    """Each gated metric's value and interval in every run, oldest first, when the report covers
    several runs of one suite: how CI's numbers moved (empty otherwise)."""
    columns = ["position", "run_id", "created", "model", "task", "clip_seconds", "metric", "value", "ci_low", "ci_high",
               "higher_is_better"]
    if len(summaries) < 2 or len({s.suite for s in summaries}) != 1 or aggregates.empty:
        return pd.DataFrame(columns=columns)
    from vbench_flow.gate import suite_margins  # which metrics the suite gates: read from its config

    ordered = sorted(summaries, key=lambda s: (s.created, s.run_id))  # same second: run ids carry their time
    gated = set().union(*(suite_margins(s.config) for s in ordered))
    position = {s.run_id: i for i, s in enumerate(ordered)}
    created = {s.run_id: s.created for s in ordered}
    table = aggregates[aggregates["metric"].isin(gated)].copy()
    table["position"] = table["run_id"].map(position)
    table["created"] = table["run_id"].map(created)
    return table.sort_values(["metric", "position"])[columns].reset_index(drop=True)


# ---------------------------------------------------------------- drift curves

def drift_curves(series: pd.DataFrame, *, confidence: float, resamples: int, seed: int) -> pd.DataFrame:
    """Mean over prompts of each per-segment series, with the interval of that mean from
    :func:`vbench_flow.stats.band` (resampled means: a band never leaves the values seen,
    so never a bounded metric's range), per (run, model, task, clip length, metric, time); only
    series with at least three time points (two are a start and a tail, not a curve), except a
    start-end contrast, whose two windows are the measure itself."""
    columns = [*ROW_KEY, "metric", "t_seconds", "mean", "low", "high", "n"]
    if series.empty:
        return pd.DataFrame(columns=columns)
    keys = [*ROW_KEY, "metric"]
    points = series.groupby(keys)["t_seconds"].transform("nunique")
    series = series[(points >= 3) | (series["metric"].str.endswith("_start_end_contrast") & (points == 2))]
    rows = []
    for key, group in series.groupby(keys, sort=True):
        # a prompt's seeds averaged first: prompts are what the band resamples, as the aggregates do
        table = group.pivot_table(index="prompt_id", columns="t_seconds", values="value", aggfunc="mean")
        values = table.to_numpy(float)
        means, lows, highs = band(values, confidence=confidence, resamples=resamples, seed=group_seed(seed, "band", *key))
        for t, mean, low, high, n in zip(table.columns, means, lows, highs, np.isfinite(values).sum(axis=0)):
            if n:  # one clip at a time point: no interval, the band is the value
                rows.append((*key, float(t), mean, mean if np.isnan(low) else low, mean if np.isnan(high) else high, int(n)))
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- quality against throughput

def pareto_front(x: np.ndarray, y: np.ndarray, higher_y_is_better: bool, higher_x_is_better: bool = True) -> np.ndarray:
    """True where no other point is at least as good on both axes and better on one (each axis in
    its own direction: frames/s up, latency and memory down)."""
    x = x if higher_x_is_better else -x
    y = y if higher_y_is_better else -y
    front = np.ones(len(x), dtype=bool)
    for i in range(len(x)):
        dominated = (x >= x[i]) & (y >= y[i]) & ((x > x[i]) | (y > y[i]))
        front[i] = not dominated.any()
    return front


COST_LABELS = {"frames_per_second": "generated frames per second", "latency_to_first_frame": "seconds to the first frame",
               "peak_memory_mb": "peak memory (MiB)", "generate_seconds": "seconds per clip"}


def pareto_input(aggregates: pd.DataFrame, quality: str | None, kinds: dict[str, str] | None = None) -> ParetoInput:
    """Every quality metric against every cost the runs measured (``kinds``: metric -> kind as the
    metric info has it; without it, the costs COST_LABELS names), each pair's Pareto front per
    (task, clip length). The report opens on ``quality`` (the primary metric) against frames/s."""
    kinds = kinds or {}
    measured = list(dict.fromkeys(aggregates["metric"])) if not aggregates.empty else []
    costs = [m for m in measured if kinds.get(m, "cost" if m in COST_LABELS else "quality") == "cost"]
    if not costs:
        return ParetoInput(quality, None, note="No cost of generation was measured in these runs, so there is no "
                           "quality-against-speed plot: add the frames_per_second (or generate_seconds) metric "
                           "to the suite.")
    qualities = [m for m in measured if m not in costs]
    if not qualities:
        return ParetoInput(None, costs[0], note="Every metric measured is a cost of generation; there is no "
                           "quality metric to plot against it.")
    quality = quality if quality in qualities else qualities[0]
    cost = "frames_per_second" if "frames_per_second" in costs else costs[0]
    direction = {m: bool(h) for m, h in zip(aggregates["metric"], aggregates["higher_is_better"])}
    points = aggregates[aggregates["metric"].isin(qualities + costs) & aggregates["value"].notna()][
        ROW_KEY + ["metric", "value", "ci_low", "ci_high"]].reset_index(drop=True)
    fronts: dict[str, list[str]] = {}
    for q in qualities:
        for c in costs:
            both = points[points["metric"] == c].merge(points[points["metric"] == q], on=ROW_KEY, suffixes=("_x", "_y"))
            for (task, seconds), group in both.groupby(["task", "clip_seconds"], sort=True):
                on = pareto_front(group["value_x"].to_numpy(), group["value_y"].to_numpy(), direction[q], direction[c])
                fronts[f"{q}|{c}|{task}|{seconds:g}"] = [f"{r}|{m}" for r, m, f in
                                                          zip(group["run_id"], group["model"], on) if f]
    return ParetoInput(quality, cost, COST_LABELS.get(cost, cost), direction[quality], points=points,
                       qualities=[{"metric": m, "higher": direction[m]} for m in qualities],
                       costs=[{"metric": m, "higher": direction[m], "label": COST_LABELS.get(m, m)} for m in costs],
                       fronts=fronts)


# ---------------------------------------------------------------- ablation sweeps

def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaves; lists of named entries (models, metrics) are stepped into by name,
    as ablation paths address them."""
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(node, list) and node and all(isinstance(i, dict) and "name" in i for i in node):
        for item in node:
            out.update(_flatten({k: v for k, v in item.items() if k != "name"}, f"{prefix}.{item['name']}"))
    else:
        out[prefix] = node
    return out


def _overrides(summaries: list[RunSummary]) -> dict[str, dict[str, Any]]:
    """What each variant of a sweep set: the ablation's ``set`` where the config kept it, else the
    keys where the variants' resolved configs differ."""
    out: dict[str, dict[str, Any]] = {}
    for s in summaries:
        ablations = s.config.get("ablations")
        if isinstance(ablations, list):
            match = next((a for a in ablations if isinstance(a, dict) and a.get("name") == s.variant), None)
            if match is not None:
                out[s.run_id] = dict(match.get("set") or {})
    if len(out) == len(summaries):
        return out
    flat = {s.run_id: _flatten({k: v for k, v in s.config.items() if k not in ("ablations", "report")}) for s in summaries}
    keys = sorted({k for f in flat.values() for k in f})
    differing = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat.values()}) > 1]
    for s in summaries:
        out.setdefault(s.run_id, {k: flat[s.run_id].get(k) for k in differing})
    return out


def _variant_delta(samples: pd.DataFrame, run_id: str, base_run: str, key: tuple, higher_is_better: bool, *,
                   confidence: float, resamples: int, seed: int) -> dict[str, Any] | None:
    """A variant's paired delta against the base variant on one (model, task, clip length, metric):
    units matched on (prompt, seed), prompts resampled; None when no unit pairs (a set-level metric)."""
    model, task, seconds, metric = key
    def values(run: str) -> pd.DataFrame:
        rows = samples[(samples["run_id"] == run) & (samples["model"] == model) & (samples["task"] == task)
                       & (samples["clip_seconds"] == seconds) & (samples["metric"] == metric)]
        return rows[["prompt_id", "seed", "value"]]
    merged = values(run_id).merge(values(base_run), on=["prompt_id", "seed"], suffixes=("", "_base"))
    if merged.empty:
        return None
    delta, low, high = paired_delta(merged["value"].to_numpy(float), merged["value_base"].to_numpy(float),
                                    confidence=confidence, resamples=resamples, seed=seed,
                                    clusters=merged["prompt_id"].to_numpy())
    return {"delta": delta, "ci_low": low, "ci_high": high, "n": len(merged),
            "verdict": _verdict(delta, low, high, higher_is_better)}


def ablation_views(summaries: list[RunSummary], aggregates: pd.DataFrame, samples: pd.DataFrame | None = None, *,
                   confidence: float = 0.95, resamples: int = 1000, seed: int = 0) -> list[AblationView]:
    """For each sweep with two or more of its runs in the report: variant x metric, per (model, task,
    clip length), with the best variant of each metric marked and, with ``samples``, each variant's
    paired delta against the sweep's first (base) variant, units matched on (prompt, seed)."""
    views = []
    sweeps = list(dict.fromkeys(s.sweep for s in summaries if s.sweep))
    for sweep in sweeps:
        members = [s for s in summaries if s.sweep == sweep]
        if len(members) < 2:
            continue
        overrides = _overrides(members)
        run_ids = [s.run_id for s in members]
        table = aggregates[aggregates["run_id"].isin(run_ids)]
        keys = {k for o in overrides.values() for k in o}
        names = {m.get("name") for s in members for m in s.config.get("models", []) if isinstance(m, dict)}
        owners = [{n for n in names if isinstance(n, str) and k.startswith(f"models.{n}.")} for k in keys]
        if keys and all(owners):  # every override sits under one model: show only the models the sweep changed
            targeted = set().union(*owners)
            table = table[table["model"].isin(targeted)]
        metrics = list(dict.fromkeys(table["metric"]))
        groups = []
        for (model, task, seconds), group in table.groupby(["model", "task", "clip_seconds"], sort=True):
            if group["run_id"].nunique() < 2:
                continue
            best: dict[str, set[str]] = {}
            for metric, rows in group.groupby("metric"):
                rows = rows.dropna(subset=["value"])
                if rows.empty:
                    continue
                target = rows["value"].max() if bool(rows["higher_is_better"].iloc[0]) else rows["value"].min()
                best[metric] = set(rows.loc[rows["value"] == target, "run_id"])
            variant_rows = []
            base_run = members[0].run_id
            for s in members:
                cells = {}
                for _, r in group[group["run_id"] == s.run_id].iterrows():
                    cells[r["metric"]] = {"value": float(r["value"]), "ci_low": float(r["ci_low"]),
                                          "ci_high": float(r["ci_high"]), "n": int(r["n"]),
                                          "best": s.run_id in best.get(r["metric"], set())}
                    if samples is not None and s.run_id != base_run:
                        cells[r["metric"]]["delta"] = _variant_delta(
                            samples, s.run_id, base_run, (model, task, seconds, r["metric"]),
                            bool(r["higher_is_better"]), confidence=confidence, resamples=resamples,
                            seed=group_seed(seed, "ablation", s.run_id, model, task, seconds, r["metric"]))
                if cells:
                    variant_rows.append({"run_id": s.run_id, "variant": s.variant or s.run_id,
                                         "overrides": overrides.get(s.run_id, {}), "cells": cells})
            groups.append({"model": model, "task": task, "clip_seconds": float(seconds), "rows": variant_rows})
        if groups:
            direction = {m: bool(h) for m, h in zip(table["metric"], table["higher_is_better"])}
            views.append(AblationView(sweep=sweep, metrics=metrics, higher_is_better=direction, groups=groups))
    return views


# ---------------------------------------------------------------- gallery

def gallery_rows(store: Store, summaries: list[RunSummary], prompts_count: int, notes: list[str] | None = None,
                 real_models: frozenset[str] = frozenset()) -> tuple[list[tuple[str, str]], list[GalleryRow]]:
    """The first ``prompts_count`` prompts; one row per (prompt, task, clip length) at the prompt's first
    seed, one column per (run, model), the real clips' columns first (what the others are read
    against). A clip that cannot be read is left out with a note."""
    if prompts_count <= 0:
        return [], []
    frames = []
    run_dirs = {}
    for s in summaries:
        units = store.units(s.run_id)
        frames.append(units[units["status"] == "ok"].assign(run_id=s.run_id))
        run_dirs[s.run_id] = Path(store.run(s.run_id)["run_dir"])
    units = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if units.empty:
        return [], []
    prompts = list(dict.fromkeys(units["prompt_id"]))[:prompts_count]
    units = units[units["prompt_id"].isin(prompts)]
    columns = sorted(dict.fromkeys(zip(units["run_id"], units["model"])), key=lambda c: c[1] not in real_models)
    rows = []
    for prompt_id in prompts:
        chosen = units[units["prompt_id"] == prompt_id]
        first_seed = int(chosen["seed"].min())
        chosen = chosen[chosen["seed"] == first_seed]
        for (task, seconds), cell_units in chosen.groupby(["task", "clip_seconds"], sort=True):
            by_column = {(r["run_id"], r["model"]): r for _, r in cell_units.iterrows()}
            items: list[GalleryItem | None] = []
            for run_id, model in columns:
                r = by_column.get((run_id, model))
                video = None
                if r is not None and r["video"]:
                    try:
                        video = gallery_video(run_dirs[run_id], r["video"], r["video_sha256"])
                    except VideoReadError as exc:
                        if notes is not None:
                            notes.append(f"gallery: {model}'s clip for {prompt_id} is not shown: {exc.render()}")
                items.append(None if video is None else
                             GalleryItem(run_id, model, task, float(seconds), r["prompt"], video))
            if any(items):
                rows.append(GalleryRow(prompt_id, str(cell_units["prompt"].iloc[0]), task, float(seconds), first_seed,
                                       items, fps=float(cell_units["fps"].max()),
                                       num_frames=int(cell_units["num_frames"].max())))
    return columns, rows


# the gallery shows a clip itself when it lies in the run folder at most this size (the shapes
# world's); any other (a folder model's source files, real footage) through a small H.264 preview:
# at most 384 px, 12 frames/s and 2 minutes (a 60 s 1080p clip becomes about 1-2 MB)
PREVIEW_SIDE = 384
PREVIEW_MAX_FPS = 12.0
PREVIEW_MAX_SECONDS = 120.0
PREVIEW_CRF = 30


def gallery_video(run_dir: Path, video: str, sha256: str | None) -> Path:
    """The file the gallery shows for a unit's video: the clip, or a bounded preview of it made once
    into ``run_dir/previews`` (named by the clip's hash). VideoReadError when the clip cannot be
    read (moved, deleted, corrupt)."""
    path = run_dir / video  # an external video is stored by absolute path
    info = probe_video(path)
    if path.resolve().is_relative_to(run_dir.resolve()) and max(info.width, info.height) <= PREVIEW_SIDE:
        return path
    preview = run_dir / "previews" / f"{sha256 or file_sha256(path)}.mp4"
    if not preview.exists():
        fps = min(info.fps, PREVIEW_MAX_FPS)
        chunks = iter_chunks(path, fps=fps, max_frames=int(PREVIEW_MAX_SECONDS * fps))
        write_video_chunks(preview, (fit_longer_side(chunk, PREVIEW_SIDE) for chunk in chunks), fps, crf=PREVIEW_CRF, preset="veryfast")
    return preview


# ---------------------------------------------------------------- putting it together

def build_report_input(store: Store, run_ids: list[str], title: str | None = None, *, baseline_model: str | None = None,
                       baseline_run: str | None = None) -> ReportInput:
    run_ids = list(dict.fromkeys(run_ids))
    if baseline_run is not None:
        store.run(baseline_run)  # a clear error for an unknown run
        if baseline_run not in run_ids:
            run_ids.insert(0, baseline_run)
    summaries = [_summary(store, run_id) for run_id in run_ids]
    first = summaries[0].config
    gate = first.get("gate", {})
    confidence, resamples = float(gate.get("confidence", 0.95)), int(gate.get("resamples", 1000))
    seed = summaries[0].seed
    notes: list[str] = []

    aggregates = rank_notes(store, store.aggregates(run_ids))
    samples = pd.concat([store.sample_metrics(r) for r in run_ids], ignore_index=True)
    samples = samples.dropna(subset=["value"])
    baseline = _resolve_baseline(summaries, aggregates, baseline_model, baseline_run, notes)
    if baseline is not None:
        per_clip = compute_deltas(samples, aggregates, baseline, confidence=confidence, resamples=resamples, seed=seed)
        set_level = set_level_deltas(store, run_ids, aggregates, baseline, confidence=confidence, resamples=resamples,
                                     seed=seed, notes=notes)
        deltas = pd.concat([d for d in (per_clip, set_level) if not d.empty], ignore_index=True) \
            if not (per_clip.empty and set_level.empty) else per_clip
    else:
        deltas = pd.DataFrame()
    motion = motion_check(summaries, samples, aggregates, baseline)
    if not deltas.empty:
        deltas = apply_motion_check(deltas, motion)

    primary = primary_metric(summaries, aggregates)
    metric_order = list(dict.fromkeys(aggregates["metric"])) if not aggregates.empty else []
    if primary in metric_order:
        metric_order = [primary] + [m for m in metric_order if m != primary]

    boards = scoreboards(aggregates, deltas, metric_order, summaries, motion)
    series = pd.concat([store.sample_series(r).assign(run_id=r) for r in run_ids], ignore_index=True)
    real_models = frozenset(m for m in (real_clip_model(s.config) for s in summaries) if m)
    columns, rows = gallery_rows(store, summaries, int(first.get("report", {}).get("gallery", 4)), notes, real_models)
    default_title = first.get("report", {}).get("title") or f"vbench-flow report: {summaries[0].suite}"
    return ReportInput(
        title=title or default_title,
        runs=summaries,
        aggregates=aggregates,
        metric_order=metric_order,
        primary_metric=primary,
        confidence=confidence,
        baseline=baseline,
        deltas=deltas,
        scoreboards=boards,
        history=run_history(summaries, aggregates),
        real_models=real_models,
        answers=answers(boards, primary, [m.get("name") for m in first.get("metrics", []) if isinstance(m, dict)]),
        drift=drift_curves(series, confidence=confidence, resamples=resamples, seed=seed),
        pareto=pareto_input(aggregates, primary, {i["metric"]: i.get("kind") or "quality"
                                                  for s in summaries for i in s.metric_info}),
        ablations=ablation_views(summaries, aggregates, samples, confidence=confidence, resamples=resamples, seed=seed),
        gallery_columns=columns,
        gallery=rows,
        notes=notes,
        motion_notes=motion.notes,
    )


def write_report(store: Store, run_ids: list[str], output: str | Path, title: str | None = None, *,
                 baseline_model: str | None = None, baseline_run: str | None = None,
                 embed_budget: int = DEFAULT_EMBED_BUDGET) -> Path:
    data = build_report_input(store, run_ids, title, baseline_model=baseline_model, baseline_run=baseline_run)
    return render_report(data, output, embed_budget=embed_budget)
