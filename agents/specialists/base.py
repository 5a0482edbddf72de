"""What every specialist shares: the step result, caller verification, and the node wrapper."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agents import parsing
from agents.context import AgentContext
from agents.ports import Customer, DomainError, VerificationFailureReason
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
    """Advance caller verification: which account (the caller ID, or a phone number, an account number or a name
    the caller gives), then that account's ZIP code.

    The dialogue is the same whether or not the account exists: the ZIP is always asked for, and a claim with
    no account fails exactly as a wrong ZIP does, so it tells the caller nothing about who is a customer. Each
    failed check counts against the caller ID and the claim across calls (`tenant.verification`); a locked
    caller ID or claim fails verification at once (and the call goes to a human) without the ZIP being checked.
    A caller who gives something else is told what works, and a retry is never worded as the one before it.

    Returns the new verification record and, while verification is not finished, what to say.
    """
    v = Verification(**verification_of(state))
    prompts = ctx.prompts
    if v["status"] in {"verified", "failed"}:
        return v, None
    guard = ctx.tenant.verification
    caller_id = state.get("caller_id") or None
    if v["awaiting"] == "" and state.get("introduced"):
        # "Hi, it's Aisha Khan, zip 11375" before the request: who they are, said a turn early.
        utterance = f"{state.get('introduced')}, {utterance}"
    code = parsing.zip_code(utterance)
    claimed = _claim(utterance)
    if v["awaiting"] == "":
        if await guard.locked(caller_id=caller_id, phone=caller_id):
            return _locked(v)
        said_zip = code is not None and parsing.mentions(utterance, "zip", "postcode", "postal code")
        if said_zip and (caller_id or claimed is not None):
            # "It's Aisha Khan, my ZIP is 11375, I was double charged": who and the ZIP, said with the request.
            v["phone"], v["awaiting"] = caller_id, "zip"
            if claimed is not None:
                _set_claim(v, claimed)
            assert code is not None
            return await _check_zip(ctx, state, v, code)
        if caller_id:
            v["phone"], v["awaiting"] = caller_id, "zip"
            return v, prompts.reply("verify.ask_zip")
        if claimed is not None:
            # "I'm James Carter, what's my balance?" with no caller ID: the account is named, its ZIP is next.
            _set_claim(v, claimed)
            v["awaiting"] = "zip"
            return v, prompts.reply(
                "verify.ask_zip_after_phone" if claimed[0] == "phone" else "verify.ask_zip_after_name"
            )
        v["awaiting"] = "phone"
        return v, prompts.reply("verify.ask_phone")
    if v["awaiting"] == "phone":
        if claimed is None:
            if parsing.names_another_reference(utterance):
                return _failed_attempt(ctx, v, "verify.not_an_account")
            if parsing.new_request(utterance):
                return _reminded(ctx, v, "verify.phone_first")  # "what days do you have?": nothing to look up
            return _failed_attempt(ctx, v, "verify.retry_phone", "verify.retry_phone_again")
        _set_claim(v, claimed)
        v["awaiting"] = "zip"
        if code is None or claimed[0] == "phone":
            return v, prompts.reply(
                "verify.ask_zip_after_phone" if claimed[0] == "phone" else "verify.ask_zip_after_name"
            )
    elif code is None:
        if claimed is not None:
            # The account is under another number, an account number or a name: check that one instead.
            _set_claim(v, claimed)
            return v, prompts.reply(
                "verify.ask_zip_after_phone" if claimed[0] == "phone" else "verify.ask_zip_after_name"
            )
        if parsing.names_another_reference(utterance):
            return _failed_attempt(ctx, v, "verify.not_an_account")
        if len(parsing.digits(utterance)) < 3:
            # No number that could be a ZIP code ("what days do you have?", "the first one"): nothing was checked,
            # so nothing "doesn't match"; the caller hears what is needed, and no attempt is spent.
            return _reminded(ctx, v, "verify.zip_first")
        return _failed_attempt(ctx, v, "verify.retry_zip", "verify.retry_zip_again")
    elif claimed is not None and claimed[0] != "phone":
        _set_claim(v, claimed)  # "James Carter, 10453" while the ZIP of the caller ID's account was asked for
    assert code is not None
    return await _check_zip(ctx, state, v, code)


Claim = tuple[str, str]


def _claim(utterance: str) -> Claim | None:
    """Which account the caller says is theirs: ("account", "NW-1003"), ("phone", "+1..."), ("name", "...")."""
    account = parsing.account_number(utterance)
    if account is not None:
        return "account", account
    phone = parsing.phone_number(utterance)
    if phone is not None:
        return "phone", phone
    name = parsing.person_name(utterance)
    return ("name", name) if name is not None else None


def _set_claim(v: Verification, claim: Claim) -> None:
    kind, value = claim
    v["phone"] = value if kind == "phone" else None
    v["account_claim"] = value if kind == "account" else None
    v["name_claim"] = value if kind == "name" else None


async def _check_zip(
    ctx: AgentContext, state: CallState, v: Verification, code: str
) -> tuple[Verification, str | None]:
    """Check `code` against the claimed account; the same steps whether or not the claim has an account."""
    guard, customers = ctx.tenant.verification, ctx.tenant.customers
    caller_id = state.get("caller_id") or None
    phone, account_id, name = v.get("phone") or "", v.get("account_claim"), v.get("name_claim")
    if await guard.locked(caller_id=caller_id, phone=phone, account_id=account_id, name=name):
        return _locked(v)
    reason: VerificationFailureReason
    customer: Customer | None
    if name:
        customer, reason = await customers.match_name_and_zip(name, code), "no_match"
    elif account_id:
        matches = await customers.check_second_factor(account_id, code)
        customer, reason = (await customers.get(account_id) if matches else None), "no_match"
    else:
        found = await customers.find_by_phone(phone) if phone else None
        # The ZIP is checked whether or not the number has an account: the same steps, the same time either way.
        matches = await customers.check_second_factor(found.account_id if found else "", code)
        customer = found if matches else None
        reason = "wrong_zip" if found is not None else "unknown_number"
    if customer is not None:
        v["status"], v["account_id"], v["name"], v["awaiting"] = "verified", customer.account_id, customer.name, ""
        return v, None
    failed = await guard.record_failure(
        call_id=state.get("call_id", ""),
        caller_id=caller_id,
        phone=phone,
        reason=reason,
        account_id=account_id,
        name=name,
    )
    if failed:
        return _locked(v)
    return _failed_attempt(ctx, v, "verify.retry_zip", "verify.retry_zip_again")


def _reminded(ctx: AgentContext, v: Verification, key: str) -> tuple[Verification, str | None]:
    """Tell the caller what verification needs, after they said something else: no attempt, but no progress."""
    v["reminders"] = v.get("reminders", 0) + 1
    v["last_retry"] = key
    return v, ctx.prompts.reply(key)


def verification_progressed(before: Verification, after: Verification) -> bool:
    """Whether a verification turn moved on: no failed attempt, and no reminder of what it needs."""
    return after["attempts"] == before["attempts"] and after.get("reminders", 0) == before.get("reminders", 0)


def _failed_attempt(
    ctx: AgentContext, v: Verification, retry_key: str, again_key: str | None = None
) -> tuple[Verification, str | None]:
    v["attempts"] += 1
    if v["attempts"] >= ctx.max_verification_attempts:
        v["status"], v["awaiting"] = "failed", ""
        return v, None
    # A second retry in a row is worded differently: the same line again would tell the caller nothing new.
    again = again_key is not None and v.get("last_retry") == retry_key
    v["last_retry"] = retry_key
    return v, ctx.prompts.reply(again_key if again and again_key else retry_key)


def _locked(v: Verification) -> tuple[Verification, str | None]:
    v["status"], v["awaiting"], v["locked"] = "failed", "", True
    return v, None


def failed_verification(v: Verification) -> str:
    """The escalation reason of a failed verification (a lock-out is told apart for the human)."""
    return "verification_locked" if v.get("locked") else "verification_failed"


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
    """Run one deterministic specialist turn and turn its Step into a state update.

    A turn that answers the open question and asks something new ("yes please, and what's my balance?", the
    router's `followup`) gets both: a yes or no to a confirmation settles it first (unless held back: "yes,
    but when is it due?"), an offer left open is dropped, then the request starts a task here or goes to the
    specialist it is for. The request is never dropped.
    """
    request = state.get("followup") or ""
    if not request:
        return await _run_once(agent, ctx, state, start, flow, needs_verification=needs_verification)
    effects: dict[str, int] = {}  # one count of effects for the turn, so each keeps its own idempotency key
    task = state.get("task") or {}
    utterance = state.get("utterance", "")
    first: dict[str, Any] = {}
    confirming = task.get("agent") == agent and task.get("awaiting") == "confirm"
    if confirming and parsing.yes_no(utterance) and not parsing.declines_first(utterance):
        settle = CallState(**{**state, "utterance": "yes"})
        first = await _run_once(agent, ctx, settle, start, flow, needs_verification=needs_verification, effects=effects)
        if first.get("escalate_for") or first.get("handoff_to") or first.get("task"):
            return first  # a hand-over, or the step still needs the caller: the request waits its turn
    elif confirming and parsing.yes_no(utterance) is False:
        # Declined: nothing is done, and the caller hears so before the answer to what they asked instead
        # (a flow's own "no" may offer something else, which the request has already answered).
        first = {"reply": ctx.prompts.reply("common.not_done")}
    said = _without(first.get("reply", ""), ctx.prompts.reply("common.anything_else"))
    target = state.get("followup_intent") or agent
    if target != agent:
        return {
            **first,
            "reply": said,
            "task": {},
            "active": target,
            "handoff_to": target,
            "handoffs": [
                Handoff(
                    turn=state.get("turn", 0),
                    from_agent=agent,
                    to_agent=target,
                    reason="topic_change",
                    context=f"{verification_of(state)['name'] or 'unverified caller'}; asked: {request[:200]!r}",
                )
            ],
        }
    verification = first.get("verification") or verification_of(state)
    # The state's `handoff_to` stays: after a same-turn hand-over it says the other specialist spoke first.
    fresh = CallState(**{**state, "utterance": request, "task": {}, "verification": verification})
    second = await _run_once(agent, ctx, fresh, start, flow, needs_verification=needs_verification, effects=effects)
    merged = {**first, **second, "reply": _join(said, second.get("reply", ""))}
    for added in ("tool_events", "resolutions"):
        merged[added] = [*first.get(added, []), *second.get(added, [])]
    return merged


def _without(reply: str, sentence: str) -> str:
    """`reply` without its closing `sentence` (an "anything else?" the caller already answered)."""
    return reply[: -len(sentence)].strip() if reply.endswith(sentence) else reply


async def _run_once(
    agent: str,
    ctx: AgentContext,
    state: CallState,
    start: Callable[[str], Task],
    flow: FlowFn,
    *,
    needs_verification: Callable[[Task], bool],
    effects: dict[str, int] | None = None,
) -> dict[str, Any]:
    utterance = state.get("utterance", "")
    # A same-turn handoff from another specialist: keep what it already said.
    carried = state.get("reply", "") if state.get("handoff_to") else ""
    task: Task = dict(state.get("task") or {})  # type: ignore[assignment]
    if task.get("name") is None or task.get("agent") != agent:
        task = start(utterance)
        task["agent"] = agent
    update: dict[str, Any] = {"handoff_to": None}
    if needs_verification(task):
        verification, prompt = await verify(ctx, state, utterance)
        update["verification"] = verification
        if verification["status"] == "failed":
            return {**update, "task": task, "escalate_for": failed_verification(verification)}
        if prompt is not None:
            progressed = verification_progressed(verification_of(state), verification)
            reply = _join(carried, prompt)
            return {**update, "task": task, "reply": reply, "failures": _failures(state, progressed)}
        if verification_of(state)["status"] != "verified":
            carried = _join(
                carried, ctx.prompts.reply("verify.thanks", name=(verification["name"] or "").split(" ")[0])
            )
        state = CallState(**{**state, "verification": verification})
    tools = CallerTools(ctx, state, agent, effects=effects)
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
        update["escalate_for"] = step.escalate
    elif step.handoff:
        to_agent, reason, next_task = step.handoff
        if next_task is not None:
            next_task["agent"] = to_agent
        update.update(
            active=to_agent,
            task=next_task or {},
            handoff_to=to_agent,
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
