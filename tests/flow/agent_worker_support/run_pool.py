"""Runs the agent worker's process pool with no LiveKit server and one simulated job; prints what happened.

A separate script because the pool's forkserver children re-import `__main__`, which must be guarded.
Usage: run_pool.py READINESS_PORT ROOM PREFIX
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def main(port: int, room: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    from orchestrator.config import get_settings
    from orchestrator.session.livekit_worker import ReadinessServer, build_server
    from orchestrator.worker.dispatch import session_ended_key

    settings = get_settings()
    server = build_server(settings)
    readiness = ReadinessServer(server, port=port, host="127.0.0.1")
    await readiness.start()
    runner = asyncio.create_task(server.run(devmode=False, unregistered=True))
    out: dict[str, object] = {"readyz_unregistered": await asyncio.to_thread(readyz, port)}
    redis = aioredis.Redis.from_url(settings.redis_url or "redis://127.0.0.1:6379/15")
    try:
        await server.simulate_job(room, fake_job=True)
        out["active_jobs"] = len(server.active_jobs)
        # A fake room never closes, so the session would wait for ever: give the job time to open the
        # store, the graph and the voice stack, then shut the pool down, which cancels the job.
        await asyncio.sleep(8)
        await server.aclose()
        key = session_ended_key(prefix, room)
        for _ in range(200):
            marker = await redis.lpop(key)
            if marker:
                out["marker"] = json.loads(marker)
                break
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
        await server.aclose()
        runner.cancel()
        await readiness.aclose()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
