"""Reclaimer: one worker's queue timer (heartbeats, slot registration, reclaim of dead workers' calls, retries)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Collection

from orchestrator.queue.call_queue import CallQueue, ClaimedCall
from orchestrator.queue.outage import UNREACHABLE, Outage

logger = logging.getLogger(__name__)


class Reclaimer:
    """Runs a worker's queue upkeep every ``queue.heartbeat_ms``, whether or not calls arrive.

    Each tick: refresh the worker's slot registration; renew every held call (so a call that lasts
    minutes is never taken from a living worker); move due retries back into the queue; and, when
    the worker has free slots, take over calls whose holder stopped renewing them (SIGKILL, stall).
    With the defaults (heartbeat 500 ms, reclaim idle 1500 ms) a dead worker's call is running again
    elsewhere within about 2 s.
    """

    def __init__(
        self,
        queue: CallQueue,
        consumer: str,
        *,
        slots: int,
        held: Callable[[], Collection[ClaimedCall]],
        free_slots: Callable[[], int],
        on_claimed: Callable[[list[ClaimedCall]], None],
        on_lost: Callable[[list[ClaimedCall]], None] | None = None,
        interval_s: float | None = None,
    ) -> None:
        """Build a reclaimer; nothing runs until :meth:`start`.

        Args:
            queue: The call queue.
            consumer: This worker's consumer name.
            slots: The worker's slot count, registered for expected-wait estimates.
            held: Returns the calls the worker currently runs.
            free_slots: Returns how many more calls the worker can take now.
            on_claimed: Receives reclaimed calls; the worker must run them (it now holds them).
            on_lost: Receives held calls this worker no longer owns; the worker should stop them.
            interval_s: Tick period; default ``queue.heartbeat_ms``.
        """
        self.queue = queue
        self.consumer = consumer
        self.slots = slots
        self._held = held
        self._free = free_slots
        self._on_claimed = on_claimed
        self._on_lost = on_lost
        self.interval_s = interval_s if interval_s is not None else queue.heartbeat_ms / 1000
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.outage = Outage(f"queue upkeep of {consumer}")
        self._unreachable = False  # the last tick found Redis unreachable
        self._back_at = -math.inf  # when Redis last answered again after that

    async def tick(self) -> None:
        """One pass of upkeep (the timer calls it; tests may call it directly).

        After Redis was unreachable (a restart, a failover) no call is taken over until ``reclaim_idle_ms``
        have passed since it answered again: every call looks idle then, because no holder could renew it,
        and the living holders get that long to renew theirs before anything counts as abandoned.
        """
        try:
            await self._tick()
        except UNREACHABLE:
            self._unreachable = True
            raise

    async def _tick(self) -> None:
        ttl_ms = max(3 * int(self.interval_s * 1000), self.queue.reclaim_idle_ms)
        await self.queue.register_worker(self.consumer, self.slots, ttl_ms=ttl_ms)
        if self._unreachable:
            self._unreachable, self._back_at = False, time.monotonic()
        held = list(self._held())
        if held:
            lost = await self.queue.heartbeat(held)
            if lost and self._on_lost is not None:
                self._on_lost(lost)
        await self.queue.promote_due()
        free = self._free()
        settled = time.monotonic() - self._back_at >= self.queue.reclaim_idle_ms / 1000
        if free > 0 and settled:
            reclaimed = await self.queue.reclaim(self.consumer, count=free)
            if reclaimed:
                self._on_claimed(reclaimed)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        # A stop flag, not only cancellation: redis-py can swallow a CancelledError that lands
        # mid-command, and a timer that missed its cancel would tick (and sleep) forever.
        while not self._stopping.is_set():
            started = loop.time()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except UNREACHABLE as exc:
                if self._stopping.is_set():
                    return
                # Redis is restarting: keep ticking, the next pass renews everything at once.
                self.outage.failed(exc)
            except Exception:
                if self._stopping.is_set():
                    return
                logger.exception("queue upkeep failed for consumer %s", self.consumer)
            else:
                self.outage.ok()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(0.0, self.interval_s - (loop.time() - started)))

    def start(self) -> None:
        """Start the timer task (owned by this object; stopped by :meth:`aclose`)."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name=f"queue-reclaimer-{self.consumer}")

    async def aclose(self, *, unregister: bool = True) -> None:
        """Stop the timer and (by default) withdraw the worker's slot registration."""
        task, self._task = self._task, None
        self._stopping.set()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if unregister:
            await self.queue.unregister_worker(self.consumer)

    async def __aenter__(self) -> Reclaimer:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
