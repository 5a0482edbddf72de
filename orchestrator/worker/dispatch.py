"""Real LiveKit calls: dispatch the voice agent into the call's room, wait for its session to end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio as aioredis
from livekit import api
from livekit.protocol import agent, models
from livekit.protocol.models import Room
from pydantic import ValidationError

from orchestrator.config import Settings
from orchestrator.contracts import CallJob, CallOutcome
from orchestrator.queue import ClaimedCall
from orchestrator.queue.outage import UNREACHABLE, Outage
from orchestrator.results import outcome_of
from orchestrator.runtime import Services
from orchestrator.telemetry.service import Telemetry
from orchestrator.worker.runner import CallDeferred, CallRunner, checkpoint_state, outcome_from_state
from orchestrator.worker.tracking import CallTicket, result_from_state

__all__ = [
    "AGENT_LEASE_MS",
    "PREFIX_METADATA_KEY",
    "AgentLost",
    "DispatchNotTaken",
    "DispatchedCall",
    "LiveKitDispatchRunner",
    "RoutingRunner",
    "SessionFailed",
    "agent_lease_key",
    "dispatch_metadata",
    "push_session_ended",
    "release_session_end",
    "session_ended_key",
    "session_ending_key",
]

logger = logging.getLogger(__name__)

# The dispatch metadata carries the queue prefix, because the agent worker is started without one and
# must push the end marker where this queue's runner waits for it.
PREFIX_METADATA_KEY = "queue_prefix"
DEFAULT_PREFIX = "sb"
# Markers outlive a queue worker that dies between the push and the ack, so its successor finds them.
MARKER_TTL_S = 24 * 3600
# A running call's agent job renews its lease this often; a lease gone (its worker died with it, or a job was never
# started by a worker that died first) tells the queue worker the agent is lost, long before the server notices.
# Ten renewals fit in one lease: at 2 s, ten calls on a 2-core box (load 48) lost six live agents whose renewals
# had timed out, and each replacement started another job process on the starved machine. A job process that dies
# is reported by its agent worker at once; only a whole worker's death waits for the lease.
AGENT_LEASE_MS = 5000
AGENT_LEASE_RENEW_S = 0.5
# Once the job's session is over, its lease holds until its process has exited and the agent worker released the
# end marker; a worker that dies in between leaves the marker to be taken when this expires.
ENDING_LEASE_MS = 30_000
# Agents dispatched again into one call's room, in place, before the attempt fails (a crash loop is the queue's).
MAX_AGENT_RESTARTS = 3
# The end marker of a job whose process died: the queue worker dispatches another agent into the room.
LOST = "lost"


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


class DispatchNotTaken(SessionFailed, CallDeferred):
    """No agent worker took the call's dispatch in time; it was withdrawn (the worker hands the call back)."""


class AgentLost(SessionFailed):
    """The call's agent died more than `MAX_AGENT_RESTARTS` times in its room (the worker retries the call)."""


def session_ended_key(prefix: str, call_id: str) -> str:
    """The Redis list the agent worker pushes a call's end marker to."""
    return f"{prefix}:session-ended:{call_id}"


def session_ending_key(prefix: str, call_id: str) -> str:
    """Where a job leaves its call's end marker until its process has exited (`release_session_end` moves it)."""
    return f"{prefix}:session-ending:{call_id}"


def agent_lease_key(prefix: str, call_id: str) -> str:
    """The lease a running call's agent job holds (its value says which process: ``{"pid", "at"}``)."""
    return f"{prefix}:agent-lease:{call_id}"


# Atomic, so the queue worker never sees the lease gone before the marker is there: the job's own marker if it
# left one, else a `LOST` one; then the lease goes.
_RELEASE = """
local moved = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
if not moved then redis.call('RPUSH', KEYS[2], ARGV[1]) end
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3])
return moved and 1 or 0
"""


async def release_session_end(redis: aioredis.Redis, prefix: str, call_id: str, *, error: str) -> bool:
    """Hand a finished job's end marker to the queue worker, once its process is gone; a `LOST` one if it left none.

    Returns:
        True when the job had left its own marker (its session ended), False when it died without one.
    """
    lost = json.dumps({"status": LOST, "error": error, "at": time.time()})
    keys = [session_ending_key(prefix, call_id), session_ended_key(prefix, call_id), agent_lease_key(prefix, call_id)]
    moved = await redis.eval(_RELEASE, len(keys), *keys, lost, MARKER_TTL_S)
    return bool(moved)


async def push_session_ended(
    redis: aioredis.Redis,
    prefix: str,
    call_id: str,
    *,
    status: Literal["ended", "failed"] = "ended",
    error: str | None = None,
    pending: bool = False,
) -> None:
    """Push a call's end marker: ``ended`` once its session closed, ``failed`` if it crashed.

    With ``pending``, the marker waits under `session_ending_key` until the job's process has exited
    (`release_session_end`), and the job's lease is stretched to `ENDING_LEASE_MS` meanwhile.
    """
    key = session_ending_key(prefix, call_id) if pending else session_ended_key(prefix, call_id)
    marker = json.dumps({"status": status, "error": error, "at": time.time()})
    pipe = redis.pipeline(transaction=True)
    pipe.rpush(key, marker)
    pipe.expire(key, MARKER_TTL_S)
    if pending:
        pipe.pexpire(agent_lease_key(prefix, call_id), ENDING_LEASE_MS)
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
        lease_start_s: float = 60.0,
        telemetry: Telemetry | None = None,
    ) -> None:
        """Build a runner.

        Args:
            services: The process's graph (its checkpoint holds each call's outcome).
            redis: The queue's client; the markers live under the queue's prefix.
            settings: LiveKit URL and credentials, and the agent name to dispatch.
            prefix: Queue key prefix.
            poll_interval_s: Pause between marker pops (the extra delay before a slot frees).
            max_session_s: Give up on a session that never reports its end (its agent job died).
            assign_timeout_s: Withdraw a dispatch no agent worker took by then, and hand the call back to the queue.
            lease_start_s: An agent whose job has not taken the call's lease by then (after its dispatch was
                taken) is lost, and another is dispatched.
            telemetry: Records a call that ends here with no session (its room was gone): no agent writes it.

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
        self.lease_start_s = lease_start_s
        self.telemetry = telemetry
        self.outage = Outage("dispatch runner")

    async def run(self, claimed: ClaimedCall) -> CallOutcome:
        """Dispatch the agent (unless the session already ended), wait for the end marker, return the outcome.

        An agent lost mid-call (its job process or its whole agent worker died) is replaced in the same room at
        once, up to `MAX_AGENT_RESTARTS` times: the new agent resumes the call from its checkpoint.
        """
        job = claimed.job
        resumed_at = int((await checkpoint_state(self.services, job.call_id)).get("turn") or 0)
        marker = await self._pop_marker(job.call_id)
        if marker is None or marker.get("status") != "ended":
            # No marker, or a stale failure the previous holder never handled: start a (new) session.
            replacing: str | None = None
            for _ in range(MAX_AGENT_RESTARTS + 1):
                dispatch_id = await self._dispatch(claimed, replacing=replacing)
                if dispatch_id is None:
                    logger.warning(
                        "call %s: room %s is gone or its caller has left, so nobody is there to answer",
                        job.call_id,
                        job.room,
                    )
                    final = await checkpoint_state(self.services, job.call_id)
                    return await self._ended_unattended(claimed, final, resumed_at)
                await self._ensure_taken(job.call_id, job.room or job.call_id, dispatch_id)
                marker = await self._wait_marker(job.call_id)
                if marker.get("status") != LOST:
                    break
                logger.warning(
                    "call %s: its agent was lost (%s); dispatching another into room %s",
                    job.call_id,
                    marker.get("error"),
                    job.room,
                )
                replacing = dispatch_id
            else:
                raise AgentLost(f"the agent of call {job.call_id} was lost {MAX_AGENT_RESTARTS + 1} times")
        if marker.get("status") != "ended":
            raise SessionFailed(f"session of call {job.call_id} failed: {marker.get('error') or 'unknown error'}")
        final = await checkpoint_state(self.services, job.call_id)
        return outcome_from_state(job.call_id, final, resumed_at=resumed_at)

    async def _ended_unattended(self, claimed: ClaimedCall, final: dict[str, Any], resumed_at: int) -> CallOutcome:
        """The outcome of a call that ends here with no session; its record too, as no agent wrote one."""
        job = claimed.job
        telemetry = self.telemetry
        store = telemetry.store if telemetry is not None else None
        if telemetry is not None and store is not None and await store.get_call(job.call_id) is None:
            started = job.admitted_at if job.admitted_at.tzinfo else job.admitted_at.replace(tzinfo=UTC)
            await telemetry.finish_call(
                result_from_state(job.call_id, final, caller_id=job.caller_id or None),
                started_at=started,
                duration_s=max(0.0, (datetime.now(UTC) - started).total_seconds()),
                queue_wait_ms=claimed.waited_s * 1000,
                worker=claimed.consumer,
                attempt=claimed.attempt,
            )
            logger.warning(
                "call %s: its room is gone: recorded as %s from its checkpoint", job.call_id, outcome_of(final)
            )
        return outcome_from_state(job.call_id, final, resumed_at=resumed_at)

    def _api(self) -> api.LiveKitAPI:
        return api.LiveKitAPI(
            self.settings.livekit_url,
            self.settings.livekit_api_key,
            self.settings.livekit_api_secret.get_secret_value(),
        )

    async def _ensure_taken(self, call_id: str, room: str, dispatch_id: str) -> None:
        """Wait until an agent worker took the dispatch; withdraw it and raise `DispatchNotTaken` if none did.

        LiveKit drops an explicit dispatch that every worker refuses (all are full, or none is registered) and
        never offers it again: nobody would join the room, and the end marker would be awaited for
        ``max_session_s``. The call goes back to the queue and waits there for an agent worker with room.
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

    async def _dispatch(self, claimed: ClaimedCall, *, replacing: str | None = None) -> str | None:
        """Dispatch the agent (or adopt its live dispatch): its id; None, and no dispatch, when the room is gone.

        ``replacing`` is the dispatch of an agent that was lost: it is withdrawn and its participant, which the
        server keeps in the room until its media times out (about 15 s), is removed before another is sent.
        """
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
            if job.source == "livekit" and not _same_room(
                job.call_id, (await lk.room.list_rooms(api.ListRoomsRequest(names=[request.room]))).rooms
            ):
                return None
            if replacing is not None:
                await _withdraw(lk, request.room, replacing)
                if not await _caller_in(lk, request.room):
                    # Hung up while their agent was down: another agent would wait in the room for nobody, and a
                    # dispatch that lands after the room closed would create it afresh, a call nobody placed.
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
        """The session's end marker; a `LOST` one when its agent's lease is gone without one.

        The agent's job renews its lease while it runs (`agent_lease_key`). A lease that was held and is gone,
        or that no job took within ``lease_start_s`` of the dispatch being taken, means the agent died with its
        process or its agent worker: the marker its job may have left behind is taken, else the agent is lost.
        After a Redis outage the agent gets ``lease_start_s`` again to renew it.
        """
        # Poll rather than BLPOP: the queue's client is a bounded pool shared with heartbeats and claims,
        # and one blocked connection per running call would starve them on a worker with many slots.
        deadline = time.monotonic() + self.max_session_s
        lease = agent_lease_key(self.prefix, call_id)
        held, since = False, time.monotonic()
        while True:
            pause = self.poll_interval_s
            try:
                marker = await self._pop_marker(call_id)
                if marker is None:
                    if await self.redis.exists(lease):
                        held = True
                    elif held or time.monotonic() - since >= self.lease_start_s:
                        marker = await self._pop_marker(call_id, session_ending_key(self.prefix, call_id)) or {
                            "status": LOST,
                            "error": "its lease expired" if held else "no job took its lease",
                        }
            except UNREACHABLE as exc:
                marker, pause = None, max(pause, self.outage.failed(exc))
                held, since = False, time.monotonic()
            else:
                self.outage.ok()
            if marker is not None:
                return marker
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no end of session for call {call_id} after {self.max_session_s:.0f} s")
            await asyncio.sleep(pause)

    async def _pop_marker(self, call_id: str, key: str | None = None) -> dict[str, Any] | None:
        raw: Any = await self.redis.lpop(key or session_ended_key(self.prefix, call_id))
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


def _same_room(call_id: str, rooms: Sequence[Room]) -> bool:
    """The call's room still exists: the room of its name, and the same instance of it when the call is named after
    its sid (``lk-RM_…``). A room of that name made afresh (its caller came back after livekit-server restarted) is
    another call, admitted by its own webhook: sending this call's agent there would put two agents in one room.
    """
    if not rooms:
        return False
    return not (call_id.startswith("lk-RM_") and rooms[0].sid and call_id != f"lk-{rooms[0].sid}")


async def _caller_in(lk: api.LiveKitAPI, room: str) -> bool:
    """A caller (a standard or SIP participant, not an agent) is still in ``room``."""
    try:
        listed = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
    except api.TwirpError:
        return False  # the room closed meanwhile
    callers = (models.ParticipantInfo.Kind.STANDARD, models.ParticipantInfo.Kind.SIP)
    return any(p.kind in callers for p in listed.participants)


async def _withdraw(lk: api.LiveKitAPI, room: str, dispatch_id: str) -> None:
    """Delete a lost agent's dispatch and remove its participants from the room (both may be gone already)."""
    identities: list[str] = []
    for existing in await lk.agent_dispatch.list_dispatch(room):
        if existing.id == dispatch_id:
            identities = [j.state.participant_identity for j in existing.state.jobs if j.state.participant_identity]
            with contextlib.suppress(api.TwirpError):
                await lk.agent_dispatch.delete_dispatch(dispatch_id, room)
    for identity in identities:
        with contextlib.suppress(api.TwirpError):
            await lk.room.remove_participant(api.RoomParticipantIdentity(room=room, identity=identity))


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
