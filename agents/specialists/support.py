"""Support specialist: outage checks, guided router restarts and troubleshooting, password resets."""

from __future__ import annotations

from typing import Any

from agents import parsing
from agents.context import AgentContext
from agents.specialists.base import Step
from agents.speech import spoken_clock
from agents.state import CallState, Task
from agents.tools import CallerTools

AGENT = "support"


# "I don't know my ZIP code": the outage check goes on without it, instead of asking for it again and again.
_NO_ZIP = ("don't know", "do not know", "dont know", "not sure", "no idea", "can't remember", "cannot remember",
           "forgot", "don't remember", "don't have")  # fmt: skip


def start(utterance: str) -> Task:
    """Read which support task the caller wants from their first words."""
    if parsing.asks_about_account(utterance) or parsing.asks_account_change(utterance):
        # What the account is or how it pays ("what plan am I on?", "upgrade my internet plan"): billing's.
        name = "account"
    elif parsing.mentions(
        utterance, "technician", "engineer", "send someone", "someone to come", "come out", "home visit"
    ):
        name = "visit"
    elif parsing.mentions(
        utterance, "password", "log in", "login", "sign in", "locked out", "can't access", "cannot access"
    ):
        name = "password"
    elif parsing.mentions(utterance, "restart", "reboot", "reset my router", "reset the router", "power cycle"):
        name = "restart"
    elif parsing.mentions(utterance, "slow", "wifi", "wi-fi", "wireless", "signal", "buffering", "lights", "blinking"):
        name = "troubleshoot"
    else:
        name = "outage"
    return Task(name=name, awaiting="", slots={"request": utterance[:300]})


def needs_verification(task: Task) -> bool:
    # Outage information and generic troubleshooting are public; account actions are not.
    return task.get("name") == "password"


async def flow(ctx: AgentContext, state: CallState, tools: CallerTools, task: Task) -> Step:
    utterance = state.get("utterance", "")
    slots: dict[str, Any] = task.setdefault("slots", {})
    awaiting = task.get("awaiting", "")
    p = ctx.prompts

    if awaiting == "zip":
        code = parsing.zip_code(utterance)
        if code is None and parsing.mentions(utterance, *_NO_ZIP):
            task["awaiting"] = "offer_restart"
            return Step(reply=p.reply("support.no_zip"), task=task)
        if code is None:
            return Step(reply=p.reply("support.ask_zip_again"), task=task, progress=False)
        step = await _outage(ctx, tools, task, code)
        step.extra["service_zip"] = code
        return step
    if awaiting == "offer_restart":
        if parsing.yes_no(utterance):
            task["name"], task["awaiting"] = "restart", ""
            return await _walkthrough(ctx, tools, task, "restart router")
        return Step(reply=p.reply("support.offer_visit"), task=_offer_visit(task))
    if awaiting == "step":
        if parsing.yes_no(utterance) is False and not parsing.mentions(utterance, "done", "next", "ok"):
            return Step(reply=p.reply("support.take_your_time"), task=task, progress=True)
        return _next_step(ctx, task)
    if awaiting == "fixed":
        answer = parsing.yes_no(utterance)
        if answer is None:
            return Step(reply=p.reply("common.yes_or_no"), task=task, progress=False)
        if answer:
            return Step(
                reply=p.reply("support.glad_fixed") + " " + p.reply("common.anything_else"), task=None, resolved=True
            )
        return Step(reply=p.reply("support.offer_visit"), task=_offer_visit(task))
    if awaiting == "offer_visit":
        if parsing.yes_no(utterance):
            reason = f"Connection problem not fixed by phone troubleshooting: {slots.get('request', '')}"[:200]
            return Step(
                reply=p.reply("support.handing_to_scheduling"),
                task=None,
                handoff=(
                    "scheduling",
                    "technician_visit_needed",
                    Task(name="book", awaiting="", slots={"reason": reason}),
                ),
            )
        return Step(reply=p.reply("common.anything_else"), task=None)

    name = task["name"]
    if name == "account":
        # Billing reads its own task from the caller's words (no task handed over).
        return Step(reply="", task=None, handoff=("billing", "account", None))
    if name == "visit":
        # The caller already knows they need a technician: scheduling books it, no troubleshooting first.
        reason = str(slots.get("request", ""))[:200] or "technician visit"
        return Step(
            reply="",
            task=None,
            handoff=("scheduling", "technician_requested", Task(name="book", awaiting="", slots={"reason": reason})),
        )
    if name == "password":
        masked = await tools.reset_password()
        return Step(
            reply=p.reply("support.reset_sent", email=masked) + " " + p.reply("common.anything_else"), resolved=True
        )
    if name in {"restart", "troubleshoot"}:
        return await _walkthrough(
            ctx, tools, task, slots.get("request", "") if name == "troubleshoot" else "restart router"
        )
    # Outage check: one the caller says now or said before on this call, the verified account's, or ask for it.
    code = parsing.zip_code(slots.get("request", "")) or state.get("service_zip")
    if code is None and tools.account_id is None:
        task["awaiting"] = "zip"
        return Step(reply=p.reply("support.ask_zip"), task=task)
    step = await _outage(ctx, tools, task, code, told=code is not None and code == state.get("service_zip"))
    if code is not None:
        step.extra["service_zip"] = code
    return step


async def _outage(ctx: AgentContext, tools: CallerTools, task: Task, code: str | None, told: bool = False) -> Step:
    """The outage in the caller's area, if any; `told`: this call already heard about it, so only how it stands."""
    p = ctx.prompts
    outage = await tools.outage(code)
    if outage is not None and outage.status != "resolved":
        eta = ""
        if outage.eta:
            local = outage.eta.astimezone(ctx.tz)
            eta = (
                p.reply(
                    "support.outage_eta",
                    when=f"{local.strftime('%A')} at {spoken_clock(local.hour, local.minute)}",
                )
                + " "
            )
        key = "support.outage_still" if told else "support.outage"
        return Step(
            reply=p.reply(key, description=outage.description.rstrip(". "), eta=eta)
            + " "
            + p.reply("common.anything_else"),
            task=None,
            resolved=True,
        )
    task["awaiting"] = "offer_restart"
    return Step(reply=p.reply("support.no_outage"), task=task)


async def _walkthrough(ctx: AgentContext, tools: CallerTools, task: Task, query: str) -> Step:
    articles = await tools.articles(query)
    if not articles:
        return Step(reply=ctx.prompts.reply("support.offer_visit"), task=_offer_visit(task))
    article = articles[0]
    task["slots"].update(article_id=article.article_id, steps=list(article.steps), step=0)
    task["awaiting"] = "step"
    intro = ctx.prompts.reply("support.walkthrough_intro", title=article.title, count=len(article.steps))
    return Step(reply=f"{intro} {_step_text(ctx, task)}", task=task)


def _next_step(ctx: AgentContext, task: Task) -> Step:
    task["slots"]["step"] += 1
    if task["slots"]["step"] >= len(task["slots"]["steps"]):
        task["awaiting"] = "fixed"
        return Step(reply=ctx.prompts.reply("support.is_it_fixed"), task=task)
    return Step(reply=_step_text(ctx, task), task=task)


def _step_text(ctx: AgentContext, task: Task) -> str:
    i = task["slots"]["step"]
    return ctx.prompts.reply("support.step", number=i + 1, text=task["slots"]["steps"][i])


def _offer_visit(task: Task) -> Task:
    task["awaiting"] = "offer_visit"
    return task
