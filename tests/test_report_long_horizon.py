"""The report of a run shaped like ``suites/long_horizon.yaml`` (its models, tasks, clip lengths and
metrics; three prompts, values drawn at random) opened in headless Chromium at 1400 and 900 px as
a reader would use it: no console error, no sideways scrolling, every video ready, a scoreboard per
setting, Pareto panels whose labels never overlap for any quality metric picked, and gallery rows
that play in sync, seek frame by frame and filter by model and task."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.test_runner import vbf
from vbench_flow.aggregate import aggregate_records
from vbench_flow.registry import get_metric
from vbench_flow.store import AggregateRow, SampleRecord, Store
from vbench_flow.suite import load_suite
from vbench_flow.video_io import num_frames_for, write_video

SUITE = Path(__file__).resolve().parents[1] / "suites" / "long_horizon.yaml"
PROMPTS = 3
RUN = "long_horizon-shaped"
# metrics on which every generator scores the same in every clip: their Pareto points coincide
COINCIDENT = {"clipsim", "frames_per_second"}
# metrics drawn over time (every metric has a value; a few series keep matplotlib's share of the test short)
SERIES = {"clipsim", "flicker", "subject_consistency", "identity_decay", "object_colour_change"}


def _clip(frames: int, colour: tuple[int, int, int], seed: int) -> np.ndarray:
    """A square moving over a dark background: a video every browser decodes."""
    rng = np.random.default_rng(seed)
    clip = np.full((frames, 64, 64, 3), 20, dtype=np.uint8)
    for t in range(frames):
        x = 4 + (t * 2) % 44
        clip[t, 20:36, x:x + 16] = colour
    return np.clip(clip.astype(int) + rng.integers(0, 6, clip.shape), 0, 255).astype(np.uint8)


def long_horizon_shaped_run(root: Path) -> Path:
    """A complete run of long_horizon's models x tasks x lengths x metrics in a store under ``root``:
    per-clip values and series drawn per model, aggregates through the harness's own aggregation,
    FVD rows as set-level aggregates, one small video per model and length."""
    resolved = load_suite(SUITE)[0]
    suite = resolved.suite
    runs, rng = root / "runs", np.random.default_rng(0)
    run_dir = runs / RUN
    store = Store(runs / "vbf.sqlite")
    store.upsert_run(RUN, suite=suite.name, status="complete", seed=suite.seed, config_json=resolved.config(),
                     run_dir=str(run_dir.resolve()), suite_path=str(SUITE), env_json={})
    info = {}
    for spec in suite.metrics:
        entry = get_metric(spec.name)
        info[spec.name] = {"version": f"{spec.name} (synthetic)", "extractor": "synthetic",
                           "higher_is_better": entry.higher_is_better, "kind": entry.kind}
        store.set_metric_info(RUN, spec.name, info[spec.name]["version"], "synthetic", entry.higher_is_better, entry.kind)
    models = [m.name for m in suite.models]
    colours = [(230, 60, 60), (60, 200, 90), (70, 110, 240), (230, 200, 50), (200, 80, 220)]
    videos = {}
    for i, model in enumerate(models):
        for seconds in suite.clip_seconds:
            relative = f"videos/{model}-{seconds:g}s.mp4"
            write_video(run_dir / relative, _clip(num_frames_for(seconds, suite.generation_fps), colours[i % len(colours)], i), suite.generation_fps)
            videos[(model, seconds)] = relative
    records, fvd_rows = [], []
    for m, model in enumerate(models):
        for task in suite.tasks:
            for seconds in suite.clip_seconds:
                for p in range(PROMPTS):
                    metrics, series = {}, {}
                    for spec in suite.metrics:
                        if not spec.applies_to(model) or get_metric(spec.name).kind == "set":
                            continue
                        level = 1.0 + 0.2 * m + 0.1 * rng.normal()
                        if spec.name in COINCIDENT:  # every generator at one point: labels must make room
                            level = 0.5 if model != "real" else 0.7
                        metrics[spec.name] = float(level)
                        if spec.name not in SERIES:
                            continue
                        times = np.arange(0, seconds, 0.5)
                        series[spec.name] = [(float(t), float(level + 0.01 * t * (m - 1) + 0.05 * rng.normal()))
                                             for t in times]
                    records.append(SampleRecord(
                        unit_id=f"{model}/{task}/{seconds:g}s/test-{p:06d}/seed0", model=model, task=task,
                        clip_seconds=seconds, prompt_id=f"test-{p:06d}", seed=0, prompt=f"prompt {p}", status="ok",
                        video=videos[(model, seconds)], num_frames=num_frames_for(seconds, suite.generation_fps),
                        height=64, width=64, fps=suite.generation_fps, metrics=metrics, series=series))
                fvd = 150.0 + 40 * m + 10 * rng.random()
                fvd_rows.append(AggregateRow(model=model, task=task, clip_seconds=seconds, metric="fvd", value=fvd,
                                             ci_low=fvd - 20, ci_high=fvd + 25, n=PROMPTS * 12, higher_is_better=False,
                                             metric_version="fvd (synthetic)", extractor="synthetic"))
    for record in records:
        store.record_sample(RUN, record)
    rows = aggregate_records(records, info, confidence=0.95, resamples=200, seed=0)
    store.set_aggregates(RUN, rows + fvd_rows)
    store.upsert_run(RUN, expected=len(records), done=len(records), failed=0)
    store.close()
    return runs


PROBE = """<script>
window.addEventListener('load', () => setTimeout(async () => {
  const wait = (ms) => new Promise((done) => setTimeout(done, ms));
  const d = document.documentElement, out = {};
  const videos = [...document.querySelectorAll('video')];
  out.overflow = d.scrollWidth - d.clientWidth;
  out.videos = videos.length;
  out.ready = videos.filter((v) => v.readyState >= 2).length;
  out.boards = document.querySelectorAll('.boards').length;
  out.cells = document.querySelectorAll('table.scoreboard td.num').length;
  const overlaps = () => [...document.querySelectorAll('svg.pareto')].map((svg) => {
    const boxes = [...svg.querySelectorAll('text.pareto-label')].map((t) => t.getBBox());
    let hits = 0;
    boxes.forEach((a, i) => boxes.slice(i + 1).forEach((b) => {
      if (a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height) { hits += 1; }
    }));
    return [boxes.length, hits];
  });
  out.pareto = {panels: document.querySelectorAll('svg.pareto').length, labels: overlaps(),
                front: document.querySelectorAll('#pareto-front tr').length};
  const pick = document.getElementById('pareto-quality');
  out.pareto.choices = pick.options.length;
  out.pareto.others = [];
  for (const option of [...pick.options].slice(1, 5)) {
    pick.value = option.value;
    pick.dispatchEvent(new Event('change'));
    out.pareto.others.push({metric: option.value, panels: document.querySelectorAll('svg.pareto').length,
                            labels: overlaps(), front: document.querySelectorAll('#pareto-front tr').length});
  }
  const row = document.querySelector('tr.gallery-row');
  const fps = parseFloat(row.dataset.fps);
  const inRow = () => [...row.querySelectorAll('video')].filter((v) => !v.parentNode.hidden);
  row.querySelector('button.play-row').click();
  await wait(600);
  const times = inRow().map((v) => v.currentTime);
  out.play = {playing: inRow().filter((v) => !v.paused).length, videos: inRow().length,
              spread: Math.max(...times) - Math.min(...times), frame: 1 / fps, leader: times[0],
              shown: row.querySelector('.frame').textContent};
  const scrub = row.querySelector('input.scrub');
  scrub.value = '5';
  scrub.dispatchEvent(new Event('input'));
  await wait(300);
  out.seek = {paused: inRow().filter((v) => v.paused).length,
              times: inRow().map((v) => v.currentTime), expected: 5.5 / fps,
              label: row.querySelector('.frame').textContent};
  const box = (kind, value) => document.querySelector(`.gallery-filter input[data-filter=${kind}][value="${value}"]`);
  const column = box('column', '1');
  column.checked = false;
  column.dispatchEvent(new Event('change'));
  const length = box('seconds', '30');
  length.checked = false;
  length.dispatchEvent(new Event('change'));
  const rows = [...document.querySelectorAll('tr.gallery-row')];
  out.filter = {hiddenCells: document.querySelectorAll('table.gallery [data-column="1"][hidden]').length,
                columnCells: document.querySelectorAll('table.gallery [data-column="1"]').length,
                hiddenRows: rows.filter((r) => r.hidden).length,
                longRows: rows.filter((r) => r.dataset.seconds === '30').length,
                shownLong: rows.filter((r) => r.dataset.seconds === '30' && !r.hidden).length};
  column.checked = true;  // shown again on a paused row: it joins at the slider's frame
  column.dispatchEvent(new Event('change'));
  out.reshown = row.querySelector('td[data-column="1"] video').currentTime;
  out.firstColumn = document.querySelector('table.gallery th[data-column="0"]').textContent;
  const p = document.createElement('pre');
  p.id = 'probe';
  p.textContent = JSON.stringify(out);
  document.body.appendChild(p);
}, 1500));
</script>"""


def _open(page: Path, width: int, probed: bool = True) -> tuple[dict, list[str]]:
    done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           "--autoplay-policy=no-user-gesture-required", f"--window-size={width},1000",
                           "--virtual-time-budget=8000", "--dump-dom", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    messages = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout)
    if not probed:
        return {}, messages
    assert found, "the probe did not finish: " + "\n".join(messages)
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")), messages


def test_a_long_horizon_report_reads_and_plays_as_a_person_would_use_it(tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("chromium binary not found on PATH; cannot open the report in a browser")
    canary = tmp_path / "canary.html"  # the console check must see an error when there is one
    canary.write_text("<!doctype html><p>x</p><script>undefinedFunction();</script>")
    assert any("Uncaught" in m for m in _open(canary, 900, probed=False)[1]), "Chromium's console is not captured"
    runs = long_horizon_shaped_run(tmp_path)
    out = tmp_path / "page" / "report.html"
    assert vbf("report", RUN, "--runs-dir", str(runs), "-o", str(out)) == 0
    probed = out.with_name("probed.html")
    probed.write_text(out.read_text().replace("</body>", PROBE + "</body>"))
    suite = load_suite(SUITE)[0].suite
    settings = len(suite.tasks) * len(suite.clip_seconds)
    generators = len(suite.models) - 1  # and the real clips
    for width in (1400, 900):
        seen, messages = _open(probed, width)
        assert messages == [], "\n".join(messages)
        assert seen["overflow"] <= 0, f"the page scrolls sideways at {width} px: {seen['overflow']}"
        assert seen["videos"] == seen["ready"] > 0, seen
        assert seen["boards"] == settings and seen["cells"] > 0
        pareto = seen["pareto"]
        assert pareto["panels"] == settings and pareto["front"] > 1 and pareto["choices"] > 10
        for view in [pareto] + pareto["others"]:
            assert view["panels"] == settings and view["front"] > 1, view
            assert all(labels == generators and hits == 0 for labels, hits in view["labels"]), view  # no overlap
        assert seen["firstColumn"] == "real"
        play = seen["play"]
        assert play["playing"] == play["videos"] == generators + 1 and play["spread"] <= play["frame"], play
        shown = int(play["shown"].split()[1])  # the slider follows the playing row (to the last half-frame tick)
        assert play["leader"] > 0.3 and abs(shown - play["leader"] / play["frame"]) < 1.5, play  # ticks every half frame
        seek = seen["seek"]
        assert seek["paused"] == generators + 1 and all(abs(t - seek["expected"]) < 1e-3 for t in seek["times"]), seek
        assert seek["label"].startswith("frame 5 / ")
        hidden = seen["filter"]
        assert hidden["hiddenCells"] == hidden["columnCells"] > 1
        assert hidden["longRows"] > 0 and hidden["shownLong"] == 0 and hidden["hiddenRows"] == hidden["longRows"]
        assert abs(seen["reshown"] - seek["expected"]) < 1e-3, seen["reshown"]
