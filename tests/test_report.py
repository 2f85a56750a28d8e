"""The HTML report of a tiny sweep: deltas with significance marks, ablation and Pareto views,
drift curves, an escaped gallery with sidecar videos, and a page that renders in Chromium
without console errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports.html import format_delta
from tests.test_runner import FIXTURES, vbf, write_suite
from vbench_flow.reporting import build_report_input, pareto_front, pareto_input
from vbench_flow.store import Store
from vbench_flow.video_io import write_video

SCRIPT = "<script>alert('x')</script>"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Runs rep.step=2 and rep.step=40: shapes-world clips as the real row (dataset model) beside a
    synthetic generator whose frame-to-frame step the sweep varies; 1 s and 4 s clips, flicker per
    1 s segment, and throughput."""
    from vbench_flow.data.shapes import ShapesWorld

    root = tmp_path_factory.mktemp("report")
    world = ShapesWorld("test", size=32, fps=4)
    rows = []
    for i in range(4):
        write_video(root / "clips" / f"c{i}.mp4", world.clip(i, 17).frames, 4)
        caption = (SCRIPT + " " if i == 0 else "") + world.caption(i)
        rows.append({"video": f"clips/c{i}.mp4", "caption": caption, "id": world.prompt_id(i)})
    pd.DataFrame(rows).to_csv(root / "clips.csv", index=False)
    suite = write_suite(root, f"""\
        name: rep
        data: {{type: folder, manifest: clips.csv, size: 32, fps: 4}}
        clip_seconds: [1, 4]
        prompts: {{source: data, split: all, count: 4}}
        models:
          - {{name: real, type: dataset}}
          - {{name: noisy, type: python, args: {{entry: "slow_generator:make", path: "{FIXTURES}"}}}}
        metrics:
          - {{name: flicker, primary: true, args: {{segment_seconds: 1}}}}
          - {{name: frames_per_second}}
        gate: {{resamples: 500}}
        report: {{baseline_model: real, gallery: 2}}
        ablations:
          matrix: {{models.noisy.sampler.step: [2, 40]}}
        """)
    assert vbf("run", str(suite), "--runs-dir", str(root / "runs"), "--run-id", "rep", "--quiet") == 0
    return root


def samples_of(store: Store, run_id: str) -> pd.Series:
    """The noisy model's 4 s flicker per prompt in one run."""
    rows = store.sample_metrics(run_id)
    rows = rows[(rows["metric"] == "flicker") & (rows["clip_seconds"] == 4.0) & (rows["model"] == "noisy")]
    return rows.set_index("prompt_id")["value"].sort_index()


def test_deltas_against_the_baseline_model_are_paired_and_marked(sweep):
    store = Store(sweep / "runs" / "vbf.sqlite")
    data = build_report_input(store, ["rep.step=2", "rep.step=40"])
    assert data.baseline is not None and data.baseline.model == "real"  # from the suite's report.baseline_model
    assert data.primary_metric == "flicker"
    d = data.deltas.set_index(["run_id", "model", "clip_seconds", "metric"])
    noisy = d.loc[("rep.step=40", "noisy", 4.0, "flicker")]
    # a 40-level jump every frame flickers far more than the real clips: significantly worse
    assert noisy["delta"] < 0 and noisy["ci_high"] < 0 and noisy["verdict"] == "worse" and noisy["paired"]
    assert noisy["n"] == 4
    samples = store.sample_metrics("rep.step=40")
    flicker = samples[(samples["metric"] == "flicker") & (samples["clip_seconds"] == 4.0)].pivot(
        index="prompt_id", columns="model", values="value")
    assert noisy["delta"] == pytest.approx((flicker["noisy"] - flicker["real"]).mean())
    assert ("rep.step=40", "real", 4.0, "flicker") not in d.index  # the baseline is not compared with itself
    # drift curves: the 4 s clips (17 frames) have one flicker value per 1 s segment and the one-frame
    # tail, averaged over the 4 prompts
    curve = data.drift[(data.drift["run_id"] == "rep.step=40") & (data.drift["model"] == "noisy")
                       & (data.drift["clip_seconds"] == 4.0) & (data.drift["metric"] == "flicker")]
    assert len(curve) == 5 and (curve["n"] == 4).all() and (curve["low"] <= curve["mean"]).all()
    # ablation: step 2 flickers less than step 40, so it is the best variant for flicker
    [view] = data.ablations
    assert {g["model"] for g in view.groups} == {"noisy"}  # the sweep only changed the noisy model
    group = next(g for g in view.groups if g["model"] == "noisy" and g["clip_seconds"] == 4.0)
    best = {r["variant"]: r["cells"]["flicker"]["best"] for r in group["rows"]}
    assert best == {"step=2": True, "step=40": False}
    assert {r["variant"]: r["overrides"] for r in group["rows"]}["step=40"] == {"models.noisy.sampler.step": 40}
    # the variant against the base (first) variant, paired on (prompt, seed): step 40 flickers more
    cells = {r["variant"]: r["cells"]["flicker"] for r in group["rows"]}
    assert "delta" not in cells["step=2"]
    versus_base = cells["step=40"]["delta"]
    assert versus_base["verdict"] == "worse" and versus_base["n"] == 4 and versus_base["ci_high"] < 0
    base = samples_of(store, "rep.step=2")
    assert versus_base["delta"] == pytest.approx((samples_of(store, "rep.step=40") - base).mean())
    # quality against cost, every pair selectable: each setting has a front for every pair
    pareto = data.pareto
    assert pareto.throughput_metric == "frames_per_second" and pareto.quality_metric == "flicker"
    assert [c["metric"] for c in pareto.costs] == ["frames_per_second"] and "flicker" in [q["metric"] for q in pareto.qualities]
    settings = set(zip(pareto.points["task"], pareto.points["clip_seconds"]))
    assert {f"flicker|frames_per_second|{t}|{s:g}" for t, s in settings} <= set(pareto.fronts)
    assert all(pareto.fronts[f"flicker|frames_per_second|{t}|{s:g}"] for t, s in settings)
    store.close()


def test_report_html_escapes_marks_and_sidecars(sweep, capsys):
    out = sweep / "out" / "report.html"
    assert vbf("report", "rep", "--runs-dir", str(sweep / "runs"), "-o", str(out), "--embed-budget-mb", "0") == 0
    html = out.read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert re.search(r"Δ -0\.\d+ \[-0\.\d+, -0\.\d+\] ▼ worse", html), "a significant delta with its text mark"
    assert 'class="delta worse"' in html and "baseline</span>" in html
    for section in ("Who won", "Per metric", "Quality against cost", "Ablation: sweep", "Over time", "Samples"):
        assert f">{section}" in html, section
    assert "models.noisy.sampler.step = 40" in html and "★" in html
    # over the (zero) inline budget every video is a sidecar file next to the report, and plays as mp4
    assert "data:video/mp4" not in html
    sources = re.findall(r'<source src="([^"]+)" type="video/mp4">', html)
    assert len(sources) == 2 * 2 * 4  # 2 prompts x 2 clip lengths, one column per run and model
    assert all(src.startswith("report_videos/") and (out.parent / src).is_file() for src in sources)
    assert html.count("<video muted loop playsinline") == len(sources)
    # each run's own report (written by vbf run) stays under the default budget: videos inline
    assert "data:video/mp4;base64," in (sweep / "runs" / "rep.step=2" / "report.html").read_text()


def test_baseline_run_compares_model_by_model(sweep, capsys):
    store = Store(sweep / "runs" / "vbf.sqlite")
    data = build_report_input(store, ["rep.step=40"], baseline_run="rep.step=2")
    assert [r.run_id for r in data.runs] == ["rep.step=2", "rep.step=40"]  # the baseline run joins the report
    d = data.deltas.set_index(["model", "clip_seconds", "metric"])
    assert set(data.deltas["run_id"]) == {"rep.step=40"}
    assert d.loc[("noisy", 4.0, "flicker"), "verdict"] == "worse"
    real = d.loc[("real", 4.0, "flicker")]  # the same real clips in both runs
    assert real["delta"] == 0 and real["verdict"] == "same"
    store.close()
    assert vbf("report", "rep", "--runs-dir", str(sweep / "runs"), "--baseline-model", "rael",
               "-o", str(sweep / "x.html")) == 4
    assert "did you mean 'real'" in capsys.readouterr().err


def test_pareto_front_and_missing_throughput_note():
    front = pareto_front(np.array([1.0, 2.0, 3.0, 2.0]), np.array([0.9, 0.8, 0.5, 0.7]), True)
    assert front.tolist() == [True, True, True, False]
    assert pareto_front(np.array([1.0, 2.0]), np.array([0.1, 0.2]), False).tolist() == [True, True]
    # a cost where lower is better (latency): the slower of two equally good rows is dominated
    assert pareto_front(np.array([1.0, 2.0]), np.array([0.5, 0.5]), True, False).tolist() == [True, False]
    aggregates = pd.DataFrame([{"run_id": "r", "model": "m", "task": "t2v", "clip_seconds": 5.0, "metric": "flicker",
                                "value": 0.9, "ci_low": 0.8, "ci_high": 1.0, "n": 4, "higher_is_better": 1}])
    assert "No cost of generation was measured" in pareto_input(aggregates, "flicker").note
    assert format_delta(0.0123, 0.0041, 0.0202) == "Δ +0.012 [+0.004, +0.020]"


def _console_messages(page: Path, width: int = 1400) -> tuple[str, list[str]]:
    """The DOM Chromium built and every console message the page produced (Chromium logs each as a
    CONSOLE line on stderr, uncaught exceptions as 'Uncaught ...'), in a window ``width`` px wide."""
    done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           f"--window-size={width},1000", "--virtual-time-budget=3000", "--dump-dom",
                           page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    messages = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    return done.stdout, messages


def test_report_renders_in_chromium_without_console_errors(sweep, capsys):
    if shutil.which("chromium") is None:
        pytest.skip("chromium binary not found on PATH; cannot open the report in a browser")
    broken = sweep / "broken.html"  # the check must see an error when there is one
    broken.write_text("<!doctype html><p>x</p><script>undefinedFunction();</script>")
    _, messages = _console_messages(broken)
    assert any("Uncaught" in m for m in messages), "Chromium did not report a console error; the check is blind"

    out = sweep / "page" / "report.html"
    assert vbf("report", "rep", "--runs-dir", str(sweep / "runs"), "-o", str(out), "--embed-budget-mb", "0.02") == 0
    html = out.read_text()
    assert "data:video/mp4;base64," in html and "report_videos/" in html  # some inline, the rest sidecars
    dom, messages = _console_messages(out)
    assert messages == [], "\n".join(messages)
    assert "Who won" in dom and dom.count("<video") == 16 and "&lt;script&gt;alert" in dom

    # as a reader sees it, at 1400 and 900 px: a probe appended to a copy of the page (the report
    # itself carries no test code) writes what the layout and the videos did into the DOM
    probe = ("<script>window.addEventListener('load', () => setTimeout(() => { const d = document.documentElement;"
             " const v = [...document.querySelectorAll('video')]; const p = document.createElement('pre');"
             " p.id = 'probe'; p.textContent = JSON.stringify({overflow: d.scrollWidth - d.clientWidth,"
             " videos: v.length, ready: v.filter(x => x.readyState >= 2).length,"
             " cells: document.querySelectorAll('table.scoreboard td.num').length});"
             " document.body.appendChild(p); }, 1500));</script>")
    probed = out.with_name("probed.html")
    probed.write_text(html.replace("</body>", probe + "</body>"))
    for width in (1400, 900):
        dom, messages = _console_messages(probed, width)
        assert messages == [], "\n".join(messages)
        seen = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom).group(1).replace("&quot;", '"'))
        assert seen["overflow"] <= 0, f"the page scrolls sideways at {width} px: {seen}"
        assert seen["videos"] == 16 and seen["ready"] == 16, seen
        assert seen["cells"] > 0, seen
