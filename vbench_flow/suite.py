"""Suites: the YAML that says what to run.

A suite names the data world, the prompts (and seeds), the models, the tasks, the clip lengths,
the metrics, and the gate and report settings. ``include:`` merges a base suite underneath
(mappings merge key by key, lists are replaced). ``ablations:`` expands one suite into several
runs, each with some keys overridden::

    ablations:                       # a list of named variants ...
      - name: no-denoiser
        set: {models.flow.args.denoise: false}
    ablations:                       # ... or the product of a matrix
      matrix: {models.flow.sampler.block_size: [4, 16], models.flow.sampler.tolerance: [1.0e-3, 1.0e-2]}

A dotted path steps into mappings by key and into the ``models`` / ``metrics`` lists by ``name``.

``validate_suite`` finds every problem before any compute and names the YAML key (and line) of
each; :func:`load_suite` raises :class:`SuiteError` listing them.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vbench_flow.data.shapes import MAX_FRAME_SIZE, MIN_FRAME_SIZE
from vbench_flow.motion_check import DEFAULT_STATIC_MARGIN
from vbench_flow.errors import ConfigError, read_utf8
from vbench_flow.prompts import load_prompts, plan_units, resolve_relative
from vbench_flow.protocol import TASKS
from vbench_flow.video_io import READERS, num_frames_for
from vbench_flow.registry import did_you_mean, get_metric, get_model_type, metric_types, model_types

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
MAX_SEED = 2**63 - 1  # seeds are stored as SQLite INTEGERs (signed 64-bit)
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Task = Literal["t2v", "i2v", "v2v"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSpec(Strict):
    """The data world: prompts and ground-truth clips come from here."""

    type: Literal["shapes", "folder"] = "shapes"
    size: int | None = Field(64, ge=MIN_FRAME_SIZE, le=MAX_FRAME_SIZE, description="frame side in pixels (folder: None keeps native)")
    fps: float = Field(8.0, gt=0, le=240)
    max_objects: int = Field(3, ge=1, le=3, description="shapes world only")
    manifest: str | None = Field(None, description="folder only: CSV or JSONL with video, caption[, id, split]")
    root: str | None = Field(None, description="folder only: videos are relative to this (default: manifest's folder)")
    allow_outside_root: bool = Field(False, description="folder only: accept videos whose real path (after .., an "
                                     "absolute path or symlinks) lies outside root")

    @model_validator(mode="after")
    def _folder_needs_manifest(self) -> "DataSpec":
        if self.type == "folder" and not self.manifest:
            raise ValueError("data.type 'folder' needs data.manifest (a CSV or JSONL file listing video and caption)")
        if self.type == "shapes" and self.size is None:
            raise ValueError("data.size is required for the shapes world")
        return self


class PromptSpec(Strict):
    source: Literal["data", "file", "inline"] = "data"
    split: str = "test"
    start: int = Field(0, ge=0)
    count: int | None = Field(None, ge=1, description="default: 8 from data, all from file/inline")
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    file: str | None = Field(None, description="source 'file': one prompt per line (.txt) or JSONL with text[, id]")
    texts: list[str] | None = Field(None, description="source 'inline': the prompts themselves")

    @model_validator(mode="after")
    def _source_fields(self) -> "PromptSpec":
        if self.source == "file" and not self.file:
            raise ValueError("prompts.source 'file' needs prompts.file")
        if self.source == "inline" and not self.texts:
            raise ValueError("prompts.source 'inline' needs prompts.texts (a list of prompts)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"prompts.seeds has duplicates: {self.seeds}")
        return self


class ModelSpec(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    type: str
    args: dict[str, Any] = Field(default_factory=dict)
    sampler: dict[str, Any] = Field(default_factory=dict, description="options passed to generate()")
    checkpoint: str | None = None
    batch_size: int = Field(1, ge=1, le=4096)


class MetricSpec(Strict):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    primary: bool = False
    margin: float | None = Field(None, ge=0, description="gate: the change that counts as a regression")
    models: list[str] | None = Field(None, description="score only these models (default: every model); "
                                     "for costs only some samplers report, e.g. Jacobi iterations")

    def applies_to(self, model: str) -> bool:
        return self.models is None or model in self.models


class ScoringSpec(Strict):
    reader: Literal[*READERS] = Field(
        "pyav", description="decoder for video files: pyav streams in bounded memory (the default); decord and "
        "torchcodec read by index ranges (torchcodec needs FFmpeg's shared libraries)")
    chunk_frames: int | None = Field(None, ge=1, le=4096, description="most frames per chunk fed to every metric "
                                     "(default 48); a chunk never holds more than 64 MiB of frames")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="torchcodec: where it decodes (auto: on the "
                                                   "GPU when CUDA is present)")


class ReferenceSpec(Strict):
    split: str = "test"
    start: int = Field(0, ge=0)
    count: int = Field(64, ge=2)


class GateSpec(Strict):
    baseline: str | None = None
    strict: bool = False
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    resamples: int = Field(1000, ge=100, le=100_000)


class ReportSpec(Strict):
    output: str | None = Field(None, description="also write the report here (always written into the run folder)")
    title: str | None = None
    baseline_model: str | None = None
    gallery: int = Field(4, ge=0, le=64)
    static_margin: float = Field(DEFAULT_STATIC_MARGIN, ge=0, lt=1, description="a model whose motion (a consistency metric's "
                                 "motion_counterpart, e.g. motion_magnitude) is more than this fraction below the real "
                                 "clips' is static: its 'better' consistency verdicts are not wins (report and gate)")


class AblationVariant(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    set: dict[str, Any] = Field(default_factory=dict)


class AblationMatrix(Strict):
    matrix: dict[str, list[Any]] = Field(min_length=1)


class Suite(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seeds every random choice the harness makes (bootstrap, shuffles)")
    data: DataSpec = Field(default_factory=DataSpec)
    fps: float | None = Field(None, gt=0, le=240, description="generation fps (default: data.fps)")
    clip_seconds: list[float] = Field(default_factory=lambda: [5.0], min_length=1)
    tasks: list[Task] = Field(default_factory=lambda: ["t2v"], min_length=1)
    v2v_frames: int = Field(9, ge=1, description="frames given to v2v continuation")
    prompts: PromptSpec = Field(default_factory=PromptSpec)
    models: list[ModelSpec] = Field(min_length=1)
    metrics: list[MetricSpec] = Field(min_length=1)
    reference: ReferenceSpec | None = None
    scoring: ScoringSpec = Field(default_factory=ScoringSpec)
    external_videos: Literal["reference", "copy", "hardlink"] = Field(
        "reference", description="video files a model hands back (folder models): reference them by absolute path "
        "and sha256, or copy / hardlink them into the run folder so the run stays whole if they move")
    gate: GateSpec = Field(default_factory=GateSpec)
    report: ReportSpec = Field(default_factory=ReportSpec)
    ablations: list[AblationVariant] | AblationMatrix | None = None

    @field_validator("clip_seconds")
    @classmethod
    def _positive_seconds(cls, seconds: list[float]) -> list[float]:
        for s in seconds:
            if not 0 < s <= 3600:
                raise ValueError(f"clip length must be in (0, 3600] seconds, got {s}")
        if len(set(seconds)) != len(seconds):
            raise ValueError(f"clip_seconds has repeated values: {seconds}")
        return seconds

    @field_validator("tasks")
    @classmethod
    def _distinct_tasks(cls, tasks: list[str]) -> list[str]:
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks has repeated values: {tasks}")
        return tasks

    @property
    def generation_fps(self) -> float:
        return self.fps if self.fps is not None else self.data.fps

    def prompt_count(self) -> int | None:
        if self.prompts.count is not None:
            return self.prompts.count
        return 8 if self.prompts.source == "data" else None


@dataclass(frozen=True)
class Problem:
    key: str
    message: str
    fix: str | None = None
    line: int | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        text = f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        return text + (f"\n    fix: {self.fix}" if self.fix else "")


class SuiteError(ConfigError):
    """One or more problems in a suite; rendered as one line (plus fix) each."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source, self.problems = source, problems
        lines = [p.render(source) for p in problems]
        super().__init__(f"{len(problems)} problem(s) in the suite\n  " + "\n  ".join(lines))


@dataclass(frozen=True)
class ResolvedSuite:
    """One runnable suite: ablations expanded, includes merged, validated."""

    suite: Suite
    path: Path
    variant: str | None

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def run_name(self) -> str:
        return f"{self.suite.name}.{self.variant}" if self.variant else self.suite.name

    def config(self) -> dict[str, Any]:
        return self.suite.model_dump(mode="json")

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()

    def resolve_path(self, relative: str) -> Path:
        """Paths in a suite are relative to the suite file's folder."""
        return resolve_relative(relative, self.directory)


# ---------------------------------------------------------------- YAML loading and line numbers

def _key_lines(node: yaml.Node, prefix: tuple = ()) -> dict[tuple, int]:
    """Map each key path (as pydantic locs: str keys, int list indices) to its 1-based line."""
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            loc = prefix + (key_node.value,)
            lines[loc] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, loc))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            loc = prefix + (i,)
            lines[loc] = item.start_mark.line + 1
            lines.update(_key_lines(item, loc))
    return lines


def _refuse_aliases(text: str, path: Path) -> None:
    """Suites may not use YAML aliases (``*name``): expanding nested aliases can take exponential
    time and memory (a "billion laughs" file), and ``include:`` already shares settings."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError(f"YAML aliases are not allowed in suites (*{event.anchor})",
                              where=f"{path}:{event.start_mark.line + 1}",
                              fix="write the value out, or move shared settings into a base suite and `include:` it")


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple, int]]:
    """A YAML mapping (UTF-8, no aliases) and its key lines; ConfigError naming the file otherwise."""
    if not path.is_file():
        raise ConfigError(f"suite file not found: {path}", fix="check the path; `vbf ls suites` lists the suites")
    text = read_utf8(path, "the suite")
    try:
        _refuse_aliases(text, path)
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", where=where) from None
    except RecursionError:
        raise ConfigError("the YAML is nested too deeply to read", where=str(path),
                          fix="a suite needs a few levels of nesting; check for runaway brackets") from None
    if not isinstance(data, dict):
        raise ConfigError("a suite must be a YAML mapping (key: value lines)", where=str(path))
    return data, _key_lines(node) if node is not None else {}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else in ``override`` replaces the base value."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_suite_dict(path: Path, _seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], dict[tuple, int]]:
    """The suite as a dict with its ``include:`` chain merged in, and the top file's key lines."""
    path = path.resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in _seen + (path,))
        raise ConfigError(f"include cycle: {chain}", where=str(_seen[0]))
    data, lines = read_yaml(path)
    include = data.pop("include", None)
    if include is None:
        return data, lines
    if not isinstance(include, str):
        raise ConfigError("include must be a path to a base suite", where=f"{path}:{lines.get(('include',), '?')}")
    base_path = (path.parent / include).resolve()
    if not base_path.is_file():
        raise ConfigError(f"included suite not found: {base_path}", where=f"{path}:{lines.get(('include',), '?')}: include")
    base, _ = read_suite_dict(base_path, _seen + (path,))
    return deep_merge(base, data), lines


# ---------------------------------------------------------------- ablations

def _step(node: Any, part: str, path: str) -> Any:
    if isinstance(node, list):
        for item in node:
            if isinstance(item, dict) and item.get("name") == part:
                return item
        names = [item.get("name") for item in node if isinstance(item, dict)]
        raise ConfigError(f"no entry named {part!r}{did_you_mean(part, [n for n in names if n])}", where=f"ablations: {path}")
    if isinstance(node, dict):
        return node.setdefault(part, {})
    raise ConfigError(f"cannot step into {part!r}: the value there is not a mapping or list", where=f"ablations: {path}")


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at a dotted ``path`` (list entries are addressed by their ``name``)."""
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = _step(node, part, path)
    if not isinstance(node, dict):
        raise ConfigError(f"cannot set {last!r}: its parent is not a mapping", where=f"ablations: {path}")
    node[last] = value


def _format_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def expand_ablations(raw: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """(variant name, suite dict) for each run the suite expands into."""
    ablations = raw.get("ablations")
    if not ablations:
        return [(None, raw)]
    base = {k: v for k, v in raw.items() if k != "ablations"}
    if isinstance(ablations, dict) and isinstance(ablations.get("matrix"), dict):
        keys = list(ablations["matrix"])
        if any(not isinstance(ablations["matrix"][k], list) or not ablations["matrix"][k] for k in keys):
            raise ConfigError("every ablations.matrix entry must be a non-empty list of values", where="ablations.matrix")
        variants = []
        for values in itertools.product(*(ablations["matrix"][k] for k in keys)):
            name = ",".join(f"{k.split('.')[-1]}={_format_value(v)}" for k, v in zip(keys, values))
            variants.append((name, dict(zip(keys, values))))
    elif isinstance(ablations, list):
        variants = [(v.get("name"), v.get("set") or {}) for v in ablations if isinstance(v, dict)]
    else:
        return [(None, raw)]  # schema validation reports the malformed block
    out = []
    for name, overrides in variants:
        doc = copy.deepcopy(base)
        for path, value in overrides.items():
            set_path(doc, path, value)
        out.append((name, doc))
    return out


# ---------------------------------------------------------------- pydantic errors -> problems

def _loc_to_key(loc: tuple) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _model_at(loc: tuple, root: type[BaseModel] = Suite) -> list[type[BaseModel]]:
    """The pydantic model classes that could sit at ``loc`` (for 'did you mean' on unknown keys)."""
    candidates: list[Any] = [root]
    for part in loc:
        nxt: list[Any] = []
        for cand in candidates:
            if isinstance(part, int):
                nxt.extend(typing.get_args(cand) or [])
            elif isinstance(cand, type) and issubclass(cand, BaseModel) and part in cand.model_fields:
                nxt.append(cand.model_fields[part].annotation)
        flat: list[Any] = []
        for cand in nxt:
            args = typing.get_args(cand)
            flat.extend(args if args else [cand])
        candidates = flat
    return [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]


def _problem_from_error(err: dict[str, Any], lines: dict[tuple, int], prefix: tuple = (),
                        args_model: type[BaseModel] | None = None) -> Problem:
    # drop pydantic's union-member tags ('list[AblationVariant]', 'AblationMatrix', 'function-...')
    loc = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p[:1].isupper() or p.startswith("function-"))))
    key, kind = _loc_to_key(loc), err["type"]
    line = lines.get(loc) or lines.get(loc[:-1])
    if kind == "extra_forbidden":
        parent = [args_model] if args_model is not None else _model_at(loc[len(prefix):-1] if prefix else loc[:-1])
        known = sorted({f for model in parent for f in model.model_fields})
        hint = did_you_mean(str(loc[-1]), known) if known else ""
        return Problem(key, f"unknown key {loc[-1]!r}{hint}", line=line)
    if kind == "missing":
        return Problem(key, "required key is missing", line=lines.get(loc[:-1]))
    message = err["msg"].removeprefix("Value error, ")
    if kind not in ("value_error",) and "input" in err and not isinstance(err["input"], (dict, list)):
        message += f" (got {err['input']!r})"
    if kind == "literal_error" and isinstance(err.get("input"), str):
        expected = err.get("ctx", {}).get("expected", "")
        options = [o.strip(" '") for o in expected.replace(" or ", ",").split(",") if o.strip(" '")]
        close = did_you_mean(err["input"], options)
        if close.startswith(" —"):
            message += close
    return Problem(key, message, line=line)


def _validate_args(model: type[BaseModel], args: dict[str, Any], prefix: tuple, lines: dict[tuple, int]) -> list[Problem]:
    try:
        model.model_validate(args)
    except ValidationError as exc:
        return [_problem_from_error(e, lines, prefix, args_model=model) for e in exc.errors()]
    return []


# ---------------------------------------------------------------- semantic checks

def _check_models(suite: Suite, lines: dict[tuple, int], resolved: ResolvedSuite, data_source: Any) -> list[Problem]:
    from vbench_flow.registry import BuildContext

    problems: list[Problem] = []
    seen: set[str] = set()
    types = model_types()
    for i, spec in enumerate(suite.models):
        loc = ("models", i)
        if spec.name in seen:
            problems.append(Problem(_loc_to_key(loc + ("name",)), f"duplicate model name {spec.name!r}", line=lines.get(loc + ("name",))))
        seen.add(spec.name)
        if spec.type not in types:
            problems.append(Problem(_loc_to_key(loc + ("type",)), f"unknown model type {spec.type!r}{did_you_mean(spec.type, types)}",
                                    fix="`vbf ls models` lists the model types", line=lines.get(loc + ("type",))))
            continue
        entry = get_model_type(spec.type)
        arg_problems = _validate_args(entry.args_model, spec.args, loc + ("args",), lines)
        problems += arg_problems
        sampler_model = getattr(entry, "sampler_model", None)
        if sampler_model is not None:
            problems += _validate_args(sampler_model, spec.sampler, loc + ("sampler",), lines)
        elif spec.sampler:
            problems.append(Problem(_loc_to_key(loc + ("sampler",)), f"model type {spec.type!r} takes no sampler options",
                                    line=lines.get(loc + ("sampler",))))
        if entry.needs_data_prompts and suite.prompts.source != "data":
            problems.append(Problem(_loc_to_key(loc + ("type",)),
                                    f"model type {spec.type!r} returns data-set clips, so prompts must come from the data set",
                                    fix="set prompts.source: data", line=lines.get(loc + ("type",))))
        if entry.check is not None and not arg_problems and data_source is not None:
            ctx = BuildContext(spec.name, resolved.directory, data_source, spec.checkpoint)
            for message in entry.check(entry.args_model.model_validate(spec.args), ctx):
                problems.append(Problem(_loc_to_key(loc), message, line=lines.get(loc)))
    return problems


def _check_metrics(suite: Suite, lines: dict[tuple, int], check_files: bool = True) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    known = metric_types()
    for i, spec in enumerate(suite.metrics):
        loc = ("metrics", i)
        if spec.name in seen:
            problems.append(Problem(_loc_to_key(loc + ("name",)), f"duplicate metric {spec.name!r}", line=lines.get(loc + ("name",))))
        seen.add(spec.name)
        if spec.name not in known:
            problems.append(Problem(_loc_to_key(loc + ("name",)), f"unknown metric {spec.name!r}{did_you_mean(spec.name, known)}",
                                    fix="`vbf ls metrics` lists the metrics", line=lines.get(loc + ("name",))))
            continue
        entry = get_metric(spec.name)
        arg_problems = _validate_args(entry.args_model, spec.args, loc + ("args",), lines)
        problems += arg_problems
        if check_files and not arg_problems:
            for missing in entry.missing_files(entry.args_model.model_validate(spec.args or {})):
                problems.append(Problem(_loc_to_key(loc + ("args",)), missing, line=lines.get(loc + ("name",))))
        model_names = [m.name for m in suite.models]
        for j, name in enumerate(spec.models or []):
            if name not in model_names:
                problems.append(Problem(_loc_to_key(loc + ("models", j)), f"metric {spec.name!r} names model {name!r}, "
                                        f"which the suite does not have{did_you_mean(name, model_names)}",
                                        line=lines.get(loc + ("models", j))))
        if entry.set_level:
            problems += _check_set_metric(suite, spec.name, loc, lines)
        if entry.needs_ground_truth and suite.prompts.source != "data":
            problems.append(Problem(_loc_to_key(loc + ("name",)), f"metric {spec.name!r} compares with ground truth, so prompts must come from the data set",
                                    fix="set prompts.source: data", line=lines.get(loc + ("name",))))
    return problems


def _check_scoring(suite: Suite, lines: dict[tuple, int]) -> list[Problem]:
    """An optional reader that cannot load here is a problem before any compute."""
    if suite.scoring.reader != "torchcodec":
        return []
    from vbench_flow.video_io import torchcodec_decoder

    try:
        torchcodec_decoder()
    except ConfigError as exc:
        return [Problem("scoring.reader", exc.what, fix=exc.fix, line=lines.get(("scoring", "reader")))]
    return []


def _check_set_metric(suite: Suite, name: str, loc: tuple, lines: dict[tuple, int]) -> list[Problem]:
    """A set-level metric (FVD) needs real reference clips and at least two clips per group."""
    problems = []
    if suite.reference is None:
        problems.append(Problem(_loc_to_key(loc + ("name",)), f"metric {name!r} compares the generated set with real clips, "
                                "but the suite has no reference: block",
                                fix="add e.g. reference: {split: val, count: 256} (a split the prompts do not use)",
                                line=lines.get(loc + ("name",))))
    per_group = (suite.prompt_count() or len(suite.prompts.texts or [])) * len(suite.prompts.seeds)
    if suite.prompt_count() is not None and per_group < 2:
        problems.append(Problem("prompts.count", f"metric {name!r} needs at least 2 clips per model, task and clip "
                                f"length; the suite plans {per_group}", fix="raise prompts.count or add seeds",
                                line=lines.get(("prompts", "count"))))
    return problems


def open_data_source(suite: Suite, directory: Path) -> Any:
    from vbench_flow.data.source import FolderSource, ShapesSource

    if suite.data.type == "shapes":
        return ShapesSource(size=suite.data.size or 64, fps=suite.data.fps, max_objects=suite.data.max_objects)
    root = resolve_relative(suite.data.root, directory) if suite.data.root else None
    return FolderSource(resolve_relative(suite.data.manifest or "", directory), root, size=suite.data.size,
                        allow_outside_root=suite.data.allow_outside_root)


def _check_data_and_prompts(suite: Suite, lines: dict[tuple, int], resolved: ResolvedSuite) -> tuple[list[Problem], Any]:
    problems: list[Problem] = []
    data_source = None
    if suite.data.type == "folder":
        manifest = resolved.resolve_path(suite.data.manifest or "")
        if not manifest.is_file():
            return [Problem("data.manifest", f"file not found: {manifest}", line=lines.get(("data", "manifest")))], None
    try:
        data_source = open_data_source(suite, resolved.directory)
    except ConfigError as exc:
        return [Problem("data", exc.render(), line=lines.get(("data",)))], None
    if suite.data.type == "folder":
        missing = data_source.folder.missing_videos()
        if missing:
            from vbench_flow.data.folder import missing_files_message

            problems.append(Problem("data.manifest", missing_files_message(missing), line=lines.get(("data", "manifest"))))
    splits_used = []
    if suite.prompts.source == "data":
        splits_used.append(("prompts", suite.prompts.split, suite.prompts.start, suite.prompt_count()))
    if suite.reference is not None:
        splits_used.append(("reference", suite.reference.split, suite.reference.start, suite.reference.count))
    for block, split, start, count in splits_used:
        if split not in data_source.splits():
            problems.append(Problem(f"{block}.split", f"unknown split {split!r}{did_you_mean(split, data_source.splits())}",
                                    line=lines.get((block, "split"))))
        elif start + count > data_source.split_size(split):
            problems.append(Problem(f"{block}.count", f"start {start} + count {count} exceeds the {data_source.split_size(split)} "
                                    f"items of split {split!r}", fix="lower count or start", line=lines.get((block, "count"))))
    if suite.prompts.source != "data" or not problems:
        try:
            plan_units(suite, load_prompts(suite, data_source, resolved.directory))
        except ConfigError as exc:
            key = exc.where or "prompts"
            problems.append(Problem(key, exc.what, fix=exc.fix, line=lines.get(tuple(key.split(".")))))
    if suite.prompts.source != "data" and any(t != "t2v" for t in suite.tasks):
        problems.append(Problem("tasks", "i2v and v2v take their first frames from ground-truth clips, so prompts must come from the data set",
                                fix="set prompts.source: data, or use tasks: [t2v]", line=lines.get(("tasks",))))
    return problems, data_source


def _check_cross_references(suite: Suite, lines: dict[tuple, int]) -> list[Problem]:
    problems = []
    names = [m.name for m in suite.models]
    if suite.report.baseline_model and suite.report.baseline_model not in names:
        problems.append(Problem("report.baseline_model", f"no model named {suite.report.baseline_model!r}{did_you_mean(suite.report.baseline_model, names)}",
                                line=lines.get(("report", "baseline_model"))))
    fps = suite.generation_fps
    shortest = min(num_frames_for(s, fps) for s in suite.clip_seconds)
    if shortest < 2:
        problems.append(Problem("clip_seconds", f"{min(suite.clip_seconds):g} s at {fps:g} fps is a single frame; "
                                "metrics over time need at least 2", line=lines.get(("clip_seconds",))))
    known = metric_types()
    for i, spec in enumerate(suite.metrics):
        needed = known[spec.name].min_frames if spec.name in known else 2
        if needed > 2 and shortest < needed:
            problems.append(Problem("clip_seconds", f"metric {spec.name!r} needs clips of at least {needed} frames; "
                                    f"{min(suite.clip_seconds):g} s at {fps:g} fps gives {shortest}",
                                    fix=f"use clips of at least {needed / fps:g} s", line=lines.get(("metrics", i, "name"))))
    if "v2v" in suite.tasks:
        if suite.v2v_frames >= shortest:
            problems.append(Problem("v2v_frames", f"v2v gives {suite.v2v_frames} frames but the shortest clip has only {shortest}",
                                    line=lines.get(("v2v_frames",))))
    return problems


def validate_resolved(resolved: ResolvedSuite, lines: dict[tuple, int], *, check_files: bool = True) -> list[Problem]:
    suite = resolved.suite
    problems, data_source = _check_data_and_prompts(suite, lines, resolved) if check_files else ([], None)
    problems += _check_models(suite, lines, resolved, data_source)
    problems += _check_metrics(suite, lines, check_files)
    problems += _check_scoring(suite, lines)
    problems += _check_cross_references(suite, lines)
    return problems


def _raw_name_checks(raw: dict[str, Any], lines: dict[tuple, int]) -> list[Problem]:
    """Unknown metric and model-type names, checked on the raw YAML when the schema fails."""
    problems = []
    for block, field, known, noun in (("metrics", "name", metric_types(), "metric"), ("models", "type", model_types(), "model type")):
        items = raw.get(block)
        for i, item in enumerate(items if isinstance(items, list) else []):
            name = item.get(field) if isinstance(item, dict) else None
            if isinstance(name, str) and name not in known:
                loc = (block, i, field)
                problems.append(Problem(_loc_to_key(loc), f"unknown {noun} {name!r}{did_you_mean(name, known)}",
                                        fix=f"`vbf ls {block}` lists them", line=lines.get(loc)))
    return problems


def _parse(doc: dict[str, Any], lines: dict[tuple, int]) -> tuple[Suite | None, list[Problem]]:
    try:
        return Suite.model_validate(doc), []
    except ValidationError as exc:
        return None, [_problem_from_error(e, lines) for e in exc.errors()]


def validate_suite(path: str | Path, *, check_files: bool = True) -> tuple[list[ResolvedSuite], list[Problem]]:
    """Every problem in the suite (all ablation variants), before any compute."""
    path = Path(path)
    raw, lines = read_suite_dict(path)
    base, problems = _parse(raw, lines)
    if problems:  # still name misspelt metrics and model types, so one pass shows everything
        return [], _dedupe(problems + _raw_name_checks(raw, lines))
    resolved: list[ResolvedSuite] = []
    seen: dict[str, str] = {}
    try:
        variants = expand_ablations(raw)
    except ConfigError as exc:
        return [], [Problem(exc.where or "ablations", exc.what, exc.fix, lines.get(("ablations",)))]
    for variant, doc in variants:
        suite, variant_problems = _parse({k: v for k, v in doc.items() if k != "ablations"}, lines)
        tag = f"ablation {variant!r}: " if variant else ""
        if suite is None:
            problems += [Problem(p.key, tag + p.message, p.fix, p.line) for p in variant_problems]
            continue
        item = ResolvedSuite(suite, path, variant)
        if item.run_name in seen:
            problems.append(Problem("ablations", f"two variants are both named {variant!r}"))
        seen[item.run_name] = variant or ""
        problems += [Problem(p.key, tag + p.message, p.fix, p.line) for p in validate_resolved(item, lines, check_files=check_files)]
        resolved.append(item)
    return resolved, _dedupe(problems)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    out, seen = [], set()
    for p in problems:
        if (p.key, p.message) not in seen:
            seen.add((p.key, p.message))
            out.append(p)
    return out


def load_suite(path: str | Path, *, check_files: bool = True) -> list[ResolvedSuite]:
    """The runnable suites (one per ablation variant), or a :class:`SuiteError` listing every problem."""
    resolved, problems = validate_suite(path, check_files=check_files)
    if problems:
        raise SuiteError(str(path), problems)
    return resolved


def task_condition_frames(suite: Suite, task: str) -> int:
    """How many ground-truth frames a task hands the generator."""
    assert task in TASKS
    return {"t2v": 0, "i2v": 1, "v2v": suite.v2v_frames}[task]
