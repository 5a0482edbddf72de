"""Runs the agent worker's process pool with no LiveKit server and two dispatched jobs; prints what happened.

Job 1 is a dispatch as a queue worker sends it (the whole job: its traceparent, a simulated caller's
script): the caller speaks on a local line and the call runs to its end. Job 2 carries no metadata (as
`simulate_job` sends it) and waits in its fake room until the pool shuts down.

The pool exports spans and metrics over OTLP to a stand-in collector started here, since its job
processes are the only place a call's telemetry exists.

A separate script because the pool's forkserver children re-import `__main__`, which must be guarded.
Usage: run_pool.py READINESS_PORT CALL_ID ROOM PREFIX
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from livekit.agents import AgentServer, utils
from livekit.agents.job import JobAcceptArguments, RunningJobInfo
from livekit.protocol import agent, models

from tests.flow.agent_worker_support.otlp_collector import OtlpCollector

CALLER = "+15550100001"
SCRIPT = ["What's my balance?", "10027"]
SUPERVISOR_LINE = "Hi, this is Sam from billing, I'm listening in."
WHISPER = "Mention autopay."


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def dispatch_fake_job(server: AgentServer, room: str, metadata: str) -> None:
    """`AgentServer.simulate_job(room, fake_job=True)`, but carrying a dispatch's metadata.

    livekit 1.8.9's `simulate_job` builds the job itself and has no way to pass metadata, which is how a
    queue worker's dispatch reaches the agent; this builds the same fake job with it.
    """
    job = agent.Job(
        id=utils.shortuuid("mock-job-"),
        room=models.Room(sid=utils.shortuuid("SRM_"), name=room),
        type=agent.JobType.JT_ROOM,
        metadata=metadata,
    )
    info = RunningJobInfo(
        worker_id=server._id,  # private: what simulate_job itself passes
        accept_arguments=JobAcceptArguments(identity=utils.shortuuid("fake-agent-"), name="", metadata=""),
        job=job,
        url=server._ws_url,
        token="",
        fake_job=True,
    )
    await server._proc_pool.launch_job(info)


async def pop_marker(redis: Any, key: str, timeout_s: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        marker = await redis.lpop(key)
        if marker:
            return dict(json.loads(marker))
        await asyncio.sleep(0.1)
    return None


async def main(port: int, call_id: str, room: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    from orchestrator.config import get_settings
    from orchestrator.contracts import CallJob
    from orchestrator.domain import open_engine
    from orchestrator.live import LiveFeed
    from orchestrator.queue import ClaimedCall
    from orchestrator.runtime import Services
    from orchestrator.store.records import CallStore
    from orchestrator.worker.agent_worker import ReadinessServer, build_server
    from orchestrator.worker.dispatch import dispatch_metadata, session_ended_key
    from orchestrator.worker.runner import checkpoint_state

    collector = await OtlpCollector().start()
    # Before the pool starts: its forkserver, and so every job process, inherits the environment.
    os.environ["SWITCHBOARD_OTLP_ENDPOINT"] = collector.base_url
    settings = get_settings()
    # The queue worker and the API seed the tenant; the agent's jobs do not.
    await (await Services.open(settings)).aclose()

    server = build_server(settings)
    readiness = ReadinessServer(server, port=port)  # loopback, as a worker binds it by default
    await readiness.start()
    runner = asyncio.create_task(server.run(devmode=False, unregistered=True))
    out: dict[str, Any] = {"readyz_unregistered": await asyncio.to_thread(readyz, port)}
    redis = aioredis.Redis.from_url(settings.redis_url or "redis://127.0.0.1:6379/15", decode_responses=True)
    engine = open_engine(settings.sqlalchemy_url)
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    out["trace"] = {"trace_id": trace_id, "parent_id": parent_id}
    try:
        job = CallJob(
            call_id=call_id,
            source="simulate",
            room=room,
            caller_id=CALLER,
            traceparent=f"00-{trace_id}-{parent_id}-01",
            script=SCRIPT,
        )
        claimed = ClaimedCall(
            job=job,
            entry_id="1-0",
            priority=1,
            deliveries=1,
            waited_s=0.012,
            consumer="queue-worker-1",
            claimed_at=time.monotonic(),
        )
        feed = LiveFeed(redis, prefix=prefix)
        await dispatch_fake_job(server, room, json.dumps(dispatch_metadata(claimed, prefix=prefix)))
        # A supervisor barges in and whispers from the console while the call is starting: both wait in
        # the console's command list for the session to apply them before a caller turn.
        await feed.append(call_id, "human", "sam", SUPERVISOR_LINE)
        await feed.push_command(call_id, {"kind": "say", "text": SUPERVISOR_LINE, "by": "sam"})
        await feed.push_command(call_id, {"kind": "whisper", "text": WHISPER, "by": "sam"})
        out["call_marker"] = await pop_marker(redis, session_ended_key(prefix, call_id), 120)

        # No metadata: the room's call, marked under the default prefix; a fake room never closes.
        waiting = f"{room}-waits"
        await server.simulate_job(waiting, fake_job=True)
        out["active_jobs"] = len(server.active_jobs)
        await asyncio.sleep(3)
        await server.aclose()
        out["cancelled_marker"] = await pop_marker(redis, session_ended_key("sb", waiting), 20)

        for _ in range(200):
            if any(s["name"] == "cc.call" for s in collector.spans) and collector.points:
                break
            await asyncio.sleep(0.1)
        out["spans"] = collector.spans
        out["points"] = collector.points
        out["lines"] = [line.to_json() for line in await feed.lines(call_id)]
        out["pending_commands"] = await feed.pending_commands(call_id)
        live = await feed.get(call_id)
        out["live"] = live.to_json() if live is not None else None
        view = await CallStore(engine).get_call(call_id)
        out["record"] = view.to_json() if view is not None else None
        async with await Services.open(settings, seed=False) as services:
            out["checkpoint"] = await checkpoint_state(services, call_id)
    finally:
        await engine.dispose()
        await redis.aclose()
        await server.aclose()
        runner.cancel()
        await readiness.aclose()
        await collector.aclose()
    print(json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))
