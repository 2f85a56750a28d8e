"""Few-step distillation of the autoregressive diffusion baseline, trained on its own rollouts.

The student is a copy of the causal teacher (``generator.video_diffusion``, same config) that
learns to take the few-step sampler's four steps (timesteps 1000, 750, 500, 250, shift 5) where
the teacher needs fifty Euler steps of its probability-flow ODE.

Self-rollout (as in Self-Forcing): every training step first lets the student generate whole clips
with its own few-step sampler, frame by frame from its own clean frames, and keeps the noisy state
it visited at each step of each frame. The training inputs are those states with that context, so
the student learns on exactly the inputs its sampler meets, including its own earlier mistakes,
instead of on real context it never sees when sampling.

Target: consistency distillation in its direct form. For a step j drawn per training step, the
teacher solves its ODE (its 50-step Euler grid, from t_j down to 0) from each frame's visited state
``z_{t_j}`` given the same clean context; the student's clean estimate at ``z_{t_j}`` regresses that
ODE end point (mean squared error). The ODE maps the noise distribution at t_j onto the teacher's
samples, so a student that matches it produces sharp samples of the teacher's distribution in one
jump per step, where the undistilled model at four steps returns posterior means (blurred,
faded objects). Distribution matching (DMD) would need a second, online "fake score" network and
its own updates each step; at this scale on CPUs the deterministic target trains without it, and
the teacher's ODE end point is the sample it would have drawn, which keeps the student comparable
to its 50-step teacher.

Every frame is trained in one pass: the clip is fed twice, clean (the rollout's frames) and noisy
(the visited states), under a mask where noisy frame k sees the text, the clean frames before it
and itself: what the sampler's KV cache shows frame k (:func:`clean_context_velocity`).

Training runs through ``generator.train.train_model`` (AdamW, EMA, checkpoints, resume, torchrun).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from generator import diffusion as schedule
from generator.video_diffusion import CachedContext, VideoDiffusion

STUDENT_SHIFT = 5.0      # the few-step sampler's timestep shift (generator.diffusion.few_step_timesteps)
TEACHER_STEPS = 50       # the teacher's Euler steps over [0, 1] ...
TEACHER_SHIFT = 3.0      # ... and their shift: the 50-step sampler the student is measured against


def _frame_masks(p: int, f: int, s: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Who may attend to whom over [text (p), clean frames, noisy frames] (True = allowed): rows of the
    text and clean tokens (p + f s, p + f s), and rows of the noisy tokens (f s, p + 2 f s)."""
    frame = torch.arange(f, device=device).repeat_interleave(s)
    context = torch.zeros(p + f * s, p + f * s, dtype=torch.bool, device=device)
    context[:, :p] = True
    context[p:, p:] = frame[None, :] <= frame[:, None]
    noisy = torch.zeros(f * s, p + 2 * f * s, dtype=torch.bool, device=device)
    noisy[:, :p] = True
    noisy[:, p:p + f * s] = frame[None, :] < frame[:, None]
    noisy[:, p + f * s:] = frame[None, :] == frame[:, None]
    return context, noisy


def clean_context_velocity(model: VideoDiffusion, clean: Tensor, noisy: Tensor, t: Tensor, prefix: Tensor) -> Tensor:
    """Velocity (B, F, S, D) of every noisy frame k at level t (B, F), each given the clean frames < k.

    One pass over text, F clean and F noisy frames: clean frame i attends to the text and the clean
    frames up to i; noisy frame k to the text, the clean frames before k and itself."""
    b, f, s, d = noisy.shape
    p = prefix.shape[1]
    context, rows = _frame_masks(p, f, s, noisy.device)
    allowed = torch.cat([torch.cat([context, torch.zeros(p + f * s, f * s, dtype=torch.bool, device=noisy.device)], 1),
                         rows])
    zeros = torch.zeros(b, f, dtype=t.dtype, device=t.device)
    inputs = torch.cat([prefix, model.frame_inputs(clean, zeros), model.frame_inputs(noisy, t)], dim=1)
    hidden = model.transformer(inputs, mask=allowed)
    return model.head(hidden[:, p + f * s:]).view(b, f, s, d)


@torch.no_grad()
def self_rollout(model: VideoDiffusion, prefix: Tensor, num_frames: int, timesteps: list[float],
                 generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The few-step sampler's clips (B, F, S, D) and the state it visited at each step (steps, B, F, S, D)."""
    c = model.config
    b = prefix.shape[0]
    reader = CachedContext(model, prefix)
    reader.reset([])
    frames, visited = [], []
    for _ in range(num_frames):
        z = torch.randn(b, c.tokens_per_frame, c.token_dim, generator=generator).to(prefix)
        states = []
        for t, t_next in zip(timesteps[:-1], timesteps[1:]):
            states.append(z)
            v = reader.velocity(z, t, reader.position)
            z = schedule.few_step_update(z, v, t, t_next,
                                         torch.randn(z.shape, generator=generator).to(z))
        frames.append(z)
        visited.append(torch.stack(states))
        reader.commit(z)
    return torch.stack(frames, 1), torch.stack(visited, 2)


@torch.no_grad()
def teacher_ode_end(teacher: VideoDiffusion, clean: Tensor, z: Tensor, t_start: float, prefix: Tensor) -> Tensor:
    """The teacher's Euler solution at t = 0 from ``z`` at ``t_start`` (its 50-step grid below t_start),
    every frame given the clean frames before it: text and clean frames go through the network once
    (a KV cache), each step then runs the noisy frames alone."""
    b, f, s, _ = z.shape
    p = prefix.shape[1]
    context, rows = _frame_masks(p, f, s, z.device)
    cache = teacher.transformer.new_cache(b, p + 2 * f * s, prefix)
    zeros = torch.zeros(b, f, dtype=z.dtype, device=z.device)
    teacher.transformer(torch.cat([prefix, teacher.frame_inputs(clean, zeros)], 1), mask=context, cache=cache)
    grid = [t_start] + [t for t in schedule.euler_timesteps(TEACHER_STEPS, TEACHER_SHIFT) if t < t_start]
    for t, t_next in zip(grid[:-1], grid[1:]):
        level = torch.full((b, f), t, dtype=z.dtype, device=z.device)
        hidden = teacher.transformer(teacher.frame_inputs(z, level), mask=rows, cache=cache, commit=False)
        z = schedule.euler_update(z, teacher.head(hidden).view(z.shape), t, t_next)
    return z


class CleanContextPass(nn.Module):
    """The student's trained pass (caption tokens to velocities), as one module so that
    DistributedDataParallel sees every trained weight used inside its forward."""

    def __init__(self, model: VideoDiffusion) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, clean: Tensor, noisy: Tensor, t: Tensor) -> Tensor:
        return clean_context_velocity(self.model, clean, noisy, t, self.model.text_prefix(tokens))


class SelfRolloutDistillation(nn.Module):
    """The student (trained) beside its frozen teacher, in the shape ``train_model`` drives."""

    kind = "distillation"
    validation_name = "val_distill_loss"

    def __init__(self, teacher: VideoDiffusion, num_frames: int | None = None) -> None:
        super().__init__()
        if not teacher.config.causal:
            raise ValueError("self-rollout distillation needs the causal (autoregressive) teacher")
        self.student = copy.deepcopy(teacher).train()
        self.student_pass = CleanContextPass(self.student)
        self.teacher = teacher.eval().requires_grad_(False)
        self.config = teacher.config
        self.num_frames = num_frames or teacher.config.max_frames
        self.timesteps = schedule.few_step_timesteps(STUDENT_SHIFT)

    @property
    def device(self) -> torch.device:
        return self.student.device

    def parts(self) -> dict[str, nn.Module]:
        return {"student": self.student_pass}

    def losses(self, captions: list[str], generator: torch.Generator, student_pass: nn.Module | None = None,
               steps: list[int] | None = None) -> Tensor:
        """Per clip (B,): the student's clean estimate at a visited state against the teacher's ODE end
        point, at one sampler step drawn from ``generator`` (or the mean over ``steps``)."""
        tokens = self.student.caption_tokens(captions)
        with torch.no_grad():
            prefix = self.student.text_prefix(tokens)
            teacher_prefix = self.teacher.text_prefix(self.teacher.caption_tokens(captions))
        clean, visited = self_rollout(self.student, prefix, self.num_frames, self.timesteps, generator)
        if steps is None:
            steps = [int(torch.randint(len(self.timesteps) - 1, (1,), generator=generator))]
        total = 0.0
        for step in steps:
            t, z = self.timesteps[step], visited[step]
            target = teacher_ode_end(self.teacher, clean, z, t, teacher_prefix)
            level = torch.full(z.shape[:2], t, dtype=z.dtype, device=z.device)
            estimate = schedule.predict_clean(z, (student_pass or self.student_pass)(tokens, clean, z, level), t)
            total = total + (estimate - target).pow(2).mean(dim=(1, 2, 3))
        return total / len(steps)

    def training_step(self, latents: Tensor, captions: list[str], generator: torch.Generator,
                      modules: dict[str, nn.Module] | None = None) -> dict[str, float]:
        loss = self.losses(captions, generator, (modules or {}).get("student")).mean()
        loss.backward()
        return {"loss": loss.item()}

    @torch.no_grad()
    def validation_values(self, latents: Tensor, captions: list[str], generator: torch.Generator) -> Tensor:
        return self.losses(captions, generator, steps=list(range(len(self.timesteps) - 1)))

    def num_parameters(self) -> dict[str, Any]:
        return self.student.num_parameters()
