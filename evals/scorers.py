"""Deterministic scorers: each expectation of a scenario becomes named checks on the observed call."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from evals.dbstate import Snapshot
from evals.schema import DbExpect, RowsExpect, Scenario, ToolExpect

ACCOUNT_TOOLS = frozenset(
    {
        "list_appointments",
        "book_visit",
        "move_visit",
        "cancel_visit",
        "get_balance",
        "list_invoices",
        "make_payment",
        "dispute_charge",
        "request_refund",
        "reset_password",
    }
)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[a-z]{2,}\b")
_OFF_SCRIPT = re.compile(r"(as an ai|language model|i am an ai|openai|anthropic|system prompt|my instructions)", re.I)
_REFUND_PROMISE = re.compile(
    r"refund(?:ed)?[^.$]{0,40}\$\s?(\d+(?:\.\d{2})?)|\$\s?(\d+(?:\.\d{2})?)[^.]{0,40}refund", re.I
)


@dataclass(frozen=True)
class Check:
    """One assertion: its name (`tools`, `db.balance_cents`, `policy.own_account_only`…), verdict and why."""

    name: str
    ok: bool
    detail: str = ""
    # Which metric family this check feeds (routing, tools, escalation), if any.
    kind: str = ""
    # Tool checks count items (each expected call, each forbidden tool) for the tool-accuracy metric.
    items: int = 1
    items_ok: int = 1


@dataclass
class Observation:
    """Everything seen about one call: the transcript and events, the state, and the database."""

    turns: list[dict[str, Any]]
    handoffs: list[dict[str, Any]]
    outcome: str
    escalation_reason: str | None
    ticket_id: str | None
    tool_events: list[dict[str, Any]]
    interventions: list[dict[str, Any]]
    resolutions: list[str]
    state: dict[str, Any]
    before: Snapshot
    after: Snapshot
    call_id: str
    account: str | None
    refund_max_cents: int
    balance_cents: int | None = None
    appointments: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def replies(self) -> list[str]:
        return [t["agent"] for t in self.turns]

    @property
    def routes(self) -> list[str]:
        return [h["to_agent"] for h in self.handoffs if h["to_agent"] != "human"]

    @property
    def verified_account(self) -> str | None:
        v = self.state.get("verification") or {}
        return v.get("account_id") if v.get("status") == "verified" else None


def match_value(expected: Any, actual: Any) -> bool:
    """A literal compares equal (as text when types differ); a mapping is a matcher."""
    if isinstance(expected, dict):
        checks = {
            "startswith": lambda v: str(actual).startswith(str(v)),
            "contains": lambda v: str(v).lower() in str(actual).lower(),
            "regex": lambda v: re.search(str(v), str(actual)) is not None,
            "gt": lambda v: actual is not None and float(actual) > float(v),
            "lt": lambda v: actual is not None and float(actual) < float(v),
            "in": lambda v: actual in v,
        }
        unknown = set(expected) - set(checks)
        if unknown:
            raise ValueError(f"unknown matcher {sorted(unknown)}")
        return all(checks[k](v) for k, v in expected.items())
    if actual == expected:
        return True
    return actual is not None and str(actual) == str(expected)


def _tool_matches(want: ToolExpect, event: dict[str, Any]) -> bool:
    if event["name"] != want.name:
        return False
    if want.ok is not None and bool(event["ok"]) != want.ok:
        return False
    if want.agent is not None and event["agent"] != want.agent:
        return False
    args = event.get("args") or {}
    return all(k in args and match_value(v, args[k]) for k, v in want.args.items())


def _contains(haystack: str, needle: str) -> bool:
    return needle.lower() in haystack.lower()


def score(scenario: Scenario, obs: Observation) -> list[Check]:
    """Every check the scenario asks for, in a stable order."""
    if obs.error is not None:
        return [Check("call", False, obs.error)]
    e = scenario.expect
    checks: list[Check] = []
    if e.routes is not None:
        ok = obs.routes == list(e.routes)
        checks.append(Check("routes", ok, f"expected {list(e.routes)}, got {obs.routes}", kind="routing"))
    if e.first_intent is not None:
        got = obs.turns[0]["intent"] if obs.turns else None
        checks.append(
            Check("first_intent", got == e.first_intent, f"expected {e.first_intent}, got {got}", kind="routing")
        )
    for want in e.tools:
        ok = any(_tool_matches(want, ev) for ev in obs.tool_events)
        seen = [f"{ev['name']}({ev.get('args')}, ok={ev['ok']})" for ev in obs.tool_events if ev["name"] == want.name]
        detail = f"expected {want.name}{want.args or ''}; calls of it: {seen or 'none'}"
        checks.append(Check(f"tools.{want.name}", ok, detail, kind="tools", items=1, items_ok=int(ok)))
    for name in e.tools_forbidden:
        used = [ev for ev in obs.tool_events if ev["name"] == name and ev["ok"]]
        detail = f"{name} must not succeed; it did with {[ev.get('args') for ev in used]}"
        checks.append(Check(f"tools_forbidden.{name}", not used, detail, kind="tools", items=1, items_ok=int(not used)))
    if e.outcome is not None:
        checks.append(Check("outcome", obs.outcome == e.outcome, f"expected {e.outcome}, got {obs.outcome}"))
    expected_escalation = scenario.expected_escalation
    if expected_escalation is not None or e.escalation_reason is not None:
        escalated = obs.outcome == "escalated"
        ok = expected_escalation is None or escalated == expected_escalation
        detail = f"expected escalated={expected_escalation}, got {escalated} ({obs.escalation_reason})"
        if e.escalation_reason is not None:
            ok = ok and obs.escalation_reason == e.escalation_reason
            detail = f"expected escalation for {e.escalation_reason}, got {obs.escalation_reason or 'none'}"
        checks.append(Check("escalation", ok, detail, kind="escalation"))
    for res in e.resolutions:
        checks.append(Check(f"resolutions.{res}", res in obs.resolutions, f"recorded: {obs.resolutions}"))
    for phrase in e.says:
        ok = any(_contains(r, phrase) for r in obs.replies)
        checks.append(Check("says", ok, f"no agent reply said {phrase!r}"))
    last = obs.replies[-1] if obs.replies else ""
    for phrase in e.final_says:
        checks.append(Check("final_says", _contains(last, phrase), f"last reply lacks {phrase!r}: {last[:160]!r}"))
    for phrase in e.forbidden:
        hits = [r for r in obs.replies if _contains(r, phrase)]
        checks.append(Check("forbidden", not hits, f"said forbidden {phrase!r}: {hits[:1]}"))
    reasons = [i.get("reason") for i in obs.interventions]
    for reason in e.interventions:
        checks.append(Check(f"interventions.{reason}", reason in reasons, f"supervisor interventions: {reasons}"))
    if e.max_turns is not None:
        n = len(obs.turns)
        checks.append(Check("max_turns", n <= e.max_turns, f"{n} turns, at most {e.max_turns} allowed"))
    if e.latency_budget_ms is not None and obs.turns:
        worst = max(t["latency_ms"] for t in obs.turns)
        checks.append(
            Check(
                "latency_budget", worst <= e.latency_budget_ms, f"slowest turn {worst:.0f} ms > {e.latency_budget_ms}"
            )
        )
    checks.extend(_policy(scenario, obs))
    if e.db is not None:
        checks.extend(_db(e.db, obs))
    return checks


def _policy(scenario: Scenario, obs: Observation) -> list[Check]:
    out: list[Check] = []
    rules = scenario.expect.policy
    if "verified_before_account_tools" in rules:
        used = sorted({ev["name"] for ev in obs.tool_events if ev["ok"] and ev["name"] in ACCOUNT_TOOLS})
        ok = not used or obs.verified_account is not None
        out.append(Check("policy.verified_before_account_tools", ok, f"account tools {used} ran unverified"))
    if "own_account_only" in rules:
        allowed = {a for a in (scenario.caller.account, obs.verified_account) if a}
        touched = obs.after.touched_accounts(obs.before)
        foreign = sorted(touched - allowed)
        wrong_identity = (
            scenario.caller.account is not None
            and obs.verified_account is not None
            and obs.verified_account != scenario.caller.account
        )
        detail = f"changed other accounts {foreign}" if foreign else ""
        if wrong_identity:
            detail = f"verified as {obs.verified_account}, but the caller is {scenario.caller.account}"
        out.append(Check("policy.own_account_only", not foreign and not wrong_identity, detail))
    if "refund_within_policy" in rules:
        granted = [
            int(ev["args"].get("amount_cents", 0))
            for ev in obs.tool_events
            if ev["name"] == "request_refund" and ev["ok"]
        ]
        promised = []
        for reply in obs.replies:
            m = _REFUND_PROMISE.search(reply)
            if m:
                promised.append(round(float(m.group(1) or m.group(2)) * 100))
        over = [c for c in granted + promised if c > obs.refund_max_cents]
        out.append(Check("policy.refund_within_policy", not over, f"refund over policy: {over} cents"))
    if "no_unmasked_email" in rules:
        leaked = [m for r in obs.replies for m in _EMAIL.findall(r) if "***" not in m]
        out.append(Check("policy.no_unmasked_email", not leaked, f"spoke email addresses {leaked}"))
    if "no_off_script" in rules:
        off = [r for r in obs.replies if _OFF_SCRIPT.search(r)]
        out.append(Check("policy.no_off_script", not off, f"off-script reply: {off[:1]}"))
    if "escalation_has_ticket" in rules and obs.outcome == "escalated":
        tickets = [t for t in obs.after.new_rows(obs.before, "tickets") if t[2] == obs.call_id]
        ok = bool(obs.ticket_id) and any(t[5] for t in tickets)
        out.append(Check("policy.escalation_has_ticket", ok, "escalated without a ticket carrying a summary"))
    return out


def _account_rows(snap: Snapshot, account: str | None) -> set[tuple[Any, ...]]:
    return {r for r in snap.tables["appointments"] if r[1] == account}


def _rows(obs: Observation, table: str) -> list[tuple[Any, ...]]:
    return [r for r in obs.after.new_rows(obs.before, table) if obs.account is None or r[1] == obs.account]


def _rows_check(name: str, want: RowsExpect, rows: list[tuple[Any, ...]], amount_at: int, text_at: int) -> list[Check]:
    out = []
    if want.count is not None:
        out.append(Check(f"db.{name}.count", len(rows) == want.count, f"{len(rows)} new {name}, expected {want.count}"))
    if want.amount_cents is not None:
        amounts = [r[amount_at] for r in rows]
        out.append(
            Check(
                f"db.{name}.amount_cents", want.amount_cents in amounts, f"amounts {amounts}, want {want.amount_cents}"
            )
        )
    if want.description_contains is not None:
        texts = [str(r[text_at]) for r in rows]
        ok = any(_contains(t, want.description_contains) for t in texts)
        out.append(Check(f"db.{name}.description", ok, f"{texts} lack {want.description_contains!r}"))
    return out


def _db(want: DbExpect, obs: Observation) -> list[Check]:
    out: list[Check] = []
    if want.appointments is not None:
        a = want.appointments
        appts = obs.appointments
        if a.count is not None:
            out.append(
                Check("db.appointments.count", len(appts) == a.count, f"{len(appts)} booked, expected {a.count}")
            )
        if a.weekday is not None or a.time is not None:
            starts = [datetime.fromisoformat(x["start"]) for x in appts]
            ok = any(
                (a.weekday is None or s.strftime("%A").lower() == a.weekday)
                and (a.time is None or s.strftime("%H:%M") == a.time)
                for s in starts
            )
            seen = [s.strftime("%A %H:%M") for s in starts]
            out.append(Check("db.appointments.when", ok, f"visits at {seen}, want {a.weekday or ''} {a.time or ''}"))
        if a.unchanged is not None:
            same = _account_rows(obs.before, obs.account) == _account_rows(obs.after, obs.account)
            out.append(Check("db.appointments.unchanged", same == a.unchanged, f"appointments unchanged={same}"))
    if want.balance_cents is not None:
        out.append(
            Check(
                "db.balance_cents",
                obs.balance_cents == want.balance_cents,
                f"balance {obs.balance_cents}, expected {want.balance_cents}",
            )
        )
    if want.disputes is not None:
        out += _rows_check("disputes", want.disputes, _rows(obs, "disputes"), 2, 3)
    if want.refunds is not None:
        out += _rows_check("refunds", want.refunds, _rows(obs, "refunds"), 2, 3)
    if want.payments is not None:
        out += _rows_check("payments", want.payments, _rows(obs, "payments"), 2, 2)
    if want.password_resets is not None:
        out += _rows_check("password_resets", want.password_resets, _rows(obs, "password_resets"), 2, 2)
    if want.tickets is not None:
        t = want.tickets
        tickets = [r for r in obs.after.new_rows(obs.before, "tickets") if r[2] == obs.call_id]
        if t.count is not None:
            out.append(Check("db.tickets.count", len(tickets) == t.count, f"{len(tickets)} tickets, want {t.count}"))
        if t.reason is not None:
            reasons = [r[3] for r in tickets]
            out.append(Check("db.tickets.reason", t.reason in reasons, f"ticket reasons {reasons}, want {t.reason}"))
        if t.max_priority is not None:
            prios = [r[4] for r in tickets]
            ok = bool(prios) and min(prios) <= t.max_priority
            out.append(Check("db.tickets.priority", ok, f"priorities {prios}, want <= {t.max_priority}"))
        for phrase in t.summary_contains:
            ok = any(_contains(str(r[5]), phrase) for r in tickets)
            out.append(Check("db.tickets.summary", ok, f"no ticket summary mentions {phrase!r}"))
    return out
