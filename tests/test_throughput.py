"""Cost metrics: the meter around generate(), the per-clip values, and their path through a run."""

from __future__ import annotations

import time

import numpy as np
import pytest

from metrics import throughput
from metrics.throughput import GenerationMeter
from tests.test_runner import FIXTURES, records, vbf, write_suite


def test_meter_times_the_call_and_sees_memory_it_allocates():
    with GenerationMeter() as meter:
        block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, every page touched
        time.sleep(0.05)
        del block
    record = meter.record()
    assert record["seconds"] >= 0.05
    assert 48 <= record["peak_memory_mb"] < 200  # released before the end: only a sampling meter sees it


def test_values_from_a_generation_record():
    record = {"seconds": 4.0, "reference_seconds": 3.0, "flow_seconds": 0.5, "peak_memory_mb": 10.0,
              "iterations": [2, 4, 6]}
    assert throughput.generation_seconds(record) == 1.0     # the self-check run is not generation
    assert throughput.frames_per_second(record, 40) == 40.0
    assert throughput.speedup(record) == 6.0                # 3.0 s sequential / 0.5 s in the flow
    assert throughput.mean_iterations(record) == 4.0
    assert throughput.peak_memory_mb(record) == 10.0
    assert throughput.peak_memory_mb({**record, "peak_cuda_memory_mb": 7.0}) == 7.0
    # a batch of 2: the harness shares the call's seconds, the generator reports per call
    batched = {**record, "seconds": 2.0, "batch_size": 2}
    assert throughput.generation_seconds(batched) == 0.5 and throughput.speedup(batched) == 6.0
    with pytest.raises(ValueError, match="no frames were generated"):
        throughput.frames_per_second(record, 0)


def test_stage_seconds_are_per_clip_and_the_evaluation_ratio_is_against_the_reference():
    flow = {"flow_seconds": 3.0, "denoise_seconds": 0.2, "decode_seconds": 2.0, "batch_size": 4,
            "network_evaluations": 30, "reference_network_evaluations": 120}
    assert throughput.stage_seconds(flow, "flow_seconds", "sampling_seconds") == 0.75  # the call's 3 s over 4 clips
    assert throughput.stage_seconds(flow, "denoise_seconds") == 0.05
    assert throughput.stage_seconds({"sampling_seconds": 1.0}, "flow_seconds", "sampling_seconds") == 1.0
    assert throughput.evaluations_vs_sequential(flow) == 0.25
    with pytest.raises(KeyError):
        throughput.stage_seconds({"sampling_seconds": 1.0}, "denoise_seconds")


def test_cost_metrics_through_a_run(tmp_path, capsys):
    suite = write_suite(tmp_path, f"""\
        name: costs
        data: {{type: shapes, size: 16, fps: 4}}
        clip_seconds: [2]
        tasks: [t2v, i2v]
        prompts: {{source: data, split: val, count: 2}}
        models:
          - {{name: gen, type: python, batch_size: 2,
              args: {{entry: "slow_generator:CountingGenerator", path: "{FIXTURES}", kwargs: {{delay: 0.05}}}}}}
          - {{name: real, type: dataset}}
        metrics:
          - {{name: frames_per_second}}
          - {{name: network_evaluations, models: [gen]}}
          - {{name: sampler_iterations, models: [gen]}}
          - {{name: peak_memory_mb}}
        """)
    assert vbf("run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "c", "--quiet") == 0
    everything = records(tmp_path / "runs" / "c")
    real = [r for r in everything if r["model"] == "real"]
    assert len(real) == 4 and all(set(r["metrics"]) == {"frames_per_second", "peak_memory_mb"} for r in real)
    lines = {(r["task"], r["prompt_id"]): r for r in everything if r["model"] == "gen"}
    for (task, _), r in lines.items():
        generated = 9 - (1 if task == "i2v" else 0)  # 2 s at 4 fps = 9 frames; i2v is given the first
        g = r["generation"]
        assert g["batch_size"] == 2 and g["seconds"] >= 0.05  # the call's time shared by its 2 clips
        assert r["metrics"]["frames_per_second"] == pytest.approx(generated / g["seconds"])
        assert r["metrics"]["network_evaluations"] == 2 * generated  # as the generator reported for the call
        assert r["metrics"]["sampler_iterations"] == 2.0


def test_a_cost_the_generator_does_not_report_is_a_clear_metric_error(tmp_path, capsys):
    suite = write_suite(tmp_path, """\
        name: costs
        data: {type: shapes, size: 16, fps: 4}
        clip_seconds: [2]
        prompts: {source: data, split: val, count: 1}
        models: [{name: real, type: dataset}]
        metrics: [{name: network_evaluations}]
        """)
    assert vbf("run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "c", "--quiet") == 0
    assert "network_evaluations: no value for 1 clip(s)" in capsys.readouterr().err
    (line,) = records(tmp_path / "runs" / "c")
    assert line["status"] == "ok" and "network_evaluations" not in line["metrics"]
    assert "did not report it" in line["metric_errors"]["network_evaluations"]


def test_a_metric_restricted_to_an_unknown_model_is_a_validation_error(tmp_path, capsys):
    suite = write_suite(tmp_path, """\
        name: costs
        data: {type: shapes, size: 16, fps: 4}
        clip_seconds: [2]
        prompts: {source: data, split: val, count: 1}
        models: [{name: jacobi, type: dataset}]
        metrics: [{name: network_evaluations, models: [jacobbi]}]
        """)
    assert vbf("validate", str(suite)) == 4
    err = capsys.readouterr().err
    assert "metrics[0].models[0]" in err and "did you mean 'jacobi'" in err


def test_every_metric_says_what_kind_it_is_and_the_report_reads_it():
    from vbench_flow.registry import metric_types
    from vbench_flow.reporting import _is_cost

    kinds = {name: entry.kind for name, entry in metric_types().items()}
    cost = {"frames_per_second", "generate_seconds", "peak_memory_mb", "latency_to_first_frame",
            "network_evaluations", "sampler_iterations", "speedup_vs_sequential", "latent_max_abs_diff",
            "latent_sampling_seconds", "denoiser_seconds", "decoder_seconds", "evaluations_vs_sequential"}
    assert {name for name, kind in kinds.items() if kind == "cost"} == cost
    assert kinds["fvd"] == "set" and kinds["flicker"] == kinds["clipsim"] == "quality"
    assert _is_cost("latency_to_first_frame", {"kind": "cost", "extractor": "x"})
    assert not _is_cost("flicker", {"kind": "quality", "extractor": "none (pixel differences)"})
    # a store written before kinds were recorded: the cost metrics' extractor says it
    assert _is_cost("generate_seconds", {"kind": None, "extractor": "none (measured around generate)"})
    assert not _is_cost("flicker", {"kind": float("nan"), "extractor": "none (pixel differences)"})
