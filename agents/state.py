"""The call's state: what the graph remembers between turns, checkpointed per call (thread_id = call id)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, NotRequired, TypedDict

AgentName = Literal["router", "scheduling", "billing", "support", "escalation", "human"]
SPECIALISTS: tuple[AgentName, ...] = ("scheduling", "billing", "support", "escalation")
# handled_by_human: a supervisor took the call off the AI and still had it when it ended; transferred: an escalated
# phone call the human desk took by SIP (a warm transfer).
Outcome = Literal["resolved", "escalated", "abandoned", "handled_by_human", "transferred"]
# A turn the supervisor (or the router) answers itself, with no specialist: see `supervisor.canned`.
Directive = Literal[
    "respond", "reprompt", "repeat", "why", "language", "greet", "close", "more", "more_or_done", "hold", "human"
]


class Turn(TypedDict):
    """One line of the transcript."""

    role: Literal["caller", "agent", "human"]
    agent: str
    text: str
    # The caller cut this reply off by speaking over it: `text` is what they heard of it.
    interrupted: NotRequired[bool]
    # The last reply said again at the caller's request ("sorry, could you repeat that?"): not a reply of its own.
    repeated: NotRequired[bool]


class ReplyCut(TypedDict):
    """What the caller heard of the previous turn's reply before cutting it off (the voice session's report)."""

    said: str  # the reply as the graph streamed it
    heard: str  # the part the caller heard ("" if none)


class Handoff(TypedDict):
    """A change of who handles the call, with why and what the receiver was told."""

    turn: int
    from_agent: str
    to_agent: str
    reason: str
    context: str


class ToolEvent(TypedDict):
    """A tool call made on the caller's behalf (arguments are the ones actually used)."""

    turn: int
    agent: str
    name: str
    args: dict[str, Any]
    ok: bool
    result: str


class Intervention(TypedDict):
    """A supervisor decision that changed the course of the call."""

    turn: int
    kind: Literal["escalate", "reroute", "correct_reply", "whisper", "take_over", "warn"]
    reason: str
    detail: str


class Verification(TypedDict):
    """Who the caller is. Tools act only on `account_id` once `status` is verified."""

    status: Literal["unverified", "verified", "failed"]
    account_id: str | None
    name: str | None
    attempts: int
    # What the verification dialogue is waiting for, if anything.
    awaiting: Literal["phone", "zip", ""]
    # Times the caller was told what verification needs after saying something else: no attempt, no progress.
    reminders: NotRequired[int]
    # The number whose account the caller claims (caller ID or spoken); `account_id` is set only once verified.
    phone: NotRequired[str | None]
    # Failed because the caller ID or the account is locked after too many failures across calls.
    locked: NotRequired[bool]
    # The account number or the name the caller claims instead of a phone number (at most one claim is set).
    account_claim: NotRequired[str | None]
    name_claim: NotRequired[str | None]
    # The reply key of the last failed attempt, so the next retry is worded differently.
    last_retry: NotRequired[str]


class Task(TypedDict, total=False):
    """A specialist's slot-filling progress; the shape of `slots` is the specialist's own."""

    name: str
    agent: str
    awaiting: str
    slots: dict[str, Any]


def replace_value(_old: Any, new: Any) -> Any:
    return new


class CallState(TypedDict, total=False):
    """State of one call. List fields accumulate across turns; the rest are replaced."""

    call_id: str
    caller_id: str | None
    # This turn's input: what the caller just said.
    utterance: str
    # A new request said after an answer to the pending question ("no wait, what's my balance?"): its words
    # and the specialist it is for, set by the router for this turn only.
    followup: str
    followup_intent: str
    turn: int
    transcript: Annotated[list[Turn], operator.add]
    intent: str | None
    confidence: float
    active: AgentName
    task: Task
    verification: Verification
    handoffs: Annotated[list[Handoff], operator.add]
    tool_events: Annotated[list[ToolEvent], operator.add]
    interventions: Annotated[list[Intervention], operator.add]
    # Consecutive turns in which the agent could not make progress.
    failures: int
    # Caller frustration score, raised by the supervisor's cheap checks.
    frustration: int
    # This turn's reply, and whether a streaming specialist already spoke it.
    reply: str
    spoken: bool
    # Requests fulfilled so far ("billing:pay"), for first-call resolution.
    resolutions: Annotated[list[str], operator.add]
    outcome: Outcome | None
    # The conversation is over (the caller said goodbye, or a human took the call off the AI).
    ended: bool
    escalation_reason: str | None
    # The ZIP code of the service address the caller gave for an outage check, so a second question about the
    # outage ("when will it be fixed?") is answered without asking for it again.
    service_zip: str | None
    # Who the caller said they are before saying what they want ("hi, it's Aisha Khan, zip 11375"), so that
    # verification starts from it instead of asking for it again.
    introduced: str | None
    ticket_id: str | None
    # This turn's input from a voice session: the caller cut the previous reply off; `supervise` applies it.
    reply_cut: ReplyCut | None
    # A human supervisor's pending instruction (whisper, reroute, take over), consumed by `supervise`.
    override: dict[str, str] | None
    # Guidance whispered by a human supervisor that the next replies must follow.
    guidance: str | None
    # The person on the call once a human joined it (took it over, or accepted its escalation): the AI is silent.
    human_agent: str | None
    # This turn's routing, each set for the turn only (`supervise` clears them): the supervisor or the router
    # answers itself; a person should take the call, for this reason; another specialist takes the turn over.
    directive: Directive | None
    escalate_for: str | None
    handoff_to: str | None


def new_verification() -> Verification:
    return Verification(status="unverified", account_id=None, name=None, attempts=0, awaiting="")


def verification_of(state: CallState) -> Verification:
    """The call's verification record (a fresh one before the caller was asked anything)."""
    return state.get("verification") or new_verification()


# What a flow can be waiting for whose answer is a digit string: a phone (or account) number, a ZIP code.
DIGIT_ANSWERS = frozenset({"phone", "zip"})


def awaits_confirmation(state: CallState) -> bool:
    """Whether the caller's next words say yes or no to an effect the flow is about to have (a payment, a booking)."""
    return (state.get("task") or {}).get("awaiting") == "confirm"


def awaits_digits(state: CallState) -> bool:
    """Whether the caller's next words answer a question for digits (verification's, or the active task's)."""
    task = state.get("task") or {}
    return verification_of(state)["awaiting"] in DIGIT_ANSWERS or task.get("awaiting") in DIGIT_ANSWERS
