"""A background loop of `orchestrator.loops` ends when told, even when a round swallowed its cancellation."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.loops import rounds, stop_loop

pytestmark = pytest.mark.unit


async def test_rounds_count_up_and_end_once_stopped() -> None:
    stop = asyncio.Event()
    seen: list[int] = []
    async for n in rounds(0, stop):
        seen.append(n)
        if n == 3:
            stop.set()
    assert seen == [1, 2, 3]


async def test_the_wait_between_rounds_ends_when_stopped() -> None:
    stop = asyncio.Event()
    ran = asyncio.Event()
    seen: list[int] = []

    async def loop() -> None:
        async for n in rounds(3600, stop):
            seen.append(n)
            ran.set()

    task = asyncio.create_task(loop())
    await ran.wait()
    await asyncio.sleep(0)  # one turn of the loop: it is in its hour's wait now
    stop.set()
    await asyncio.wait_for(task, 60)
    assert seen == [1]


async def test_a_loop_whose_round_swallows_the_cancel_still_ends() -> None:
    stop = asyncio.Event()
    in_round = asyncio.Event()
    finished: list[str] = []

    async def loop() -> None:
        async for _ in rounds(3600, stop):
            in_round.set()
            try:
                await asyncio.Event().wait()  # a round that never ends by itself
            except asyncio.CancelledError:
                pass  # swallowed, as a client library may
        finished.append("ended")

    task = asyncio.create_task(loop())
    await in_round.wait()
    await stop_loop(stop, task, grace_s=0.01)
    assert task.done()
    assert finished == ["ended"]
