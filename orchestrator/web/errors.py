"""API errors: one JSON shape for every refusal, so a caller always learns exactly what was wrong."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.queue import QueueFull
from orchestrator.queue.errors import NoPrimary


class ErrorBody(BaseModel):
    """What went wrong: a stable machine code and a sentence for humans.

    Attributes:
        code: Stable identifier, e.g. ``bad_signature`` or ``queue_full``.
        message: What exactly was wrong and, where it helps, how to fix it.
        reason: For ``queue_full``: ``depth`` or ``wait``.
    """

    code: str
    message: str
    reason: str | None = None


class ErrorResponse(BaseModel):
    """The envelope of every 4xx/5xx answer."""

    error: ErrorBody
    retry_after_s: int | None = None


UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "Redis is unreachable; see Retry-After"},
}


class ApiError(Exception):
    """Raised by handlers; rendered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_json(
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A JSON error response in the house shape."""
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    reason = extra.pop("reason", None)
    if reason is not None:
        body["error"]["reason"] = reason
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map our errors, validation errors, queue refusals and Redis outages to the JSON error shape."""

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_json(exc.status, exc.code, exc.message, headers=exc.headers)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()))
            problems.append(f"{where}: {e.get('msg', 'invalid')}")
        return error_json(422, "invalid_request", "; ".join(problems) or "invalid request")

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        code = codes.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 413:
            # The body limit stopped reading mid-body: the rest is unread, so the connection must not be reused.
            headers = {**(headers or {}), "Connection": "close"}
        return error_json(exc.status_code, code, str(exc.detail), headers=headers)

    async def queue_full(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, QueueFull)
        what = "too many calls are waiting" if exc.reason == "depth" else "the expected wait is too long"
        return error_json(
            503,
            "queue_full",
            f"call not admitted: {what}; retry after {exc.retry_after_s} s",
            headers={"Retry-After": str(exc.retry_after_s)},
            reason=exc.reason,
            retry_after_s=exc.retry_after_s,
        )

    async def redis_down(_: Request, exc: Exception) -> JSONResponse:
        # The call was not enqueued (no 202 was sent), so the sender must retry: say when.
        what = "nothing was admitted"
        if isinstance(exc, NoPrimary):
            # The write may have reached the primary without a replica to confirm it: a retry is then its duplicate.
            what = "the admission is not confirmed; retry with the same call_id"
        return error_json(
            503,
            "queue_unavailable",
            f"the call queue is unreachable ({type(exc).__name__}); {what}",
            headers={"Retry-After": "1"},
            retry_after_s=1,
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(QueueFull, queue_full)
    # Only outages: a ResponseError is our bug and must surface as a 500, not hide behind a retryable 503.
    app.add_exception_handler(RedisConnectionError, redis_down)
    app.add_exception_handler(RedisTimeoutError, redis_down)
