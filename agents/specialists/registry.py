"""The specialists a call can be handed to, each a small typed record the graph wires as a node."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agents.specialists import billing, scheduling, support
from agents.specialists.base import FlowFn
from agents.state import Task


@dataclass(frozen=True)
class Specialist:
    """A specialist agent: its name (the graph node's and the LLM prompt's), and its deterministic flow.

    Attributes:
        name: Node name and agent name, e.g. ``"billing"``.
        start: Opens the specialist's task from the caller's words.
        flow: One deterministic turn of the task (used without an LLM, and when the LLM is unavailable).
        needs_verification: Whether the task acts on an account, so the caller must be verified first.
    """

    name: str
    start: Callable[[str], Task]
    flow: FlowFn
    needs_verification: Callable[[Task], bool]


SPECIALISTS: tuple[Specialist, ...] = tuple(
    Specialist(module.AGENT, module.start, module.flow, module.needs_verification)
    for module in (scheduling, billing, support)
)
