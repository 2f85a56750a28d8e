"""Learning-rate schedule shared by the extractors the project trains (domain CLIP, shapes-i3d)."""

from __future__ import annotations

import math
from typing import Callable


def warmup_cosine(warmup_steps: int, steps: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up to 1 over ``warmup_steps``, then cosine decay to 0 at ``steps``."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor
