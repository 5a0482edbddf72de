"""Prompt files: system prompts per agent and templated replies, loaded once per prompts folder."""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml


class PromptError(ValueError):
    """A prompt file is missing, malformed, or a template names a field nobody gave."""


@dataclass(frozen=True)
class Prompts:
    """One version of the prompts folder: `<agent>.md` system prompts and `replies.yaml` templates."""

    root: Path
    replies: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> Prompts:
        return _load(root.resolve())

    def reply(self, key: str, /, **values: Any) -> str:
        """Render the reply template `key` ("scheduling.offer") with `values`."""
        try:
            template = self.replies[key]
        except KeyError:
            raise PromptError(f"{self.root / 'replies.yaml'}: no reply named {key!r}") from None
        try:
            return template.format(**values).strip()
        except (KeyError, IndexError) as exc:
            raise PromptError(f"{self.root / 'replies.yaml'}: reply {key!r} needs field {exc}") from None

    def system(self, agent: str) -> str:
        """The system prompt of `agent` for LLM mode (`prompts/<agent>.md`)."""
        path = self.root / f"{agent}.md"
        if not path.is_file():
            raise PromptError(f"missing prompt file {path}")
        return path.read_text(encoding="utf-8").strip()

    def phrases(self) -> list[str]:
        """Phrases worth pre-rendering for the voice cache: every template without fields, plus phrases.txt."""
        fixed = [t.strip() for t in self.replies.values() if not _fields(t)]
        extra_path = self.root / "phrases.txt"
        extra = []
        if extra_path.is_file():
            extra = [ln.strip() for ln in extra_path.read_text(encoding="utf-8").splitlines()]
            extra = [ln for ln in extra if ln and not ln.startswith("#")]
        return list(dict.fromkeys(fixed + extra))


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def check_prompts(root: Path, reference: Path) -> None:
    """Check a prompts folder against the one the code was written for, before anything runs on it.

    Every reply the reference has must exist and render: a template may only use the fields the reference's
    template of the same name uses (those are the values the code passes), and every system prompt file of
    the reference must exist.

    Raises:
        PromptError: The first problem, naming the file, the line and the reply or field.
    """
    # Read the files as they are now (Prompts.load caches a folder for the process's life).
    candidate, known = _load.__wrapped__(root.resolve()), _load.__wrapped__(reference.resolve())
    path = candidate.root / "replies.yaml"
    lines = _reply_lines(path)
    for key, template in candidate.replies.items():
        where = f"{path}:{lines.get(key, 1)}"
        try:
            used = _fields(template)
        except ValueError as exc:
            raise PromptError(f"{where}: reply {key!r} is not a valid template ({exc})") from None
        allowed = _fields(known.replies[key]) if key in known.replies else set()
        unknown = sorted(used - allowed)
        if unknown:
            fields = ", ".join(f"{{{name}}}" for name in unknown)
            offer = ", ".join(f"{{{name}}}" for name in sorted(allowed)) or "none"
            raise PromptError(f"{where}: reply {key!r} uses unknown field {fields} (it may use: {offer})")
    for key in known.replies:
        if key not in candidate.replies:
            raise PromptError(f"{path}: no reply named {key!r} (the agents use it)")
    for agent_file in sorted(known.root.glob("*.md")):
        if not (candidate.root / agent_file.name).is_file():
            raise PromptError(f"missing prompt file {candidate.root / agent_file.name}")


def _reply_lines(path: Path) -> dict[str, int]:
    """The 1-based line of each reply's template in replies.yaml, for messages that point at it."""
    found: dict[str, int] = {}

    def walk(prefix: str, node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value in node.value:
                walk(f"{prefix}.{key_node.value}" if prefix else str(key_node.value), value)
        else:
            found[prefix] = node.start_mark.line + 1

    root = yaml.compose(path.read_text(encoding="utf-8"))
    if root is not None:
        walk("", root)
    return found


def _flatten(prefix: str, node: Any, out: dict[str, str], path: Path) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out, path)
    elif isinstance(node, str):
        out[prefix] = node
    else:
        raise PromptError(f"{path}: {prefix!r} must be a string or a mapping, not {type(node).__name__}")


@lru_cache(maxsize=16)
def _load(root: Path) -> Prompts:
    path = root / "replies.yaml"
    if not path.is_file():
        raise PromptError(f"missing prompt file {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PromptError(f"{path}: not valid YAML: {exc}") from exc
    replies: dict[str, str] = {}
    _flatten("", raw or {}, replies, path)
    return Prompts(root=root, replies=replies)
