"""The FastAPI app factory: intake, queue and health routers over one CallQueue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import Depends, FastAPI
from livekit.api import TokenVerifier, WebhookReceiver

from orchestrator.api import health, intake, queue_routes
from orchestrator.api.secret_policy import secret_problems
from orchestrator.config import Settings
from orchestrator.console import api as console_api
from orchestrator.console import pages as console_pages
from orchestrator.loops import rounds, stop_loop
from orchestrator.queue import CallQueue, open_queue
from orchestrator.queue.embedded import EmbeddedRedis
from orchestrator.telemetry.metrics import CallMetrics
from orchestrator.telemetry.setup import metrics_router, setup_telemetry
from orchestrator.web.errors import install_error_handlers
from orchestrator.web.limits import MAX_BODY_BYTES, BodyLimit

log = logging.getLogger(__name__)

DEFAULT_ROOM_PREFIX = "call-"


def create_app(
    settings: Settings,
    *,
    queue: CallQueue | None = None,
    queue_prefix: str = "sb",
    room_prefix: str = DEFAULT_ROOM_PREFIX,
) -> FastAPI:
    """Build the API.

    Args:
        settings: Secrets (LiveKit, intake), admission limits and where Redis is.
        queue: Use this queue (tests); the caller keeps ownership. Without it the lifespan opens one on
            ``settings.redis_url``, or on an embedded Redis under ``data_dir`` when that is unset, and
            closes both at shutdown.
        queue_prefix: Key prefix of the queue the lifespan opens.
        room_prefix: LiveKit rooms whose names start with it are calls (``room_started`` admits them).

    Returns:
        The app; later features add routers with ``app.include_router``.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # However the app is started; `switchboard serve` also refuses weak secrets off loopback.
        for problem in secret_problems(settings):
            log.warning("%s", problem)
        async with AsyncExitStack() as stack:
            if queue is None:
                url = settings.redis_url
                if not url:
                    server = EmbeddedRedis(settings.data_dir / "redis")
                    # Starting redis-server blocks for a moment; keep the loop free meanwhile.
                    url = await asyncio.to_thread(server.start)
                    stack.callback(server.shutdown)
                opened = open_queue(settings, url, prefix=queue_prefix)
                stack.push_async_callback(opened.aclose)
                app.state.queue = opened
            stop = asyncio.Event()
            poller = asyncio.create_task(_poll_queue_stats(app, stop), name="queue-stats-poller")
            stack.push_async_callback(stop_loop, stop, poller, QUEUE_STATS_STOP_S)
            stack.callback(app.state.telemetry.shutdown)
            yield

    app = FastAPI(
        title="Switchboard",
        version="0.1.0",
        summary="Contact-centre orchestrator: call intake, queue and workers.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.queue = queue
    app.state.room_prefix = room_prefix
    app.state.webhook_receiver = WebhookReceiver(
        TokenVerifier(settings.livekit_api_key, settings.livekit_api_secret.get_secret_value())
    )
    # The API's spans start each call's trace; its /metrics shows the queue gauges.
    app.state.telemetry = setup_telemetry(settings, set_global=False, join_livekit=False)
    app.state.call_metrics = CallMetrics(app.state.telemetry.meter)
    install_error_handlers(app)
    # Its own 413 in the house error shape (FastAPI's max_body_size answers a long Content-Length in plain text).
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    # Open to anyone: the probes, /metrics, and the two intake routes, which check their own signatures.
    app.include_router(metrics_router(app.state.telemetry))
    app.include_router(health.router)
    app.include_router(intake.router)
    # The queue views show callers' words (outcomes, dead letters): a console user or an admin token only.
    app.include_router(
        queue_routes.router,
        dependencies=[Depends(console_api.require_user)],
        responses={401: console_api.AUTH_ERRORS[401]},
    )
    app.include_router(console_api.router)  # /v1/console (its lifespan opens the console beside the queue)
    app.include_router(console_pages.router)  # /console pages
    return app


QUEUE_STATS_INTERVAL_S = 5.0
QUEUE_STATS_STOP_S = 2.0


async def _poll_queue_stats(app: FastAPI, stop: asyncio.Event) -> None:
    """Feed the queue gauges (depth, oldest wait, dead letters) from the queue every few seconds, until ``stop``."""
    async for _ in rounds(QUEUE_STATS_INTERVAL_S, stop):
        queue: CallQueue | None = app.state.queue
        if queue is not None:
            try:
                app.state.call_metrics.update_queue(await queue.stats())
            except Exception:  # noqa: BLE001 - Redis may be restarting; the next poll catches up
                pass
