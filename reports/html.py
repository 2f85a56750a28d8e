"""Self-contained HTML reports: tables, plots and videos in one file that opens anywhere.

This package only renders what it is given (pandas tables, dicts, video files on disk); it
never runs a model or a metric.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_EMBED_BUDGET = 8 * 1024 * 1024


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
    metric_info: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class GalleryItem:
    run_id: str
    model: str
    task: str
    clip_seconds: float
    prompt: str
    video: Path


@dataclass
class ReportInput:
    title: str
    runs: list[RunSummary]
    aggregates: pd.DataFrame
    series: pd.DataFrame = field(default_factory=pd.DataFrame)
    gallery: list[GalleryItem] = field(default_factory=list)


def format_value(value: float, low: float, high: float) -> str:
    """Value with its interval's half-width, at a precision the interval justifies."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    half = (high - low) / 2 if not (low is None or high is None or math.isnan(low) or math.isnan(high)) else 0.0
    digits = 4 if half == 0 else max(2, min(6, 1 - int(math.floor(math.log10(half))) + 1))
    return f"{value:.{digits}f} ± {half:.{digits}f}" if half > 0 else f"{value:.{digits}f}"


def aggregate_table(aggregates: pd.DataFrame) -> dict[str, Any]:
    """Rows (run, model, task, clip length) x one column per metric, cells 'value ± half CI (n)'."""
    if aggregates.empty:
        return {"metrics": [], "rows": []}
    metrics = list(dict.fromkeys(aggregates["metric"]))
    rows = []
    keys = ["run_id", "model", "task", "clip_seconds"]
    for key, group in aggregates.groupby(keys, sort=False):
        cells = {}
        for _, r in group.iterrows():
            interval = ("no interval from a single prompt" if math.isnan(r["ci_low"]) else
                        f"{r['ci_low']:.6g} – {r['ci_high']:.6g} (bootstrap interval over prompts)")
            cells[r["metric"]] = {"text": format_value(r["value"], r["ci_low"], r["ci_high"]), "n": int(r["n"]), "title": interval}
        rows.append({"key": dict(zip(keys, key)), "cells": cells})
    return {"metrics": metrics, "rows": rows}


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def series_plots(series: pd.DataFrame) -> list[dict[str, str]]:
    """One plot per metric: the mean over units of each value-over-time series, per model and task."""
    if series.empty:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    for metric, group in series.groupby("metric", sort=False):
        fig, ax = plt.subplots(figsize=(6.4, 3.2))
        for (run_id, model, task, seconds), line in group.groupby(["run_id", "model", "task", "clip_seconds"]):
            mean = line.groupby("t_seconds")["value"].mean()
            label = f"{model} · {task} · {seconds:g}s" + (f" · {run_id}" if group["run_id"].nunique() > 1 else "")
            ax.plot(mean.index, mean.values, marker="o", markersize=3, label=label)
        ax.set_xlabel("segment start (s)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        plots.append({"metric": metric, "src": _png(fig)})
        plt.close(fig)
    return plots


def embed_gallery(items: list[GalleryItem], output: Path, budget: int) -> list[dict[str, str]]:
    """Videos inline as data URIs while under ``budget`` bytes, else linked relative to the report."""
    used, out = 0, []
    for item in items:
        entry = {"model": item.model, "task": item.task, "seconds": f"{item.clip_seconds:g}", "prompt": item.prompt,
                 "run_id": item.run_id}
        if not item.video.exists():
            entry["missing"] = str(item.video)
        elif used + item.video.stat().st_size <= budget:
            data = item.video.read_bytes()
            used += len(data)
            entry["src"] = "data:video/mp4;base64," + base64.b64encode(data).decode()
        else:
            entry["src"] = Path(_relative(item.video, output.parent)).as_posix()
        out.append(entry)
    return out


def _relative(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())


def render_report(data: ReportInput, output: str | Path, *, embed_budget: int = DEFAULT_EMBED_BUDGET) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    import yaml

    html = env.get_template("report.html.j2").render(
        title=data.title,
        runs=[{**run.__dict__, "config_yaml": yaml.safe_dump(run.config, sort_keys=False)} for run in data.runs],
        table=aggregate_table(data.aggregates),
        confidence=sorted({int(round(100 * run.config.get("gate", {}).get("confidence", 0.95))) for run in data.runs}),
        metric_info=_metric_info(data.runs),
        plots=series_plots(data.series),
        gallery=embed_gallery(data.gallery, output, embed_budget),
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
