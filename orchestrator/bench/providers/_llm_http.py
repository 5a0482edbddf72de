"""Shared plumbing of the HTTP LLM stand-ins: a loopback aiohttp server, a script queue and a request log."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from orchestrator.bench.providers._loopback import LoopbackServer


@dataclass(frozen=True)
class Recorded:
    """One request a stand-in received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


@dataclass(frozen=True)
class HttpError:
    """Answer with this status, JSON body and headers (a 429, 500, 529…)."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[web.Request, Any, Recorded], Awaitable[web.StreamResponse]]


def stream_pieces(text: str) -> list[str]:
    """Split a reply into the word-sized chunks a streaming API sends (spaces kept, joining gives `text`)."""
    parts = [word + " " for word in text.split(" ")]
    parts[-1] = parts[-1][:-1]
    return [part for part in parts if part]


class LoopbackStandin(LoopbackServer):
    """A tiny aiohttp server on 127.0.0.1 (free port) that answers from a FIFO script and records requests.

    Subclasses give the route and turn each scripted item into a wire response.
    """

    route: str = "/"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Recorded] = []
        self.script: deque[Any] = deque()

    # -- lifecycle ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(self.route, self._handle)

    # -- scripting ---------------------------------------------------------------------------

    def enqueue(self, *items: Any) -> None:
        self.script.extend(items)

    def assert_complete(self) -> None:
        assert not self.script, f"{type(self).__name__}: {len(self.script)} scripted response(s) unused"

    # -- serving -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else {}
        recorded = Recorded(request.method, request.path, dict(request.headers), body)
        self.requests.append(recorded)
        if not self.script:
            # Loud on purpose: an unscripted request is a test bug, not a reason to invent a reply.
            return web.json_response({"error": {"message": "stand-in script exhausted"}}, status=599)
        item = self.script.popleft()
        if isinstance(item, HttpError):
            return web.json_response(item.body, status=item.status, headers=dict(item.headers))
        return await self.respond(request, item, recorded)

    async def respond(self, request: web.Request, item: Any, recorded: Recorded) -> web.StreamResponse:
        raise NotImplementedError

    @staticmethod
    async def sse(
        request: web.Request, events: list[tuple[str | None, str]], *, cut: Literal["abort", "close"] | None = None
    ) -> web.StreamResponse:
        """Send server-sent events.

        With `cut="abort"` the connection drops before the body ends; with `cut="close"` the body ends
        cleanly but early (the caller left out the closing events), as a misbehaving proxy might.
        """
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        for event, data in events:
            frame = (f"event: {event}\n" if event else "") + f"data: {data}\n\n"
            await response.write(frame.encode())
        if cut == "abort":
            # Abort the socket before the terminating zero-length chunk: the client sees an
            # incomplete body, exactly what a proxy or server crash mid-answer looks like.
            transport = request.transport
            assert transport is not None
            transport.abort()
            return response
        await response.write_eof()
        return response
