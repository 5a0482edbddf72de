"""Test helpers for the console: the API served by uvicorn on 127.0.0.1 in a thread, and a worker on the live feed."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import redis
import uvicorn
from fastapi import FastAPI
from starlette.routing import BaseRoute

from orchestrator.api import create_app
from orchestrator.config import Settings, load_settings
from orchestrator.console.auth import Role
from orchestrator.live import LiveFeed
from orchestrator.queue import CallQueue
from orchestrator.runtime import Services
from orchestrator.worker.runner import TextCallRunner
from orchestrator.worker.worker import Worker
from tests.conftest import REDIS_TEST_URL


class ServedApp:
    """An app served on ``127.0.0.1:<free port>`` by uvicorn in its own thread and event loop.

    Attributes:
        app: The app.
        url: ``http://127.0.0.1:<port>``.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.url = ""
        self.loop: asyncio.AbstractEventLoop | None = None
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning", ws="none")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="console-uvicorn", daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._server.serve())
            # Streams' helper tasks (sse-starlette's shutdown watchers) end with the loop, not before it.
            leftovers = asyncio.all_tasks(self.loop)
            for task in leftovers:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        finally:
            self.loop.close()

    def start(self, timeout_s: float = 60.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the console app did not start (see the log above)")
            time.sleep(0.02)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def call(self, coro: Any, timeout_s: float = 30.0) -> Any:
        """Run a coroutine on the server's loop (e.g. to add users through the app's console) and wait."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def add_user(self, username: str, password: str, role: Role) -> None:
        self.call(self.app.state.console.users.add(username, password, role))

    def create_token(self, username: str) -> str:
        token: str = self.call(self.app.state.console.users.create_token(username))
        return token


def app_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route of an app, including those of included routers (FastAPI keeps those nested)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from app_routes(inner.routes)
        else:
            yield route


@contextmanager
def served_console(name: str, password: str, **settings: Any) -> Iterator[ServedApp]:
    """The API on the test Redis under a fresh queue prefix, with supervisors sam and kim and admin ada; the
    prefix's keys are deleted afterwards. ``settings`` are passed on to `load_settings`."""
    prefix = f"{name}-{uuid.uuid4().hex[:10]}"
    config = load_settings(redis_url=REDIS_TEST_URL, data_dir=tempfile.mkdtemp(prefix=f"sb-{name}-"), **settings)
    with served(create_app(config, queue_prefix=prefix)) as srv:
        srv.add_user("sam", password, "supervisor")
        srv.add_user("kim", password, "supervisor")
        srv.add_user("ada", password, "admin")
        yield srv
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@contextmanager
def served(app: FastAPI) -> Iterator[ServedApp]:
    """Serve ``app`` for the duration of the block."""
    server = ServedApp(app)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def live_worker(settings: Settings, queue: CallQueue, *, slots: int = 4) -> AsyncIterator[Worker]:
    """A worker on ``queue`` whose runner publishes to the console's live feed (as ``run_worker`` would)."""
    services = await Services.open(settings)
    try:
        feed = LiveFeed(queue.redis, prefix=queue.keys.prefix)
        runner = TextCallRunner(services, worker_name="test-worker", live=feed)
        worker = Worker(queue, runner, slots=slots, name="test-worker", hold_interval_s=None, claim_block_ms=100)
        task = asyncio.create_task(worker.run(), name="console-test-worker")
        try:
            yield worker
        finally:
            worker.drain()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
    finally:
        await services.aclose()
