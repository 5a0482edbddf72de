"""The worker loop: claim calls only into free slots, run them, heartbeat, reclaim dead workers' calls, drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from orchestrator.contracts import CallOutcome
from orchestrator.queue import CallQueue, ClaimedCall, FailOutcome, Reclaimer
from orchestrator.queue.hold import HoldAnnouncer
from orchestrator.queue.outage import UNREACHABLE, Outage
from orchestrator.redact import describe_error
from orchestrator.worker.runner import CallDeferred, CallRunner

logger = logging.getLogger(__name__)

OutcomeHook = Callable[[CallOutcome], Awaitable[None]]


def default_worker_name() -> str:
    """A consumer name unique across hosts and restarts: ``<host>-<pid>-<random>``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class _Running:
    claimed: ClaimedCall
    task: asyncio.Task[None]


class Worker:
    """Runs up to ``slots`` calls at once from a shared :class:`CallQueue`.

    The loop claims only as many calls as it has free slots, so a spike waits in Redis (where any
    worker can take it) rather than piling up in one process. A :class:`Reclaimer` heartbeats held
    calls, refreshes the slot registration, promotes due retries and takes over calls of dead
    workers; a :class:`HoldAnnouncer` tells waiting callers their position. A finished call's outcome
    is published to the outcome stream *before* it is acked, so an outcome can be repeated after a
    crash but never lost.

    A Redis outage (a restart, a failover) does not stop the worker: its loops back off and try again,
    logging one line when Redis goes and one when it is back. Running calls go on meanwhile; a call that
    ends during the outage keeps its slot until its end is recorded, unless another worker took it over
    (it was idle past ``reclaim_idle_ms`` when Redis came back), in which case that worker records it.

    Example::

        worker = Worker(queue, TextCallRunner(services), slots=4)
        await worker.run(burst=True)  # drain the queue, then return
    """

    def __init__(
        self,
        queue: CallQueue,
        runner: CallRunner,
        *,
        slots: int,
        name: str | None = None,
        drain_timeout_s: float = 30.0,
        hold_interval_s: float | None = 5.0,
        claim_block_ms: int = 250,
        on_outcome: OutcomeHook | None = None,
        on_dead_letter: Callable[[str, str, int], None] | None = None,
    ) -> None:
        """Build a worker; nothing runs until :meth:`run`.

        Args:
            queue: The shared call queue.
            runner: Runs one call's session (the local text transport, or a LiveKit room).
            slots: Calls this worker runs at once.
            name: Consumer name (default host, pid and a random suffix).
            drain_timeout_s: On drain, how long running calls may take to finish before they are
                stopped and handed back to the queue.
            hold_interval_s: Hold-message period for waiting callers; None disables the announcer.
            claim_block_ms: Longest blocking read for new calls; also bounds how long a drain
                request waits for the claim in progress.
            on_outcome: Called after a call's outcome is published.
            on_dead_letter: Called with ``(call_id, error, attempt)`` when a call is dead-lettered (alerts).
        """
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.queue = queue
        self.runner = runner
        self.slots = slots
        self.name = name or default_worker_name()
        self.drain_timeout_s = drain_timeout_s
        self.hold_interval_s = hold_interval_s
        self.claim_block_ms = claim_block_ms
        self.on_outcome = on_outcome
        self.on_dead_letter = on_dead_letter
        self._running: dict[str, _Running] = {}
        self._lost: set[str] = set()
        # Calls whose end is being recorded: their own retries check ownership, the upkeep must not stop them.
        self._ending: set[str] = set()
        self._aux: set[asyncio.Task[None]] = set()
        self._draining = asyncio.Event()
        self._stop_upkeep = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self.outage = Outage(f"worker {self.name}")
        self.completed = 0
        self.failed = 0

    # ------------------------------------------------------------------ state
    @property
    def draining(self) -> bool:
        """True once :meth:`drain` was requested."""
        return self._draining.is_set()

    def free_slots(self) -> int:
        """Slots free for new calls (0 while draining)."""
        return 0 if self.draining else max(0, self.slots - len(self._running))

    def held(self) -> list[ClaimedCall]:
        """Calls this worker currently runs."""
        return [r.claimed for r in self._running.values()]

    def drain(self) -> None:
        """Stop claiming; :meth:`run` finishes running calls (up to the deadline), hands back the rest, returns.

        Safe to call from a signal handler installed with ``loop.add_signal_handler``.
        """
        self._draining.set()
        self._slot_freed.set()

    # ------------------------------------------------------------------ loop
    async def run(self, *, burst: bool = False) -> None:
        """Claim and run calls until :meth:`drain` is called (or, with ``burst``, until the queue is empty).

        Args:
            burst: Return once nothing waits, nothing is retrying and nothing is in flight anywhere
                (tests and one-shot batch runs).
        """
        reclaimer = Reclaimer(
            self.queue,
            self.name,
            slots=self.slots,
            held=self.held,
            free_slots=self.free_slots,
            on_claimed=self._start_all,
            on_lost=self._stop_lost,
        )
        announcer = (
            HoldAnnouncer(self.queue, interval_s=self.hold_interval_s, name=self.name) if self.hold_interval_s else None
        )
        # Register at once so expected waits count our slots before the first tick.
        ttl_ms = max(3 * self.queue.heartbeat_ms, self.queue.reclaim_idle_ms)
        while True:
            try:
                await self.queue.setup()
                await self.queue.register_worker(self.name, self.slots, ttl_ms=ttl_ms)
                break
            except UNREACHABLE as exc:
                if self.draining:
                    return
                await self._back_off(exc)
        self.outage.ok()
        # We drive the reclaimer's tick from our own timer rather than Reclaimer.start(): stopping
        # that one cancels it mid-command, and redis-py can swallow the cancellation, leaving
        # aclose() waiting forever. Ours stops between ticks on an event.
        upkeep = asyncio.create_task(self._upkeep(reclaimer), name=f"worker-upkeep-{self.name}")
        if announcer is not None:
            announcer.start()
        try:
            while not self.draining:
                free = self.free_slots()
                if free <= 0:
                    self._slot_freed.clear()
                    if self.free_slots() <= 0 and not self.draining:
                        await self._slot_freed.wait()
                    continue
                try:
                    claimed = await self.queue.claim(self.name, count=free, block_ms=self.claim_block_ms)
                    done = not claimed and burst and not self._running and await self._queue_idle()
                except UNREACHABLE as exc:
                    await self._back_off(exc)
                    continue
                self.outage.ok()
                if claimed:
                    self._start_all(claimed)
                elif done:
                    break
            await self._finish(deadline_s=self.drain_timeout_s if self.draining else None)
        finally:
            # Stop our timers before the last calls are handed back, so no heartbeat renews them.
            if announcer is not None:
                await announcer.aclose()
            await self._stop_running()
            self._stop_upkeep.set()
            await upkeep
            try:
                await self.queue.unregister_worker(self.name)
            except UNREACHABLE:
                # The registration expires by itself; Redis being down must not turn a drain into a crash.
                logger.warning("worker %s: could not unregister (Redis unreachable); its slots expire", self.name)

    async def _upkeep(self, reclaimer: Reclaimer) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop_upkeep.is_set():
            started = loop.time()
            try:
                await reclaimer.tick()
            except UNREACHABLE as exc:
                # Redis is restarting: keep ticking, the next pass renews everything at once.
                self.outage.failed(exc)
            except Exception:
                logger.exception("queue upkeep failed for worker %s", self.name)
            else:
                self.outage.ok()
            remaining = reclaimer.interval_s - (loop.time() - started)
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_upkeep.wait(), remaining)

    async def _back_off(self, exc: BaseException) -> None:
        """Wait before the next try at an unreachable Redis (a drain request cuts the wait short)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._draining.wait(), self.outage.failed(exc))

    async def _queue_idle(self) -> bool:
        stats = await self.queue.stats()
        return stats.waiting == 0 and stats.retries_scheduled == 0 and stats.in_flight == 0

    def _start_all(self, calls: list[ClaimedCall]) -> None:
        for claimed in calls:
            if self.draining:
                # Claimed by a read that was already in progress when the drain began: hand it back.
                self._own(self._release(claimed), f"release-{claimed.call_id}")
                continue
            task = asyncio.create_task(self._run_call(claimed), name=f"call-{claimed.call_id}")
            self._running[claimed.entry_id] = _Running(claimed, task)

    def _stop_lost(self, calls: list[ClaimedCall]) -> None:
        # Another worker owns these now (we stalled past the idle time): stop without acking or releasing.
        for claimed in calls:
            running = self._running.get(claimed.entry_id)
            if running is not None and claimed.entry_id not in self._ending:
                logger.warning("call %s was taken over by another worker; stopping it here", claimed.call_id)
                self._lost.add(claimed.entry_id)
                running.task.cancel()

    def _own(self, coro: Awaitable[object], name: str) -> None:
        async def wrapper() -> None:
            try:
                await coro
            except Exception:
                logger.exception("background step %s failed", name)

        task = asyncio.create_task(wrapper(), name=name)
        self._aux.add(task)
        task.add_done_callback(self._aux.discard)

    async def _release(self, claimed: ClaimedCall) -> None:
        await self.queue.release(claimed)

    # ------------------------------------------------------------------ one call
    async def _run_call(self, claimed: ClaimedCall) -> None:
        started = time.monotonic()
        try:
            try:
                outcome = await self.runner.run(claimed)
            except CallDeferred as exc:
                await self._defer(claimed, exc)
                return
            except Exception as exc:
                await self._failed(claimed, exc)
                return
            outcome = outcome.model_copy(
                update={
                    "worker": self.name,
                    "attempt": claimed.attempt,
                    "queue_wait_ms": round(claimed.waited_s * 1000, 2),
                }
            )
            if not await self._record_end(claimed, outcome):
                return
        except asyncio.CancelledError:
            if claimed.entry_id not in self._lost:
                # Drain deadline: hand the call back; its checkpoint lets the next worker resume it.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.queue.release(claimed))
            return
        finally:
            self._running.pop(claimed.entry_id, None)
            self._lost.discard(claimed.entry_id)
            self._slot_freed.set()
        self.completed += 1
        logger.info("call %s %s in %.0f ms", claimed.call_id, outcome.outcome, (time.monotonic() - started) * 1000)
        if self.on_outcome is not None:
            try:
                await self.on_outcome(outcome)
            except Exception:
                logger.exception("outcome hook failed for call %s", claimed.call_id)

    async def _settle(
        self,
        claimed: ClaimedCall,
        step: Callable[[], Awaitable[bool]],
        *,
        check_first: bool = False,
        check: Callable[[], bool] = lambda: True,
    ) -> bool:
        """Run a call's last queue step, waiting out a Redis outage; False if the call is no longer ours.

        The call stays in ``_running`` meanwhile, so the upkeep keeps renewing it. After a failed try (and
        before the first with ``check_first``), while ``check()`` holds, the call's ownership is checked and its
        idle time reset, so a call another worker took over (we stalled, or Redis failed over) is left to that
        worker.
        """
        retry = check_first
        self._ending.add(claimed.entry_id)
        try:
            while True:
                try:
                    if retry and check() and await self.queue.heartbeat([claimed]):
                        logger.warning("call %s is no longer held by this worker", claimed.call_id)
                        return False
                    result = await step()
                except UNREACHABLE as exc:
                    retry = True
                    await asyncio.sleep(self.outage.failed(exc))
                    continue
                self.outage.ok()
                return result
        finally:
            self._ending.discard(claimed.entry_id)

    async def _record_end(self, claimed: ClaimedCall, outcome: CallOutcome) -> bool:
        """Publish the outcome, then ack; True once the outcome is published.

        Before publishing, a call found taken over is left to its new holder, which publishes it. After,
        an ack that finds the entry gone (the client's own retry of an ack that had landed, or, rarely, a
        new holder that finished first) still counts the call here: counting an end twice beats losing it.
        The outcome stream itself holds one record per queue entry (:meth:`CallQueue.publish_outcome`).
        """
        published = False

        async def step() -> bool:
            nonlocal published
            if not published:
                await self.queue.publish_outcome(claimed, outcome)
                published = True
            await self.queue.ack(claimed)
            return True

        try:
            # Ownership first: a holder that lost the call between heartbeats must not publish it too. Once the
            # outcome is out, only the ack is tried again, until the replicas confirm its answer: an ownership
            # check could read a primary about to be demoted, where our own unconfirmed ack had landed, and take
            # the call for ended while the new primary still holds it pending, to be taken over and run again.
            await self._settle(claimed, step, check_first=True, check=lambda: not published)
        except Exception:
            # Not acked: the call is reclaimed after the idle time and its ended checkpoint run again, which adds
            # no second record to the outcome stream.
            logger.exception("could not record the end of call %s", claimed.call_id)
        return published

    async def _defer(self, claimed: ClaimedCall, exc: CallDeferred) -> None:
        logger.warning("call %s handed back to the queue, where it waits: %s", claimed.call_id, exc)

        async def step() -> bool:
            await self.queue.release(claimed)
            return True

        try:
            await self._settle(claimed, step)
        except Exception:
            logger.exception("could not hand back call %s; it will be reclaimed", claimed.call_id)

    async def _failed(self, claimed: ClaimedCall, exc: Exception) -> None:
        self.failed += 1
        # The error goes to the log, the dead-letter stream and the outcome: never the caller's words it may quote.
        error = describe_error(exc)
        logger.warning("call %s attempt %d failed: %s", claimed.call_id, claimed.attempt, error)
        result: FailOutcome = "gone"

        async def step() -> bool:
            nonlocal result
            result = await self.queue.fail(claimed, error[:2000])
            return True

        try:
            if not await self._settle(claimed, step):
                return
        except Exception:
            logger.exception("could not record the failure of call %s; it will be reclaimed", claimed.call_id)
            return
        if result == "dead":
            dead = CallOutcome(
                call_id=claimed.call_id,
                status="dead_lettered",
                worker=self.name,
                attempt=claimed.attempt,
                queue_wait_ms=round(claimed.waited_s * 1000, 2),
                error=error[:2000],
            )
            with contextlib.suppress(Exception):
                await self.queue.publish_outcome(claimed, dead)
            if self.on_dead_letter is not None:
                self.on_dead_letter(claimed.call_id, error, claimed.attempt)

    # ------------------------------------------------------------------ shutdown
    async def _finish(self, *, deadline_s: float | None) -> None:
        tasks = [r.task for r in self._running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=deadline_s)
        if self._aux:
            await asyncio.wait(list(self._aux))

    async def _stop_running(self) -> None:
        """Stop calls still running (drain deadline passed, or an error in the loop) and hand them back."""
        tasks = [r.task for r in self._running.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._aux:
            await asyncio.wait(list(self._aux))
