"""What a call leaves behind: its turns, handoffs and outcome, which the store, telemetry and console read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CallResult", "TurnRecord", "human_lines", "outcome_of"]


@dataclass
class TurnRecord:
    """One caller turn and the agent's answer, as the `call --json` output shows it."""

    caller: str
    agent: str
    agent_name: str
    intent: str | None
    confidence: float | None
    latency_ms: float
    graph_ms: float

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("graph_ms")
        return data


@dataclass
class CallResult:
    """The whole call: turns, handoffs, outcome, and what the supervisor and tools did."""

    call_id: str
    turns: list[TurnRecord] = field(default_factory=list)
    handoffs: list[dict[str, Any]] = field(default_factory=list)
    outcome: str = "abandoned"
    escalation_reason: str | None = None
    ticket_id: str | None = None
    tool_events: list[dict[str, Any]] = field(default_factory=list)
    interventions: list[dict[str, Any]] = field(default_factory=list)
    resolutions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # What people (supervisors) said on the call: {"turn", "agent": username, "text"}, turn = caller turns before.
    human_lines: list[dict[str, Any]] = field(default_factory=list)
    # The caller's number as the source gave it, and the account they were verified on (None if not verified).
    caller_id: str | None = None
    account_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "turns": [t.public() for t in self.turns],
            "handoffs": self.handoffs,
            "outcome": self.outcome,
            "escalation_reason": self.escalation_reason,
        }


def human_lines(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The lines people said on the call, each with who said it and the caller turns before it."""
    lines: list[dict[str, Any]] = []
    turn = 0
    for line in state.get("transcript", []):
        if line.get("role") == "caller":
            turn += 1
        elif line.get("role") == "human":
            lines.append({"turn": turn, "agent": str(line.get("agent", "")), "text": str(line.get("text", ""))})
    return lines


def outcome_of(state: dict[str, Any]) -> str:
    took_over = any(
        i.get("kind") == "take_over" and i.get("reason") == "supervisor" for i in state.get("interventions", [])
    )
    if state.get("human_agent") and took_over:
        # A supervisor took the call off the AI and still had it at the end: neither the AI's win nor a handover.
        return "handled_by_human"
    if state.get("outcome") == "escalated":
        return "escalated"
    return "resolved" if state.get("resolutions") else "abandoned"
