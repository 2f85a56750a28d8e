"""`vbf gate`: paired bootstrap verdicts against a baseline run or a committed baseline file."""

from __future__ import annotations

import json
import math
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vbench_flow import gate, stats
from vbench_flow.store import Store
from tests.test_runner import vbf

FIXTURES = Path(__file__).parent / "fixtures"

SUITE = """\
name: gsuite
seed: 0
data: {{type: shapes, size: 16, fps: 4}}
clip_seconds: [2]
prompts: {{source: data, split: test, count: 6, seeds: {seeds}}}
models:
  - {{name: real, type: dataset}}
  - name: gen
    type: python
    args: {{entry: "degrade_generator:DegradedShapes", path: "{fixtures}", kwargs: {{size: 16, noise: {noise}}}}}
metrics:
  - {{name: flicker, margin: 0.005, args: {{segment_seconds: {segment}}}}}
  - {{name: generate_seconds}}
"""


def write(folder: Path, *, noise: float = 4, seeds: str = "[0]", segment: float = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "suite.yaml"
    path.write_text(SUITE.format(fixtures=FIXTURES, noise=noise, seeds=seeds, segment=segment))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Runs of one suite: base, an identical rerun, a degraded model, other seeds, another flicker version."""
    root = tmp_path_factory.mktemp("gate")
    runs_dir = root / "runs"
    base = write(root / "base")
    variants = {"base": base, "again": base, "worse": write(root / "worse", noise=30),
                "reseed": write(root / "reseed", seeds="[5]"), "seg2": write(root / "seg2", segment=2)}
    for run_id, suite in variants.items():
        assert vbf("run", suite, "--runs-dir", runs_dir, "--run-id", run_id, "--quiet") == 0
    return runs_dir


def gate_cli(runs: Path, *args: str) -> int:
    return vbf("gate", *args, "--runs-dir", runs)


def by_key(comparisons):
    return {(c.model, c.metric): c for c in comparisons}


# ---------------------------------------------------------------- end to end

def test_model_made_worse_fails_with_exit_1_naming_the_metric(runs, capsys):
    assert gate_cli(runs, "worse", "--baseline", "base") == 1
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.strip().startswith("REGRESS"))
    assert "flicker" in line and "gen, t2v, 2 s" in line and "delta -0.0" in line and "CI" in line
    assert "real, t2v, 2 s" not in line
    comparisons = by_key(gate.compare_runs(Store(runs / "vbf.sqlite"), "worse", "base"))
    worse = comparisons[("gen", "flicker")]
    assert worse.verdict == gate.REGRESS and worse.paired and worse.n == 6
    assert worse.ci_high < -0.005 and worse.delta == pytest.approx(worse.value - worse.baseline_value)
    assert comparisons[("real", "flicker")].verdict == gate.PASS  # the real clips did not change
    assert comparisons[("gen", "generate_seconds")].verdict == gate.NOT_GATED


def test_identical_rerun_passes(runs, capsys):
    assert gate_cli(runs, "again", "--baseline", "base", "--strict") == 0
    assert "PASS (2 pass)" in capsys.readouterr().out
    for c in gate.compare_runs(Store(runs / "vbf.sqlite"), "again", "base"):
        if c.metric == "flicker":
            assert (c.verdict, c.delta, c.ci_low, c.ci_high, c.paired) == (gate.PASS, 0.0, 0.0, 0.0, True)


def test_other_seed_set_is_unpaired_and_never_a_false_regression(runs, capsys):
    code = gate_cli(runs, "reseed", "--baseline", "base")
    out = capsys.readouterr().out
    assert code == 0 and "regress" not in out.lower()
    comparisons = [c for c in gate.compare_runs(Store(runs / "vbf.sqlite"), "reseed", "base") if c.margin is not None]
    assert len(comparisons) == 2
    for c in comparisons:
        assert not c.paired and c.verdict in (gate.PASS, gate.INCONCLUSIVE) and "unpaired" in c.reason
        assert c.ci_low < c.delta < c.ci_high  # a real interval, not a point
    strict = gate_cli(runs, "reseed", "--baseline", "base", "--strict")
    assert strict == (3 if any(c.verdict == gate.INCONCLUSIVE for c in comparisons) else 0)


def test_changed_metric_version_is_not_comparable(runs, capsys):
    assert gate_cli(runs, "seg2", "--baseline", "base") == 4  # every gated metric is not comparable
    captured = capsys.readouterr()
    assert "metric version differs" in captured.out and "segments 2s" in captured.out
    assert "every gated metric is not comparable" in captured.err and "Traceback" not in captured.err
    comparisons = by_key(gate.compare_runs(Store(runs / "vbf.sqlite"), "seg2", "base"))
    assert comparisons[("gen", "flicker")].verdict == gate.NOT_COMPARABLE
    assert comparisons[("gen", "generate_seconds")].verdict == gate.NOT_GATED  # same version: still compared


def test_changed_extractor_in_a_baseline_file_is_not_comparable(runs, tmp_path, capsys):
    path = tmp_path / "b.json"
    assert gate_cli(runs, "base", "--update-baseline", "--baseline", path) == 0
    doc = json.loads(path.read_text())
    doc["metrics"]["flicker"]["extractor"] = "RAFT (torchvision)"
    path.write_text(json.dumps(doc))
    assert gate_cli(runs, "again", "--baseline", path) == 4
    assert "extractor differs: 'none (pixel differences)' vs baseline 'RAFT (torchvision)'" in capsys.readouterr().out


def test_other_units_or_resolution_are_not_comparable():
    def side(units, resolution=16):
        rows = [("m", "t2v", 2.0, p, s, "flicker", v) for p, s, v in units]
        return gate.GateSide(label="x", suite="s", variant=None, run_id="x", seed=0,
                             resolutions={"m": f"{resolution}x{resolution}"}, fps=4.0,
                             metric_info={"flicker": {"version": "1", "extractor": "none", "higher_is_better": True}},
                             samples=pd.DataFrame(rows, columns=gate.SAMPLE_COLUMNS),
                             aggregates=pd.DataFrame(columns=gate.AGGREGATE_COLUMNS))

    units = [("p0", 0, 0.9), ("p1", 0, 0.8), ("p2", 0, 0.85)]
    margins = {"flicker": 0.01}
    [same] = gate.compare_sides(side(units), side(units), margins=margins)
    assert same.verdict == gate.PASS
    [partial] = gate.compare_sides(side(units[:2]), side(units), margins=margins)
    assert partial.verdict == gate.NOT_COMPARABLE and "only 2 units pair" in partial.reason
    [prompts] = gate.compare_sides(side([("q0", 1, 0.9), ("q1", 1, 0.8), ("q2", 1, 0.85)]), side(units), margins=margins)
    assert prompts.verdict == gate.NOT_COMPARABLE and "prompts differ" in prompts.reason
    [size] = gate.compare_sides(side(units, resolution=32), side(units), margins=margins)
    assert size.verdict == gate.NOT_COMPARABLE and "frame size differs: 32x32 vs baseline 16x16" in size.reason


FVD_SUITE = """\
name: gfvd
seed: 0
data: {{type: shapes, size: 32, fps: 8}}
clip_seconds: [2]
prompts: {{source: data, split: test, count: 10, seeds: {seeds}}}
reference: {{split: val, count: {refcount}}}
models:
  - name: gen
    type: python
    args: {{entry: "degrade_generator:DegradedShapes", path: "{fixtures}", kwargs: {{size: 32, noise: {noise}}}}}
metrics:
  - {{name: fvd, margin: 50, args: {{bootstrap: 0}}}}
"""


@pytest.fixture(scope="module")
def fvd_runs(tmp_path_factory) -> Path:
    """FVD runs: base, a noisier model, other seeds, another reference set."""
    root = tmp_path_factory.mktemp("gate-fvd")
    for run_id, (noise, seeds, refcount) in {"base": (4, "[0]", 24), "noisy": (80, "[0]", 24),
                                            "reseed": (4, "[3]", 24), "otherref": (4, "[0]", 20)}.items():
        folder = root / run_id
        folder.mkdir()
        suite = folder / "suite.yaml"
        suite.write_text(FVD_SUITE.format(fixtures=FIXTURES, noise=noise, seeds=seeds, refcount=refcount))
        assert vbf("run", suite, "--runs-dir", root / "runs", "--run-id", run_id, "--quiet") == 0
    return root / "runs"


def test_fvd_is_gated_by_feature_resampling(fvd_runs, tmp_path, capsys):
    store = Store(fvd_runs / "vbf.sqlite")
    base = gate.side_from_run(store, "base")
    [worse] = gate.compare_sides(gate.side_from_run(store, "noisy"), base, resamples=200)
    assert worse.verdict == gate.REGRESS and worse.paired and worse.ci_low > 50
    assert "features resampled in pairs over 10 units" in worse.reason
    [same] = gate.compare_sides(gate.side_from_run(store, "base"), base, resamples=200)
    assert same.verdict == gate.PASS and same.delta == 0.0 and same.ci_low == same.ci_high == 0.0
    [reseed] = gate.compare_sides(gate.side_from_run(store, "reseed"), base, resamples=200)
    assert reseed.verdict in (gate.PASS, gate.INCONCLUSIVE) and not reseed.paired
    [other] = gate.compare_sides(gate.side_from_run(store, "otherref"), base, resamples=200)
    assert other.verdict == gate.NOT_COMPARABLE and "different reference clips" in other.reason
    # through a baseline file: the same verdict and numbers
    path = tmp_path / "gfvd.json"
    assert gate_cli(fvd_runs, "base", "--update-baseline", "--baseline", path) == 0
    [from_file] = gate.compare_sides(gate.side_from_run(store, "noisy"), gate.side_from_file(path), resamples=200)
    assert (from_file.verdict, from_file.delta, from_file.ci_low) == (worse.verdict, worse.delta, worse.ci_low)
    assert gate_cli(fvd_runs, "noisy", "--baseline", path) == 1
    assert "fvd" in capsys.readouterr().out
    # the covariance estimator comes from the options the run recorded, not from its version string
    assert store.metric_info("noisy").set_index("metric").loc["fvd", "args"].count('"estimator": "unbiased"') == 1
    older = gate.side_from_run(store, "noisy")
    older.metric_args.clear()  # a run recorded before metric options were stored
    [unknown] = gate.compare_sides(older, base, resamples=200)
    assert unknown.verdict == gate.NOT_COMPARABLE and "did not record the options fvd ran with" in unknown.reason


# ---------------------------------------------------------------- reports for CI

def test_junit_has_one_testcase_per_gated_metric(runs, tmp_path, capsys):
    path = tmp_path / "gate.xml"
    assert gate_cli(runs, "worse", "--baseline", "base", "--junit", path) == 1
    suite = ET.parse(path).getroot().find("testsuite")
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    assert set(cases) == {("vbf.gate.gen.t2v.2s", "flicker"), ("vbf.gate.real.t2v.2s", "flicker")}
    failure = cases[("vbf.gate.gen.t2v.2s", "flicker")].find("failure")
    assert failure is not None and "REGRESS flicker" in failure.get("message") and "CI" in failure.get("message")
    assert cases[("vbf.gate.real.t2v.2s", "flicker")].find("failure") is None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "1", "0")

    assert gate_cli(runs, "reseed", "--baseline", "base", "--junit", path) == 0
    suite = ET.parse(path).getroot().find("testsuite")
    skipped = [c.find("skipped") for c in suite.iter("testcase") if c.find("skipped") is not None]
    assert all(s.get("message").startswith("inconclusive: ") for s in skipped)
    assert suite.get("skipped") == str(len(skipped)) and suite.get("failures") == "0"


def test_markdown_summary_has_the_table(runs, tmp_path, capsys):
    path = tmp_path / "summary.md"
    assert gate_cli(runs, "worse", "--baseline", "base", "--markdown", path) == 1
    text = path.read_text()
    assert "| metric | model | task | clip | baseline | current | delta [95% CI] | margin | verdict |" in text
    row = next(l for l in text.splitlines() if l.startswith("| flicker | gen |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:4] == ["t2v", "2 s"] and cells[7] == "0.005" and cells[8] == "**REGRESS**"
    assert cells[6].startswith("-0.0") and "[" in cells[6]
    assert "| generate_seconds | gen |" in text and "not gated" in text
    assert "FAIL: 1 regression(s)" in text


# ---------------------------------------------------------------- baseline files

def test_update_baseline_round_trip(runs, tmp_path, capsys):
    path = tmp_path / "baselines" / "gsuite.json"
    assert gate_cli(runs, "base", "--update-baseline", "--baseline", path) == 0
    assert f"wrote baseline {path}: run base, 12 units in 2 group(s), metrics flicker, generate_seconds" in capsys.readouterr().out
    doc = json.loads(path.read_text())
    assert (doc["resolutions"], doc["fps"], len(doc["units"])) == ({"gen": "16x16", "real": "16x16"}, 4.0, 12)
    assert {"model", "task", "clip_seconds", "prompt_id", "seed", "metrics"} == set(doc["units"][0])
    assert doc["metrics"]["flicker"]["version"].endswith("segments 1s")

    store = Store(runs / "vbf.sqlite")
    for run_id in ("worse", "again", "reseed"):
        against_run = gate.compare_runs(store, run_id, "base")
        against_file = gate.compare_sides(gate.side_from_run(store, run_id), gate.side_from_file(path),
                                          confidence=0.95, resamples=1000, seed=0)
        assert [asdict(c) for c in against_file] == [asdict(c) for c in against_run]

    capsys.readouterr()
    assert gate_cli(runs, "worse", "--baseline", "base") == 1
    from_run = capsys.readouterr().out.splitlines()[1:]
    assert gate_cli(runs, "worse", "--baseline", path) == 1
    assert capsys.readouterr().out.splitlines()[1:] == from_run


def test_default_baseline_path_next_to_the_suite(runs, capsys):
    suite_dir = Path(Store(runs / "vbf.sqlite").run("base")["suite_path"]).parent
    assert gate_cli(runs, "base", "--update-baseline") == 0
    written = suite_dir / "baselines" / "gsuite.json"
    assert f"baseline {written}" in capsys.readouterr().out and written.is_file()
    assert gate_cli(runs, "again") == 0  # same suite file: the default baseline is found
    assert f"vs baseline file {written}" in capsys.readouterr().out
    # gate.baseline in a suite: a file relative to the suite file, or a run id
    store = Store(runs / "vbf.sqlite")
    run = {**store.run("again"), "config": {"gate": {"baseline": "baselines/gsuite.json"}}}
    assert gate.resolve_baseline(store, run, None).label == f"baseline file {written}"
    run["config"]["gate"]["baseline"] = "worse"
    assert gate.resolve_baseline(store, run, None).label == "run worse"
    run["config"]["gate"]["baseline"] = "baselines/missing.json"
    with pytest.raises(gate.ConfigError, match="baseline file not found"):
        gate.resolve_baseline(store, run, None)


def test_bad_baselines_exit_4_without_traceback(runs, tmp_path, capsys):
    missing = tmp_path / "nope" / "gsuite.json"
    assert gate_cli(runs, "worse", "--baseline", missing) == 4
    err = capsys.readouterr().err
    assert f"baseline file not found: {missing}" in err and "--update-baseline" in err and "Traceback" not in err

    assert gate_cli(runs, "worse", "--baseline", "no-such-run") == 4
    assert "'no-such-run' is neither a run" in capsys.readouterr().err

    broken = tmp_path / "broken.json"
    broken.write_text('{"format": ')
    assert gate_cli(runs, "worse", "--baseline", broken) == 4
    assert "not valid JSON" in capsys.readouterr().err

    broken.write_text(json.dumps({"format": "something else", "units": []}))
    assert gate_cli(runs, "worse", "--baseline", broken) == 4
    err = capsys.readouterr().err
    assert "not a vbench-flow baseline file" in err and "format" in err and "Traceback" not in err

    assert gate_cli(runs, "no-such-run", "--baseline", "base") == 4
    assert "no run 'no-such-run'" in capsys.readouterr().err


def test_incomplete_run_is_an_evaluation_error(tmp_path, capsys):
    suite = tmp_path / "partial.yaml"
    suite.write_text(textwrap.dedent(f"""\
        name: partial
        data: {{type: shapes, size: 16, fps: 4}}
        clip_seconds: [1]
        prompts: {{source: data, split: val, count: 3}}
        models:
          - {{name: gen, type: python, args: {{entry: "slow_generator:make", path: "{FIXTURES}", kwargs: {{fail_prompt: val-000001}}}}}}
        metrics:
          - {{name: flicker, margin: 0.01}}
        """))
    runs = tmp_path / "runs"
    assert vbf("run", suite, "--runs-dir", runs, "--run-id", "p", "--quiet") == 2
    capsys.readouterr()
    assert gate_cli(runs, "p", "--baseline", "p") == 2
    err = capsys.readouterr().err
    assert "run 'p' is partial: 2/3 units done, 1 failed" in err and "--resume" in err
    assert gate_cli(runs, "p", "--update-baseline", "--baseline", tmp_path / "b.json") == 2
    assert not (tmp_path / "b.json").exists()


# ---------------------------------------------------------------- the statistics

def test_verdict_rule_orientation_and_boundaries():
    rule = lambda lo, hi, hib, margin=0.005: gate.verdict_for(lo, hi, higher_is_better=hib, margin=margin, confidence=0.95)[0]
    assert rule(-0.02, -0.01, True) == gate.REGRESS
    assert rule(-0.02, -0.01, False) == gate.PASS  # lower is better: the value went down, an improvement
    assert rule(0.01, 0.02, False) == gate.REGRESS
    assert rule(-0.006, 0.01, True) == gate.INCONCLUSIVE
    assert rule(-0.005, 0.01, True) == gate.PASS  # exactly the margin is not beyond it
    assert rule(0.0, 0.0, True, margin=0.0) == gate.PASS
    assert rule(math.nan, math.nan, True) == gate.INCONCLUSIVE
    assert rule(-1.0, -0.5, True, margin=None) == gate.NOT_GATED


def test_paired_delta_interval():
    rng = np.random.default_rng(1)
    base = rng.normal(0.9, 0.05, 40)
    cur = base - 0.02 + rng.normal(0, 0.002, 40)
    mean, low, high = stats.paired_delta(cur, base, confidence=0.95, resamples=2000, seed=3)
    assert mean == pytest.approx(np.mean(cur - base)) and low < mean < high
    assert -0.03 < low and high < -0.01  # pairing removes the large spread between prompts
    assert tuple(stats.paired_delta(cur, base, confidence=0.95, resamples=2000, seed=3)) == (mean, low, high)
    _, ulow, uhigh = stats.unpaired_delta(cur, base, confidence=0.95, resamples=2000, seed=3)
    assert uhigh - ulow > 5 * (high - low)  # the same data, unpaired, is far less certain
    assert math.isnan(stats.paired_delta(cur[:1], base[:1], confidence=0.95, resamples=100, seed=0).low)
    with pytest.raises(ValueError):
        stats.paired_delta(cur, base[:-1], confidence=0.95, resamples=100, seed=0)


def test_seeds_of_one_prompt_are_resampled_together():
    # 4 prompts x 10 seeds whose deltas differ by prompt: the pairs are not 40 independent samples
    deltas = np.repeat([-0.03, 0.0, -0.01, 0.02], 10) + np.tile(np.linspace(-1e-3, 1e-3, 10), 4)
    clusters = np.repeat(["p0", "p1", "p2", "p3"], 10)
    zeros = np.zeros_like(deltas)
    _, low, high = stats.paired_delta(deltas, zeros, confidence=0.95, resamples=2000, seed=0)
    _, clow, chigh = stats.paired_delta(deltas, zeros, confidence=0.95, resamples=2000, seed=0, clusters=clusters)
    assert chigh - clow > 1.5 * (high - low)


def test_unpaired_rerun_with_new_seeds_rarely_if_ever_regresses():
    """The same model, new seeds: prompt effects are shared, seed noise differs. With margin 0,
    a false 'regress' needs the whole interval below zero; it must (almost) never happen."""
    rng = np.random.default_rng(7)
    regressions = 0
    for trial in range(200):
        prompts = rng.normal(0.9, 0.03, 8)
        base = prompts + rng.normal(0, 0.01, 8)
        cur = prompts + rng.normal(0, 0.01, 8)
        _, low, high = stats.unpaired_delta(cur, base, confidence=0.95, resamples=400, seed=trial)
        regressions += gate.verdict_for(low, high, higher_is_better=True, margin=0.0, confidence=0.95)[0] == gate.REGRESS
    assert regressions <= 2


def test_decide_exit_codes():
    def c(verdict, margin=0.01):
        return gate.MetricComparison("m", "t2v", 2.0, "flicker", 0.9, 0.9, 0.0, 0.0, 0.0, 6, True, True, margin, verdict, "")

    decide = lambda items, strict=False: gate.decide(items, strict=strict, confidence=0.95).exit_code
    assert decide([c(gate.PASS), c(gate.INCONCLUSIVE)]) == 0
    assert decide([c(gate.PASS), c(gate.INCONCLUSIVE)], strict=True) == 3
    assert decide([c(gate.PASS), c(gate.NOT_COMPARABLE)]) == 0
    assert decide([c(gate.PASS), c(gate.NOT_COMPARABLE)], strict=True) == 3
    assert decide([c(gate.REGRESS), c(gate.NOT_COMPARABLE)], strict=True) == 1
    assert decide([c(gate.NOT_COMPARABLE), c(gate.NOT_COMPARABLE)]) == 4
    assert decide([c(gate.NOT_GATED, margin=None)]) == 4  # a gate that gates nothing is a configuration error


def test_a_gated_metric_without_values_is_an_evaluation_error(tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""\
name: gmissing
data: {{type: shapes, size: 32, fps: 8}}
clip_seconds: [1]
prompts: {{source: data, split: test, count: 2, seeds: [0]}}
models:
  - {{name: flat, type: python, args: {{entry: "flat_generator:FlatGrey", path: "{FIXTURES}"}}}}
metrics:
  - {{name: flicker, margin: 0.01}}
  - {{name: object_colour_change, margin: 0.01}}
""")
    runs = tmp_path / "runs"
    assert vbf("run", suite, "--runs-dir", runs, "--run-id", "m", "--quiet") == 0
    capsys.readouterr()
    assert gate_cli(runs, "m", "--baseline", "m") == 2
    err = capsys.readouterr().err
    assert "object_colour_change have no value for 2 clip(s)" in err and "Traceback" not in err


def test_baseline_records_the_frame_size_of_the_clips_scored_not_data_size(tmp_path, capsys):
    """The suite's data.size is 16, the generator's clips are 24x24: the baseline says so, and a
    run whose clips are 16x16 is not comparable with it."""
    runs_dir = tmp_path / "runs"
    suite = write(tmp_path / "wide")
    suite.write_text(suite.read_text().replace("kwargs: {size: 16,", "kwargs: {size: 24,"))
    assert vbf("run", suite, "--runs-dir", runs_dir, "--run-id", "wide", "--quiet") == 0
    path = tmp_path / "wide.json"
    assert gate_cli(runs_dir, "wide", "--update-baseline", "--baseline", path) == 0
    assert "16x16, 24x24 at 4 fps" in capsys.readouterr().out
    assert json.loads(path.read_text())["resolutions"] == {"gen": "24x24", "real": "16x16"}

    assert vbf("run", write(tmp_path / "narrow"), "--runs-dir", runs_dir, "--run-id", "narrow", "--quiet") == 0
    comparisons = by_key(gate.compare_sides(gate.side_from_run(Store(runs_dir / "vbf.sqlite"), "narrow"),
                                            gate.side_from_file(path), margins={"flicker": 0.005}))
    assert comparisons[("gen", "flicker")].verdict == gate.NOT_COMPARABLE
    assert "frame size differs: 16x16 vs baseline 24x24" in comparisons[("gen", "flicker")].reason
    assert comparisons[("real", "flicker")].verdict == gate.PASS


def test_version_1_baseline_is_refused_with_the_command_that_rewrites_it(runs, tmp_path, capsys):
    path = tmp_path / "old.json"
    assert gate_cli(runs, "base", "--update-baseline", "--baseline", path) == 0
    doc = json.loads(path.read_text())
    doc["format_version"] = 1
    doc["resolution"] = doc.pop("resolutions") and 16
    path.write_text(json.dumps(doc))
    capsys.readouterr()
    assert gate_cli(runs, "again", "--baseline", path) == 4
    err = capsys.readouterr().err
    assert "version-1 baseline" in err and "--update-baseline" in err and "Traceback" not in err
