"""Deterministic, non-pretrained weights for any state dict: the same numbers on every machine.

Official extractor files (DINO, CLIP, RAFT, AMT, MUSIQ, ...) cannot be downloaded here, yet every
loader and preprocessing step must be checked against the reference code. Both sides load one
file filled by :func:`deterministic_state_dict`: the values come from NumPy's PCG64 generator
(stable across NumPy releases, unlike ``torch.manual_seed`` across torch releases), drawn key by
key in sorted order with the key folded into the seed, so adding or renaming one tensor never
changes the others.

Scales keep activations of deep networks finite: weights of fan-in ``n`` are drawn with standard
deviation ``1/sqrt(n)``, biases and embeddings small, normalisation gains near one, running
variances one. The networks are random, not trained: the point is equal arithmetic on both sides.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np
import torch


def _key_seed(seed: int, key: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([seed, zlib.crc32(key.encode())]))


def deterministic_tensor(key: str, like: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The value :func:`deterministic_state_dict` gives the tensor named ``key`` shaped ``like``."""
    if not like.is_floating_point():
        return like.clone()  # integer buffers (e.g. BatchNorm's num_batches_tracked) keep their value
    rng = _key_seed(seed, key)
    shape = tuple(like.shape)
    leaf = key.rsplit(".", 1)[-1]
    if "running_var" in leaf:
        values = 1.0 + 0.1 * rng.random(shape)
    elif "running_mean" in leaf:
        values = 0.05 * rng.standard_normal(shape)
    elif len(shape) == 1 and leaf in ("weight", "gamma"):
        values = 1.0 + 0.05 * rng.standard_normal(shape)  # normalisation gains (kernels have 2+ axes)
    elif leaf == "logit_scale":
        values = np.full(shape, np.log(1 / 0.07))
    elif len(shape) <= 1:
        values = 0.02 * rng.standard_normal(shape)  # biases, 1-d parameters
    elif leaf.endswith("weight"):  # linear and convolution kernels, (out, in, ...)
        fan_in = int(np.prod(shape[1:]))
        values = rng.standard_normal(shape) / np.sqrt(fan_in)
    else:
        values = 0.02 * rng.standard_normal(shape)  # embeddings, tokens, projections stored as raw tensors
    return torch.from_numpy(values.astype(np.float32)).to(like.dtype)


def deterministic_state_dict(template: Mapping[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Every tensor of ``template`` (a module's ``state_dict()``) refilled deterministically."""
    return {key: deterministic_tensor(key, value, seed) for key, value in sorted(template.items())}
