"""Through the real voice stack: the supervisor who accepted a caller's escalation joins the room and drops out.

livekit-server, the API and both workers run in one network namespace; the caller and the supervisor (both the
`livekit` rtc SDK) in the other. The supervisor leaves and does not come back: the escalation goes back to the
queue, the caller, who would otherwise hear nobody, hears the AI again, and the supervisor back late only listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.devstack import caller as caller_module
from orchestrator.devstack.netns import NamespacesUnavailable, netns_pair, netns_supported
from orchestrator.devstack.stack import API_PORT, LIVEKIT_SERVER, PREFIX, SIGNAL_PORT, RealStack, real_stack

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(not LIVEKIT_SERVER.exists(), reason="no livekit-server: run deploy/dev/tools.sh (make tools)"),
    pytest.mark.skipif(netns_supported() is not None, reason=str(netns_supported())),
    pytest.mark.skipif(shutil.which("flite") is None, reason="no flite: apt-get install -y flite"),
    # Start-up loads the models in three processes; every wait inside has its own cap.
    pytest.mark.timeout(900),
]

CALLER = "+15550100001"
# Asks for a person, is paused while the supervisor comes and goes, then speaks again: one phrase, since "Hello? Is
# anybody there?" may be heard as two turns, the reply to the first cut off by the second.
SCRIPT = ["I want to speak to a real person please.", "Is anybody still there?"]
PASSWORD = "correct horse battery"
CALLER_SCRIPT = Path(caller_module.__file__)
ROOT = Path(__file__).resolve().parents[2]
CALL_CAP_S = 300
STEP_CAP_S = 180.0
SETTINGS = {
    # Only the room decides here: the lease outlasts the test, and joining has all the time it needs.
    "SWITCHBOARD_CONSOLE_LEASE_S": "3600",
    "SWITCHBOARD_ESCALATION_JOIN_S": "3600",
    "SWITCHBOARD_CONSOLE_DISCONNECT_GRACE_S": "1",
    # The caller is silent while paused: they must not be asked if they are still there, nor hung up on.
    "SWITCHBOARD_CALLER_AWAY_S": "3600",
}


def until(check: Any, what: str, stack: RealStack, cap_s: float = STEP_CAP_S) -> Any:
    deadline = time.monotonic() + cap_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{stack.logs()}")
        time.sleep(0.2)


def api(stack: RealStack, fn: Any) -> Any:
    """Talk to the API as a console page does (it listens on loopback in the server's namespace)."""

    def run() -> Any:
        with httpx.Client(base_url=f"http://127.0.0.1:{API_PORT}", timeout=30) as client:
            r = client.post("/v1/console/login", json={"username": "sam", "password": PASSWORD})
            assert r.status_code == 200, r.text
            return fn(client, {"X-CSRF-Token": r.json()["csrf_token"]})

    return stack.pair.call_in(stack.pair.server_ns, run)


def feed_read(stack: RealStack, fn: Any) -> Any:
    import redis.asyncio as aioredis

    from orchestrator.live import LiveFeed

    async def read() -> Any:
        client = aioredis.Redis.from_url(stack.redis_url, decode_responses=True)
        try:
            return await fn(LiveFeed(client, prefix=PREFIX), client)
        finally:
            await client.aclose()

    return asyncio.run(read())


def publish_rights(stack: RealStack, room: str, identity: str) -> bool | None:
    """Whether ``identity`` may publish in ``room``, as livekit-server says; None if they are not in it."""
    from livekit import api as lkapi

    async def read() -> bool | None:
        lk = lkapi.LiveKitAPI(f"http://127.0.0.1:{SIGNAL_PORT}", stack.key, stack.secret)
        try:
            listed = await lk.room.list_participants(lkapi.ListParticipantsRequest(room=room))
        finally:
            await lk.aclose()
        found = [p for p in listed.participants if p.identity == identity]
        return found[0].permission.can_publish if found else None

    result: bool | None = stack.pair.call_in(stack.pair.server_ns, lambda: asyncio.run(read()))
    return result


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def transcribe(wav: str) -> str:
    import wave

    import numpy as np

    from orchestrator.providers.stt import WhisperSTT

    with wave.open(wav) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return WhisperSTT().transcribe(pcm.astype(np.float32) / 32768.0)


@pytest.fixture(scope="module")
def vanished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    run_dir = tmp_path_factory.mktemp("escalation-vanish")
    with contextlib.ExitStack() as cleanup:
        try:
            pair = cleanup.enter_context(netns_pair())
        except NamespacesUnavailable as exc:
            pytest.skip(f"no network namespaces here: {exc}")
        stack = cleanup.enter_context(real_stack(pair, run_dir, env=SETTINGS))
        stack.start_queue_worker()
        subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "users", "add", "sam", "--role", "supervisor"]
            + ["--password-stdin"],
            input=PASSWORD,
            text=True,
            check=True,
            capture_output=True,
            env=stack.env(),
            cwd=ROOT,
        )
        room = f"call-{secrets.token_hex(4)}"
        heard = run_dir / "heard"
        heard.mkdir()
        token = stack.token(room, f"caller-{secrets.token_hex(3)}", metadata={"caller_id": CALLER})
        argv = [sys.executable, str(CALLER_SCRIPT), stack.caller_url, token, str(heard), json.dumps(SCRIPT), "1"]
        caller_log = (run_dir / "caller.log").open("w")
        cleanup.callback(caller_log.close)
        caller = subprocess.Popen(
            pair.command(pair.caller_ns, argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=caller_log,
            text=True,
            env=stack.env(),
            cwd=ROOT,
        )
        cleanup.callback(stop, caller)
        assert caller.stdout is not None
        assert caller.stdin is not None
        paused = json.loads(caller.stdout.readline() or "{}")
        assert paused.get("paused") == 1, f"{(run_dir / 'caller.log').read_text()[-3000:]}\n{stack.logs()}"
        call_id = f"lk-{paused['room_sid']}"

        def waiting() -> list[dict[str, Any]]:
            tickets = api(stack, lambda c, _h: c.get("/v1/console/escalations").json())
            return [t for t in tickets if t["call_id"] == call_id]

        ticket = until(waiting, "the caller's escalation in the queue", stack)[0]
        accepted = api(stack, lambda c, h: c.post(f"/v1/console/escalations/{ticket['ticket_id']}/accept", headers=h))
        assert accepted.status_code == 200, accepted.text

        # The supervisor's console joins the room, and drops out for good.
        sup_token = stack.token(room, "supervisor-sam")
        sup_argv = [sys.executable, str(CALLER_SCRIPT), stack.caller_url, sup_token, str(run_dir), "[]"]
        # What each supervisor process says when it cannot join, kept for the failure message.
        supervisor_log = (run_dir / "supervisor.log").open("w")
        cleanup.callback(supervisor_log.close)
        late_log = (run_dir / "supervisor-late.log").open("w")
        cleanup.callback(late_log.close)
        supervisor = subprocess.Popen(
            pair.command(pair.caller_ns, sup_argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=supervisor_log,
            text=True,
            env=stack.env(),
            cwd=ROOT,
        )
        cleanup.callback(stop, supervisor)
        assert supervisor.stdout is not None
        assert supervisor.stdin is not None
        assert json.loads(supervisor.stdout.readline() or "{}").get("joined"), (run_dir / "supervisor.log").read_text()[
            -3000:
        ]
        in_room = f"{PREFIX}:console:room:{call_id}"
        until(lambda: feed_read(stack, lambda _f, r: r.sismember(in_room, "sam")), "sam seen in the room", stack)
        supervisor.stdin.write("\n")
        supervisor.stdin.flush()
        supervisor.communicate(timeout=CALL_CAP_S)
        again = until(lambda: [t for t in waiting() if t["ticket_id"] != ticket["ticket_id"]], "the requeue", stack)
        lines = feed_read(stack, lambda f, _r: f.lines(call_id))
        # Back late, with the token from before: the session lets them listen only.
        late = subprocess.Popen(
            pair.command(pair.caller_ns, sup_argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=late_log,
            text=True,
            env=stack.env(),
            cwd=ROOT,
        )
        cleanup.callback(stop, late)
        assert late.stdout is not None
        assert late.stdin is not None
        assert json.loads(late.stdout.readline() or "{}").get("joined"), (run_dir / "supervisor-late.log").read_text()[
            -3000:
        ]
        muted = until(lambda: publish_rights(stack, room, "supervisor-sam") is False, "the late one muted", stack)
        late.stdin.write("\n")
        late.stdin.flush()
        late.communicate(timeout=CALL_CAP_S)
        # The caller speaks again: the AI answers (hold lines), where before nobody did.
        caller.stdin.write("\n")
        caller.stdin.flush()
        out, _ = caller.communicate(timeout=CALL_CAP_S)
        result = json.loads(out.strip().splitlines()[-1])
        yield {
            "muted": muted,
            "again": again,
            "lines": [(ln.role, ln.text) for ln in lines],
            "caller": result,
            "code": caller.returncode,
        }


def test_the_escalation_goes_back_to_the_queue_when_its_supervisor_leaves_the_room(vanished: dict[str, Any]) -> None:
    assert len(vanished["again"]) == 1
    roles = [role for role, _text in vanished["lines"]]
    assert "notice" in roles
    assert any("lost contact" in text for role, text in vanished["lines"] if role == "event")


def test_a_supervisor_back_late_may_only_listen(vanished: dict[str, Any]) -> None:
    assert vanished["muted"]


def test_the_caller_hears_the_ai_again_rather_than_silence(vanished: dict[str, Any]) -> None:
    caller = vanished["caller"]
    assert vanished["code"] == 0, caller.get("error")
    assert [t["answered"] for t in caller["turns"]] == [True, True]
    heard = transcribe(caller["turns"][1]["wav"]).lower()
    # With what the AI said and heard, and the agent's states the caller saw, should the audio not say it.
    said = "\n".join(f"{role}: {text}" for role, text in vanished["lines"])
    assert "team" in heard or "holding" in heard or "queue" in heard, f"{heard!r}\n{said}\n{caller.get('states')}"
