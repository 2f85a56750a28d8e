"""When a consistency win is no win: the one rule the report and the gate share.

A model that barely moves scores well on every consistency metric for free. A consistency metric
names its ``motion_counterpart`` (``metrics.streaming.Metric``); a model whose counterpart (mean
over its clips of one task and clip length) is more than ``report.static_margin`` (relative,
default 0.05) below the real clips' is *static* there, and its "better" verdicts on that metric are
not wins.

The default is strict on purpose: in ``suites/long_horizon.yaml`` a model moving 6 % less than the
real clips (AR diffusion, v2v 5 s) still came out "better" on flicker than the real clips, so a
consistency win counts only for a model that moves about as much as the real footage.
"""

from __future__ import annotations

import math
from typing import Any

DEFAULT_STATIC_MARGIN = 0.05


def suite_static_margin(config: dict[str, Any] | None) -> float:
    """The suite's ``report.static_margin`` (the default for runs made before it existed)."""
    value = ((config or {}).get("report") or {}).get("static_margin")
    return DEFAULT_STATIC_MARGIN if value is None else float(value)


def moves_too_little(motion: float, real: float, margin: float) -> bool:
    """The model's motion is more than ``margin`` (relative) below the real clips' (both finite)."""
    return math.isfinite(motion) and math.isfinite(real) and motion < (1 - margin) * real


REAL_CLIP_TYPES = ("dataset", "folder")


def real_clip_model(config: dict[str, Any] | None) -> str | None:
    """The suite's first model of real clips (a ``dataset`` model, else a ``folder`` one): what a
    model's motion is read against."""
    models = [m for m in (config or {}).get("models") or [] if isinstance(m, dict)]
    for kind in REAL_CLIP_TYPES:
        for spec in models:
            if spec.get("type") == kind:
                return spec.get("name")
    return None
