"""Self-contained HTML reports: tables, plots and videos in one file that opens anywhere.

This package only renders what it is given (pandas tables, dicts, video files on disk); it
never runs a model or a metric, and computes no statistics beyond what a plot draws.
``vbench_flow.reporting`` gathers the data (deltas, intervals, Pareto fronts) and calls
:func:`render_report`.
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_EMBED_BUDGET = 8 * 1024 * 1024
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".gif": "image/gif"}
MARKS = {"better": "▲ better", "worse": "▼ worse", "same": "no significant difference", "n/a": "no interval",
         # better on a consistency metric, but the model moves far less than the real clips
         "static": "static: not a win"}


@dataclass
class RunSummary:
    run_id: str
    suite: str
    variant: str | None
    status: str
    created: str
    expected: int
    done: int
    failed: int
    seed: int
    config: dict[str, Any]
    environment: dict[str, Any]
    failures: list[dict[str, Any]] = field(default_factory=list)
    excluded: list[dict[str, Any]] = field(default_factory=list)
    metric_info: list[dict[str, Any]] = field(default_factory=list)
    sweep: str | None = None


@dataclass
class GalleryItem:
    run_id: str
    model: str
    task: str
    clip_seconds: float
    prompt: str
    video: Path


@dataclass
class GalleryRow:
    """One prompt (at one task, clip length and seed) across the gallery's columns; None where a
    column has no video for it."""

    prompt_id: str
    prompt: str
    task: str
    clip_seconds: float
    seed: int
    items: list[GalleryItem | None]
    fps: float = 8.0        # of the clips as stored: the row's frame scrubber steps one frame
    num_frames: int = 1


@dataclass
class Baseline:
    kind: str  # "model" (within each run), "run" (model by model), "run+model" (one row for everything)
    run_id: str | None
    model: str | None
    description: str


@dataclass
class ParetoInput:
    """Quality against cost, any pair: the page opens on ``quality_metric`` against
    ``throughput_metric`` and lets the reader pick among ``qualities`` and ``costs``."""

    quality_metric: str | None
    throughput_metric: str | None
    throughput_label: str = ""
    quality_higher_is_better: bool = True
    points: pd.DataFrame = field(default_factory=pd.DataFrame)  # run_id, model, task, clip_seconds, metric, value, ci_*
    note: str | None = None
    qualities: list[dict[str, Any]] = field(default_factory=list)  # {metric, higher}
    costs: list[dict[str, Any]] = field(default_factory=list)      # {metric, higher, label}
    # "quality|cost|task|seconds" -> the "run_id|model" rows on that pair's front in that setting
    fronts: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class AblationView:
    sweep: str
    metrics: list[str]
    higher_is_better: dict[str, bool]
    groups: list[dict[str, Any]]  # {model, task, clip_seconds, rows: [{run_id, variant, overrides, cells}]}


@dataclass
class ReportInput:
    title: str
    runs: list[RunSummary]
    aggregates: pd.DataFrame
    metric_order: list[str] = field(default_factory=list)
    primary_metric: str | None = None
    confidence: float = 0.95
    baseline: Baseline | None = None
    deltas: pd.DataFrame = field(default_factory=pd.DataFrame)
    scoreboards: list[dict[str, Any]] = field(default_factory=list)
    real_models: frozenset[str] = frozenset()  # models that are real clips: the reference band over time
    history: pd.DataFrame = field(default_factory=pd.DataFrame)  # gated metrics over several runs of one suite
    answers: list[str] = field(default_factory=list)
    drift: pd.DataFrame = field(default_factory=pd.DataFrame)
    pareto: ParetoInput | None = None
    ablations: list[AblationView] = field(default_factory=list)
    gallery_columns: list[tuple[str, str]] = field(default_factory=list)
    gallery: list[GalleryRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # about consistency verdicts and motion (static rows, counterparts not scored): shown by the results
    motion_notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- numbers

def _nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def format_value(value: float, low: float, high: float) -> str:
    """'0.912 [0.871, 0.940]': the value and its interval's own bounds (intervals here are often
    lopsided: a distance clamped at 0, a rate near 0), at a precision the interval justifies."""
    if _nan(value):
        return "—"
    half = (high - low) / 2 if not (_nan(low) or _nan(high)) else 0.0
    digits = 4 if half == 0 else max(2, min(6, 1 - int(math.floor(math.log10(half))) + 1))
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]" if half > 0 else f"{value:.{digits}f}"


def format_delta(delta: float, low: float, high: float) -> str:
    """'Δ +0.012 [+0.004, +0.020]': the interval's width sets the decimals."""
    if _nan(delta):
        return "Δ —"
    if _nan(low) or _nan(high):
        return f"Δ {delta:+.4g}"
    half = (high - low) / 2
    digits = 4 if half <= 0 else max(0, min(6, -int(math.floor(math.log10(half)))))
    while digits < 6 and any(b != 0 and round(b, digits) == 0 for b in (low, high)):
        digits += 1  # a bound that is not zero never reads as zero
    return f"Δ {delta:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def _short(value: float) -> str:
    return "—" if _nan(value) else f"{value:.4g}"


def _row_label(run_id: str, model: str, several_runs: bool) -> str:
    return f"{model} · {run_id}" if several_runs else model


# ---------------------------------------------------------------- tables

def aggregate_table(aggregates: pd.DataFrame, deltas: pd.DataFrame | None = None, metric_order: list[str] | None = None,
                    baseline: Baseline | None = None) -> dict[str, Any]:
    """Rows (run, model, task, clip length) x one column per metric: 'value ± half CI (n)' and, where
    the row has a baseline, 'Δ delta [low, high]' with a significance mark."""
    if aggregates.empty:
        return {"metrics": [], "rows": [], "direction": {}}
    metrics = metric_order or list(dict.fromkeys(aggregates["metric"]))
    direction = {m: bool(h) for m, h in zip(aggregates["metric"], aggregates["higher_is_better"])}
    keys = ["run_id", "model", "task", "clip_seconds"]
    by_key: dict[tuple, dict[str, Any]] = {}
    if deltas is not None and not deltas.empty:
        for d in deltas.to_dict("records"):
            by_key[(d["run_id"], d["model"], d["task"], float(d["clip_seconds"]), d["metric"])] = d
    rows = []
    for key, group in aggregates.groupby(keys, sort=False):
        run_id, model, task, seconds = key
        is_baseline = baseline is not None and (
            (baseline.kind == "model" and model == baseline.model) or
            (baseline.kind == "run" and run_id == baseline.run_id) or
            (baseline.kind == "run+model" and (run_id, model) == (baseline.run_id, baseline.model)))
        cells = {}
        for _, r in group.iterrows():
            interval = ("no interval from a single prompt" if _nan(r["ci_low"]) else
                        f"{r['ci_low']:.6g} – {r['ci_high']:.6g} ({'resampled clips' if r['metric'] == 'fvd' else 'bootstrap over prompts'})")
            cell = {"text": format_value(r["value"], r["ci_low"], r["ci_high"]), "n": int(r["n"]), "title": interval}
            if isinstance(r.get("rank_note"), str):
                cell["text"] += " ⚠ n < 2d"
                cell["title"] += "; " + r["rank_note"]
            d = by_key.get((run_id, model, task, float(seconds), r["metric"]))
            if d is not None:
                against = f"{d['baseline_model']} · {d['baseline_run']}"
                static = d.get("static_note")
                cell["delta"] = {
                    "text": format_delta(d["delta"], d["ci_low"], d["ci_high"]), "verdict": d["verdict"],
                    "css": d["verdict"].replace("/", ""), "mark": MARKS[d["verdict"]],
                    "title": (f"{'paired over' if d['paired'] else 'unpaired (no shared units);'} {d['n']} units; "
                              f"against {against}" + (f"; better, but {static}" if isinstance(static, str) else ""))}
            cells[r["metric"]] = cell
        rows.append({"key": dict(zip(keys, key)), "cells": cells, "baseline": is_baseline})
    return {"metrics": metrics, "rows": rows, "direction": direction}


SHORT_MARKS = {"better": "▲", "worse": "▼", "same": "=", "n/a": "", "static": "static"}


def scoreboard_views(boards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scoreboards as the template draws them: each cell's text, shade, mark and hover text."""
    out = []
    for board in boards:
        rows = []
        for row in board["rows"]:
            cells = {}
            for metric, c in row["cells"].items():
                title = [f"{c['n']} units" + (f"; rank {c['rank']}" if c.get("rank") else "")]
                if isinstance(c.get("static"), str):
                    title.append(f"not ranked: {c['static']}")
                if isinstance(c.get("rank_note"), str):
                    title.append(c["rank_note"])
                mark = "static" if isinstance(c.get("static"), str) else SHORT_MARKS.get(c.get("verdict") or "n/a", "")
                cells[metric] = {"text": format_value(c["value"], c["low"], c["high"])
                                 + (" ⚠" if isinstance(c.get("rank_note"), str) else ""),
                                 "shade": c.get("shade"), "mark": mark,
                                 "css": "static" if mark == "static" else (c.get("verdict") or "").replace("/", ""),
                                 "title": "; ".join(title)}
            rows.append({"label": row["label"], "real": row["real"], "cells": cells})
        columns = {m: {**col, "arrow": "↑" if col["higher_is_better"] else "↓",
                       "title": f"{col['definition']} — version: {col['version']}"}
                   for m, col in board["columns"].items()}
        out.append({"setting": f"{board['clip_seconds']:g} s {board['task']}", "groups": board["groups"],
                    "columns": columns, "rows": rows})
    return out


def ablation_tables(views: list[AblationView]) -> list[dict[str, Any]]:
    out = []
    for view in views:
        groups = []
        for g in view.groups:
            rows = []
            for r in g["rows"]:
                cells = {}
                for m, c in r["cells"].items():
                    cells[m] = {"text": format_value(c["value"], c["ci_low"], c["ci_high"]), "n": c["n"], "best": c["best"]}
                    if c.get("delta"):
                        d = c["delta"]
                        cells[m]["delta"] = {"text": format_delta(d["delta"], d["ci_low"], d["ci_high"]),
                                             "mark": MARKS[d["verdict"]], "css": d["verdict"].replace("/", "")}
                overrides = ", ".join(f"{k} = {v}" for k, v in r["overrides"].items()) or r["variant"]
                rows.append({"run_id": r["run_id"], "variant": r["variant"], "overrides": overrides, "cells": cells})
            groups.append({"model": g["model"], "task": g["task"], "seconds": f"{g['clip_seconds']:g}", "rows": rows})
        out.append({"sweep": view.sweep, "metrics": view.metrics,
                    "arrows": {m: "↑" if view.higher_is_better.get(m, True) else "↓" for m in view.metrics},
                    "groups": groups})
    return out


# ---------------------------------------------------------------- plots

def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    # a figure laid out by matplotlib's layout engine fits its canvas: a tight bounding box would
    # only draw it a second time
    fig.savefig(buffer, format="png", dpi=110, bbox_inches=None if fig.get_layout_engine() else "tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _colours(labels: list[str]) -> dict[str, Any]:
    plt = _pyplot()
    cycle = plt.get_cmap("tab10").colors
    return {label: cycle[i % len(cycle)] for i, label in enumerate(dict.fromkeys(labels))}


def metric_plots(aggregates: pd.DataFrame, metric_order: list[str], confidence: float) -> list[dict[str, str]]:
    """Per metric: each (run, model) as a point with its bootstrap interval, one colour per (task, clip length)."""
    if aggregates.empty:
        return []
    plt = _pyplot()
    several_runs = aggregates["run_id"].nunique() > 1
    table = aggregates.assign(row=[_row_label(r, m, several_runs) for r, m in zip(aggregates["run_id"], aggregates["model"])],
                              setting=[f"{t} · {s:g} s" for t, s in zip(aggregates["task"], aggregates["clip_seconds"])])
    rows = list(dict.fromkeys(table["row"]))
    settings = list(dict.fromkeys(table["setting"]))
    colours = _colours(settings)
    plots = []
    for metric in metric_order:
        group = table[table["metric"] == metric]
        if group.empty:
            continue
        fig, ax = plt.subplots(figsize=(4.6, 0.9 + 0.38 * len(rows) * max(1, len(settings)) ** 0.5),
                               constrained_layout=True)
        offsets = {s: (i - (len(settings) - 1) / 2) * (0.5 / max(1, len(settings))) for i, s in enumerate(settings)}
        for setting in settings:
            part = group[group["setting"] == setting]
            if part.empty:
                continue
            y = [rows.index(r) + offsets[setting] for r in part["row"]]
            low = (part["value"] - part["ci_low"]).fillna(0).clip(lower=0)
            high = (part["ci_high"] - part["value"]).fillna(0).clip(lower=0)
            ax.errorbar(part["value"], y, xerr=[low, high], fmt="o", markersize=4, capsize=3, color=colours[setting],
                        label=setting)
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"{metric} ({'higher' if bool(group['higher_is_better'].iloc[0]) else 'lower'} is better)")
        ax.grid(axis="x", alpha=0.3)
        if len(settings) > 1:
            ax.legend(fontsize=7, loc="best")
        plots.append({"metric": metric, "src": _png(fig),
                      "caption": f"{metric}: mean over prompts with the {round(100 * confidence)}% bootstrap interval"})
        plt.close(fig)
    return plots


# series whose time axis is not the time in the clip
X_LABELS = {"identity_decay": "seconds between the frames compared"}


def drift_plots(drift: pd.DataFrame, confidence: float, real_models: set[str] | frozenset = frozenset()) -> list[dict[str, str]]:
    """Small multiples, one figure per metric: a panel per (task, clip length), one line per model
    (one colour per model throughout), the real clips as a grey band, and each line's slope per
    second written at its end."""
    if drift.empty:
        return []
    plt = _pyplot()
    several_runs = drift["run_id"].nunique() > 1
    drift = drift.assign(label=[_row_label(r, m, several_runs) for r, m in zip(drift["run_id"], drift["model"])])
    colours = _colours([label for label, model in zip(drift["label"], drift["model"]) if model not in real_models])
    plots = []
    for metric, group in drift.groupby("metric", sort=False):
        settings = sorted(set(zip(group["task"], group["clip_seconds"])))
        columns = min(3, len(settings))
        rows = -(-len(settings) // columns)
        fig, axes = plt.subplots(rows, columns, figsize=(1.0 + 4.0 * columns, 0.6 + 2.6 * rows), squeeze=False,
                                 sharey=True, constrained_layout=True)
        for ax in axes.flat[len(settings):]:
            ax.set_visible(False)
        for ax, (task, seconds) in zip(axes.flat, settings):
            panel = group[(group["task"] == task) & (group["clip_seconds"] == seconds)]
            for (name, model), line in panel.groupby(["label", "model"], sort=False):
                line = line.sort_values("t_seconds")
                if model in real_models:
                    ax.fill_between(line["t_seconds"], line["low"], line["high"], color="0.75", alpha=0.6, linewidth=0,
                                    label=f"{name} (real)")
                    continue
                ax.plot(line["t_seconds"], line["mean"], marker="o", markersize=2, color=colours[name], label=name)
                ax.fill_between(line["t_seconds"], line["low"], line["high"], color=colours[name], alpha=0.15, linewidth=0)
                if len(line) >= 2:
                    slope = np.polyfit(line["t_seconds"], line["mean"], 1)[0]
                    ax.annotate(f"{slope:+.2g}/s", (line["t_seconds"].iloc[-1], line["mean"].iloc[-1]), fontsize=6.5,
                                color=colours[name], xytext=(3, 0), textcoords="offset points", va="center")
            ax.set_title(f"{task} · {seconds:g} s (n ≤ {int(panel['n'].max())} prompts)", fontsize=8.5)
            ax.set_xlabel(X_LABELS.get(metric, "time in clip (s)"), fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel(metric, fontsize=8)
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7, loc="outside lower center", ncols=min(5, len(labels)))
        plots.append({"metric": metric, "src": _png(fig),
                      "caption": f"{metric} over time: mean over prompts per segment with its {round(100 * confidence)}% "
                                 "bootstrap interval; grey: the real clips; the slope of each line per second at its end"})
        plt.close(fig)
    return plots


def history_plots(history: pd.DataFrame, confidence: float) -> list[dict[str, str]]:
    """One figure per gated metric: its value in each run (oldest first) with the interval as an
    error bar, a line per (model, task, clip length): CI's numbers over time, as asv draws them."""
    if history.empty:
        return []
    plt = _pyplot()
    plots = []
    for metric, group in history.groupby("metric", sort=False):
        runs = group.drop_duplicates("position").sort_values("position")
        fig, ax = plt.subplots(figsize=(min(12.0, 3.0 + 0.9 * len(runs)), 3.2), constrained_layout=True)
        series = group.groupby(["model", "task", "clip_seconds"], sort=True)
        colours = _colours([f"{m} · {t} · {c:g} s" for (m, t, c), _ in series])
        for (model, task, seconds), line in series:
            name = f"{model} · {task} · {seconds:g} s"
            line = line.sort_values("position")
            low = (line["value"] - line["ci_low"]).clip(lower=0).fillna(0)
            high = (line["ci_high"] - line["value"]).clip(lower=0).fillna(0)
            ax.errorbar(line["position"], line["value"], yerr=[low, high], marker="o", markersize=3, capsize=2,
                        color=colours[name], label=name)
        ax.set_xticks(list(runs["position"]), [r[-15:] for r in runs["run_id"]], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(f"{metric} ({'higher' if bool(group['higher_is_better'].iloc[0]) else 'lower'} is better)",
                      fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        plots.append({"metric": metric, "src": _png(fig),
                      "caption": f"{metric} in each run, oldest first, with its {round(100 * confidence)}% interval"})
        plt.close(fig)
    return plots


# Okabe & Ito's colour-blind-safe palette: one colour per row of the Pareto panels
PARETO_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]


def pareto_view(pareto: ParetoInput | None, real_models: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """What the page's script draws: one SVG panel per (task, clip length), quality against cost for
    the pair the reader picks, each row's value with its interval, the real clips' quality as a
    reference line, and the front computed here (``pareto.fronts``)."""
    if pareto is None:
        return None
    if pareto.note or pareto.points.empty:
        return {"note": pareto.note or "nothing to plot"}
    points = pareto.points
    several_runs = points["run_id"].nunique() > 1
    rows = list(dict.fromkeys(zip(points["run_id"], points["model"])))
    labels = {f"{r}|{m}": _row_label(r, m, several_runs) for r, m in rows}
    generators = [key for key in labels if key.split("|", 1)[1] not in real_models]
    settings = [{"task": t, "seconds": f"{s:g}"} for t, s in
                sorted(set(zip(points["task"], points["clip_seconds"])), key=lambda ts: (ts[0], ts[1]))]
    values: dict[str, dict[str, list[float | None]]] = defaultdict(dict)
    for p in points.itertuples(index=False):
        key = f"{p.run_id}|{p.model}|{p.task}|{p.clip_seconds:g}"
        values[key][p.metric] = [None if _nan(v) else float(v) for v in (p.value, p.ci_low, p.ci_high)]
    return {
        "quality": pareto.quality_metric, "cost": pareto.throughput_metric,
        "data": {"qualities": pareto.qualities, "costs": pareto.costs, "settings": settings,
                 "rows": [{"key": k, "label": labels[k], "colour": PARETO_COLOURS[i % len(PARETO_COLOURS)]}
                          for i, k in enumerate(generators)],
                 "real": [k for k in labels if k not in generators], "values": values, "fronts": pareto.fronts,
                 "initial": {"quality": pareto.quality_metric, "cost": pareto.throughput_metric}},
    }


# ---------------------------------------------------------------- videos

def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "video"


def embed_gallery(columns: list[tuple[str, str]], rows: list[GalleryRow], output: Path, budget: int) -> dict[str, Any]:
    """Videos inline as data URIs while their total stays under ``budget`` bytes; the rest copied
    into ``<report stem>_videos/`` beside the report and linked relatively, so the folder travels
    with the page."""
    several_runs = len({run for run, _ in columns}) > 1
    sidecar = output.parent / f"{output.stem}_videos"
    used, copied, out_rows = 0, set(), []
    for row in rows:
        cells = []
        for item in row.items:
            if item is None:
                cells.append(None)
                continue
            entry: dict[str, Any] = {"model": item.model, "run_id": item.run_id, "column": len(cells)}
            suffix = item.video.suffix.lower()
            entry["type"] = VIDEO_TYPES.get(suffix, "video/mp4")
            entry["image"] = entry["type"].startswith("image/")
            if not item.video.is_file():
                entry["missing"] = str(item.video)
            else:
                size = item.video.stat().st_size
                if used + size <= budget:
                    used += size
                    entry["src"] = f"data:{entry['type']};base64," + base64.b64encode(item.video.read_bytes()).decode()
                else:
                    name = f"{_safe_name(item.run_id)}__{_safe_name(item.model)}__{item.video.name}"
                    target = sidecar / name
                    sidecar.mkdir(parents=True, exist_ok=True)
                    if not (target.is_file() and target.stat().st_size == size):
                        shutil.copyfile(item.video, target)
                    copied.add(name)
                    entry["src"] = Path(os.path.relpath(target, output.parent)).as_posix()
            cells.append(entry)
        out_rows.append({"prompt_id": row.prompt_id, "prompt": row.prompt, "task": row.task,
                         "seconds": f"{row.clip_seconds:g}", "seed": row.seed, "cells": cells,
                         "fps": f"{row.fps:g}", "last_frame": max(0, row.num_frames - 1)})
    if sidecar.is_dir():  # videos of an earlier rendering of this report that it no longer shows
        for stale in sidecar.glob("*"):
            if stale.is_file() and stale.name not in copied and stale.suffix.lower() in VIDEO_TYPES:
                stale.unlink()
        if not any(sidecar.iterdir()):
            sidecar.rmdir()
    return {"columns": [{"run_id": r, "model": m, "label": _row_label(r, m, several_runs)} for r, m in columns],
            "tasks": list(dict.fromkeys(row.task for row in rows)),
            "lengths": list(dict.fromkeys(f"{row.clip_seconds:g}" for row in rows)),
            "rows": out_rows, "inline_bytes": used, "sidecar": sidecar.name if copied else None,
            "sidecar_count": len(copied)}


# ---------------------------------------------------------------- the page

def render_report(data: ReportInput, output: str | Path, *, embed_budget: int = DEFAULT_EMBED_BUDGET) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    import yaml

    several_runs = len(data.runs) > 1
    metric_order = data.metric_order or (list(dict.fromkeys(data.aggregates["metric"])) if not data.aggregates.empty else [])
    html = env.get_template("report.html.j2").render(
        title=data.title,
        runs=[{**run.__dict__, "config_yaml": yaml.safe_dump(run.config, sort_keys=False)} for run in data.runs],
        several_runs=several_runs,
        table=aggregate_table(data.aggregates, data.deltas, metric_order, data.baseline),
        confidence=round(100 * data.confidence),
        baseline=data.baseline,
        primary=data.primary_metric,
        scoreboards=scoreboard_views(data.scoreboards),
        answers=data.answers,
        metric_info=_metric_info(data.runs),
        metric_plots=metric_plots(data.aggregates, metric_order, data.confidence),
        drift_plots=drift_plots(data.drift, data.confidence, data.real_models),
        history_plots=history_plots(data.history, data.confidence),
        pareto=pareto_view(data.pareto, data.real_models),
        ablations=ablation_tables(data.ablations),
        gallery=embed_gallery(data.gallery_columns, data.gallery, output, embed_budget),
        notes=data.notes,
        motion_notes=data.motion_notes,
    )
    tmp = output.with_suffix(output.suffix + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(output)
    return output


def _metric_info(runs: list[RunSummary]) -> list[dict[str, Any]]:
    seen: dict[tuple, dict[str, Any]] = {}
    for run in runs:
        for info in run.metric_info:
            seen.setdefault((info["metric"], info["version"], info["extractor"]), info)
    return list(seen.values())
