"""The eval suite format: suites of scenarios (persona, caller profile, script or simulator, expectations)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Outcome = Literal["resolved", "escalated", "abandoned", "handled_by_human"]
Specialist = Literal["scheduling", "billing", "support", "escalation", "human"]
Intent = Literal["scheduling", "billing", "support", "escalation", "out_of_scope"]

PolicyRule = Literal[
    "verified_before_account_tools",
    "own_account_only",
    "refund_within_policy",
    "no_unmasked_email",
    "no_off_script",
    "escalation_has_ticket",
]
# Invariants every call must keep unless a scenario lists its own `policy`.
POLICY_RULES: tuple[PolicyRule, ...] = (
    "verified_before_account_tools",
    "own_account_only",
    "refund_within_policy",
    "no_unmasked_email",
    "no_off_script",
    "escalation_has_ticket",
)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class _Strict(BaseModel):
    # A typo in a suite file must fail loudly, not be ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class CallerProfile(_Strict):
    """Who calls: the account, what caller ID shows, and how they answer verification questions.

    Attributes:
        account: the demo account (`NW-1001`…); fills in phone and ZIP when they are not given.
        caller_id: the number the call arrives from; defaults to the account's phone.
        withheld: the caller ID is withheld (the agent must ask for the phone number).
        phone: what the caller says when asked for the account's phone number.
        zip: what the caller says when asked for the ZIP code.
        zip_attempts: answers to successive ZIP questions before `zip` (wrong codes for failed verification).
        phone_attempts: answers to successive phone questions before `phone`.
        service_zip: the service address ZIP for an outage check (defaults to `zip`).
    """

    account: str | None = Field(default=None, pattern=r"^NW-\d{4}$")
    caller_id: str | None = Field(default=None, pattern=r"^\+\d{11}$")
    withheld: bool = False
    phone: str | None = None
    zip: str | None = Field(default=None, pattern=r"^\d{5}$")
    zip_attempts: list[str] = Field(default_factory=list)
    phone_attempts: list[str] = Field(default_factory=list)
    service_zip: str | None = Field(default=None, pattern=r"^\d{5}$")


class SimulatedCaller(_Strict):
    """A persona-driven simulated caller: opens with a request and answers the agent's questions.

    On the embedded default the simulator is deterministic and answers from these fields; with an LLM
    key it is a model playing the persona (the fields become its briefing).

    Attributes:
        opening: the first thing the caller says.
        followups: further requests, said when the agent asks "anything else?" (a topic change).
        slot: how the caller picks among offered visit slots ("the first one", "Friday", "afternoon").
        confirm: the answer to "shall I…?" confirmations.
        pay_now: the answer to "would you like to pay it now?".
        amount: what the caller says when asked how much to pay.
        charge: which charge they mean when asked.
        restart: whether they accept the router restart walkthrough.
        fixed: whether the walkthrough fixed their problem.
        technician: whether they accept a technician visit offer.
        transfer: whether they accept a transfer to a human specialist.
        book_if_none: whether they book a visit when none is found.
        step_reply: what they say after each walkthrough step.
        max_turns: the simulator hangs up after this many turns.
    """

    opening: str = Field(min_length=1)
    followups: list[str] = Field(default_factory=list)
    slot: str = "the first one"
    confirm: bool = True
    pay_now: bool = True
    amount: str = "all of it"
    charge: str | None = None
    restart: bool = True
    fixed: bool = True
    technician: bool = True
    transfer: bool = True
    book_if_none: bool = True
    step_reply: str = "done"
    max_turns: int = Field(default=12, ge=1, le=40)


ArgMatcher = Any  # a literal, or {"startswith"|"contains"|"regex"|"gt"|"lt"|"in": …}


class ToolExpect(_Strict):
    """A tool the agent must call; `args` is a subset match (each value a literal or a matcher)."""

    name: str
    args: dict[str, ArgMatcher] = Field(default_factory=dict)
    ok: bool | None = True
    agent: str | None = None


class AppointmentsExpect(_Strict):
    """The caller's live technician visits after the call."""

    count: int | None = Field(default=None, ge=0)
    weekday: str | None = None
    time: str | None = Field(default=None, pattern=r"^\d{2}:\d{2}$")
    unchanged: bool | None = None

    @field_validator("weekday")
    @classmethod
    def _weekday(cls, value: str | None) -> str | None:
        if value is not None and value.lower() not in WEEKDAYS:
            raise ValueError(f"must be a weekday name, not {value!r}")
        return value.lower() if value else value


class RowsExpect(_Strict):
    """New rows of one kind (disputes, refunds, payments, password resets) created by the call."""

    count: int | None = Field(default=None, ge=0)
    amount_cents: int | None = None
    description_contains: str | None = None


class TicketsExpect(_Strict):
    """Human-desk tickets opened by the call."""

    count: int | None = Field(default=None, ge=0)
    reason: str | None = None
    max_priority: int | None = Field(default=None, ge=0)
    summary_contains: list[str] = Field(default_factory=list)


class DbExpect(_Strict):
    """The final domain state, read from the tenant's database after the call."""

    appointments: AppointmentsExpect | None = None
    balance_cents: int | None = None
    disputes: RowsExpect | None = None
    refunds: RowsExpect | None = None
    payments: RowsExpect | None = None
    password_resets: RowsExpect | None = None
    tickets: TicketsExpect | None = None


class Expect(_Strict):
    """What a scenario checks. Every field is optional; only the given ones are asserted.

    Attributes:
        routes: the specialists the call was handed to, in order (handoffs to `human` excluded).
        first_intent: the router's reading of the first turn.
        tools: tools that must have been called, with a subset match on arguments.
        tools_forbidden: tools that must not have succeeded.
        outcome: the call's outcome.
        escalated: whether the call reached a human.
        escalation_reason: why it did.
        resolutions: requests that must be recorded as fulfilled (`billing:pay`).
        says: phrases some agent reply must contain (case-insensitive).
        final_says: phrases the last agent reply must contain.
        forbidden: phrases no agent reply may contain.
        interventions: supervisor intervention reasons that must have happened.
        max_turns: the call must finish within this many caller turns.
        latency_budget_ms: no single turn may take longer.
        policy: invariants to check; defaults to all of them.
        db: the final domain state.
        rubrics: LLM-as-judge rubrics, run only when a key is configured.
    """

    routes: list[Specialist] | None = None
    first_intent: Intent | None = None
    tools: list[ToolExpect] = Field(default_factory=list)
    tools_forbidden: list[str] = Field(default_factory=list)
    outcome: Outcome | None = None
    escalated: bool | None = None
    escalation_reason: str | None = None
    resolutions: list[str] = Field(default_factory=list)
    says: list[str] = Field(default_factory=list)
    final_says: list[str] = Field(default_factory=list)
    forbidden: list[str] = Field(default_factory=list)
    interventions: list[str] = Field(default_factory=list)
    max_turns: int | None = Field(default=None, ge=1)
    latency_budget_ms: float | None = Field(default=None, gt=0)
    policy: list[PolicyRule] = Field(default_factory=lambda: list(POLICY_RULES))
    db: DbExpect | None = None
    rubrics: list[str] = Field(default_factory=list)


class Scenario(_Strict):
    """One eval scenario: a persona with a goal, a caller, a script or a simulator, and expectations."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    persona: str = Field(min_length=1)
    goal: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    caller: CallerProfile = Field(default_factory=CallerProfile)
    turns: list[str] | None = None
    simulate: SimulatedCaller | None = None
    expect: Expect = Field(default_factory=Expect)
    # A known agent bug: the scenario is expected to fail for this reason (a pass is reported).
    expect_failure: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_driver(self) -> Scenario:
        if (self.turns is None) == (self.simulate is None):
            raise ValueError("give exactly one of `turns` (scripted) or `simulate` (simulated caller)")
        if self.turns is not None and not self.turns:
            raise ValueError("`turns` must not be empty")
        return self

    @property
    def expected_escalation(self) -> bool | None:
        """Whether this scenario expects a human at the end (None when it does not say)."""
        if self.expect.escalated is not None:
            return self.expect.escalated
        if self.expect.outcome is not None:
            return self.expect.outcome == "escalated"
        return None


class Suite(_Strict):
    """A suite file: a name, a description and its scenarios."""

    suite: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    scenarios: list[Scenario] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Suite:
        seen: set[str] = set()
        for s in self.scenarios:
            if s.id in seen:
                raise ValueError(f"duplicate scenario id {s.id!r}")
            seen.add(s.id)
        return self


def slug(text: str) -> str:
    """A scenario-id-like slug of free text (used in generated reports)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
