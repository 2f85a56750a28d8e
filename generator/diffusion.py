"""Rectified-flow Gaussian diffusion, independent of any network: the noise schedule, timestep
shifting, the two sampler updates and the continuous-time likelihood bound.

Schedule: ``z_t = (1 - t) x + t eps`` for t in [0, 1]; a network predicts the velocity
``v = eps - x``, from which ``x_hat = z_t - t v``.

Samplers (the scheduler half of a diffusers-style split):
- many-step: Euler on the probability-flow ODE, ``z_next = z + (t_next - t) v``;
- few-step (CausVid / Self-Forcing style): predict ``x_hat`` at each of the timesteps
  [1000, 750, 500, 250] (shifted), then re-noise it to the next timestep with fresh noise.
Timestep shift: ``t' = s t / (1 + (s - 1) t)`` spends more steps at high noise for s > 1.

Likelihood bound. The flow reports the exact density of noise-augmented latents
``y = x + sigma_n eps0``; a diffusion model trained on clean latents x bounds the same density.
Because ``z_t = (1 - t) x + t eps`` with ``t^2 >= (1 - t)^2 sigma_n^2`` can be written as
``z_t = (1 - t) y + s_t eps'`` with ``s_t^2 = t^2 - (1 - t)^2 sigma_n^2``, the model defines a
Gaussian diffusion over y with ``alpha = 1 - t``, ``sigma = s_t`` and log-SNR
``lam = log((1 - t)^2 / s_t^2)``; its denoiser is ``E[y | z_t] = x_hat + sigma_n^2 (1 - t) / t^2
(z_t - (1 - t) x_hat)`` (exact given ``x_hat = E[x | z_t]``). The variational bound in
continuous time (Kingma et al. 2021) over lam in [lam_min, lam_max] is

    -log p(y) <= KL(q(z | y) at lam_min || N(0, I))                      (prior)
               + D/2 (1 + log 2 pi - lam_max)                           (Gaussian decoder at lam_max)
               + 1/2 (lam_max - lam_min) E_{lam ~ U}[e^lam ||y - y_hat||^2]  (diffusion)

in nats per clip. With sigma_n = 0 it is the usual bound on clean data.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

FEW_STEP_TIMESTEPS = (1000, 750, 500, 250)


def add_noise(x: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    return (1 - t) * x + t * noise


def velocity_target(x: Tensor, noise: Tensor) -> Tensor:
    return noise - x


def predict_clean(z: Tensor, velocity: Tensor, t: Tensor | float) -> Tensor:
    return z - t * velocity


def shift_timestep(t: Tensor | float, shift: float) -> Tensor | float:
    return shift * t / (1 + (shift - 1) * t)


def euler_timesteps(steps: int, shift: float = 1.0) -> list[float]:
    """``steps + 1`` decreasing times from 1 to 0 (uniform, then shifted)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return [float(shift_timestep(1 - i / steps, shift)) for i in range(steps + 1)]


def few_step_timesteps(shift: float = 5.0, timesteps: tuple[int, ...] = FEW_STEP_TIMESTEPS) -> list[float]:
    """The few-step schedule on a 1000-step grid, shifted, ending at 0."""
    return [float(shift_timestep(t / 1000, shift)) for t in timesteps] + [0.0]


def euler_update(z: Tensor, velocity: Tensor, t: float, t_next: float) -> Tensor:
    return z + (t_next - t) * velocity


def few_step_update(z: Tensor, velocity: Tensor, t: float, t_next: float, noise: Tensor) -> Tensor:
    """Jump to the clean estimate, then noise it afresh to ``t_next`` (the clean estimate at 0)."""
    clean = predict_clean(z, velocity, t)
    return clean if t_next == 0 else add_noise(clean, noise, torch.as_tensor(t_next, dtype=z.dtype))


# ---------------------------------------------------------------- likelihood bound

def augmented_sigma2(t: Tensor, noise_sigma: float) -> Tensor:
    """s_t^2: the noise variance of z_t around (1 - t) y, y = x + noise_sigma eps0."""
    return t ** 2 - ((1 - t) * noise_sigma) ** 2


def t_from_logsnr(logsnr: Tensor, noise_sigma: float) -> Tensor:
    """The t at which the y-diffusion has log-SNR ``logsnr`` (inverse of (1-t)^2 / s_t^2)."""
    snr = logsnr.exp()
    ratio = torch.sqrt(snr / (1 + snr * noise_sigma ** 2))  # (1 - t) / t
    return 1 / (1 + ratio)


def augmented_estimate(clean_estimate: Tensor, z: Tensor, t: Tensor, noise_sigma: float) -> Tensor:
    """E[y | z_t] from E[x | z_t] (both Gaussian-linear in x, so the substitution is exact)."""
    return clean_estimate + noise_sigma ** 2 * (1 - t) / t ** 2 * (z - (1 - t) * clean_estimate)


def likelihood_bound(y: Tensor, clean_estimate: Callable[[Tensor, Tensor], Tensor], noise_sigma: float,
                     generator: torch.Generator | None = None, samples: int = 16,
                     logsnr_range: tuple[float, float] = (-10.0, 6.0)) -> Tensor:
    """Upper bound on -log p(y) in nats for each clip of ``y`` (B, ...).

    ``clean_estimate(z_t, t)`` is the model's ``E[x | z_t]`` with ``t`` of shape (B,); the
    diffusion term is a Monte Carlo average over ``samples`` stratified log-SNR draws per clip
    (one uniform offset, then evenly spaced), an unbiased estimate.
    """
    lo, hi = logsnr_range
    b, dims = y.shape[0], y[0].numel()
    view = (b,) + (1,) * (y.dim() - 1)
    t_prior = t_from_logsnr(torch.full((b,), lo, dtype=y.dtype, device=y.device), noise_sigma).view(view)
    alpha, s2 = 1 - t_prior, augmented_sigma2(t_prior, noise_sigma)
    prior = 0.5 * (alpha ** 2 * y ** 2 + s2 - 1 - torch.log(s2)).flatten(1).sum(1)
    decoder = 0.5 * dims * (1 + math.log(2 * math.pi) - hi)
    diffusion = torch.zeros(b, dtype=y.dtype, device=y.device)
    offset = torch.rand(b, generator=generator).to(y)  # stratified draws: unbiased, far less variance
    for k in range(samples):
        logsnr = lo + (hi - lo) * (k + offset) / samples
        t = t_from_logsnr(logsnr, noise_sigma)
        tv = t.view(view)
        z = (1 - tv) * y + augmented_sigma2(tv, noise_sigma).sqrt() * torch.randn(y.shape, generator=generator).to(y)
        y_hat = augmented_estimate(clean_estimate(z, t), z, tv, noise_sigma)
        diffusion += 0.5 * (hi - lo) * logsnr.exp() * (y - y_hat).pow(2).flatten(1).sum(1)
    return prior + decoder + diffusion / samples
