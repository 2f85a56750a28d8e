"""Coverage of every interval procedure in vbench_flow.stats: data simulated with a known truth,
300 repetitions, and the nominal 95 % interval must cover the truth in 92-98 % of them (a binomial
spread of about 1.3 % around 95 %)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metrics import fvd
from vbench_flow import stats

REPETITIONS = 300
LOW, HIGH = 0.92, 0.98


def coverage(simulate, interval, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for repetition in range(REPETITIONS):
        truth, data = simulate(rng)
        low, high = interval(data, repetition)
        hits += low <= truth <= high
    return hits / REPETITIONS


@pytest.mark.parametrize("name,draw,truth", [
    ("normal, 12 prompts", lambda rng: rng.normal(0.7, 0.1, 12), 0.7),
    ("skewed and bounded, 24 prompts", lambda rng: rng.beta(2, 8, 24), 0.2),
])
def test_mean_interval_covers_the_mean(name, draw, truth):
    def interval(values, seed):
        estimate = stats.mean_interval(values, confidence=0.95, resamples=1000, seed=seed)
        return estimate.low, estimate.high

    assert LOW <= coverage(lambda rng: (truth, draw(rng)), interval) <= HIGH, name


def test_a_plain_percentile_interval_would_be_too_narrow_for_few_prompts():
    """Why the tails are widened: with 10 prompts the plain percentile interval misses far too often.
    (At 8 prompts the widened one covers 91-92 %: below that, score more prompts.)"""
    def plain(values, seed):
        draws = stats.resampled_means(values, np.ones_like(values), 1000, np.random.default_rng(seed))
        return stats.percentile_bounds(draws, 0.025)

    def widened(values, seed):
        estimate = stats.mean_interval(values, confidence=0.95, resamples=1000, seed=seed)
        return estimate.low, estimate.high

    simulate = lambda rng: (0.0, rng.normal(0.0, 1.0, 10))  # noqa: E731
    assert coverage(simulate, plain) < 0.91 and LOW <= coverage(simulate, widened) <= HIGH


def test_cluster_bootstrap_covers_the_mean_when_seeds_of_a_prompt_are_correlated():
    """10 prompts x 3 seeds with a strong prompt effect: resampling prompts covers the mean;
    resampling the 30 units as if independent would not."""
    def simulate(rng):
        prompt_effect = rng.normal(0.0, 1.0, 10)
        values = (prompt_effect[:, None] + rng.normal(0.0, 0.3, (10, 3))).ravel()
        return 0.0, values

    clusters = np.repeat(np.arange(10), 3)

    def by_prompt(values, seed):
        estimate = stats.mean_interval(values, clusters, confidence=0.95, resamples=1000, seed=seed)
        return estimate.low, estimate.high

    def by_unit(values, seed):
        estimate = stats.mean_interval(values, confidence=0.95, resamples=1000, seed=seed)
        return estimate.low, estimate.high

    assert LOW <= coverage(simulate, by_prompt) <= HIGH
    assert coverage(simulate, by_unit) < 0.85


def test_paired_delta_covers_the_true_difference():
    def simulate(rng):
        prompt = rng.normal(0.5, 0.2, 16)  # shared by both models: pairing removes it
        return 0.03, (prompt + 0.03 + rng.normal(0, 0.02, 16), prompt + rng.normal(0, 0.02, 16))

    def interval(data, seed):
        estimate = stats.paired_delta(*data, confidence=0.95, resamples=1000, seed=seed)
        return estimate.low, estimate.high

    assert LOW <= coverage(simulate, interval) <= HIGH


def test_unpaired_delta_covers_the_true_difference_with_unequal_spreads_and_sizes():
    def simulate(rng):
        return -0.1, (rng.normal(0.4, 0.05, 12), rng.normal(0.5, 0.2, 20))

    def interval(data, seed):
        estimate = stats.unpaired_delta(*data, confidence=0.95, resamples=1000, seed=seed)
        return estimate.low, estimate.high

    assert LOW <= coverage(simulate, interval) <= HIGH


def test_unpaired_delta_with_clusters_covers_the_true_difference():
    clusters = np.repeat(np.arange(8), 2)

    def simulate(rng):
        side = lambda mean: (rng.normal(mean, 0.3, 8)[:, None] + rng.normal(0, 0.1, (8, 2))).ravel()  # noqa: E731
        return 0.2, (side(0.2), side(0.0))

    def interval(data, seed):
        estimate = stats.unpaired_delta(*data, confidence=0.95, resamples=1000, seed=seed,
                                        current_clusters=clusters, baseline_clusters=clusters)
        return estimate.low, estimate.high

    assert LOW <= coverage(simulate, interval) <= HIGH


def test_band_covers_each_segment_and_never_leaves_a_bounded_range():
    """A non-negative metric that is mostly zero (colour changes per segment): the band's low end
    stays at or above 0 where a symmetric t interval would go below; each segment's band covers
    its mean."""
    rates = np.array([0.2, 0.5, 1.0, 2.0])

    def simulate(rng):
        return rates, rng.poisson(rates, size=(16, rates.size)).astype(float)

    rng = np.random.default_rng(1)
    hits = np.zeros(rates.size)
    for repetition in range(REPETITIONS):
        truth, values = simulate(rng)
        means, lows, highs = stats.band(values, confidence=0.95, resamples=1000, seed=repetition)
        assert np.all(lows >= 0) and np.all(lows <= means) and np.all(means <= highs)
        hits += (lows <= truth) & (truth <= highs)
    # the rarest segment (1 in 5 clips non-zero) is discrete and skewed: its coverage may sit lower
    assert np.all(hits[1:] / REPETITIONS >= LOW) and np.all(hits / REPETITIONS <= HIGH) and hits[0] / REPETITIONS >= 0.85
    t_low = values.mean(0) - 2.13 * values.std(0, ddof=1) / 4
    assert np.any(t_low < 0)  # what the band replaces would have left the range


def test_degenerate_inputs():
    assert math.isnan(stats.mean_interval([0.4], confidence=0.95, resamples=100, seed=0).low)
    assert tuple(stats.mean_interval([0.4, 0.4], confidence=0.95, resamples=100, seed=0)) == (0.4, 0.4, 0.4)
    assert math.isnan(stats.mean_interval([1.0, 2.0, 3.0], [0, 0, 0], confidence=0.95, resamples=100, seed=0).low)
    with pytest.raises(ValueError, match="aligned"):
        stats.paired_delta([1.0, 2.0], [1.0], confidence=0.95, resamples=100, seed=0)
    with pytest.raises(ValueError, match="confidence"):
        stats.mean_interval([1.0, 2.0], confidence=1.5, resamples=100, seed=0)
    assert stats.mean_interval([1.0, 2.0, 4.0], confidence=0.95, resamples=500, seed=3) == \
        stats.mean_interval([1.0, 2.0, 4.0], confidence=0.95, resamples=500, seed=3)  # seeded


def test_expanded_tail_matches_a_t_interval_for_normal_resampled_means():
    """With k units the tail is Phi(-sqrt(k/(k-1)) t_{k-1}): for k = 10 at 95 %, t_9 = 2.2622."""
    assert stats.expanded_tail(0.95, 10) == pytest.approx(0.5 * math.erfc(math.sqrt(10 / 9) * 2.262157 / math.sqrt(2)),
                                                          rel=1e-5)
    assert stats.expanded_tail(0.95, 1e9) == pytest.approx(0.025, rel=1e-4)


# ---------------------------------------------------------------- set-level: FVD on Gaussian features

DIM, CLIPS = 4, 48
SHIFT, SCALES = np.full(DIM, 0.5), np.linspace(0.5, 2.0, DIM)  # generated ~ N(SHIFT, diag(SCALES)), real ~ N(0, I)
TRUE_FD = float(SHIFT @ SHIFT + DIM + SCALES.sum() - 2 * np.sqrt(SCALES).sum())  # the closed form


def gaussian_sets(rng: np.random.Generator, clips: int = CLIPS) -> tuple[fvd.UnitFeatures, fvd.UnitFeatures]:
    real = rng.standard_normal((clips, 1, DIM))
    generated = SHIFT + rng.standard_normal((clips, 1, DIM)) * np.sqrt(SCALES)
    return fvd.UnitFeatures(list(real)), fvd.UnitFeatures(list(generated))


def fvd_interval(variant: str, resamples: int):
    def interval(sets, seed):
        real, generated = sets
        value = fvd.set_distance(real, generated, variant=variant, seed=seed)
        estimate = stats.set_interval(
            lambda rc, gc, s: fvd.set_distances(real, generated, rc, gc, variant=variant, seed=s),
            (len(real), len(generated)), value, confidence=0.95, resamples=resamples, seed=seed)
        assert estimate.low <= value <= estimate.high  # contains its value by construction
        return estimate.low, estimate.high
    return interval


def test_fvd_interval_covers_what_fvd_estimates_at_its_sample_size():
    """Plain FVD estimates the expected FVD of n clips (above the true distance by a bias that
    shrinks as 1/n): its interval covers that, found here by simulation."""
    rng = np.random.default_rng(5)
    expected = float(np.mean([fvd.set_distance(*gaussian_sets(rng)) for _ in range(3000)]))
    assert expected > TRUE_FD + 0.2  # the bias an interval around plain FVD cannot cover
    assert LOW <= coverage(lambda rng: (expected, gaussian_sets(rng)), fvd_interval("fvd", 100)) <= HIGH


def test_fvd_inf_interval_covers_the_true_frechet_distance():
    assert LOW <= coverage(lambda rng: (TRUE_FD, gaussian_sets(rng)), fvd_interval("fvd_inf", 100), seed=1) <= HIGH


def test_fvd_inf_agrees_across_sample_sizes_where_plain_fvd_does_not():
    """One generator (a 24-d Gaussian against the real N(0, I)), scored with 64 and with 256 clips a
    side: plain FVD's intervals are disjoint (its bias shrinks as 1/n); FVD_inf's each contain the
    other's value, and the true distance."""
    dim = 24
    shift, scales = np.full(dim, 0.3), np.linspace(0.5, 2.0, dim)
    true_fd = float(shift @ shift + dim + scales.sum() - 2 * np.sqrt(scales).sum())
    rng = np.random.default_rng(0)
    found = {}
    for clips in (64, 256):
        real = fvd.UnitFeatures(list(rng.standard_normal((clips, 1, dim))))
        generated = fvd.UnitFeatures(list(shift + rng.standard_normal((clips, 1, dim)) * np.sqrt(scales)))
        for variant in ("fvd", "fvd_inf"):
            value = fvd.set_distance(real, generated, variant=variant, seed=1)
            found[variant, clips] = stats.set_interval(
                lambda rc, gc, s: fvd.set_distances(real, generated, rc, gc, variant=variant, seed=s),
                (clips, clips), value, confidence=0.95, resamples=200, seed=2)
    small, large = found["fvd", 64], found["fvd", 256]
    assert large.high < small.low  # plain FVD: the same generator reads worse with fewer clips
    small, large = found["fvd_inf", 64], found["fvd_inf", 256]
    assert small.low <= large.value <= small.high and large.low <= small.value <= large.high
    assert small.low <= true_fd <= small.high and large.low <= true_fd <= large.high


@pytest.mark.parametrize("paired", [True, False])
def test_set_delta_covers_the_expected_difference_of_two_fvds_against_one_reference(paired):
    """The gate's FVD comparison: two generated sets scored against one fixed reference set, the
    difference resampled (the same units on both sides when they pair on prompts). Its interval
    covers the expected difference at that sample size, found by simulation; paired sets share a
    prompt effect, which pairing removes from the difference's spread."""
    dim, clips = 3, 40
    rng = np.random.default_rng(11)
    reference = fvd.UnitFeatures(list(rng.standard_normal((200, 1, dim))))
    shift, scales = np.array([0.6, 0.0, 0.0]), np.array([1.0, 3.0, 0.4])  # spreads unlike the baseline's

    def sets(rng):
        prompt = rng.standard_normal((clips, 1, dim)) * np.sqrt(0.6)  # shared by both sides when paired
        other = prompt if paired else rng.standard_normal((clips, 1, dim)) * np.sqrt(0.6)
        current = shift + prompt + rng.standard_normal((clips, 1, dim)) * np.sqrt(0.4 * scales)
        baseline = other + rng.standard_normal((clips, 1, dim)) * np.sqrt(0.4)
        return fvd.UnitFeatures(list(current)), fvd.UnitFeatures(list(baseline))

    def distance(units, counts=None):
        return fvd.set_distances(reference, units, None, counts)

    expected = float(np.mean([distance(c)[0] - distance(b)[0] for c, b in (sets(rng) for _ in range(3000))]))

    def interval(pair, seed):
        current, baseline = pair
        value = distance(current)[0] - distance(baseline)[0]
        low, high, draws = stats.set_delta(lambda counts: distance(current, counts),
                                           lambda counts: distance(baseline, counts), clips, value=value,
                                           paired=paired, confidence=0.95, resamples=200, seed=seed)
        assert draws == 200 and low <= value <= high
        return low, high

    assert expected > 0.2  # a real difference to cover
    assert LOW <= coverage(lambda rng: (expected, sets(rng)), interval, seed=2) <= HIGH
