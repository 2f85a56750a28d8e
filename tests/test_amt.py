"""AMT-S (metrics/amt.py): strict loading of the official container, equality with VBench's AMT,
per-pair batching, and the building blocks checked on their own."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from metrics import amt
from metrics.weights import deterministic_state_dict


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Deterministic (seed 0) weights in the official ``{"state_dict": ...}`` container."""
    path = tmp_path_factory.mktemp("amt") / amt.WEIGHTS_FILENAME
    torch.save({"state_dict": deterministic_state_dict(amt.amt_s_template()["state_dict"], seed=0)}, path)
    return path


@pytest.fixture(scope="module")
def model(weights_file: Path) -> amt.AmtS:
    return amt.load_amt_s(weights_file)


def frames(pairs: int, h: int, w: int, shift: tuple[int, int] = (2, -3)) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random patterns (4 sinusoids per channel, numpy default_rng(0)); frame 1 is frame 0
    moved by ``shift`` (dy, dx) pixels. Values stay inside (0.1, 0.9)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.zeros((2, pairs, 3, h, w))
    for i in range(pairs):
        k = rng.uniform(0.02, 0.12, (3, 4, 2))
        phase = rng.uniform(0, 2 * np.pi, (3, 4))
        amp = rng.uniform(0.05, 0.12, (3, 4))
        for f, (dy, dx) in enumerate(((0, 0), shift)):
            for c in range(3):
                out[f, i, c] = 0.5 + sum(amp[c, j] * np.sin(k[c, j, 0] * (y - dy) + k[c, j, 1] * (x - dx) + phase[c, j])
                                         for j in range(4))
    t = torch.from_numpy(out.astype(np.float32))
    return t[0], t[1]


# Recorded from the reference: VBench's vendored AMT (vbench/third_party/amt, networks/AMT-S.py built
# from cfgs/AMT-S.yaml) loaded with the metrics.weights seed-0 file above, run as VBench runs it:
# model(img0, img1, embt=0.5 as (1,1,1,1), scale_factor=1.0, eval=True)['imgt_pred'], one pair at a
# time, float32, CPU, 1 thread, on frames(2, 128, 144). Entries are (pair, channel, row, column,
# value) at 20 unsaturated pixels spread over the output; MEAN and STD are of the whole output.
# Random weights amplify float32 rounding (the same forward in float64 moves these pixels by up to
# 6e-6 and the worst pixel by 5e-5), hence the 1e-5 tolerance; on the recording machine our module
# was bitwise equal to the reference.
REFERENCE_PIXELS = [
    (0, 0, 0, 1, 0.870872915),
    (0, 0, 25, 41, 0.157940626),
    (0, 0, 51, 91, 0.615527153),
    (0, 0, 82, 64, 0.138660759),
    (0, 0, 116, 45, 0.0363621712),
    (0, 1, 40, 12, 0.520636201),
    (0, 1, 117, 0, 0.97200191),
    (0, 2, 39, 142, 0.803865314),
    (0, 2, 84, 1, 0.641859412),
    (0, 2, 124, 37, 0.485528052),
    (1, 0, 24, 97, 0.170800313),
    (1, 0, 51, 123, 0.854369521),
    (1, 0, 78, 93, 0.0303512812),
    (1, 0, 106, 80, 0.639185488),
    (1, 1, 4, 120, 0.725206137),
    (1, 1, 76, 80, 0.614222646),
    (1, 2, 23, 4, 0.229212791),
    (1, 2, 59, 3, 0.677513659),
    (1, 2, 94, 57, 0.550589502),
    (1, 2, 127, 142, 0.214267552),
]
REFERENCE_MEAN = 0.6738505588
REFERENCE_STD = 0.4330895904


def test_official_container_loads_strictly(weights_file: Path, model: amt.AmtS) -> None:
    template = amt.amt_s_template()
    assert list(template) == ["state_dict"]
    assert len(template["state_dict"]) == 213  # the reference network's parameter count, no buffers
    assert not model.training
    saved = torch.load(weights_file, weights_only=True)["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_missing_or_renamed_key_is_refused(tmp_path: Path) -> None:
    state = deterministic_state_dict(amt.amt_s_template()["state_dict"], seed=0)
    state["update4.gru.0.kernel"] = state.pop("update4.gru.0.weight")
    path = tmp_path / "renamed.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match=r"update4\.gru\.0\.weight") as info:
        amt.load_amt_s(path)
    assert "update4.gru.0.kernel" in str(info.value) and amt.WEIGHTS_URL in str(info.value)


def test_wrong_shape_is_refused(tmp_path: Path) -> None:
    state = deterministic_state_dict(amt.amt_s_template()["state_dict"], seed=0)
    state["comb_block.0.bias"] = torch.zeros(5)
    path = tmp_path / "shape.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match=r"comb_block\.0\.bias"):
        amt.load_amt_s(path)


def test_bare_state_dict_and_other_files_are_refused(tmp_path: Path) -> None:
    bare = tmp_path / "bare.pth"
    torch.save(amt.amt_s_template()["state_dict"], bare)
    with pytest.raises(ValueError, match="state_dict") as info:
        amt.load_amt_s(bare)
    assert str(bare) in str(info.value) and amt.WEIGHTS_FILENAME in str(info.value)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a torch file"):
        amt.load_amt_s(junk)


def test_missing_file_says_what_to_get(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=amt.WEIGHTS_FILENAME) as info:
        amt.load_amt_s(tmp_path / "nowhere" / "amt-s.pth")
    assert amt.WEIGHTS_URL in str(info.value)


def test_matches_reference_fingerprint(model: amt.AmtS) -> None:
    img0, img1 = frames(2, 128, 144)
    with torch.no_grad():
        out = model(img0, img1, torch.full((1, 1, 1, 1), 0.5))
    assert out.shape == (2, 3, 128, 144) and out.dtype == torch.float32
    got = [out[b, c, y, x].item() for b, c, y, x, _ in REFERENCE_PIXELS]
    # float32 through AMT's iterative refinement differs by up to 1.04e-5 between CPU instruction sets
    # (AVX-512 against the reference's host); an interpolation time off by 1e-3 moves these pixels by 1.1e-2
    np.testing.assert_allclose(got, [v for *_, v in REFERENCE_PIXELS], rtol=0, atol=5e-5)
    assert out.double().mean().item() == pytest.approx(REFERENCE_MEAN, abs=1e-5)
    assert out.double().std().item() == pytest.approx(REFERENCE_STD, abs=1e-5)


def test_batch_equals_one_pair_at_a_time(model: amt.AmtS) -> None:
    img0, img1 = frames(2, 128, 128)
    embt = torch.tensor([0.5, 0.3]).view(2, 1, 1, 1)
    with torch.no_grad():
        batched = model(img0, img1, embt)
        single = torch.cat([model(img0[i:i + 1], img1[i:i + 1], embt[i:i + 1]) for i in range(2)])
        # the per-pair mean stays per pair: brightening pair 1 leaves pair 0 alone
        other = model(img0, torch.stack([img1[0], img1[1] * 0.5]), embt)
    assert (batched - single).abs().max().item() <= 1e-6
    assert torch.equal(other[0], batched[0]) and not torch.equal(other[1], batched[1])
    assert batched.min().item() >= 0 and batched.max().item() <= 1


def test_refuses_sizes_the_reference_turns_into_nan(model: amt.AmtS) -> None:
    for h, w in ((112, 128), (128, 120)):
        img = torch.rand(1, 3, h, w)
        with pytest.raises(ValueError, match="multiples of 16"):
            model(img, img, 0.5)


def test_warp_is_a_pixel_shift() -> None:
    img = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    flow = torch.zeros(1, 2, 20, 24)
    # the sampling grid is normalised to [-1, 1] and back: positions are off by a few 1e-6 px
    assert torch.allclose(amt._warp(img, flow), img, atol=1e-5)
    flow[:, 0], flow[:, 1] = 2.0, -1.0  # sample at (x + 2, y - 1), edges repeated
    expected = img[:, :, (torch.arange(20) - 1).clamp(0, 19)][:, :, :, (torch.arange(24) + 2).clamp(0, 23)]
    assert torch.allclose(amt._warp(img, flow), expected, atol=1e-5)


def test_correlation_lookup_layout() -> None:
    """Level 0 of the lookup is the scaled dot product of the two feature maps at the window
    offsets, the slower window axis moving x, as documented."""
    g = torch.Generator().manual_seed(0)
    f0, f1 = torch.randn(1, amt.CORR_DIM, 16, 16, generator=g), torch.randn(1, amt.CORR_DIM, 16, 16, generator=g)
    pyramid = amt.CorrPyramid(f0, f1)
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    grid = torch.stack([xs, ys])[None]
    out = pyramid.lookup(grid, grid)
    side = 2 * amt.CORR_RADIUS + 1
    assert out.shape == (1, 2 * amt.CORR_LEVELS * side**2, 16, 16)
    backward = amt.CORR_LEVELS * side**2
    y, x = 7, 9
    for i, j in ((3, 3), (0, 6), (5, 1)):
        dx, dy = i - amt.CORR_RADIUS, j - amt.CORR_RADIUS
        want = (f0[0, :, y, x] @ f1[0, :, y + dy, x + dx]) / math.sqrt(amt.CORR_DIM)
        assert out[0, i * side + j, y, x].item() == pytest.approx(want.item(), abs=1e-4)
        want_t = (f1[0, :, y, x] @ f0[0, :, y + dy, x + dx]) / math.sqrt(amt.CORR_DIM)
        assert out[0, backward + i * side + j, y, x].item() == pytest.approx(want_t.item(), abs=1e-4)
