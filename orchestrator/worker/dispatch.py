"""Real LiveKit calls: dispatch the voice agent into the call's room, wait for its session to end."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from livekit import api
from livekit.protocol import agent
from pydantic import ValidationError

from orchestrator.config import Settings
from orchestrator.contracts import CallJob, CallOutcome
from orchestrator.queue import ClaimedCall
from orchestrator.queue.outage import UNREACHABLE, Outage
from orchestrator.runtime import Services
from orchestrator.worker.runner import CallRunner, checkpoint_state, outcome_from_state
from orchestrator.worker.tracking import CallTicket

__all__ = [
    "PREFIX_METADATA_KEY",
    "DispatchNotTaken",
    "DispatchedCall",
    "LiveKitDispatchRunner",
    "RoutingRunner",
    "SessionFailed",
    "dispatch_metadata",
    "push_session_ended",
    "session_ended_key",
]

logger = logging.getLogger(__name__)

# The dispatch metadata carries the queue prefix, because the agent worker is started without one and
# must push the end marker where this queue's runner waits for it.
PREFIX_METADATA_KEY = "queue_prefix"
DEFAULT_PREFIX = "sb"
# Markers outlive a queue worker that dies between the push and the ack, so its successor finds them.
MARKER_TTL_S = 24 * 3600


def dispatch_metadata(claimed: ClaimedCall, *, prefix: str) -> dict[str, Any]:
    """What a dispatch tells the agent worker: the whole job (its trace, caller, admission time), this
    attempt, the queue worker holding the call, and the queue prefix its end marker goes under.

    ``call_id`` and ``caller_id`` stay at the top level too: a worker adopting a live dispatch matches
    on ``call_id`` (`_is_live_dispatch_of`).
    """
    job = claimed.job
    return {
        "call_id": job.call_id,
        "caller_id": job.caller_id,
        PREFIX_METADATA_KEY: prefix,
        "job": job.model_dump(mode="json"),
        "attempt": claimed.attempt,
        "worker": claimed.consumer,
        "queue_wait_ms": claimed.waited_s * 1000,
    }


@dataclass(frozen=True)
class DispatchedCall:
    """A dispatch's metadata as the agent worker reads it (see `dispatch_metadata`).

    Attributes:
        ticket: The call and this attempt, for the agent's call span, record and console.
        prefix: The queue prefix the end-of-session marker and the console keys live under.
    """

    ticket: CallTicket
    prefix: str = DEFAULT_PREFIX

    @property
    def call_id(self) -> str:
        return self.ticket.job.call_id

    @classmethod
    def parse(cls, metadata: str | None, *, room: str) -> DispatchedCall:
        """Read a dispatch's metadata; a dispatch without the job (a simulated job) is the room's call."""
        try:
            data = json.loads(metadata or "{}")
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        job: CallJob | None = None
        if isinstance(data.get("job"), dict):
            try:
                job = CallJob.model_validate(data["job"])
            except ValidationError:
                logger.warning("dispatch for room %s carries an unreadable job; using its call id", room)
        if job is None:
            job = CallJob(call_id=str(data.get("call_id") or room), caller_id=str(data.get("caller_id") or ""))
        if not job.room:
            job = job.model_copy(update={"room": room})
        try:
            wait = data.get("queue_wait_ms")
            queue_wait_ms = float(wait) if wait is not None else None
            attempt = int(data.get("attempt") or job.attempt)
        except (TypeError, ValueError):
            queue_wait_ms, attempt = None, job.attempt
        ticket = CallTicket(job, attempt=attempt, worker=str(data.get("worker") or ""), queue_wait_ms=queue_wait_ms)
        return cls(ticket, prefix=str(data.get(PREFIX_METADATA_KEY) or DEFAULT_PREFIX))


class SessionFailed(RuntimeError):
    """The agent worker's session for the call ended with an error (the worker retries the call)."""


class DispatchNotTaken(SessionFailed):
    """No agent worker took the call's dispatch in time; it was withdrawn (the worker retries the call)."""


def session_ended_key(prefix: str, call_id: str) -> str:
    """The Redis list the agent worker pushes a call's end marker to."""
    return f"{prefix}:session-ended:{call_id}"


async def push_session_ended(
    redis: aioredis.Redis,
    prefix: str,
    call_id: str,
    *,
    status: Literal["ended", "failed"] = "ended",
    error: str | None = None,
) -> None:
    """Push a call's end marker: ``ended`` once its session closed, ``failed`` if it crashed."""
    key = session_ended_key(prefix, call_id)
    marker = json.dumps({"status": status, "error": error, "at": time.time()})
    pipe = redis.pipeline(transaction=True)
    pipe.rpush(key, marker)
    pipe.expire(key, MARKER_TTL_S)
    await pipe.execute()


class LiveKitDispatchRunner:
    """Runs a real LiveKit call: explicit dispatch of the voice agent, then a wait for its end marker.

    ``run`` asks LiveKit's ``AgentDispatchService`` for the agent ``settings.agent_name`` in the call's
    room (metadata: `dispatch_metadata`, so the agent's call span continues the job's trace), then polls
    ``<prefix>:session-ended:<call_id>`` until the agent worker (``run_room_call``) pushes the marker, and
    reads the outcome from the graph checkpoint. A dispatch error, a ``failed`` marker or no marker within
    ``max_session_s`` raises, so the worker's fail/retry/dead-letter path handles it. The wait is a plain
    sleep between pops, so a drain deadline or a take-over cancels it at once. A Redis outage during the
    wait is waited out (the session goes on in its room, and its marker is pushed once Redis is back).

    A marker already waiting when a call is claimed (the previous holder died between the marker and
    the ack) means its session is over: the outcome is read without dispatching again. A call a LiveKit
    webhook admitted whose room no longer exists (the caller left and the server closed it, before an
    agent answered or while a failed session waited for its retry) ends there too, with no dispatch: its
    outcome is the checkpoint's (``abandoned`` when no turn was taken).
    """

    def __init__(
        self,
        services: Services,
        redis: aioredis.Redis,
        *,
        settings: Settings,
        prefix: str = DEFAULT_PREFIX,
        poll_interval_s: float = 0.25,
        max_session_s: float = 4 * 3600.0,
        assign_timeout_s: float = 15.0,
    ) -> None:
        """Build a runner.

        Args:
            services: The process's graph (its checkpoint holds each call's outcome).
            redis: The queue's client; the markers live under the queue's prefix.
            settings: LiveKit URL and credentials, and the agent name to dispatch.
            prefix: Queue key prefix.
            poll_interval_s: Pause between marker pops (the extra delay before a slot frees).
            max_session_s: Give up on a session that never reports its end (its agent job died).
            assign_timeout_s: Withdraw a dispatch no agent worker took by then, and fail the attempt (a retry).

        Raises:
            ValueError: ``settings.livekit_url`` is not set.
        """
        if not settings.livekit_url:
            raise ValueError("LiveKitDispatchRunner needs settings.livekit_url")
        self.services = services
        self.redis = redis
        self.settings = settings
        self.prefix = prefix
        self.poll_interval_s = poll_interval_s
        self.max_session_s = max_session_s
        self.assign_timeout_s = assign_timeout_s
        self.outage = Outage("dispatch runner")

    async def run(self, claimed: ClaimedCall) -> CallOutcome:
        """Dispatch the agent (unless the session already ended), wait for the end marker, return the outcome."""
        job = claimed.job
        resumed_at = int((await checkpoint_state(self.services, job.call_id)).get("turn") or 0)
        marker = await self._pop_marker(job.call_id)
        if marker is None or marker.get("status") != "ended":
            # No marker, or a stale failure the previous holder never handled: start a (new) session.
            dispatch_id = await self._dispatch(claimed)
            if dispatch_id is None:
                logger.info(
                    "call %s: room %s is gone, so its caller hung up before an agent answered", job.call_id, job.room
                )
                final = await checkpoint_state(self.services, job.call_id)
                return outcome_from_state(job.call_id, final, resumed_at=resumed_at)
            await self._ensure_taken(job.call_id, job.room or job.call_id, dispatch_id)
            marker = await self._wait_marker(job.call_id)
        if marker.get("status") != "ended":
            raise SessionFailed(f"session of call {job.call_id} failed: {marker.get('error') or 'unknown error'}")
        final = await checkpoint_state(self.services, job.call_id)
        return outcome_from_state(job.call_id, final, resumed_at=resumed_at)

    def _api(self) -> api.LiveKitAPI:
        return api.LiveKitAPI(
            self.settings.livekit_url,
            self.settings.livekit_api_key,
            self.settings.livekit_api_secret.get_secret_value(),
        )

    async def _ensure_taken(self, call_id: str, room: str, dispatch_id: str) -> None:
        """Wait until an agent worker took the dispatch; withdraw it and raise `DispatchNotTaken` if none did.

        LiveKit drops an explicit dispatch that every worker refuses (a worker whose finished jobs still count
        towards its load refuses, right after a call ends) and never offers it again: nobody would join the
        room, and the end marker would be awaited for ``max_session_s``.
        """
        lk = self._api()
        try:
            deadline = time.monotonic() + self.assign_timeout_s
            while True:
                found = [d for d in await lk.agent_dispatch.list_dispatch(room) if d.id == dispatch_id]
                # A dispatch gone with its room is not ours to chase: the session's end marker tells the rest.
                if not found or found[0].state.jobs:
                    return
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(self.poll_interval_s)
            # Withdrawn, so a retry never adopts it as a live dispatch (it has no job that ended).
            await lk.agent_dispatch.delete_dispatch(dispatch_id, room)
        finally:
            await lk.aclose()
        raise DispatchNotTaken(
            f"no agent worker took the dispatch of call {call_id} within {self.assign_timeout_s:g} s"
        )

    async def _dispatch(self, claimed: ClaimedCall) -> str | None:
        """Dispatch the agent (or adopt its live dispatch): its id; None, and no dispatch, when the room is gone."""
        job = claimed.job
        metadata = dispatch_metadata(claimed, prefix=self.prefix)
        request = api.CreateAgentDispatchRequest(
            agent_name=self.settings.agent_name, room=job.room or job.call_id, metadata=json.dumps(metadata)
        )
        lk = self._api()
        try:
            # A room a webhook admitted that no longer exists closed after its caller left: dispatching into it
            # would create it afresh (and its room_started would admit a call nobody placed), and an agent
            # there would wait for nobody. Other sources' rooms may be created by the dispatch itself.
            if (
                job.source == "livekit"
                and not (await lk.room.list_rooms(api.ListRoomsRequest(names=[request.room]))).rooms
            ):
                return None
            # A call handed back by a draining or dead worker may still have its agent in the room:
            # adopt that live dispatch instead of sending a second agent to talk over the first.
            for existing in await lk.agent_dispatch.list_dispatch(request.room):
                if _is_live_dispatch_of(existing, request.agent_name, job.call_id):
                    logger.info("call %s: adopting live dispatch %s in room %s", job.call_id, existing.id, request.room)
                    return str(existing.id)
            dispatch = await lk.agent_dispatch.create_dispatch(request)
        finally:
            await lk.aclose()
        logger.info(
            "call %s: dispatched %s to room %s (%s)", job.call_id, request.agent_name, request.room, dispatch.id
        )
        return str(dispatch.id)

    async def _wait_marker(self, call_id: str) -> dict[str, Any]:
        # Poll rather than BLPOP: the queue's client is a bounded pool shared with heartbeats and claims,
        # and one blocked connection per running call would starve them on a worker with many slots.
        deadline = time.monotonic() + self.max_session_s
        while True:
            pause = self.poll_interval_s
            try:
                marker = await self._pop_marker(call_id)
            except UNREACHABLE as exc:
                marker, pause = None, max(pause, self.outage.failed(exc))
            else:
                self.outage.ok()
            if marker is not None:
                return marker
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no end of session for call {call_id} after {self.max_session_s:.0f} s")
            await asyncio.sleep(pause)

    async def _pop_marker(self, call_id: str) -> dict[str, Any] | None:
        raw: Any = await self.redis.lpop(session_ended_key(self.prefix, call_id))
        if raw is None:
            return None
        try:
            marker = json.loads(raw)
        except ValueError:
            marker = None
        return marker if isinstance(marker, dict) else {"status": "failed", "error": f"bad end marker {raw!r}"}


class RoutingRunner:
    """Sends each call to the runner for its transport.

    Simulated calls (a ``script``, even an empty one) run on the text runner; real calls (no script) go
    to the dispatch runner, or to the text runner when no LiveKit is configured (they end at once there).
    """

    def __init__(self, text: CallRunner, dispatch: CallRunner | None = None) -> None:
        """Build a router.

        Args:
            text: Runs simulated calls (and real ones when ``dispatch`` is None).
            dispatch: Runs real LiveKit calls.
        """
        self.text = text
        self.dispatch = dispatch

    async def run(self, claimed: ClaimedCall) -> CallOutcome:
        """Run the call on the runner for its transport."""
        if claimed.job.script is None and self.dispatch is not None:
            return await self.dispatch.run(claimed)
        return await self.text.run(claimed)


_ENDED_JOBS = {agent.JobStatus.JS_SUCCESS, agent.JobStatus.JS_FAILED, agent.JobStatus.JS_CANCELLED}


def _is_live_dispatch_of(dispatch: api.AgentDispatch, agent_name: str, call_id: str) -> bool:
    """Our agent, for this call, and no job of it has ended (pending or running)."""
    if dispatch.agent_name != agent_name:
        return False
    try:
        if json.loads(dispatch.metadata or "{}").get("call_id") != call_id:
            return False
    except ValueError:
        return False
    return not any(job.state.status in _ENDED_JOBS for job in dispatch.state.jobs)
