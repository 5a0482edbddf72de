"""Escalation specialist: hands the call to a human with a summary, so the caller never repeats themselves."""

from __future__ import annotations

from typing import Any

from langchain_core.exceptions import ModelAPIError, ModelConnectionError
from langchain_core.messages import HumanMessage, SystemMessage

from agents.context import AgentContext
from agents.ports import DomainError
from agents.prompts import PromptError
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
    "account_change": "a change to the payment method, autopay or plan, which the assistant cannot make",
    "cancellation": "the caller wants to cancel their service",
    "no_availability": "no technician slots were available",
    "supervisor": "a supervisor asked for it",
}


WANTS = {
    "billing": "help with a bill or a payment",
    "scheduling": "a technician visit booked, moved or cancelled",
    "support": "technical help (outage, router, account access)",
    "escalation": "to speak to a person",
}
# A handover note written by a model is kept to this many characters (it goes on a ticket, not a page).
MAX_SUMMARY_CHARS = 1200
# A model handover note reads at most this many transcript lines, the newest.
SUMMARY_LINES = 40
# What the escalation node asks of the caller's record: a failed model call never holds the transfer up.
_MODEL_FAILURES = (ModelAPIError, ModelConnectionError, PromptError, TimeoutError, ValueError)


def summarize(state: CallState, reason: str) -> str:
    """The handover note from the call's state and tool events alone (no model call; deterministic).

    Four fields, each stated, never quoted: why the call needs a person, who the caller is and whether they
    were verified, what the assistant did or tried (tools, hand-offs, what failed), and what the caller wants.
    """
    v = verification_of(state)
    if v.get("status") == "verified":
        who = f"{v.get('name')}, verified on account {v.get('account_id')}"
    elif v.get("status") == "failed":
        who = "not verified: " + (
            "locked after repeated failures" if v.get("locked") else f"{v.get('attempts', 0)} failed attempt(s)"
        )
    else:
        who = "not verified yet"
    tried: list[str] = []
    path = [h["to_agent"] for h in state.get("handoffs", []) if h["to_agent"] not in {"escalation", "human"}]
    if path:
        tried.append("handled by " + " then ".join(dict.fromkeys(path)))
    for event in state.get("tool_events", []):
        name = str(event["name"]).replace("_", " ")
        tried.append(name if event.get("ok") else f"{name} (failed)")
    done = list(dict.fromkeys(state.get("resolutions", [])))
    if done:
        tried.append("completed " + ", ".join(d.replace(":", " ").replace("_", " ") for d in done))
    task = state.get("task") or {}
    intent = str(state.get("intent") or "")
    agent = str(task.get("agent") or intent)
    if task.get("name") and f"{agent}:{task['name']}" not in done:
        wants = f"{agent} {str(task['name']).replace('_', ' ')}, not finished"
        if task.get("awaiting"):
            wants += f" (the assistant was waiting for: {str(task['awaiting']).replace('_', ' ')})"
    elif reason == "refund_over_policy":
        wants = "a refund beyond what the assistant may approve"
    else:
        # The last topic an AI specialist had, not "escalation": the supervisor relabels the intent on the way out.
        topic = path[-1] if path else intent
        wants = WANTS.get(topic, "not stated before the handover")
    turns = int(state.get("turn") or 0)
    mood = ["calm", "irritated", "upset"][min(2, max(0, int(state.get("frustration") or 0)))]
    return " ".join(
        [
            f"Reason: {REASON_TEXT.get(reason, reason.replace('_', ' '))}.",
            f"Verified: {who}.",
            f"Tried: {'; '.join(tried) if tried else 'nothing yet'}.",
            f"Wants: {wants}.",
            f"Call: {turns} caller turn(s), caller {mood}.",
        ]
    )


async def write_summary(ctx: AgentContext, state: CallState, reason: str) -> str:
    """The handover note: written by a model from the transcript when one is configured, else `summarize`.

    A model that fails (or answers nothing) falls back to `summarize`, so the caller is still handed over.
    """
    facts = summarize(state, reason)
    if ctx.models is None:
        return facts
    try:
        model = ctx.models.model_for("escalation", 1.0)
        lines = [
            f"{'Caller' if t['role'] == 'caller' else 'Assistant' if t['role'] == 'agent' else 'Staff'}: {t['text']}"
            for t in state.get("transcript", [])[-SUMMARY_LINES:]
            if t["text"].strip()
        ]
        request = (
            "Facts the assistant recorded: "
            + facts
            + "\n\nTranscript:\n"
            + "\n".join(lines)
            + "\n\nWrite the handover note."
        )
        answer = await model.ainvoke([SystemMessage(ctx.prompts.system("handover")), HumanMessage(request)])
    except _MODEL_FAILURES:
        return facts
    text = answer.content if isinstance(answer.content, str) else ""
    text = " ".join(text.split())
    return text[:MAX_SUMMARY_CHARS] if text else facts


async def escalate(ctx: AgentContext, state: CallState, reason: str) -> dict[str, Any]:
    """Open a ticket on the human desk and tell the caller what happens next."""
    tools = CallerTools(ctx, state, AGENT)
    summary = await write_summary(ctx, state, reason)
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
        "escalate_for": None,
        "handoffs": [
            Handoff(turn=state.get("turn", 0), from_agent=previous, to_agent="human", reason=reason, context=summary)
        ],
    }
