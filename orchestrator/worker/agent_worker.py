"""The LiveKit agent worker: explicit dispatch by agent name, job-count load, readiness from registration."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from livekit import rtc
from livekit.agents import AgentServer, JobContext, JobProcess
from livekit.agents.utils import http_context

from orchestrator.config import Settings, get_settings
from orchestrator.heap import settle_heap
from orchestrator.live import LiveFeed
from orchestrator.loops import rounds, stop_loop
from orchestrator.providers.stt import TURN_SILENCE_S, WhisperSTT, load_vad
from orchestrator.redis_client import open_redis
from orchestrator.session.participants import find_caller, may_be_caller
from orchestrator.session.telephony import sip_caller_number
from orchestrator.telemetry import names
from orchestrator.telemetry.cost import ProviderProfile
from orchestrator.telemetry.multiproc import multiprocess_text
from orchestrator.telemetry.voice import watch_voice

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph
    from livekit.agents.vad import VAD

    from agents.ports import IntentClassifier
    from agents.prompts import Prompts
    from orchestrator.providers.voice import VoiceStack
    from orchestrator.telemetry.service import Telemetry
    from orchestrator.worker.dispatch import DispatchedCall

__all__ = ["AgentParts", "ReadinessServer", "build_server", "caller_in_room", "run_agent_worker", "run_room_call"]

log = logging.getLogger(__name__)

# An agent worker not connected to the server for this long says so in its log (it normally registers in under 1 s).
CONNECT_GRACE_S = 5.0


class Reachability:
    """When the agent worker says it cannot reach the server (after ``grace_s`` of trying), and when it is back."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._away_since: float | None = None
        self._said = False

    def step(self, *, connected: bool, draining: bool, connecting: bool, now: float) -> Literal["away", "back"] | None:
        """Take in the worker's state at ``now``; the line to log, if any."""
        if connected:
            back = self._said
            self._away_since, self._said = None, False
            return "back" if back else None
        if draining:
            # Stopping: neither away nor back (a worker that never reached the server is not "ready" as it goes).
            self._away_since, self._said = None, False
            return None
        if not connecting:
            self._away_since = None  # still starting (loading its models): not trying to connect yet
            return None
        if self._away_since is None:
            self._away_since = now
        elif not self._said and now - self._away_since >= self.grace_s:
            self._said = True
            return "away"
        return None


class ReadinessServer:
    """`GET /readyz`: 503 until the worker has registered with LiveKit, 200 after; 503 again while it has lost the
    server (until it has registered again) and while draining.

    livekit's own health endpoint answers 200 while the worker is still failing to connect
    (research/livekit.md §2d), so a load balancer or Kubernetes must not use it for readiness.

    `GET /metrics` serves every job process's metrics (calls run there, one process each), ours and
    livekit's, from the prometheus_client multiprocess directory the server shares with them.
    """

    def __init__(self, server: AgentServer, *, port: int, host: str = "127.0.0.1") -> None:
        self.server = server
        self.port = port
        self.host = host
        self.registered = False
        self.draining = False
        self._runner: web.AppRunner | None = None
        server.on("worker_registered", self._on_registered)

    def _on_registered(self, *_: Any) -> None:
        self.registered = True

    @property
    def connected(self) -> bool:
        """Registered, and not since cut off from the server (livekit reconnects then, and takes no job meanwhile)."""
        # livekit's private flag: set while it (re)connects, cleared once the server accepted its registration.
        return self.registered and not self.server._connecting

    async def _ready(self, _request: web.Request) -> web.Response:
        connected = self.connected
        ok = connected and not self.draining
        body = json.dumps({"registered": self.registered, "connected": connected, "draining": self.draining})
        return web.Response(status=200 if ok else 503, text=body, content_type="application/json")

    async def _metrics(self, _request: web.Request) -> web.Response:
        directory = os.environ.get(METRICS_DIR_ENV)
        if not directory:
            return web.Response(body=b"", content_type="text/plain")
        body, content_type = await asyncio.to_thread(multiprocess_text, directory)
        # aiohttp takes the charset apart from the type.
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def watch(self, url: str, *, grace_s: float = CONNECT_GRACE_S, interval_s: float = 0.5) -> None:
        """Log a line once the worker has been trying to reach the server for ``grace_s``, and one when it is back.

        livekit's own retry warnings are among the library chatter the CLI turns down.
        """
        loop = asyncio.get_running_loop()
        reach = Reachability(grace_s)
        while True:
            said = reach.step(
                connected=self.connected, draining=self.draining, connecting=self.server._connecting, now=loop.time()
            )
            if said == "back":
                log.warning("agent worker: registered with livekit-server at %s again: ready", url)
            elif said == "away":
                log.warning(
                    "agent worker: cannot reach livekit-server at %s (retrying; not ready, so no call is sent here)",
                    url,
                )
            await asyncio.sleep(interval_s)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/readyz", self._ready)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


# What every call needs, imported once in the forkserver that every job process is forked from, instead of
# in each job on its caller's time (about two seconds of imports: LangGraph, SQLAlchemy, the voice plugins).
PRELOAD_MODULES = [
    "orchestrator.runtime",
    "orchestrator.providers.intent",
    "orchestrator.providers.voice",
    "orchestrator.session.room",
    "orchestrator.telemetry.service",
    "orchestrator.telemetry.voice",
    "orchestrator.live",
    "orchestrator.worker.dispatch",
    "orchestrator.worker.main",
    "orchestrator.worker.tracking",
]
PARTS_KEY = "switchboard.parts"
# A webhook admitted the call when its caller's room started (WebRTC) or its caller joined (SIP), so the caller
# is normally in the room when the agent arrives; this covers a room made just before its caller joins. Keep it
# well under the server's room.empty_timeout, which closes a room that holds only the agent.
CALLER_WAIT_S = 5.0
# How long the end of a call waits for a lease renewal in flight (a Redis round trip) before cancelling it.
LEASE_STOP_S = 2.0
# Bounds the status report sent when a job's process exits, before its end marker goes out (the message waits for
# the server connection's send queue).
STATUS_UPDATE_CAP_S = 2.0
# livekit sets it, at `run()`, to the server's `prometheus_multiproc_dir`, and the job processes inherit it.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class AgentParts:
    """What a job process builds before it is given a call, in livekit's synchronous prewarm.

    A job process runs one call, so everything here is off that call's start: the intent classifier (an
    ONNX model), the prompts, silero VAD, the Whisper model past its first decode, and the telemetry
    providers. Only the parts that need the job's event loop (the store, the checkpointer, the phrase
    cache's Redis) are opened by the job, around these.
    """

    classifier: IntentClassifier
    prompts: Prompts
    vad: VAD  # cuts the caller's speech for Whisper
    turn_vad: VAD  # the session's, which ends a turn sooner (`VoiceStack.turn_vad`)
    telemetry: Telemetry
    # Compiled once without a checkpointer; each job binds a copy to its own store's checkpointer.
    graph: CompiledStateGraph[Any, Any, Any, Any]

    @classmethod
    def load(cls, settings: Settings) -> AgentParts:
        """Load everything; blocking (seconds), so only where no call waits: a job process's prewarm."""
        # Lazy: a job process's prewarm loads these (langgraph, the classifier); the server's process does not.
        from agents.graph import build_graph
        from agents.prompts import Prompts
        from orchestrator.providers.intent import load_classifier
        from orchestrator.telemetry.service import Telemetry

        classifier = load_classifier()
        # Whisper is the local STT and the cloud STT's fallback, so every session loads it. The model is
        # cached per process, and its first decode allocates CTranslate2's buffers: both happen here.
        whisper = WhisperSTT(
            model_path=settings.local_stt_model, cpu_threads=settings.local_stt_threads, hotwords=settings.stt_hotwords
        )
        whisper.warm()
        return cls(
            classifier=classifier,
            prompts=Prompts.load(settings.prompts_dir),
            vad=load_vad(),
            turn_vad=load_vad(min_silence_s=TURN_SILENCE_S),
            # The process's one set of providers; set as OpenTelemetry's globals for livekit's own metrics.
            # Its metrics go to the directory the agent worker's /metrics reads, since nobody scrapes a job process.
            telemetry=Telemetry.build(settings, set_global=True, multiprocess_dir=os.environ.get(METRICS_DIR_ENV)),
            graph=build_graph(),
        )


async def caller_in_room(room: rtc.Room, timeout_s: float) -> rtc.RemoteParticipant | None:
    """The call's caller once one is in ``room`` (`participants.find_caller`); None after ``timeout_s``.

    A supervisor listening in or the hold voice is no caller: the wait goes on until the caller joins.
    """
    joined = asyncio.Event()

    def on_joined(participant: rtc.RemoteParticipant) -> None:
        if may_be_caller(participant):
            joined.set()

    room.on("participant_connected", on_joined)
    try:
        if (caller := find_caller(room)) is not None:
            return caller
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(joined.wait(), timeout_s)
        return find_caller(room)
    finally:
        room.off("participant_connected", on_joined)


def _prewarm(proc: JobProcess) -> None:
    proc.userdata[PARTS_KEY] = AgentParts.load(get_settings())
    settle_heap()  # loaded: a full collection must never walk the models mid-call


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
        preload_modules=PRELOAD_MODULES,
        # The prewarm loads two models and decodes once: seconds on a busy host, more than livekit's 10 s
        # default allows when a burst starts several processes at once.
        initialize_process_timeout=60.0,
        drain_timeout=settings.agent_drain_timeout_s,
        port=0,
        # One directory per agent worker (livekit empties it at start): the job processes' metrics files.
        prometheus_multiproc_dir=os.environ.get(METRICS_DIR_ENV) or tempfile.mkdtemp(prefix="switchboard-metrics-"),
    )

    server.rtc_session(agent_name=settings.agent_name)(_entrypoint)
    _release_ended_jobs(server, settings)
    return server


async def _entrypoint(ctx: JobContext) -> None:
    # Module level, not a closure: job processes receive the entrypoint by pickling it, and they read
    # their settings from the environment they inherited.
    await run_room_call(ctx, get_settings())


async def run_room_call(ctx: JobContext, settings: Settings) -> None:
    """One dispatched call: the same GraphLLM and providers as the local transports, tracked like a text call.

    The call span continues the job's trace (the dispatch carries the job), the console sees each turn
    as it is spoken and its commands reach the checkpoint before each caller turn, and the call record,
    metrics and alerts are written when the session ends. A dispatch whose job has a ``script`` is a
    simulated caller: it speaks on a local line instead of the room. An agent that finds no caller in its
    room (they hung up between the claim and the dispatch) ends the call there, unanswered.
    """
    # Lazy, as in _run_session: the queue worker's modules load the runtime (langgraph).
    from orchestrator.worker.dispatch import PREFIX_METADATA_KEY, DispatchedCall

    t0 = time.perf_counter()
    parts = ctx.proc.userdata.get(PARTS_KEY)
    if not isinstance(parts, AgentParts):
        log.warning("job process was not prewarmed: loading the call's models on its time")
        parts = AgentParts.load(settings)
    dispatched = DispatchedCall.parse(ctx.job.metadata, room=ctx.job.room.name)
    error: str | None = None
    lease_stop = asyncio.Event()
    lease = asyncio.create_task(_hold_lease(settings, dispatched, lease_stop), name=f"agent-lease-{dispatched.call_id}")
    try:
        await _run_session(ctx, settings, parts, dispatched, t0)
    except (Exception, asyncio.CancelledError) as exc:
        # A failed (or cancelled) session is reported too, so the queue worker retries at once
        # instead of at its session timeout.
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        await stop_loop(lease_stop, lease, LEASE_STOP_S)
        # After the cleanup, so the checkpoint the queue worker then reads holds the whole call. The agent worker
        # hands the marker on once this process has exited (`_release_ended_jobs`), when its slot is really free.
        await _mark_session_end(
            settings, {PREFIX_METADATA_KEY: dispatched.prefix}, dispatched.call_id, error=error, pending=True
        )
        # A job process ends with its call: export its spans and metrics now (bounded; never raises).
        await parts.telemetry.aclose()
        # And end the job: livekit keeps a job whose entrypoint returned running until it is shut down or
        # its room disconnects, which a simulated caller's job never does, holding a slot and a drain forever.
        ctx.shutdown(reason="call ended")


async def _run_session(
    ctx: JobContext, settings: Settings, parts: AgentParts, dispatched: DispatchedCall, t0: float
) -> None:
    # Lazy: the agent server's main process stays light; the runtime (langgraph), SQLAlchemy and the vendor
    # plugins load in the job processes that run calls.
    from orchestrator.domain.verification import watch_lockouts
    from orchestrator.providers.tts import local_tts
    from orchestrator.providers.voice import open_voice
    from orchestrator.runtime import Services
    from orchestrator.session.room import LocalLine, VoiceCall, play_caller
    from orchestrator.store.records import CallStore
    from orchestrator.worker.main import RedisNotConfigured, resolve_redis_url
    from orchestrator.worker.tracking import CallTracker

    job = dispatched.ticket.job
    telemetry = parts.telemetry
    async with AsyncExitStack() as stack:
        # The queue worker and the API seed the tenant; a call has no time for it.
        services = await Services.open(
            settings, classifier=parts.classifier, prompts=parts.prompts, graph=parts.graph, seed=False
        )
        stack.push_async_callback(services.aclose)
        await stack.enter_async_context(http_context.open())
        telemetry.attach_store(await CallStore.open(services.engine, settings))
        watch_lockouts(services.tenant, telemetry.verification_lockout)
        try:
            redis_url: str | None = resolve_redis_url(settings)
        except RedisNotConfigured:
            log.warning("call %s: no Redis configured: no console, no shared phrase cache", job.call_id)
            redis_url = None
        voice = await open_voice(
            settings,
            phrases=parts.prompts.phrases(),
            redis_url=redis_url,
            vad_instance=parts.vad,
            turn_vad_instance=parts.turn_vad,
        )
        stack.push_async_callback(voice.aclose)
        line = LocalLine.open() if job.script is not None else None
        telemetry.profile = _profile(settings, voice, simulated=line is not None, source=job.source)
        stack.callback(watch_voice(telemetry.metrics, stt_engine=voice.stt, tts_engine=voice.tts, cache=voice.cache))
        live = None
        if redis_url is not None:
            redis = open_redis(redis_url)
            stack.push_async_callback(redis.aclose)
            live = LiveFeed(redis, prefix=dispatched.prefix)
        tracker = CallTracker(dispatched.ticket, telemetry=telemetry, live=live)
        call = VoiceCall(
            services,
            voice,
            call_id=job.call_id,
            caller_id=job.caller_id or None,
            callbacks=tracker.callbacks,
            room=ctx.room if line is None else None,
            line=line,
            before_turn=tracker.before_turn,
            on_turn=tracker.turn_done,
            # A supervisor's typed lines are spoken to the caller as they arrive, not at the next turn.
            human_lines=None if live is None else functools.partial(live.human_lines, job.call_id),
            presence=None
            if live is None
            else functools.partial(live.supervisor_presence, job.call_id, grace_s=settings.console_disconnect_grace_s),
        )

        async def conversation(resumed_at: int) -> None:
            start_ms = (time.perf_counter() - t0) * 1000
            log.info("call %s: session ready %.0f ms after the job started", job.call_id, start_ms)
            if tracker.span is not None:
                tracker.span.set_attribute(names.ATTR_CALL_START_MS, round(start_ms, 1))
            if line is None:
                await ctx.connect()
                if (caller := await caller_in_room(ctx.room, CALLER_WAIT_S)) is not None:
                    call.link_caller(caller)
                    if not call.llm.caller_id:
                        # A phone call's room_started webhook admits it before its SIP caller joins, so its job
                        # has no number: the caller's participant carries it.
                        call.llm.caller_id = sip_caller_number(ctx.room)
                    await call.closed.wait()
                else:
                    # The caller left between the claim and our join: end the call (abandoned, no turn taken)
                    # rather than wait in an empty room until the server closes it and cancels this job.
                    log.warning("call %s: no caller in room %s: it ends unanswered", job.call_id, ctx.room.name)
            else:
                script_voice = local_tts(settings.local_tts_engine, voice=settings.local_tts_voice)
                await play_caller(call, script_voice, (job.script or [])[resumed_at:])
            await call.drain()

        await tracker.run(call, conversation)


def _profile(settings: Settings, voice: VoiceStack, *, simulated: bool, source: str) -> ProviderProfile:
    """The priced providers of this process's calls, as the voice stack was actually built."""
    deepgram = settings.stt_provider == "deepgram" and settings.deepgram_api_key is not None
    cartesia = settings.tts_provider == "cartesia" and settings.cartesia_api_key is not None
    if simulated:
        telephony, livekit = "none", "none"
    else:
        telephony = "sip-trunk" if source == "sip" else "none"
        livekit = "livekit-cloud" if ".livekit.cloud" in (settings.livekit_url or "") else "self-hosted"
    return ProviderProfile(
        stt="deepgram" if deepgram else "faster-whisper",
        tts="cartesia" if cartesia else voice.tts.inner.model,
        telephony=telephony,
        livekit=livekit,
    )


async def _hold_lease(settings: Settings, dispatched: DispatchedCall, stop: asyncio.Event) -> None:
    """Renew the call's agent lease until ``stop``: while it holds, the queue worker knows this agent is alive.

    Its value names this process, so an operator (or a test) can find the job process of a call.
    """
    # Lazy, as in _run_session: the queue worker's modules load the runtime (langgraph).
    from orchestrator.worker.dispatch import AGENT_LEASE_MS, AGENT_LEASE_RENEW_S, agent_lease_key
    from orchestrator.worker.main import RedisNotConfigured, resolve_redis_url

    try:
        url = resolve_redis_url(settings)
    except RedisNotConfigured:
        return
    client = open_redis(url)
    key = agent_lease_key(dispatched.prefix, dispatched.call_id)
    failing = False
    try:
        async for _ in rounds(AGENT_LEASE_RENEW_S, stop):
            try:
                await client.set(key, json.dumps({"pid": os.getpid(), "at": time.time()}), px=AGENT_LEASE_MS)
            except Exception as exc:
                # Redis away: the queue worker cannot read the lease either, and gives it time again after.
                if not failing:
                    log.warning("call %s: cannot renew the agent lease: %s", dispatched.call_id, exc)
                failing = True
            else:
                failing = False
    finally:
        await client.aclose()


def _release_ended_jobs(server: AgentServer, settings: Settings) -> None:
    """Once a job's process has exited, report the worker's real load, then hand its end marker to the queue worker.

    A job's session ends before its process does (shutdown callbacks, telemetry export), and livekit counts the
    job against the worker's load until the process is gone: a marker pushed by the job itself let the queue
    worker dispatch the next call to a worker that still looked full, which refused it. A process that died
    (SIGKILL, out of memory) left no marker of its own: a `LOST` one makes the queue worker send another agent.
    """
    tasks: set[asyncio.Task[None]] = set()

    async def release(job_id: str, metadata: str, room: str) -> None:
        # Lazy, as in _run_session: the queue worker's modules load the runtime (langgraph).
        from orchestrator.worker.dispatch import DispatchedCall, release_session_end
        from orchestrator.worker.main import RedisNotConfigured, resolve_redis_url

        try:
            # livekit's private load and status API: the public one only reports on its own timer (every 2.5 s).
            await server._refresh_worker_load()
            await asyncio.wait_for(server._update_worker_status(), STATUS_UPDATE_CAP_S)
        except Exception:
            # The marker must go out regardless: the server's next status tick says the rest.
            log.exception("could not report the worker's load after job %s", job_id)
        dispatched = DispatchedCall.parse(metadata, room=room)
        try:
            url = resolve_redis_url(settings)
        except RedisNotConfigured:
            return
        client = open_redis(url)
        try:
            if not await release_session_end(
                client, dispatched.prefix, dispatched.call_id, error=f"the job process of job {job_id} died"
            ):
                log.warning("call %s: its job process %s ended without ending the call: the agent is lost",
                            dispatched.call_id, job_id)  # fmt: skip
        except Exception:
            # The queue worker takes the job's own marker once its lease expires.
            log.exception("call %s: could not hand on the end-of-session marker", dispatched.call_id)
        finally:
            await client.aclose()

    def on_closed(proc: Any) -> None:
        info = proc.running_job
        if info is None:
            return  # an idle process
        # Run after this event: the pool drops the process from its list (and so from the load) right after it.
        task = asyncio.get_running_loop().create_task(release(info.job.id, info.job.metadata, info.job.room.name))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def on_started(*_: Any) -> None:
        server._proc_pool.on("process_closed", on_closed)

    server.on("worker_started", on_started)


async def _mark_session_end(
    settings: Settings, metadata: dict[str, Any], call_id: str, error: str | None = None, *, pending: bool = False
) -> None:
    """Tell the queue worker holding the call that its session is over (it then acks the call).

    With ``pending`` (a job in the agent worker), the marker waits for the job's process to exit.
    """
    # Lazy, as in _run_session: the queue worker's modules load the runtime (langgraph).
    from orchestrator.worker.dispatch import DEFAULT_PREFIX, PREFIX_METADATA_KEY, push_session_ended
    from orchestrator.worker.main import RedisNotConfigured, resolve_redis_url

    try:
        url = resolve_redis_url(settings)
    except RedisNotConfigured:
        log.warning("call %s: no Redis configured, so no queue worker learns that its session ended", call_id)
        return
    client = open_redis(url)
    try:
        prefix = str(metadata.get(PREFIX_METADATA_KEY) or DEFAULT_PREFIX)
        await push_session_ended(
            client, prefix, call_id, status="failed" if error else "ended", error=error, pending=pending
        )
    except Exception:
        # Never mask the session's own result; the queue worker's session timeout covers a lost marker.
        log.exception("call %s: could not push the end-of-session marker", call_id)
    finally:
        await client.aclose()


async def run_agent_worker(settings: Settings | None = None) -> None:
    """Run the agent worker with its readiness endpoint until SIGTERM or SIGINT, which drain it.

    Draining takes no new jobs, answers 503 on /readyz, and lets the running calls end (up to livekit's
    drain timeout) before the worker closes; without the handlers the signal killed the process, and the
    calls with it, whenever an orchestrator scaled the workers down.
    """
    settings = settings or get_settings()
    server = build_server(settings)
    readiness = ReadinessServer(server, port=settings.agent_health_port, host=settings.agent_health_host)
    await readiness.start()
    watcher = asyncio.create_task(readiness.watch(settings.livekit_url or ""), name="agent-worker-connection")
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    async def drain_and_close() -> None:
        readiness.draining = True
        try:
            await server.drain()
        except TimeoutError:
            log.warning("agent worker: drain timed out; closing with calls still running")
        finally:
            await server.aclose()

    def on_signal() -> None:
        if not stopping:
            stopping.append(asyncio.create_task(drain_and_close()))
        elif not stopping[0].done():
            # A second signal (Ctrl-C twice) stops waiting for the calls: the drain's `finally` closes now.
            log.warning("agent worker: second signal: closing without waiting for the running calls")
            stopping[0].cancel()

    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    try:
        await server.run()
        if stopping:
            with contextlib.suppress(asyncio.CancelledError):
                await stopping[0]
    finally:
        watcher.cancel()
        for sig in signals:
            loop.remove_signal_handler(sig)
        readiness.draining = True
        await readiness.aclose()
