"""The softphone's token routes on a real server and Redis: grants by mode and role, refusals, audit, the talk call."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from livekit.api import TokenVerifier

from orchestrator.contracts import CallJob
from tests.console_app import ServedApp, served_console

pytestmark = pytest.mark.contract

PASSWORD = "correct horse battery"
LIVEKIT = "ws://127.0.0.1:7880"  # never dialled: the routes only sign tokens for it
PUBLIC = "wss://voice.example.test"


@pytest.fixture(scope="module")
def server() -> Iterator[ServedApp]:
    with served_console(
        "console-join", PASSWORD, livekit_url=LIVEKIT, livekit_public_url=PUBLIC, console_lease_s=30.0
    ) as srv:
        yield srv


def login(server: ServedApp, username: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=10)
    r = client.post("/v1/console/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return client


def room_call(server: ServedApp) -> tuple[str, str]:
    """A live call in a LiveKit room, as a worker publishes one: its id (``lk-<room sid>``) and its room."""
    room = f"call-{uuid.uuid4().hex[:8]}"
    call_id = f"lk-RM_{uuid.uuid4().hex[:12]}"
    job = CallJob(call_id=call_id, source="livekit", room=room, caller_id="+15550100001")
    server.call(server.app.state.console.feed.call_started(job, worker="w1", resumed_at=0))
    return call_id, room


def claims(server: ServedApp, token: str) -> Any:
    settings = server.app.state.settings
    return TokenVerifier(settings.livekit_api_key, settings.livekit_api_secret.get_secret_value()).verify(token)


def join(client: httpx.Client, call_id: str, mode: str) -> httpx.Response:
    return client.post(f"/v1/console/calls/{call_id}/join", json={"mode": mode})


def error(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


def audit(server: ServedApp, call_id: str) -> list[tuple[str, str, str]]:
    r = login(server, "ada").get("/v1/console/audit", params={"call_id": call_id})
    assert r.status_code == 200, r.text
    return [(e["username"], e["action"], e["outcome"]) for e in reversed(r.json()["entries"])]


def test_listening_is_hidden_receive_only_and_leaves_the_call_with_the_ai(server: ServedApp) -> None:
    call_id, room = room_call(server)
    r = join(login(server, "sam"), call_id, "listen")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["url"], body["room"], body["mode"], body["call_id"]) == (PUBLIC, room, "listen", call_id)
    grant = claims(server, body["token"])
    assert grant.identity == body["identity"] == "supervisor-sam"
    assert grant.attributes == {"switchboard.role": "supervisor", "switchboard.mode": "listen"}
    video = grant.video
    assert (video.room_join, video.room, video.can_subscribe) == (True, room, True)
    assert (video.can_publish, video.can_publish_data, video.hidden) == (False, False, True)
    call = server.call(server.app.state.console.feed.get(call_id))
    assert call.controller == ""
    assert server.call(server.app.state.console.feed.pending_commands(call_id)) == []
    assert audit(server, call_id) == [("sam", "join_listen", "ok")]


def test_barging_takes_the_call_over_with_a_microphone_and_refuses_a_second_supervisor(server: ServedApp) -> None:
    call_id, room = room_call(server)
    sam, kim = login(server, "sam"), login(server, "kim")
    r = join(sam, call_id, "barge")
    assert r.status_code == 200, r.text
    video = claims(server, r.json()["token"]).video
    assert (video.room, video.can_publish, video.can_publish_sources, video.can_subscribe) == (
        room,
        True,
        ["microphone"],
        True,
    )
    assert (video.hidden, video.can_publish_data) == (None, False)
    feed = server.app.state.console.feed
    # The AI is told to stay silent, exactly as a take-over does.
    assert server.call(feed.get(call_id)).controller == "sam"
    assert [c["kind"] for c in server.call(feed.pending_commands(call_id))] == ["take_over"]
    # Joining again (a reconnect) is not a second take-over.
    assert join(sam, call_id, "barge").status_code == 200
    assert [c["kind"] for c in server.call(feed.pending_commands(call_id))] == ["take_over"]
    assert error(join(kim, call_id, "barge")) == (409, "held_by_other")
    # Kim may still listen: listening takes nothing from the holder.
    assert join(kim, call_id, "listen").status_code == 200
    lines = server.call(feed.lines(call_id))
    assert [ln.text for ln in lines if ln.role == "event"][-2:] == [
        "sam took over the call.",
        "sam barged in with a microphone.",
    ]
    assert audit(server, call_id) == [
        ("sam", "take_over", "ok"),
        ("sam", "join_barge", "ok"),
        ("sam", "join_barge", "ok"),
        ("kim", "take_over", "refused"),
        ("kim", "join_barge", "refused"),
        ("kim", "join_listen", "ok"),
    ]


def test_only_the_supervisor_who_accepted_an_escalation_joins_it(server: ServedApp) -> None:
    call_id, room = room_call(server)
    sam, kim = login(server, "sam"), login(server, "kim")
    assert error(join(sam, call_id, "escalation")) == (409, "not_accepted")
    console = server.app.state.console
    ticket = server.call(
        console.desk.open_ticket(
            call_id=call_id, account_id=None, reason="requested_human", summary="A person.", priority=2
        )
    )
    accepted = sam.post(f"/v1/console/escalations/{ticket.ticket_id}/accept")
    assert accepted.status_code == 200, accepted.text
    # The accept answer's own join details point browsers at the public URL too, and its token is the escalation's
    # join: the user's console identity, a microphone only (no data, so no keyed digits), and it expires in minutes.
    assert accepted.json()["livekit"]["url"] == PUBLIC
    accept_token = accepted.json()["livekit"]["token"]
    grant = claims(server, accept_token)
    assert (grant.identity, grant.video.room, grant.video.can_publish_sources, grant.video.can_publish_data) == (
        "supervisor-sam",
        room,
        ["microphone"],
        False,
    )
    lifetime = jwt.decode(accept_token, options={"verify_signature": False})
    assert lifetime["exp"] - lifetime["nbf"] <= 600
    assert error(join(kim, call_id, "escalation")) == (403, "not_your_escalation")
    assert error(join(kim, call_id, "barge")) == (409, "held_by_other")
    r = join(sam, call_id, "escalation")
    assert r.status_code == 200, r.text
    video = claims(server, r.json()["token"]).video
    assert (video.room, video.can_publish, video.can_publish_sources) == (room, True, ["microphone"])
    assert [a for a in audit(server, call_id) if a[1].startswith("join_")] == [
        ("sam", "join_escalation", "refused"),
        ("kim", "join_escalation", "refused"),
        ("kim", "join_barge", "refused"),
        ("sam", "join_escalation", "ok"),
    ]


def test_unknown_ended_and_roomless_calls_are_refused_clearly(server: ServedApp) -> None:
    sam = login(server, "sam")
    assert error(join(sam, "lk-RM_nosuchcall", "listen")) == (404, "call_not_found")
    ended, _room = room_call(server)
    server.call(server.app.state.console.feed.call_ended(ended, "resolved"))
    assert error(join(sam, ended, "listen")) == (409, "call_ended")
    assert error(join(sam, ended, "barge")) == (409, "call_ended")
    # A call answered on the local transport (a simulated caller) has no room to join.
    local = f"call-{uuid.uuid4().hex[:10]}"
    job = CallJob(call_id=local, source="simulate", room=local, caller_id="+15550100001")
    server.call(server.app.state.console.feed.call_started(job, worker="w1", resumed_at=0))
    r = join(sam, local, "listen")
    assert error(r) == (409, "no_room")
    assert "not in a LiveKit room" in r.json()["error"]["message"]
    assert error(join(sam, ended, "shout")) == (422, "invalid_request")
    assert audit(server, ended) == [("sam", "join_listen", "refused"), ("sam", "join_barge", "refused")]


def test_an_api_token_may_listen_but_never_speak(server: ServedApp) -> None:
    call_id, _room = room_call(server)
    api = httpx.Client(
        base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {server.create_token('ada')}"}
    )
    r = join(api, call_id, "listen")
    assert r.status_code == 200, r.text
    assert claims(server, r.json()["token"]).identity == "admin-ada"
    assert error(join(api, call_id, "barge")) == (403, "forbidden")
    assert server.call(server.app.state.console.feed.get(call_id)).controller == ""
    # An admin at the console speaks like a supervisor, under their own role.
    r = join(login(server, "ada"), call_id, "barge")
    assert r.status_code == 200, r.text
    assert claims(server, r.json()["token"]).attributes["switchboard.role"] == "admin"


def test_joining_needs_a_user_and_the_csrf_token(server: ServedApp) -> None:
    call_id, _room = room_call(server)
    anonymous = httpx.Client(base_url=server.url, timeout=10)
    assert error(join(anonymous, call_id, "listen")) == (401, "unauthenticated")
    sam = login(server, "sam")
    del sam.headers["X-CSRF-Token"]
    assert error(join(sam, call_id, "barge")) == (403, "csrf_failed")
    assert server.call(server.app.state.console.feed.get(call_id)).controller == ""


def test_talk_signs_a_caller_token_whose_join_creates_a_call_room(server: ServedApp) -> None:
    sam = login(server, "sam")
    r = sam.post("/v1/console/talk", json={})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["url"] == PUBLIC
    assert body["room"].startswith("call-console-")
    assert (body["mode"], body["call_id"]) == ("talk", "")
    grant = claims(server, body["token"])
    assert grant.identity.startswith("caller-sam-")
    assert (grant.video.room, grant.video.can_publish_sources, grant.video.hidden) == (
        body["room"],
        ["microphone"],
        None,
    )
    # The room the join creates carries the metadata the webhook reads: who is calling.
    assert json.loads(grant.room_config.metadata) == {"caller_id": "console:sam", "console_user": "sam"}
    as_maria = sam.post("/v1/console/talk", json={"caller_id": "+1 555 010 0001"})
    assert json.loads(claims(server, as_maria.json()["token"]).room_config.metadata)["caller_id"] == "+1 555 010 0001"
    assert error(sam.post("/v1/console/talk", json={"caller_id": "maria; drop"})) == (422, "invalid_request")
    again = sam.post("/v1/console/talk", json={})
    assert again.json()["room"] != body["room"]


def test_without_livekit_joining_and_talking_are_refused_with_409(server: ServedApp) -> None:
    console = server.app.state.console
    configured = console.settings
    console.settings = configured.model_copy(update={"livekit_url": None, "livekit_public_url": None})
    try:
        call_id, _room = room_call(server)
        sam = login(server, "sam")
        assert error(join(sam, call_id, "listen")) == (409, "no_livekit")
        assert error(sam.post("/v1/console/talk", json={})) == (409, "no_livekit")
    finally:
        console.settings = configured
