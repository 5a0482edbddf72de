"""Hold announcements: a waiting caller hears their place in the queue and the expected wait at once, then regularly.

One announcer runs per worker process. Each tick gives a message to every waiting call that has had none
within the interval (a newly queued caller at once, not at the next round), and a short Redis lock lets only
one process tick at a time, so callers do not hear the same message once per worker. Each message is appended
to the per-call stream ``<prefix>:hold:<call_id>`` (fields ``position``, ``expected_wait_s``, ``text``), which
the transport that holds the caller (a LiveKit room playing hold audio, or the simulator) consumes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from typing import Any

import redis.asyncio as aioredis

from orchestrator.loops import rounds
from orchestrator.queue.call_queue import CallQueue, WaitingCall
from orchestrator.queue.outage import UNREACHABLE, Outage

logger = logging.getLogger(__name__)

HOLD_TTL_S = 3600
HOLD_MAXLEN = 50
# How often the announcer looks for calls that are due a message: a newly queued caller waits at most this long.
TICK_S = 0.5


def hold_key(prefix: str, call_id: str) -> str:
    """The hold-message stream of one call."""
    return f"{prefix}:hold:{call_id}"


def hold_text(position: int, expected_wait_s: float) -> str:
    """What a waiting caller hears, e.g. "You're number 3 in the queue; the expected wait is about 20 seconds."."""
    if expected_wait_s < 1:
        wait = "you'll be connected in a moment"
    elif expected_wait_s < 90:
        # Round up to 5 s: "about 20 seconds" sounds honest, "about 17 seconds" sounds like a bug.
        wait = f"the expected wait is about {max(5, 5 * math.ceil(expected_wait_s / 5))} seconds"
    else:
        wait = f"the expected wait is about {math.ceil(expected_wait_s / 60)} minutes"
    return f"You're number {position} in the queue; {wait}."


async def read_hold_messages(redis: aioredis.Redis, prefix: str, call_id: str) -> list[dict[str, Any]]:
    """Every hold message a call has been given (oldest first; capped at the last ``HOLD_MAXLEN``)."""
    entries: Any = await redis.xrange(hold_key(prefix, call_id))
    out = []
    for entry_id, fields in entries:
        f = dict(fields)
        out.append(
            {
                "id": entry_id,
                "position": int(f.get("position", 0)),
                "expected_wait_s": float(f.get("expected_wait_s", 0)),
                "text": f.get("text", ""),
            }
        )
    return out


class HoldAnnouncer:
    """Publishes a hold message to every waiting call every ``interval_s`` (one speaker across processes)."""

    def __init__(self, queue: CallQueue, *, interval_s: float = 5.0, name: str | None = None) -> None:
        """Build an announcer; nothing runs until :meth:`start`.

        Args:
            queue: The call queue (its prefix namespaces the hold streams).
            interval_s: Time between two messages to the same caller.
            name: Identity in the leader lock (default a random one).
        """
        self.queue = queue
        self.interval_s = interval_s
        self.name = name or uuid.uuid4().hex
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock_key = f"{queue.keys.prefix}:hold:lock"
        self._tick_s = min(TICK_S, interval_s)
        self._outage = Outage(f"hold announcer {self.name}")

    async def announce(self, *, due_only: bool = False) -> int:
        """Give every waiting call one hold message now (ignores the lock); returns how many were sent.

        Args:
            due_only: Only the calls with no message within the interval (none yet, or an older one).
        """
        waiting = await self.queue.waiting()
        if due_only and waiting:
            waiting = await self._due(waiting)
        if not waiting:
            return 0
        prefix = self.queue.keys.prefix
        async with self.queue.redis.pipeline(transaction=False) as pipe:
            for w in waiting:
                key = hold_key(prefix, w.call_id)
                fields: dict[Any, Any] = {
                    "position": w.position,
                    "expected_wait_s": round(w.expected_wait_s, 1),
                    "text": hold_text(w.position, w.expected_wait_s),
                }
                pipe.xadd(key, fields, maxlen=HOLD_MAXLEN, approximate=False)
                pipe.expire(key, HOLD_TTL_S)
            await pipe.execute()
        return len(waiting)

    async def _due(self, waiting: list[WaitingCall]) -> list[WaitingCall]:
        """The calls whose last message is older than the interval, by Redis's clock (a stream id is its ms time)."""
        prefix = self.queue.keys.prefix
        async with self.queue.redis.pipeline(transaction=False) as pipe:
            pipe.time()
            for w in waiting:
                pipe.xrevrange(hold_key(prefix, w.call_id), count=1)
            seconds_micros, *lasts = await pipe.execute()
        now_ms = int(seconds_micros[0]) * 1000 + int(seconds_micros[1]) // 1000
        interval_ms = self.interval_s * 1000
        return [
            w
            for w, last in zip(waiting, lasts, strict=True)
            if not last or now_ms - int(last[0][0].partition("-")[0]) >= interval_ms
        ]

    async def tick(self) -> int:
        """Announce to the calls that are due, unless another process is ticking; returns how many were sent."""
        won = await self.queue.redis.set(self._lock_key, self.name, nx=True, px=int(self._tick_s * 1000))
        if not won:
            return 0
        return await self.announce(due_only=True)

    async def _run(self) -> None:
        async for _ in rounds(self._tick_s, self._stop):
            try:
                await self.tick()
            except UNREACHABLE as exc:
                # Redis is restarting; a missed hold message is not worth stopping for.
                self._outage.failed(exc)
            except Exception:
                logger.exception("hold announcement failed")
            else:
                self._outage.ok()

    def start(self) -> None:
        """Start the timer task (owned by this object; stopped by :meth:`aclose`)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="hold-announcer")

    async def aclose(self) -> None:
        """Stop the timer between two ticks (not by cancelling a Redis command mid-flight)."""
        task, self._task = self._task, None
        if task is not None:
            self._stop.set()
            await task
