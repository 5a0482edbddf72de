"""Billing specialist: balance, payments, disputed charges and refunds within policy."""

from __future__ import annotations

import re
from typing import Any

from agents import parsing
from agents.context import AgentContext
from agents.ports import Invoice, PolicyViolation
from agents.specialists.base import Step
from agents.speech import spoken_account
from agents.state import CallState, Task
from agents.tools import CallerTools, money, spoken_date, spoken_period

AGENT = "billing"


# "Can I get the technician fee back?", "I want that charge back": a refund, said without the word.
_GET_BACK = re.compile(
    r"\b(?:get|have|want|need)\b(?: [\w$.]+){0,4} (?:fees?|charges?|money|payments?|deposit|amount|dollars) back\b"
)
_PAYMENT_STATUS = ("went through", "go through", "gone through", "payment status", "received my payment",
                   "get my payment", "my last payment", "payment from last", "did my payment")  # fmt: skip
# Questions about what the bill is made of, rather than a charge the caller thinks is wrong: "why is my bill so
# high?", "what's the 49 dollar charge for?", "can you go through my bill?".
_EXPLAIN = ("so high", "higher", "went up", "gone up", "goes up", "more than usual", "more than last",
            "more this month", "increase", "explain", "breakdown", "break down", "go through my bill",
            "go over my bill", "what am i paying", "what i'm paying", "what's on my bill", "what is on my bill",
            "itemi", "charge for", "charges for", "copy of my bill", "copy of the bill", "read me my bill",
            "what's this bill", "what is this bill")  # fmt: skip
# "When is my bill due?", "when do I have to pay?", "what's the due date?": the date, not the balance again.
_DUE = re.compile(
    r"\bdue date\b|\bwhen(?:'s| is| are| will| do| does| should| must| would)\b(?: [\w']+){0,5}? "
    r"(?:due|pay|paid|charged|billed|bill|payment)\b"
)
# A charge the caller says is wrong: a dispute, even if they also ask why the bill went up.
_WRONG = ("wrong", "incorrect", "overcharg", "charged twice", "double charg", "mistake", "unauthori", "dispute",
          "never ordered", "didn't order", "did not order", "never signed up", "didn't sign up", "don't recognize",
          "do not recognize")  # fmt: skip


def start(utterance: str) -> Task:
    """Read which billing task the caller wants from their first words."""
    if parsing.mentions(utterance, "refund", "money back", "reimburse", "credit back", "credit my") or _GET_BACK.search(
        parsing.normalize(utterance)
    ):
        name = "refund"
    elif parsing.asks_account_change(utterance):
        name = "account_change"
    elif parsing.asks_about_account(utterance):
        name = "account_info"
    elif parsing.mentions(utterance, *_EXPLAIN) and not parsing.mentions(utterance, *_WRONG):
        name = "explain"
    elif parsing.mentions(utterance, *_PAYMENT_STATUS):
        # "Did my payment go through?": the balance answers it (a payment received is off it), nothing to pay.
        name = "balance"
    elif _DUE.search(parsing.normalize(utterance)):
        name = "due"
    elif parsing.mentions(
        utterance,
        "dispute",
        "overcharg",
        "wrong",
        "incorrect",
        "don't recognize",
        "do not recognize",
        "charged twice",
        "double charg",
        "extra charge",
        "unexpected",
        "shouldn't be",
        "mistake",
        "fee",
        "charged for",
        "charged me",
        "never ordered",
        "didn't order",
        "did not order",
        "never signed up",
        "didn't sign up",
        "unauthori",
        "what is this charge",
        "why was i charged",
        "why am i being charged",
    ):
        name = "dispute"
    elif parsing.mentions(utterance, "pay", "payment"):
        name = "pay"
    else:
        name = "balance"
    return Task(name=name, awaiting="", slots={"request": utterance[:300]})


def needs_verification(_task: Task) -> bool:
    return True


async def flow(ctx: AgentContext, state: CallState, tools: CallerTools, task: Task) -> Step:
    utterance = state.get("utterance", "")
    slots: dict[str, Any] = task.setdefault("slots", {})
    awaiting = task.get("awaiting", "")
    p = ctx.prompts

    if awaiting == "offer_pay":
        if parsing.yes_no(utterance):
            # "Yes" to "would you like to pay it now?" means the whole balance.
            task["name"], task["awaiting"] = "pay", "amount"
            return await _ask_amount(ctx, tools, task, "all")
        return Step(reply=p.reply("common.anything_else"), task=None, resolved=True)
    if awaiting == "amount":
        return await _ask_amount(ctx, tools, task, utterance)
    if awaiting == "line":
        return await _pick_line(ctx, tools, task, utterance)
    if awaiting == "offer_dispute":
        # After the bill was read out: a charge named ("the late fee", "the 49 dollar one") is the one to dispute.
        invoices = await tools.invoices()
        if _match_line(utterance, _lines(invoices)) is not None:
            task["name"] = "dispute"
            return await _pick_line(ctx, tools, task, utterance, invoices=invoices)
        if parsing.yes_no(utterance):
            task["name"] = "dispute"
            if not slots.get("suggested"):
                return await _pick_line(ctx, tools, task, "", invoices=invoices)
            # A yes to "would you like me to open a dispute on it?": the charge and its amount were named already.
            step = await _pick_line(ctx, tools, task, slots["suggested"], invoices=invoices)
            return await _commit(ctx, tools, task) if task.get("awaiting") == "confirm" else step
        return Step(reply=p.reply("common.anything_else"), task=None, resolved=True)
    if awaiting == "offer_human":
        if parsing.yes_no(utterance):
            return Step(reply="", escalate=slots.get("escalation_reason", "refund_over_policy"))
        return Step(reply=p.reply("common.anything_else"), task=None, resolved=True)
    if awaiting == "confirm":
        answer = parsing.yes_no(utterance)
        if answer is None:
            return Step(reply=p.reply("common.yes_or_no"), task=task, progress=False)
        if not answer:
            return Step(reply=p.reply("common.not_done") + " " + p.reply("common.anything_else"), task=None)
        return await _commit(ctx, tools, task)

    name = task["name"]
    if name == "balance":
        bal = await tools.balance()
        if bal.due_cents <= 0:
            return Step(reply=p.reply("billing.nothing_due") + " " + p.reply("common.anything_else"), resolved=True)
        task["awaiting"] = "offer_pay"
        due = f" due on {spoken_date(bal.next_due_on)}" if bal.next_due_on else ""
        return Step(reply=p.reply("billing.balance", amount=money(bal.due_cents), due=due), task=task, resolved=True)
    if name == "due":
        return await _due(ctx, tools, task)
    if name == "pay":
        return await _ask_amount(ctx, tools, task, slots.get("request", ""))
    if name == "explain":
        return await _explain(ctx, tools, task)
    if name == "account_info":
        return await _account_info(ctx, tools)
    if name == "account_change":
        task["awaiting"] = "offer_human"
        cancel = parsing.cancels_service(slots.get("request", ""))
        slots["escalation_reason"] = "cancellation" if cancel else "account_change"
        return Step(reply=p.reply("billing.cancellation" if cancel else "billing.account_change"), task=task)
    return await _pick_line(ctx, tools, task, slots.get("request", ""), first=True)


async def _due(ctx: AgentContext, tools: CallerTools, task: Task) -> Step:
    """When the balance is due (the question, not the balance read again), and the offer to pay it."""
    p = ctx.prompts
    bal = await tools.balance()
    if bal.due_cents <= 0:
        return Step(reply=p.reply("billing.nothing_due") + " " + p.reply("common.anything_else"), resolved=True)
    task["awaiting"] = "offer_pay"
    if bal.next_due_on:
        said = p.reply("billing.due_on", amount=money(bal.due_cents), date=spoken_date(bal.next_due_on))
    else:
        said = p.reply("billing.due_unknown", amount=money(bal.due_cents))
    return Step(reply=said, task=task, resolved=True)


async def _ask_amount(ctx: AgentContext, tools: CallerTools, task: Task, utterance: str) -> Step:
    p = ctx.prompts
    bal = await tools.balance()
    if bal.due_cents <= 0:
        return Step(
            reply=p.reply("billing.nothing_due") + " " + p.reply("common.anything_else"), task=None, resolved=True
        )
    amount = parsing.amount_cents(utterance)
    if amount is None and (
        parsing.wants_everything(utterance) or (task.get("awaiting") == "amount" and parsing.yes_no(utterance))
    ):
        amount = bal.due_cents
    if amount is None:
        first_time = task.get("awaiting") != "amount"
        task["awaiting"] = "amount"
        return Step(reply=p.reply("billing.ask_amount", balance=money(bal.due_cents)), task=task, progress=first_time)
    if amount <= 0 or amount > bal.due_cents:
        task["awaiting"] = "amount"
        return Step(reply=p.reply("billing.bad_amount", balance=money(bal.due_cents)), task=task, progress=False)
    task["slots"]["amount_cents"] = amount
    task["awaiting"] = "confirm"
    return Step(reply=p.reply("billing.confirm_pay", amount=money(amount)), task=task)


async def _pick_line(
    ctx: AgentContext,
    tools: CallerTools,
    task: Task,
    utterance: str,
    first: bool = False,
    invoices: list[Invoice] | None = None,
) -> Step:
    """The charge the caller means, to confirm a dispute or refund of; `invoices` if the turn already read them."""
    p = ctx.prompts
    if invoices is None:
        invoices = await tools.invoices()
    lines = _lines(invoices)
    match = _match_line(utterance, lines)
    if match is None:
        task["awaiting"] = "line"
        latest = invoices[0] if invoices else None
        charges = _charges(latest) if latest else "no recent charges"
        return Step(reply=p.reply("billing.which_charge", charges=charges), task=task, progress=first)
    inv, line = match
    if line.amount_cents <= 0:
        # The best match is a credit: an earlier refund, whose description repeats the words the caller
        # used to ask for it. Asking again is not a new charge to refund or dispute.
        return Step(
            reply=p.reply(
                "billing.already_credited", amount=money(-line.amount_cents), period=spoken_period(inv.period)
            )
            + " "
            + p.reply("common.anything_else"),
            resolved=True,
        )
    if line.recovered_by == "refund":
        # One recovery per charge, whatever the words of the second request: the tenant's record decides.
        return Step(
            reply=p.reply(
                "billing.already_credited", amount=money(line.recovered_cents), period=spoken_period(inv.period)
            )
            + " "
            + p.reply("common.anything_else"),
            resolved=True,
        )
    if line.recovered_by == "dispute":
        return Step(
            reply=p.reply("billing.already_disputed", description=line.description)
            + " "
            + p.reply("common.anything_else"),
            resolved=True,
        )
    task["slots"].update(
        invoice_id=inv.invoice_id,
        line_id=line.line_id,
        amount_cents=line.amount_cents,
        description=line.description,
        period=spoken_period(inv.period),
    )
    if task["name"] == "refund":
        policy = tools.tenant.billing.refund_policy()
        amount = parsing.amount_cents(task["slots"].get("request", "")) or line.amount_cents
        task["slots"]["amount_cents"] = min(amount, line.amount_cents)
        if task["slots"]["amount_cents"] > policy.max_cents:
            why = f"refunds over {money(policy.max_cents)} need a specialist's approval"
            return _offer_specialist(task, ctx.prompts.reply("billing.over_policy", why=why))
    task["awaiting"] = "confirm"
    key = "billing.confirm_refund" if task["name"] == "refund" else "billing.confirm_dispute"
    return Step(
        reply=p.reply(
            key,
            description=line.description,
            amount=money(task["slots"]["amount_cents"]),
            period=spoken_period(inv.period),
        ),
        task=task,
    )


async def _explain(ctx: AgentContext, tools: CallerTools, task: Task) -> Step:
    """The latest bill's total and what it is made of, or, when it went up, what is new on it; then an offer to
    dispute a charge. A question about one charge ("what's the 49 dollar charge for?") is answered with it alone.

    Charges are named without their amounts: three amounts in words are more than a caller can follow by ear,
    and a charge named back ("the late fee", "the fifteen dollar one") is read out with its amount.
    """
    p = ctx.prompts
    invoices = await tools.invoices()
    request = task["slots"].get("request", "")
    if _match_line(request, _lines(invoices)) is not None:
        task["name"] = "dispute"
        return await _pick_line(ctx, tools, task, request, first=True, invoices=invoices)
    if not invoices:
        return Step(reply=p.reply("billing.no_bills") + " " + p.reply("common.anything_else"), resolved=True)
    latest = invoices[0]
    period, total = spoken_period(latest.period), money(latest.amount_cents)
    new: list[str] = []
    if len(invoices) > 1 and latest.amount_cents > invoices[1].amount_cents:
        before = {ln.description for ln in invoices[1].lines}
        new = [ln.description for ln in latest.lines if ln.amount_cents > 0 and ln.description not in before]
    task["awaiting"] = "offer_dispute"
    if not new:
        reply = p.reply("billing.bill_summary", period=period, total=total, items=_charges(latest))
        return Step(reply=reply + " " + p.reply("billing.offer_dispute"), task=task, resolved=True)
    difference = money(latest.amount_cents - invoices[1].amount_cents)
    reply = p.reply("billing.bill_higher", period=period, total=total, difference=difference, new=_and_list(new))
    if len(new) == 1:
        # The one new charge is what the caller asks about: a yes disputes it (`offer_dispute`).
        task["slots"]["suggested"] = new[0]
        return Step(reply=reply + " " + p.reply("billing.offer_dispute_it"), task=task, resolved=True)
    return Step(reply=reply + " " + p.reply("billing.offer_dispute"), task=task, resolved=True)


async def _account_info(ctx: AgentContext, tools: CallerTools) -> Step:
    """The verified account's number, spoken character by character, and its plan."""
    account = tools.account_id or ""
    plan = await tools.plan()
    return Step(
        reply=ctx.prompts.reply("billing.account_info", number=spoken_account(account), plan=plan)
        + " "
        + ctx.prompts.reply("common.anything_else"),
        resolved=True,
    )


def _offer_specialist(task: Task, reply: str) -> Step:
    """A refund the AI may not grant: say why (`reply`) and offer a billing specialist."""
    task["awaiting"] = "offer_human"
    task["slots"]["escalation_reason"] = "refund_over_policy"
    return Step(reply=reply, task=task)


async def _commit(ctx: AgentContext, tools: CallerTools, task: Task) -> Step:
    p = ctx.prompts
    s = task["slots"]
    if task["name"] == "pay":
        payment = await tools.pay(s["amount_cents"])
        return Step(
            reply=p.reply("billing.paid", amount=money(payment.amount_cents)) + " " + p.reply("common.anything_else"),
            resolved=True,
        )
    reason = s.get("request") or "caller disputes the charge"
    if task["name"] == "refund":
        try:
            refund = await tools.refund(s["invoice_id"], s["line_id"], s["amount_cents"], reason)
        except PolicyViolation as exc:
            # The tenant's refusal is a whole sentence already ("I can refund at most $50 myself; ...").
            return _offer_specialist(task, p.reply("billing.refund_refused", why=str(exc)))
        return Step(
            reply=p.reply("billing.refunded", amount=money(refund.amount_cents))
            + " "
            + p.reply("common.anything_else"),
            resolved=True,
        )
    try:
        await tools.dispute(s["invoice_id"], s["line_id"], reason)
    except PolicyViolation:
        # Already disputed (an earlier call, or a second line open at once): the caller's need is met.
        return Step(
            reply=p.reply("billing.already_disputed", description=s["description"])
            + " "
            + p.reply("common.anything_else"),
            resolved=True,
        )
    return Step(
        reply=p.reply("billing.disputed", description=s["description"]) + " " + p.reply("common.anything_else"),
        resolved=True,
    )


_STOP = {
    "the",
    "a",
    "an",
    "my",
    "on",
    "for",
    "of",
    "i",
    "was",
    "is",
    "it",
    "that",
    "this",
    "charge",
    "bill",
    "fee",
    "me",
    # The words of a question about a charge, not of the charge ("why is it so high?", "what's that for?").
    "why",
    "what",
    "whats",
    "how",
    "come",
    "high",
    "higher",
    "much",
    "explain",
    "paying",
    "copy",
    "there",
    "about",
}
_WHEN = re.compile(r"\b(?:this|last|next|every|each|per|a) month\b")


def _lines(invoices: list[Invoice]) -> list[tuple[Invoice, Any]]:
    """Every line of the invoices, each with its invoice."""
    return [(inv, line) for inv in invoices for line in inv.lines]


def _match_line(utterance: str, lines: list[tuple[Invoice, Any]]) -> tuple[Invoice, Any] | None:
    """The charge the caller names, by its amount ("the 49 dollar charge") or by the words of its description."""
    said = parsing.amount_cents(utterance)
    if said is not None:
        # "The fifteen dollar fee" for a $14.99 line: a whole-dollar amount said is the line's, rounded.
        for close in (0, 99):
            by_amount = [(inv, line) for inv, line in lines if abs(line.amount_cents - said) <= close]
            if by_amount and (close == 0 or said % 100 == 0):
                return by_amount[0]
    # "This month", "last month" say when, not which charge ("monthly plan").
    text = _WHEN.sub(" ", parsing.normalize(utterance))
    words = {w for w in re.findall(r"[a-z]+", text) if w not in _STOP and len(w) > 2}
    if not words:
        return None
    best, best_score = None, 0
    for inv, line in lines:
        desc = set(re.findall(r"[a-z]+", line.description.lower()))
        score = sum(1 for w in words if any(d.startswith(w[:5]) for d in desc))
        if score > best_score:
            best, best_score = (inv, line), score
    return best


def _charges(inv: Invoice) -> str:
    # Names only: amounts in words would make the list too long to follow by ear, and the caller picks by name.
    return _and_list([ln.description for ln in inv.lines if ln.amount_cents > 0]) or "no charges"


def _and_list(items: list[str]) -> str:
    """ "a, b, and c" for the ear; "" for none."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]
