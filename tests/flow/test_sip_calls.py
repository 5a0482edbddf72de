"""Phone callers through a real livekit-server: a SIP participant's number and keypad digits reach the graph.

The caller is what LiveKit SIP makes of a phone call in a room: a participant of the SIP kind with its
``sip.phoneNumber`` attribute, whose keyed digits arrive as SIP DTMF packets (`devstack.phone_caller` sends
the same ones). The stack is the real one of test_real_livekit (livekit-server, the API, the queue and
agent workers in a network namespace; the caller in another): the call is admitted by the server's own
webhooks, dispatched through the queue, and the caller hears the agent through the SFU.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from livekit import api

from orchestrator.devstack import phone_caller
from orchestrator.devstack.netns import NamespacesUnavailable, netns_pair, netns_supported
from orchestrator.devstack.sip import DIALLED
from orchestrator.devstack.stack import LIVEKIT_SERVER, RealStack, real_stack
from tests.flow.test_real_livekit import CALL_CAP_S, queue_stats, read_calls, transcribe

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(not LIVEKIT_SERVER.exists(), reason="no livekit-server: run deploy/dev/tools.sh (make tools)"),
    pytest.mark.skipif(netns_supported() is not None, reason=str(netns_supported())),
    pytest.mark.skipif(shutil.which("flite") is None, reason="no flite: apt-get install -y flite"),
    pytest.mark.timeout(900),
]

ROOT = Path(__file__).resolve().parents[2]
CUSTOMER = "+15550100001"  # a demo customer; ZIP 10027
STRANGER = "+15550199999"  # no account has this number
WITHHELD = "anonymous"  # LiveKit SIP's sip.phoneNumber for a caller who withholds their number
# The customer keys the ZIP while the agent is still asking for it: the entry ends with the pause after it.
KEYED_WHILE_SPEAKING = [{"say": "What's my balance?", "keys_while_answered": "10027"}]
# Someone calling from a number we do not know keys a ZIP, ended with '#'.
# The stranger asks as the others do: flite's "my account balance" over 8 kHz comes back from the local STT as
# "my account down" or "my account, Alan" (a support question), and this test is about the unknown number.
UNKNOWN_NUMBER = [{"say": "What's my balance?"}, {"keys": "10027#"}]
# A customer who withholds their number keys it, then their ZIP (+15550100002's is 10453).
NUMBER_KEYED = [{"say": "What's my balance?"}, {"keys": "5550100002#"}, {"keys": "10453#"}]
# A customer who never keys their ZIP, while a supervisor who was in the room before them keys it as the agent listens.
OVERHEARD = [{"say": "What's my balance?"}]
ROOM_KEYS = Path(__file__).with_name("room_keys.py")


def phone_token(stack: RealStack, room: str, number: str) -> str:
    """A join token for a SIP participant as LiveKit SIP makes one for a call from ``number``."""
    from livekit import api

    return (
        api.AccessToken(stack.key, stack.secret)
        .with_identity(f"sip_{number}")
        .with_kind("sip")
        .with_attributes({"sip.phoneNumber": number, "sip.callStatus": "active"})
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )


def room_name() -> str:
    """The room `sip setup`'s dispatch rule makes: <prefix>_<number dialled>_<random>."""
    return f"call-_{DIALLED}_{secrets.token_hex(4)}"


def call(stack: RealStack, number: str, steps: list[dict[str, str]], room: str | None = None) -> dict[str, Any]:
    room = room or room_name()
    heard_dir = stack.run_dir / f"heard-{secrets.token_hex(3)}"
    heard_dir.mkdir()
    argv = [sys.executable, phone_caller.__file__, stack.caller_url, phone_token(stack, room, number)]
    done = subprocess.run(
        stack.pair.command(stack.pair.caller_ns, [*argv, str(heard_dir), json.dumps(steps)]),
        capture_output=True,
        text=True,
        timeout=CALL_CAP_S,
        env=stack.env(),
        cwd=ROOT,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"the caller printed nothing (exit {done.returncode}):\n{done.stderr[-3000:]}\n{stack.logs()}"
    out: dict[str, Any] = json.loads(lines[-1])
    assert done.returncode == 0, f"caller: {out.get('error')}\n{done.stderr[-2000:]}\n{stack.logs()}"
    return out


@pytest.fixture(scope="module")
def phone_calls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two phone calls, one after the other, through one running stack (a few minutes on a busy machine)."""
    run_dir = tmp_path_factory.mktemp("sip-calls")
    with contextlib.ExitStack() as cleanup:
        try:
            pair = cleanup.enter_context(netns_pair())
        except NamespacesUnavailable as exc:
            pytest.skip(f"no network namespaces here: {exc}")
        stack = cleanup.enter_context(real_stack(pair, run_dir))
        worker = stack.start_queue_worker()
        result: dict[str, Any] = {}
        for name, number, steps in (
            ("customer", CUSTOMER, KEYED_WHILE_SPEAKING),
            ("stranger", STRANGER, UNKNOWN_NUMBER),
            ("withheld", WITHHELD, NUMBER_KEYED),
        ):
            caller = call(stack, number, steps)
            calls = asyncio.run(read_calls(stack, f"lk-{caller['room_sid']}"))
            result[name] = {"caller": caller, "record": calls["records"][f"lk-{caller['room_sid']}"], **calls}
        # A supervisor already in a customer's call when the agent arrives (listening in to the waiting call) keys
        # the ZIP that would verify them once the caller is in and the agent listens. The supervisor's join makes
        # the room, which admits the call; no queue worker runs until the caller is in too, so the agent comes to a
        # room that holds both however slow the machine (one that finds no caller soon ends the call unanswered).
        stack.stop_one(worker)
        room = room_name()
        supervisor = api.AccessToken(stack.key, stack.secret).with_identity("supervisor-ada").with_kind("standard")
        token = supervisor.with_grants(api.VideoGrants(room_join=True, room=room)).to_jwt()
        keys = subprocess.Popen(
            stack.pair.command(
                stack.pair.caller_ns, [sys.executable, str(ROOM_KEYS), stack.caller_url, token, "10027#"]
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=stack.env(),
            cwd=ROOT,
        )
        cleanup.callback(keys.kill)
        assert keys.stdout is not None
        line = keys.stdout.readline()
        assert json.loads(line or "{}").get("joined"), (
            f"the supervisor did not join: {line or keys.stderr.read()[-2000:]}"
        )
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            placed = pool.submit(call, stack, CUSTOMER, OVERHEARD, room)
            stack.wait_for(
                lambda: placed.done() or f"sip_{CUSTOMER}" in stack.participants(room), CALL_CAP_S, "the caller's join"
            )
            stack.start_queue_worker()
            caller = placed.result()
        keyed, errors = keys.communicate(timeout=CALL_CAP_S)
        calls = asyncio.run(read_calls(stack, f"lk-{caller['room_sid']}"))
        result["overheard"] = {"caller": caller, "keys": json.loads(keyed.strip().splitlines()[-1]), **calls}
        result["overheard"]["keys_errors"] = errors[-2000:]
        result["stats"] = asyncio.run(queue_stats(stack, lambda s: s["completed"] == 4 and s["in_flight"] == 0))
        yield result


def test_digits_keyed_while_the_agent_speaks_are_held_and_verify_the_caller(phone_calls: dict[str, Any]) -> None:
    from orchestrator.telemetry.wer import word_error_rate

    customer = phone_calls["customer"]
    caller = customer["caller"]
    # The digits went out while the agent was answering the first turn.
    assert caller["keyed_while"] == "speaking"
    assert [t["caller"] for t in caller["turns"]] == ["What's my balance?", "keys:10027"]
    checkpoint = customer["checkpoint"]
    # The SIP caller's number reached the graph (so it asked for the ZIP, not the number), and the keyed
    # ZIP was one turn of its own once the reply was over.
    assert checkpoint["caller_id"] == CUSTOMER
    transcript = checkpoint["transcript"]
    assert [t["role"] for t in transcript] == ["caller", "agent", "caller", "agent"]
    assert transcript[2]["text"] == "10027"
    assert "zip" in transcript[1]["text"].lower()
    assert checkpoint["verification"]["status"] == "verified"
    record = customer["record"]
    assert record["outcome"] == "resolved", record
    assert record["turn_count"] == 2
    # The record keeps the keyed ZIP as it keeps a spoken one: masked. Its reply is timed from the entry's end.
    assert record["turns"][1]["caller"] == "[ZIP]"
    assert all(t["latency_ms"] > 0 for t in record["turns"]), record["turns"]
    # What the caller heard is what the graph said (Whisper on the audio that reached it through the SFU).
    said = [t["text"] for t in transcript if t["role"] == "agent"]
    heard = [transcribe(t["wav"]) for t in caller["turns"]]
    wers = [word_error_rate(s, h) for s, h in zip(said, heard, strict=True)]
    first_audio = [t["first_audio_ms"] for t in caller["turns"]]
    print(f"\nphone caller: first audio {first_audio} ms; heard WER {[round(w, 2) for w in wers]}")
    for s, h, w in zip(said, heard, wers, strict=True):
        assert w <= 0.35, f"said {s!r}, heard {h!r}"


def test_an_unknown_number_keyed_gets_the_normal_not_found_answer(phone_calls: dict[str, Any]) -> None:
    stranger = phone_calls["stranger"]
    assert [t["caller"] for t in stranger["caller"]["turns"]] == [UNKNOWN_NUMBER[0]["say"], "keys:10027#"]
    assert all(t["answered"] for t in stranger["caller"]["turns"])
    checkpoint = stranger["checkpoint"]
    assert checkpoint["caller_id"] == STRANGER
    said = [(t["role"], t["text"]) for t in checkpoint["transcript"]]
    assert "verification" in checkpoint, f"verification never started: {said}"
    verification = checkpoint["verification"]
    # The same answer as a wrong ZIP (no account is revealed): asked again, one failed attempt.
    assert (verification["status"], verification["attempts"], verification["awaiting"]) == ("unverified", 1, "zip")
    agent = [t["text"] for t in checkpoint["transcript"] if t["role"] == "agent"]
    assert len(agent) == 2
    assert agent[1] != agent[0]


def test_a_caller_who_withholds_their_number_keys_it_and_then_the_zip(phone_calls: dict[str, Any]) -> None:
    withheld = phone_calls["withheld"]
    assert all(t["answered"] for t in withheld["caller"]["turns"])
    checkpoint = withheld["checkpoint"]
    # "anonymous" is no caller id: the agent asked for the number, and the keyed one is the account's.
    assert checkpoint.get("caller_id") is None
    transcript = checkpoint["transcript"]
    assert [t["text"] for t in transcript if t["role"] == "caller"][1:] == ["5550100002", "10453"]
    assert "number" in transcript[1]["text"].lower(), transcript[1]
    verification = checkpoint["verification"]
    assert (verification["status"], verification["phone"], verification["attempts"]) == ("verified", "+15550100002", 0)
    record = withheld["record"]
    assert record["outcome"] == "resolved", record
    assert [t["caller"] for t in record["turns"]][1:] == ["[PHONE]", "[ZIP]"]
    assert all(t["latency_ms"] > 0 for t in record["turns"]), record["turns"]


def test_the_agent_hears_speech_that_came_over_a_g711_line(phone_calls: dict[str, Any]) -> None:
    from orchestrator.telemetry.wer import word_error_rate

    wers = []
    for name in ("customer", "stranger", "withheld"):
        said = phone_calls[name]["caller"]["turns"][0]["caller"]
        heard = next(t["text"] for t in phone_calls[name]["checkpoint"]["transcript"] if t["role"] == "caller")
        wers.append(word_error_rate(said, heard))
        assert wers[-1] <= 0.35, f"said {said!r}, the agent heard {heard!r}"
    print(f"\nwhat the agent heard over G.711: WER {[round(w, 2) for w in wers]}")


def test_a_supervisors_keys_in_the_room_do_not_verify_the_caller(phone_calls: dict[str, Any]) -> None:
    overheard = phone_calls["overheard"]
    assert overheard["keys"] == {"keyed": "10027#", "agent_left": True}, overheard["keys_errors"]
    assert all(t["answered"] for t in overheard["caller"]["turns"])
    checkpoint = overheard["checkpoint"]
    assert checkpoint["caller_id"] == CUSTOMER
    # Only the caller's spoken turn: the supervisor's ZIP, keyed before it, was no turn and verified nobody.
    callers = [t["text"] for t in checkpoint["transcript"] if t["role"] == "caller"]
    assert len(callers) == 1, callers
    assert "10027" not in callers
    assert (checkpoint.get("verification") or {}).get("status") != "verified", checkpoint.get("verification")


def test_each_phone_call_was_admitted_once_and_completed(phone_calls: dict[str, Any]) -> None:
    stats = phone_calls["stats"]
    # room_started admitted each call; the SIP participant's participant_joined named the same call.
    assert (stats["admitted"], stats["completed"], stats["in_flight"], stats["waiting"]) == (4, 4, 0, 0)
    assert stats["dead_letters"] == 0
