"""Every interval the harness reports, in one place.

* :func:`mean_interval`: the mean of a metric over units, resampling prompts (each prompt's seeds
  stay together: seeds of one prompt are not independent draws of what a model does on prompts).
* :func:`paired_delta` and :func:`unpaired_delta`: the difference of two runs or models, resampling
  pairs (or prompts) together, or each side apart.
* :func:`band`: a per-segment interval of a series over time that never leaves the metric's range.
* :func:`set_interval`: a set-level metric (FVD) whose generated and reference sets are both
  resampled.

The bootstrap intervals are *expanded percentile* intervals (Hesterberg, "What teachers should
know about the bootstrap", 2015): the percentile interval of the resampled means, at tail
probabilities widened so that with ``k`` resampling units it matches a t interval on ``k - 1``
degrees of freedom. A plain percentile interval of a mean is too narrow for the 8-32 prompts a
suite scores (its spread uses ``1/k`` where the variance needs ``1/(k-1)``, and a normal quantile
where a t quantile belongs); the widened one keeps the percentile interval's shape, so a bounded
metric's interval stays within the values seen. Every procedure has a coverage test
(``tests/test_stats.py``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

DRAWS_PER_CHUNK = 4_000_000  # resampled indices held at once (bounded memory for any number of units)


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its interval (NaN bounds when there is none)."""

    value: float
    low: float
    high: float

    def __iter__(self):  # unpacks as (value, low, high)
        return iter((self.value, self.low, self.high))


def group_seed(run_seed: int, *key: object) -> int:
    """A stable per-group seed, so adding a model does not change another model's interval."""
    return (run_seed * 1_000_003 + zlib.crc32("|".join(map(str, key)).encode())) % (2**32)


def check_args(confidence: float, resamples: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")


def cluster_sums(values: np.ndarray, clusters: Sequence | np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per resampling unit (a cluster, or each value): the sum of its values and how many it holds."""
    values = np.asarray(values, dtype=np.float64)
    if clusters is None:
        return values, np.ones_like(values)
    clusters = np.asarray(clusters)
    if clusters.shape != values.shape:
        raise ValueError(f"clusters has shape {clusters.shape}; the values have {values.shape}")
    _, inverse = np.unique(clusters, return_inverse=True)
    return np.bincount(inverse, weights=values), np.bincount(inverse).astype(np.float64)


def resampled_means(sums: np.ndarray, counts: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``resamples`` bootstrap resamples of the units, cluster sizes weighting."""
    k = sums.size
    out = np.empty(resamples)
    chunk = max(1, DRAWS_PER_CHUNK // k)
    for start in range(0, resamples, chunk):
        m = min(chunk, resamples - start)
        idx = rng.integers(0, k, size=(m, k))
        out[start:start + m] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    return out


def expanded_tail(confidence: float, units: float) -> float:
    """The lower tail probability of the expanded percentile interval with ``units`` resampling
    units: ``Phi(-sqrt(k / (k - 1)) * t_{k-1}(1 - alpha / 2))``."""
    alpha = 1.0 - confidence
    if units < 2:
        return alpha / 2
    widened = math.sqrt(units / (units - 1)) * scipy_stats.t.ppf(1 - alpha / 2, units - 1)
    return float(scipy_stats.norm.cdf(-widened))


def percentile_bounds(draws: np.ndarray, tail: float) -> tuple[float, float]:
    low, high = np.quantile(np.asarray(draws, dtype=np.float64), [tail, 1.0 - tail])
    return float(low), float(high)


def mean_interval(values: Sequence[float] | np.ndarray, clusters: Sequence | np.ndarray | None = None, *,
                  confidence: float, resamples: int, seed: int) -> Estimate:
    """The mean and its cluster-bootstrap interval (resampling clusters, e.g. prompts, with their
    values). Fewer than two clusters: NaN bounds; identical values: a point."""
    check_args(confidence, resamples)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"need a non-empty 1-d sample, got shape {values.shape}")
    mean = float(values.mean())
    sums, counts = cluster_sums(values, clusters)
    if sums.size < 2:
        return Estimate(mean, math.nan, math.nan)
    if np.all(values == values[0]):
        return Estimate(mean, mean, mean)
    draws = resampled_means(sums, counts, resamples, np.random.default_rng(seed))
    return Estimate(mean, *percentile_bounds(draws, expanded_tail(confidence, sums.size)))


def paired_delta(current: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray, *,
                 confidence: float, resamples: int, seed: int, clusters: Sequence | np.ndarray | None = None) -> Estimate:
    """Mean of ``current - baseline`` (arrays aligned pair by pair), resampling pairs (or whole
    clusters of pairs)."""
    current, baseline = np.asarray(current, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if current.shape != baseline.shape or current.ndim != 1:
        raise ValueError(f"paired arrays must be 1-d and aligned, got shapes {current.shape} and {baseline.shape}")
    if current.size == 0:
        raise ValueError("no pairs to compare")
    return mean_interval(current - baseline, clusters, confidence=confidence, resamples=resamples, seed=seed)


def unpaired_delta(current: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray, *,
                   confidence: float, resamples: int, seed: int, current_clusters: Sequence | np.ndarray | None = None,
                   baseline_clusters: Sequence | np.ndarray | None = None) -> Estimate:
    """``mean(current) - mean(baseline)`` of two independent samples, each resampled on its own (by
    cluster when given). The tails are widened as for a Welch t interval: the bootstrap variance of
    each side is scaled to the unbiased one and the t quantile takes Welch's degrees of freedom."""
    check_args(confidence, resamples)
    current, baseline = np.asarray(current, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if current.ndim != 1 or baseline.ndim != 1 or current.size == 0 or baseline.size == 0:
        raise ValueError(f"need two non-empty 1-d samples, got shapes {current.shape} and {baseline.shape}")
    mean = float(current.mean() - baseline.mean())
    if np.all(current == current[0]) and np.all(baseline == baseline[0]):
        return Estimate(mean, mean, mean)
    c_sums, c_counts = cluster_sums(current, current_clusters)
    b_sums, b_counts = cluster_sums(baseline, baseline_clusters)
    if c_sums.size < 2 or b_sums.size < 2:
        return Estimate(mean, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    draws = resampled_means(c_sums, c_counts, resamples, rng) - resampled_means(b_sums, b_counts, resamples, rng)
    return Estimate(mean, *percentile_bounds(draws, _welch_tail(confidence, (c_sums, c_counts), (b_sums, b_counts))))


def _welch_tail(confidence: float, *sides: tuple[np.ndarray, np.ndarray]) -> float:
    """Tail probability for the difference of two cluster means, widened as a Welch t interval."""
    boot, unbiased, terms = 0.0, 0.0, []
    for sums, counts in sides:
        k, size = sums.size, counts.mean()
        means = sums / counts
        spread = float(np.mean(counts ** 2 * (means - sums.sum() / counts.sum()) ** 2)) / size ** 2
        boot += spread / k
        term = spread / (k - 1)
        unbiased += term
        terms.append((term, k))
    if boot <= 0:
        return (1 - confidence) / 2
    df = unbiased ** 2 / sum(term ** 2 / (k - 1) for term, k in terms if term > 0)
    widened = math.sqrt(unbiased / boot) * scipy_stats.t.ppf(1 - (1 - confidence) / 2, df)
    return float(scipy_stats.norm.cdf(-widened))


def band(values: np.ndarray, *, confidence: float, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and interval of each column of ``values`` (clips x segments; NaN where a clip has no
    value): the clips are resampled as whole curves, one draw serving every segment they cover,
    and each segment's bounds are the expanded percentiles of its resampled means, so they stay
    within the values observed, and a bounded metric's band within its range."""
    check_args(confidence, resamples)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"need a clips x segments array, got shape {values.shape}")
    means, lows, highs = (np.full(values.shape[1], math.nan) for _ in range(3))
    present = np.isfinite(values)
    rng = np.random.default_rng(seed)
    # segments with the same clips present share one set of draws (all of them, when no clip is short)
    for mask in np.unique(present, axis=1).T:
        columns = np.flatnonzero((present == mask[:, None]).all(axis=0))
        rows = values[mask][:, columns]
        k = rows.shape[0]
        if k == 0:
            continue
        means[columns] = rows.mean(axis=0)
        if k < 2:
            continue
        draws = resample_counts(rng, k, resamples) @ rows / k  # resamples x segments
        tail = expanded_tail(confidence, k)
        lows[columns], highs[columns] = np.quantile(draws, [tail, 1.0 - tail], axis=0)
        constant = (rows == rows[0]).all(axis=0)  # a point, not a resampling artefact
        lows[columns[constant]] = highs[columns[constant]] = means[columns[constant]]
    return means, lows, highs


def resample_counts(rng: np.random.Generator, units: int, draws: int) -> np.ndarray:
    """(draws, units): how often each unit is drawn in each of ``draws`` resamples with replacement."""
    drawn = rng.integers(0, units, (draws, units))
    counts = np.zeros((draws, units), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(draws), units), drawn.ravel()), 1)
    return counts


def set_interval(statistic: Callable[[np.ndarray, np.ndarray, int], np.ndarray], sizes: tuple[int, int], value: float,
                 *, confidence: float, resamples: int, seed: int, lower: float | None = 0.0) -> Estimate:
    """The interval of a statistic of a reference and a generated set of units (FVD).

    Each draw resamples both sets with replacement; ``statistic(reference_counts, generated_counts,
    seed)`` evaluates all draws at once (``*_counts``: draws x units, how often each unit is drawn).
    A draw's duplicates inflate a distance by about the estimate's own finite-sample bias, so the
    draws' offset from ``value`` is not sampling error, but their spread around their own mean is:
    the interval is the percentile interval of the draws moved so that their mean sits on
    ``value``, which it therefore contains. (Reflecting them instead, as a basic bootstrap does,
    put every miss above the interval in the coverage test: a distance's spread grows with it.) It
    targets what ``value`` estimates at these set sizes, and never goes below ``lower`` (unless
    ``value`` itself does: an extrapolated distance may). Fewer than two units on a side, or no
    resamples: NaN bounds.
    """
    check_args(confidence, max(resamples, 1))
    reference_units, generated_units = sizes
    if reference_units < 2 or generated_units < 2 or resamples < 1 or not math.isfinite(value):
        return Estimate(value, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    draws = np.asarray(statistic(resample_counts(rng, reference_units, resamples),
                                 resample_counts(rng, generated_units, resamples), int(rng.integers(2**31))), float)
    low, high = percentile_bounds(draws - draws.mean() + value, (1.0 - confidence) / 2.0)
    if lower is not None and value >= lower:  # an estimate below the bound (an extrapolation) keeps its interval
        low = max(lower, low)
    return Estimate(value, min(low, value), max(high, value))


def set_delta(current: Callable[[np.ndarray], np.ndarray], baseline: Callable[[np.ndarray], np.ndarray], units: int, *,
              value: float, paired: bool, confidence: float, resamples: int, seed: int) -> tuple[float, float, int]:
    """(low, high, draws) of the difference ``value`` of a set-level statistic between two sets of
    ``units`` units each, against one fixed reference: each draw resamples the units (the same draw
    on both sides when they pair), and ``current(counts)`` and ``baseline(counts)`` evaluate every
    draw at once (``counts``: draws x units). A draw's duplicates inflate each side by about its own
    spread over n, which cancels only when the two sides spread alike, so, as in
    :func:`set_interval`, the interval is the percentile interval of the differences moved so that
    their mean sits on ``value``."""
    check_args(confidence, resamples)
    rng = np.random.default_rng(seed)
    counts = resample_counts(rng, units, resamples)
    other = counts if paired else resample_counts(rng, units, resamples)
    deltas = np.asarray(current(counts), dtype=np.float64) - np.asarray(baseline(other), dtype=np.float64)
    if len(deltas) < 2:
        return math.nan, math.nan, len(deltas)
    low, high = percentile_bounds(deltas - deltas.mean() + value, (1.0 - confidence) / 2.0)
    return low, high, len(deltas)
