"""A phone caller's keypad: digits become one turn at '#' or a pause, and an entry keyed while the agent talks waits."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.session.telephony import MAX_DIGITS, Keypad

pytestmark = pytest.mark.unit

CAP_S = 10.0


class Submitted:
    def __init__(self) -> None:
        self.entries: list[str] = []
        self.changed = asyncio.Event()

    async def __call__(self, entry: str) -> None:
        self.entries.append(entry)
        self.changed.set()

    async def wait_for(self, count: int) -> list[str]:
        async def until() -> None:
            while len(self.entries) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), CAP_S)
        return self.entries


def keys(pad: Keypad, text: str) -> None:
    for key in text:
        pad.key(key)


async def test_the_end_key_hands_over_the_digits_at_once() -> None:
    got = Submitted()
    # A pause far beyond the test: only '#' can end the entry.
    pad = Keypad(got, pause_s=3600)
    keys(pad, "10027#")
    assert await got.wait_for(1) == ["10027"]
    await pad.aclose()


async def test_a_pause_ends_the_entry_and_star_starts_it_again() -> None:
    got = Submitted()
    pad = Keypad(got, pause_s=0.05)
    keys(pad, "99*5550100001")
    assert await got.wait_for(1) == ["5550100001"]
    await pad.aclose()


async def test_an_entry_keyed_while_the_agent_speaks_waits_for_it_to_listen() -> None:
    got = Submitted()
    pad = Keypad(got, pause_s=3600)
    pad.set_busy(True)
    keys(pad, "10027#")
    keys(pad, "12#")
    await asyncio.sleep(0)  # any submission would have been scheduled by now
    assert got.entries == []
    assert pad.pending == ["10027", "12"]
    pad.set_busy(False)
    assert await got.wait_for(1) == ["10027"]
    # One at a time: the next entry waits for the reply to the first one to be over.
    assert pad.pending == ["12"]
    pad.set_busy(True)
    pad.set_busy(False)
    assert await got.wait_for(2) == ["10027", "12"]
    await pad.aclose()


async def test_only_digits_count_and_an_entry_is_bounded() -> None:
    got = Submitted()
    pad = Keypad(got, pause_s=3600)
    keys(pad, "#")  # an empty entry is no turn
    keys(pad, "1A2D" + "9" * (MAX_DIGITS + 5) + "#")
    assert await got.wait_for(1) == ["12" + "9" * (MAX_DIGITS - 2)]
    await pad.aclose()
