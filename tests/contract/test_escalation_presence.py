"""A supervisor who never joins an accepted call's room, or leaves it, never leaves the caller in silence.

The console on a real server and Redis; who joined or left the room is what a voice session reports.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agents.prompts import Prompts
from orchestrator.config import PROMPTS_DIR
from orchestrator.contracts import CallJob
from tests.console_app import ServedApp, served_console

pytestmark = pytest.mark.contract

PASSWORD = "correct horse battery"
RECONNECTING = Prompts.load(PROMPTS_DIR).reply("escalation.reconnecting")


@pytest.fixture(scope="module")
def server() -> Iterator[ServedApp]:
    # A long lease, so only the room decides here. The wait for the room and the grace after leaving it are short,
    # yet far longer than a test's own steps take on a loaded machine: with 0.5 s, an accept followed by a check
    # (or a release, or the join) raced the watchdog on a fresh clone's run and the call was requeued first.
    with served_console(
        "presence",
        PASSWORD,
        livekit_url="ws://127.0.0.1:7880",
        console_lease_s=600.0,
        escalation_join_s=5.0,
        console_disconnect_grace_s=3.0,
    ) as srv:
        yield srv


def login(server: ServedApp, username: str) -> tuple[httpx.Client, dict[str, str]]:
    client = httpx.Client(base_url=server.url, timeout=10)
    r = client.post("/v1/console/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return client, {"X-CSRF-Token": r.json()["csrf_token"]}


def escalated_call(server: ServedApp) -> tuple[str, str]:
    """A live call (as a worker publishes it) with a waiting escalation ticket; returns (call_id, ticket_id)."""
    call_id = f"call-{uuid.uuid4().hex[:10]}"
    console = server.app.state.console
    job = CallJob(call_id=call_id, source="simulate", room=call_id, caller_id="+15550100001")
    server.call(console.feed.call_started(job, worker="w1", resumed_at=0))
    ticket = server.call(
        console.desk.open_ticket(call_id=call_id, account_id=None, reason="frustration", summary="Angry.", priority=2)
    )
    return call_id, ticket.ticket_id


def kinds(server: ServedApp, call_id: str) -> list[str]:
    return [c["kind"] for c in server.call(server.app.state.console.feed.pending_commands(call_id))]


def lines(server: ServedApp, call_id: str) -> list[tuple[str, str]]:
    return [(line.role, line.text) for line in server.call(server.app.state.console.feed.lines(call_id))]


def moved(server: ServedApp, call_id: str, username: str, present: bool) -> bool:
    """What the call's voice session reports when a supervisor joins or leaves the room; whether they hold it."""
    feed = server.app.state.console.feed
    grace = server.app.state.settings.console_disconnect_grace_s
    holds: bool = server.call(feed.supervisor_presence(call_id, username, present, grace_s=grace))
    return holds


def waiting_for(client: httpx.Client, call_id: str) -> list[dict[str, Any]]:
    return [t for t in client.get("/v1/console/escalations").json() if t["call_id"] == call_id]


def wait_for(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def accept(client: httpx.Client, h: dict[str, str], ticket_id: str) -> None:
    r = client.post(f"/v1/console/escalations/{ticket_id}/accept", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["livekit"]["token"]


def test_an_accepted_escalation_whose_supervisor_never_joins_goes_back_to_the_queue(server: ServedApp) -> None:
    sam, h = login(server, "sam")
    call_id, ticket_id = escalated_call(server)
    accept(sam, h, ticket_id)
    assert waiting_for(sam, call_id) == []
    # Sam keeps the console open (the lease holds) but never comes into the room.
    wait_for(lambda: kinds(server, call_id) == ["take_over", "requeue"])
    again = waiting_for(sam, call_id)
    assert [t["ticket_id"] != ticket_id for t in again] == [True]
    assert sam.get(f"/v1/console/calls/{call_id}").json()["call"]["controller"] == ""
    said = lines(server, call_id)
    assert ("event", "sam lost contact; the call is back in the escalation queue.") in said
    # The caller is told at once, in the AI's voice (the session speaks notice lines as they come).
    assert said[-1] == ("notice", RECONNECTING)
    # Another supervisor takes it from the queue.
    kim, hk = login(server, "kim")
    accept(kim, hk, again[0]["ticket_id"])
    assert sam.get(f"/v1/console/calls/{call_id}").json()["call"]["controller"] == "kim"


def test_the_notice_reaches_the_session_as_a_line_to_speak(server: ServedApp) -> None:
    sam, h = login(server, "sam")
    call_id, ticket_id = escalated_call(server)
    feed = server.app.state.console.feed
    spoken = server.call(feed.human_lines(call_id, block_ms=100))
    accept(sam, h, ticket_id)
    assert server.call(anext(spoken)) == RECONNECTING
    server.call(spoken.aclose())


def test_a_supervisor_in_the_room_keeps_the_call(server: ServedApp) -> None:
    sam, h = login(server, "sam")
    call_id, ticket_id = escalated_call(server)
    accept(sam, h, ticket_id)
    moved(server, call_id, "sam", True)
    feed = server.app.state.console.feed
    assert call_id not in server.call(feed.absent(now=time.time() + 3600))
    # Someone else passing through the room changes nothing.
    moved(server, call_id, "kim", False)
    assert call_id not in server.call(feed.absent(now=time.time() + 3600))
    assert kinds(server, call_id) == ["take_over"]


def test_a_supervisor_already_listening_in_the_room_when_they_accept_keeps_the_call(server: ServedApp) -> None:
    sam, h = login(server, "sam")
    call_id, ticket_id = escalated_call(server)
    moved(server, call_id, "sam", True)
    accept(sam, h, ticket_id)
    assert call_id not in server.call(server.app.state.console.feed.absent(now=time.time() + 3600))


def test_a_supervisor_who_leaves_the_room_and_comes_back_in_time_keeps_the_call(server: ServedApp) -> None:
    sam, h = login(server, "sam")
    call_id, ticket_id = escalated_call(server)
    accept(sam, h, ticket_id)
    moved(server, call_id, "sam", True)
    moved(server, call_id, "sam", False)
    feed = server.app.state.console.feed
    assert call_id in server.call(feed.absent(now=time.time() + 3600))
    moved(server, call_id, "sam", True)
    assert call_id not in server.call(feed.absent(now=time.time() + 3600))


def test_a_supervisor_who_leaves_an_accepted_call_for_good_sends_it_back_to_the_queue(server: ServedApp) -> None:
    sam, h = login(server, "sam")
    call_id, ticket_id = escalated_call(server)
    accept(sam, h, ticket_id)
    moved(server, call_id, "sam", True)
    moved(server, call_id, "sam", False)
    wait_for(lambda: kinds(server, call_id) == ["take_over", "requeue"])
    assert len(waiting_for(sam, call_id)) == 1
    assert lines(server, call_id)[-1] == ("notice", RECONNECTING)
    # Back late, sam holds nothing until they accept again (the session lets them only listen), and a line of
    # theirs is a barge-in, not a held call's reply.
    assert moved(server, call_id, "sam", True) is False
    assert call_id not in server.call(server.app.state.console.feed.absent(now=time.time() + 3600))
    r = sam.post(f"/v1/console/calls/{call_id}/say", json={"text": "Sorry, I'm back."}, headers=h)
    assert r.json()["action"] == "barge_in"
    assert sam.get(f"/v1/console/calls/{call_id}").json()["call"]["controller"] == ""


def test_a_supervisor_who_took_a_call_over_and_leaves_the_room_gives_it_back_to_the_ai(server: ServedApp) -> None:
    sam, h = login(server, "sam")
    call_id, _ = escalated_call(server)
    assert sam.post(f"/v1/console/calls/{call_id}/take-over", headers=h).status_code == 200
    moved(server, call_id, "sam", True)
    moved(server, call_id, "sam", False)
    wait_for(lambda: kinds(server, call_id) == ["take_over", "release"])
    assert sam.get(f"/v1/console/calls/{call_id}").json()["call"]["controller"] == ""


def test_a_supervisor_who_releases_on_purpose_is_not_requeued(server: ServedApp) -> None:
    sam, h = login(server, "sam")
    call_id, ticket_id = escalated_call(server)
    accept(sam, h, ticket_id)
    assert sam.post(f"/v1/console/calls/{call_id}/release", headers=h).status_code == 200
    feed = server.app.state.console.feed
    assert call_id not in server.call(feed.absent(now=time.time() + 3600))
    moved(server, call_id, "sam", False)  # the softphone leaves the room after the release
    assert call_id not in server.call(feed.absent(now=time.time() + 3600))
    assert kinds(server, call_id) == ["take_over", "release"]
    assert waiting_for(sam, call_id) == []
