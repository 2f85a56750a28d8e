"""RAFT (metrics/raft.py): the official container loads strictly, and the flow equals the original code's.

The reference numbers below were produced by running VBench's vendored original RAFT
(``vbench/third_party/RAFT/core``, ``RAFT(args)`` with small=False, mixed_precision=False,
alternate_corr=False, dropout=0) in a throw-away script, float32 on CPU:

    sd = deterministic_state_dict({"module." + k: v for k, v in ref.state_dict().items()}, 0)
    ref.load_state_dict({k.replace("module.", ""): v for k, v in sd.items()}); ref.eval()
    flow = ref(*_pair(), iters=20, test_mode=True)[1]        # flow_up, as VBench uses it

and InputPadder(x.shape).pad(x) (default mode, as VBench) for the padding values. The weights are
random, so the flows are large and meaningless; the point is equal arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metrics.raft import (
    MIN_SIDE,
    WEIGHTS_FILENAME,
    RaftThings,
    load_raft_things,
    pad_to_multiple,
    raft_things_template,
)
from metrics.weights import deterministic_state_dict

# (y, x, flow_x, flow_y) of the reference's flow_up on _pair(); then mean and std of |flow|
FLOW_AT = [
    (0, 0, 7.316057205, -21.2181282),
    (0, 127, 13.89292336, -12.18284416),
    (127, 0, 5.364046097, -3.755512238),
    (127, 127, 6.760481834, 5.286933899),
    (64, 64, 18.9240799, -99.48182678),
    (5, 9, 18.77868271, -37.5307045),
    (17, 101, 25.09912109, -44.80345535),
    (33, 40, 40.34470367, -91.25697327),
    (48, 3, 30.3470726, -39.53454208),
    (50, 77, 3.638539791, -89.03025055),
    (63, 120, 10.56841278, -8.582448959),
    (71, 15, 50.01594162, -64.3533783),
    (80, 88, 16.9710331, -65.64531708),
    (91, 60, 17.55674744, -88.574646),
    (99, 110, 38.01318359, -39.36143494),
    (105, 27, 34.03215027, -54.18350983),
    (112, 70, 6.633514404, 1.828979731),
    (119, 45, 14.78504562, -9.853891373),
    (123, 99, 19.87500381, -12.98186302),
    (8, 66, 23.29063034, -64.8935318),
]
MAG_MEAN, MAG_STD = 61.48582077, 28.75344276

# InputPadder on a 130x133 input: pads [left 1, right 2, top 3, bottom 3] to 136x136; values at (c, y, x)
PADDED_SHAPE = (1, 3, 136, 136)
PADDED_AT = [((0, 0, 0, 0), 130.5145111), ((0, 0, 0, 135), 247.7809448), ((0, 1, 135, 0), 152.274765),
             ((0, 2, 135, 135), 9.578199387), ((0, 1, 2, 1), 219.321991), ((0, 0, 3, 1), 130.5145111),
             ((0, 2, 133, 134), 9.578199387), ((0, 1, 70, 134), 98.50684357), ((0, 0, 2, 70), 245.7360687)]


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth random RGB frame (0..255) and the same content moved 3 px to the right, 128x128."""
    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.random((1, 3, 18, 19)).astype(np.float32))
    base = F.interpolate(coarse, size=(128, 131), mode="bilinear", align_corners=False) * 255.0
    return base[..., 3:].contiguous(), base[..., :128].contiguous()


@pytest.fixture(scope="module")
def official_state() -> dict[str, torch.Tensor]:
    return deterministic_state_dict(raft_things_template(), 0)


@pytest.fixture(scope="module")
def weights_file(official_state, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("raft") / WEIGHTS_FILENAME
    torch.save(official_state, path)
    return path


@pytest.fixture(scope="module")
def model(weights_file) -> RaftThings:
    return load_raft_things(weights_file)


def test_template_is_the_official_layout():
    template = raft_things_template()
    assert len(template) == 179 and all(key.startswith("module.") for key in template)
    for key in ["module.fnet.conv1.weight", "module.fnet.layer3.0.downsample.0.weight", "module.cnet.norm1.running_var",
                "module.cnet.layer2.0.norm3.weight", "module.cnet.layer2.0.downsample.1.weight",
                "module.update_block.encoder.convc1.weight", "module.update_block.gru.convq2.weight",
                "module.update_block.flow_head.conv2.bias", "module.update_block.mask.2.weight"]:
        assert key in template, key
    assert template["module.update_block.encoder.convc1.weight"].shape == (256, 324, 1, 1)
    assert not any("fnet" in key and "norm" in key for key in template)  # instance norm has no tensors


def test_strict_load(model, official_state):
    assert not model.training
    loaded = raft_things_template(model)
    for key, value in official_state.items():
        if "layer2.0.norm3" in key or "layer3.0.norm3" in key:
            # alias of downsample.1: like the reference (which loads it last), downsample.1's value wins
            assert torch.equal(loaded[key], official_state[key.replace("norm3", "downsample.1")])
        else:
            assert torch.equal(loaded[key], value), key


def test_flow_equals_reference(model):
    with torch.no_grad():
        flow = model(*_pair())
    assert flow.shape == (1, 2, 128, 128)
    got = torch.tensor([[flow[0, 0, y, x], flow[0, 1, y, x]] for y, x, _, _ in FLOW_AT])
    want = torch.tensor([[fx, fy] for _, _, fx, fy in FLOW_AT])
    scale = want.abs().max()
    assert (got - want).abs().max() <= 1e-5 * scale
    magnitude = flow.norm(dim=1)
    assert magnitude.mean().item() == pytest.approx(MAG_MEAN, rel=1e-5)
    assert magnitude.std().item() == pytest.approx(MAG_STD, rel=1e-5)


def test_batched_equals_one_by_one(model):
    a, b = _pair()
    pairs = [(a, b), (b.flip(-1), a.flip(-1))]
    with torch.no_grad():
        batched = model(torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs]), iters=3)
        single = torch.cat([model(x, y, iters=3) for x, y in pairs])
    assert (batched - single).abs().max() <= 1e-6 * single.abs().max()


def test_pad_to_multiple_matches_input_padder():
    rng = np.random.default_rng(1)
    x = torch.from_numpy((rng.random((1, 3, 130, 133)) * 255).astype(np.float32))
    padded = pad_to_multiple(x)
    assert tuple(padded.shape) == PADDED_SHAPE
    for index, value in PADDED_AT:
        assert padded[index].item() == pytest.approx(value, rel=1e-7), index
    assert torch.equal(padded[..., 3:133, 1:134], x)
    assert pad_to_multiple(x[0]).shape == (3, 136, 136)  # leading axes are free
    assert pad_to_multiple(padded) is padded


def test_small_or_unpadded_inputs_refused(model):
    with pytest.raises(ValueError, match="NaN"):
        model(torch.zeros(1, 3, MIN_SIDE - 8, 256), torch.zeros(1, 3, MIN_SIDE - 8, 256))
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.zeros(1, 3, 130, 133), torch.zeros(1, 3, 130, 133))


def _save(tmp_path: Path, state: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / WEIGHTS_FILENAME
    torch.save(state, path)
    return path


def test_missing_key_refused(official_state, tmp_path):
    state = dict(official_state)
    del state["module.update_block.gru.convz1.weight"]
    with pytest.raises(ValueError, match=r"update_block\.gru\.convz1\.weight") as info:
        load_raft_things(_save(tmp_path, state))
    assert str(tmp_path) in str(info.value) and WEIGHTS_FILENAME in str(info.value)


def test_unexpected_key_and_wrong_shape_refused(official_state, tmp_path):
    state = dict(official_state)
    state["module.update_block.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"update_block\.extra\.weight"):
        load_raft_things(_save(tmp_path, state))
    state = dict(official_state)
    state["module.fnet.conv2.weight"] = torch.zeros(128, 128, 1, 1)
    with pytest.raises(ValueError, match=r"fnet\.conv2\.weight"):
        load_raft_things(_save(tmp_path, state))


def test_layouts_vbench_also_accepts(official_state, model, tmp_path):
    # VBench strips "module." with replace() and drops the version metadata (BatchNorm then fills
    # missing num_batches_tracked): unprefixed keys and absent counters load the same tensors
    state = {k.removeprefix("module."): v for k, v in official_state.items() if "num_batches_tracked" not in k}
    loaded = load_raft_things(_save(tmp_path, state))
    for (key, a), b in zip(loaded.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), key


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="raft-things.pth.*models.zip"):
        load_raft_things(tmp_path / "nowhere.pth")
    bad = tmp_path / "models.zip"
    bad.write_bytes(b"PK\x03\x04 not a torch file")
    with pytest.raises(ValueError, match="models.zip"):
        load_raft_things(bad)
