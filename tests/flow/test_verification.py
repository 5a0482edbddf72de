"""Caller verification across calls: no account enumeration, failure limits per caller ID and account, cool-down."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel

from agents.ports import Customer, Customers
from agents.testing import FunctionChatModel, ScriptedChatModel
from orchestrator.config import load_settings
from orchestrator.domain import DEFAULT_VERIFICATION_LIMITS, Lockout, watch_lockouts
from orchestrator.results import CallResult
from orchestrator.runtime import Services
from orchestrator.session.text import run_text_call
from orchestrator.store.records import CallStore
from orchestrator.telemetry.service import Telemetry
from tests.flow.conftest import NOW
from tests.flow.test_llm_specialists import OneModel

pytestmark = pytest.mark.flow

JAMES, AISHA, TOM, DAVID = "+15550100002", "+15550100003", "+15550100004", "+15550100008"
ZIPS = {JAMES: "10453", AISHA: "11375", TOM: "11215", DAVID: "10011"}
NOBODY = "+15559991234"  # no account has this number
LIMIT = DEFAULT_VERIFICATION_LIMITS.max_failures


class VirtualClock:
    """The tenant's "now", moved by the test instead of waited for."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(NOW)


@pytest.fixture
async def svc(tmp_path: Path, clock: VirtualClock) -> AsyncIterator[Services]:
    services = await Services.open(load_settings(data_dir=tmp_path / "data"), clock=clock)
    try:
        yield services
    finally:
        await services.aclose()


@pytest.fixture
def lockouts(svc: Services) -> list[Lockout]:
    seen: list[Lockout] = []
    watch_lockouts(svc.tenant, seen.append)
    return seen


async def call(svc: Services, *turns: str, caller_id: str | None = None) -> CallResult:
    return await run_text_call(svc, turns, caller_id=caller_id)


def agent_lines(result: CallResult) -> list[str]:
    return [t.agent for t in result.turns]


async def guess(svc: Services, caller_id: str | None, phone: str, *zips: str) -> CallResult:
    """A call that asks for the balance, claims `phone` and guesses `zips` (then hangs up)."""
    return await call(svc, "What's my balance?", phone, *zips, caller_id=caller_id)


# ------------------------------------------------------------------ enumeration


async def test_a_spoken_number_with_no_account_is_answered_like_a_customers_number_with_a_wrong_zip(
    svc: Services,
) -> None:
    known = await guess(svc, None, "555 010 0002", "99999", "88888", "77777")
    unknown = await guess(svc, None, "555 999 1234", "99999", "88888", "77777")
    assert agent_lines(unknown) == agent_lines(known)
    assert "ZIP code" in known.turns[1].agent
    for result in (known, unknown):
        assert (result.outcome, result.escalation_reason) == ("escalated", "verification_failed")
        assert not [e for e in result.tool_events if e["name"] == "get_balance"]


class RecordingCustomers:
    """The tenant's real customer lookups, noting which ones verification asked for, in order."""

    def __init__(self, inner: Customers) -> None:
        self.inner = inner
        self.calls: list[str] = []

    async def find_by_phone(self, phone: str) -> Customer | None:
        self.calls.append("find_by_phone")
        return await self.inner.find_by_phone(phone)

    async def get(self, account_id: str) -> Customer:
        self.calls.append("get")
        return await self.inner.get(account_id)

    async def check_second_factor(self, account_id: str, zip_code: str) -> bool:
        self.calls.append("check_second_factor")
        return await self.inner.check_second_factor(account_id, zip_code)

    async def match_name_and_zip(self, name: str, zip_code: str) -> Customer | None:
        self.calls.append("match_name_and_zip")
        return await self.inner.match_name_and_zip(name, zip_code)

    async def send_password_reset(self, account_id: str, *, key: str | None = None) -> str:
        self.calls.append("send_password_reset")
        return await self.inner.send_password_reset(account_id, key=key)


async def test_a_number_with_no_account_takes_the_same_lookups_as_a_wrong_zip(svc: Services) -> None:
    recorded = []
    for phone in ("555 010 0002", "555 999 1234"):
        customers = RecordingCustomers(svc.tenant.customers)
        svc.context.tenant = replace(svc.tenant, customers=customers)
        await guess(svc, None, phone, "99999", "88888")
        recorded.append(customers.calls)
    assert recorded[0] == recorded[1] == ["find_by_phone", "check_second_factor"] * 2


async def test_a_caller_id_with_no_account_is_asked_what_a_customers_caller_id_is_asked(svc: Services) -> None:
    known = await call(svc, "What's my balance?", "99999", caller_id=JAMES)
    unknown = await call(svc, "What's my balance?", "99999", caller_id=NOBODY)
    assert agent_lines(unknown) == agent_lines(known)
    assert "ZIP code" in known.turns[0].agent


async def test_a_caller_whose_caller_id_has_no_account_can_give_the_accounts_number_instead(svc: Services) -> None:
    result = await call(svc, "What's my balance?", "My account is under 555 010 0008", "10011", caller_id=NOBODY)
    assert [e["name"] for e in result.tool_events if e["ok"]] == ["get_balance"]
    assert "David" in result.turns[2].agent


# ------------------------------------------------------------------ limits across calls


async def test_guesses_spread_over_calls_from_one_caller_id_lock_it(svc: Services, lockouts: list[Lockout]) -> None:
    attacker = "+15557770001"
    # Two wrong ZIPs a call (under the per-call limit of three), each call on another account: only the
    # caller ID's count reaches the limit.
    for phone in (JAMES, AISHA):
        result = await guess(svc, attacker, phone, "99999", "88888")
        assert result.escalation_reason is None
    third = await guess(svc, attacker, TOM, "99999", "88888")
    assert (third.outcome, third.escalation_reason) == ("escalated", "verification_locked")
    assert [lo.subject for lo in lockouts] == ["caller ***0001"]

    # The right ZIP no longer helps from that caller ID, and nothing is read from the account.
    right = await guess(svc, attacker, DAVID, ZIPS[DAVID])
    assert (right.outcome, right.escalation_reason) == ("escalated", "verification_locked")
    assert not right.tool_events or all(e["name"] == "transfer_to_human" for e in right.tool_events)
    assert len(lockouts) == 1, "one lock, one alert"
    # The accounts guessed at are not locked: their owners still get through.
    owner = await call(svc, "What's my balance?", ZIPS[DAVID], caller_id=DAVID)
    assert [e["name"] for e in owner.tool_events if e["ok"]] == ["get_balance"]


async def test_one_account_guessed_at_from_many_caller_ids_is_locked(svc: Services, lockouts: list[Lockout]) -> None:
    callers = [f"+1555777{i:04d}" for i in range(3)]
    results = [await guess(svc, c, JAMES, "99999", "88888") for c in callers]
    assert [r.escalation_reason for r in results] == [None, None, "verification_locked"]
    assert [lo.key for lo in lockouts] == ["account:NW-1002"]
    assert lockouts[0].subject == "account NW-1002"

    # A new caller ID with the right ZIP, even James from his own phone: the account stays locked.
    for caller_id in ("+15557779999", JAMES):
        result = await guess(svc, caller_id, JAMES, ZIPS[JAMES])
        assert (result.outcome, result.escalation_reason) == ("escalated", "verification_locked")
        assert "get_balance" not in [e["name"] for e in result.tool_events]


async def test_the_lock_of_a_number_with_no_account_looks_like_a_customers(
    svc: Services, lockouts: list[Lockout]
) -> None:
    callers = [f"+1555888{i:04d}" for i in range(3)]
    known = [await guess(svc, None, "555 010 0003", "99999", "88888") for _ in callers]
    unknown = [await guess(svc, None, "555 999 1234", "99999", "88888") for _ in callers]
    assert [agent_lines(r) for r in unknown] == [agent_lines(r) for r in known]
    assert [r.escalation_reason for r in unknown] == [None, None, "verification_locked"]
    assert [lo.subject for lo in lockouts] == ["account NW-1003", "phone ***1234"]


async def test_after_the_cool_down_the_right_zip_verifies_again(
    svc: Services, clock: VirtualClock, lockouts: list[Lockout]
) -> None:
    for i in range(3):
        await guess(svc, f"+1555777{i:04d}", JAMES, "99999", "88888")
    assert len(lockouts) == 1
    clock.now += DEFAULT_VERIFICATION_LIMITS.cooldown - timedelta(seconds=1)
    still = await guess(svc, JAMES, JAMES, ZIPS[JAMES])
    assert still.escalation_reason == "verification_locked"

    clock.now += timedelta(seconds=2)
    back = await guess(svc, JAMES, JAMES, ZIPS[JAMES])
    assert [e["name"] for e in back.tool_events if e["ok"]] == ["get_balance"]
    # Failures from before the lock ended are not counted again: one more wrong ZIP does not re-lock.
    once = await guess(svc, "+15557770099", JAMES, "99999")
    assert once.escalation_reason is None
    assert len(lockouts) == 1


class SpecialistsAndHandover(OneModel):
    """The specialists' strict model; the handover note to the human desk has a model of its own."""

    def __init__(self, model: BaseChatModel) -> None:
        super().__init__(model)
        self.handover = FunctionChatModel(lambda request: "Handover: the caller could not be verified.")

    def model_for(self, intent: str, confidence: float, failures: int = 0) -> BaseChatModel:
        return self.handover if intent == "escalation" else self.model


async def test_llm_specialists_verify_the_same_way_and_never_ask_the_model_while_locked(
    open_services: Callable[..., Any],
) -> None:
    model = ScriptedChatModel([])  # no specialist turn may reach the model before verification
    services: Services = await open_services(models=SpecialistsAndHandover(model))
    try:
        known = await guess(services, None, "555 010 0002", "99999", "88888")
        unknown = await guess(services, None, "555 999 1234", "99999", "88888")
        assert agent_lines(unknown) == agent_lines(known)
        results = [await guess(services, f"+1555666{i:04d}", JAMES, "99999", "88888") for i in range(2)]
        assert [r.escalation_reason for r in results] == [None, "verification_locked"]
        locked = await guess(services, JAMES, JAMES, ZIPS[JAMES])
        assert locked.escalation_reason == "verification_locked"
    finally:
        await services.aclose()
    model.assert_complete()


async def test_a_lock_raises_one_verification_lockout_alert_in_the_process_telemetry(
    svc: Services, tmp_path: Path
) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    telemetry = Telemetry.build(settings, store=await CallStore.open(svc.engine, settings), simple=True)
    try:
        watch_lockouts(svc.tenant, telemetry.verification_lockout)  # as the worker processes wire it
        for i in range(3):
            await guess(svc, f"+1555777{i:04d}", JAMES, "99999", "88888")
        await guess(svc, JAMES, JAMES, ZIPS[JAMES])  # refused while locked: no second alert
    finally:
        await telemetry.aclose()
    alerts = [a for a in telemetry.alerts.stream.recent() if a.rule == "verification_lockout"]
    assert [(a.severity, a.value) for a in alerts] == [("critical", LIMIT)]
    assert "account NW-1002" in alerts[0].message
    assert "0100002" not in alerts[0].message  # no phone number in an alert
