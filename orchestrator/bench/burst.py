"""A burst of calls through the real stack: R rooms created at once, a few agent slots, and none may be dropped.

Every caller joins its own call room at the same moment (light callers, all in one process); the server's signed
webhooks admit the calls into the queue, the queue worker dispatches them as slots free, the hold voice speaks to
those who wait. The report counts rooms, admitted, answered, abandoned and dropped calls (never answered nor
counted abandoned), checks that calls were answered in admission order within each priority, and gives the
queue's wait and how many waiting callers heard the hold message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.bench import burst_caller
from orchestrator.devstack.netns import netns_pair
from orchestrator.devstack.stack import PREFIX, RealStack, StackFailed, real_stack
from orchestrator.stats import percentile
from orchestrator.worker.hold_voice import READY_LINE

CALLER_SCRIPT = Path(burst_caller.__file__)
# A caller waits this long for its agent at most; a burst of 100 on 2 slots needs far less.
ANSWER_CAP_S = 1800.0
SETTLE_CAP_S = 300.0
READY_CAP_S = 120.0
ADMISSION_POLL_S = 0.2


def _pcts(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {
        "p50": round(percentile(values, 50), 1),
        "p95": round(percentile(values, 95), 1),
        "max": round(max(values), 1),
    }


def order_inversions(admitted: list[str], answered_at: dict[str, float]) -> int:
    """The most calls admitted before one call that were answered after it (FIFO on S slots allows S - 1).

    Claims follow admission; a call answered while earlier ones are still being connected on other slots is no
    breach, but more earlier calls answered after it than there are other slots is one.
    """
    worst = 0
    for j, call_id in enumerate(admitted):
        if call_id not in answered_at:
            continue
        # A call never answered (its caller's room closed and was made again: a new call) is no inversion.
        late = sum(1 for earlier in admitted[:j] if answered_at.get(earlier, 0.0) > answered_at[call_id])
        worst = max(worst, late)
    return worst


async def _watch_admissions(stack: RealStack, seen: dict[str, tuple[int, str, str]], stop: asyncio.Event) -> None:
    """Note each call's queue entry (priority, entry id, room) as it appears: entries stay until the call is acked."""
    from orchestrator.queue import open_queue

    queue = open_queue(_settings(stack), stack.redis_url, prefix=PREFIX)
    try:
        while True:
            for priority, stream in zip(queue.keys.priorities, queue.keys.streams, strict=True):
                entries: Any = await queue.redis.xrange(stream)
                for entry_id, fields in entries:
                    call_id = fields["c"]
                    if call_id not in seen:
                        room = str(json.loads(fields["j"]).get("room") or "")
                        seen[call_id] = (priority, entry_id, room)
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), ADMISSION_POLL_S)
    finally:
        await queue.aclose()


def _settings(stack: RealStack) -> Any:
    from orchestrator.config import load_settings

    return load_settings(data_dir=stack.data_dir)


def _entry_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def _burst(stack: RealStack, rooms: int, run_dir: Path) -> dict[str, Any]:
    """Place the burst, watch the queue while it runs, then read what became of every call."""
    plan = []
    for n in range(rooms):
        name = f"call-burst-{n:03d}-{secrets.token_hex(3)}"
        plan.append({"room": name, "token": stack.token(name, f"caller-{n}")})
    plan_file = run_dir / "rooms.json"
    plan_file.write_text(json.dumps(plan))
    seen: dict[str, tuple[int, str, str]] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch_admissions(stack, seen, stop))
    argv = [sys.executable, str(CALLER_SCRIPT), stack.caller_url, str(plan_file), str(ANSWER_CAP_S)]
    try:
        lines, code = await stack.run_caller(argv, run_dir / "callers.log")
    finally:
        stop.set()
        await watcher
    if not lines:
        raise StackFailed(f"the callers exited {code} without a report (see {run_dir / 'callers.log'})")
    callers: list[dict[str, Any]] = json.loads(lines[-1])
    (run_dir / "callers.json").write_text(json.dumps({"callers": callers, "admissions": seen}))
    return {"callers": callers, "seen": seen, **await _settled(stack, callers)}


async def _settled(stack: RealStack, callers: list[dict[str, Any]]) -> dict[str, Any]:
    """The queue's counters once nothing waits or runs, the calls' records and the hold messages each call got."""
    from orchestrator.queue import open_queue
    from orchestrator.queue.hold import read_hold_messages
    from orchestrator.runtime import Services
    from orchestrator.store.records import CallStore

    settings = _settings(stack)
    queue = open_queue(settings, stack.redis_url, prefix=PREFIX)
    loop = asyncio.get_running_loop()
    ids = [f"lk-{c['room_sid']}" for c in callers if c.get("room_sid")]
    try:
        deadline = loop.time() + SETTLE_CAP_S
        while True:
            stats = await queue.stats()
            if not stats.waiting + stats.in_flight + stats.retries_scheduled or loop.time() >= deadline:
                break
            await asyncio.sleep(0.5)
        holds = {call_id: len(await read_hold_messages(queue.redis, PREFIX, call_id)) for call_id in ids}
    finally:
        await queue.aclose()
    records: dict[str, dict[str, Any]] = {}
    async with await Services.open(settings, seed=False) as services:
        store = CallStore(services.engine)
        deadline = loop.time() + 60
        while True:
            for call_id in ids:
                if call_id not in records and (view := await store.get_call(call_id)) is not None:
                    records[call_id] = view.to_json()
            if len(records) >= len(ids) or loop.time() >= deadline:
                break
            await asyncio.sleep(0.5)
    return {"stats": stats, "records": records, "holds": holds}


def summarize(rooms: int, slots: int, got: dict[str, Any]) -> dict[str, Any]:
    """The burst's report (see the module docstring); ``detail`` keeps what each figure was made of."""
    callers, seen, stats, records, holds = got["callers"], got["seen"], got["stats"], got["records"], got["holds"]
    by_call = {f"lk-{c['room_sid']}": c for c in callers if c.get("room_sid")}
    answered = {cid: c["answered_at"] for cid, c in by_call.items() if "answered_at" in c}
    # Counted per caller: a caller whose WebRTC set-up timed out joins again, and when their room closed meanwhile
    # the join makes it afresh, a new call (the first one is abandoned with its room).
    abandoned = sum(1 for c in callers if "answered_at" not in c and "gave_up_at" in c)
    rooms_admitted = {room for _, _, room in seen.values()}
    order_ok = True
    worst = 0
    for priority in sorted({p for p, _, _ in seen.values()}):
        admitted = sorted(
            (cid for cid, (p, _, _) in seen.items() if p == priority), key=lambda c: _entry_key(seen[c][1])
        )
        inversions = order_inversions(admitted, answered)
        worst = max(worst, inversions)
        order_ok = order_ok and inversions <= slots - 1
    # Who waited long enough to be given a hold message, and of those, who heard it before their agent came.
    held = [cid for cid in by_call if holds.get(cid)]
    heard = [
        cid
        for cid in held
        if "hold_speech_at" in by_call[cid] and by_call[cid]["hold_speech_at"] < by_call[cid].get("answered_at", 1e18)
    ]
    waits = [float(r["queue_wait_ms"]) for r in records.values() if r.get("queue_wait_ms") is not None]
    answer_waits = [(c["answered_at"] - c["connected_at"]) * 1000 for c in by_call.values() if "answered_at" in c]
    return {
        "rooms": rooms,
        "slots": slots,
        "admitted": sum(1 for c in callers if c["room"] in rooms_admitted),
        "answered": len(answered),
        "abandoned": abandoned,
        "dropped": rooms - len(answered) - abandoned,
        "answer_order_ok": order_ok,
        "queue_wait_ms": _pcts(waits),
        "hold_heard": len(heard),
        "detail": {
            "held": len(held),
            "answer_wait_ms": _pcts(answer_waits),
            "order_inversions_max": worst,
            "admissions": stats.admitted,
            "rooms_made_again": stats.admitted - len(rooms_admitted),
            "queue_abandoned": stats.abandoned,
            "refused": stats.refused,
            "duplicates": stats.duplicates,
            "dead_letters": stats.dead_letters,
            "still_held": stats.waiting + stats.in_flight + stats.retries_scheduled,
            "caller_errors": [c["error"] for c in callers if c.get("error")],
            "joined": sum(1 for c in callers if c.get("room_sid")),
        },
    }


def _wait_line(stack: RealStack, name: str, line: str) -> None:
    [proc] = [p for p in stack.procs if p.name == name]
    deadline = time.monotonic() + READY_CAP_S
    while line not in proc.log.read_text(errors="replace"):
        stack.check_alive()
        if time.monotonic() > deadline:
            raise StackFailed(f"{name} did not say {line!r} within {READY_CAP_S:.0f} s\n{stack.logs()}")
        time.sleep(0.2)


def run_burst(
    rooms: int,
    *,
    slots: int,
    server: Path,
    run_dir: Path,
    hold_interval_s: float = 10.0,
    env: dict[str, str] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Start the stack with ``slots`` agent slots and the hold voice, place ``rooms`` callers at once, report."""
    said = on_progress or (lambda _line: None)
    with contextlib.ExitStack() as cleanup:
        pair = cleanup.enter_context(netns_pair())
        stack = cleanup.enter_context(
            real_stack(pair, run_dir / "stack", server=server, slots=slots, env=env, on_progress=said)
        )
        said("starting the queue worker and the hold voice")
        cli = [sys.executable, "-m", "orchestrator.cli"]
        stack.start("queue-worker", [*cli, "worker", "--slots", str(slots), "--prefix", PREFIX, "--hold-interval",
                                     str(hold_interval_s)])  # fmt: skip
        stack.start("hold-voice", [sys.executable, "-m", "orchestrator.worker.hold_voice", "--prefix", PREFIX])
        _wait_line(stack, "hold-voice", READY_LINE)
        said(f"{rooms} callers join their rooms at once; {slots} agent slots answer them")
        got = asyncio.run(_burst(stack, rooms, run_dir))
        stack.check_alive()
    return summarize(rooms, slots, got)
