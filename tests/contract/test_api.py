"""The intake API on real Redis: signed LiveKit webhooks, HMAC /v1/calls, admission control and probes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from orchestrator.api import create_app
from orchestrator.api.signing import livekit_webhook_token, sign_intake
from orchestrator.config import Settings, load_settings
from orchestrator.queue import CallQueue
from orchestrator.queue.hold import HoldAnnouncer, read_hold_messages
from orchestrator.web.limits import MAX_BODY_BYTES, json_too_deep
from tests.conftest import REDIS_TEST_URL

pytestmark = pytest.mark.contract

KEY = "test-key"
SECRET = "test-secret-that-is-long-enough-0123456789"
INTAKE = "intake-secret"


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return load_settings(
        data_dir=tmp_path,
        livekit_api_key=KEY,
        livekit_api_secret=SECRET,
        intake_secret=INTAKE,
        intake_replay_window_s=60,
        queue_max_depth=3,
    )


@pytest.fixture
async def queue(settings: Settings) -> AsyncIterator[CallQueue]:
    q = CallQueue.from_url(REDIS_TEST_URL, prefix=f"api-{uuid.uuid4().hex[:10]}", max_depth=settings.queue_max_depth)
    try:
        yield q
    finally:
        keys = [k async for k in q.redis.scan_iter(f"{q.keys.prefix}:*")]
        if keys:
            await q.redis.delete(*keys)
        await q.aclose()


@pytest.fixture
def app(settings: Settings, queue: CallQueue) -> FastAPI:
    return create_app(settings, queue=queue)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


@pytest.fixture
async def admin(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client with an admin's API token: the queue views need a console user (the lifespan opens the console)."""
    async with app.router.lifespan_context(app):
        await app.state.console.users.add("ops", "ops-password", "admin")
        token = await app.state.console.users.create_token("ops")
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as c:
            yield c


def room_started(name: str, *, sid: str | None = None, metadata: dict[str, Any] | str | None = None) -> bytes:
    meta = metadata if isinstance(metadata, str) else json.dumps(metadata or {})
    event = {
        "event": "room_started",
        "id": f"EV_{uuid.uuid4().hex[:8]}",
        "room": {"sid": sid or f"RM_{name}", "name": name, "metadata": meta},
    }
    return json.dumps(event).encode()


def signed(body: bytes, *, secret: str = SECRET, key: str = KEY, **kw: Any) -> dict[str, str]:
    return {"Authorization": livekit_webhook_token(key, secret, body, **kw), "Content-Type": "application/webhook+json"}


async def webhook(client: httpx.AsyncClient, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return await client.post("/webhooks/livekit", content=body, headers=signed(body) if headers is None else headers)


def assert_error(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]


# ---------------------------------------------------------------- LiveKit webhook


async def test_signed_room_started_admits_with_position(client: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    meta = {"caller_id": "+15550100001", "priority": 1, "simulated": True, "script": ["hi", "bye"]}
    first = await webhook(client, room_started("call-a", metadata=meta))
    assert first.status_code == 202, first.text
    body = first.json()
    assert (body["call_id"], body["position"], body["duplicate"]) == ("lk-RM_call-a", 1, False)
    assert body["expected_wait_s"] >= 0
    second = await webhook(client, room_started("call-b"))
    assert (second.status_code, second.json()["position"]) == (202, 2)
    position = await admin.get("/v1/calls/lk-RM_call-a/position")
    assert position.json()["position"] == 1


async def test_script_travels_in_room_metadata_only_for_simulated_callers(
    client: httpx.AsyncClient, queue: CallQueue
) -> None:
    await webhook(client, room_started("call-sim", metadata={"simulated": True, "script": ["a", "b"], "vip": "no"}))
    await webhook(client, room_started("call-real", metadata={"script": ["injected"], "caller_id": "+1555"}))
    claimed = {c.call_id: c.job for c in await queue.claim("t", count=5, block_ms=0)}
    sim, real = claimed["lk-RM_call-sim"], claimed["lk-RM_call-real"]
    assert sim.script == ["a", "b"]
    assert sim.metadata["vip"] == "no"
    assert sim.source == "livekit"
    assert real.script is None
    assert real.caller_id == "+1555"


async def test_duplicate_webhook_is_counted_once(client: httpx.AsyncClient, queue: CallQueue) -> None:
    body = room_started("call-dup")
    first, again = await webhook(client, body), await webhook(client, body)
    assert first.status_code == again.status_code == 202
    assert again.json()["duplicate"] is True
    assert again.json()["call_id"] == first.json()["call_id"]
    stats = await queue.stats()
    assert (stats.waiting, stats.admitted, stats.duplicates) == (1, 1, 1)


async def test_sip_participant_joined_admits_and_matches_room_started(client: httpx.AsyncClient) -> None:
    event = {
        "event": "participant_joined",
        "room": {"sid": "RM_sip1", "name": "sip-trunk-room"},
        "participant": {
            "identity": "sip_+15550100004",
            "kind": "SIP",
            "attributes": {"sip.phoneNumber": "+15550100004"},
        },
    }
    resp = await webhook(client, json.dumps(event).encode())
    assert resp.status_code == 202
    assert resp.json()["call_id"] == "lk-RM_sip1"
    # LiveKit also sends room_started for a call- room: the same room is the same call
    again = await webhook(client, room_started("call-x", sid="RM_sip1"))
    assert again.json()["duplicate"] is True


def left(room: str, sid: str, kind: str = "STANDARD", event: str = "participant_left") -> bytes:
    body: dict[str, Any] = {"event": event, "id": f"EV_{uuid.uuid4().hex[:8]}", "room": {"sid": sid, "name": room}}
    if event == "participant_left":
        body["participant"] = {"identity": f"{kind.lower()}-1", "kind": kind}
    return json.dumps(body).encode()


async def test_a_caller_who_hangs_up_while_queued_leaves_the_queue(client: httpx.AsyncClient, queue: CallQueue) -> None:
    assert (await webhook(client, room_started("call-left", sid="RM_left"))).status_code == 202
    assert (await webhook(client, room_started("call-stays", sid="RM_stays"))).json()["position"] == 2
    sip = {"event": "participant_joined", "room": {"sid": "RM_sip", "name": "trunk"}, "participant": {"kind": "SIP"}}
    assert (await webhook(client, json.dumps(sip).encode())).status_code == 202

    # The agent leaving a call room, and a room that is not a call closing, say nothing about a caller.
    for body in (left("call-stays", "RM_stays", kind="AGENT"), left("lobby", "RM_lobby", event="room_finished")):
        resp = await webhook(client, body)
        assert (resp.status_code, "ignored" in resp.json()) == (200, True), resp.text
    resp = await webhook(client, left("call-left", "RM_left"))
    assert (resp.status_code, resp.json()) == (200, {"call_id": "lk-RM_left", "queue": "waiting"})
    # The room closes after its caller left: the call is already out of the queue, and counted once.
    resp = await webhook(client, left("call-left", "RM_left", event="room_finished"))
    assert resp.json() == {"call_id": "lk-RM_left", "queue": "gone"}
    resp = await webhook(client, left("trunk", "RM_sip", kind="SIP"))
    assert resp.json() == {"call_id": "lk-RM_sip", "queue": "waiting"}

    assert await queue.position("lk-RM_stays") == 1
    stats = await queue.stats()
    assert (stats.admitted, stats.waiting, stats.abandoned) == (3, 1, 2)


@pytest.mark.parametrize(
    "event",
    [
        {"event": "track_published", "room": {"sid": "RM_1", "name": "call-1"}},
        {"event": "room_started", "room": {"sid": "RM_2", "name": "agent-lobby"}},
        {"event": "participant_joined", "room": {"sid": "RM_3", "name": "call-3"}, "participant": {"identity": "web"}},
    ],
)
async def test_other_events_are_acknowledged_and_ignored(client: httpx.AsyncClient, event: dict[str, Any]) -> None:
    resp = await webhook(client, json.dumps(event).encode())
    assert resp.status_code == 200
    assert resp.json() == {"ignored": event["event"]}


async def test_unsigned_webhook_is_refused(client: httpx.AsyncClient) -> None:
    body = room_started("call-u")
    assert_error(await webhook(client, body, {}), 401, "missing_authorization")
    assert_error(await webhook(client, body, {"Authorization": "not-a-jwt"}), 401, "malformed_token")


async def test_webhook_signed_with_another_secret_or_key_is_refused(client: httpx.AsyncClient) -> None:
    body = room_started("call-s")
    assert_error(await webhook(client, body, signed(body, secret="x" * 40)), 401, "bad_signature")
    assert_error(await webhook(client, body, signed(body, key="other-key")), 401, "unknown_api_key")


async def test_webhook_whose_body_does_not_match_the_hash_is_refused(
    client: httpx.AsyncClient, queue: CallQueue
) -> None:
    original = room_started("call-h")
    tampered = room_started("call-h", metadata={"priority": 0})
    assert_error(await webhook(client, tampered, signed(original)), 401, "body_hash_mismatch")
    from livekit.api import AccessToken

    no_hash = {"Authorization": AccessToken(KEY, SECRET).to_jwt()}
    assert_error(await webhook(client, original, no_hash), 401, "missing_body_hash")
    assert (await queue.stats()).admitted == 0


async def test_expired_webhook_token_is_refused(client: httpx.AsyncClient) -> None:
    body = room_started("call-e")
    assert_error(await webhook(client, body, signed(body, ttl=timedelta(minutes=-5))), 401, "token_expired")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_event"),
        (b"[1, 2]", 400, "malformed_event"),
        (b"\xff\xfe", 400, "bad_encoding"),
        (room_started("call-m", metadata="{broken"), 422, "bad_room_metadata"),
        (room_started("call-m", metadata={"priority": "high"}), 422, "bad_room_metadata"),
        (room_started("call-m", metadata={"priority": 7}), 422, "unknown_priority"),
        (room_started("call-m", metadata={"simulated": True, "script": "say hi"}), 422, "bad_room_metadata"),
    ],
)
async def test_malformed_signed_webhooks_get_a_clear_4xx(
    client: httpx.AsyncClient, body: bytes, status: int, code: str
) -> None:
    assert_error(await webhook(client, body), status, code)


# ---------------------------------------------------------------- POST /v1/calls


def call_body(call_id: str, **extra: Any) -> bytes:
    return json.dumps({"call_id": call_id, "caller_id": "+15550100002", "source": "twilio", **extra}).encode()


async def post_call(client: httpx.AsyncClient, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    hdrs = sign_intake(INTAKE, body) if headers is None else headers
    return await client.post("/v1/calls", content=body, headers={**hdrs, "Content-Type": "application/json"})


async def test_hmac_signed_call_is_admitted(client: httpx.AsyncClient, queue: CallQueue) -> None:
    resp = await post_call(client, call_body("tw-1", priority=0, script=["hello"]))
    assert resp.status_code == 202, resp.text
    assert resp.json()["call_id"] == "tw-1"
    assert resp.json()["position"] == 1
    [claimed] = await queue.claim("t", count=1, block_ms=0)
    assert (claimed.job.source, claimed.job.priority, claimed.job.script) == ("twilio", 0, ["hello"])


async def test_bad_hmac_is_refused(client: httpx.AsyncClient) -> None:
    body = call_body("tw-2")
    headers = sign_intake("wrong-secret", body)
    assert_error(await post_call(client, body, headers), 401, "bad_signature")
    good = sign_intake(INTAKE, body)
    assert_error(await post_call(client, call_body("tw-2", priority=0), good), 401, "bad_signature")
    assert_error(
        await post_call(client, body, {**good, "X-Switchboard-Signature": "sha1=abc"}), 401, "bad_signature_format"
    )
    assert_error(await post_call(client, body, {}), 401, "missing_timestamp")
    no_sig = {"X-Switchboard-Timestamp": good["X-Switchboard-Timestamp"]}
    assert_error(await post_call(client, body, no_sig), 401, "missing_signature")


async def test_replayed_request_inside_the_window_is_counted_once(client: httpx.AsyncClient, queue: CallQueue) -> None:
    body = call_body("tw-3")
    headers = sign_intake(INTAKE, body)
    first, replay = await post_call(client, body, headers), await post_call(client, body, headers)
    assert (first.status_code, replay.status_code) == (202, 202)
    assert replay.json()["duplicate"] is True
    assert (await queue.stats()).admitted == 1


async def test_request_outside_the_replay_window_is_refused(client: httpx.AsyncClient) -> None:
    body = call_body("tw-4")
    old = sign_intake(INTAKE, body, timestamp=int(time.time()) - 120)
    assert_error(await post_call(client, body, old), 401, "timestamp_out_of_window")
    future = sign_intake(INTAKE, body, timestamp=int(time.time()) + 120)
    assert_error(await post_call(client, body, future), 401, "timestamp_out_of_window")
    assert_error(await post_call(client, body, {**old, "X-Switchboard-Timestamp": "soon"}), 401, "bad_timestamp")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{oops", 400, "malformed_json"),
        (b'{"caller_id": "+1"}', 422, "invalid_call"),
        (b'{"call_id": "has spaces"}', 422, "invalid_call"),
        (b'{"call_id": "x", "priority": 5}', 422, "invalid_call"),
        (b'{"call_id": "x", "unknown": 1}', 422, "invalid_call"),
    ],
)
async def test_malformed_signed_calls_get_a_clear_4xx(
    client: httpx.AsyncClient, body: bytes, status: int, code: str
) -> None:
    assert_error(await post_call(client, body), status, code)


# ---------------------------------------------------------------- admission control and probes


async def test_past_max_depth_answers_503_with_retry_after(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, queue: CallQueue
) -> None:
    for i in range(3):
        assert (await webhook(client, room_started(f"call-full-{i}"))).status_code == 202
    refused = await webhook(client, room_started("call-full-3"))
    assert_error(refused, 503, "queue_full")
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["reason"] == "depth"
    refused_api = await post_call(client, call_body("tw-full"))
    assert_error(refused_api, 503, "queue_full")
    # a duplicate of an admitted call is still answered (idempotent), even when the queue is full
    again = await webhook(client, room_started("call-full-0"))
    assert again.status_code == 202
    assert again.json()["duplicate"] is True
    stats = (await admin.get("/v1/queue")).json()
    assert (stats["waiting"], stats["refused"]) == (3, 2)


async def test_a_caller_already_in_a_room_is_queued_however_long_the_expected_wait(settings: Settings) -> None:
    # A webhook's caller is in the room: a 503 answers LiveKit, which retries after Retry-After (or never), while
    # the caller hears nothing. So only the depth limit refuses room calls; the hold voice tells them the wait.
    queue = CallQueue.from_url(REDIS_TEST_URL, prefix=f"api-{uuid.uuid4().hex[:10]}", max_expected_wait_s=60)
    try:
        await queue.register_worker("one-slot", 1, ttl_ms=60_000)
        app = create_app(settings.model_copy(update={"queue_max_depth": 100}), queue=queue)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            # Until a call is acked each is assumed to take 180 s: the second waits 180 s, the third 360 s.
            rooms = [await webhook(c, room_started(f"call-burst-{i}")) for i in range(3)]
            assert [r.status_code for r in rooms] == [202, 202, 202], [r.text for r in rooms]
            assert [r.json()["position"] for r in rooms] == [1, 2, 3]
            # A caller not yet connected (a trunk asking before it answers) is still told to try later.
            refused = await post_call(c, call_body("tw-long-wait"))
        assert_error(refused, 503, "queue_full")
        assert refused.json()["error"]["reason"] == "wait"
        stats = await queue.stats()
        assert (stats.admitted, stats.waiting, stats.refused) == (3, 3, 1)
    finally:
        keys = [k async for k in queue.redis.scan_iter(f"{queue.keys.prefix}:*")]
        if keys:
            await queue.redis.delete(*keys)
        await queue.aclose()


async def test_probes(client: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "detail": None}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert (await client.get("/openapi.json")).json()["paths"]["/webhooks/livekit"]["post"]
    assert_error(await client.get("/v1/calls/nope/position"), 401, "unauthenticated")
    assert_error(await admin.get("/v1/calls/nope/position"), 404, "not_waiting")


async def test_redis_down_means_not_ready_and_nothing_admitted(settings: Settings) -> None:
    dead = CallQueue.from_url("redis://127.0.0.1:1/0", prefix="down")
    app = create_app(settings, queue=dead)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            ready = await c.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["status"] == "unavailable"
            resp = await webhook(c, room_started("call-down"))
            assert_error(resp, 503, "queue_unavailable")
            assert resp.headers["Retry-After"] == "1"
    finally:
        await dead.aclose()


async def test_hold_messages_tell_waiting_callers_their_position(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, queue: CallQueue
) -> None:
    for name in ("call-h1", "call-h2"):
        await webhook(client, room_started(name))
    assert await HoldAnnouncer(queue, interval_s=1).announce() == 2
    held = (await admin.get("/v1/calls/lk-RM_call-h2/hold-messages")).json()
    [message] = held["messages"]
    assert message["position"] == 2
    assert message["text"].startswith("You're number 2 in the queue; ")


async def test_a_newly_queued_caller_hears_their_place_at_once_not_at_the_next_round(
    client: httpx.AsyncClient, queue: CallQueue
) -> None:
    announcer = HoldAnnouncer(queue, interval_s=60)
    await webhook(client, room_started("call-n1"))
    assert await announcer.tick() == 1
    await webhook(client, room_started("call-n2"))
    # The first caller heard their place a moment ago; the second is told now, not a minute later with the first.
    assert await announcer.announce(due_only=True) == 1
    told = [await read_hold_messages(queue.redis, queue.keys.prefix, f"lk-RM_call-n{i}") for i in (1, 2)]
    assert [[m["position"] for m in messages] for messages in told] == [[1], [2]]
    # Once the interval has passed, every waiting caller is due again.
    assert await HoldAnnouncer(queue, interval_s=0).announce(due_only=True) == 2


# ---------------------------------------------------------------- abuse: deep JSON, huge bodies

DEEP = 100_000


async def test_deeply_nested_signed_bodies_get_a_400_with_the_reason(client: httpx.AsyncClient) -> None:
    deep = b"[" * DEEP + b"]" * DEEP
    assert_error(await post_call(client, deep), 400, "json_too_deep")
    assert_error(await webhook(client, deep), 400, "json_too_deep")
    # JSON inside a field of a well-formed event: the room's metadata
    assert_error(
        await webhook(client, room_started("call-deep", metadata="[" * DEEP + "]" * DEEP)), 400, "json_too_deep"
    )
    nested_object = '{"a": ' * (DEEP // 5) + "1" + "}" * (DEEP // 5)
    assert_error(await webhook(client, room_started("call-deep", metadata=nested_object)), 400, "json_too_deep")


async def test_nesting_inside_strings_does_not_count(client: httpx.AsyncClient) -> None:
    meta = {"caller_id": "+1555", "note": "[" * 100 + '{"\\"' * 50}
    resp = await webhook(client, room_started("call-brackets", metadata=meta))
    assert resp.status_code == 202, resp.text


async def test_a_deeply_nested_console_body_gets_a_400_with_the_reason(admin: httpx.AsyncClient) -> None:
    deep = b'{"username": ' + b"[" * DEEP + b"]" * DEEP + b"}"
    resp = await admin.post("/v1/console/login", content=deep, headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "json_too_deep")


class CountingBody:
    """A chunked request body of ``total`` bytes that counts how much of it the server pulled."""

    def __init__(self, total: int, chunk: int = 16 * 1024) -> None:
        self.total, self.chunk, self.sent = total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            self.sent += self.chunk
            yield b" " * self.chunk


@pytest.mark.parametrize("path", ["/webhooks/livekit", "/v1/calls", "/v1/console/login"])
async def test_a_chunked_body_over_the_limit_is_refused_before_it_is_all_read(
    client: httpx.AsyncClient, path: str
) -> None:
    body = CountingBody(300 * 1024 * 1024)
    resp = await client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert "content-length" not in resp.request.headers  # sent chunked: the server learns the size as it reads
    assert_error(resp, 413, "body_too_large")
    assert body.sent <= MAX_BODY_BYTES + body.chunk, body.sent


@pytest.mark.parametrize("path", ["/webhooks/livekit", "/v1/calls", "/v1/console/login"])
async def test_a_declared_length_over_the_limit_is_refused_unread(client: httpx.AsyncClient, path: str) -> None:
    body = CountingBody(300 * 1024 * 1024)
    headers = {"Content-Type": "application/json", "Content-Length": str(body.total)}
    resp = await client.post(path, content=body, headers=headers)
    assert_error(resp, 413, "body_too_large")
    assert body.sent <= body.chunk, body.sent


@pytest.mark.parametrize(
    ("text", "too_deep"),
    [
        ("[" * 32 + "]" * 32, False),
        ("[" * 33 + "]" * 33, True),
        ('{"a": ' * 33 + "1" + "}" * 33, True),
        ('["' + "[" * 40 + '"]', False),  # brackets inside a string are text
        (r'["\"' + "[" * 40 + '"]', False),  # an escaped quote does not end the string
        (r'["\\"' + ", [" * 40, True),  # an escaped backslash does
        ('"' + "[" * 40, True),  # malformed: measured as far as it goes
    ],
)
def test_nesting_depth_is_measured_without_parsing(text: str, too_deep: bool) -> None:
    assert json_too_deep(text) is too_deep
    assert json_too_deep(text.encode()) is too_deep
