"""The diffusion schedule, sampler updates and likelihood bound against closed forms on Gaussian data."""

from __future__ import annotations

import math

import pytest
import torch

from generator import diffusion as d

DATA_STD = 0.7  # toy data: x ~ N(0, DATA_STD^2) in every dimension


def optimal_clean_estimate(z: torch.Tensor, t) -> torch.Tensor:
    """E[x | z_t] for Gaussian data: the best any denoiser can do."""
    t = torch.as_tensor(t, dtype=z.dtype).view(-1, *([1] * (z.dim() - 1))) if torch.is_tensor(t) else t
    return (1 - t) * DATA_STD ** 2 / ((1 - t) ** 2 * DATA_STD ** 2 + t ** 2) * z


def optimal_velocity(z: torch.Tensor, t) -> torch.Tensor:
    return (z - optimal_clean_estimate(z, t)) / t


def test_schedule_and_shift_closed_forms():
    x, eps, t = torch.tensor([2.0]), torch.tensor([-1.0]), torch.tensor([0.25])
    z = d.add_noise(x, eps, t)
    assert z.item() == pytest.approx(0.75 * 2 - 0.25)
    assert d.predict_clean(z, d.velocity_target(x, eps), t).item() == pytest.approx(2.0)
    assert d.shift_timestep(0.5, 3.0) == pytest.approx(0.75)  # 3 * 0.5 / (1 + 2 * 0.5)
    assert d.shift_timestep(1.0, 5.0) == 1.0 and d.shift_timestep(0.0, 5.0) == 0.0
    assert d.few_step_timesteps(5.0) == pytest.approx([1.0, 15 / 16, 5 / 6, 5 / 8, 0.0])
    steps = d.euler_timesteps(50, 1.0)
    assert len(steps) == 51 and steps[0] == 1.0 and steps[-1] == 0.0 and steps[25] == pytest.approx(0.5)


def test_euler_sampler_with_the_optimal_velocity_reaches_the_data_distribution():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200_000, generator=g, dtype=torch.float64)
    times = d.euler_timesteps(200, 1.0)
    for t, t_next in zip(times[:-1], times[1:]):
        z = d.euler_update(z, optimal_velocity(z, t), t, t_next)
    assert z.std().item() == pytest.approx(DATA_STD, rel=0.01)


def test_few_step_sampler_follows_its_update_rule():
    """Each step maps N(0, v) to the posterior mean c z (variance c^2 v), then re-noises to t':
    the output variance has a closed form the sampler must reproduce."""
    g = torch.Generator().manual_seed(1)
    times = d.few_step_timesteps(5.0)
    z = torch.randn(400_000, generator=g, dtype=torch.float64)
    variance = 1.0
    for t, t_next in zip(times[:-1], times[1:]):
        c = (1 - t) * DATA_STD ** 2 / ((1 - t) ** 2 * DATA_STD ** 2 + t ** 2)
        variance = c ** 2 * variance if t_next == 0 else (1 - t_next) ** 2 * c ** 2 * variance + t_next ** 2
        z = d.few_step_update(z, optimal_velocity(z, t), t, t_next, torch.randn(z.shape, generator=g, dtype=torch.float64))
    assert z.var().item() == pytest.approx(variance, rel=0.01)
    assert variance < DATA_STD ** 2  # one-step posterior means shrink: why few-step models are distilled


@pytest.mark.parametrize("noise_sigma", [0.0, 0.5])
def test_bound_is_tight_for_the_optimal_denoiser(noise_sigma):
    """Gaussian data, exact denoiser: the bound equals the true -log p(y) up to Monte Carlo error,
    and a worse denoiser gives a larger bound."""
    g = torch.Generator().manual_seed(2)
    dims = 64
    y = (DATA_STD ** 2 + noise_sigma ** 2) ** 0.5 * torch.randn(1024, dims, generator=g, dtype=torch.float64)
    exact = 0.5 * (y ** 2 / (DATA_STD ** 2 + noise_sigma ** 2)).sum(1) + 0.5 * dims * math.log(2 * math.pi * (DATA_STD ** 2 + noise_sigma ** 2))
    bound = d.likelihood_bound(y, optimal_clean_estimate, noise_sigma, generator=g, samples=32)
    gap = (bound - exact).mean().item() / dims
    assert abs(gap) < 0.01, gap  # nats per dimension
    worse = d.likelihood_bound(y, lambda z, t: 0.5 * optimal_clean_estimate(z, t), noise_sigma, generator=g, samples=32)
    assert (worse - exact).mean().item() / dims > 0.03


def test_augmented_schedule_is_consistent():
    t = torch.tensor([0.4, 0.6, 0.9], dtype=torch.float64)
    sigma_n = 0.5
    # z_t = (1 - t) x + t eps has the same noise whether written around x or around y = x + sigma_n eps0
    assert torch.allclose(d.augmented_sigma2(t, sigma_n) + ((1 - t) * sigma_n) ** 2, t ** 2)
    logsnr = torch.log((1 - t) ** 2 / d.augmented_sigma2(t, sigma_n))
    assert torch.allclose(d.t_from_logsnr(logsnr, sigma_n), t)
