"""Collect what a report shows from the store, and hand it to ``reports`` to render."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reports.html import GalleryItem, ReportInput, RunSummary, render_report
from vbench_flow.store import Store


def _summary(store: Store, run_id: str) -> RunSummary:
    run = store.run(run_id)
    units = store.units(run_id)
    failed = units[units["status"] == "failed"]
    return RunSummary(
        run_id=run_id, suite=run["suite"], variant=run["variant"], status=run["status"], created=run["created"],
        expected=int(run["expected"] or 0), done=int(run["done"] or 0), failed=int(run["failed"] or 0),
        seed=int(run["seed"] or 0), config=run["config"], environment=run["env"],
        failures=failed[["unit_id", "stage", "error"]].to_dict("records"),
        metric_info=store.metric_info(run_id).to_dict("records"),
    )


def _gallery(store: Store, run_id: str, per_model: int) -> list[GalleryItem]:
    if per_model <= 0:
        return []
    run = store.run(run_id)
    units = store.units(run_id)
    units = units[units["status"] == "ok"]
    prompts = list(dict.fromkeys(units.sort_values("unit_id")["prompt_id"]))[:per_model]
    items = []
    for prompt_id in prompts:
        chosen = units[units["prompt_id"] == prompt_id].sort_values(["task", "clip_seconds", "seed"])
        for (model, task, seconds), rows in chosen.groupby(["model", "task", "clip_seconds"], sort=False):
            row = rows.iloc[0]
            items.append(GalleryItem(run_id, model, task, float(seconds), row["prompt"], Path(run["run_dir"]) / row["video"]))
    return items


def build_report_input(store: Store, run_ids: list[str], title: str | None = None) -> ReportInput:
    summaries = [_summary(store, run_id) for run_id in run_ids]
    series = [store.sample_series(r).assign(run_id=r) for r in run_ids]
    gallery = [item for s in summaries for item in _gallery(store, s.run_id, int(s.config.get("report", {}).get("gallery", 4)))]
    default_title = summaries[0].config.get("report", {}).get("title") or f"vbench-flow report: {summaries[0].suite}"
    return ReportInput(
        title=title or default_title,
        runs=summaries,
        aggregates=store.aggregates(run_ids),
        series=pd.concat(series, ignore_index=True) if series else pd.DataFrame(),
        gallery=gallery,
    )


def write_report(store: Store, run_ids: list[str], output: str | Path, title: str | None = None) -> Path:
    return render_report(build_report_input(store, run_ids, title), output)
