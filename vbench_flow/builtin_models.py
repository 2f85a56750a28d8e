"""Generator types the harness ships: real data, pre-generated folders, and user Python code."""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import ConfigDict, Field

from vbench_flow.data.folder import missing_files_message, read_manifest_rows, video_under_root
from vbench_flow.errors import ConfigError, VideoReadError
from vbench_flow.protocol import Generator, Prompt
from vbench_flow.registry import Args, BuildContext, ModelType, register_model
from vbench_flow.prompts import resolve_relative
from vbench_flow.video_io import num_frames_for


# ---------------------------------------------------------------- dataset: the "real data" row

class DatasetArgs(Args):
    pass


class DatasetGenerator:
    """Returns each prompt's ground-truth clip: the real-data row every report compares against.
    Real footage at its native size is handed back as its file, which the harness streams and
    references like a folder model's (never decoded whole, never re-encoded)."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def generate(self, prompts: Sequence[str], seconds: float, fps: float, seed: int, task: str = "t2v",
                 condition_frames: Sequence[np.ndarray] | None = None, **sampler_opts: Any) -> list[np.ndarray | Path]:
        num_frames = num_frames_for(seconds, fps)
        videos: list[np.ndarray | Path] = []
        for prompt in prompts:
            if not isinstance(prompt, Prompt) or "index" not in prompt.meta:
                raise ConfigError(f"the dataset model needs data-set prompts, got plain text {str(prompt)[:60]!r}",
                                  fix="set prompts.source: data")
            source = self.data.ground_truth_file(prompt)
            videos.append(source if source is not None else self.data.ground_truth(prompt, num_frames, fps))
        return videos

    def info(self) -> dict[str, Any]:
        return {"name": "dataset", "parameters": 0, "checkpoint_sha256": None, "data": self.data.describe()}


register_model(ModelType(
    name="dataset",
    summary="the ground-truth clip of each data-set prompt (the real-data row of every report)",
    args_model=DatasetArgs,
    build=lambda args, ctx: DatasetGenerator(ctx.data),
    needs_data_prompts=True,
))


# ---------------------------------------------------------------- python: a user's own generator

class PythonArgs(Args):
    entry: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$",
                       description="module:attribute — a generator object, or a factory called with kwargs")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    path: str | None = Field(None, description="folder added to sys.path (default: the suite's folder)")


class OpenSamplerOptions(Args):
    """User generators document their own options; the harness passes them through."""

    model_config = ConfigDict(extra="allow")


def _import_root(args: PythonArgs, ctx: BuildContext) -> Path:
    return resolve_relative(args.path, ctx.suite_dir) if args.path else ctx.suite_dir


def _check_python(args: PythonArgs, ctx: BuildContext) -> list[str]:
    module = args.entry.split(":")[0]
    root = str(_import_root(args, ctx))
    added = root not in sys.path
    if added:
        sys.path.insert(0, root)
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    finally:
        if added:
            sys.path.remove(root)
    if not found:
        return [f"args.entry: module {module!r} not found on the Python path or in {root}"]
    return []


def _build_python(args: PythonArgs, ctx: BuildContext) -> Generator:
    module_name, attr_path = args.entry.split(":")
    root = str(_import_root(args, ctx))
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}", where=f"models.{ctx.model_name}.args.entry") from None
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"{module_name!r} has no attribute {attr_path!r}", where=f"models.{ctx.model_name}.args.entry")
        target = getattr(target, part)
    # a class or factory is called with kwargs; an object that already generates is used as is
    generator = target(**args.kwargs) if isinstance(target, type) or not hasattr(target, "generate") else target
    if not isinstance(generator, Generator):
        raise ConfigError(f"{args.entry} did not give an object with generate() and info()",
                          where=f"models.{ctx.model_name}.args.entry",
                          fix="see `help(vbench_flow.protocol)` for the generator protocol")
    return generator


register_model(ModelType(
    name="python",
    summary="your own generator: args.entry = 'module:attribute' (an object with generate()/info(), or a factory)",
    args_model=PythonArgs,
    build=_build_python,
    check=_check_python,
    sampler_model=OpenSamplerOptions,
))


# ---------------------------------------------------------------- folder: videos made elsewhere

class FolderModelArgs(Args):
    manifest: str = Field(description="CSV or JSONL: video, and prompt_id or prompt; optional seed, task, clip_seconds "
                          "per row. A row that leaves one out (or an empty CSV cell) serves every value of it; when "
                          "several rows fit a unit, the row naming every match field the others name wins, and two "
                          "rows that could fit one unit with neither naming the other's fields are an error")
    root: str | None = Field(None, description="videos are relative to this (default: the manifest's folder)")
    allow_outside_root: bool = Field(False, description="accept videos whose real path (after .., an absolute path "
                                     "or symlinks) lies outside root")


MATCH_FIELDS = ("seed", "task", "clip_seconds")
def _as_seed(value: Any) -> int:
    """An integer seed from JSON or CSV text; a JSON 3.0 is 3, but 1.5 and true are mistakes, not seeds."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"not an integer: {value!r}")
    return int(value)


MATCH_TYPES: dict[str, Any] = {"seed": _as_seed, "task": str, "clip_seconds": float}
FOLDER_MANIFEST_COLUMNS = ("video", "prompt_id", "prompt", *MATCH_FIELDS)


def _cell(value: Any) -> str | None:
    """A manifest value as text, or None when the row leaves it out (absent, null or an empty CSV cell)."""
    text = "" if value is None else str(value).strip()
    return text or None


@dataclass(frozen=True)
class FolderListing:
    """One manifest row: its video and the match fields it names; those it leaves out are wildcards."""

    line: int
    prompt: str
    named: dict[str, Any]
    video: Path

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.named)

    def values(self, fields: Sequence[str]) -> tuple:
        return tuple(self.named[f] for f in fields)


class FolderGenerator:
    """Scores videos some other program made: each unit's video is looked up in a manifest.

    A row lists a video for a prompt and, optionally, a seed, task and clip_seconds. A match field
    a row leaves out (absent or null in JSONL, an empty cell in CSV) is a wildcard: the row serves
    every value of it. A unit may fit several rows, say one for seed 3 and one without a seed; the
    more specific wins, i.e. the row that names every match field the other names, and more. Two
    rows that could fit the same unit with neither more specific (one names seed, the other task)
    are refused when the manifest loads, unless a row naming the fields of both settles the units
    they share; so every lookup has exactly one answer and a wrong video is never scored silently.
    """

    def __init__(self, manifest: Path, root: Path | None = None, allow_outside_root: bool = False) -> None:
        self.manifest, self.root = manifest, root or manifest.parent
        self.allow_outside_root = allow_outside_root
        rows = list(read_manifest_rows(manifest, required=("video",), known=FOLDER_MANIFEST_COLUMNS))
        self.prompt_field = "prompt_id" if rows and "prompt_id" in rows[0][1] else "prompt"
        # prompt -> the match fields a row names -> their values -> the row
        self.listings: dict[str, dict[tuple[str, ...], dict[tuple, FolderListing]]] = {}
        for line, row in rows:
            self._add(self._listing(line, row))
        for by_fields in self.listings.values():
            self._check_unambiguous(by_fields)

    def _listing(self, line: int, row: dict[str, Any]) -> FolderListing:
        where = f"{self.manifest}:{line}"
        video = _cell(row.get("video"))
        if video is None:
            raise ConfigError("needs a 'video' path", where=where, fix="add the video's path")
        prompt = _cell(row.get(self.prompt_field))
        if prompt is None:
            raise ConfigError(f"needs a {self.prompt_field!r} to match the video to a prompt", where=where,
                              fix="add a prompt_id (or prompt) column")
        named_fields = [f for f in MATCH_FIELDS if _cell(row.get(f)) is not None]
        try:
            named = {f: MATCH_TYPES[f](row[f]) for f in named_fields}
        except (TypeError, ValueError):
            values = {f: row[f] for f in named_fields}
            raise ConfigError(f"cannot read {values}: seed must be an integer, clip_seconds a number",
                              where=where, fix="correct the value in the manifest") from None
        path = video_under_root(video, self.root, allow_outside_root=self.allow_outside_root,
                                where=f"{where} (field 'video')", opt_in="args.allow_outside_root")
        return FolderListing(line, prompt, named, path)

    def _add(self, listing: FolderListing) -> None:
        same_fields = self.listings.setdefault(listing.prompt, {}).setdefault(listing.fields, {})
        earlier = same_fields.get(listing.values(listing.fields))
        if earlier is not None:
            raise ConfigError(f"a second video for the unit {self._describe(listing.prompt, listing.named)} "
                              f"(first on line {earlier.line})", where=f"{self.manifest}:{listing.line}",
                              fix="add seed / task / clip_seconds values to tell them apart, or drop the duplicate")
        same_fields[listing.values(listing.fields)] = listing

    def _check_unambiguous(self, by_fields: dict[tuple[str, ...], dict[tuple, FolderListing]]) -> None:
        """Refuse two rows of one prompt that fit a common unit when neither names every field the
        other names, unless a row naming the fields of both settles that unit. Then, for every unit,
        the row naming the most fields names every field the other fitting rows name, and is the answer."""
        for fields_a, fields_b in itertools.combinations(by_fields, 2):
            if set(fields_a) <= set(fields_b) or set(fields_b) <= set(fields_a):
                continue
            shared = [f for f in fields_a if f in fields_b]
            both = tuple(f for f in MATCH_FIELDS if f in fields_a or f in fields_b)
            settled = by_fields.get(both, {})
            b_by_shared: dict[tuple, list[FolderListing]] = defaultdict(list)
            for b in by_fields[fields_b].values():
                b_by_shared[b.values(shared)].append(b)
            for a in by_fields[fields_a].values():
                for b in b_by_shared[a.values(shared)]:
                    common = {**a.named, **b.named}
                    if tuple(common[f] for f in both) not in settled:
                        raise self._ambiguity(a, b, common)

    def _ambiguity(self, a: FolderListing, b: FolderListing, common: dict[str, Any]) -> ConfigError:
        first, second = sorted((a, b), key=lambda listing: listing.line)
        fields = " and ".join(f for f in MATCH_FIELDS if f in common)
        return ConfigError(f"lines {first.line} and {second.line} both fit the unit "
                           f"{self._describe(a.prompt, common)} and neither names every field the other names",
                           where=f"{self.manifest}:{second.line}",
                           fix=f"add a row naming {fields} for that unit, or give both rows the same fields")

    def _describe(self, prompt: str, named: dict[str, Any]) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in {self.prompt_field: prompt, **named}.items())

    def _lookup(self, prompt: str, seed: int, task: str, seconds: float) -> Path:
        given = prompt.id if self.prompt_field == "prompt_id" and isinstance(prompt, Prompt) else str(prompt)
        wanted = given.strip()
        unit = {"seed": int(seed), "task": str(task), "clip_seconds": float(seconds)}
        fitting = [same_fields[key] for fields, same_fields in self.listings.get(wanted, {}).items()
                   if (key := tuple(unit[f] for f in fields)) in same_fields]
        if not fitting:
            raise VideoReadError(f"no video listed for {self._describe(wanted, unit)}", where=str(self.manifest),
                                 fix="add a row for this unit to the manifest")
        # _check_unambiguous leaves one fitting row that names every field the others name: the most specific
        return max(fitting, key=lambda listing: len(listing.named)).video

    def generate(self, prompts: Sequence[str], seconds: float, fps: float, seed: int, task: str = "t2v",
                 condition_frames: Sequence[np.ndarray] | None = None, **sampler_opts: Any) -> list[Path]:
        """The listed video files: the harness reads each in chunks (resampled to ``fps``, the
        first ``seconds`` of it) while it scores, and refers to it instead of copying it."""
        return [self._lookup(prompt, seed, task, seconds) for prompt in prompts]

    def missing_videos(self) -> list[str]:
        return [str(listing.video) for by_fields in self.listings.values() for same_fields in by_fields.values()
                for listing in same_fields.values() if not listing.video.is_file()]

    def info(self) -> dict[str, Any]:
        return {"name": "folder", "parameters": 0, "checkpoint_sha256": None, "manifest": str(self.manifest)}


def _folder_paths(args: FolderModelArgs, ctx: BuildContext) -> tuple[Path, Path | None]:
    root = resolve_relative(args.root, ctx.suite_dir) if args.root else None
    return resolve_relative(args.manifest, ctx.suite_dir), root


def _open_folder(args: FolderModelArgs, ctx: BuildContext) -> FolderGenerator:
    return FolderGenerator(*_folder_paths(args, ctx), allow_outside_root=args.allow_outside_root)


def _check_folder(args: FolderModelArgs, ctx: BuildContext) -> list[str]:
    manifest, _ = _folder_paths(args, ctx)
    if not manifest.is_file():
        return [f"args.manifest: file not found: {manifest}"]
    try:
        missing = _open_folder(args, ctx).missing_videos()
    except ConfigError as exc:
        return [f"args.manifest: {exc.render()}"]
    return [f"args.manifest: {missing_files_message(missing)}"] if missing else []


register_model(ModelType(
    name="folder",
    summary="pre-generated videos from any model, matched to prompts by a manifest (video, prompt_id|prompt[, seed, task, clip_seconds])",
    args_model=FolderModelArgs,
    build=_open_folder,
    check=_check_folder,
))


# ---------------------------------------------------------------- starflow: the normalizing-flow generator

class StarFlowArgs(Args):
    device: str = Field("cpu", description="torch device, e.g. cpu or cuda")


class StarFlowSamplerOptions(Args):
    sampler: Literal["jacobi", "sequential"] = "jacobi"
    block_size: int = Field(16, ge=1, description="Jacobi: tokens per block inside the first latent frame")
    later_block_factor: int = Field(4, ge=1, description="Jacobi: later blocks are this many times larger")
    tolerance: float = Field(1e-3, gt=0, description="Jacobi: stop when ||dx||^2/||x||^2 falls below this")
    max_iters: int = Field(32, ge=1)
    warm_start: bool = True
    guidance: float = Field(0.0, ge=0, description="classifier-free guidance scale (0: conditional model)")
    denoise: bool = True
    context_frames: int | None = Field(None, ge=1, description="latent frames re-read as context per window")
    check_against_sequential: bool = Field(False, description="also invert the same noise token by token and "
                                           "record the largest latent difference and the speed-up")
    measure_first_frame: bool = Field(False, description="also time, in a separate call, how long the first "
                                      "generated frame takes (for latency_to_first_frame)")


class LatentGenerator:
    """The harness side of a pipeline from ``generator.load``: what every latent generator reports."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self._first_frame: dict[str, Any] = {}

    def generation_stats(self) -> dict[str, Any]:
        return {**self.pipeline.last_sampling, **self._first_frame}

    def _sample(self, prompts: Sequence[str], num_frames: int, condition: np.ndarray | None, measure_first_frame: bool,
                **options: Any) -> np.ndarray:
        """The pipeline's clips; with ``measure_first_frame``, first a separate timed call for the
        shortest clip that contains the first generated frame (``first_frame_seconds``, per call)."""
        captions = [str(p) for p in prompts]
        self._first_frame = {}
        if measure_first_frame:
            given = 0 if condition is None else condition.shape[1]
            frames = self.pipeline.first_frame_clip(num_frames, given)
            started = self.pipeline._clock()
            self.pipeline.sample(captions, frames, condition_frames=condition,
                                 **{k: v for k, v in options.items() if k != "check_against_sequential"})
            self._first_frame = {"first_frame_seconds": self.pipeline._clock() - started, "first_frame_clip_frames": frames}
        return self.pipeline.sample(captions, num_frames, condition_frames=condition, **options)

    def bits_per_dim(self, videos: Sequence[np.ndarray], prompts: Sequence[str]) -> list[float]:
        """Bits/dim of the first training window of each clip (the model scores no longer piece at once)."""
        frames = self.pipeline.likelihood_frames
        if any(len(v) < frames for v in videos):
            raise ValueError(f"{self.pipeline.name} scores clips of {frames} frames; got one of {min(len(v) for v in videos)}")
        return self.pipeline.bits_per_dim(np.stack([v[:frames] for v in videos]), [str(p) for p in prompts])

    def info(self) -> dict[str, Any]:
        return {k: v for k, v in self.pipeline.info().items() if k != "history"}


class StarFlowGenerator(LatentGenerator):
    """The flow: t2v, i2v and v2v clips of any length, Jacobi or sequential."""

    def generate(self, prompts: Sequence[str], seconds: float, fps: float, seed: int, task: str = "t2v",
                 condition_frames: Sequence[np.ndarray] | None = None, **sampler_opts: Any) -> list[np.ndarray]:
        from generator.samplers import JacobiOptions

        options = StarFlowSamplerOptions.model_validate(sampler_opts)
        _check_latent_generator(self.pipeline, fps, options.context_frames, self.pipeline.model.config.flow.max_frames)
        jacobi = None if options.sampler == "sequential" else JacobiOptions(
            options.block_size, options.later_block_factor, options.tolerance, options.max_iters, options.warm_start)
        condition = None if condition_frames is None else np.stack(condition_frames)
        videos = self._sample(prompts, num_frames_for(seconds, fps), condition, options.measure_first_frame, seed=seed,
                              guidance=options.guidance, denoise=options.denoise, jacobi=jacobi,
                              context_frames=options.context_frames,
                              check_against_sequential=options.check_against_sequential)
        return list(videos)


def _check_latent_generator(pipeline: Any, fps: float, context_frames: int | None, window: int) -> None:
    """Mistakes any latent generator refuses: a frame rate it was not trained for, a context that fills its window."""
    trained_fps = pipeline.info().get("recipe", {}).get("fps")
    if trained_fps and abs(trained_fps - fps) > 1e-9:
        raise ConfigError(f"{pipeline.name} generates at {trained_fps:g} fps; the suite asks for {fps:g}",
                          fix=f"set fps: {trained_fps:g} in the suite")
    if context_frames is not None and context_frames >= window:
        raise ConfigError(f"context_frames {context_frames} leaves no room to generate: "
                          f"{pipeline.name} sees {window} latent frames at a time",
                          where="context_frames", fix=f"use 1..{window - 1}")


def _starflow_checkpoint(ctx: BuildContext) -> str:
    name = ctx.checkpoint or "starflow-v-shapes64"
    path = resolve_relative(name, ctx.suite_dir)
    return str(path) if path.suffix == ".pt" else name


def _check_checkpoint(args: StarFlowArgs, ctx: BuildContext) -> list[str]:
    """A missing, unreadable or unsafe checkpoint stops the suite before any compute; reading it
    safely (tensors and plain values only) is what proves it cannot run code when the model is built."""
    from generator import checkpoint_path
    from generator.train import read_model_state

    try:
        read_model_state(checkpoint_path(_starflow_checkpoint(ctx)))
    except (FileNotFoundError, ValueError) as exc:
        return [f"checkpoint: {exc}"]
    return []


def _load_pipeline(args: StarFlowArgs, ctx: BuildContext, kind: str, described: str) -> Any:
    """The checkpoint's pipeline, refused when it holds another kind of model than the type expects."""
    import generator

    pipeline = generator.load(_starflow_checkpoint(ctx), device=args.device)
    if pipeline.model.kind != kind:
        raise ConfigError(f"{ctx.checkpoint} is a {pipeline.model.kind} checkpoint, not {described}",
                          fix=f"use type: {pipeline.model.kind} for it")
    return pipeline


def _build_starflow(args: StarFlowArgs, ctx: BuildContext) -> StarFlowGenerator:
    return StarFlowGenerator(_load_pipeline(args, ctx, "starflow", "a STARFlow-V model"))


register_model(ModelType(
    name="starflow",
    summary="the STARFlow-V normalizing flow (checkpoint: a shipped name or a .pt file); sampler: jacobi or sequential",
    args_model=StarFlowArgs,
    build=_build_starflow,
    check=_check_checkpoint,
    sampler_model=StarFlowSamplerOptions,
))


# ---------------------------------------------------------------- diffusion: the baselines

class DiffusionSamplerOptions(Args):
    sampler: Literal["euler", "few_step"] | None = Field(
        None, description="euler: Euler steps on the probability-flow ODE; few_step: timesteps 1000/750/500/250, "
                          "re-noised between steps; default: the checkpoint's own (few_step for a distilled student, "
                          "else euler)")
    steps: int = Field(50, ge=1, le=1000, description="euler: number of steps")
    shift: float | None = Field(None, gt=0, description="timestep shift (default 5 for few_step, 3 for euler)")
    guidance: float = Field(0.0, ge=0, description="classifier-free guidance scale (0: conditional model)")
    context_frames: int | None = Field(None, ge=1, description="latent frames re-read as context per window")
    sink: bool = Field(False, description="causal model: keep the clip's first frame in every window (attention sink)")
    measure_first_frame: bool = Field(False, description="also time, in a separate call, how long the first "
                                      "generated frame takes (for latency_to_first_frame)")


class DiffusionGenerator(LatentGenerator):
    """A diffusion baseline: t2v, i2v and v2v clips of any length, Euler or few-step."""

    def generate(self, prompts: Sequence[str], seconds: float, fps: float, seed: int, task: str = "t2v",
                 condition_frames: Sequence[np.ndarray] | None = None, **sampler_opts: Any) -> list[np.ndarray]:
        options = DiffusionSamplerOptions.model_validate(sampler_opts)
        config = self.pipeline.model.config
        _check_latent_generator(self.pipeline, fps, options.context_frames, config.max_frames)
        if options.sink and not config.causal:
            raise ConfigError(f"{self.pipeline.name} is bidirectional; an attention sink needs the causal model",
                              where="sink", fix="drop sink: true for this model")
        if options.sink and (options.context_frames or max(1, config.max_frames // 2)) < 2:
            raise ConfigError("an attention sink needs context_frames >= 2 (the sink plus a recent frame)",
                              where="context_frames", fix="set context_frames: 2 or more")
        condition = None if condition_frames is None else np.stack(condition_frames)
        videos = self._sample(prompts, num_frames_for(seconds, fps), condition, options.measure_first_frame, seed=seed,
                              guidance=options.guidance, sampler=options.sampler, steps=options.steps,
                              shift=options.shift, context_frames=options.context_frames, sink=options.sink)
        return list(videos)


def _check_diffusion(args: StarFlowArgs, ctx: BuildContext) -> list[str]:
    if not ctx.checkpoint:
        return ["checkpoint: a diffusion model needs one (ar-diffusion-shapes64, bidir-diffusion-shapes64 or a .pt file)"]
    return _check_checkpoint(args, ctx)


def _build_diffusion(args: StarFlowArgs, ctx: BuildContext) -> DiffusionGenerator:
    return DiffusionGenerator(_load_pipeline(args, ctx, "diffusion", "a diffusion model"))


register_model(ModelType(
    name="diffusion",
    summary="a latent diffusion baseline (checkpoint: ar-diffusion-shapes64, bidir-diffusion-shapes64 or a .pt file); "
            "sampler: euler (steps) or few_step",
    args_model=StarFlowArgs,
    build=_build_diffusion,
    check=_check_diffusion,
    sampler_model=DiffusionSamplerOptions,
))
