"""From shapes-world clips to an exported checkpoint and back: training wiring, load, sample, likelihood."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import generator
from generator.autoencoder import AutoencoderConfig, VideoAutoencoder
from generator.pipeline import file_sha256
from generator.train import TrainConfig
from vbench_flow.data.shapes import ShapesWorld
from vbench_flow.training import ShapesRecipe, train_on_shapes

TINY_MODEL = {"flow": {"shallow_blocks": 1, "shallow_depth": 1, "shallow_width": 16, "deep_depth": 1, "deep_width": 32, "heads": 2},
              "text": {"width": 16, "depth": 1, "heads": 2}, "denoiser": {"width": 16, "depth": 1, "heads": 2}}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny untrained autoencoder and a STARFlow-V trained a few steps on top of it."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    vae = VideoAutoencoder(AutoencoderConfig(latent_channels=4, base_channels=8))
    vae.save(folder / "vae-tiny.pt")
    recipe = ShapesRecipe(autoencoder=str(folder / "vae-tiny.pt"), frames=9, size=32, pool_clips=8, val_clips=4,
                            batch_size=4, **TINY_MODEL)
    info = train_on_shapes(recipe, TrainConfig(steps=3, val_every=3, log_every=1, warmup_steps=1),
                                    out=folder / "flow.pt", checkpoint=folder / "flow.train.pt", progress=False,
                                    caption_tracking_clips=2)
    return folder, info


def test_export_records_measurements_and_autoencoder_hash(exported):
    folder, info = exported
    assert info["steps"] == 3 and np.isfinite(info["val_bits_per_dim"]) and info["tokens_per_second"] > 0
    assert info["autoencoder_sha256"] == file_sha256(folder / "vae-tiny.pt")
    assert "noise-augmented" in info["bits_per_dim_space"]
    assert 0 <= info["history"][-1]["val_caption_adherence"] <= 1  # the flow's samples, tracked while training
    assert (folder / "flow.train.pt").exists()
    from vbench_flow.video_io import read_video

    grid, _ = read_video(folder / "flow-samples.gif")  # 8 real + 8 generated clips with captions
    assert grid.shape[0] == 9 and grid.shape[1] > 4 * 32


def test_load_sample_and_likelihood(exported):
    folder, _ = exported
    pipe = generator.load(folder / "flow.pt")
    assert pipe.info()["checkpoint_sha256"] == file_sha256(folder / "flow.pt")
    videos = pipe.sample(["a red circle bouncing on a black background"] * 2, num_frames=5, seed=3)
    assert videos.shape == (2, 5, 32, 32, 3) and videos.dtype == np.uint8
    again = pipe.sample(["a red circle bouncing on a black background"] * 2, num_frames=5, seed=3)
    assert np.array_equal(videos, again)  # same seed, same video
    clip = ShapesWorld("test", size=32).clip(0, 5)
    bpd = pipe.bits_per_dim(clip.frames[None], [clip.caption])
    assert len(bpd) == 1 and np.isfinite(bpd[0])


@pytest.fixture(scope="module")
def busy_pipe(exported):
    """The exported pipeline with random flow heads: every token really depends on the earlier
    ones, so Jacobi iteration has work to do (a 3-step model is still nearly the identity)."""
    from tests.test_flow import randomize_heads

    folder, _ = exported
    pipe = generator.load(folder / "flow.pt")
    torch.manual_seed(5)
    randomize_heads(pipe.model.flow, std=0.15)
    return pipe


@pytest.mark.parametrize("task, given_frames", [("t2v", 0), ("i2v", 1), ("v2v", 5)])
def test_jacobi_latents_equal_sequential_for_every_task(busy_pipe, task, given_frames):
    """Same noise, both samplers, 17 frames = 5 latent frames: two sliding windows of the 3-frame model."""
    from generator.samplers import JacobiOptions

    clip = ShapesWorld("test", size=32).clip(2, 17)
    condition = clip.frames[None, :given_frames] if given_frames else None
    video = busy_pipe.sample([clip.caption], 17, seed=4, condition_frames=condition, check_against_sequential=True,
                             jacobi=JacobiOptions(block_size=4, later_block_factor=4, tolerance=1e-9))
    stats = busy_pipe.last_sampling
    print(f"{task}: max |jacobi - sequential| = {stats['max_abs_latent_difference']:.2e}, "
          f"{stats['network_evaluations']} passes, iterations {stats['iterations']}")
    assert stats["max_abs_latent_difference"] <= 1e-3
    assert max(stats["iterations"]) > 1  # the heads are busy enough that iteration was needed
    sequential = busy_pipe.sample([clip.caption], 17, seed=4, condition_frames=condition)
    assert np.abs(video.astype(int) - sequential.astype(int)).max() <= 2  # the same video, up to rounding


def test_loose_tolerance_is_measured_not_hidden(busy_pipe):
    from generator.samplers import JacobiOptions

    captions = ["a red circle bouncing on a black background"]
    busy_pipe.sample(captions, 9, seed=0, check_against_sequential=True, jacobi=JacobiOptions(tolerance=1e-9))
    tight = busy_pipe.last_sampling
    busy_pipe.sample(captions, 9, seed=0, check_against_sequential=True, jacobi=JacobiOptions(tolerance=0.5))
    loose = busy_pipe.last_sampling
    assert loose["max_abs_latent_difference"] > tight["max_abs_latent_difference"]
    assert loose["network_evaluations"] < tight["network_evaluations"]
    assert loose["reference_seconds"] > 0 and loose["flow_seconds"] > 0


def test_image_conditioning_keeps_the_given_frame(exported):
    folder, _ = exported
    pipe = generator.load(folder / "flow.pt")
    clip = ShapesWorld("test", size=32).clip(1, 9)
    condition = pipe.condition_tokens(clip.frames[None, :6])  # 6 frames: 1 + 4 usable -> 2 latent frames
    assert condition.shape[1] == 2
    tokens = pipe.model.sample([clip.caption], 2, generator=torch.Generator().manual_seed(0), condition=condition[:, :1])
    assert torch.equal(tokens[:, :1], condition[:, :1])
    video = pipe.sample([clip.caption], 5, seed=0, condition_frames=clip.frames[None, :1])
    first = pipe.decode(pipe.encode(clip.frames[None, :1]), 1)
    assert np.array_equal(video[:, :1], first)  # i2v: the first frame is the given one, through the autoencoder


def test_load_checks_the_autoencoder(exported, tmp_path):
    folder, _ = exported
    state = torch.load(folder / "flow.pt", weights_only=True)
    state["info"]["autoencoder_sha256"] = "0" * 64
    torch.save(state, tmp_path / "tampered.pt")
    with pytest.raises(ValueError, match="not the autoencoder"):
        generator.load(tmp_path / "tampered.pt")
    with pytest.raises(FileNotFoundError, match="no shipped checkpoint named 'nope'"):
        generator.load("nope")


def test_torchrun_two_cpu_processes_train_and_export(tmp_path):
    """`torchrun --nproc_per_node 2 -m vbench_flow train starflow` runs data-parallel on CPU (gloo)."""
    import subprocess
    import sys

    import yaml

    torch.manual_seed(0)
    VideoAutoencoder(AutoencoderConfig(latent_channels=4, base_channels=8)).save(tmp_path / "vae.pt")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_MODEL))
    out = tmp_path / "flow.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "vbench_flow", "train", "starflow", "--autoencoder", str(tmp_path / "vae.pt"), "--frames", "5",
           "--steps", "2", "--batch-size", "2", "--pool-clips", "4", "--val-clips", "2", "--config", str(tmp_path / "tiny.yaml"),
           "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    info = torch.load(out, weights_only=True)["info"]
    assert info["world_size"] == 2 and info["steps"] == 2


def test_starflow_model_type_in_a_suite(exported, tmp_path, capsys):
    """The flow as a suite model: t2v and i2v clips longer than its training window, Jacobi sampler."""
    import json

    from vbench_flow.cli import main

    folder, _ = exported
    suite = tmp_path / "s.yaml"
    suite.write_text(f"""
name: flow-suite
data: {{type: shapes, size: 32, fps: 8}}
clip_seconds: [2]
tasks: [t2v, i2v]
prompts: {{source: data, split: test, count: 2}}
models:
  - {{name: flow, type: starflow, checkpoint: "{folder / 'flow.pt'}", sampler: {{sampler: jacobi, block_size: 2}}}}
metrics:
  - {{name: flicker}}
""")
    with pytest.raises(SystemExit) as info:
        main(["run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "f", "--quiet"])
    assert info.value.code == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in (tmp_path / "runs" / "f" / "samples.jsonl").read_text().splitlines()]
    # 17 frames = 5 latent frames: two windows of the 3-frame model
    assert len(lines) == 4 and all(r["status"] == "ok" and r["num_frames"] == 17 for r in lines), lines
    bad = suite.read_text().replace("block_size: 2", "block_sise: 2")
    suite.write_text(bad)
    with pytest.raises(SystemExit) as info:
        main(["validate", str(suite)])
    assert info.value.code == 4 and "did you mean 'block_size'" in capsys.readouterr().err


def test_train_cli_rejects_bad_options(tmp_path, capsys):
    from vbench_flow.cli import main

    for args, message in ((["--frames", "6"], "1 + 4k"), (["--config", str(tmp_path / "c.yaml")], "unknown keys ['flows']")):
        (tmp_path / "c.yaml").write_text("flows: {}\n")
        with pytest.raises(SystemExit) as info:
            main(["train", "starflow", "-o", str(tmp_path / "x.pt"), *args])
        assert info.value.code == 4 and message in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_vbf_sample_t2v_i2v_and_mistakes(exported, tmp_path, capsys):
    from PIL import Image

    from vbench_flow.cli import main
    from vbench_flow.video_io import read_video

    folder, _ = exported
    model = str(folder / "flow.pt")

    def vbf(*args):
        with pytest.raises(SystemExit) as info:
            main(["sample", "--model", model, "--prompt", "a red circle bouncing on a black background", *args])
        return info.value.code

    assert vbf("--seconds", "2", "--out", str(tmp_path / "t2v.mp4")) == 0
    frames, fps = read_video(tmp_path / "t2v.mp4")
    assert frames.shape == (17, 32, 32, 3) and fps == 8
    first = ShapesWorld("test", size=32).clip(0, 1).frames[0]
    Image.fromarray(first).save(tmp_path / "first.png")
    assert vbf("--seconds", "1", "--image", str(tmp_path / "first.png"), "--out", str(tmp_path / "i2v.gif")) == 0
    assert "network evaluations" in capsys.readouterr().out
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "small.png")
    assert vbf("--image", str(tmp_path / "small.png")) == 4
    assert "--image: " in capsys.readouterr().err
    assert vbf("--sampler", "magic") == 4
    assert vbf("--seconds", "-3") == 4
    assert vbf("--context-frames", "3") == 4  # the tiny model's window is 3 latent frames
    assert "context_frames" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["sample", "--model", "no-such-model", "--prompt", "x"])
    assert info.value.code == 4 and "no shipped checkpoint named 'no-such-model'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def diffusion_exports(exported):
    """Both tiny diffusion baselines trained a few steps on the same autoencoder and data as the flow."""
    folder, _ = exported
    infos = {}
    for kind in ("ar", "bidir"):
        recipe = ShapesRecipe(model=f"{kind}-diffusion", autoencoder=str(folder / "vae-tiny.pt"), frames=9, size=32,
                              pool_clips=8, val_clips=4, batch_size=4, **TINY_MODEL)
        infos[kind] = train_on_shapes(recipe, TrainConfig(steps=3, val_every=3, log_every=1, warmup_steps=1),
                                      out=folder / f"{kind}.pt", checkpoint=folder / f"{kind}.train.pt", progress=False,
                                      caption_tracking_clips=2)
    return folder, infos


def test_diffusion_baselines_export_load_sample_and_bound(diffusion_exports):
    from generator.pipeline import DiffusionPipeline

    folder, infos = diffusion_exports
    for kind, info in infos.items():
        assert np.isfinite(info["val_loss"]) and np.isfinite(info["val_bits_per_dim_bound"])
        # caption adherence of the EMA model's samples is tracked at every validation
        tracked = info["history"][-1]
        assert 0 <= tracked["val_caption_adherence"] <= 1 and 0 <= tracked["val_caption_colour_recall"] <= 1
        pipe = generator.load(folder / f"{kind}.pt")
        assert isinstance(pipe, DiffusionPipeline) and pipe.model.config.causal == (kind == "ar")
        assert pipe.info()["likelihood"].startswith("upper bound")
        captions = ["a red circle bouncing on a black background"]
        for sampler in ("few_step", "euler"):
            video = pipe.sample(captions, 17, seed=2, sampler=sampler, steps=3)
            assert video.shape == (1, 17, 32, 32, 3) and np.array_equal(video, pipe.sample(captions, 17, seed=2, sampler=sampler, steps=3))
        assert pipe.last_sampling["denoising_steps"] == 3 and pipe.last_sampling["network_evaluations"] > 0
        clip = ShapesWorld("test", size=32).clip(0, 9)
        assert np.isfinite(pipe.bits_per_dim(clip.frames[None], [clip.caption])[0])
        check_bound_draws_are_per_clip(pipe)
        i2v = pipe.sample([clip.caption], 9, seed=0, condition_frames=clip.frames[None, :1], steps=2)
        assert np.array_equal(i2v[:, :1], pipe.decode(pipe.encode(clip.frames[None, :1]), 1))


def check_bound_draws_are_per_clip(pipe) -> None:
    """A clip's bound depends on the clip, its caption and the seed, never on the batch it came in;
    different clips get independent Monte Carlo draws. (One seed for every clip scored alone repeated
    one stratified draw of the noise levels for every clip, and a mean over a set of clips kept that
    draw's error: the shipped bidirectional baseline read 1.11 bits/dim on test clips that way and
    1.34 with independent draws, its validation value.)"""
    world = ShapesWorld("test", size=32)
    clips = [world.clip(i, 9) for i in range(3)]
    videos, captions = np.stack([c.frames for c in clips]), [c.caption for c in clips]
    together = pipe.bits_per_dim(videos, captions)
    alone = [pipe.bits_per_dim(videos[i:i + 1], captions[i:i + 1])[0] for i in range(3)]
    assert together == pytest.approx(alone, rel=1e-5)
    assert pipe.bits_per_dim(videos[::-1], captions[::-1]) == pytest.approx(together[::-1], rel=1e-5)
    assert pipe.bits_per_dim(videos[:1], captions[:1], seed=1)[0] != pytest.approx(together[0], rel=1e-6)
    # the draws are the clip's own: the same generator seeded as the pipeline seeds clip 1
    from generator.pipeline import clip_seed
    expected = pipe.model.bits_per_dim(pipe.encode(videos[1:2]), captions[1:2],
                                       torch.Generator().manual_seed(clip_seed(0, videos[1], captions[1])))
    assert together[1] == pytest.approx(float(expected[0]), rel=1e-5)
    assert clip_seed(0, videos[0], captions[0]) != clip_seed(0, videos[1], captions[1])


def test_diffusion_model_type_in_a_suite(diffusion_exports, tmp_path, capsys):
    import json

    from vbench_flow.cli import main

    folder, _ = diffusion_exports
    suite = tmp_path / "s.yaml"
    suite.write_text(f"""
name: baselines
data: {{type: shapes, size: 32, fps: 8}}
clip_seconds: [2]
tasks: [t2v, v2v]
v2v_frames: 5
prompts: {{source: data, split: test, count: 1}}
models:
  - {{name: ar, type: diffusion, checkpoint: "{folder / 'ar.pt'}", sampler: {{sampler: few_step, sink: true, context_frames: 2}}}}
  - {{name: bidir, type: diffusion, checkpoint: "{folder / 'bidir.pt'}", sampler: {{steps: 4}}}}
  - {{name: wrong, type: diffusion, checkpoint: "{folder / 'flow.pt'}"}}
metrics:
  - {{name: flicker}}
  - {{name: frames_per_second}}
  - {{name: network_evaluations, models: [ar, bidir]}}
""")
    with pytest.raises(SystemExit) as info:
        main(["run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "d", "--quiet"])
    assert info.value.code == 2  # the mislabelled checkpoint fails its own units only
    lines = [json.loads(line) for line in (tmp_path / "runs" / "d" / "samples.jsonl").read_text().splitlines()]
    ok = [r for r in lines if r["status"] == "ok"]
    assert {(r["model"], r["task"]) for r in ok} == {("ar", "t2v"), ("ar", "v2v"), ("bidir", "t2v"), ("bidir", "v2v")}
    assert all(r["num_frames"] == 17 and r["metrics"]["network_evaluations"] > 0 for r in ok)
    wrong = [r for r in lines if r["model"] == "wrong"]
    assert wrong and all("not a diffusion model" in r["error"] for r in wrong)


def test_bits_per_dim_metric_for_flow_and_diffusion(exported, diffusion_exports, tmp_path, capsys):
    """The likelihood metric scores each prompt's real clip with the model itself: the value equals a
    direct pipeline call, and models without a likelihood are excluded by name."""
    import json

    from vbench_flow.cli import main

    folder, _ = diffusion_exports
    suite = tmp_path / "s.yaml"
    suite.write_text(f"""
name: likelihood
data: {{type: shapes, size: 32, fps: 8}}
clip_seconds: [2]
prompts: {{source: data, split: test, count: 2}}
models:
  - {{name: flow, type: starflow, checkpoint: "{folder / 'flow.pt'}", sampler: {{sampler: sequential}}}}
  - {{name: ar, type: diffusion, checkpoint: "{folder / 'ar.pt'}", sampler: {{steps: 2}}}}
  - {{name: real, type: dataset}}
metrics:
  - {{name: bits_per_dim, models: [flow, ar]}}
""")
    with pytest.raises(SystemExit) as info:
        main(["run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "l", "--quiet"])
    assert info.value.code == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in (tmp_path / "runs" / "l" / "samples.jsonl").read_text().splitlines()]
    world = ShapesWorld("test", size=32, fps=8)
    for r in lines:
        if r["model"] == "real":
            assert "bits_per_dim" not in r["metrics"]
            continue
        pipe = generator.load(folder / ("flow.pt" if r["model"] == "flow" else "ar.pt"))
        index = int(r["prompt_id"].split("-")[-1])
        clip = world.clip(index, 17)
        expected = pipe.bits_per_dim(clip.frames[None, :pipe.likelihood_frames], [clip.caption])[0]
        assert r["metrics"]["bits_per_dim"] == pytest.approx(expected, rel=1e-5)


def test_vbf_sample_refuses_a_diffusion_checkpoint_and_too_many_given_frames(diffusion_exports, tmp_path, capsys):
    from vbench_flow.cli import main
    from vbench_flow.video_io import write_video

    folder, _ = diffusion_exports

    def vbf(*args):
        with pytest.raises(SystemExit) as info:
            main(["sample", "--prompt", "a red circle bouncing on a black background", *args])
        return info.value.code

    assert vbf("--model", str(folder / "ar.pt")) == 4
    assert "vbf sample drives the flow" in capsys.readouterr().err
    # the tiny flow sees 3 latent frames: 9 given frames (3 latent) leave nothing to generate
    write_video(tmp_path / "long.gif", ShapesWorld("test", size=32).clip(0, 9).frames, 8)
    assert vbf("--model", str(folder / "flow.pt"), "--video", str(tmp_path / "long.gif"), "--seconds", "2") == 4
    err = capsys.readouterr().err
    assert "--video" in err and "at most 5 frames" in err


def test_first_frame_clip_follows_each_model_s_dependencies(exported, diffusion_exports):
    folder, _ = diffusion_exports
    flow, ar, bidir = (generator.load(folder / f"{name}.pt") for name in ("flow", "ar", "bidir"))
    # causal: the first latent frame after the given ones (latent frames 1 + 4k <- frames)
    for pipe in (flow, ar):
        assert pipe.frame_causal
        assert [pipe.first_frame_clip(41, given) for given in (0, 1, 5, 9)] == [1, 5, 9, 13]
        assert pipe.first_frame_clip(3, 1) == 3
    # bidirectional: the whole first window (the training window of 9 frames here)
    assert not bidir.frame_causal and bidir.likelihood_frames == 9
    assert [bidir.first_frame_clip(41, 0), bidir.first_frame_clip(5, 0)] == [9, 5]


def test_latency_to_first_frame_metric(exported, diffusion_exports, tmp_path, capsys):
    import json

    from vbench_flow.cli import main

    folder, _ = diffusion_exports
    suite = tmp_path / "s.yaml"
    suite.write_text(f"""
name: latency
data: {{type: shapes, size: 32, fps: 8}}
clip_seconds: [2]
prompts: {{source: data, split: test, count: 1}}
models:
  - {{name: flow, type: starflow, checkpoint: "{folder / 'flow.pt'}", sampler: {{sampler: sequential, measure_first_frame: true}}}}
  - {{name: bidir, type: diffusion, checkpoint: "{folder / 'bidir.pt'}", sampler: {{steps: 2, measure_first_frame: true}}}}
  - {{name: real, type: dataset}}
metrics:
  - {{name: latency_to_first_frame, models: [flow, bidir]}}
  - {{name: generate_seconds}}
""")
    with pytest.raises(SystemExit) as info:
        main(["run", str(suite), "--runs-dir", str(tmp_path / "runs"), "--run-id", "l", "--quiet"])
    assert info.value.code == 0
    lines = {r["model"]: r for r in map(json.loads, (tmp_path / "runs" / "l" / "samples.jsonl").read_text().splitlines())}
    for model, frames in (("flow", 1), ("bidir", 9)):
        record = lines[model]
        assert record["generation"]["first_frame_clip_frames"] == frames
        assert record["metrics"]["latency_to_first_frame"] == record["generation"]["first_frame_seconds"] > 0
        # the timing run is not part of generating the clip
        assert record["metrics"]["generate_seconds"] == pytest.approx(
            record["generation"]["seconds"] - record["generation"]["first_frame_seconds"])
    assert "latency_to_first_frame" not in lines["real"]["metrics"]
