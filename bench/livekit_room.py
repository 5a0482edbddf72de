"""Calls through a real livekit-server: first audio at the caller, what the caller heard, and what became of each call.

The stack and the callers run as in tests/flow/test_real_livekit.py (whose harness this uses): livekit-server
(deploy/dev/tools.sh builds it), `switchboard serve`, a queue worker and `switchboard agent-worker` in one
network namespace, WebRTC callers (the `livekit` rtc SDK speaking flite-rendered turns) in another. Each
caller is a demo customer asking for their balance and giving their ZIP digit by digit; ``--concurrency``
callers are in the queue at once. Needs root (network namespaces).

A call is completed when its record says resolved or escalated, abandoned when its caller left before it
was answered (in the queue, or before an agent joined: a caller gives up after 90 s without one), and lost
when it is none of these nor dead-lettered nor still held by the queue.

First audio is measured at the caller: from the end of its speech (the last frame played out) to the first
frame of the agent's reply it receives, through Opus, the SFU and back. WER compares what the caller heard
(Whisper tiny.en on the received audio) with what the graph said (the checkpoint's transcript).

Usage: python bench/livekit_room.py [--calls N] [--concurrency C] [--json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import secrets
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.devstack.netns import netns_pair  # noqa: E402  # the repository root is on the path now
from orchestrator.devstack.stack import PREFIX, RealStack, real_stack  # noqa: E402  # the same

CALLER_SCRIPT = ROOT / "orchestrator" / "devstack" / "caller.py"
# Demo customers (orchestrator/domain/README.md) and their ZIP codes, said digit by digit as callers do.
CUSTOMERS = [
    ("+15550100001", "1 0 0 2 7"),
    ("+15550100002", "1 0 4 5 3"),
    ("+15550100003", "1 1 3 7 5"),
    ("+15550100007", "1 0 3 0 1"),
]
CALL_CAP_S = 300.0
SETTLE_CAP_S = 300.0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 1)


async def place(stack: RealStack, n: int, heard_dir: Path) -> dict[str, Any]:
    caller_id, zip_code = CUSTOMERS[n % len(CUSTOMERS)]
    turns = ["What's my balance?", zip_code]
    token = stack.token(f"call-{secrets.token_hex(4)}", f"caller-{n}", metadata={"caller_id": caller_id})
    out_dir = heard_dir / f"call-{n}"
    out_dir.mkdir(parents=True)
    argv = [sys.executable, str(CALLER_SCRIPT), stack.caller_url, token, str(out_dir), json.dumps(turns)]
    proc = await asyncio.create_subprocess_exec(
        *stack.pair.command(stack.pair.caller_ns, argv),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=stack.env(),
        cwd=ROOT,
    )
    try:
        stdout, _ = await asyncio.wait_for(proc.communicate(), CALL_CAP_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"error": "caller timed out"}
    lines = stdout.decode().strip().splitlines()
    return json.loads(lines[-1]) if lines else {"error": f"caller exited {proc.returncode} silently"}


async def outcomes(stack: RealStack, callers: list[dict[str, Any]]) -> dict[str, Any]:
    """Each call's record and transcript (waiting for the agent jobs to write them), and the queue's counters."""
    from orchestrator.api.app import open_queue
    from orchestrator.config import load_settings
    from orchestrator.runtime import Services
    from orchestrator.session.audio import word_error_rate
    from orchestrator.store.records import CallStore
    from orchestrator.worker.runner import checkpoint_state

    settings = load_settings(data_dir=stack.data_dir)
    queue = open_queue(settings, stack.redis_url, prefix=PREFIX)
    try:
        # A caller that gave up may leave its call in flight a while (its agent's room closes, the retry finds
        # it gone): read the outcomes once the queue holds nothing.
        loop = asyncio.get_running_loop()
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
        deadline = loop.time() + 30
        while loop.time() < deadline and len(records) < len(ids):
            for call_id in ids:
                if call_id not in records and (view := await store.get_call(call_id)) is not None:
                    records[call_id] = view.to_json()
            await asyncio.sleep(0.5)
        for caller in callers:
            if not caller.get("room_sid"):
                continue
            state = await checkpoint_state(services, f"lk-{caller['room_sid']}")
            said = [t["text"] for t in state.get("transcript", []) if t["role"] == "agent"]
            for turn, text in zip(caller.get("turns", []), said, strict=False):
                wers.append(word_error_rate(text, transcribe(turn["wav"])))
    return {"records": records, "wers": wers, "stats": stats}


def transcribe(wav: str) -> str:
    import wave

    import numpy as np

    from orchestrator.providers.stt import WhisperSTT

    with wave.open(wav) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return WhisperSTT().transcribe(pcm.astype(np.float32) / 32768.0)


async def run(stack: RealStack, calls: int, concurrency: int, heard_dir: Path) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> dict[str, Any]:
        async with gate:
            return await place(stack, n, heard_dir)

    callers = await asyncio.gather(*(one(n) for n in range(calls)))
    got = await outcomes(stack, callers)
    records = list(got["records"].values())
    first_audio = [t["first_audio_ms"] for c in callers for t in c.get("turns", []) if t.get("first_audio_ms")]
    routes = Counter(str(r.get("agent") or r.get("intent") or "router") for r in records)
    stats = got["stats"]
    completed = sum(1 for r in records if r["outcome"] in ("resolved", "escalated"))
    # Abandoned: a record that says so, a call acked with no session (its room was gone when it was claimed),
    # or one that left the queue while it waited.
    abandoned = stats.completed - completed + stats.abandoned
    held = stats.waiting + stats.in_flight + stats.retries_scheduled
    return {
        "calls": calls,
        "completed": completed,
        # Placed, and neither ended, abandoned, dead-lettered nor still held by the queue: never the case.
        "lost": calls - completed - abandoned - stats.dead_letters - held,
        "abandoned": abandoned,
        "first_audio_ms": {"p50": pct(first_audio, 0.5), "p95": pct(first_audio, 0.95), "p99": pct(first_audio, 0.99)},
        "wer": round(sum(got["wers"]) / len(got["wers"]), 3) if got["wers"] else None,
        "escalation_rate": round(sum(r["outcome"] == "escalated" for r in records) / len(records), 3)
        if records
        else None,
        "routes": dict(routes),
        "turns": len(first_audio),
        "caller_errors": [c["error"] for c in callers if c.get("error")],
        "queue": {
            "admitted": stats.admitted,
            "acked": stats.completed,
            "dead_letters": stats.dead_letters,
            "still_held": held,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON only")
    parser.add_argument("--keep", type=Path, help="keep the processes' logs and the heard audio in this folder")
    args = parser.parse_args()
    with contextlib.ExitStack() as cleanup:
        run_dir = args.keep or Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="livekit-room-")))
        pair = cleanup.enter_context(netns_pair())
        with real_stack(pair, run_dir / "stack") as stack:
            stack.start_queue_worker()
            summary = asyncio.run(run(stack, args.calls, args.concurrency, run_dir / "heard"))
    if args.json:
        print(json.dumps(summary))
        return
    for key, value in summary.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
