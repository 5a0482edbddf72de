"""The LiveKit agent worker: explicit dispatch by agent name, job-count load, readiness from registration."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess
from livekit.agents.utils import http_context

from orchestrator.config import Settings, get_settings
from orchestrator.providers.stt import load_vad
from orchestrator.session.audio import turn_handling
from orchestrator.session.graph_llm import GraphLLM

__all__ = ["ReadinessServer", "build_server", "run_agent_worker", "run_room_call"]

log = logging.getLogger(__name__)


class ReadinessServer:
    """`GET /readyz`: 503 until the worker has registered with LiveKit, 200 after (and 503 again while draining).

    livekit's own health endpoint answers 200 while the worker is still failing to connect
    (research/livekit.md §2d), so a load balancer or Kubernetes must not use it for readiness.
    """

    def __init__(self, server: AgentServer, *, port: int, host: str = "0.0.0.0") -> None:
        self.server = server
        self.port = port
        self.host = host
        self.registered = False
        self.draining = False
        self._runner: web.AppRunner | None = None
        server.on("worker_registered", self._on_registered)

    def _on_registered(self, *_: Any) -> None:
        self.registered = True

    async def _ready(self, _request: web.Request) -> web.Response:
        ok = self.registered and not self.draining
        body = json.dumps({"registered": self.registered, "draining": self.draining})
        return web.Response(status=200 if ok else 503, text=body, content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/readyz", self._ready)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _prewarm(proc: JobProcess) -> None:
    # Each job process loads silero (~1 s) once, before a call lands on it.
    proc.userdata["vad"] = load_vad()


def build_server(settings: Settings | None = None) -> AgentServer:
    """An `AgentServer` for explicit dispatch (`agent_name`), whose load is active jobs / slots.

    Load by jobs, not CPU: CPU load is sampled and lags a burst, while the queue worker needs a hard cap
    on concurrent calls per process to keep pull-based admission honest.
    """
    settings = settings or get_settings()
    slots = settings.agent_slots

    def load(server: AgentServer) -> float:
        return min(1.0, len(server.active_jobs) / slots)

    server = AgentServer(
        setup_fnc=_prewarm,
        load_fnc=load,
        # WS_FULL at the last slot: the server never offers a job beyond `slots`.
        load_threshold=(slots - 0.5) / slots,
        num_idle_processes=min(slots, 2),
        port=0,
    )

    server.rtc_session(agent_name=settings.agent_name)(_entrypoint)
    return server


async def _entrypoint(ctx: JobContext) -> None:
    # Module level, not a closure: job processes receive the entrypoint by pickling it, and they read
    # their settings from the environment they inherited.
    await run_room_call(ctx, get_settings())


async def run_room_call(ctx: JobContext, settings: Settings) -> None:
    """One call in its LiveKit room: the same GraphLLM and providers as the local transports."""
    from orchestrator.providers.voice import open_voice
    from orchestrator.runtime import Services

    metadata = json.loads(ctx.job.metadata or "{}")
    call_id = str(metadata.get("call_id") or ctx.job.room.name)
    async with await Services.open(settings) as services, http_context.open():
        voice = await open_voice(
            settings,
            phrases=services.prompts.phrases(),
            redis_url=settings.redis_url,
            vad_instance=ctx.proc.userdata.get("vad"),
        )
        graph_llm = GraphLLM(services.graph, services.context, call_id=call_id, caller_id=metadata.get("caller_id"))
        session: AgentSession[None] = AgentSession(
            llm=graph_llm,
            stt=voice.stt,
            vad=voice.vad,
            tts=voice.tts,
            turn_handling=turn_handling(),  # type: ignore[arg-type]
        )
        closed = asyncio.Event()
        session.on("close", lambda _ev: closed.set())
        error: str | None = None
        try:
            await session.start(Agent(instructions="Northwind Broadband contact centre"), room=ctx.room)
            await ctx.connect()
            await closed.wait()
        except (Exception, asyncio.CancelledError) as exc:
            # A failed (or cancelled) session is reported too, so the queue worker retries at once
            # instead of at its session timeout.
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            await session.aclose()
            await graph_llm.aclose()
            await voice.aclose()
            # After the cleanup, so the checkpoint the queue worker then reads holds the whole call.
            await _mark_session_end(settings, metadata, call_id, error=error)


async def _mark_session_end(
    settings: Settings, metadata: dict[str, Any], call_id: str, error: str | None = None
) -> None:
    """Tell the queue worker holding the call that its session is over (it then acks the call)."""
    import redis.asyncio as aioredis

    from orchestrator.worker.dispatch import DEFAULT_PREFIX, PREFIX_METADATA_KEY, push_session_ended
    from orchestrator.worker.main import RedisNotConfigured, resolve_redis_url

    try:
        url = resolve_redis_url(settings)
    except RedisNotConfigured:
        log.warning("call %s: no Redis configured, so no queue worker learns that its session ended", call_id)
        return
    client = aioredis.Redis.from_url(url)
    try:
        prefix = str(metadata.get(PREFIX_METADATA_KEY) or DEFAULT_PREFIX)
        await push_session_ended(client, prefix, call_id, status="failed" if error else "ended", error=error)
    except Exception:
        # Never mask the session's own result; the queue worker's session timeout covers a lost marker.
        log.exception("call %s: could not push the end-of-session marker", call_id)
    finally:
        await client.aclose()


async def run_agent_worker(settings: Settings | None = None) -> None:
    """Run the agent worker with its readiness endpoint until it stops (SIGTERM drains)."""
    settings = settings or get_settings()
    server = build_server(settings)
    readiness = ReadinessServer(server, port=settings.agent_health_port)
    await readiness.start()
    try:
        await server.run()
    finally:
        readiness.draining = True
        await readiness.aclose()
