"""Escalation specialist: hands the call to a human with a summary, so the caller never repeats themselves."""

from __future__ import annotations

from typing import Any

from agents.context import AgentContext
from agents.ports import DomainError
from agents.state import CallState, Handoff, verification_of
from agents.tools import CallerTools

AGENT = "escalation"

# Lower is more urgent. Safety first, then fraud and legal exposure, then people who asked for a person.
PRIORITY = {"emergency": 0, "fraud": 1, "legal_threat": 1, "abuse": 2, "requested_human": 2, "frustration": 2}
REASON_TEXT = {
    "requested_human": "the caller asked for a person",
    "legal_threat": "the caller mentioned legal action",
    "emergency": "the caller reported a possible emergency",
    "fraud": "the caller reported fraud, theft or identity theft",
    "abuse": "the caller became abusive",
    "frustration": "the caller is frustrated",
    "repeated_failures": "the assistant could not understand the caller several times",
    "loop": "the conversation was going in circles",
    "verification_failed": "the caller could not be verified",
    "verification_locked": "verification is locked after repeated failures on this caller ID or account",
    "refund_over_policy": "a refund beyond what the assistant may approve",
    "complaint": "the caller has a complaint",
    "no_availability": "no technician slots were available",
    "supervisor": "a supervisor asked for it",
}


def summarize(state: CallState, reason: str) -> str:
    """A short, factual summary for the human who takes the call (no model call; deterministic)."""
    v = verification_of(state)
    who = (
        f"{v.get('name')} (verified, account {v.get('account_id')})"
        if v.get("status") == "verified"
        else "an unverified caller"
    )
    topics = [h["to_agent"] for h in state.get("handoffs", []) if h["to_agent"] not in {"escalation", "human"}]
    done = state.get("resolutions", [])
    caller_lines = [t["text"] for t in state.get("transcript", []) if t["role"] == "caller" and t["text"].strip()]
    parts = [f"Call from {who}."]
    if topics:
        parts.append("Topics: " + ", ".join(dict.fromkeys(topics)) + ".")
    if done:
        parts.append("Already handled: " + ", ".join(done) + ".")
    task = state.get("task") or {}
    if task.get("name"):
        parts.append(f"In progress: {task.get('agent', '')} {task['name']}.")
    parts.append(f"Escalated because {REASON_TEXT.get(reason, reason.replace('_', ' '))}.")
    if caller_lines:
        parts.append(f'Caller first said: "{caller_lines[0][:160]}"; last said: "{caller_lines[-1][:160]}".')
    return " ".join(parts)


async def escalate(ctx: AgentContext, state: CallState, reason: str) -> dict[str, Any]:
    """Open a ticket on the human desk and tell the caller what happens next."""
    tools = CallerTools(ctx, state, AGENT)
    summary = summarize(state, reason)
    priority = PRIORITY.get(reason, 3)
    v = verification_of(state)
    if v.get("status") == "verified" and v.get("account_id"):
        try:
            if (await ctx.tenant.customers.get(str(v["account_id"]))).vip:
                priority = min(priority, 1)
        except DomainError:
            pass
    ticket_id: str | None
    try:
        ticket_id = await tools.open_ticket(reason, summary, priority)
    except DomainError:
        ticket_id = None
    key = "escalation.emergency" if reason == "emergency" else "escalation.transfer"
    previous = state.get("active", "router")
    return {
        "reply": ctx.prompts.reply(key),
        "active": "human",
        "task": {},
        "outcome": "escalated",
        "escalation_reason": reason,
        "ticket_id": ticket_id,
        "tool_events": tools.events,
        "directive": None,
        "handoffs": [
            Handoff(turn=state.get("turn", 0), from_agent=previous, to_agent="human", reason=reason, context=summary)
        ],
    }
