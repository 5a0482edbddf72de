"""A visit time taken by someone else between the offer and the caller's yes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from orchestrator.runtime import Services
from orchestrator.session.text import TextCall

pytestmark = pytest.mark.flow

DAVID = "+15550100008"
OTHERS = ["NW-1003", "NW-1004", "NW-1005", "NW-1006", "NW-1007"]


async def _chosen(call: TextCall) -> dict[str, Any]:
    state = await call.state()
    chosen: dict[str, Any] = state["task"]["slots"]["chosen"]
    return chosen


async def _offer_and_choose(call: TextCall) -> dict[str, Any]:
    await call.say("I need a technician to come and fix my connection")
    await call.say("10011")
    await call.say("the second one")
    return await _chosen(call)


async def test_a_technician_taken_meanwhile_is_replaced_by_another_free_at_that_time(services: Services) -> None:
    call = TextCall(services, caller_id=DAVID)
    try:
        chosen = await _offer_and_choose(call)
        await services.tenant.scheduling.book(OTHERS[0], chosen["slot_id"], "someone else's visit")
        done = await call.say("yes")
    finally:
        await call.aclose()
    (visit,) = await services.tenant.scheduling.appointments("NW-1008")
    # The caller chose a time, not a technician: the visit is at that time, in another technician's slot.
    assert visit.start == datetime.fromisoformat(chosen["start"])
    assert visit.slot_id != chosen["slot_id"]
    assert "will visit on" in done.agent


async def test_a_time_taken_meanwhile_is_not_offered_again(services: Services) -> None:
    call = TextCall(services, caller_id=DAVID)
    try:
        chosen = await _offer_and_choose(call)
        start = datetime.fromisoformat(chosen["start"])
        # Every technician free at that time is booked by other customers.
        await services.tenant.scheduling.book(OTHERS[0], chosen["slot_id"], "taken")
        for account in OTHERS[1:]:
            free = await services.tenant.scheduling.open_slots(on_or_after=start.date(), limit=48)
            same = [s for s in free if s.start == start]
            if not same:
                break
            await services.tenant.scheduling.book(account, same[0].slot_id, "taken")
        assert not [
            s
            for s in await services.tenant.scheduling.open_slots(on_or_after=start.date(), limit=48)
            if s.start == start
        ]
        done = await call.say("yes")
        offered = (await call.state())["task"]["slots"]["offered"]
    finally:
        await call.aclose()
    assert done.agent.startswith("I'm sorry, that time was just taken")
    assert await services.tenant.scheduling.appointments("NW-1008") == []
    assert all(datetime.fromisoformat(s["start"]) != start for s in offered)
