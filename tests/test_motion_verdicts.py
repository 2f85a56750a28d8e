"""Consistency verdicts see motion: motion_magnitude (mean optical-flow magnitude), and a model that
barely moves is flagged static, so its "better" flicker is "static: not a win" in the report (and
not counted in who won) and in the gate's markdown and JUnit (a regression stays a regression).

Runs are fabricated straight into a store (no generation), so the file takes a few seconds."""

from __future__ import annotations

import re
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from vbench_flow.motion_check import DEFAULT_STATIC_MARGIN, suite_static_margin

from metrics.motion import MotionMagnitude, MotionMagnitudeMetric, motion_magnitude
from metrics.streaming import ClipContext
from vbench_flow import gate
from vbench_flow.aggregate import aggregate_records
from vbench_flow.reporting import build_report_input, write_report
from vbench_flow.store import Store, SampleRecord

FLICKER = {"version": "flicker/1", "extractor": "none", "higher_is_better": True, "kind": "quality"}
MOTION = {"version": "motion/1", "extractor": "optical flow", "higher_is_better": True, "kind": "quality"}


def translating(size: int = 64, frames: int = 9, step: int = 3) -> np.ndarray:
    """A smooth random texture seen through a window that slides ``step`` px a frame."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (2 * size, size + step * frames)).astype(np.float32), (0, 0), 2.0)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return np.stack([np.repeat(texture[:size, step * t: step * t + size, None], 3, -1) for t in range(frames)])


# ---------------------------------------------------------------- the metric

def test_motion_magnitude_of_still_and_translating_clips():
    clip = translating()
    assert motion_magnitude(np.repeat(clip[:1], 5, axis=0)) == 0.0
    assert motion_magnitude(clip) == pytest.approx(3.0, abs=0.3)
    metric = MotionMagnitudeMetric()
    assert "opencv-dis(preset=medium" in metric.version and metric.higher_is_better and metric.motion_counterpart is None
    result = metric.score(clip, ClipContext(fps=8.0))
    assert len(result.series) == len(clip) - 1 and result.series[1][0] == pytest.approx(1 / 8)


def test_streaming_chunks_and_merged_parts_equal_the_whole():
    clip = translating(frames=10)
    whole = MotionMagnitude(8.0).score(clip)
    streamed = MotionMagnitude(8.0)
    for start, end in ((0, 1), (1, 4), (4, 5), (5, 10)):
        streamed.update(clip[start:end])
    assert streamed.compute().value == whole.value and streamed.compute().series == whole.series
    first, second = MotionMagnitude(8.0), MotionMagnitude(8.0)
    first.update(clip[:6])
    second.update(clip[6:])
    first.merge(second)
    assert first.compute().value == pytest.approx(whole.value, rel=1e-12)


def test_registry_and_store_know_the_counterpart(tmp_path):
    from vbench_flow.registry import get_metric

    assert get_metric("motion_magnitude").motion_counterpart is None
    for name in ("warping_error", "object_colour_change", "object_size_change"):
        assert get_metric(name).motion_counterpart == "motion_magnitude", name
    store = Store(tmp_path / "vbf.sqlite")
    store.set_metric_info("r", "warping_error", "v", "e", False, "quality")  # from the registry
    store.set_metric_info("r", "custom", "v", "e", True, "quality", motion_counterpart=None)
    info = store.metric_info("r").set_index("metric")["motion_counterpart"]
    assert info["warping_error"] == "motion_magnitude" and info["custom"] is None


def test_older_store_gains_the_column_and_reads_none(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE metric_info (run_id TEXT NOT NULL, metric TEXT NOT NULL, version TEXT, extractor TEXT, "
                   "higher_is_better INTEGER, kind TEXT, args TEXT, PRIMARY KEY (run_id, metric))")
        db.execute("INSERT INTO metric_info VALUES ('old', 'flicker', '1', 'none', 1, 'quality', '{}')")
        db.execute("PRAGMA user_version=2")
    info = Store(path).metric_info("old")
    assert info.loc[0, "motion_counterpart"] is None


# ---------------------------------------------------------------- the report

PROMPTS = 6
# model -> (flicker, motion): "still" flickers least because it barely moves; "mover" is steadier
# than the real clips and moves about as much
MODELS = {"real": (0.90, 2.0), "still": (0.99, 0.2), "mover": (0.95, 1.9)}


def fabricate_run(store: Store, root: Path, run_id: str, *, with_motion: bool = True, margin: float = 0.2,
                  gate_margin: float | None = None) -> None:
    metrics = ["flicker", "motion_magnitude"] if with_motion else ["flicker"]
    config = {"name": "lh", "seed": 0, "gate": {"confidence": 0.95, "resamples": 200},
              "models": [{"name": "real", "type": "dataset"}, {"name": "still", "type": "python"},
                         {"name": "mover", "type": "python"}],
              "metrics": [{"name": m, **({"margin": gate_margin} if m == "flicker" and gate_margin else {})}
                          for m in metrics],
              "report": {"baseline_model": "real", "gallery": 0, "static_margin": margin}}
    store.upsert_run(run_id, suite="lh", status="complete", seed=0, config_json=config, run_dir=str(root),
                     expected=3 * PROMPTS, done=3 * PROMPTS, failed=0)
    info = {"flicker": FLICKER, "motion_magnitude": MOTION}
    store.set_metric_info(run_id, "flicker", **FLICKER, motion_counterpart="motion_magnitude")
    if with_motion:
        store.set_metric_info(run_id, "motion_magnitude", **MOTION, motion_counterpart=None)
    rng = np.random.default_rng(1)
    records = []
    for model, (flicker, motion) in MODELS.items():
        for i in range(PROMPTS):
            values = {"flicker": flicker + rng.normal(0, 0.005), "motion_magnitude": motion + rng.normal(0, 0.05)}
            record = SampleRecord(unit_id=f"{model}-{i}", model=model, task="t2v", clip_seconds=5.0, prompt_id=f"p{i}",
                                  seed=0, prompt=f"prompt {i}", status="ok", height=16, width=16, fps=8.0,
                                  metrics={m: values[m] for m in metrics})
            store.record_sample(run_id, record)
            records.append(record)
    store.set_aggregates(run_id, aggregate_records(records, info, confidence=0.95, resamples=200, seed=0))


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(tmp_path / "vbf.sqlite")
    fabricate_run(store, tmp_path, "moving")
    fabricate_run(store, tmp_path, "nomotion", with_motion=False)
    return store


def ranks(data, metric: str) -> dict[str, int | None]:
    """Each row's rank on the metric's scoreboard column (None: not ranked)."""
    [board] = data.scoreboards
    return {row["label"]: row["cells"][metric].get("rank") for row in board["rows"]}


def test_report_flags_a_static_win_and_leaves_it_out_of_who_won(store, tmp_path):
    data = build_report_input(store, ["moving"])
    d = data.deltas.set_index(["model", "metric"])
    assert d.loc[("still", "flicker"), "verdict"] == "static"
    assert "still moves 0.2" in d.loc[("still", "flicker"), "static_note"]
    assert d.loc[("mover", "flicker"), "verdict"] == "better"  # moves about as much as real: a real win
    assert d.loc[("still", "motion_magnitude"), "verdict"] == "worse"  # the counterpart itself is untouched
    assert ranks(data, "flicker") == {"real": None, "still": None, "mover": 1}  # the static row is not ranked
    assert any("Static rows" in n and "still" in n for n in data.motion_notes)
    page = write_report(store, ["moving"], tmp_path / "report.html").read_text()
    assert 'class="delta static"' in page and "static: not a win" in page
    # the scoreboard marks the static cell and leaves it unshaded (not ranked), saying why on hover
    assert '<span class="static">static</span>' in page and "not ranked: still moves 0.2" in page
    assert "better, but still moves 0.2" in page  # the tooltip says how much it moves


def test_no_winner_when_every_row_is_static_or_real(store, tmp_path):
    fabricate_run(store, tmp_path, "strict", margin=0.0)  # mover (1.9 < 2.0) is static too
    data = build_report_input(store, ["strict"])
    assert ranks(data, "flicker") == {"real": None, "still": None, "mover": None} and not data.answers


def test_report_without_the_counterpart_says_so_once_and_changes_nothing(store, tmp_path):
    data = build_report_input(store, ["nomotion"])
    assert data.deltas.set_index(["model", "metric"]).loc[("still", "flicker"), "verdict"] == "better"
    assert ranks(data, "flicker") == {"real": None, "still": 1, "mover": 2}
    [note] = data.motion_notes
    assert "No motion counterpart scored" in note and "flicker" in note
    page = write_report(store, ["nomotion"], tmp_path / "nomotion.html").read_text()
    assert page.count("No motion counterpart scored") == 1 and 'class="delta static"' not in page


# ---------------------------------------------------------------- the gate

def side(flicker: float, motion: float, *, counterparts: bool = True) -> gate.GateSide:
    """A run of model "gen" (flicker, motion) beside its real clips (flicker 0.90, motion 2.0)."""
    rng = np.random.default_rng(2)
    rows = [(model, "t2v", 5.0, f"p{i}", 0, metric, value + rng.normal(0, 0.004))
            for model, f, m in (("gen", flicker, motion), ("real", 0.90, 2.0))
            for i in range(PROMPTS) for metric, value in (("flicker", f), ("motion_magnitude", m))]
    config = {"models": [{"name": "gen", "type": "starflow"}, {"name": "real", "type": "dataset"}]}
    return gate.GateSide(label="x", suite="lh", variant=None, run_id="x", seed=0,
                         resolutions={"gen": "16x16", "real": "16x16"}, fps=8.0,
                         metric_info={"flicker": FLICKER, "motion_magnitude": MOTION},
                         samples=pd.DataFrame(rows, columns=gate.SAMPLE_COLUMNS),
                         aggregates=pd.DataFrame(columns=gate.AGGREGATE_COLUMNS), config=config,
                         motion_counterparts={"flicker": "motion_magnitude"} if counterparts else {})


def gate_outputs(current: gate.GateSide, baseline: gate.GateSide) -> tuple[gate.MetricComparison, str, str]:
    comparisons = gate.compare_sides(current, baseline, margins={"flicker": 0.01, "motion_magnitude": 5.0},
                                     resamples=200)
    decision = gate.decide(comparisons, strict=False, confidence=0.95)
    markdown = gate.markdown_summary(comparisons, decision, run_label="run x", baseline_label="base", confidence=0.95)
    junit = gate.junit_xml(comparisons, strict=False, confidence=0.95)
    return next(c for c in comparisons if c.metric == "flicker" and c.model == "gen"), markdown, junit


def test_gate_marks_a_static_improvement_and_never_hides_a_regression():
    baseline = side(0.90, 2.0)
    better, markdown, junit = gate_outputs(side(0.99, 0.2), baseline)
    assert better.verdict == gate.PASS and better.improved and better.static_not_a_win
    # read against the run's own real clips (as the report reads it), at the default margin
    assert re.match(r"moves 0\.\d+ vs real [12]\.\d+ \(motion_magnitude, more than 5% less\)", better.static)
    [row] = [line for line in markdown.splitlines() if line.startswith("| flicker |") and "gen" in line]
    assert row.endswith("| PASS · static: not a win |")
    case = next(c for c in ET.fromstring(junit).iter("testcase")
                if c.get("name") == "flicker" and c.get("classname").startswith("vbf.gate.gen."))
    assert "static: not a win" in case.find("system-out").text
    assert case.find("properties/property[@name='static']") is not None
    # the same improvement with the model moving as much as the baseline: a plain pass
    moving, markdown, _ = gate_outputs(side(0.99, 1.98), baseline)
    assert moving.static is None and "static: not a win" not in markdown
    # a static model that is also worse: a regression, said as one
    worse, markdown, junit = gate_outputs(side(0.80, 0.2), baseline)
    assert worse.verdict == gate.REGRESS and worse.static is not None and not worse.static_not_a_win
    assert "static: not a win" not in markdown and "static: not a win" not in junit
    assert "**REGRESS**" in markdown and '<failure message="REGRESS flicker' in junit
    # no counterpart known (a baseline file and an older run): nothing changes
    plain, markdown, _ = gate_outputs(side(0.99, 0.2, counterparts=False), side(0.90, 2.0, counterparts=False))
    assert plain.verdict == gate.PASS and plain.static is None and "static" not in markdown


def test_gate_reads_counterparts_and_margin_from_runs(store):
    current, baseline = gate.side_from_run(store, "moving"), gate.side_from_run(store, "moving")
    assert current.motion_counterparts == {"flicker": "motion_magnitude"}
    assert suite_static_margin(current.config) == 0.2 and suite_static_margin({}) == DEFAULT_STATIC_MARGIN == 0.05
    # motion is read against the run's own real clips, whatever the baseline: the still model is static
    # (0.2 vs 2.0), the mover is not (1.9 vs 2.0, within the run's 20 %), nor is the flicker of the real clips
    flagged = {(c.model, c.metric) for c in gate.compare_sides(current, baseline, resamples=100) if c.static}
    assert flagged == {("still", "flicker")}


def test_motion_itself_has_no_winner(store):
    """More motion is not better: motion_magnitude is read against the real clips, not ranked."""
    data = build_report_input(store, ["moving"])
    assert set(ranks(data, "motion_magnitude").values()) == {None} and ranks(data, "flicker")["mover"] == 1


def test_scoreboard_ranks_generators_only_and_the_answer_names_the_clear_winner(store, tmp_path):
    from vbench_flow.reporting import RANK_SHADES

    data = build_report_input(store, ["moving"])
    [board] = data.scoreboards
    assert (board["task"], board["clip_seconds"]) == ("t2v", 5.0)
    assert dict(board["groups"]) == {"consistency": ["flicker"], "motion": ["motion_magnitude"]}
    rows = {row["label"]: row for row in board["rows"]}
    assert board["rows"][0]["label"] == "real" and rows["real"]["real"]  # the reference comes first
    assert rows["real"]["cells"]["flicker"]["shade"] is None  # real clips are the reference, never ranked
    assert rows["still"]["cells"]["flicker"]["shade"] is None and rows["still"]["cells"]["flicker"]["static"]
    assert rows["mover"]["cells"]["flicker"]["shade"] == RANK_SHADES[0]  # the only generator that can win it
    assert all(row["cells"]["motion_magnitude"]["shade"] is None for row in board["rows"])  # motion is not ranked
    assert rows["mover"]["cells"]["flicker"]["verdict"] == "better"
    [answer] = data.answers
    # the real clips are the reference, not a contender; "still" is static: mover is the only ranked row
    assert answer.startswith("5 s t2v: mover is best on flicker (0.9498 [") and "ahead of" not in answer
    page = write_report(store, ["moving"], tmp_path / "board.html").read_text()
    assert f"background: {RANK_SHADES[0]}" in page and "<li>5 s t2v: mover is best on flicker" in page
    assert 'title="VBench temporal flickering' in page  # the column's definition on hover


def test_several_runs_of_a_suite_draw_each_gated_metric_over_the_runs(store, tmp_path):
    for run_id in ("ci-1", "ci-2"):
        fabricate_run(store, tmp_path, run_id, gate_margin=0.01)
    assert build_report_input(store, ["ci-1"]).history.empty  # one run: no history
    history = build_report_input(store, ["ci-2", "ci-1"]).history
    assert set(history["metric"]) == {"flicker"}  # gated metrics only; motion_magnitude has no margin
    assert list(history.drop_duplicates("run_id")["run_id"]) == ["ci-1", "ci-2"]  # oldest first, as made
    assert len(history) == 2 * len(MODELS) and (history["ci_low"] <= history["value"]).all()
    page = write_report(store, ["ci-1", "ci-2"], tmp_path / "history.html").read_text()
    assert "<h2>Run history</h2>" in page and 'alt="flicker over runs"' in page
