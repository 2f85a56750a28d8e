"""Prompts and units: what a suite asks to generate.

Prompts come from the data world (with ground truth), a file (.txt, one per line; .jsonl with
``text`` and optional ``id``) or inline text. A unit is one (model, task, clip length, prompt,
seed); unit ids are unique within a run, which the planner checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vbench_flow.errors import ConfigError, read_utf8
from vbench_flow.protocol import Prompt


@dataclass(frozen=True)
class Unit:
    model: str
    task: str
    clip_seconds: float
    prompt: Prompt
    seed: int

    @property
    def unit_id(self) -> str:
        return f"{self.model}/{self.task}/{self.clip_seconds:g}s/{self.prompt.id}/seed{self.seed}"


def resolve_relative(path: str, base: Path) -> Path:
    """A suite's paths are relative to the suite file's folder; ``~`` and absolute paths are kept."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base / candidate


def _read_prompt_file(path: Path) -> list[tuple[str | None, str]]:
    if path.suffix == ".jsonl":
        out = []
        for number, line in enumerate(read_utf8(path, "the prompts file").splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                text = item["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ConfigError("each line needs a JSON object with a 'text' field (and optionally 'id')",
                                  where=f"{path}:{number}") from None
            if not isinstance(text, str) or not text.strip():
                raise ConfigError("'text' must be a non-empty string", where=f"{path}:{number}")
            out.append((None if item.get("id") is None else str(item["id"]), text))
        return out
    return [(None, line.strip()) for line in read_utf8(path, "the prompts file").splitlines() if line.strip() and not line.lstrip().startswith("#")]


def load_prompts(suite: Any, data: Any, suite_dir: Path) -> list[Prompt]:
    """The suite's prompts, in order, with stable ids; raises ConfigError naming the problem."""
    spec = suite.prompts
    if spec.source == "data":
        return data.prompts(spec.split, spec.start, suite.prompt_count())
    if spec.source == "file":
        path = resolve_relative(spec.file or "", suite_dir)
        if not path.is_file():
            raise ConfigError(f"file not found: {path}", where="prompts.file")
        items = _read_prompt_file(path)
    else:
        items = [(None, text) for text in spec.texts or []]
    count = suite.prompt_count() or len(items)
    selected = items[spec.start:spec.start + count]
    if not selected:
        raise ConfigError(f"no prompts selected (start {spec.start}, count {count}, {len(items)} available)", where="prompts")
    prompts = [Prompt(text, pid or f"{spec.source}-{spec.start + i:04d}", {"source": spec.source})
               for i, (pid, text) in enumerate(selected)]
    seen: set[str] = set()
    for prompt in prompts:
        if prompt.id in seen:
            raise ConfigError(f"prompt id {prompt.id!r} occurs twice", where="prompts", fix="give every prompt its own id")
        seen.add(prompt.id)
    return prompts


def plan_units(suite: Any, prompts: list[Prompt]) -> list[Unit]:
    """Every unit, ordered so that units sharing (model, task, clip length, seed) sit together:
    that is what a generator can batch."""
    units = [Unit(m.name, task, float(seconds), prompt, seed)
             for m in suite.models for task in suite.tasks for seconds in suite.clip_seconds
             for seed in suite.prompts.seeds for prompt in prompts]
    ids = [u.unit_id for u in units]
    if len(set(ids)) != len(ids):
        raise ConfigError("the suite plans the same unit twice", where="tasks / clip_seconds / prompts",
                          fix="remove repeated tasks, clip lengths or prompt ids")
    return units
