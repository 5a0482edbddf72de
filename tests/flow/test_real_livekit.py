"""A call through a real livekit-server, nothing stood in: its own signed webhooks, dispatch, the agent worker's
registration and WebRTC audio both ways.

The server, the API, the queue worker and the agent worker run in one network namespace, the caller (the
`livekit` rtc SDK, speaking flite-rendered turns) in another, joined by a veth pair: libwebrtc leaves
loopback out of ICE, so media needs a real link, and these namespaces are the only place it exists.
The caller records what it heard; the local Whisper STT checks it against what the agent said.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.flow.real_livekit_support.netns import netns_pair, netns_supported
from tests.flow.real_livekit_support.stack import LIVEKIT_SERVER, PREFIX, RealStack, real_stack

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
CALLER_SCRIPT = Path(__file__).with_name("real_livekit_support") / "caller.py"
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


async def read_call(stack: RealStack, room: str) -> dict[str, Any]:
    """The call of ``room``: its record (written by the agent job), checkpoint and the queue's counters."""
    from orchestrator.api.app import open_queue
    from orchestrator.config import load_settings
    from orchestrator.runtime import Services
    from orchestrator.store.records import CallStore
    from orchestrator.worker.runner import checkpoint_state

    settings = load_settings(data_dir=stack.data_dir)
    queue = open_queue(settings, stack.redis_url, prefix=PREFIX)
    out: dict[str, Any] = {}
    try:
        async with await Services.open(settings, seed=False) as services:
            store = CallStore(services.engine)

            async def record() -> Any:
                calls = await store.list_calls()
                return next((c for c in calls if c.call_id.startswith("lk-")), None)

            found = await _poll(record, RECORD_CAP_S)
            assert found is not None, f"no call record within {RECORD_CAP_S} s\n{stack.logs()}"
            view = await store.get_call(found.call_id)
            assert view is not None
            out["record"] = view.to_json()
            out["checkpoint"] = await checkpoint_state(services, found.call_id)

            async def completed() -> Any:
                stats = await queue.stats()
                return stats if stats.completed >= 1 and stats.in_flight == 0 else None

            stats = await _poll(completed, RECORD_CAP_S) or await queue.stats()
            out["stats"] = stats.model_dump(mode="json")
    finally:
        await queue.aclose()
    return out


def transcribe(wav: str) -> str:
    import wave

    import numpy as np

    from orchestrator.providers.stt import WhisperSTT

    with wave.open(wav) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return WhisperSTT().transcribe(pcm.astype(np.float32) / 32768.0)


@pytest.fixture(scope="module")
def real_call(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One call placed by a WebRTC caller through the real stack (about a minute on a 2-core box)."""
    run_dir = tmp_path_factory.mktemp("real-livekit")
    with netns_pair() as pair, real_stack(pair, run_dir) as stack:
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
            cwd=Path(__file__).resolve().parents[2],
        )
        lines = done.stdout.strip().splitlines()
        assert lines, f"the caller printed nothing (exit {done.returncode}):\n{done.stderr[-3000:]}\n{stack.logs()}"
        caller: dict[str, Any] = json.loads(lines[-1])
        assert done.returncode == 0, f"caller: {caller.get('error')}\n{done.stderr[-2000:]}\n{stack.logs()}"
        result = asyncio.run(read_call(stack, room))
        result.update(caller=caller, room=room, logs=stack.logs())
        yield result


def test_the_caller_is_answered_in_the_room_turn_by_turn(real_call: dict[str, Any]) -> None:
    from orchestrator.session.audio import word_error_rate

    caller = real_call["caller"]
    assert [t["caller"] for t in caller["turns"]] == SCRIPT
    assert all(t["answered"] for t in caller["turns"])
    # What the caller heard is what the graph said, through Opus, the SFU and back: the STT agrees with it.
    said = [t["text"] for t in real_call["checkpoint"]["transcript"] if t["role"] == "agent"]
    heard = [transcribe(t["wav"]) for t in caller["turns"]]
    wers = [word_error_rate(s, h) for s, h in zip(said, heard, strict=True)]
    first_audio = [t["first_audio_ms"] for t in caller["turns"]]
    print(f"\nreal room: first audio at the caller {first_audio} ms; heard WER {[round(w, 2) for w in wers]}")
    for s, h, w in zip(said, heard, wers, strict=True):
        assert w <= 0.35, f"said {s!r}, heard {h!r}"
    assert all(ms is not None and ms > 0 for ms in first_audio)


def test_the_call_was_admitted_by_the_servers_webhook_and_completed_once(real_call: dict[str, Any]) -> None:
    stats = real_call["stats"]
    # room_started admitted the call; the server's later events for the room (participant_joined of a
    # WebRTC caller, room_finished) admit nothing more.
    assert (stats["admitted"], stats["completed"], stats["in_flight"], stats["waiting"]) == (1, 1, 0, 0)
    assert stats["dead_letters"] == 0


def test_the_record_and_transcript_hold_the_spoken_call(real_call: dict[str, Any]) -> None:
    record = real_call["record"]
    assert record["outcome"] == "resolved", record
    assert record["intent"] == "billing"
    assert record["turn_count"] == 2
    assert "balance" in record["turns"][0]["caller"].lower()
    assert all(t["agent"] for t in record["turns"])
    assert all(t["latency_ms"] > 0 for t in record["turns"])
    transcript = real_call["checkpoint"]["transcript"]
    assert [t["role"] for t in transcript] == ["caller", "agent", "caller", "agent"]
    assert real_call["checkpoint"]["verification"]["status"] == "verified"
