"""Scheduling specialist: book, move, cancel or look up a technician visit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agents import parsing
from agents.context import AgentContext
from agents.ports import Appointment, PolicyViolation, Slot
from agents.specialists.base import Step
from agents.state import CallState, Task
from agents.tools import CallerTools, spoken_time

AGENT = "scheduling"


# A visit that did not happen ("the technician never showed up"): an apology, then a new time.
_MISSED = ("never showed", "never show", "didn't show", "did not show", "no show", "no-show", "never came",
           "didn't come", "did not come", "never turned up", "didn't turn up", "did not turn up", "never arrived",
           "didn't arrive", "did not arrive", "stood up", "missed appointment", "missed my appointment",
           "missed the appointment", "missed visit", "was supposed to come", "was meant to come")  # fmt: skip
# A question about a visit already booked ("is the technician still coming?"), answered from the bookings.
_CHECK = ("when is", "when's", "what time is", "what time will", "when will", "confirm my", "do i have",
          "check my appointment", "check on my", "still coming", "still on", "on the way", "on their way",
          "on his way", "on her way", "is the technician coming", "is someone coming", "have i got",
          "is my appointment", "my appointment still", "did i book", "is there a visit", "any visit")  # fmt: skip


def start(utterance: str) -> Task:
    """Read which scheduling task the caller wants from their first words."""
    if parsing.mentions(utterance, *_MISSED):
        name = "missed"
    elif parsing.mentions(utterance, "cancel", "call off", "don't need the", "no longer need"):
        name = "cancel"
    elif parsing.mentions(
        utterance,
        "move",
        "reschedul",
        "re schedul",
        "re-schedul",
        "change",
        "different",
        "another time",
        "another day",
        "push",
        "later",
        "earlier",
    ):
        name = "move"
    elif parsing.mentions(utterance, *_CHECK):
        name = "check"
    else:
        name = "book"
    return Task(name=name, awaiting="", slots={"request": utterance[:300]})


def needs_verification(_task: Task) -> bool:
    return True


async def flow(ctx: AgentContext, state: CallState, tools: CallerTools, task: Task) -> Step:
    utterance = state.get("utterance", "")
    slots: dict[str, Any] = task.setdefault("slots", {})
    awaiting = task.get("awaiting", "")
    name = task["name"]
    p = ctx.prompts

    if awaiting == "slot":
        return await _pick_slot(ctx, tools, task, utterance)
    if awaiting == "confirm":
        answer = parsing.yes_no(utterance)
        if answer is None:
            return Step(reply=p.reply("common.yes_or_no"), task=task, progress=False)
        if not answer and (task["name"] == "cancel" or parsing.declines(utterance)):
            return _left_as_it_was(ctx)
        if not answer:
            return await _offer(
                ctx, tools, task, utterance, exclude=[slots["chosen"]["slot_id"]] if "chosen" in slots else []
            )
        return await _commit(ctx, tools, task)
    if awaiting == "which_appointment":
        appts = slots["appointments"]
        idx = parsing.choose(utterance, [_local(ctx, a["start"]) for a in appts], ctx.today())
        if idx is None:
            return Step(
                reply=p.reply("scheduling.which_appointment", options=_list(ctx, appts)), task=task, progress=False
            )
        slots["appointment"] = appts[idx]
        return await _after_appointment(ctx, tools, task, slots.get("request", ""))
    if awaiting == "offer_book":
        if parsing.yes_no(utterance):
            task["name"], task["awaiting"] = "book", ""
            return await _offer(ctx, tools, task, utterance)
        return Step(reply=p.reply("common.anything_else"), task=None, resolved=True)

    # First turn of the task (after verification).
    if name == "book":
        step = await _offer(ctx, tools, task, slots.get("request", ""))
    elif name == "missed":
        step = await _missed(ctx, tools, task)
    else:
        appts = await tools.appointments()
        if not appts:
            task["awaiting"] = "offer_book"
            step = Step(reply=p.reply("scheduling.none_booked"), task=task)
        elif name == "check":
            step = Step(
                reply=p.reply("scheduling.your_visits", visits=_list(ctx, [_appt(a) for a in appts]))
                + " "
                + p.reply("common.anything_else"),
                resolved=True,
            )
        elif len(appts) > 1:
            slots["appointments"] = [_appt(a) for a in appts]
            task["awaiting"] = "which_appointment"
            step = Step(
                reply=p.reply("scheduling.which_appointment", options=_list(ctx, slots["appointments"])), task=task
            )
        else:
            slots["appointment"] = _appt(appts[0])
            step = await _after_appointment(ctx, tools, task, slots.get("request", ""))
    return step


async def _missed(ctx: AgentContext, tools: CallerTools, task: Task) -> Step:
    """The technician did not come: say sorry, then offer the earliest times, to move the visit still booked (if
    the caller has one) or to book a new one."""
    appts = await tools.appointments()
    if appts:
        task["name"] = "move"
        task["slots"]["appointment"] = _appt(appts[0])
        step = await _after_appointment(ctx, tools, task, "")
    else:
        task["name"] = "book"
        task["slots"].setdefault("reason", "Rebooking after a missed technician visit")
        step = await _offer(ctx, tools, task, "")
    step.reply = ctx.prompts.reply("scheduling.missed") + " " + step.reply
    return step


async def _after_appointment(ctx: AgentContext, tools: CallerTools, task: Task, utterance: str) -> Step:
    appt = task["slots"]["appointment"]
    when = spoken_time(datetime.fromisoformat(appt["start"]), ctx)
    if task["name"] == "cancel":
        task["awaiting"] = "confirm"
        return Step(reply=ctx.prompts.reply("scheduling.confirm_cancel", when=when), task=task)
    step = await _offer(ctx, tools, task, utterance)
    step.reply = ctx.prompts.reply("scheduling.current_visit", when=when) + " " + step.reply
    return step


async def _offer(
    ctx: AgentContext,
    tools: CallerTools,
    task: Task,
    utterance: str,
    exclude: list[str] | None = None,
    not_at: list[datetime] | None = None,
) -> Step:
    day = parsing.weekday(utterance, ctx.today())
    part = parsing.part_of_day(utterance)
    # A visit being moved is never offered its own time (another technician may be free then).
    moving = task["slots"].get("appointment") if task.get("name") == "move" else None
    avoid = [datetime.fromisoformat(moving["start"])] if moving else []
    avoid += not_at or []
    offered = await tools.open_slots(day, part, exclude=exclude or (), not_at=avoid)
    if not offered:
        offered = await tools.open_slots(exclude=exclude or (), not_at=avoid)
    if not offered:
        return Step(reply=ctx.prompts.reply("scheduling.no_slots"), task=None, escalate="no_availability")
    task["slots"]["offered"] = [_slot(s) for s in offered]
    task["awaiting"] = "slot"
    return Step(reply=ctx.prompts.reply("scheduling.offer", options=_list(ctx, task["slots"]["offered"])), task=task)


async def _pick_slot(ctx: AgentContext, tools: CallerTools, task: Task, utterance: str) -> Step:
    offered = task["slots"].get("offered", [])
    idx = parsing.choose(utterance, [_local(ctx, s["start"]) for s in offered], ctx.today())
    if idx is None:
        if parsing.declines(utterance):
            return _left_as_it_was(ctx)
        if parsing.weekday(utterance, ctx.today()) or parsing.part_of_day(utterance):
            return await _offer(ctx, tools, task, utterance)
        if parsing.yes_no(utterance) is False or parsing.mentions(utterance, "none", "neither", "other", "else"):
            return await _offer(ctx, tools, task, utterance, exclude=[s["slot_id"] for s in offered])
        return Step(
            reply=ctx.prompts.reply("scheduling.pick_again", options=_list(ctx, offered)), task=task, progress=False
        )
    task["slots"]["chosen"] = offered[idx]
    task["awaiting"] = "confirm"
    when = spoken_time(datetime.fromisoformat(offered[idx]["start"]), ctx)
    key = "scheduling.confirm_move" if task["name"] == "move" else "scheduling.confirm_book"
    return Step(reply=ctx.prompts.reply(key, when=when), task=task)


def _left_as_it_was(ctx: AgentContext) -> Step:
    """The caller turned the task down: nothing is booked, moved or cancelled, and the call goes on."""
    p = ctx.prompts
    return Step(reply=p.reply("common.not_done") + " " + p.reply("common.anything_else"), resolved=True)


async def _commit(ctx: AgentContext, tools: CallerTools, task: Task) -> Step:
    slots = task["slots"]
    p = ctx.prompts
    if task["name"] == "cancel":
        await tools.cancel_visit(slots["appointment"]["appointment_id"])
        when = spoken_time(datetime.fromisoformat(slots["appointment"]["start"]), ctx)
        return Step(
            reply=p.reply("scheduling.cancelled", when=when) + " " + p.reply("common.anything_else"), resolved=True
        )
    chosen = slots["chosen"]
    key = "scheduling.moved" if task["name"] == "move" else "scheduling.booked"
    try:
        appt = await _take(tools, task, chosen["slot_id"])
    except PolicyViolation:
        # Someone else took that technician's slot between the offer and the yes. The caller chose a time,
        # not a technician: another technician free at the same time takes it; otherwise offer other times.
        start = datetime.fromisoformat(chosen["start"])
        free = await tools.tenant.scheduling.open_slots(on_or_after=start.astimezone(ctx.tz).date(), limit=48)
        same_time = [s for s in free if s.start == start and s.slot_id != chosen["slot_id"]]
        try:
            if not same_time:
                raise
            appt = await _take(tools, task, same_time[0].slot_id)
        except PolicyViolation:
            step = await _offer(ctx, tools, task, "", exclude=[chosen["slot_id"]], not_at=[start])
            step.reply = p.reply("scheduling.slot_taken") + " " + step.reply
            return step
    when = spoken_time(appt.start, ctx)
    return Step(reply=p.reply(key, when=when) + " " + p.reply("common.anything_else"), resolved=True)


def _reason(request: str) -> str:
    return request.strip()[:200] or "technician visit"


async def _take(tools: CallerTools, task: Task, slot_id: str) -> Appointment:
    """Book the slot, or move the task's appointment to it."""
    slots = task["slots"]
    if task["name"] == "move":
        return await tools.move_visit(slots["appointment"]["appointment_id"], slot_id)
    return await tools.book_visit(slot_id, slots.get("reason") or _reason(slots.get("request", "")))


def _slot(s: Slot) -> dict[str, str]:
    return {"slot_id": s.slot_id, "start": s.start.isoformat()}


def _appt(a: Any) -> dict[str, str]:
    return {"appointment_id": a.appointment_id, "slot_id": a.slot_id, "start": a.start.isoformat()}


def _local(ctx: AgentContext, iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(ctx.tz)


def _list(ctx: AgentContext, items: list[dict[str, str]]) -> str:
    times = [spoken_time(datetime.fromisoformat(i["start"]), ctx) for i in items]
    if len(times) <= 1:
        return "".join(times)
    return ", ".join(times[:-1]) + ", or " + times[-1]
