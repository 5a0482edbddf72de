"""What a call leaves behind (turns, handoffs, outcome, anomaly flags) and how its outcome counts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "ESCALATED_OUTCOMES",
    "SUCCESS_OUTCOMES",
    "AnomalyFlag",
    "CallResult",
    "TurnRecord",
    "human_lines",
    "is_first_contact_resolution",
    "is_success",
    "outcome_of",
    "segments_of",
]


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
    if state.get("outcome") in ESCALATED_OUTCOMES:
        return str(state["outcome"])
    return "resolved" if state.get("resolutions") else "abandoned"


# Handed to a person: waiting for one from the console (escalated), or transferred to the desk by SIP.
ESCALATED_OUTCOMES = frozenset({"escalated", "transferred"})
# handled_by_human: a supervisor took the call over and saw it through; the caller got help.
SUCCESS_OUTCOMES = frozenset({"resolved", "handled_by_human", *ESCALATED_OUTCOMES})


def is_success(outcome: str, errors: Iterable[str] = ()) -> bool:
    """A call succeeded when it was resolved or properly handed to a human, with no error on our side.

    Escalation counts as success: the caller reached someone who can help. Abandoned calls, calls
    that hit an error, and dead-lettered calls are failures.
    """
    return outcome in SUCCESS_OUTCOMES and not list(errors)


def is_first_contact_resolution(outcome: str, resolutions: Iterable[str]) -> bool:
    """Resolved in this call without a human (the caller will not need to call back)."""
    return outcome == "resolved" and bool(list(resolutions))


def segments_of(agent_names: Sequence[str]) -> list[str]:
    """The handoff segment of each turn: `router`, then `router>billing`, `billing>scheduling`…

    A segment starts whenever the agent that answered changes, and is named by that change.
    """
    out: list[str] = []
    previous = "router"
    label = "router"
    for agent in agent_names:
        if agent != previous:
            label = f"{previous}>{agent}"
            previous = agent
        out.append(label)
    return out


@dataclass(frozen=True)
class AnomalyFlag:
    """One anomaly in one call, with the reason in words a reviewer can check.

    Attributes:
        call_id: The call.
        kind: One of `orchestrator.telemetry.anomaly.KINDS`.
        why: What was seen and against which threshold (redacted: no caller PII).
        turn: 1-based turn it points at, when it is about one turn.
        score: The measure that crossed the threshold, when there is one.
    """

    call_id: str
    kind: str
    why: str
    turn: int | None = None
    score: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "kind": self.kind, "why": self.why}
