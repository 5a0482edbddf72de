"""Request limits: the body size (refused before it is buffered) and how deep JSON may nest before it is parsed."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.web.errors import ApiError, error_json

# Every body the API takes (a webhook event, a call, console credentials or text) fits in a few kilobytes.
MAX_BODY_BYTES = 256 * 1024
# Our deepest documents nest four or five levels; json and protobuf recurse once per level.
MAX_JSON_DEPTH = 32

# A JSON string (whose brackets are text), or one bracket. Strings first, so their brackets are skipped.
_TOKENS_B = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_TOKENS_S = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def json_too_deep(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when arrays and objects in ``data`` nest deeper than ``limit``, found without parsing it.

    Malformed JSON is measured as far as it goes; the parser that runs next says what is wrong with it.
    """
    kinds: Iterator[str]
    if isinstance(data, bytes):
        if data.count(b"[") + data.count(b"{") <= limit:
            return False
        kinds = (m.group()[:1].decode() for m in _TOKENS_B.finditer(data))
    else:
        if data.count("[") + data.count("{") <= limit:
            return False
        kinds = (m.group()[:1] for m in _TOKENS_S.finditer(data))
    depth = 0
    for kind in kinds:
        if kind in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif kind != '"':
            depth -= 1
    return False


def too_deep_error(what: str) -> ApiError:
    """The 400 for JSON nested past `MAX_JSON_DEPTH`; ``what`` names it (``the body``, ``room metadata``)."""
    return ApiError(400, "json_too_deep", f"{what} nests JSON deeper than {MAX_JSON_DEPTH} levels")


class BoundedJsonRoute(APIRoute):
    """A route whose JSON body is refused with a 400 when it nests too deep, before FastAPI parses it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def bounded(request: Request) -> Response:
            # The body is read once and cached on the request, so the handler's parse reads the same bytes.
            if json_too_deep(await request.body()):
                raise too_deep_error("the body")
            return await handler(request)

        return bounded


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` once a streamed body passes the limit; the error handlers answer it with a 413.

    An HTTPException, because FastAPI turns any other exception raised while it reads a body into a 400.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the limit of {limit} bytes")


class BodyLimit:
    """Pure ASGI middleware: a request body over ``limit`` bytes is answered 413 and never buffered.

    A declared Content-Length over the limit is refused before the app runs. A body without one (chunked) is
    counted as the app reads it, and the read that passes the limit fails, leaving the rest unread (the server
    stops reading from the socket when nobody asks for more).
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        read, over, started, replaced = 0, False, False, False

        async def limited_receive() -> Message:
            nonlocal read, over
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.limit:
                    over = True
                    raise BodyTooLarge(self.limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            if message["type"] == "http.response.start":
                started = True
                if over and message["status"] != 413:
                    # Something between here and the handler answered the failed read its own way.
                    replaced = True
                    await self._refuse(scope, receive, send)
                    return
            if not replaced:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = BodyTooLarge(self.limit).detail
        # The rest of the body stays unread, so this connection cannot carry another request.
        response = error_json(413, "body_too_large", message, headers={"Connection": "close"})
        await response(scope, receive, send)
