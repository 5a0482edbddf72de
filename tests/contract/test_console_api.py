"""The console API on a real server and Redis: authentication, CSRF, revoked users, the accept race, disconnects."""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from typer.testing import CliRunner

from orchestrator.api import create_app
from orchestrator.config import load_settings
from orchestrator.console.auth import SESSION_COOKIE, hash_password, verify_password
from orchestrator.contracts import CallJob
from tests.conftest import REDIS_TEST_URL
from tests.console_app import ServedApp, app_routes, served, served_console

pytestmark = pytest.mark.contract

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def server() -> Iterator[ServedApp]:
    with served_console("console", PASSWORD, console_lease_s=2.0, console_disconnect_grace_s=0.3) as srv:
        yield srv


def login(server: ServedApp, username: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=server.url, timeout=10)
    r = client.post("/v1/console/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return client, r.json()["csrf_token"]


def live_call(server: ServedApp, *, caller: str = "+15550100001") -> str:
    """A call the live feed shows as running (as a worker's `call_started` publishes it)."""
    call_id = f"call-{uuid.uuid4().hex[:10]}"
    job = CallJob(call_id=call_id, source="simulate", room=call_id, caller_id=caller)
    server.call(server.app.state.console.feed.call_started(job, worker="w1", resumed_at=0))
    return call_id


def commands(server: ServedApp, call_id: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = server.call(server.app.state.console.feed.pending_commands(call_id))
    return result


def audit(server: ServedApp, **params: str) -> list[dict[str, Any]]:
    admin, _ = login(server, "ada")
    r = admin.get("/v1/console/audit", params=params)
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = r.json()["entries"]
    return entries


def test_passwords_are_salted_scrypt_hashes() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first.startswith("scrypt$")
    assert first != second
    assert verify_password(PASSWORD, first)
    assert not verify_password("wrong", first)
    assert not verify_password(PASSWORD, "plain-text")


# Routes anyone may call: each either checks its own signature, or shows nothing about calls or callers.
OPEN_ROUTES = {
    ("POST", "/webhooks/livekit"),  # LiveKit's signed JWT
    ("POST", "/v1/calls"),  # HMAC-signed
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/v1/console/login"),
    ("GET", "/console/login"),
    ("POST", "/console/login"),
    ("GET", "/console/static/{name}"),
    # the API's description, as published with the source
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}


def test_every_route_outside_the_open_list_refuses_anonymous_callers(server: ServedApp) -> None:
    """A new route is closed unless it is added to OPEN_ROUTES: API routes answer 401, pages send to the login."""
    client = httpx.Client(base_url=server.url, timeout=10)
    seen: set[tuple[str, str]] = set()
    checked = 0
    for route in app_routes(server.app.routes):
        path = getattr(route, "path", "")
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method in {"HEAD", "OPTIONS"}:
                continue
            seen.add((method, path))
            if (method, path) in OPEN_ROUTES:
                continue
            url = re.sub(r"\{[^}]+\}", "x1", path)
            r = client.request(method, url, json={}, follow_redirects=False)
            if path.startswith("/console"):
                assert r.status_code == 303, (method, path, r.status_code)
                assert r.headers["location"].startswith("/console/login"), (method, path)
            else:
                assert r.status_code == 401, (method, path, r.status_code, r.text)
                assert r.json()["error"]["code"] == "unauthenticated", (method, path)
            checked += 1
    assert not OPEN_ROUTES - seen, OPEN_ROUTES - seen  # the list names only routes that exist
    assert {("GET", "/v1/queue"), ("GET", "/v1/outcomes"), ("GET", "/v1/dead-letters")} <= seen - OPEN_ROUTES
    assert checked >= 30


def test_queue_views_answer_console_users_and_admin_tokens(server: ServedApp) -> None:
    sam, _ = login(server, "sam")
    token = server.create_token("ada")
    machine = httpx.Client(base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {token}"})
    forged = httpx.Client(base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {token}x"})
    for url in ("/v1/queue", "/v1/outcomes", "/v1/dead-letters", "/v1/calls/c1/hold-messages"):
        assert sam.get(url).status_code == 200, url
        assert machine.get(url).status_code == 200, url
        assert forged.get(url).json()["error"]["code"] == "bad_token", url
    assert sam.get("/v1/calls/c1/position").json()["error"]["code"] == "not_waiting"


def test_wrong_credentials_bad_cookies_and_expired_sessions_are_refused(server: ServedApp) -> None:
    client = httpx.Client(base_url=server.url, timeout=10)
    r = client.post("/v1/console/login", json={"username": "sam", "password": "nope"})
    assert r.status_code == 401
    assert r.json()["error"] == {"code": "bad_credentials", "message": "wrong username or password"}
    r = client.post("/v1/console/login", json={"username": "nobody", "password": "nope"})
    assert r.status_code == 401

    client.cookies.set(SESSION_COOKIE, "forged.signature")
    assert client.get("/v1/console/calls").json()["error"]["code"] == "bad_session"

    sam, _ = login(server, "sam")
    cookie = sam.cookies[SESSION_COOKIE]
    session_id = server.app.state.console.signer.unsign(cookie)
    server.call(server.app.state.console.sessions.end(session_id))  # what expiry does
    r = sam.get("/v1/console/calls")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "session_expired"


def test_the_session_cookie_is_httponly_lax_and_expires(server: ServedApp) -> None:
    client = httpx.Client(base_url=server.url, timeout=10)
    r = client.post("/v1/console/login", json={"username": "sam", "password": PASSWORD})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "max-age=28800" in cookie
    r = client.post("/v1/console/login", content=b'{"username": "sam"}', headers={"content-type": "text/plain"})
    assert r.status_code in {415, 422}


def test_state_changes_need_the_csrf_token(server: ServedApp) -> None:
    sam, csrf = login(server, "sam")
    call_id = live_call(server)
    r = sam.post(f"/v1/console/calls/{call_id}/whisper", json={"text": "offer a credit"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "csrf_failed"
    r = sam.post(
        f"/v1/console/calls/{call_id}/whisper", json={"text": "offer a credit"}, headers={"X-CSRF-Token": "guess"}
    )
    assert r.status_code == 403
    assert commands(server, call_id) == []
    r = sam.post(
        f"/v1/console/calls/{call_id}/whisper", json={"text": "send them to billing"}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 200
    assert commands(server, call_id) == [{"kind": "reroute", "agent": "billing", "by": "sam"}]
    # Logging out also needs it, so another site cannot log a supervisor out.
    assert sam.post("/v1/console/logout").status_code == 403
    assert sam.post("/v1/console/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert sam.get("/v1/console/calls").status_code == 401


def test_admin_bearer_tokens_need_no_csrf_and_supervisors_get_none(server: ServedApp) -> None:
    token = server.create_token("ada")
    api = httpx.Client(base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {token}"})
    call_id = live_call(server)
    assert api.post(f"/v1/console/calls/{call_id}/reroute", json={"agent": "billing"}).status_code == 200
    assert api.get("/v1/console/audit").status_code == 200
    bad = httpx.Client(base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {token}x"})
    assert bad.get("/v1/console/calls").status_code == 401
    with pytest.raises(ValueError):
        server.create_token("sam")
    sam, _ = login(server, "sam")
    r = sam.get("/v1/console/audit")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"


async def test_two_supervisors_accepting_one_escalation_exactly_one_wins(server: ServedApp) -> None:
    call_id = live_call(server)
    ticket = server.call(
        server.app.state.console.desk.open_ticket(
            call_id=call_id, account_id=None, reason="requested_human", summary="Caller wants a person.", priority=2
        )
    )
    sessions = [login(server, name) for name in ("sam", "kim")]

    async def accept(pair: tuple[httpx.Client, str]) -> httpx.Response:
        client, csrf = pair
        async with httpx.AsyncClient(base_url=server.url, cookies=client.cookies, timeout=10) as ac:
            return await ac.post(f"/v1/console/escalations/{ticket.ticket_id}/accept", headers={"X-CSRF-Token": csrf})

    results = await asyncio.gather(*(accept(pair) for pair in sessions))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 409], [r.text for r in results]
    winner = next(r for r in results if r.status_code == 200).json()
    loser = next(r for r in results if r.status_code == 409).json()
    assert winner["ticket"]["summary"] == "Caller wants a person."
    assert winner["call_url"] == f"/console/calls/{call_id}"
    assert winner["livekit"] is None  # no LIVEKIT_URL in tests
    assert loser["error"]["code"] == "already_taken"
    assert winner["ticket"]["agent"] in loser["error"]["message"]
    actions = [(e["action"], e["outcome"]) for e in audit(server, call_id=call_id)]
    assert ("accept", "ok") in actions
    refused = [e for e in audit(server) if e["ticket_id"] == ticket.ticket_id and e["outcome"] == "refused"]
    assert len(refused) == 1


def test_callers_who_hung_up_leave_the_queue_as_callbacks_or_abandoned_and_live_callers_come_first(
    server: ServedApp,
) -> None:
    sam, _ = login(server, "sam")
    console = server.app.state.console
    on_line = live_call(server, caller="+15550100007")
    hung_up = live_call(server, caller="+15550100008")
    no_number = live_call(server, caller="")
    unknown = f"call-{uuid.uuid4().hex[:10]}"  # neither the live feed nor the records know it
    for call_id in (hung_up, no_number):
        server.call(console.feed.call_ended(call_id, "escalated"))

    def ticket(call_id: str, priority: int) -> str:
        opened = server.call(
            console.desk.open_ticket(
                call_id=call_id,
                account_id=None,
                reason="requested_human",
                summary=f"about {call_id}",
                priority=priority,
            )
        )
        return str(opened.ticket_id)

    # The callers who hung up were escalated earlier and more urgently: they used to be ranked first.
    t_hung_up, t_no_number, t_unknown, t_on_line = (
        ticket(hung_up, 0),
        ticket(no_number, 0),
        ticket(unknown, 1),
        ticket(on_line, 3),
    )
    mine = {t_hung_up, t_no_number, t_unknown, t_on_line}
    queue = [t for t in sam.get("/v1/console/escalations").json() if t["ticket_id"] in mine]
    assert [t["ticket_id"] for t in queue] == [t_on_line, t_unknown]
    assert queue[0]["call_live"]
    assert queue[0]["caller"] == "+15550100007"
    assert queue[0]["transcript_url"] == f"/console/calls/{on_line}"
    assert not queue[1]["call_live"]
    assert queue[1]["transcript_url"] == f"/console/history/{unknown}"

    owed = [t for t in sam.get("/v1/console/callbacks").json() if t["ticket_id"] in mine]
    assert [(t["ticket_id"], t["caller"], t["reason"], t["status"]) for t in owed] == [
        (t_hung_up, "+15550100008", "requested_human", "callback")
    ]
    assert owed[0]["transcript_url"] == f"/console/calls/{hung_up}"
    assert owed[0]["left_at"]
    assert sam.get(f"/v1/console/escalations/{t_no_number}").json()["status"] == "abandoned"
    assert ("callback", "ok") in [(e["action"], e["outcome"]) for e in audit(server, call_id=hung_up)]
    assert ("abandoned", "ok") in [(e["action"], e["outcome"]) for e in audit(server, call_id=no_number)]
    # Once rung back, the callback is closed like any ticket.
    client, csrf = login(server, "kim")
    r = client.post(f"/v1/console/escalations/{t_hung_up}/close", json={}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 422
    assert "disposition" in r.json()["error"]["message"]
    r = client.post(
        f"/v1/console/escalations/{t_hung_up}/close",
        json={"disposition": "callback_done", "note": "Rang back, bill explained."},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 200, r.text
    assert client.get("/v1/console/wrapups").json()["callback_done"] >= 1
    closed = [e for e in audit(server, call_id=hung_up) if e["action"] == "close_ticket"]
    assert [(e["username"], e["detail"]) for e in closed] == [("kim", "callback_done Rang back, bill explained.")]
    assert all(t["ticket_id"] != t_hung_up for t in sam.get("/v1/console/callbacks").json())


def test_two_settlers_at_once_leave_one_callback_and_no_error(server: ServedApp) -> None:
    console = server.app.state.console
    calls = [live_call(server, caller=f"+1555010{i:04d}") for i in range(5)]
    for call_id in calls:
        server.call(console.feed.call_ended(call_id, "escalated"))
        server.call(
            console.desk.open_ticket(call_id=call_id, account_id=None, reason="frustration", summary="x", priority=2)
        )

    async def both() -> list[Any]:
        # The lease watchdog and a page (or two API processes) settle the same queue at the same moment.
        return await asyncio.gather(console.settle_queue(), console.settle_queue(), console.settle_queue())

    settled = server.call(both())
    mine = [t.call_id for batch in settled for t in batch if t.call_id in calls]
    # The app's own lease watchdog settles the queue every few rounds too, so it may take some of them first:
    # what must hold is that each ticket was settled once, by whichever settler came first.
    assert len(mine) == len(set(mine)), mine
    for call_id in calls:
        assert [e["action"] for e in audit(server, call_id=call_id) if e["action"] == "callback"] == ["callback"]
    assert not [t for t in server.call(console.desk.waiting()) if t.call_id in calls]
    owed = {t["call_id"]: t["caller"] for t in login(server, "sam")[0].get("/v1/console/callbacks").json()}
    assert {c: owed.get(c) for c in calls} == {c: f"+1555010{i:04d}" for i, c in enumerate(calls)}


def test_without_a_model_a_whisper_becomes_a_flow_action_or_is_refused_never_read_out(server: ServedApp) -> None:
    sam, csrf = login(server, "sam")
    call_id = live_call(server)
    h = {"X-CSRF-Token": csrf}
    r = sam.post(f"/v1/console/calls/{call_id}/whisper", json={"text": "We can waive the visit fee today."}, headers=h)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "cannot_follow"
    assert "take it over" in r.json()["error"]["message"]
    assert commands(server, call_id) == []
    r = sam.post(f"/v1/console/calls/{call_id}/whisper", json={"text": "Transfer them to scheduling"}, headers=h)
    assert r.json()["action"] == "reroute:scheduling"
    r = sam.post(f"/v1/console/calls/{call_id}/whisper", json={"text": "escalate this one please"}, headers=h)
    assert r.json()["action"] == "escalate"
    assert [c["kind"] for c in commands(server, call_id)] == ["reroute", "escalate"]
    assert all(c.get("kind") != "whisper" for c in commands(server, call_id))
    outcomes = [(e["action"], e["outcome"]) for e in reversed(audit(server, call_id=call_id))]
    assert outcomes == [("whisper", "refused"), ("whisper", "ok"), ("whisper", "ok")]


def test_every_control_is_audited_and_reaches_the_worker(server: ServedApp) -> None:
    sam, csrf = login(server, "sam")
    kim, kim_csrf = login(server, "kim")
    call_id = live_call(server)
    h = {"X-CSRF-Token": csrf}
    assert sam.post(f"/v1/console/calls/{call_id}/say", json={"text": "Hi, I'm Sam."}, headers=h).json()["action"] == (
        "barge_in"
    )
    assert sam.post(f"/v1/console/calls/{call_id}/take-over", headers=h).status_code == 200
    r = kim.post(f"/v1/console/calls/{call_id}/take-over", headers={"X-CSRF-Token": kim_csrf})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "held_by_other"
    r = sam.post(f"/v1/console/calls/{call_id}/say", json={"text": "I can fix that."}, headers=h)
    assert r.json()["action"] == "human_reply"
    assert sam.post(f"/v1/console/calls/{call_id}/release", headers=h).status_code == 200
    assert sam.post(f"/v1/console/calls/{call_id}/reroute", json={"agent": "nowhere"}, headers=h).status_code == 422
    assert [c["kind"] for c in commands(server, call_id)] == ["say", "take_over", "say", "release"]
    detail = sam.get(f"/v1/console/calls/{call_id}").json()
    assert [ln["role"] for ln in detail["lines"] if ln["role"] == "human"] == ["human", "human"]
    actions = [(e["username"], e["action"], e["outcome"]) for e in reversed(audit(server, call_id=call_id))]
    assert actions == [
        ("sam", "barge_in", "ok"),
        ("sam", "take_over", "ok"),
        ("kim", "take_over", "refused"),
        ("sam", "human_reply", "ok"),
        ("sam", "release", "ok"),
    ]


def _open_stream_and_disconnect(server: ServedApp, client: httpx.Client, call_id: str) -> None:
    with client.stream("GET", f"/v1/console/calls/{call_id}/stream") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: call"):
                break
    # Leaving the block closes the connection: the supervisor is gone.


def _wait_for(predicate: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_supervisor_who_disconnects_sends_the_call_back_to_the_ai(server: ServedApp) -> None:
    sam, csrf = login(server, "sam")
    call_id = live_call(server)
    assert sam.post(f"/v1/console/calls/{call_id}/take-over", headers={"X-CSRF-Token": csrf}).status_code == 200
    _open_stream_and_disconnect(server, sam, call_id)
    _wait_for(lambda: [c["kind"] for c in commands(server, call_id)] == ["take_over", "release"])
    assert sam.get(f"/v1/console/calls/{call_id}").json()["call"]["controller"] == ""
    assert ("system", "auto_release") in [(e["role"], e["action"]) for e in audit(server, call_id=call_id)]


def test_a_held_call_whose_heartbeats_stop_goes_back_to_the_ai(server: ServedApp) -> None:
    sam, csrf = login(server, "sam")
    call_id = live_call(server)
    h = {"X-CSRF-Token": csrf}
    assert sam.post(f"/v1/console/calls/{call_id}/take-over", headers=h).status_code == 200
    assert sam.post(f"/v1/console/calls/{call_id}/heartbeat", headers=h).json() == {"holding": True}
    # The lease is 2 s in this module; without heartbeats the watchdog releases it.
    _wait_for(lambda: [c["kind"] for c in commands(server, call_id)] == ["take_over", "release"])
    assert sam.post(f"/v1/console/calls/{call_id}/heartbeat", headers=h).json() == {"holding": False}


def test_an_accepted_escalation_whose_supervisor_vanishes_goes_back_to_the_queue(server: ServedApp) -> None:
    sam, csrf = login(server, "sam")
    call_id = live_call(server)
    console = server.app.state.console
    ticket = server.call(
        console.desk.open_ticket(
            call_id=call_id, account_id=None, reason="frustration", summary="Angry about a bill.", priority=2
        )
    )
    r = sam.post(f"/v1/console/escalations/{ticket.ticket_id}/accept", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200
    _open_stream_and_disconnect(server, sam, call_id)

    def requeued() -> bool:
        waiting = sam.get("/v1/console/escalations").json()
        return any(t["call_id"] == call_id for t in waiting)

    _wait_for(requeued)
    again = next(t for t in sam.get("/v1/console/escalations").json() if t["call_id"] == call_id)
    assert again["summary"] == "Angry about a bill."
    assert again["priority"] == 1  # one step more urgent than before
    assert again["ticket_id"] != ticket.ticket_id
    assert ("auto_requeue", "ok") in [(e["action"], e["outcome"]) for e in audit(server, call_id=call_id)]


# ---------------------------------------------------------------------- users who change or go away
def users_cli(server: ServedApp, monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str | None = None) -> str:
    """`switchboard users ...` on the server's store, as an operator runs it: its own process, no Redis."""
    from orchestrator.cli import app

    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(server.app.state.settings.data_dir))
    result = CliRunner().invoke(app, ["users", *args], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def login_as(server: ServedApp, username: str, password: str = PASSWORD) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=server.url, timeout=10)
    r = client.post("/v1/console/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return client, r.json()["csrf_token"]


def session_key(server: ServedApp, client: httpx.Client) -> str:
    console = server.app.state.console
    session_id = console.signer.unsign(client.cookies[SESSION_COOKIE])
    return f"{console.sessions.prefix}:console:sess:{session_id}"


def test_removing_a_user_ends_every_session_they_have_open(server: ServedApp, monkeypatch: pytest.MonkeyPatch) -> None:
    server.add_user("lee", PASSWORD, "supervisor")
    laptop, _ = login_as(server, "lee")
    phone, _ = login_as(server, "lee")
    call_id = live_call(server)
    raw = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        assert raw.exists(session_key(server, laptop))
        with laptop.stream("GET", f"/v1/console/calls/{call_id}/stream") as stream:
            assert stream.status_code == 200
            events = (line for line in stream.iter_lines() if line.startswith("event: "))
            for event in events:  # the transcript so far, then the call
                if event == "event: call":
                    break

            assert "lee removed" in users_cli(server, monkeypatch, "remove", "lee")

            # The open transcript stream is told within about a second, then the server closes it.
            rest = list(events)
            assert rest[-1:] == ["event: session_ended"], rest
        for client in (laptop, phone):
            r = client.get("/v1/console/calls")
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "session_expired"
        # A refused session is deleted, not just ignored.
        assert not raw.exists(session_key(server, phone))
        page = phone.get("/console/calls", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"].startswith("/console/login?reason=expired")
        r = httpx.post(f"{server.url}/v1/console/login", json={"username": "lee", "password": PASSWORD})
        assert r.status_code == 401
    finally:
        raw.close()


def test_disabling_a_user_ends_their_sessions_and_tokens_until_a_new_password(
    server: ServedApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.add_user("max", PASSWORD, "admin")
    token = server.create_token("max")
    bearer = httpx.Client(base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {token}"})
    browser, _ = login_as(server, "max")
    assert bearer.get("/v1/console/audit").status_code == 200
    assert browser.get("/v1/console/audit").status_code == 200

    assert "max disabled" in users_cli(server, monkeypatch, "disable", "max")
    assert "max\tadmin\tdisabled" in users_cli(server, monkeypatch, "list").splitlines()

    assert browser.get("/v1/console/me").json()["error"]["code"] == "session_expired"
    assert bearer.get("/v1/console/me").json()["error"]["code"] == "bad_token"
    r = httpx.post(f"{server.url}/v1/console/login", json={"username": "max", "password": PASSWORD})
    assert r.json()["error"]["code"] == "bad_credentials"

    # A new password enables the user again; the old session and token stay dead.
    users_cli(server, monkeypatch, "add", "max", "--role", "admin", "--password-stdin", stdin="a brand new one\n")
    assert "max\tadmin" in users_cli(server, monkeypatch, "list").splitlines()
    again, _ = login_as(server, "max", "a brand new one")
    assert again.get("/v1/console/me").json()["username"] == "max"
    assert browser.get("/v1/console/me").status_code == 401
    assert bearer.get("/v1/console/me").status_code == 401


def test_a_new_password_or_role_ends_the_sessions_opened_before(server: ServedApp) -> None:
    server.add_user("noa", PASSWORD, "supervisor")
    before, csrf = login_as(server, "noa")
    assert before.get("/v1/console/audit").json()["error"]["code"] == "forbidden"

    server.add_user("noa", PASSWORD, "admin")  # promoted: what the session was granted on changed
    r = before.post("/v1/console/logout", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "session_expired"
    admin, _ = login_as(server, "noa")
    assert admin.get("/v1/console/audit").status_code == 200

    server.add_user("noa", "another password", "admin")
    assert admin.get("/v1/console/audit").status_code == 401
    login_as(server, "noa", "another password")
    # Sessions of other users are untouched.
    sam, _ = login(server, "sam")
    server.add_user("noa", PASSWORD, "supervisor")
    assert sam.get("/v1/console/me").status_code == 200


def test_starting_the_api_with_development_secrets_logs_a_warning_for_each(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(redis_url=REDIS_TEST_URL, data_dir=tempfile.mkdtemp(prefix="sb-console-"))
    prefix = f"console-{uuid.uuid4().hex[:10]}"
    with (
        caplog.at_level(logging.WARNING, logger="orchestrator.api.app"),
        served(create_app(settings, queue_prefix=prefix)),
    ):
        pass
    warnings = [r.getMessage() for r in caplog.records if r.name == "orchestrator.api.app"]
    assert [w.split(" ", 1)[0] for w in warnings] == [
        "SWITCHBOARD_CONSOLE_SECRET",
        "SWITCHBOARD_INTAKE_SECRET",
        "LIVEKIT_API_SECRET",
    ]
    assert all(" is the development default, which is public" in w for w in warnings)
