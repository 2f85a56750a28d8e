"""Suite schema, validation messages (key, line, suggestion), includes and ablations."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from vbench_flow.errors import ConfigError
from vbench_flow.suite import SuiteError, expand_ablations, load_suite, validate_suite

BASE = """\
name: t
data: {type: shapes, size: 64, fps: 8}
clip_seconds: [5]
prompts: {source: data, split: test, count: 2, seeds: [0]}
models:
  - {name: real, type: dataset}
metrics:
  - {name: flicker}
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path):
    return validate_suite(path)[1]


def test_valid_suite_has_no_problems(tmp_path):
    resolved, problems = validate_suite(write(tmp_path, BASE))
    assert problems == []
    assert resolved[0].suite.generation_fps == 8.0 and resolved[0].variant is None


def test_misspelt_metric_is_named_with_suggestion_and_line(tmp_path):
    path = write(tmp_path, BASE.replace("{name: flicker}", "{name: flikcer}"))
    [problem] = problems_of(path)
    assert problem.key == "metrics[0].name"
    assert "unknown metric 'flikcer' — did you mean 'flicker'?" in problem.message
    assert problem.line == 8


def test_unknown_key_suggests_the_right_one(tmp_path):
    path = write(tmp_path, BASE.replace("clip_seconds:", "clip_secnds:"))
    [problem] = problems_of(path)
    assert problem.key == "clip_secnds" and "did you mean 'clip_seconds'" in problem.message and problem.line == 3


def test_wrong_type_names_the_key(tmp_path):
    [problem] = problems_of(write(tmp_path, BASE.replace("clip_seconds: [5]", "clip_seconds: [five]")))
    assert problem.key == "clip_seconds[0]" and "number" in problem.message and "'five'" in problem.message


@pytest.mark.parametrize("old, new, key", [
    ("clip_seconds: [5]", "clip_seconds: [-5]", "clip_seconds"),
    ("size: 64", "size: 4", "data.size"),
    ("count: 2", "count: 0", "prompts.count"),
    ("count: 2", "count: 100001", "prompts.count"),
])
def test_out_of_range_values(tmp_path, old, new, key):
    problems = problems_of(write(tmp_path, BASE.replace(old, new)))
    assert [p.key for p in problems] == [key], problems


def test_missing_files_are_reported(tmp_path):
    text = BASE.replace("{source: data, split: test, count: 2, seeds: [0]}", "{source: file, file: nowhere.txt}")
    text = text.replace("type: dataset}", "type: python, args: {entry: 'no_such_module_xyz:make'}}")
    keys = {p.key: p.message for p in problems_of(write(tmp_path, text))}
    assert "not found" in keys["prompts.file"] and "nowhere.txt" in keys["prompts.file"]
    assert "no_such_module_xyz" in keys["models[0]"]


def test_folder_manifest_missing(tmp_path):
    text = BASE.replace("{type: shapes, size: 64, fps: 8}", "{type: folder, manifest: clips.csv}")
    [problem] = problems_of(write(tmp_path, text))
    assert problem.key == "data.manifest" and "clips.csv" in problem.message


def test_unknown_model_type_and_bad_model_args(tmp_path):
    text = BASE.replace("type: dataset}", "type: datset}") + "  - {name: mine, type: python, args: {entry: 'x:y', kwarg: 1}}\n"
    text = text.replace("metrics:\n  - {name: flicker}\n", "") + "metrics:\n  - {name: flicker, args: {segment_second: 2}}\n"
    messages = {p.key: p.message for p in problems_of(write(tmp_path, text))}
    assert "did you mean 'dataset'" in messages["models[0].type"]
    assert "unknown key 'kwarg'" in messages["models[1].args.kwarg"] and "did you mean 'kwargs'" in messages["models[1].args.kwarg"]
    assert "did you mean 'segment_seconds'" in messages["metrics[0].args.segment_second"]


def test_task_literal_suggestion(tmp_path):
    [problem] = problems_of(write(tmp_path, BASE + "tasks: [t2v, iv2]\n"))
    assert problem.key == "tasks[1]" and "'iv2'" in problem.message


def test_load_suite_raises_with_every_problem(tmp_path):
    path = write(tmp_path, BASE.replace("{name: flicker}", "{name: flikcer}").replace("size: 64", "size: 4"))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    text = str(info.value)
    assert "2 problem(s)" in text and "suite.yaml:8: metrics[0].name" in text and "data.size" in text


def test_include_merges_mappings_and_replaces_lists(tmp_path):
    write(tmp_path, BASE, "base.yaml")
    child = write(tmp_path, "include: base.yaml\nname: child\ndata: {fps: 16}\nclip_seconds: [2, 3]\n")
    [resolved] = load_suite(child)
    suite = resolved.suite
    assert suite.name == "child" and suite.data.fps == 16 and suite.data.size == 64
    assert suite.clip_seconds == [2.0, 3.0] and suite.models[0].name == "real"


def test_include_cycle_is_an_error(tmp_path):
    write(tmp_path, "include: b.yaml\n" + BASE, "a.yaml")
    write(tmp_path, "include: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match="include cycle"):
        validate_suite(tmp_path / "a.yaml")


def test_ablation_matrix_expands_to_named_runs(tmp_path):
    text = BASE + "ablations:\n  matrix:\n    metrics.flicker.args.segment_seconds: [1, 2]\n    seed: [0, 1]\n"
    resolved = load_suite(write(tmp_path, text))
    names = [r.run_name for r in resolved]
    assert names == ["t.segment_seconds=1,seed=0", "t.segment_seconds=1,seed=1",
                     "t.segment_seconds=2,seed=0", "t.segment_seconds=2,seed=1"]
    assert [r.suite.metrics[0].args["segment_seconds"] for r in resolved] == [1, 1, 2, 2]
    assert len({r.config_hash() for r in resolved}) == 4


def test_ablation_list_and_bad_path(tmp_path):
    text = BASE + "ablations:\n  - {name: short, set: {clip_seconds: [2]}}\n  - {name: long, set: {clip_seconds: [9]}}\n"
    resolved = load_suite(write(tmp_path, text))
    assert [(r.variant, r.suite.clip_seconds) for r in resolved] == [("short", [2.0]), ("long", [9.0])]
    bad = BASE + "ablations:\n  - {name: x, set: {models.reel.args.k: 1}}\n"
    with pytest.raises(Exception, match="no entry named 'reel' — did you mean 'real'"):
        load_suite(write(tmp_path, bad, "bad.yaml"))


def test_ablation_variant_values_are_validated(tmp_path):
    text = BASE + "ablations:\n  - {name: neg, set: {clip_seconds: [-1]}}\n"
    problems = problems_of(write(tmp_path, text))
    assert len(problems) == 1 and "ablation 'neg'" in problems[0].message


def test_expand_without_ablations_is_identity():
    assert expand_ablations({"name": "x"}) == [(None, {"name": "x"})]


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_suite_validates(path, capsys):
    """A shipped suite that names a missing checkpoint, metric or option fails here, not on a user's machine."""
    from vbench_flow.cli import main

    # perf_real's clips are made by scripts/make_real_clips.py (checked below): its files are not here
    files = ["--no-files"] if path.name in MADE_BY_SCRIPTS else []
    with pytest.raises(SystemExit) as info:
        main(["validate", str(path), *files])
    err = capsys.readouterr().err
    if path.name in NEEDS_TORCHCODEC and not _torchcodec_loads():
        # the one problem: the optional reader, named with how to install it
        assert info.value.code == 4 and "scoring.reader" in err and "pip install torchcodec" in err, err
        assert err.count("the torchcodec reader cannot load") == 1, err
        return
    assert info.value.code == 0, err


MADE_BY_SCRIPTS = {"perf_real.yaml", "vbench_temporal.yaml"}
NEEDS_TORCHCODEC = {"perf_real.yaml"}  # its read-torchcodec variant measures the optional reader


def _torchcodec_loads() -> bool:
    from vbench_flow.errors import ConfigError
    from vbench_flow.video_io import torchcodec_decoder

    try:
        torchcodec_decoder()
    except ConfigError:
        return False
    return True


def test_real_clip_maker_writes_ping_pong_clips_that_perf_real_scores(tmp_path, capsys):
    import importlib.util
    import subprocess
    import sys

    from vbench_flow.cli import main
    from vbench_flow.video_io import probe_video

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "data" / "real_clips"
    done = subprocess.run([sys.executable, str(root / "scripts" / "make_real_clips.py"), "--out", str(out),
                           "--sizes", "480", "--seconds", "1", "6"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    info = probe_video(out / "bigbuckbunny-480p-6s.mp4")  # 151 frames from a 132-frame source
    assert (info.width, info.height, info.num_frames, info.fps) == (854, 480, 151, 25)
    spec = importlib.util.spec_from_file_location("make_real_clips", root / "scripts" / "make_real_clips.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert list(script.ping_pong(9, 4)) == [0, 1, 2, 3, 2, 1, 0, 1, 2]
    suite = (root / "suites" / "perf_real.yaml").read_text()
    for size in ("1080p", "720p"):
        suite = suite.replace(f"manifest-{size}.csv", "manifest-480p.csv")
    for seconds in ("[5, 30, 60]", "[5]", "[30]"):
        suite = suite.replace(f"clip_seconds: {seconds}", "clip_seconds: [1]")
    suite = suite.replace("window_seconds: 2", "window_seconds: 0.2")
    if not _torchcodec_loads():
        variant = suite.index("  - name: read-torchcodec")
        suite = suite[:variant] + suite[suite.index("\n", suite.index("set:", variant)) + 1:]
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "perf_real.yaml").write_text(suite)
    with pytest.raises(SystemExit) as info:
        main(["run", str(tmp_path / "suites" / "perf_real.yaml"), "--runs-dir", str(tmp_path / "runs"), "--quiet"])
    assert info.value.code == 0, capsys.readouterr().err
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["runs", "ls", "--runs-dir", str(tmp_path / "runs")])
    listing = capsys.readouterr().out
    variants = ["memory-1080p", "metrics-720p", "read-pyav", "read-decord"] + (["read-torchcodec"] if _torchcodec_loads() else [])
    runs = [line.split()[0] for line in listing.splitlines() if "perf_real" in line]
    assert len(runs) == len(variants), listing
    with pytest.raises(SystemExit) as info:
        main(["runs", "cost", *runs, "--runs-dir", str(tmp_path / "runs")])
    cost = capsys.readouterr().out
    assert info.value.code == 0
    for variant in variants:
        assert f"({variant})" in cost, cost
    assert cost.count("(read)") == len(variants) and "peak_rss_mb" in cost, cost
