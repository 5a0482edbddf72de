"""Calls placed through the real stack by WebRTC callers, and what became of them: first audio, WER, outcomes."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.devstack import caller as caller_module
from orchestrator.devstack.stack import PREFIX, RealStack
from orchestrator.stats import percentiles

CALLER_SCRIPT = Path(caller_module.__file__)
# A caller waits at most 90 s for its agent and 60 s for each answer; a whole call far less than this.
CALL_CAP_S = 600.0
# A caller that gave up may leave its call in flight a while (its agent's room closes, the retry finds it gone).
SETTLE_CAP_S = 300.0
RECORD_CAP_S = 60.0
_DIGITS = re.compile(r"\d[\d ]*\d|\d")


def spoken(turn: str) -> str:
    """A turn as a caller says it: numbers digit by digit ("10027" is "1 0 0 2 7"), as people give ZIP codes.

    flite reads "10027" as "ten thousand twenty-seven", which Whisper writes as "10,27".
    """
    return _DIGITS.sub(lambda m: " ".join(m.group().replace(" ", "")), turn)


@dataclass(frozen=True)
class PlacedCall:
    """One caller: who calls (room metadata's caller ID), what they say, and which demo scenario it is."""

    caller_id: str | None
    turns: tuple[str, ...]
    scenario: str = ""


def demo_callers(calls: int) -> list[PlacedCall]:
    """The demo's scripted callers (`simulated_caller`), round-robin, their turns as spoken."""
    from orchestrator.scenarios import simulated_caller

    out = []
    for n in range(calls):
        scenario = simulated_caller(n)
        out.append(PlacedCall(scenario.caller_id, tuple(spoken(t) for t in scenario.turns), scenario.name))
    return out


async def place(stack: RealStack, n: int, call: PlacedCall, heard_dir: Path) -> dict[str, Any]:
    """Run one caller process in the caller's namespace to its end; its JSON line (or an ``error``)."""
    metadata: dict[str, object] = {"caller_id": call.caller_id} if call.caller_id else {}
    token = stack.token(f"call-{secrets.token_hex(4)}", f"caller-{n}", metadata=metadata)
    out_dir = heard_dir / f"call-{n}"
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(CALLER_SCRIPT), stack.caller_url, token, str(out_dir), json.dumps(list(call.turns))]
    try:
        lines, code = await stack.run_caller(argv, out_dir / "caller.log", CALL_CAP_S)
    except TimeoutError:
        return {"error": f"the caller did not finish within {CALL_CAP_S:.0f} s"}
    try:
        found: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        found = {}
    if not found:
        found = {"error": f"the caller exited {code} without a report (see {out_dir / 'caller.log'})"}
    return found


async def place_all(
    stack: RealStack,
    calls: list[PlacedCall],
    *,
    concurrency: int,
    heard_dir: Path,
    on_placed: Callable[[int], None] | None = None,
    on_finished: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Place every call, ``concurrency`` at a time; each caller's report, in the order of ``calls``."""
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> dict[str, Any]:
        async with gate:
            if on_placed is not None:
                on_placed(n)
            found = await place(stack, n, calls[n], heard_dir)
            if on_finished is not None:
                on_finished(n, found)
            return found

    return list(await asyncio.gather(*(one(n) for n in range(len(calls)))))


def transcribe(wav: str) -> str:
    """What Whisper (the local STT) hears in a WAV the caller recorded."""
    import wave

    import numpy as np

    from orchestrator.providers.stt import WhisperSTT

    with wave.open(wav) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return WhisperSTT().transcribe(pcm.astype(np.float32) / 32768.0)


async def outcomes(stack: RealStack, callers: list[dict[str, Any]], *, wer: bool = True) -> dict[str, Any]:
    """Each call's record and the WER of what its caller heard, once the queue holds nothing; the queue's counters."""
    from orchestrator.config import load_settings

    # Here, on the main thread: livekit's plugins (silero, which it imports) refuse to register on another.
    from orchestrator.providers import stt  # noqa: F401  # imported for that registration
    from orchestrator.queue import open_queue
    from orchestrator.runtime import Services
    from orchestrator.store.records import CallStore
    from orchestrator.telemetry.wer import word_error_rate
    from orchestrator.worker.runner import checkpoint_state

    settings = load_settings(data_dir=stack.data_dir)
    queue = open_queue(settings, stack.redis_url, prefix=PREFIX)
    loop = asyncio.get_running_loop()
    try:
        deadline = loop.time() + SETTLE_CAP_S
        while True:
            stats = await queue.stats()
            if not stats.waiting + stats.in_flight + stats.retries_scheduled or loop.time() >= deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        await queue.aclose()
    ids = [f"lk-{c['room_sid']}" for c in callers if c.get("room_sid")]
    records: dict[str, dict[str, Any]] = {}
    wers: list[float] = []
    async with await Services.open(settings, seed=False) as services:
        store = CallStore(services.engine)
        # The agent job writes its record as its session ends, just before the queue worker acks the call.
        deadline = loop.time() + RECORD_CAP_S
        while len(records) < len(ids):
            for call_id in ids:
                if call_id not in records and (view := await store.get_call(call_id)) is not None:
                    records[call_id] = view.to_json()
            if loop.time() >= deadline:
                break
            await asyncio.sleep(0.5)
        for caller in callers if wer else []:
            if not caller.get("room_sid"):
                continue
            state = await checkpoint_state(services, f"lk-{caller['room_sid']}")
            said = [t["text"] for t in state.get("transcript", []) if t["role"] == "agent"]
            for turn, text in zip(caller.get("turns", []), said, strict=False):
                heard = await asyncio.to_thread(transcribe, turn["wav"])
                wers.append(word_error_rate(text, heard))
    return {"records": records, "wers": wers, "stats": stats}


def summarize(calls: int, callers: list[dict[str, Any]], got: dict[str, Any]) -> dict[str, Any]:
    """The demo's summary: what became of each call, first audio at the caller, WER, escalations and routes.

    A call is completed when its record says resolved or escalated; abandoned when its caller left before it
    was answered (a record that says so, a call acked with no session because its room had closed, or one
    that left the queue while it waited); lost when it is none of these nor dead-lettered nor still held.
    """
    records = list(got["records"].values())
    stats = got["stats"]
    first_audio = [t["first_audio_ms"] for c in callers for t in c.get("turns", []) if t.get("first_audio_ms")]
    routes = Counter(str(r.get("agent") or r.get("intent") or "router") for r in records)
    completed = sum(1 for r in records if r["outcome"] in ("resolved", "escalated"))
    abandoned = stats.completed - completed + stats.abandoned
    held = stats.waiting + stats.in_flight + stats.retries_scheduled
    wers = got["wers"]
    return {
        "calls": calls,
        "completed": completed,
        "lost": calls - completed - abandoned - stats.dead_letters - held,
        "abandoned": abandoned,
        "first_audio_ms": percentiles(first_audio),
        "wer": round(sum(wers) / len(wers), 3) if wers else None,
        "escalation_rate": round(sum(r["outcome"] == "escalated" for r in records) / len(records), 3)
        if records
        else None,
        "routes": dict(sorted(routes.items())),
        "turns": len(first_audio),
        "caller_errors": [c["error"] for c in callers if c.get("error")],
        "queue": {
            "admitted": stats.admitted,
            "acked": stats.completed,
            "dead_letters": stats.dead_letters,
            "still_held": held,
        },
    }
