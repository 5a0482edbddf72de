"""A real SIP call through the real livekit-sip: a PJSIP phone INVITEs the trunk `switchboard sip setup` made.

The stack is test_real_livekit's (livekit-server, the API and both workers in a network namespace) plus
livekit-sip beside the server (`devstack.sip.start_sip`); the phone (`devstack.sip_phone`) is in the caller's
namespace, speaks G.711 μ-law, and keys its ZIP by RFC 4733, as a phone line does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.devstack import sip_phone
from orchestrator.devstack.netns import NamespacesUnavailable, netns_pair, netns_supported
from orchestrator.devstack.sip import DIALLED, LIVEKIT_SIP, SIP_PORT, say_at_8k, sip_setup, start_sip
from orchestrator.devstack.stack import LIVEKIT_SERVER, RealStack, real_stack
from tests.flow.test_real_livekit import CALL_CAP_S, RECORD_CAP_S, _poll, queue_stats

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(not LIVEKIT_SERVER.exists(), reason="no livekit-server: run deploy/dev/tools.sh (make tools)"),
    pytest.mark.skipif(not LIVEKIT_SIP.exists(), reason="no livekit-sip: run deploy/dev/tools.sh livekit-sip"),
    pytest.mark.skipif(netns_supported() is not None, reason=str(netns_supported())),
    pytest.mark.skipif(shutil.which("flite") is None, reason="no flite: apt-get install -y flite"),
    pytest.mark.timeout(900),
]

ROOT = Path(__file__).resolve().parents[2]
TRUNK_NUMBER = DIALLED
CUSTOMER = "+15550100001"  # a demo customer; ZIP 10027
QUESTION = "What's my balance?"
# A call room's name where a log line carries it (our own processes' logs mask a number in it as [PHONE]).
ROOM_NAME = re.compile(r"call-_[^\s\"',\\}]+")


def transcribe_8k(path: str) -> str:
    from orchestrator.providers.stt import WhisperSTT

    with wave.open(path) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    at_16k = np.interp(np.arange(len(pcm) * 2) / 2, np.arange(len(pcm)), pcm).astype(np.float32)
    return WhisperSTT().transcribe(at_16k)


def phone(
    stack: RealStack,
    out: Path,
    *,
    codecs: list[str],
    keys: str = "10027#",
    question: str = QUESTION,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A call from the PJSIP phone (`devstack.sip_phone`); ``extra`` adds to its config (a transfer's script)."""
    out.mkdir()
    cfg = {
        "bind": stack.pair.caller_ip,
        "uri": f"sip:{TRUNK_NUMBER}@{stack.pair.server_ip}:{SIP_PORT}",
        "caller": CUSTOMER,
        "codecs": codecs,
        "wav": str(say_at_8k(question, out / "question.wav")),
        "keys": keys,
        "out": str(out),
        **(extra or {}),
    }
    done = subprocess.run(
        stack.pair.command(stack.pair.caller_ns, [sys.executable, sip_phone.__file__, json.dumps(cfg)]),
        capture_output=True,
        text=True,
        timeout=CALL_CAP_S,
        env=stack.env(),
        cwd=ROOT,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"the phone printed nothing (exit {done.returncode}):\n{done.stderr[-3000:]}\n{stack.logs()}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert "error" not in result, f"{result['error']}\n{done.stderr[-2000:]}\n{stack.logs()}"
    return result


def room_names(run_dir: Path) -> set[str]:
    """The call room names in the stack's logs (livekit-server's and livekit-sip's name each room they make)."""
    return {name for log in run_dir.glob("*.log") for name in ROOM_NAME.findall(log.read_text(errors="replace"))}


async def the_call(stack: RealStack) -> dict[str, Any]:
    """The one call's record and checkpoint, once its record is written."""
    from orchestrator.config import load_settings
    from orchestrator.runtime import Services
    from orchestrator.store.records import CallStore
    from orchestrator.worker.runner import checkpoint_state

    async with await Services.open(load_settings(data_dir=stack.data_dir), seed=False) as services:
        store = CallStore(services.engine)

        async def one() -> Any:
            calls = await store.list_calls()
            return calls if calls and await store.get_call(calls[0].call_id) is not None else None

        calls = await _poll(one, RECORD_CAP_S)
        assert calls, f"no call record within {RECORD_CAP_S} s\n{stack.logs()}"
        view = await store.get_call(calls[0].call_id)
        assert view is not None
        return {
            "calls": [c.call_id for c in calls],
            "record": view.to_json(),
            "checkpoint": await checkpoint_state(services, calls[0].call_id),
        }


@pytest.fixture(scope="module")
def sip_call(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One phone call through livekit-sip into the running stack (minutes on a busy machine)."""
    run_dir = tmp_path_factory.mktemp("sip-real")
    with contextlib.ExitStack() as cleanup:
        try:
            pair = cleanup.enter_context(netns_pair())
        except NamespacesUnavailable as exc:
            pytest.skip(f"no network namespaces here: {exc}")
        stack = cleanup.enter_context(real_stack(pair, run_dir))
        start_sip(stack)
        setup = sip_setup(stack)
        stack.start_queue_worker()
        result: dict[str, Any] = {"setup": setup}
        result["refused"] = phone(stack, run_dir / "refused", codecs=["GSM/8000"])
        result["phone"] = phone(stack, run_dir / "phone", codecs=["PCMU/8000"])
        result.update(asyncio.run(the_call(stack)))
        result["stats"] = asyncio.run(queue_stats(stack, lambda s: s["completed"] == 1 and s["in_flight"] == 0))
        result["logs"] = stack.logs()
        result["room_names"] = room_names(run_dir)
        yield result


def test_sip_setup_made_the_trunk_and_the_rule(sip_call: dict[str, Any]) -> None:
    setup = sip_call["setup"]
    assert (setup["trunk_created"], setup["rule_created"]) == (True, True)
    assert setup["numbers"] == [TRUNK_NUMBER]
    assert setup["room_prefix"] == "call-"


def test_a_phone_call_is_answered_and_its_keyed_zip_verifies_the_caller(sip_call: dict[str, Any]) -> None:
    result = sip_call["phone"]
    assert result["answered"], result
    assert result["reply_s"] is not None, f"no reply heard: {result}\n{sip_call['logs']}"
    assert result["keys_reply_s"] is not None, f"no reply to the keyed ZIP: {result}"
    checkpoint = sip_call["checkpoint"]
    # livekit-sip put the From number on its participant, and the graph took it as the caller id.
    assert checkpoint["caller_id"] == CUSTOMER
    callers = [t["text"] for t in checkpoint["transcript"] if t["role"] == "caller"]
    # The keyed digits (RFC 4733 through livekit-sip) were one turn of their own, '#' ending it.
    assert "10027" in callers, callers
    said = [(t["role"], t["text"]) for t in checkpoint["transcript"]]
    assert checkpoint.get("verification", {}).get("status") == "verified", f"{said}\n{sip_call['logs']}"
    assert sip_call["record"]["outcome"] == "resolved", sip_call["record"]
    # What the phone heard over G.711 is speech the local STT can read.
    heard = [transcribe_8k(result["reply_wav"]), transcribe_8k(result["keys_reply_wav"])]
    print(
        f"\nSIP phone: first audio {result['first_audio_ms']} ms after its question, reply to the keys after "
        f"{result['keys_reply_ms']} ms; heard {heard!r}"
    )
    assert all(h.strip() for h in heard), heard


def test_the_calls_room_is_named_after_the_number_dialled_never_the_callers(sip_call: dict[str, Any]) -> None:
    names = sip_call["room_names"]
    assert any(name.startswith(f"call-_{TRUNK_NUMBER}_") for name in names), f"{names}\n{sip_call['logs']}"
    assert not [name for name in names if CUSTOMER.removeprefix("+") in name], names


def test_an_invite_offering_only_an_unsupported_codec_is_refused_and_nothing_admitted(
    sip_call: dict[str, Any],
) -> None:
    refused = sip_call["refused"]
    assert not refused["answered"], refused
    # livekit-sip v1.8.0 answers an offer with no codec in common "400 Bad Request" (its call record says 488,
    # "no-common-codec"); the phone never rang into a room.
    assert (refused["status"], refused["states"][-1]) == (400, "DISCONNECTED"), refused
    # Only the G.711 call reached the queue.
    assert len(sip_call["calls"]) == 1
    stats = sip_call["stats"]
    assert (stats["admitted"], stats["completed"], stats["in_flight"], stats["waiting"]) == (1, 1, 0, 0)
    assert stats["dead_letters"] == 0
