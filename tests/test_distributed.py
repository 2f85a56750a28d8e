"""`torchrun -m vbench_flow run`: units sharded over ranks, rank 0 writes; results equal one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_runner import vbf
from vbench_flow.runner import RunFolder
from vbench_flow.store import SampleRecord, Store

FIXTURES = Path(__file__).parent / "fixtures"
SUITE = f"""\
name: dist
seed: 1
data: {{type: shapes, size: 32, fps: 8}}
clip_seconds: [2]
prompts: {{source: data, split: test, count: 3, seeds: [0, 1]}}
reference: {{split: val, count: 6}}
models:
  - {{name: real, type: dataset}}
  - {{name: made, type: python, batch_size: 2, args: {{entry: "slow_generator:make", path: "{FIXTURES}"}}}}
metrics:
  - {{name: flicker}}
  - {{name: fvd, args: {{bootstrap: 20}}}}
"""


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _records(run_dir: Path) -> dict[str, dict]:
    return {r["unit_id"]: r for r in map(json.loads, (run_dir / "samples.jsonl").read_text().splitlines())}


def test_two_processes_equal_one(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    # in this process: one thread (conftest), as each torchrun rank (OMP_NUM_THREADS=1), so the same float sums
    assert vbf("run", suite, "--runs-dir", tmp_path / "one", "--run-id", "r", "--quiet") == 0
    two = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "vbench_flow",
                "run", str(suite), "--runs-dir", "two", "--run-id", "r", "--quiet"], tmp_path)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("coverage: expected 12 / done 12") == 1  # rank 0 reports for everyone

    first, second = _records(tmp_path / "one" / "r"), _records(tmp_path / "two" / "r")
    assert first.keys() == second.keys() and len(first) == 12
    for unit, record in first.items():
        other = second[unit]
        assert (record["metrics"], record["features"], record["video_sha256"]) == \
               (other["metrics"], other["features"], other["video_sha256"])
    assert not list((tmp_path / "two" / "r").glob("samples.rank*.jsonl"))  # merged and removed

    a = Store(tmp_path / "one" / "vbf.sqlite").aggregates(["r"]).drop(columns="run_id")
    b = Store(tmp_path / "two" / "vbf.sqlite").aggregates(["r"]).drop(columns="run_id")
    assert set(a["metric"]) == {"flicker", "fvd"}
    assert a.equals(b)  # exactly: the same records in the same order give the same sums and draws
    store = Store(tmp_path / "two" / "vbf.sqlite")
    assert store.run("r")["done"] == 12 and set(store.run("r")["models"]) == {"real", "made"}


def test_unmerged_rank_logs_count_on_resume(tmp_path):
    folder = RunFolder(tmp_path)
    base = dict(model="m", task="t2v", clip_seconds=1.0, seed=0, prompt="p", status="ok")
    folder.append(SampleRecord(unit_id="a", prompt_id="a", **base))
    folder.append(SampleRecord(unit_id="b", prompt_id="b", **base), tmp_path / "samples.rank1.jsonl")
    with (tmp_path / "samples.rank0.jsonl").open("w") as handle:  # a record cut short by a kill
        handle.write('{"unit_id": "c", "mod')
    assert set(folder.read_records()) == {"a", "b"}
    merged = folder.merge_shard_logs()
    assert [r.unit_id for r in merged] == ["b"] and not folder.shard_logs()
    assert set(folder.read_records()) == {"a", "b"}


def test_the_newest_record_of_a_unit_wins(tmp_path):
    folder = RunFolder(tmp_path)
    base = dict(model="m", task="t2v", clip_seconds=1.0, seed=0, prompt="p", prompt_id="a", unit_id="a")
    folder.append(SampleRecord(status="ok", finished="2026-01-02T00:00:00+00:00", **base))  # the retry, merged
    folder.append(SampleRecord(status="failed", finished="2026-01-01T00:00:00+00:00", **base),
                  tmp_path / "samples.rank1.jsonl")  # the first attempt, left in a killed run's rank log
    assert folder.read_records()["a"].status == "ok"


def test_the_cli_leaves_the_process_group_before_exiting(tmp_path):
    """A gloo group left to interpreter shutdown can abort a torchrun rank after its work is done."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert vbf("validate", Path(__file__).resolve().parents[1] / "suites" / "smoke.yaml") == 0
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
