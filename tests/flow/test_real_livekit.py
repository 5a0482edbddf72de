"""A call through a real livekit-server, nothing stood in: its own signed webhooks, dispatch, the agent worker's
registration and WebRTC audio both ways.

The server, the API, the queue worker and the agent worker run in one network namespace, the caller (the
`livekit` rtc SDK, speaking flite-rendered turns) in another, joined by a veth pair: libwebrtc leaves
loopback out of ICE, so media needs a real link, and these namespaces are the only place it exists.
The caller records what it heard; the local Whisper STT checks it against what the agent said.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.devstack import caller as caller_module
from orchestrator.devstack.netns import MEDIA_NICE, NamespacesUnavailable, netns_pair, netns_supported
from orchestrator.devstack.stack import LIVEKIT_SERVER, PREFIX, RealStack, real_stack

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(not LIVEKIT_SERVER.exists(), reason="no livekit-server: run deploy/dev/tools.sh (make tools)"),
    pytest.mark.skipif(netns_supported() is not None, reason=str(netns_supported())),
    pytest.mark.skipif(shutil.which("flite") is None, reason="no flite: apt-get install -y flite"),
    # Start-up loads the models in three processes; every wait inside has its own cap.
    pytest.mark.timeout(600),
]

CALLER = "+15550100001"
# The ZIP digit by digit, as callers say it: Whisper hears flite's "ten thousand twenty-seven" as "10,27".
SCRIPT = ["What's my balance?", "1 0 0 2 7"]
CALLER_SCRIPT = Path(caller_module.__file__)
ROOT = Path(__file__).resolve().parents[2]
# The caller waits at most this long for anything; the run as a whole far less.
CALL_CAP_S = 300
RECORD_CAP_S = 120


async def _poll(fn: Any, cap_s: float, interval_s: float = 0.2) -> Any:
    """Await ``fn()`` until it returns something truthy, for at most ``cap_s``; its last value otherwise."""
    deadline = asyncio.get_running_loop().time() + cap_s
    while True:
        value = await fn()
        if value or asyncio.get_running_loop().time() >= deadline:
            return value
        await asyncio.sleep(interval_s)


async def queue_stats(stack: RealStack, until: Any = None) -> dict[str, Any]:
    """The queue's counters, once ``until(stats)`` holds if given (polled, capped); the last ones otherwise."""
    from orchestrator.config import load_settings
    from orchestrator.queue import open_queue

    queue = open_queue(load_settings(data_dir=stack.data_dir), stack.redis_url, prefix=PREFIX)
    try:

        async def read() -> Any:
            stats = (await queue.stats()).model_dump(mode="json")
            return stats if until is None or until(stats) else None

        return await _poll(read, RECORD_CAP_S) or (await queue.stats()).model_dump(mode="json")
    finally:
        await queue.aclose()


async def read_calls(stack: RealStack, answered: str) -> dict[str, Any]:
    """The calls' records (written by the agent jobs) and the checkpoint of the call ``answered``."""
    from orchestrator.config import load_settings
    from orchestrator.runtime import Services
    from orchestrator.store.records import CallStore
    from orchestrator.worker.runner import checkpoint_state

    async with await Services.open(load_settings(data_dir=stack.data_dir), seed=False) as services:
        store = CallStore(services.engine)
        found = await _poll(lambda: store.get_call(answered), RECORD_CAP_S)
        assert found, f"no record of {answered} within {RECORD_CAP_S} s\n{stack.logs()}"
        views = [await store.get_call(c.call_id) for c in await store.list_calls()]
        return {
            "records": {v.call_id: v.to_json() for v in views if v is not None},
            "checkpoint": await checkpoint_state(services, answered),
        }


def hang_up_while_queued(stack: RealStack, pair: Any) -> dict[str, Any]:
    """A caller joins a call room while no queue worker runs, and hangs up once the call waits in the queue."""
    token = stack.token(f"call-{secrets.token_hex(4)}", f"caller-{secrets.token_hex(3)}")
    argv = [sys.executable, str(CALLER_SCRIPT), stack.caller_url, token, str(stack.run_dir), "[]"]
    log = stack.run_dir / "caller-hangs-up.log"
    with log.open("w") as errors:
        caller = subprocess.Popen(
            pair.command(pair.caller_ns, argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=stack.env(),
            cwd=ROOT,
        )
    try:
        assert caller.stdout is not None
        assert caller.stdin is not None
        assert json.loads(caller.stdout.readline() or "{}").get("joined"), log.read_text()[-2000:]
        waiting = asyncio.run(queue_stats(stack, lambda s: s["waiting"] == 1))
        caller.stdin.write("\n")
        caller.stdin.flush()
        out, _ = caller.communicate(timeout=CALL_CAP_S)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
    assert caller.returncode == 0, log.read_text()[-2000:]
    left = asyncio.run(queue_stats(stack, lambda s: s["abandoned"] == 1))
    return {"waiting": waiting, "left": left, "caller": json.loads(out.strip().splitlines()[-1])}


def transcribe(wav: str) -> str:
    import wave

    import numpy as np

    from orchestrator.providers.stt import WhisperSTT

    with wave.open(wav) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return WhisperSTT().transcribe(pcm.astype(np.float32) / 32768.0)


@pytest.fixture(scope="module")
def real_call(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A caller who hangs up in the queue, then a call answered and spoken through the real stack (about a minute)."""
    run_dir = tmp_path_factory.mktemp("real-livekit")
    with contextlib.ExitStack() as cleanup:
        try:
            pair = cleanup.enter_context(netns_pair())
        except NamespacesUnavailable as exc:
            pytest.skip(f"no network namespaces here: {exc}")
        stack = cleanup.enter_context(real_stack(pair, run_dir))
        result: dict[str, Any] = {"hung_up": hang_up_while_queued(stack, pair)}
        stack.start_queue_worker()
        # A call room nobody joins (its caller hung up before the agent came): its call ends unanswered.
        empty = f"call-{secrets.token_hex(4)}"
        stack.create_room(empty)
        result["empty_room"] = asyncio.run(queue_stats(stack, lambda s: s["completed"] == 1))
        room = f"call-{secrets.token_hex(4)}"
        token = stack.token(room, f"caller-{secrets.token_hex(3)}", metadata={"caller_id": CALLER})
        heard_dir = run_dir / "heard"
        heard_dir.mkdir()
        argv = [sys.executable, str(CALLER_SCRIPT), stack.caller_url, token, str(heard_dir), json.dumps(SCRIPT)]
        done = subprocess.run(
            pair.command(pair.caller_ns, argv),
            capture_output=True,
            text=True,
            timeout=CALL_CAP_S,
            env=stack.env(),
            cwd=ROOT,
        )
        lines = done.stdout.strip().splitlines()
        assert lines, f"the caller printed nothing (exit {done.returncode}):\n{done.stderr[-3000:]}\n{stack.logs()}"
        caller: dict[str, Any] = json.loads(lines[-1])
        assert done.returncode == 0, f"caller: {caller.get('error')}\n{done.stderr[-2000:]}\n{stack.logs()}"
        result.update(asyncio.run(read_calls(stack, f"lk-{caller['room_sid']}")))
        result["stats"] = asyncio.run(queue_stats(stack, lambda s: s["completed"] == 2 and s["in_flight"] == 0))
        result.update(caller=caller, room=room)
        result["priorities"] = {p.name: os.getpriority(os.PRIO_PROCESS, p.popen.pid) for p in stack.procs}
        yield result


def test_the_stacks_media_processes_run_at_the_media_priority(real_call: dict[str, Any]) -> None:
    # livekit-server, the API and both workers: batch work on the same cores slows them and cannot starve them.
    priorities = real_call["priorities"]
    assert {"livekit-server", "agent-worker", "queue-worker"} <= priorities.keys()
    assert set(priorities.values()) == {MEDIA_NICE}, priorities


def test_the_caller_is_answered_in_the_room_turn_by_turn(real_call: dict[str, Any]) -> None:
    from orchestrator.telemetry.wer import word_error_rate

    caller = real_call["caller"]
    assert [t["caller"] for t in caller["turns"]] == SCRIPT
    assert all(t["answered"] for t in caller["turns"])
    # What the caller heard is what the graph said, through Opus, the SFU and back: the STT agrees with it.
    transcript = real_call["checkpoint"]["transcript"]
    said = [t["text"] for t in transcript if t["role"] == "agent"]
    assert len(said) == len(SCRIPT), transcript
    heard = [transcribe(t["wav"]) for t in caller["turns"]]
    wers = [word_error_rate(s, h) for s, h in zip(said, heard, strict=True)]
    first_audio = [t["first_audio_ms"] for t in caller["turns"]]
    print(f"\nreal room: first audio at the caller {first_audio} ms; heard WER {[round(w, 2) for w in wers]}")
    for s, h, w in zip(said, heard, wers, strict=True):
        assert w <= 0.35, f"said {s!r}, heard {h!r}"
    assert all(ms is not None and ms > 0 for ms in first_audio)


def test_the_call_was_admitted_by_the_servers_webhook_and_completed_once(real_call: dict[str, Any]) -> None:
    stats = real_call["stats"]
    # room_started admitted each call; the server's later events for a room (participant_joined of a WebRTC
    # caller, participant_left, room_finished) admit nothing more.
    assert (stats["admitted"], stats["completed"], stats["in_flight"], stats["waiting"]) == (3, 2, 0, 0)
    assert stats["dead_letters"] == 0


def test_a_caller_who_hangs_up_while_queued_leaves_the_queue_as_abandoned(real_call: dict[str, Any]) -> None:
    hung_up = real_call["hung_up"]
    assert (hung_up["waiting"]["waiting"], hung_up["waiting"]["abandoned"]) == (1, 0)
    # The server's participant_left webhook took the call out of the queue before any worker could claim it.
    assert (hung_up["left"]["waiting"], hung_up["left"]["abandoned"], hung_up["left"]["in_flight"]) == (0, 1, 0)
    assert hung_up["caller"]["agents_seen"] == 0
    # The queue worker, started after, never dispatched an agent to it: it has no record.
    assert real_call["stats"]["abandoned"] == 1
    assert len(real_call["records"]) == 2


def test_an_agent_that_finds_no_caller_in_its_room_ends_the_call_unanswered(real_call: dict[str, Any]) -> None:
    # Dispatched into a call room nobody is in, the agent ended the call itself, on its first attempt, rather
    # than wait for the server to close the room and cancel its job (a failed attempt, and no record).
    assert real_call["empty_room"]["completed"] == 1
    assert real_call["empty_room"]["retries_scheduled"] == 0
    [unanswered] = [r for r in real_call["records"].values() if r["outcome"] != "resolved"]
    assert (unanswered["outcome"], unanswered["turn_count"], unanswered["attempt"]) == ("abandoned", 0, 1)


def test_the_record_and_transcript_hold_the_spoken_call(real_call: dict[str, Any]) -> None:
    record = real_call["records"][f"lk-{real_call['caller']['room_sid']}"]
    assert record["outcome"] == "resolved", record
    assert record["intent"] == "billing"
    assert record["turn_count"] == 2
    assert "balance" in record["turns"][0]["caller"].lower()
    assert all(t["agent"] for t in record["turns"])
    assert all(t["latency_ms"] > 0 for t in record["turns"])
    transcript = real_call["checkpoint"]["transcript"]
    assert [t["role"] for t in transcript] == ["caller", "agent", "caller", "agent"]
    assert real_call["checkpoint"]["verification"]["status"] == "verified"
