"""LiveKitDispatchRunner against a Twirp stand-in for LiveKit's AgentDispatchService and RoomService, on real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from livekit.api import TokenVerifier
from livekit.api.twirp_client import ServerError
from livekit.protocol.agent import Job, JobState, JobStatus
from livekit.protocol.agent_dispatch import (
    AgentDispatch,
    CreateAgentDispatchRequest,
    DeleteAgentDispatchRequest,
    ListAgentDispatchRequest,
    ListAgentDispatchResponse,
)
from livekit.protocol.models import Room
from livekit.protocol.room import ListRoomsRequest, ListRoomsResponse

from orchestrator.config import Settings, load_settings
from orchestrator.contracts import CallJob, CallOutcome
from orchestrator.queue import ClaimedCall
from orchestrator.results import outcome_of
from orchestrator.runtime import Services
from orchestrator.scenarios import SCENARIOS
from orchestrator.session.text import TextCall
from orchestrator.worker.agent_worker import _mark_session_end
from orchestrator.worker.dispatch import (
    DispatchNotTaken,
    LiveKitDispatchRunner,
    RoutingRunner,
    SessionFailed,
    push_session_ended,
    session_ended_key,
)
from tests.conftest import REDIS_TEST_URL
from tests.flow.private_redis import PrivateRedis

pytestmark = pytest.mark.contract

API_KEY = "test-key"
API_SECRET = "test-secret-that-is-long-enough-for-hs256"
DISPATCH_PATH = "/twirp/livekit.AgentDispatchService/CreateDispatch"
LIST_PATH = "/twirp/livekit.AgentDispatchService/ListDispatch"
DELETE_PATH = "/twirp/livekit.AgentDispatchService/DeleteDispatch"
ROOMS_PATH = "/twirp/livekit.RoomService/ListRooms"


@dataclass
class DispatchStandIn:
    """LiveKit's Twirp AgentDispatchService (CreateDispatch, recorded or a 500; ListDispatch per room) and
    RoomService.ListRooms (every room asked for exists, but those in ``gone``)."""

    url: str = ""
    fail: bool = False
    requests: list[tuple[CreateAgentDispatchRequest, dict[str, str]]] = field(default_factory=list)
    received: asyncio.Event = field(default_factory=asyncio.Event)
    dispatches: list[AgentDispatch] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)  # the room of every ListDispatch, in order
    listed_again: asyncio.Event = field(default_factory=asyncio.Event)  # a room's dispatches asked for twice
    gone: set[str] = field(default_factory=set)  # rooms that closed
    refused: bool = False  # every agent worker refuses new dispatches: they get no job
    deleted: list[str] = field(default_factory=list)

    async def delete(self, request: web.Request) -> web.Response:
        body = DeleteAgentDispatchRequest.FromString(await request.read())
        self.deleted.append(body.dispatch_id)
        [gone] = [d for d in self.dispatches if d.id == body.dispatch_id]
        self.dispatches.remove(gone)
        return web.Response(body=gone.SerializeToString(), content_type="application/protobuf")

    rooms_asked: list[str] = field(default_factory=list)

    async def list_rooms(self, request: web.Request) -> web.Response:
        names = list(ListRoomsRequest.FromString(await request.read()).names)
        self.rooms_asked += names
        answer = ListRoomsResponse(rooms=[Room(sid=f"RM_{n}", name=n) for n in names if n not in self.gone])
        return web.Response(body=answer.SerializeToString(), content_type="application/protobuf")

    async def list(self, request: web.Request) -> web.Response:
        room = ListAgentDispatchRequest.FromString(await request.read()).room
        self.listed.append(room)
        if self.listed.count(room) > 1:
            self.listed_again.set()
        answer = ListAgentDispatchResponse(agent_dispatches=[d for d in self.dispatches if d.room == room])
        return web.Response(body=answer.SerializeToString(), content_type="application/protobuf")

    async def handle(self, request: web.Request) -> web.Response:
        body = CreateAgentDispatchRequest.FromString(await request.read())
        self.requests.append((body, dict(request.headers)))
        self.received.set()
        if self.fail:
            return web.json_response({"code": "internal", "msg": "dispatch store down"}, status=500)
        answer = AgentDispatch(id=f"AD_{uuid.uuid4().hex[:8]}", agent_name=body.agent_name, room=body.room)
        answer.metadata = body.metadata
        if not self.refused:
            # A worker took it: its job runs.
            answer.state.jobs.append(Job(id=f"AJ_{uuid.uuid4().hex[:8]}", state=JobState(status=JobStatus.JS_RUNNING)))
        self.dispatches.append(answer)
        return web.Response(body=answer.SerializeToString(), content_type="application/protobuf")


@pytest.fixture
async def livekit() -> AsyncIterator[DispatchStandIn]:
    stand_in = DispatchStandIn()
    app = web.Application()
    app.router.add_post(DISPATCH_PATH, stand_in.handle)
    app.router.add_post(LIST_PATH, stand_in.list)
    app.router.add_post(ROOMS_PATH, stand_in.list_rooms)
    app.router.add_post(DELETE_PATH, stand_in.delete)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    stand_in.url = f"http://127.0.0.1:{port}"
    try:
        yield stand_in
    finally:
        await runner.cleanup()


@pytest.fixture
def settings(tmp_path: Path, livekit: DispatchStandIn) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        livekit_url=livekit.url,
        livekit_api_key=API_KEY,
        livekit_api_secret=API_SECRET,
        redis_url=REDIS_TEST_URL,
    )


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    svc = await Services.open(settings)
    try:
        yield svc
    finally:
        await svc.aclose()


@pytest.fixture
async def redis() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    client = aioredis.Redis.from_url(REDIS_TEST_URL)
    prefix = f"lkd-{uuid.uuid4().hex[:10]}"
    try:
        yield client, prefix
    finally:
        keys = [k async for k in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def claimed_call(call_id: str, *, script: list[str] | None = None) -> ClaimedCall:
    job = CallJob(call_id=call_id, source="livekit", room=f"call-{call_id}", caller_id="+15550100", script=script)
    return ClaimedCall(
        job=job, entry_id="1-0", priority=1, deliveries=1, waited_s=0.0, consumer="w1", claimed_at=time.monotonic()
    )


def make_runner(services: Services, settings: Settings, redis: tuple[aioredis.Redis, str]) -> LiveKitDispatchRunner:
    client, prefix = redis
    return LiveKitDispatchRunner(services, client, settings=settings, prefix=prefix, poll_interval_s=0.05)


async def test_dispatches_the_agent_into_the_room_and_returns_the_outcome_at_the_end_marker(
    services: Services, settings: Settings, livekit: DispatchStandIn, redis: tuple[aioredis.Redis, str]
) -> None:
    call_id = f"lk-{uuid.uuid4().hex[:8]}"
    claimed = claimed_call(call_id)
    task = asyncio.create_task(make_runner(services, settings, redis).run(claimed))
    try:
        await asyncio.wait_for(livekit.received.wait(), 10)
        [(request, headers)] = livekit.requests
        assert (request.agent_name, request.room) == (settings.agent_name, f"call-{call_id}")
        metadata = json.loads(request.metadata)
        assert {k: metadata[k] for k in ("call_id", "caller_id", "queue_prefix", "worker", "attempt")} == {
            "call_id": call_id,
            "caller_id": "+15550100",
            "queue_prefix": redis[1],
            "worker": "w1",
            "attempt": 1,
        }
        # The whole job travels, traceparent included, so the voice call's span joins the admission trace.
        assert CallJob.model_validate(metadata["job"]) == claimed.job
        assert headers["Content-Type"] == "application/protobuf"
        scheme, _, token = headers["Authorization"].partition(" ")
        claims = TokenVerifier(API_KEY, API_SECRET).verify(token)  # checks the signature and expiry
        assert scheme == "Bearer"
        assert claims.video is not None
        assert (claims.video.room_admin, claims.video.room) == (True, f"call-{call_id}")

        # The agent side: the voice session runs turns on the same graph thread, then reports its end.
        await asyncio.sleep(0.2)
        assert not task.done()
        agent = TextCall(services, call_id=call_id, caller_id="+15550100")
        try:
            for utterance in SCENARIOS[0].turns[:2]:
                await agent.say(utterance)
            state = await agent.state()
        finally:
            await agent.aclose()
        await _mark_session_end(settings, json.loads(request.metadata), call_id)
        outcome = await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
    assert isinstance(outcome, CallOutcome)
    assert (outcome.call_id, outcome.turns, outcome.resumed_at_turn) == (call_id, int(state["turn"]), 0)
    assert outcome.turns >= 1
    assert outcome.outcome == outcome_of(state)
    assert outcome.handoffs == [dict(h) for h in state.get("handoffs", [])]
    assert await redis[0].exists(session_ended_key(redis[1], call_id)) == 0


async def test_a_dispatch_error_raises(
    services: Services, settings: Settings, livekit: DispatchStandIn, redis: tuple[aioredis.Redis, str]
) -> None:
    livekit.fail = True
    with pytest.raises(ServerError) as caught:
        await asyncio.wait_for(make_runner(services, settings, redis).run(claimed_call("lk-fails")), 10)
    assert caught.value.status == 500
    assert len(livekit.requests) == 1


async def test_cancelling_the_wait_returns_promptly(
    services: Services, settings: Settings, livekit: DispatchStandIn, redis: tuple[aioredis.Redis, str]
) -> None:
    task = asyncio.create_task(make_runner(services, settings, redis).run(claimed_call("lk-cancel")))
    await asyncio.wait_for(livekit.received.wait(), 10)
    task.cancel()
    # The runner's wait for the end marker ends with the cancellation (a wait that swallowed it would poll
    # on until the cap); how fast is not this test's business.
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    assert task.cancelled()


async def test_a_failed_session_raises_and_a_waiting_end_marker_skips_the_dispatch(
    services: Services, settings: Settings, livekit: DispatchStandIn, redis: tuple[aioredis.Redis, str]
) -> None:
    client, prefix = redis
    runner = make_runner(services, settings, redis)
    task = asyncio.create_task(runner.run(claimed_call("lk-crash")))
    await asyncio.wait_for(livekit.received.wait(), 10)
    await push_session_ended(client, prefix, "lk-crash", status="failed", error="RuntimeError: room gone")
    with pytest.raises(SessionFailed, match="room gone"):
        await asyncio.wait_for(task, 10)

    # The previous holder died between the marker and the ack: the session is over, no second agent.
    await push_session_ended(client, prefix, "lk-done")
    outcome = await asyncio.wait_for(runner.run(claimed_call("lk-done")), 10)
    assert (outcome.call_id, outcome.turns) == ("lk-done", 0)
    assert [r.room for r, _ in livekit.requests] == ["call-lk-crash"]


async def test_a_call_whose_room_is_gone_ends_abandoned_without_a_dispatch(
    services: Services, settings: Settings, livekit: DispatchStandIn, redis: tuple[aioredis.Redis, str]
) -> None:
    # The caller left and the server closed the room before a worker claimed the call (or while a failed
    # session waited for its retry): no agent is sent to recreate the room and wait in it for nobody.
    livekit.gone.add("call-lk-left")
    outcome = await asyncio.wait_for(make_runner(services, settings, redis).run(claimed_call("lk-left")), 10)
    assert (outcome.call_id, outcome.outcome, outcome.turns) == ("lk-left", "abandoned", 0)
    assert livekit.rooms_asked == ["call-lk-left"]
    assert (livekit.requests, livekit.listed) == ([], [])
    # A call from another source may have its room made by the dispatch: it is dispatched without asking.
    other = claimed_call("sip-1")
    other = dataclasses.replace(other, job=other.job.model_copy(update={"source": "sip", "room": "call-lk-left"}))
    task = asyncio.create_task(make_runner(services, settings, redis).run(other))
    try:
        await asyncio.wait_for(livekit.received.wait(), 10)
    finally:
        task.cancel()
    assert [r.room for r, _ in livekit.requests] == ["call-lk-left"]
    assert livekit.rooms_asked == ["call-lk-left"]


async def test_a_dispatch_no_agent_worker_takes_is_withdrawn_and_the_attempt_fails(
    services: Services, settings: Settings, livekit: DispatchStandIn, redis: tuple[aioredis.Redis, str]
) -> None:
    # LiveKit drops a dispatch every worker refused and never offers it again: waiting for its end marker
    # would hold the call for max_session_s while nobody answers its caller.
    livekit.refused = True
    client, prefix = redis
    runner = LiveKitDispatchRunner(services, client, settings=settings, prefix=prefix, assign_timeout_s=0.5)
    with pytest.raises(DispatchNotTaken, match="lk-refused"):
        await asyncio.wait_for(runner.run(claimed_call("lk-refused")), 30)
    [(request, _)] = livekit.requests
    # Withdrawn, so a retry cannot adopt it as a live dispatch.
    assert len(livekit.deleted) == 1
    assert livekit.dispatches == []
    # The retry, once a worker has room again, dispatches afresh and waits for the session.
    livekit.refused = False
    livekit.received.clear()
    task = asyncio.create_task(runner.run(claimed_call("lk-refused")))
    try:
        await asyncio.wait_for(livekit.received.wait(), 30)
        await push_session_ended(client, prefix, "lk-refused")
        outcome = await asyncio.wait_for(task, 30)
    finally:
        task.cancel()
    assert outcome.call_id == "lk-refused"
    assert [r.room for r, _ in livekit.requests] == [request.room, request.room]


class _Recorder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[str] = []

    async def run(self, claimed: ClaimedCall) -> CallOutcome:
        self.seen.append(claimed.call_id)
        return CallOutcome(call_id=claimed.call_id, worker=self.name)


async def test_routing_sends_scripted_calls_to_text_and_real_calls_to_dispatch() -> None:
    text, dispatch = _Recorder("text"), _Recorder("dispatch")
    router = RoutingRunner(text, dispatch)
    for call in (claimed_call("sim", script=["hi"]), claimed_call("sim-empty", script=[]), claimed_call("real")):
        await router.run(call)
    assert (text.seen, dispatch.seen) == (["sim", "sim-empty"], ["real"])
    no_livekit = _Recorder("text")
    await RoutingRunner(no_livekit, None).run(claimed_call("real"))
    assert no_livekit.seen == ["real"]


async def test_a_handed_back_call_adopts_its_live_agent_instead_of_dispatching_a_second(
    services: Services, settings: Settings, livekit: DispatchStandIn, redis: tuple[aioredis.Redis, str]
) -> None:
    client, prefix = redis
    first = asyncio.create_task(make_runner(services, settings, redis).run(claimed_call("lk-handback")))
    await asyncio.wait_for(livekit.received.wait(), 10)
    first.cancel()  # the worker drains: the call goes back to the queue, its agent stays in the room
    with pytest.raises(asyncio.CancelledError):
        await first
    second = asyncio.create_task(make_runner(services, settings, redis).run(claimed_call("lk-handback")))
    # The end marker comes once the second runner has asked for the room's dispatches (before, it would
    # skip the dispatch for the marker's sake, and the adoption would go untested).
    await asyncio.wait_for(livekit.listed_again.wait(), 30)
    await push_session_ended(client, prefix, "lk-handback", status="ended")
    outcome = await asyncio.wait_for(second, 10)
    assert outcome.call_id == "lk-handback"
    assert len(livekit.requests) == 1, "the live agent was adopted, not dispatched again"


async def test_an_ended_dispatch_is_not_adopted(
    services: Services, settings: Settings, livekit: DispatchStandIn, redis: tuple[aioredis.Redis, str]
) -> None:
    client, prefix = redis
    ended = AgentDispatch(
        id="AD_old",
        agent_name=settings.agent_name,
        room="call-lk-again",
        metadata=json.dumps({"call_id": "lk-again"}),
    )
    ended.state.jobs.append(Job(id="AJ_old", state=JobState(status=JobStatus.JS_FAILED)))
    livekit.dispatches.append(ended)
    task = asyncio.create_task(make_runner(services, settings, redis).run(claimed_call("lk-again")))
    await asyncio.wait_for(livekit.received.wait(), 10)
    await push_session_ended(client, prefix, "lk-again", status="ended")
    await asyncio.wait_for(task, 10)
    assert len(livekit.requests) == 1, "a dispatch whose job ended does not count as a live agent"


async def test_the_wait_for_the_end_of_a_session_rides_out_a_redis_restart(
    services: Services, settings: Settings, livekit: DispatchStandIn, tmp_path: Path
) -> None:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = PrivateRedis(folder)
    server.start()
    client = aioredis.Redis.from_url(server.url)
    runner = LiveKitDispatchRunner(services, client, settings=settings, prefix="lkd", poll_interval_s=0.05)
    call_id = f"lk-{uuid.uuid4().hex[:8]}"
    task = asyncio.create_task(runner.run(claimed_call(call_id)))
    try:
        await asyncio.wait_for(livekit.received.wait(), 10)
        server.stop()
        # Down until the runner has given up on the client's own retries (or died of the outage).
        deadline = time.monotonic() + 60
        while not (runner.outage.down or task.done()) and time.monotonic() < deadline:
            await asyncio.wait({task}, timeout=0.05)
        assert runner.outage.down or task.done(), "the outage went unnoticed for 60 s"
        assert not task.done(), task.exception()
        server.start()
        await push_session_ended(client, "lkd", call_id)
        outcome = await asyncio.wait_for(task, 30)
    finally:
        task.cancel()
        await client.aclose()
        server.kill9()
    assert (outcome.call_id, outcome.outcome) == (call_id, "abandoned")
    assert not runner.outage.down
