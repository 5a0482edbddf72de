"""Runs the agent worker's process pool (no LiveKit server) with one dispatched spoken call; prints its /metrics.

The call runs in a job process of its own, as in production; the page printed is what the agent worker's
readiness server serves on /metrics once that call ended, read while the pool still runs.

A separate script because the pool's forkserver children re-import `__main__`, which must be guarded.
Usage: agent_pool.py READINESS_PORT CALL_ID ROOM PREFIX
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
from typing import Any

from tests.flow.agent_worker_support.run_pool import dispatch_fake_job, pop_marker

CALLER = "+15550100001"
SCRIPT = ["What's my balance?", "10027"]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


async def main(port: int, call_id: str, room: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    from orchestrator.config import get_settings
    from orchestrator.contracts import CallJob
    from orchestrator.queue import ClaimedCall
    from orchestrator.runtime import Services
    from orchestrator.worker.agent_worker import ReadinessServer, build_server
    from orchestrator.worker.dispatch import dispatch_metadata, session_ended_key

    settings = get_settings()
    # The queue worker and the API seed the tenant; the agent's jobs do not.
    await (await Services.open(settings)).aclose()
    server = build_server(settings)
    readiness = ReadinessServer(server, port=port)
    await readiness.start()
    runner = asyncio.create_task(server.run(devmode=False, unregistered=True))
    redis = aioredis.Redis.from_url(settings.redis_url or "redis://127.0.0.1:6379/15")
    out: dict[str, Any] = {}
    try:
        # `run()` builds the process pool as it starts (private: what `simulate_job` itself uses).
        for _ in range(600):
            if getattr(server, "_proc_pool", None) is not None:
                break
            await asyncio.sleep(0.1)
        job = CallJob(call_id=call_id, source="simulate", room=room, caller_id=CALLER, script=SCRIPT)
        claimed = ClaimedCall(
            job=job,
            entry_id="1-0",
            priority=1,
            deliveries=1,
            waited_s=0.012,
            consumer="queue-worker-1",
            claimed_at=time.monotonic(),
        )
        await dispatch_fake_job(server, room, json.dumps(dispatch_metadata(claimed, prefix=prefix)))
        out["call_marker"] = await pop_marker(redis, session_ended_key(prefix, call_id), 180)
        # The job publishes its figures as its call ends; poll the page for them (generous cap).
        text = ""
        for _ in range(300):
            text = await asyncio.to_thread(scrape, port)
            if "cc_calls_total{" in text:
                break
            await asyncio.sleep(0.2)
        out["metrics"] = text
    finally:
        await redis.aclose()
        await server.aclose()
        runner.cancel()
        await readiness.aclose()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))
