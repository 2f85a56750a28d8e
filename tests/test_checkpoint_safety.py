"""No code runs from data: every checkpoint is read with torch.load(weights_only=True), a file that
would run code is a user error naming it, and the writers store only tensors and plain values."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import generator
from generator.train import export_weights, save_checkpoint
from tests.test_runner import vbf, write_suite

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted([*(ROOT / "generator" / "checkpoints").glob("*.pt"), *(ROOT / "metrics" / "checkpoints").glob("*.pt")])


class CreatesFile:
    """Unpickled by a trusting loader, this opens (creates) ``marker``: the stand-in for any code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def write_malicious(path: Path, marker: Path, *, zipped: bool = True) -> Path:
    """A file laid out like a model export whose weights would create ``marker`` on load: zipped as
    torch.save writes it, or as a bare pickle."""
    state = {"kind": "starflow", "config": {}, "weights": CreatesFile(marker), "info": {}}
    if zipped:
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state))
    return path


SUITE = """\
name: unsafe
data: {{type: shapes, size: 32, fps: 8}}
clip_seconds: [2]
prompts: {{source: data, split: test, count: 1}}
models:
  - {{name: m, type: {model_type}, checkpoint: evil.pt}}
metrics:
  - {{name: flicker}}
"""


@pytest.mark.parametrize("model_type", ["starflow", "diffusion"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_suite_with_a_code_running_checkpoint_stops_before_any_compute(tmp_path, capsys, model_type, command):
    marker = tmp_path / "marker"
    evil = write_malicious(tmp_path / "evil.pt", marker)
    suite = write_suite(tmp_path, SUITE.format(model_type=model_type))
    extra = ["--runs-dir", str(tmp_path / "runs"), "--quiet"] if command == "run" else []
    assert vbf(command, str(suite), *extra) == 4
    err = capsys.readouterr().err
    assert str(evil) in err and "cannot be read safely" in err and "models[0]" in err, err
    assert "Traceback" not in err and "weights_only" not in err.replace("weights_only=True", "")
    assert not marker.exists()
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("zipped", [True, False], ids=["torch.save", "bare-pickle"])
def test_vbf_sample_refuses_a_code_running_checkpoint(tmp_path, capsys, zipped):
    marker = tmp_path / "marker"
    evil = write_malicious(tmp_path / "evil.pt", marker, zipped=zipped)
    assert vbf("sample", "--model", str(evil), "--prompt", "a red circle", "--out", str(tmp_path / "x.mp4")) == 4
    err = capsys.readouterr().err
    assert f"--model: {evil} cannot be read safely" in err and "vbf train" in err, err
    assert not marker.exists() and not (tmp_path / "x.mp4").exists()


def test_unreadable_checkpoint_is_a_user_error(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"")
    assert vbf("sample", "--model", str(junk), "--prompt", "x") == 4
    assert f"{junk} is not a readable torch checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_shipped_checkpoints_hold_only_tensors_and_plain_values(path):
    from generator.train import require_plain

    state = torch.load(path, map_location="cpu", weights_only=True)
    require_plain(state, path.name)


def _tiny_flow():
    from tests.test_starflow_training import tiny_config
    from generator.starflow import StarFlowV

    torch.manual_seed(0)
    return StarFlowV(tiny_config())


def test_writers_refuse_values_a_safe_load_cannot_read(tmp_path):
    from torch.optim.swa_utils import AveragedModel

    model = _tiny_flow()
    with pytest.raises(TypeError, match=r"\['info'\]\['val_loss'\] is a numpy.float32"):
        export_weights(tmp_path / "m.pt", model, {"val_loss": np.float32(0.5)})
    with pytest.raises(TypeError, match=r"\['extra'\]\['data'\] is a pathlib"):
        save_checkpoint(tmp_path / "t.pt", model, AveragedModel(model), {}, 1, [], {"data": tmp_path})
    assert not list(tmp_path.iterdir())


def test_resume_refuses_a_code_running_training_state(tmp_path):
    from generator.train import TrainConfig, train_model
    from tests.test_starflow_training import structured_batches

    marker = tmp_path / "marker"
    evil = write_malicious(tmp_path / "ckpt.pt", marker)
    with pytest.raises(ValueError, match=f"{re.escape(str(evil))} cannot be read safely"):
        train_model(_tiny_flow(), structured_batches(0), [], TrainConfig(steps=1), checkpoint=evil, resume=True,
                    progress=False)
    assert not marker.exists()


def test_load_refuses_an_export_whose_autoencoder_would_run_code(tmp_path):
    marker = tmp_path / "marker"
    evil_autoencoder = write_malicious(tmp_path / "vae.pt", marker)
    export_weights(tmp_path / "flow.pt", _tiny_flow(), {"autoencoder": str(evil_autoencoder)})
    with pytest.raises(ValueError, match=f"{re.escape(str(evil_autoencoder))} cannot be read safely"):
        generator.load(tmp_path / "flow.pt")
    assert not marker.exists()
