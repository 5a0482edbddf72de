"""The base of every stand-in: an aiohttp server on 127.0.0.1 (a free port) with a tidy shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Self

from aiohttp import web


class LoopbackServer:
    """Serves the routes a subclass adds; `async with` starts and stops it."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self, sock: socket.socket | None = None) -> Self:
        """Serve on 127.0.0.1 (a free port), or on ``sock``: a listening socket made elsewhere (another namespace)."""
        app = web.Application()
        self.add_routes(app)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site: web.BaseSite = (
            web.TCPSite(self._runner, "127.0.0.1", 0) if sock is None else web.SockSite(self._runner, sock)
        )
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def _before_close(self) -> None:
        """Release whatever a handler may be waiting on, so shutting down never hangs."""

    async def aclose(self) -> None:
        await self._before_close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class WebSocketServer(LoopbackServer):
    """A loopback server whose handlers hold websockets or stall on purpose (vendor streaming APIs)."""

    def __init__(self) -> None:
        super().__init__()
        self._sockets: set[web.WebSocketResponse] = set()
        # Stalled or hung handlers wait on this so that closing the stand-in never waits on them.
        self._release = asyncio.Event()

    async def _before_close(self) -> None:
        self._release.set()
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1001)
