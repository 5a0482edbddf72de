"""Background loops that stop on a signal between rounds, not only on a cancel a client library may swallow."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


async def rounds(interval_s: float, stop: asyncio.Event) -> AsyncIterator[int]:
    """Round numbers 1, 2, ... every ``interval_s`` until ``stop`` is set; a wait between rounds ends when it is."""
    n = 0
    while not stop.is_set():
        n += 1
        yield n
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


async def stop_loop(stop: asyncio.Event, task: asyncio.Task[None], grace_s: float) -> None:
    """Set ``stop`` and let ``task`` end its round; cancel it if the round is still running after ``grace_s``.

    A loop stopped only by ``cancel()`` never ends when a call inside its round swallows that one cancel
    (a database pool returning its connection, a client tidying up): it sleeps into its next round, and
    whoever awaits it waits for ever. A loop of `rounds` ends at the next round either way.
    """
    stop.set()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(task, grace_s)
