"""``vbf``: run suites, validate them, inspect results and report.

Exit codes (every command): 0 success; 1 ``vbf gate``: a metric regressed beyond its margin;
2 an evaluation error (a run finished with failed units, the others are stored; ``vbf gate``: the
run is not complete); 3 ``vbf gate --strict``: a gated metric is inconclusive or not comparable;
4 a configuration or usage error (nothing was computed; ``vbf gate``: unknown run, missing or
malformed baseline, no metric with a margin, or every gated metric not comparable); 70 an
internal error (a bug: please report it); 130 interrupted (finished work is kept; ``--resume``
continues).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import click

from vbench_flow.errors import ConfigError, VbfError, disk_full
from vbench_flow.data.shapes import MAX_FRAME_SIZE, MIN_FRAME_SIZE
from vbench_flow.store import DEFAULT_RUNS_DIR, STORE_NAME, open_store

INTERNAL_ERROR = 70
RUNS_DIR_OPTION = click.option(
    "--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_RUNS_DIR, envvar="VBF_RUNS_DIR",
    show_envvar=True, show_default=True, help="Where runs and the results store (vbf.sqlite) live.")


def _existing_store(runs_dir: Path):
    """The store of ``runs_dir``; a clear error (not a new empty store) when there is none."""
    if not (runs_dir / STORE_NAME).exists():
        raise ConfigError(f"no results store at {runs_dir / STORE_NAME}",
                          fix="run a suite first (`vbf run SUITE`), or pass --runs-dir where your runs are")
    return open_store(runs_dir)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vbench-flow")
def cli() -> None:
    """vbench-flow: measure whether video generators stay consistent over time.

    \b
    Typical session:
      vbf validate suites/smoke.yaml      # check a suite before any compute
      vbf run suites/smoke.yaml           # generate, score, store, report
      vbf runs ls                         # list stored runs
      vbf report RUN_ID -o report.html    # one self-contained HTML page
      vbf gate RUN_ID --baseline BASE     # CI: fail on a metric regression

    Exit codes: 0 ok, 1 gate: regression, 2 evaluation error (some units failed; the rest
    is stored), 3 gate --strict: inconclusive, 4 configuration error (nothing computed),
    70 internal error, 130 interrupted.
    """


# ---------------------------------------------------------------- run / validate

@cli.command()
@click.argument("suite", type=click.Path(path_type=Path))
@click.option("--run-id", default=None, help="Name of the run (default: SUITE-NAME-YYYYmmdd-HHMMSS).")
@RUNS_DIR_OPTION
@click.option("--resume", is_flag=True, help="Continue an interrupted run (the latest of this suite, or --run-id).")
@click.option("--retry-failed", is_flag=True, help="With --resume: compute failed units again.")
@click.option("--quiet", is_flag=True, help="No progress bars or result tables (coverage and failures are still shown).")
def run(suite: Path, run_id: str | None, runs_dir: Path, resume: bool, retry_failed: bool, quiet: bool) -> int:
    """Run SUITE: generate every unit, score it, store the results, write the report.

    A unit is one (model, task, clip length, prompt, seed). Each finished unit is saved at
    once, so a run that is killed loses nothing: rerun with --resume to compute only what is
    missing. Units that fail (a corrupt video, a generator error) are recorded with their
    reason; the others still run, and the exit code is then 2.

    \b
    Examples:
      vbf run suites/smoke.yaml
      vbf run suites/smoke.yaml --run-id nightly-42
      vbf run suites/smoke.yaml --resume            # continue the latest smoke run
      torchrun --nproc_per_node 4 -m vbench_flow run suites/long_horizon.yaml   # one run over 4 processes
    """
    from vbench_flow.distributed import current_shard
    from vbench_flow.runner import check_run_id, run_suite
    from vbench_flow.suite import load_suite

    if retry_failed and not resume:
        raise ConfigError("--retry-failed only makes sense with --resume", where="vbf run")
    if run_id is not None:
        check_run_id(run_id)
    resolved = load_suite(suite)
    with _sigterm_as_interrupt():
        outcomes = run_suite(resolved, runs_dir=runs_dir, run_id=run_id, resume=resume,
                             retry_failed=retry_failed, progress=not quiet)
    if not current_shard().is_writer:  # under torchrun, rank 0 reports for everyone
        return max(o.exit_code for o in outcomes)
    store = open_store(runs_dir)
    try:
        for outcome in outcomes:
            _print_outcome(store, outcome, tables=not quiet)
        if outcomes[0].combined_report:
            click.echo(f"report: {outcomes[0].combined_report}")
    finally:
        store.close()
    return max(o.exit_code for o in outcomes)


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler's stop, `kill`) ends a run the way Ctrl-C does: finished units kept,
    the run marked interrupted, exit 130, resumable."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals to the host program
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _print_outcome(store, outcome, *, tables: bool) -> None:
    table = store.aggregates([outcome.run_id])
    if tables and not table.empty:
        table = table.assign(ci=lambda t: t.apply(lambda r: f"[{r.ci_low:.4f}, {r.ci_high:.4f}]", axis=1),
                             clip=lambda t: t.clip_seconds.map(lambda v: f"{v:g} s"))
        click.echo(table[["model", "task", "clip", "metric", "value", "ci", "n"]].to_string(index=False, float_format="%.4f"))
    click.echo(f"coverage: expected {outcome.expected} / done {outcome.done} / failed {outcome.failed}"
               f"  (computed now: {outcome.computed})")
    for metric, (count, reason) in outcome.metric_errors.items():
        click.echo(f"  {metric}: no value for {count} clip(s) (their other metrics stand), e.g. {reason.splitlines()[0]}",
                   err=True)
    for metric, (count, reason) in outcome.metric_excluded.items():
        click.echo(f"  {metric}: not scored on {count} clip(s) by its definition, e.g. {reason.splitlines()[0]}", err=True)
    for unit_id, reason in outcome.failures[:10]:
        click.echo(f"  failed {unit_id}: {reason.splitlines()[0]}", err=True)
    if len(outcome.failures) > 10:
        click.echo(f"  ... and {len(outcome.failures) - 10} more (see the report)", err=True)
    if tables:
        click.echo(f"run {outcome.run_id}: {outcome.run_dir}")
        click.echo(f"report: {outcome.report}")


@cli.command()
@click.argument("suite", type=click.Path(path_type=Path))
@click.option("--no-files", is_flag=True, help="Skip checks that open files (manifests, prompts, checkpoints).")
def validate(suite: Path, no_files: bool) -> int:
    """Check SUITE without computing anything: keys, names, values, files.

    Every problem is listed with its YAML key and line, and a suggestion where a name is
    misspelt. Exit code 0 when the suite is ready to run, 4 otherwise.
    """
    from vbench_flow.suite import SuiteError, validate_suite

    resolved, problems = validate_suite(suite, check_files=not no_files)
    if problems:
        raise SuiteError(str(suite), problems)
    from vbench_flow.prompts import load_prompts, plan_units
    from vbench_flow.suite import open_data_source

    for item in resolved:
        s = item.suite
        summary = (f"{len(s.models)} model(s) x {len(s.tasks)} task(s) x {len(s.clip_seconds)} clip length(s) "
                   f"x prompts x {len(s.prompts.seeds)} seed(s)")
        if not no_files:
            prompts = load_prompts(s, open_data_source(s, item.directory), item.directory)
            summary = summary.replace("x prompts", f"x {len(prompts)} prompt(s)") + f" = {len(plan_units(s, prompts))} units"
        click.echo(f"ok: {item.run_name}: {summary}; metrics: " + ", ".join(m.name for m in s.metrics))
        if not no_files:
            from vbench_flow.set_metrics import covariance_warnings

            for line in covariance_warnings(s, len(prompts)):
                click.echo(f"warning: {item.run_name}: {line}", err=True)
    return 0


# ---------------------------------------------------------------- ls

@cli.command("ls")
@click.argument("what", type=click.Choice(["models", "metrics", "suites"]))
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=Path("suites"), show_default=True,
              help="Where to look for suites.")
def ls(what: str, directory: Path) -> int:
    """List model types, metrics, or the suites in a folder."""
    from vbench_flow.registry import metric_types, model_types

    if what == "models":
        types = model_types()
        width = max(map(len, types))
        for name, entry in sorted(types.items()):
            click.echo(f"{name:{width}s}  {entry.summary}")
    elif what == "metrics":
        metrics = metric_types()
        width = max(map(len, metrics))
        for name, entry in sorted(metrics.items()):
            arrow = "higher is better" if entry.higher_is_better else "lower is better"
            click.echo(f"{name:{width}s}  {entry.summary} [{arrow}]")
    else:
        if not directory.is_dir():
            raise ConfigError(f"no suites folder at {directory}", fix="pass --dir PATH")
        from vbench_flow.suite import read_yaml

        for path in sorted(directory.glob("*.yaml")):
            try:
                description = read_yaml(path)[0].get("description", "")
            except ConfigError as exc:
                description = f"(not readable: {exc.what})"
            click.echo(f"{path.as_posix():32s} {str(description).strip().splitlines()[0] if description else ''}")
    return 0


# ---------------------------------------------------------------- data

@cli.group()
def data() -> None:
    """Look at the data worlds suites draw prompts from."""


@data.command("preview")
@click.option("--split", default="train", show_default=True, help="train, val or test.")
@click.option("--count", default=8, show_default=True, type=click.IntRange(1, 64), help="Number of clips.")
@click.option("--start", default=0, show_default=True, type=click.IntRange(0), help="First index in the split.")
@click.option("--seconds", default=5.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="Clip length.")
@click.option("--size", default=64, show_default=True, type=click.IntRange(MIN_FRAME_SIZE, MAX_FRAME_SIZE), help="Frame side in pixels.")
@click.option("--fps", default=8.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="Frames per second.")
@click.option("--columns", default=4, show_default=True, type=click.IntRange(1, 16))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("shapes_preview.gif"), show_default=True,
              help="A .gif or .mp4 file.")
def data_preview(split: str, count: int, start: int, seconds: float, size: int, fps: float, columns: int, output: Path) -> int:
    """Write a grid of shapes-world clips with their captions (GIF or MP4)."""
    from vbench_flow.data.preview import make_grid
    from vbench_flow.data.shapes import ShapesWorld
    from vbench_flow.video_io import num_frames_for, write_video

    world = ShapesWorld(split=split, size=size, fps=fps)
    clips = [world.clip(i, num_frames_for(seconds, fps)) for i in range(start, start + count)]
    grid = make_grid([c.frames for c in clips], [c.caption for c in clips], columns=columns)
    write_video(output, grid, fps)
    click.echo(f"wrote {output} ({count} clips, {grid.shape[0]} frames, {grid.shape[2]}x{grid.shape[1]})")
    return 0


# ---------------------------------------------------------------- sample

@cli.command()
@click.option("--model", "model_name", default="starflow-v-shapes64", show_default=True,
              help="A shipped checkpoint name or a .pt file.")
@click.option("--prompt", required=True, help="The caption to generate.")
@click.option("--seconds", default=5.0, show_default=True, type=click.FloatRange(min=0, min_open=True, max=3600))
@click.option("--sampler", type=click.Choice(["jacobi", "sequential"]), default="jacobi", show_default=True)
@click.option("--block-size", default=16, show_default=True, type=click.IntRange(1),
              help="Jacobi: tokens per block inside the first latent frame.")
@click.option("--later-block-factor", default=4, show_default=True, type=click.IntRange(1),
              help="Jacobi: later blocks hold block-size times this many tokens.")
@click.option("--tolerance", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Jacobi: a block is done when ||dx||^2/||x||^2 falls below this (1e-9 matches the sequential "
                   "sampler to about 1e-3 in the latents).")
@click.option("--max-iters", default=32, show_default=True, type=click.IntRange(1), help="Jacobi: iterations per block at most.")
@click.option("--warm-start/--no-warm-start", default=True, show_default=True,
              help="Jacobi: start each block from the previous latent frame's tokens.")
@click.option("--context-frames", default=None, type=click.IntRange(1),
              help="Long clips: latent frames re-read as context by each new window (default: half the window).")
@click.option("--guidance", default=0.0, show_default=True, type=click.FloatRange(min=0), help="Classifier-free guidance scale.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**63 - 1))
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Image-to-video: the first frame (an image file, or a video whose first frame is used).")
@click.option("--video", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Continuation: a video whose frames the clip continues.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("sample.mp4"), show_default=True,
              help=".mp4 or .gif")
def sample(model_name: str, prompt: str, seconds: float, sampler: str, block_size: int, later_block_factor: int,
           tolerance: float, max_iters: int, warm_start: bool, context_frames: int | None, guidance: float, seed: int,
           image: Path | None, video: Path | None, out: Path) -> int:
    """Generate one clip with the flow: text-, image- or video-to-video.

    \b
    Examples:
      vbf sample --prompt "a red circle bouncing on a black background" --seconds 30 --out clip.mp4
      vbf sample --prompt "..." --image first.png --out i2v.mp4
    """
    import time

    import numpy as np

    from vbench_flow.builtin_models import StarFlowGenerator
    from vbench_flow.video_io import num_frames_for, write_video

    if image and video:
        raise ConfigError("give --image or --video, not both", where="vbf sample")
    try:
        import generator

        pipeline = generator.load(model_name)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc), where="--model") from None
    if pipeline.model.kind != "starflow":
        raise ConfigError(f"{model_name} is a {pipeline.model.kind} checkpoint; vbf sample drives the flow",
                          where="--model", fix="run diffusion baselines through a suite (type: diffusion)")
    fps = float(pipeline.info().get("recipe", {}).get("fps", 8.0))
    condition = None
    if image or video:
        source = image or video
        option = "--image" if image else "--video"
        frames = _read_image_or_video(source, fps)
        size = pipeline.frame_size
        if frames.shape[1:3] != (size, size):
            raise ConfigError(f"{source} is {frames.shape[2]}x{frames.shape[1]}; this model makes {size}x{size} frames",
                              where=option, fix=f"resize it to {size}x{size}")
        condition = frames[:1] if image else frames
        given = 1 + (condition.shape[0] - 1) // pipeline.autoencoder.config.temporal_factor  # as condition_tokens uses them
        window = pipeline.model.max_latent_frames
        if given >= min(window, pipeline.latent_frames_for(num_frames_for(seconds, fps))):
            most = 1 + pipeline.autoencoder.config.temporal_factor * (window - 2)
            raise ConfigError(f"{source} gives {condition.shape[0]} frames, which leave nothing to generate "
                              f"in {seconds:g} s with a {window}-latent-frame window",
                              where=option, fix=f"give at most {most} frames and ask for more --seconds")
    generator_ = StarFlowGenerator(pipeline)
    started = time.perf_counter()
    [clip] = generator_.generate([prompt], seconds, fps, seed, task="t2v" if condition is None else ("i2v" if image else "v2v"),
                                 condition_frames=None if condition is None else [condition], sampler=sampler,
                                 block_size=block_size, later_block_factor=later_block_factor, tolerance=tolerance,
                                 max_iters=max_iters, warm_start=warm_start, context_frames=context_frames,
                                 guidance=guidance)
    elapsed = time.perf_counter() - started
    write_video(out, np.asarray(clip), fps)
    stats = pipeline.last_sampling
    extra = f", {stats['network_evaluations']} network evaluations" if "network_evaluations" in stats else ""
    click.echo(f"wrote {out}: {clip.shape[0]} frames at {fps:g} fps in {elapsed:.1f} s ({sampler}{extra})")
    return 0


def _read_image_or_video(path: Path, fps: float):
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from vbench_flow.video_io import read_video

    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
        try:
            return np.asarray(Image.open(path).convert("RGB"))[None]
        except (OSError, UnidentifiedImageError) as exc:
            raise ConfigError(f"cannot read image {path}: {exc}", where="--image") from None
    return read_video(path, fps=fps)[0]


# ---------------------------------------------------------------- train

@cli.group()
def train() -> None:
    """Train the generators on the shapes world (single process, or under torchrun).

    \b
    Data-parallel on 2 CPU processes (gloo) or N GPUs (nccl), unchanged:
      torchrun --nproc_per_node 2 -m vbench_flow train starflow --steps 2000
    """


def _training_options(default_out: str, config_help: str) -> Callable[[Callable], Callable]:
    """The options every `vbf train` model shares."""
    options = [
        click.option("--autoencoder", default="vae-shapes64", show_default=True,
                     help="Shipped name or .pt file of the frozen autoencoder."),
        click.option("--frames", default=17, show_default=True, type=click.IntRange(5), help="Frames per training clip (1 + 4k)."),
        click.option("--steps", default=2000, show_default=True, type=click.IntRange(1)),
        click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1)),
        click.option("--lr", default=5e-4, show_default=True, type=click.FloatRange(min=0, min_open=True)),
        click.option("--pool-clips", default=4096, show_default=True, type=click.IntRange(1),
                     help="Training clips encoded once per process."),
        click.option("--val-clips", default=64, show_default=True, type=click.IntRange(1), help="Validation clips."),
        click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**63 - 1)),
        click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     help=config_help),
        click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
                     help=f"The exported model (EMA weights, config, measurements). [default: {default_out}]"),
        click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
                     help="Training state for --resume (default: OUT with .train.pt)."),
        click.option("--resume", is_flag=True, help="Continue from --checkpoint."),
        click.option("--threads", type=click.IntRange(1), default=None,
                     help="torch threads per process (1 is fastest on a shared 2-core machine)."),
    ]

    def decorate(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def _train_on_shapes(model: str, allowed_keys: set[str], *, autoencoder: str, frames: int, steps: int, batch_size: int,
                     lr: float, pool_clips: int, val_clips: int, seed: int, config_file: Path | None, out: Path,
                     checkpoint: Path | None, resume: bool, threads: int | None) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    from generator.train import TrainConfig
    from vbench_flow.suite import read_yaml
    from vbench_flow.training import ShapesRecipe, train_on_shapes

    if (frames - 1) % 4:
        raise ConfigError(f"--frames must be 1 + 4k (e.g. 17, 33), got {frames}", where=f"vbf train {model}")
    overrides = read_yaml(config_file)[0] if config_file else {}
    unknown = set(overrides) - allowed_keys
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}", where=str(config_file), fix=f"use {', '.join(sorted(allowed_keys))}")
    recipe = ShapesRecipe(model=model, autoencoder=autoencoder, frames=frames, pool_clips=pool_clips, val_clips=val_clips,
                          batch_size=batch_size, seed=seed, **(overrides or {}))
    return train_on_shapes(recipe, TrainConfig(steps=steps, lr=lr, denoiser_lr=lr, seed=seed), out=out,
                           checkpoint=checkpoint or out.with_suffix(".train.pt"), resume=resume)


@train.command("starflow")
@_training_options("generator/checkpoints/starflow-v-shapes64.pt", "YAML with flow / text / denoiser overrides, noise_sigma, patch_size.")
def train_starflow_command(out: Path | None, **options: Any) -> int:
    """Train STARFlow-V (text encoder, global-local flow, denoiser) on shapes-world latents.

    Writes OUT (EMA weights, config and measurements), its training state for --resume, and
    OUT-samples.gif: generated clips beside real ones for validation captions.
    """
    out = out or Path("generator/checkpoints/starflow-v-shapes64.pt")
    info = _train_on_shapes("starflow", {"flow", "text", "denoiser", "noise_sigma", "patch_size"}, out=out, **options)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 validates and reports
        return 0
    click.echo(f"val bits/dim {info['val_bits_per_dim']:.4f} ({info['bits_per_dim_space']}); "
               f"{info['parameters']['total']:,} parameters; {info['train_seconds']:.0f} s training, "
               f"{info['tokens_per_second']:.0f} tokens/s; wrote {out}")
    return 0


@train.command("diffusion")
@click.option("--kind", type=click.Choice(["ar", "bidir"]), required=True,
              help="ar: autoregressive chunked diffusion (frame-causal, per-frame noise levels); "
                   "bidir: bidirectional clip diffusion (full attention, one noise level per clip).")
@_training_options("generator/checkpoints/{ar,bidir}-diffusion-shapes64.pt",
                   "YAML with diffusion / flow (size) / text overrides, noise_sigma, patch_size.")
def train_diffusion_command(kind: str, out: Path | None, **options: Any) -> int:
    """Train a diffusion baseline on the same shapes-world latents, tokens and text encoder as the
    flow, its transformer the size of the flow's deep block.

    \b
    Examples:
      vbf train diffusion --kind ar --steps 8000 --threads 1
      vbf train diffusion --kind bidir --steps 8000 --threads 1
    """
    out = out or Path(f"generator/checkpoints/{kind}-diffusion-shapes64.pt")
    info = _train_on_shapes(f"{kind}-diffusion", {"diffusion", "flow", "text", "noise_sigma", "patch_size"}, out=out, **options)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    click.echo(f"val loss {info['val_loss']:.4f}; val bits/dim <= {info['val_bits_per_dim_bound']:.4f} "
               f"({info['bits_per_dim_space']}, an upper bound); {info['parameters']['total']:,} parameters; "
               f"{info['train_seconds']:.0f} s training, {info['tokens_per_second']:.0f} tokens/s; wrote {out}")
    return 0


@train.command("distill")
@click.option("--teacher", default="ar-diffusion-shapes64", show_default=True,
              help="Shipped name or .pt file of the causal (ar) diffusion teacher.")
@click.option("--steps", default=1500, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=1e-4, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--val-captions", default=32, show_default=True, type=click.IntRange(1),
              help="Validation captions: the distillation loss on them is logged every --val-every steps.")
@click.option("--val-every", default=100, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**63 - 1))
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("generator/checkpoints/ar-diffusion-4step-shapes64.pt"),
              show_default=True, help="The exported student (EMA weights, config, measurements).")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Training state for --resume (default: OUT with .train.pt).")
@click.option("--resume", is_flag=True, help="Continue from --checkpoint.")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch threads per process.")
def train_distill_command(teacher: str, steps: int, batch_size: int, lr: float, val_captions: int, val_every: int,
                          seed: int, out: Path, checkpoint: Path | None, resume: bool, threads: int | None) -> int:
    """Distil the autoregressive diffusion baseline into a 4-step student trained on its own rollouts.

    Each step the student generates clips with its 4-step sampler, and its clean estimate at the
    states it visited at one of the four steps (drawn each training step) regresses the teacher's
    50-step ODE solution from those states (see generator/distill.py). Needs no clips, only
    captions. Each validation also samples 8 validation captions and logs their caption adherence.

    \b
    Examples:
      vbf train distill --steps 1500 --threads 1
      torchrun --nproc_per_node 2 -m vbench_flow train distill --steps 1500 --threads 1 --resume
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    from generator.train import TrainConfig
    from vbench_flow.training import distill_on_shapes

    config = TrainConfig(steps=steps, lr=lr, warmup_steps=min(20, steps), val_every=val_every,
                         checkpoint_every=min(50, steps), log_every=10, ema_decay=0.99, seed=seed)
    info = distill_on_shapes(teacher, config, batch_size=batch_size, val_captions=val_captions, out=out,
                             checkpoint=checkpoint or out.with_suffix(".train.pt"), resume=resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    click.echo(f"val distillation loss {info['val_distill_loss']:.4f}; {info['train_seconds']:.0f} s; wrote {out}")
    return 0


# ---------------------------------------------------------------- runs and reports

@cli.group()
def runs() -> None:
    """List and export stored runs."""


@runs.command("ls")
@RUNS_DIR_OPTION
def runs_ls(runs_dir: Path) -> int:
    """List the runs in the store, oldest first."""
    if not (runs_dir / STORE_NAME).exists():
        click.echo(f"no runs yet in {runs_dir} (start one with `vbf run SUITE`)")
        return 0
    store = _existing_store(runs_dir)
    try:
        table = store.runs()
    finally:
        store.close()
    if table.empty:
        click.echo(f"no runs yet in {runs_dir}")
    else:
        table["status"] = [_live_status(status, run_dir) for status, run_dir in zip(table["status"], table["run_dir"])]
        click.echo(table[["run_id", "suite", "variant", "status", "created", "expected", "done", "failed"]]
                   .fillna("").to_string(index=False))
    return 0


def _live_status(status: str, run_dir: str | None) -> str:
    """'running' only while a process holds the run's lock: one that was killed shows 'interrupted'."""
    from vbench_flow.locking import lock_holder

    if status == "running" and run_dir and lock_holder(Path(run_dir)) is None:
        return "interrupted"
    return status


@runs.command("cost")
@click.argument("run_ids", nargs=-1, required=True)
@RUNS_DIR_OPTION
def runs_cost(run_ids: tuple[str, ...], runs_dir: Path) -> int:
    """What scoring cost: frames per second of each metric, per model and clip length, and of
    decoding alone (the "(read)" rows); then the process's peak memory after each clip length.

    Read from the seconds and the peak resident memory every record keeps (suites/perf_metrics.yaml
    measures the metrics at 64x64 and 256x256, suites/perf_real.yaml on real footage up to 1080p).
    """
    from vbench_flow.aggregate import metric_costs, peak_memory
    from vbench_flow.runner import RunFolder

    store = _existing_store(runs_dir)
    try:
        for run_id in run_ids:
            run = store.run(run_id)
            records = list(RunFolder(Path(run["run_dir"])).read_records().values())
            table, memory = metric_costs(records), peak_memory(records)
            click.echo(f"run {run_id}" + (f" ({run['variant']})" if run["variant"] else "") + ":")
            click.echo("  no per-metric timings recorded" if table.empty else
                       table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
            if not memory.empty:
                click.echo(memory.to_string(index=False, float_format=lambda v: f"{v:.0f}"))
    finally:
        store.close()
    return 0


@runs.command("export")
@click.argument("run_id")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="File to write.")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "json"]), default=None,
              help="Default: from the output's suffix.")
@RUNS_DIR_OPTION
def runs_export(run_id: str, output: Path, fmt: str | None, runs_dir: Path) -> int:
    """Export a run's per-sample values (one row per unit and metric) to CSV, Parquet or JSON."""
    store = _existing_store(runs_dir)
    try:
        path = store.export(run_id, output, fmt)
    finally:
        store.close()
    click.echo(f"wrote {path}")
    return 0


@cli.command()
@click.argument("run_ids", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("report.html"), show_default=True)
@click.option("--title", default=None, help="Page title (default: from the suite).")
@click.option("--baseline-model", default=None,
              help="Compare every other model with this one, within each run (default: the suite's report.baseline_model).")
@click.option("--baseline-run", default=None,
              help="Compare every other run with this one, model by model (added to the report if not listed). "
                   "With --baseline-model: that model of this run is the one baseline row.")
@click.option("--embed-budget-mb", default=8.0, show_default=True, type=click.FloatRange(min=0),
              help="Videos are inlined up to this many MiB in all; the rest are copied into OUTPUT-STEM_videos/.")
@RUNS_DIR_OPTION
def report(run_ids: tuple[str, ...], output: Path, title: str | None, baseline_model: str | None,
           baseline_run: str | None, embed_budget_mb: float, runs_dir: Path) -> int:
    """Render one self-contained HTML report for one or more runs (or ablation sweeps).

    \b
    Examples:
      vbf report smoke-20261121-101500 -o smoke.html
      vbf report RUN_A RUN_B -o compare.html     # side by side
      vbf report RUN --baseline-model real        # deltas against the real-data row
      vbf report SWEEP --baseline-run SWEEP.step=1 -o sweep.html
    """
    from vbench_flow.reporting import write_report

    store = _existing_store(runs_dir)
    try:
        expanded = [rid for given in run_ids for rid in (store.sweep_runs(given) or [given])]
        if baseline_run is not None:
            swept = store.sweep_runs(baseline_run)
            if swept:
                raise ConfigError(f"--baseline-run {baseline_run!r} is a sweep of {len(swept)} runs; name one of them",
                                  where="--baseline-run", fix=f"e.g. --baseline-run {swept[0]}")
        path = write_report(store, expanded, output, title, baseline_model=baseline_model, baseline_run=baseline_run,
                            embed_budget=int(embed_budget_mb * 1024 * 1024))
    finally:
        store.close()
    click.echo(f"wrote {path}")
    return 0


# ---------------------------------------------------------------- gate

@cli.command()
@click.argument("run_id")
@click.option("--baseline", default=None, metavar="RUN_ID|FILE",
              help="A run id in the store, or a baseline .json file (default: the suite's gate.baseline, "
                   "else SUITE_DIR/baselines/SUITE.json). With --update-baseline: the file to write.")
@click.option("--strict", is_flag=True, help="Inconclusive or not comparable gated metrics fail (exit 3); "
              "also set by the suite's gate.strict.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write JUnit XML: one testcase per gated metric.")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append a Markdown summary table (e.g. to $GITHUB_STEP_SUMMARY).")
@click.option("--update-baseline", is_flag=True, help="Write RUN_ID's per-sample values as the baseline file instead of gating.")
@RUNS_DIR_OPTION
def gate(run_id: str, baseline: str | None, strict: bool, junit: Path | None, markdown: Path | None,
         update_baseline: bool, runs_dir: Path) -> int:
    """Gate RUN_ID against a baseline: fail when a metric got worse than its margin, with confidence.

    Units pair on (model, task, clip length, prompt, seed); a bootstrap over the pairs gives an
    interval of the change. Per (model, task, clip length, metric): regress (the whole interval
    is worse than -margin), pass (the whole interval is better than -margin), inconclusive, or
    not comparable (different metric version, extractor, resolution, fps or units). Metrics
    without a margin in the suite are reported, not gated. Different seed sets compare unpaired.

    \b
    Exit codes: 0 pass (inconclusive passes unless --strict), 1 regression, 2 the run is not
    complete, 3 inconclusive or not comparable under --strict, 4 configuration error (also when
    nothing could be gated).

    \b
    Examples:
      vbf gate nightly-42 --baseline nightly-41
      vbf gate nightly-42 --baseline suites/baselines/smoke.json --junit gate.xml --markdown "$GITHUB_STEP_SUMMARY"
      vbf gate nightly-42 --update-baseline          # writes suites/baselines/<suite>.json
    """
    from vbench_flow import gate as gating

    store = _existing_store(runs_dir)
    try:
        run = store.run(run_id)
        gating.check_complete(run)
        gating.check_gated_metrics_scored(store, run)
        current = gating.side_from_run(store, run_id)
        if update_baseline:
            path = Path(baseline) if baseline else gating.default_baseline_path(run)
            existed = path.exists()
            doc = gating.write_baseline(current, path)
            groups = len({(u["model"], u["task"], u["clip_seconds"]) for u in doc["units"]})
            click.echo(f"{'replaced' if existed else 'wrote'} baseline {path}: run {run_id}, {len(doc['units'])} units "
                       f"in {groups} group(s), metrics {', '.join(doc['metrics']) or 'none'} "
                       f"({_sizes_text(doc['resolutions'])} at {doc['fps']:g} fps)")
            return 0
        base = gating.resolve_baseline(store, run, baseline)
    finally:
        store.close()
    settings = (run["config"] or {}).get("gate") or {}
    confidence, resamples = float(settings.get("confidence", 0.95)), int(settings.get("resamples", 1000))
    strict = strict or bool(settings.get("strict", False))
    comparisons = gating.compare_sides(current, base, confidence=confidence, resamples=resamples, seed=current.seed)
    decision = gating.decide(comparisons, strict=strict, confidence=confidence)
    click.echo(f"gate: run {run_id} vs {base.label}" + (" (strict)" if strict else ""))
    click.echo(gating.text_table(comparisons))
    for line in decision.lines:
        click.echo(f"  {line}")
    if junit:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(gating.junit_xml(comparisons, strict=strict, confidence=confidence))
        click.echo(f"junit: {junit}")
    if markdown:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        with markdown.open("a") as handle:  # appends, as $GITHUB_STEP_SUMMARY expects
            handle.write(gating.markdown_summary(comparisons, decision, run_label=f"run {run_id}",
                                                 baseline_label=base.label, confidence=confidence) + "\n")
        click.echo(f"markdown: {markdown}")
    if decision.exit_code == ConfigError.exit_code:
        raise ConfigError(decision.headline, where="vbf gate",
                          fix="add margin: to the metrics to gate" if "margin" in decision.headline
                          else "gate against a baseline made with the same metrics, extractors, resolution, fps and units")
    click.echo(decision.headline)
    return decision.exit_code


def _sizes_text(resolutions: dict[str, str]) -> str:
    sizes = sorted(set(resolutions.values()))
    return ", ".join(sizes) if sizes else "no frame sizes recorded"


# ---------------------------------------------------------------- entry point

@cli.command()
@click.argument("what", type=click.Choice(["i3d", "clip", "raft", "list", "dino-vitb16", "clip-vitb32", "clip-vitl14",
                                           "raft-things", "amt-s", "musiq-spaq", "laion-aesthetic"]))
@click.option("--torchscript", is_flag=True, help="i3d: StyleGAN-V's i3d_torchscript.pt instead of the state dict.")
@click.option("--model", "clip_model", default="ViT-B-32", show_default=True, help="clip: the open_clip architecture.")
@click.option("--pretrained", default="openai", show_default=True, help="clip: the open_clip pretrained tag.")
@click.option("--from", "source", type=click.Path(path_type=Path), default=None,
              help="Install a file you downloaded elsewhere (same checks, no network).")
@click.option("--dest", type=click.Path(path_type=Path), default=None, help="Install here instead of the default path.")
@click.option("--force", is_flag=True, help="Download again even if a checked file is in place.")
def fetch(what: str, torchscript: bool, clip_model: str, pretrained: str, source: Path | None, dest: Path | None,
          force: bool) -> int:
    """Download a standard pretrained extractor from its pinned URL, check it, install it.

    \b
      vbf fetch i3d                       # FVD: Kinetics-400 I3D (i3d_pretrained_400.pt)
      vbf fetch i3d --torchscript         # FVD: StyleGAN-V's i3d_torchscript.pt
      vbf fetch clip                      # CLIPSIM: open_clip ViT-B-32 'openai'
      vbf fetch raft                      # warping error: torchvision RAFT-large
      vbf fetch dino-vitb16               # VBench subject consistency (also clip-vitb32, clip-vitl14,
                                          #   raft-things, amt-s, musiq-spaq, laion-aesthetic)
      vbf fetch list                      # where each file goes and whether it is there
      vbf fetch i3d --from ~/Downloads/i3d_pretrained_400.pt   # offline: install a copied file

    Files are checked (sha256 where one is published, else a strict load into the expected
    network) before they are put in place. Offline, the error says which URL to download and
    the exact path to save it at. Exit codes: 0 installed or already there, 2 download or
    check failed (nothing installed), 4 bad option.
    """
    from vbench_flow import fetch as fetching

    if what == "list":
        from metrics.extractors import NAMES

        vbench_entries = [fetching.extractor_entry(name) for name in NAMES if name != "i3d"]
        for entry in (fetching.i3d_entry(), fetching.i3d_entry(torchscript=True), fetching.clip_entry(),
                      fetching.raft_entry(), *vbench_entries):
            state = "present" if entry.destination.is_file() else "missing"
            click.echo(f"{entry.name:<18} {state:<8} {entry.destination}\n{'':<28}{entry.url}\n{'':<28}{entry.pinned}")
        return 0
    entry = {"i3d": lambda: fetching.i3d_entry(torchscript),
             "clip": lambda: fetching.clip_entry(clip_model, pretrained),
             "raft": fetching.raft_entry}.get(what, lambda: fetching.extractor_entry(what))()
    path, digest, installed = fetching.fetch(entry, source=source, destination=dest, force=force,
                                             progress=sys.stderr.isatty())
    click.echo(f"{entry.name}: {'installed' if installed else 'already in place'} at {path}\n  sha256 {digest} "
               f"({entry.pinned})")
    return 0


def _leave_process_group() -> None:
    """Leave torchrun's process group before exiting: a gloo group left to interpreter shutdown can
    abort its process (SIGABRT) after the work is done, and torchrun then stops the other ranks."""
    dist = sys.modules.get("torch.distributed")  # never imports torch for a command that did not
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    try:
        _run_cli(argv)
    finally:
        _leave_process_group()


def _run_cli(argv: list[str] | None) -> None:
    try:
        code = cli.main(args=argv, prog_name="vbf", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        exc.show()
        sys.exit(ConfigError.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except VbfError as exc:
        click.echo(f"error: {exc.render()}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # outside a run (a run says how to resume): nothing to keep
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug, not a user mistake: say so, and keep the traceback for the report
        full = disk_full(exc)
        if full is not None:  # no space is never a bug, wherever it struck
            click.echo(f"error: {full.render()}", err=True)
            sys.exit(full.exit_code)
        if os.environ.get("VBF_DEBUG"):
            traceback.print_exc()
        else:
            click.echo(f"internal error: {type(exc).__name__}: {exc}\n  this is a bug in vbench-flow or in a plugin; "
                       "rerun with VBF_DEBUG=1 for the traceback and report it", err=True)
        sys.exit(INTERNAL_ERROR)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
