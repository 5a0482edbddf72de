"""A tiny worker process for the crash test: claims one call, prints it, and holds it with heartbeats until killed."""

from __future__ import annotations

import asyncio
import sys

from orchestrator.queue import CallQueue, ClaimedCall, Reclaimer


async def main(url: str, prefix: str, consumer: str) -> None:
    q = CallQueue.from_url(url, prefix=prefix)
    held: list[ClaimedCall] = []
    keeper = Reclaimer(q, consumer, slots=1, held=lambda: held, free_slots=lambda: 1 - len(held),
                       on_claimed=held.extend)  # fmt: skip
    try:
        async with keeper:
            while not held:
                held.extend(await q.claim(consumer, count=1, block_ms=200))
            call = held[0]
            print(f"claimed {call.call_id} {call.attempt}", flush=True)
            # the "session" lasts until the test kills this process
            await asyncio.Event().wait()
    finally:
        await q.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
