"""Runs under hostile conditions: one process per run, plain run ids, faults as clear errors
(never exit 70), full disks, signals, misbehaving generators and non-finite values."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from vbench_flow.locking import RunLock, lock_holder
from vbench_flow.store import Store
from tests.test_runner import vbf

FIXTURES = Path(__file__).parent / "fixtures"

TINY = """\
name: tiny
data: {type: shapes, size: 16, fps: 4}
clip_seconds: [1]
prompts: {source: data, split: val, count: 3}
models:
  - {name: real, type: dataset}
metrics:
  - {name: flicker}
"""

HOSTILE = f"""\
name: hostile
data: {{type: shapes, size: 16, fps: 4}}
clip_seconds: [1]
prompts: {{source: data, split: val, count: 3}}
models:
  - name: gen
    type: python
    args: {{entry: "hostile_generator:Hostile", path: "{FIXTURES}", kwargs: {{KWARGS}}}}
metrics:
  - {{name: flicker}}
  - {{name: network_evaluations}}
"""

HELD = HOSTILE.replace("count: 3", "count: 4")


def held_suite(tmp_path: Path) -> tuple[Path, Path]:
    """A suite whose generator stops after its first clip until the returned file exists."""
    release = tmp_path / "release"
    return write(tmp_path, HELD.replace("KWARGS", f'hold: "{release}"')), release


def write(folder: Path, text: str, name: str = "suite.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def wait_for_records(samples: Path, count: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if samples.exists() and len(samples.read_text().splitlines()) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {count} records in {samples} (process exit {proc.poll()})")


# ---------------------------------------------------------------- one process per run

def test_second_process_on_a_running_run_fails_at_once_naming_the_holder(tmp_path):
    (suite, release), runs = held_suite(tmp_path), tmp_path / "runs"
    cmd = [sys.executable, "-m", "vbench_flow", "run", suite, "--runs-dir", runs, "--run-id", "r", "--quiet"]
    first = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_records(runs / "r" / "samples.jsonl", 1, first)
        for extra in (["--resume"], []):
            second = subprocess.run(list(map(str, cmd + extra)), capture_output=True, text=True, timeout=120)
            assert second.returncode == 4, second.stderr
            assert f"in use by process {first.pid}" in second.stderr and "Traceback" not in second.stderr
            assert extra or "already exists" in second.stderr
        assert lock_holder(runs / "r")["pid"] == first.pid
        release.touch()
        assert first.wait(timeout=120) == 0
    finally:
        first.kill()
    lines = records(runs / "r")
    assert len(lines) == len({r["unit_id"] for r in lines}) == 4  # nobody appended a unit twice
    assert lock_holder(runs / "r") is None


def test_resume_refused_while_the_lock_is_held(tmp_path, capsys):
    suite, runs = write(tmp_path, TINY), tmp_path / "runs"
    assert vbf("run", suite, "--runs-dir", runs, "--run-id", "t", "--quiet") == 0
    with RunLock(runs / "t"):
        assert vbf("run", suite, "--runs-dir", runs, "--run-id", "t", "--resume", "--quiet") == 4
        assert f"in use by process {os.getpid()}" in capsys.readouterr().err
    assert vbf("run", suite, "--runs-dir", runs, "--run-id", "t", "--resume", "--quiet") == 0


def test_suites_sharing_a_name_in_one_second_get_their_own_runs(tmp_path, capsys, monkeypatch):
    import vbench_flow.runner as runner

    class Frozen:  # every run id is made in the same second
        @staticmethod
        def now():
            from datetime import datetime as real

            return real(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr(runner, "datetime", Frozen)
    runs = tmp_path / "runs"
    first = write(tmp_path / "a", TINY)
    second = write(tmp_path / "b", TINY.replace("count: 3", "count: 2"))
    assert vbf("run", first, "--runs-dir", runs, "--quiet") == 0
    assert vbf("run", second, "--runs-dir", runs, "--quiet") == 0
    store = Store(runs / "vbf.sqlite")
    table = store.runs()
    assert list(table["run_id"]) == ["tiny-20260102-030405", "tiny-20260102-030405-2"]
    assert [store.run(r)["expected"] for r in table["run_id"]] == [3, 2]
    assert len(records(runs / "tiny-20260102-030405-2")) == 2


def test_an_existing_folder_is_never_reused_by_a_new_run(tmp_path, capsys):
    suite, runs = write(tmp_path, TINY), tmp_path / "runs"
    (runs / "taken").mkdir(parents=True)
    assert vbf("run", suite, "--runs-dir", runs, "--run-id", "taken", "--quiet") == 4
    assert "already exists" in capsys.readouterr().err
    assert list((runs / "taken").iterdir()) == []


# ---------------------------------------------------------------- paths

@pytest.mark.parametrize("run_id", ["..", ".", "", "a/b", "../x", "/abs", "a\\b", ".hidden"])
def test_run_id_must_be_a_plain_name(tmp_path, capsys, run_id):
    suite, outer = write(tmp_path, TINY), tmp_path / "outer"
    for extra in ([], ["--resume"]):
        assert vbf("run", suite, "--runs-dir", outer / "inner", "--run-id", run_id, *extra) == 4
        assert "not a plain name" in capsys.readouterr().err
    assert not outer.exists()


# ---------------------------------------------------------------- configuration faults

def test_non_utf8_suite_and_include_are_config_errors(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_bytes(TINY.replace("name: tiny", "name: tiny\ndescription: caf\xe9").encode("latin-1"))
    assert vbf("validate", tmp_path / "bad.yaml") == 4
    assert "bad.yaml:2: the suite is not UTF-8" in capsys.readouterr().err
    top = write(tmp_path, "include: bad.yaml\nname: top\n", "top.yaml")
    assert vbf("run", top, "--runs-dir", tmp_path / "runs") == 4
    assert "bad.yaml:2" in capsys.readouterr().err


def test_non_utf8_prompt_file_is_a_config_error(tmp_path, capsys):
    (tmp_path / "prompts.txt").write_bytes("a red circle\na blue caf\xe9\n".encode("latin-1"))
    suite = write(tmp_path, TINY.replace("{source: data, split: val, count: 3}", "{source: file, file: prompts.txt}"))
    assert vbf("validate", suite) == 4
    assert "prompts.txt:2" in capsys.readouterr().err


def test_yaml_aliases_are_refused_before_expanding(tmp_path, capsys):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10**9 leaves if expanded
    bomb = write(tmp_path, TINY + "\n".join(levels) + "\n")
    started = time.perf_counter()
    assert vbf("validate", bomb) == 4
    assert "YAML aliases are not allowed" in capsys.readouterr().err
    assert time.perf_counter() - started < 30
    recursive = write(tmp_path, TINY + "loop: &loop [*loop]\n", "loop.yaml")
    assert vbf("validate", recursive) == 4


@pytest.mark.parametrize("line, key", [("seed: 9223372036854775808", "seed"), ("seed: -1", "seed")])
def test_seed_out_of_range_fails_validation(tmp_path, capsys, line, key):
    suite = write(tmp_path, TINY + line + "\n")
    assert vbf("validate", suite) == 4
    assert f"{key}: Input should be" in capsys.readouterr().err


def test_prompt_seed_out_of_range_fails_validation(tmp_path, capsys):
    suite = write(tmp_path, TINY.replace("count: 3}", "count: 3, seeds: [0, 18446744073709551615]}"))
    assert vbf("validate", suite) == 4
    assert "prompts.seeds[1]" in capsys.readouterr().err
    largest = write(tmp_path, TINY.replace("count: 3}", "count: 1, seeds: [9223372036854775807]}"), "ok.yaml")
    assert vbf("run", largest, "--runs-dir", tmp_path / "runs", "--quiet") == 0


# ---------------------------------------------------------------- a full disk

def _no_space(path):
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def _fail_nth_call(monkeypatch, owner, name: str, n: int, exc_for_args) -> None:
    original, calls = getattr(owner, name), {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise exc_for_args(*args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)


@pytest.mark.parametrize("where", ["log", "video", "store", "report"])
def test_full_disk_stops_with_exit_2_and_a_plain_resume_finishes(tmp_path, capsys, monkeypatch, where):
    import vbench_flow.runner as runner
    from vbench_flow.store import Store as StoreClass

    suite, runs = write(tmp_path, TINY), tmp_path / "runs"
    with monkeypatch.context() as patch:
        if where == "log":
            _fail_nth_call(patch, runner.RunFolder, "_drop_partial_tail", 2, lambda self, log: _no_space(log))
        elif where == "video":
            _fail_nth_call(patch, runner, "write_video", 2, lambda path, *a: _no_space(path))
        elif where == "store":  # a real SQLITE_FULL: the connection may not grow the file any more
            original = StoreClass.record_sample

            def record_into_full_database(self, run_id, record):
                pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
                self._conn.execute(f"PRAGMA max_page_count={pages}")
                return original(self, run_id, record.model_copy(update={"prompt": "x" * 1_000_000}))

            patch.setattr(StoreClass, "record_sample", record_into_full_database)
        else:
            import vbench_flow.reporting as reporting

            _fail_nth_call(patch, reporting, "write_report", 1, lambda store, ids, path, *a, **k: _no_space(path))
        assert vbf("run", suite, "--runs-dir", runs, "--quiet") == 2
    err = capsys.readouterr().err
    assert "no space left on" in err and "--resume" in err and "internal error" not in err
    expected_path = {"log": "samples.jsonl", "video": ".mp4", "store": "vbf.sqlite", "report": "report.html"}[where]
    assert expected_path in err
    store = Store(runs / "vbf.sqlite")
    [run_id] = list(store.runs()["run_id"])
    assert store.run(run_id)["status"] != "running"
    assert vbf("run", suite, "--runs-dir", runs, "--resume", "--quiet") == 0
    assert store.run(run_id)["status"] == "complete"
    assert len(store.units(run_id)) == 3 and (store.units(run_id)["status"] == "ok").all()
    assert (runs / run_id / "report.html").is_file()


def test_corrupt_reference_cache_is_named_and_rebuilt(tmp_path, capsys):
    suite = write(tmp_path, TINY.replace("metrics:\n  - {name: flicker}",
                                         "reference: {split: test, count: 4}\nmetrics:\n  - {name: fvd}")
                  .replace("count: 3}", "count: 4}").replace("clip_seconds: [1]", "clip_seconds: [4]"))
    runs = tmp_path / "runs"
    assert vbf("run", suite, "--runs-dir", runs, "--run-id", "one", "--quiet") == 0
    [cached] = list((runs / "cache" / "reference-features").glob("*.npz"))
    value = Store(runs / "vbf.sqlite").aggregates(["one"])["value"].iloc[0]
    cached.write_bytes(cached.read_bytes()[:100])
    capsys.readouterr()
    assert vbf("run", suite, "--runs-dir", runs, "--run-id", "two", "--quiet") == 0
    err = capsys.readouterr().err
    assert str(cached) in err and "rebuilding" in err
    assert Store(runs / "vbf.sqlite").aggregates(["two"])["value"].iloc[0] == pytest.approx(value, rel=1e-9)
    assert np.load(cached)["stacked"].shape[0] == 4  # rewritten whole


# ---------------------------------------------------------------- signals and misbehaving generators

def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    (suite, release), runs = held_suite(tmp_path), tmp_path / "runs"
    cmd = [sys.executable, "-m", "vbench_flow", "run", suite, "--runs-dir", runs, "--run-id", "s", "--quiet"]
    proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_records(runs / "s" / "samples.jsonl", 1, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted during run 's'" in err and "--resume --run-id s" in err
    assert Store(runs / "vbf.sqlite").run("s")["status"] == "interrupted"
    release.touch()
    done = subprocess.run(list(map(str, cmd + ["--resume"])), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(records(runs / "s")) == 4


def test_a_killed_run_lists_as_interrupted(tmp_path, capsys):
    (suite, _), runs = held_suite(tmp_path), tmp_path / "runs"
    cmd = [sys.executable, "-m", "vbench_flow", "run", suite, "--runs-dir", runs, "--run-id", "k", "--quiet"]
    proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_records(runs / "k" / "samples.jsonl", 1, proc)
    assert vbf("runs", "ls", "--runs-dir", runs) == 0
    assert " running " in capsys.readouterr().out
    proc.kill()
    proc.wait()
    assert Store(runs / "vbf.sqlite").run("k")["status"] == "running"  # the kill left no word
    assert vbf("runs", "ls", "--runs-dir", runs) == 0
    out = capsys.readouterr().out
    assert " interrupted " in out and " running " not in out


def test_generator_sys_exit_fails_only_its_unit(tmp_path, capsys):
    suite = write(tmp_path, HOSTILE.replace("KWARGS", "exit_on: val-000001"))
    assert vbf("run", suite, "--runs-dir", tmp_path / "runs", "--run-id", "x", "--quiet") == 2
    status = {r["prompt_id"]: r for r in records(tmp_path / "runs" / "x")}
    assert status["val-000001"]["status"] == "failed" and "SystemExit: 3" in status["val-000001"]["error"]
    assert status["val-000000"]["status"] == status["val-000002"]["status"] == "ok"
    assert Store(tmp_path / "runs" / "vbf.sqlite").run("x")["status"] == "partial"


def test_generator_keyboard_interrupt_stops_the_run_as_interrupted(tmp_path, capsys):
    suite = write(tmp_path, HOSTILE.replace("KWARGS", "interrupt_on: val-000001"))
    assert vbf("run", suite, "--runs-dir", tmp_path / "runs", "--run-id", "i", "--quiet") == 130
    assert "--resume --run-id i" in capsys.readouterr().err
    assert Store(tmp_path / "runs" / "vbf.sqlite").run("i")["status"] == "interrupted"
    assert [r["prompt_id"] for r in records(tmp_path / "runs" / "i")] == ["val-000000"]


# ---------------------------------------------------------------- values are finite or errors

def test_non_finite_metric_value_or_cost_is_a_metric_error(tmp_path, capsys, monkeypatch):
    import metrics.flicker

    monkeypatch.setattr(metrics.flicker, "_score", lambda pair_means: float("nan"))
    suite = write(tmp_path, HOSTILE.replace("KWARGS", "nan_cost: true"))
    runs = tmp_path / "runs"
    assert vbf("run", suite, "--runs-dir", runs, "--run-id", "n", "--quiet") == 0
    for record in records(runs / "n"):
        assert record["status"] == "ok" and record["metrics"] == {}
        assert "its value is not finite" in record["metric_errors"]["flicker"]
        assert "nan" in record["metric_errors"]["network_evaluations"]
    out = capsys.readouterr()
    assert "flicker: no value for 3 clip(s)" in out.err
    # nothing to recompute: a resume finds every unit finished
    assert vbf("run", suite, "--runs-dir", runs, "--run-id", "n", "--resume") == 0
    assert "3 already finished, 0 to compute" in capsys.readouterr().err
    assert len(records(runs / "n")) == 3


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_non_utf8_manifest_is_a_config_error_naming_its_line(tmp_path, capsys, suffix):
    rows = ('video,caption\nclip.mp4,a red circle\nclip2.mp4,a caf\xe9\n' if suffix == ".csv" else
            '{"video": "clip.mp4", "caption": "a red circle"}\n{"video": "clip2.mp4", "caption": "a caf\xe9"}\n')
    (tmp_path / f"clips{suffix}").write_bytes(rows.encode("latin-1"))
    suite = write(tmp_path, TINY.replace("{type: shapes, size: 16, fps: 4}",
                                         f"{{type: folder, manifest: clips{suffix}, size: 16, fps: 4}}"))
    assert vbf("validate", suite) == 4
    err = capsys.readouterr().err
    line = 3 if suffix == ".csv" else 2  # the CSV has a header line
    assert f"clips{suffix}:{line}: the manifest is not UTF-8" in err and "internal error" not in err


def test_a_bug_mid_run_exits_70_without_leaving_the_run_running(tmp_path, capsys, monkeypatch):
    import vbench_flow.runner as runner

    def broken(self, *args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(runner.Runner, "_write_outcome", broken)
    suite, runs = write(tmp_path, TINY), tmp_path / "runs"
    assert vbf("run", suite, "--runs-dir", runs, "--run-id", "b", "--quiet") == 70
    assert "internal error: RuntimeError: a bug" in capsys.readouterr().err
    assert Store(runs / "vbf.sqlite").run("b")["status"] == "interrupted"
    assert lock_holder(runs / "b") is None
    monkeypatch.undo()
    assert vbf("run", suite, "--runs-dir", runs, "--run-id", "b", "--resume", "--quiet") == 0


def test_resume_of_a_sweep_that_never_started_is_refused(tmp_path, capsys):
    suite = write(tmp_path, TINY + "ablations:\n  matrix: {metrics.flicker.args.segment_seconds: [1, 2]}\n")
    assert vbf("run", suite, "--runs-dir", tmp_path / "runs", "--run-id", "never", "--resume") == 4
    assert "cannot resume 'never'" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "never.segment_seconds=1").exists()


def test_a_store_from_the_previous_schema_gains_the_frame_size_columns(tmp_path):
    import sqlite3

    old = sqlite3.connect(tmp_path / "vbf.sqlite")
    old.execute("CREATE TABLE units (run_id TEXT NOT NULL, unit_id TEXT NOT NULL, model TEXT, task TEXT, "
                "clip_seconds REAL, prompt_id TEXT, seed INTEGER, prompt TEXT, status TEXT, error TEXT, stage TEXT, "
                "video TEXT, video_sha256 TEXT, num_frames INTEGER, fps REAL, generate_seconds REAL, "
                "score_seconds REAL, finished TEXT, PRIMARY KEY (run_id, unit_id))")
    old.execute("PRAGMA user_version=1")
    old.commit()
    old.close()
    store = Store(tmp_path / "vbf.sqlite")
    assert {"height", "width"} <= set(store.units("none").columns)
    assert store._conn.execute("PRAGMA user_version").fetchone()[0] == 2
