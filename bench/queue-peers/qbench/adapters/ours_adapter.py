"""The team's own queue (orchestrator.queue.CallQueue) as one more adapter, shaped like a real worker.

The worker does what orchestrator/worker will do: claim only as many calls as it has free slots
(``--concurrency``), run each call as its own task that acks when the "session" ends, and keep a
``Reclaimer`` ticking (slot registration, heartbeats of held calls, XAUTOCLAIM of dead workers'
calls, due retries). The job's two arguments travel in ``CallJob.metadata``.

Both kill profiles use the queue's production defaults (reclaim idle 1.5 s, heartbeat 0.5 s):
they are already shorter than the other adapters' "tuned" timers.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

# Run from the main repo's venv (redis-py 8); make the repo importable even without an install.
sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from orchestrator.contracts import CallJob  # noqa: E402
from orchestrator.queue import CallQueue, ClaimedCall, Reclaimer  # noqa: E402
from qbench.common import on_job, parse_cli, produce_async  # noqa: E402

PREFIX = "qbench-ours"
# The harness enqueues 20,000 jobs with no worker running: admission control must not refuse them.
OPTIONS = {"prefix": PREFIX, "max_depth": 10**9, "max_expected_wait_s": 1e12}


async def worker(url: str, slots: int) -> None:
    q = CallQueue.from_url(url, max_connections=slots + 8, **OPTIONS)
    consumer = f"bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    held: dict[str, ClaimedCall] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def run(call: ClaimedCall) -> None:
        seconds = on_job(float(call.job.metadata["ts"]), call.job.metadata["k"])
        if seconds:
            await asyncio.sleep(seconds)
        await q.ack(call)
        held.pop(call.entry_id, None)

    def start(calls: list[ClaimedCall]) -> None:
        for call in calls:
            held[call.entry_id] = call
            t = asyncio.create_task(run(call))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    keeper = Reclaimer(q, consumer, slots=slots, held=lambda: list(held.values()),
                       free_slots=lambda: slots - len(held), on_claimed=start)
    keeper.start()
    try:
        while True:
            free = slots - len(held)
            if free <= 0:
                await asyncio.sleep(0.001)
                continue
            start(await q.claim(consumer, count=free, block_ms=1000))
            await asyncio.sleep(0)  # let the call tasks start before the next claim
    finally:
        await keeper.aclose()
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await q.aclose()


async def produce(url: str, n: int, rate: float, kind: str) -> None:
    q = CallQueue.from_url(url, **OPTIONS)
    try:

        async def enqueue(ts: float, k: str) -> None:
            call_id = uuid.uuid4().hex
            await q.admit(CallJob(call_id=call_id, source="simulate", room=call_id,
                                  metadata={"ts": repr(ts), "k": k}))

        await produce_async(enqueue, n, rate, kind)
    finally:
        await q.aclose()


def main() -> None:
    a = parse_cli()
    if a.role == "worker":
        asyncio.run(worker(a.url, a.concurrency))
    else:
        asyncio.run(produce(a.url, a.n, a.rate, a.kind))


if __name__ == "__main__":
    main()
