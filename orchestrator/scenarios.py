"""Scripted demo callers covering every specialist and escalation; the demo and the simulator use them."""

from __future__ import annotations

from dataclasses import dataclass, replace

from orchestrator.domain.seed import DEMO_CUSTOMERS, all_customers


@dataclass(frozen=True)
class Scenario:
    """A scripted caller: who they are and what they say, turn by turn."""

    name: str
    caller_id: str | None
    turns: tuple[str, ...]
    expect_outcome: str
    expect_route: str


# Demo customers (orchestrator/domain/README.md): +15550100001 Maria (ZIP 10027), +15550100002 James (10453),
# +15550100003 Aisha (11375), +15550100004 Tom (11215, in the outage), +15550100007 Sofia (10301).
SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "book a technician visit",
        "+15550100008",
        ("I'd like to book a technician visit", "10011", "the second one", "yes", "no, that's all"),
        "resolved",
        "scheduling",
    ),
    Scenario(
        "move an appointment",
        "+15550100001",
        ("I need to reschedule my technician appointment", "10027", "the first one", "yes", "no thanks"),
        "resolved",
        "scheduling",
    ),
    Scenario(
        "pay the balance",
        None,
        ("What's my balance?", "555 010 0002", "10453", "yes", "yes", "that's all, bye"),
        "resolved",
        "billing",
    ),
    Scenario(
        "dispute a charge",
        "+15550100003",
        ("There's a premium channel pack charge on my bill I never ordered", "11375", "yes", "no thanks"),
        "resolved",
        "billing",
    ),
    Scenario(
        "refund within policy",
        "+15550100007",
        ("I'd like a refund for the technician visit fee", "10301", "yes", "no"),
        "resolved",
        "billing",
    ),
    Scenario(
        "outage check",
        "+15550100004",
        ("Is there an outage in my area? My internet is down.", "11215", "no thanks"),
        "resolved",
        "support",
    ),
    Scenario(
        "router restart walkthrough",
        None,
        ("My wifi is really slow", "done", "ok", "done", "done", "done", "yes", "no thanks"),
        "resolved",
        "support",
    ),
    Scenario(
        "password reset",
        "+15550100005",
        ("I forgot my password and can't log in", "10021", "no that's all"),
        "resolved",
        "support",
    ),
    Scenario(
        "topic change: billing then scheduling",
        "+15550100003",
        ("How much do I owe?", "11375", "no", "Actually, can I book a technician visit?", "the first one", "yes", "no"),
        "resolved",
        "billing",
    ),
    Scenario("asks for a human", None, ("I want to speak to a real person",), "escalated", "escalation"),
    Scenario(
        "legal threat",
        "+15550100006",
        ("I've been overcharged for months and I'm calling my lawyer",),
        "escalated",
        "escalation",
    ),
)


# Scenarios whose caller can be any customer: later rounds of a simulation give them other (filler)
# accounts, so a batch of simulated calls is not the same few people calling many times at once.
_ANY_CUSTOMER = {"book a technician visit": ("10011", 1)}


def simulated_caller(index: int) -> Scenario:
    """The index-th simulated caller: the scenarios round-robin, with varied accounts where they allow it."""
    scenario = SCENARIOS[index % len(SCENARIOS)]
    round_ = index // len(SCENARIOS)
    if round_ == 0 or scenario.name not in _ANY_CUSTOMER:
        return scenario
    zip_code, zip_turn = _ANY_CUSTOMER[scenario.name]
    fillers = all_customers()[len(DEMO_CUSTOMERS) :]
    customer = fillers[(round_ - 1) % len(fillers)]
    turns = list(scenario.turns)
    assert turns[zip_turn] == zip_code
    turns[zip_turn] = customer.zip_code
    return replace(scenario, caller_id=customer.phone, turns=tuple(turns))
