"""The worker process: open services and the queue, run a Worker, drain on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from contextlib import AsyncExitStack
from pathlib import Path

from orchestrator.config import Settings
from orchestrator.contracts import CallOutcome
from orchestrator.domain.verification import watch_lockouts
from orchestrator.heap import settle_heap
from orchestrator.live import LiveFeed
from orchestrator.queue import CallQueue, open_queue
from orchestrator.queue.embedded import STATE_FILE
from orchestrator.runtime import Services
from orchestrator.store.records import CallStore
from orchestrator.telemetry.service import Telemetry
from orchestrator.telemetry.setup import start_metrics_server
from orchestrator.worker.dispatch import LiveKitDispatchRunner, RoutingRunner
from orchestrator.worker.runner import TextCallRunner, TurnHook
from orchestrator.worker.worker import OutcomeHook, Worker, default_worker_name

logger = logging.getLogger(__name__)


class RedisNotConfigured(RuntimeError):
    """No REDIS_URL and no embedded Redis running under data_dir."""


def resolve_redis_url(settings: Settings) -> str:
    """REDIS_URL, else the embedded Redis that ``switchboard serve`` started under ``data_dir/redis``.

    Raises:
        RedisNotConfigured: Neither is available.
    """
    if settings.redis_url:
        return settings.redis_url
    state = Path(settings.data_dir) / "redis" / STATE_FILE
    try:
        port = int(json.loads(state.read_text())["port"])
    except (OSError, ValueError, KeyError) as exc:
        raise RedisNotConfigured(
            f"REDIS_URL is not set and no embedded Redis runs under {state.parent} "
            "(start `switchboard serve` first, or set REDIS_URL)"
        ) from exc
    return f"redis://127.0.0.1:{port}/0"


async def run_worker(
    settings: Settings,
    *,
    slots: int,
    prefix: str = "sb",
    name: str | None = None,
    drain_timeout_s: float = 30.0,
    hold_interval_s: float | None = 5.0,
    burst: bool = False,
    on_start: TurnHook | None = None,
    on_turn: TurnHook | None = None,
    on_outcome: OutcomeHook | None = None,
    on_ready: TurnHook | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "0.0.0.0",
    metrics_ports: int = 1,
) -> Worker:
    """Run one worker process until SIGTERM/SIGINT (drain) or, with ``burst``, until the queue is empty.

    Args:
        settings: Redis, storage and queue timers.
        slots: Concurrent calls.
        prefix: Queue key prefix.
        name: Consumer name (default host-pid-random).
        drain_timeout_s: How long running calls may finish after SIGTERM before they are handed back.
        hold_interval_s: Hold-message period (None: no announcer in this process).
        burst: Return once the queue is empty.
        on_start: Hook ``(call_id, turns_already_done)`` when a call (re)starts.
        on_turn: Progress hook ``(call_id, turns_done)``.
        on_outcome: Called with each finished call's outcome.
        on_ready: Called once with ``(worker_name, slots)`` when the worker starts claiming.
        metrics_port: Serve Prometheus ``/metrics`` on this port (None: no metrics server).
        metrics_host: The address the metrics server binds.
        metrics_ports: Try this many consecutive ports from ``metrics_port`` (replicas on one host network).

    Returns:
        The worker (for its counters).
    """
    url = resolve_redis_url(settings)
    async with AsyncExitStack() as stack:
        services = await Services.open(settings, many_calls=slots > 1)
        stack.push_async_callback(services.aclose)
        queue: CallQueue = open_queue(settings, url, prefix=prefix)
        stack.push_async_callback(queue.aclose)
        telemetry = Telemetry.build(settings, store=await CallStore.open(services.engine, settings), set_global=True)
        stack.push_async_callback(telemetry.aclose)
        watch_lockouts(services.tenant, telemetry.verification_lockout)
        if metrics_port is not None:
            stack.callback(start_metrics_server(telemetry.handles, metrics_port, metrics_host, tries=metrics_ports))
        worker_name = name or default_worker_name()
        text_runner = TextCallRunner(
            services,
            on_start=on_start,
            on_turn=on_turn,
            telemetry=telemetry,
            worker_name=worker_name,
            # The supervisor console's live view: calls, transcripts, and commands between turns.
            live=LiveFeed(queue.redis, prefix=prefix),
        )
        await text_runner.warm_up()
        settle_heap()  # started: a full collection must never walk the models and the graph mid-call
        # Real calls (no script) go to the LiveKit voice agent by explicit dispatch when LiveKit is configured.
        dispatch = (
            LiveKitDispatchRunner(services, queue.redis, settings=settings, prefix=prefix, telemetry=telemetry)
            if settings.livekit_url
            else None
        )
        runner = RoutingRunner(text_runner, dispatch)
        worker = Worker(
            queue,
            runner,
            slots=slots,
            name=worker_name,
            drain_timeout_s=drain_timeout_s,
            hold_interval_s=hold_interval_s,
            on_outcome=on_outcome,
            on_dead_letter=lambda call_id, error, attempt: telemetry.dead_letter(
                call_id=call_id, error=error, attempts=attempt
            ),
        )
        telemetry.metrics.set_worker_slots(worker_name, slots)
        stack.callback(telemetry.metrics.set_worker_slots, worker_name, -slots)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.drain)
            stack.callback(loop.remove_signal_handler, sig)
        if on_ready is not None:
            on_ready(worker.name, slots)
        logger.info("worker %s: %d slots on %s (prefix %s)", worker.name, slots, url, prefix)
        await worker.run(burst=burst)
    return worker


__all__ = ["CallOutcome", "RedisNotConfigured", "resolve_redis_url", "run_worker"]
