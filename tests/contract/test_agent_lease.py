"""The agent lease and the end markers an agent worker hands on: a lost agent is replaced in its room, on real Redis
against the Twirp stand-in for LiveKit's AgentDispatchService and RoomService."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.room import ListParticipantsRequest, ListParticipantsResponse

from orchestrator.config import Settings
from orchestrator.contracts import CallOutcome
from orchestrator.runtime import Services
from orchestrator.session.text import TextCall
from orchestrator.store.records import CallStore
from orchestrator.telemetry.service import Telemetry
from orchestrator.worker.dispatch import (
    LOST,
    LiveKitDispatchRunner,
    _same_room,
    agent_lease_key,
    push_session_ended,
    release_session_end,
    session_ended_key,
    session_ending_key,
)
from tests.contract.test_livekit_dispatch import (  # the stand-in and its fixtures
    DELETE_PATH,
    DISPATCH_PATH,
    LIST_PATH,
    ROOMS_PATH,
    DispatchStandIn,
    claimed_call,
    make_runner,
    redis,
    services,
    settings,
)

pytestmark = pytest.mark.contract

__all__ = ["redis", "services", "settings"]
PARTICIPANTS_PATH = "/twirp/livekit.RoomService/ListParticipants"


@dataclass
class RoomsWithCallers(DispatchStandIn):
    """The dispatch stand-in, with RoomService.ListParticipants: a caller in every room but those in ``left``."""

    left: set[str] = field(default_factory=set)

    async def participants(self, request: web.Request) -> web.Response:
        room = ListParticipantsRequest.FromString(await request.read()).room
        people = [] if room in self.left else [ParticipantInfo(identity="caller", kind=ParticipantInfo.Kind.STANDARD)]
        answer = ListParticipantsResponse(participants=people)
        return web.Response(body=answer.SerializeToString(), content_type="application/protobuf")


@pytest.fixture
async def livekit() -> AsyncIterator[RoomsWithCallers]:
    stand_in = RoomsWithCallers()
    app = web.Application()
    for path, handler in (
        (DISPATCH_PATH, stand_in.handle),
        (LIST_PATH, stand_in.list),
        (ROOMS_PATH, stand_in.list_rooms),
        (DELETE_PATH, stand_in.delete),
        (PARTICIPANTS_PATH, stand_in.participants),
    ):
        app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # aiohttp's private server
    stand_in.url = f"http://127.0.0.1:{port}"
    try:
        yield stand_in
    finally:
        await runner.cleanup()


async def test_a_finished_jobs_marker_is_handed_on_once_its_process_is_gone(
    redis: tuple[aioredis.Redis, str],
) -> None:
    client, prefix = redis
    await client.set(agent_lease_key(prefix, "c1"), "{}", px=2000)
    await push_session_ended(client, prefix, "c1", pending=True)
    # Until the process has exited the marker waits, and the lease holds longer than a renewal would.
    assert await client.llen(session_ended_key(prefix, "c1")) == 0
    assert await client.pttl(agent_lease_key(prefix, "c1")) > 2000
    assert await release_session_end(client, prefix, "c1", error="died")
    [raw] = await client.lrange(session_ended_key(prefix, "c1"), 0, -1)
    assert json.loads(raw)["status"] == "ended"
    assert not await client.exists(session_ending_key(prefix, "c1"), agent_lease_key(prefix, "c1"))


async def test_a_job_whose_process_died_without_a_marker_is_lost(redis: tuple[aioredis.Redis, str]) -> None:
    client, prefix = redis
    await client.set(agent_lease_key(prefix, "c2"), "{}", px=2000)
    assert not await release_session_end(client, prefix, "c2", error="the job process died")
    [raw] = await client.lrange(session_ended_key(prefix, "c2"), 0, -1)
    assert json.loads(raw) | {"at": 0} == {"status": LOST, "error": "the job process died", "at": 0}
    assert not await client.exists(agent_lease_key(prefix, "c2"))


async def _dispatched(livekit: DispatchStandIn, n: int) -> None:
    """Wait for the ``n``th dispatch."""
    while len(livekit.requests) < n:
        livekit.received.clear()
        await asyncio.wait_for(livekit.received.wait(), 30)


async def test_an_agent_that_never_takes_its_lease_is_replaced_by_a_new_dispatch_in_the_same_room(
    services: Services, settings: Settings, redis: tuple[aioredis.Redis, str], livekit: DispatchStandIn
) -> None:
    client, prefix = redis
    call_id = f"lost-{uuid.uuid4().hex[:6]}"
    runner = make_runner(services, settings, redis)
    runner.lease_start_s = 3.0
    run = asyncio.create_task(runner.run(claimed_call(call_id)))
    # The first agent's worker died before its job took the lease (or with it: nobody renews it), and left no marker.
    await _dispatched(livekit, 2)
    await push_session_ended(client, prefix, call_id)
    outcome = await asyncio.wait_for(run, 30)
    assert isinstance(outcome, CallOutcome)
    assert outcome.call_id == call_id
    first, second = (r for r, _ in livekit.requests)
    assert (first.room, second.room) == (f"call-{call_id}", f"call-{call_id}")
    # The lost agent's dispatch was withdrawn before the new one went out, so a retry never adopts it.
    [withdrawn] = livekit.deleted
    assert [d.id for d in livekit.dispatches] != [withdrawn]
    assert len(livekit.dispatches) == 1


async def test_the_marker_of_a_job_whose_agent_worker_died_after_the_call_ended_ends_the_call(
    services: Services, settings: Settings, redis: tuple[aioredis.Redis, str], livekit: DispatchStandIn
) -> None:
    client, prefix = redis
    call_id = f"ended-{uuid.uuid4().hex[:6]}"
    runner = make_runner(services, settings, redis)
    runner.lease_start_s = 3.0
    run = asyncio.create_task(runner.run(claimed_call(call_id)))
    await _dispatched(livekit, 1)
    # The session ended (its marker waits for the process to exit), then the whole agent worker died: no lease.
    await push_session_ended(client, prefix, call_id, pending=True)
    await client.delete(agent_lease_key(prefix, call_id))
    outcome = await asyncio.wait_for(run, 30)
    assert outcome.call_id == call_id
    assert len(livekit.requests) == 1
    assert not await client.exists(session_ending_key(prefix, call_id))


def test_a_room_made_afresh_under_the_same_name_is_another_call() -> None:
    assert _same_room("lk-RM_abc", [Room(sid="RM_abc", name="call-1")])
    assert not _same_room("lk-RM_abc", [Room(sid="RM_new", name="call-1")])
    assert not _same_room("lk-RM_abc", [])
    # Calls not named after a room's sid (other sources) match by name.
    assert _same_room("c1", [Room(sid="RM_x", name="call-c1")])


async def test_a_call_whose_room_is_gone_after_its_agent_died_is_recorded_with_the_turns_it_took(
    services: Services, settings: Settings, redis: tuple[aioredis.Redis, str], livekit: DispatchStandIn
) -> None:
    # One turn was taken before the agent died without writing the call's record, and the caller has hung up since:
    # no agent will run the call again, so the queue worker records it from its checkpoint.
    call_id = f"lk-gone-{uuid.uuid4().hex[:6]}"
    call = TextCall(services, call_id=call_id, caller_id="+15550100")
    try:
        await call.start()
        await call.say("What's my balance?")
    finally:
        await call.aclose()
    livekit.gone.add(f"call-{call_id}")
    client, prefix = redis
    telemetry = Telemetry.build(settings, store=await CallStore.open(services.engine, settings))
    try:
        runner = LiveKitDispatchRunner(services, client, settings=settings, prefix=prefix, telemetry=telemetry)
        outcome = await asyncio.wait_for(runner.run(claimed_call(call_id)), 30)
        assert telemetry.store is not None
        view = await telemetry.store.get_call(call_id)
    finally:
        await telemetry.aclose()
    assert outcome.turns == 1
    assert livekit.requests == []
    assert view is not None
    record = view.to_json()
    assert (record["turn_count"], record["outcome"]) == (1, outcome.outcome)
    assert "balance" in record["turns"][0]["caller"].lower()


async def test_a_lost_agent_whose_caller_has_left_is_not_replaced_and_the_call_ends_with_its_record(
    services: Services, settings: Settings, redis: tuple[aioredis.Redis, str], livekit: RoomsWithCallers
) -> None:
    client, prefix = redis
    call_id = f"lk-left-{uuid.uuid4().hex[:6]}"
    telemetry = Telemetry.build(settings, store=await CallStore.open(services.engine, settings))
    try:
        runner = LiveKitDispatchRunner(
            services, client, settings=settings, prefix=prefix, poll_interval_s=0.05, telemetry=telemetry
        )
        runner.lease_start_s = 3.0
        livekit.left.add(f"call-{call_id}")
        outcome = await asyncio.wait_for(runner.run(claimed_call(call_id)), 30)
        assert telemetry.store is not None
        view = await telemetry.store.get_call(call_id)
    finally:
        await telemetry.aclose()
    # One agent, lost; no second one for a room its caller has left (a late one could recreate the room).
    assert len(livekit.requests) == 1
    assert (len(livekit.deleted), livekit.dispatches) == (1, [])
    assert (outcome.outcome, outcome.turns) == ("abandoned", 0)
    assert view is not None
