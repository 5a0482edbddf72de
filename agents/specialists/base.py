"""What every specialist shares: the step result, caller verification, and the node wrapper."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agents import parsing
from agents.context import AgentContext
from agents.ports import DomainError, VerificationFailureReason
from agents.state import CallState, Handoff, Task, Verification, verification_of
from agents.tools import CallerTools


@dataclass
class Step:
    """One specialist turn.

    Attributes:
        reply: what to say.
        task: the task still in progress, or None when it finished.
        progress: False when the caller's words could not be used (counts towards repeated failures).
        resolved: the caller's request was fulfilled this turn.
        handoff: (agent, reason, task for the receiver) to pass the call on within this turn.
        escalate: a reason to hand the call to a human.
    """

    reply: str = ""
    task: Task | None = None
    progress: bool = True
    resolved: bool = False
    handoff: tuple[str, str, Task | None] | None = None
    escalate: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


FlowFn = Callable[[AgentContext, CallState, CallerTools, Task], Awaitable[Step]]


async def verify(ctx: AgentContext, state: CallState, utterance: str) -> tuple[Verification, str | None]:
    """Advance caller verification: a phone number (the caller ID, or one the caller says), then its account's ZIP.

    The dialogue is the same whether or not the number belongs to a customer: the ZIP is always asked for,
    and a number with no account fails exactly as a wrong ZIP does, so it tells the caller nothing about who
    is a customer. Each failed pair counts against the caller ID and the account across calls
    (`tenant.verification`); a locked caller ID or account fails verification at once (and the call goes to
    a human) without the ZIP being checked.

    Returns the new verification record and, while verification is not finished, what to say.
    """
    v = Verification(**verification_of(state))
    prompts = ctx.prompts
    if v["status"] in {"verified", "failed"}:
        return v, None
    guard = ctx.tenant.verification
    caller_id = state.get("caller_id") or None
    if v["awaiting"] == "":
        if await guard.locked(caller_id=caller_id, phone=caller_id):
            return _locked(v)
        if caller_id:
            v["phone"], v["awaiting"] = caller_id, "zip"
            return v, prompts.reply("verify.ask_zip")
        v["awaiting"] = "phone"
        return v, prompts.reply("verify.ask_phone")
    if v["awaiting"] == "phone":
        phone = parsing.phone_number(utterance)
        if phone is None:
            return _failed_attempt(ctx, v, "verify.retry_phone")
        v["phone"], v["awaiting"] = phone, "zip"
        return v, prompts.reply("verify.ask_zip_after_phone")
    # awaiting the ZIP code of the claimed number's account
    code = parsing.zip_code(utterance)
    if code is None:
        other = parsing.phone_number(utterance)
        if other is not None:
            # The account is under another number (a caller on a work phone, say): check that one instead.
            v["phone"] = other
            return v, prompts.reply("verify.ask_zip_after_phone")
        return _failed_attempt(ctx, v, "verify.retry_zip")
    phone = v.get("phone") or ""
    if await guard.locked(caller_id=caller_id, phone=phone):
        return _locked(v)
    customers = ctx.tenant.customers
    customer = await customers.find_by_phone(phone) if phone else None
    # The ZIP is checked whether or not the number has an account: the same steps, the same time either way.
    matches = await customers.check_second_factor(customer.account_id if customer else "", code)
    if customer is not None and matches:
        v["status"], v["account_id"], v["name"], v["awaiting"] = "verified", customer.account_id, customer.name, ""
        return v, None
    reason: VerificationFailureReason = "wrong_zip" if customer is not None else "unknown_number"
    if await guard.record_failure(call_id=state.get("call_id", ""), caller_id=caller_id, phone=phone, reason=reason):
        return _locked(v)
    return _failed_attempt(ctx, v, "verify.retry_zip")


def _failed_attempt(ctx: AgentContext, v: Verification, retry_key: str) -> tuple[Verification, str | None]:
    v["attempts"] += 1
    if v["attempts"] >= ctx.max_verification_attempts:
        v["status"], v["awaiting"] = "failed", ""
        return v, None
    return v, ctx.prompts.reply(retry_key)


def _locked(v: Verification) -> tuple[Verification, str | None]:
    v["status"], v["awaiting"], v["locked"] = "failed", "", True
    return v, None


def failed_directive(v: Verification) -> str:
    """The escalation directive of a failed verification (a lock-out is told apart for the human)."""
    return "escalate:verification_locked" if v.get("locked") else "escalate:verification_failed"


def first_name(state: CallState) -> str:
    name = verification_of(state)["name"] or ""
    return name.split()[0] if name else ""


async def run_specialist(
    agent: str,
    ctx: AgentContext,
    state: CallState,
    start: Callable[[str], Task],
    flow: FlowFn,
    *,
    needs_verification: Callable[[Task], bool],
) -> dict[str, Any]:
    """Run one deterministic specialist turn and turn its Step into a state update."""
    utterance = state.get("utterance", "")
    # A same-turn handoff from another specialist: keep what it already said.
    carried = state.get("reply", "") if (state.get("directive") or "").startswith("handoff:") else ""
    task: Task = dict(state.get("task") or {})  # type: ignore[assignment]
    if task.get("name") is None or task.get("agent") != agent:
        task = start(utterance)
        task["agent"] = agent
    update: dict[str, Any] = {"directive": None}
    if needs_verification(task):
        verification, prompt = await verify(ctx, state, utterance)
        update["verification"] = verification
        if verification["status"] == "failed":
            return {**update, "task": task, "directive": failed_directive(verification)}
        if prompt is not None:
            progressed = verification["attempts"] == verification_of(state)["attempts"]
            reply = _join(carried, prompt)
            return {**update, "task": task, "reply": reply, "failures": _failures(state, progressed)}
        if verification_of(state)["status"] != "verified":
            carried = _join(
                carried, ctx.prompts.reply("verify.thanks", name=(verification["name"] or "").split(" ")[0])
            )
        state = CallState(**{**state, "verification": verification})
    tools = CallerTools(ctx, state, agent)
    try:
        step = await flow(ctx, state, tools, task)
    except DomainError as exc:
        step = Step(reply=ctx.prompts.reply("common.domain_error", detail=str(exc)), task=None, progress=False)
    update.update(
        reply=_join(carried, step.reply),
        task=step.task or {},
        tool_events=tools.events,
        failures=_failures(state, step.progress),
        **step.extra,
    )
    if step.resolved:
        update["resolutions"] = [f"{agent}:{task.get('name')}"]
    if step.escalate:
        update["directive"] = f"escalate:{step.escalate}"
    elif step.handoff:
        to_agent, reason, next_task = step.handoff
        if next_task is not None:
            next_task["agent"] = to_agent
        update.update(
            active=to_agent,
            task=next_task or {},
            directive=f"handoff:{to_agent}",
            handoffs=[
                Handoff(
                    turn=state.get("turn", 0),
                    from_agent=agent,
                    to_agent=to_agent,
                    reason=reason,
                    context=_context_for(state, next_task),
                )
            ],
        )
    return update


def _failures(state: CallState, progressed: bool) -> int:
    return 0 if progressed else state.get("failures", 0) + 1


def _context_for(state: CallState, task: Task | None) -> str:
    who = verification_of(state)["name"] or "unverified caller"
    want = f"; task {task.get('name')} {task.get('slots') or {}}" if task else ""
    return f"{who}{want}"


def _join(*parts: str) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())
