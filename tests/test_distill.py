"""Self-rollout distillation (generator/distill.py): the one-pass clean-context network evaluation
against the sampler's own context, the cached teacher ODE against the uncached one, the rollout
against the few-step sampler, and training that lowers the distillation loss."""

from __future__ import annotations

import pytest
import torch

from generator import diffusion as schedule
from generator.distill import (TEACHER_SHIFT, TEACHER_STEPS, SelfRolloutDistillation, clean_context_velocity,
                               self_rollout, teacher_ode_end)
from generator.train import TrainConfig, train_model, validate
from tests.test_starflow_training import CAPTIONS
from tests.test_video_diffusion import tiny


def test_clean_context_pass_equals_each_frame_read_after_its_clean_context():
    model = tiny(True)
    prefix = model.text_prefix(model.caption_tokens(CAPTIONS[:2]))
    g = torch.Generator().manual_seed(0)
    clean, noisy = (torch.randn(2, 4, 4, 2, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.rand(2, 4, generator=g, dtype=torch.float64)
    together = clean_context_velocity(model, clean, noisy, t, prefix)
    for k in range(4):  # what the sampler's context shows frame k: clean frames < k at level 0, then itself
        levels = torch.cat([torch.zeros(2, k, dtype=torch.float64), t[:, k:k + 1]], 1)
        alone = model.velocity(torch.cat([clean[:, :k], noisy[:, k:k + 1]], 1), levels, prefix)[:, -1]
        assert (together[:, k] - alone).abs().max() < 1e-10
    later = clean.clone()
    later[:, 3] += 1.0  # a frame's clean copy is never read by itself or earlier noisy frames
    assert (clean_context_velocity(model, later, noisy, t, prefix) - together).abs().max() < 1e-12


@pytest.mark.parametrize("t_start", [1.0, 0.6])
def test_cached_teacher_ode_equals_the_uncached_euler_solution(t_start):
    model = tiny(True)
    prefix = model.text_prefix(model.caption_tokens(CAPTIONS[:2]))
    g = torch.Generator().manual_seed(1)
    clean, z = (torch.randn(2, 4, 4, 2, generator=g, dtype=torch.float64) for _ in range(2))
    grid = [t_start] + [t for t in schedule.euler_timesteps(TEACHER_STEPS, TEACHER_SHIFT) if t < t_start]
    assert grid[-1] == 0.0 and (t_start < 1 or len(grid) == TEACHER_STEPS + 1)
    expected = z
    for t, t_next in zip(grid[:-1], grid[1:]):
        level = torch.full((2, 4), t, dtype=torch.float64)
        expected = schedule.euler_update(expected, clean_context_velocity(model, clean, expected, level, prefix), t, t_next)
    assert (teacher_ode_end(model, clean, z, t_start, prefix) - expected).abs().max() < 1e-10


def test_self_rollout_is_the_few_step_sampler_and_keeps_every_visited_state():
    model = tiny(True)
    timesteps = schedule.few_step_timesteps()
    prefix = model.text_prefix(model.caption_tokens(CAPTIONS[:2]))
    clean, visited = self_rollout(model, prefix, 4, timesteps, torch.Generator().manual_seed(5))
    sampled = model.sample(CAPTIONS[:2], 4, generator=torch.Generator().manual_seed(5), timesteps=timesteps,
                           few_step=True)
    assert (clean - sampled).abs().max() < 1e-10
    assert visited.shape == (4, 2, 4, 4, 2)
    # the first step's state of the first frame is the sampler's first noise draw
    first = torch.randn(2, 4, 2, generator=torch.Generator().manual_seed(5)).to(visited)
    assert torch.equal(visited[0, :, 0], first)


def test_distillation_lowers_its_loss_and_leaves_the_teacher_alone():
    teacher = tiny(True).float()
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    method = SelfRolloutDistillation(teacher)
    batches = iter(lambda: {"latents": torch.zeros(4, 4, 4, 0), "caption": CAPTIONS[:4]}, None)
    val = [{"latents": torch.zeros(4, 4, 4, 0), "caption": CAPTIONS[:4]}]
    before = validate(method, val)
    result = train_model(method, batches, val, TrainConfig(steps=40, lr=3e-3, warmup_steps=2, val_every=40,
                                                            log_every=10, ema_decay=0.5), progress=False)
    assert result["val_distill_loss"] < 0.7 * before
    assert all(torch.equal(frozen[k], v) for k, v in method.teacher.state_dict().items())
    with pytest.raises(ValueError, match="causal"):
        SelfRolloutDistillation(tiny(False))


def test_shipped_student_is_its_teachers_copy_and_shows_captions_better_than_the_teacher_at_four_steps():
    import generator
    import numpy as np
    from generator.pipeline import file_sha256
    from metrics.caption_adherence import caption_adherence
    from vbench_flow.data.shapes import ShapesWorld

    student, teacher = generator.load("ar-diffusion-4step-shapes64"), generator.load("ar-diffusion-shapes64")
    info = student.info()
    assert info["distilled_from"] == "ar-diffusion-shapes64"
    assert info["teacher_sha256"] == file_sha256(generator.checkpoint_path("ar-diffusion-shapes64"))
    assert student.model.config == teacher.model.config and info["sampler"] == "few_step"
    world = ShapesWorld("val")
    captions = [world.caption(i) for i in range(8)]
    recall = {}
    for name, pipe in (("student", student), ("teacher", teacher)):
        videos = pipe.sample(captions, 17, seed=0, sampler="few_step")
        recall[name] = np.mean([caption_adherence(v, c, 8.0, "colour_recall") for v, c in zip(videos, captions)])
    assert student.last_sampling["sampler"] == "few_step" and student.last_sampling["denoising_steps"] == 4
    assert recall["student"] > recall["teacher"] + 0.05, recall


def test_a_teacher_that_cannot_be_distilled_is_a_clear_error(tmp_path, capsys):
    from vbench_flow.cli import main

    for teacher, message in (("no-such-model", "no shipped checkpoint"),
                             ("bidir-diffusion-shapes64", "not a causal"), ("starflow-v-shapes64", "not a causal")):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "distill", "--teacher", teacher, "--steps", "1", "-o", str(tmp_path / "s.pt")])
        assert exit_info.value.code == 4
        err = capsys.readouterr().err
        assert message in err and "--teacher" in err and "Traceback" not in err


def test_resuming_from_a_file_that_is_not_this_runs_training_state_is_a_clear_error(tmp_path, capsys):
    from generator import checkpoint_path
    from vbench_flow.cli import main

    with pytest.raises(SystemExit) as exit_info:  # the shipped student is exported weights, not a training state
        main(["train", "distill", "--steps", "1", "--resume", "--checkpoint",
              str(checkpoint_path("ar-diffusion-4step-shapes64")), "-o", str(tmp_path / "s.pt")])
    assert exit_info.value.code == 4
    err = capsys.readouterr().err
    assert "not a training checkpoint" in err and "--checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "s.pt").exists()
