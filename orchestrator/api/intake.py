"""Call intake: the signed LiveKit webhook and the HMAC-signed ``POST /v1/calls``; both admit into the queue."""

from __future__ import annotations

import binascii
import json
from typing import Annotated, Any

import jwt
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from google.protobuf.json_format import ParseError
from livekit.api import WebhookReceiver
from livekit.protocol.webhook import WebhookEvent
from opentelemetry import context as otel_context
from pydantic import ValidationError

from orchestrator.api.deps import QueueDep, SettingsDep
from orchestrator.api.livekit_events import BadEvent, call_id_for_room, ends_call, job_from_event, starts_call
from orchestrator.api.models import Admitted, CallerLeft, CallRequest, Ignored
from orchestrator.api.signing import SignatureError, verify_intake
from orchestrator.contracts import CallJob
from orchestrator.queue import CallQueue
from orchestrator.telemetry.tracing import context_from, current_traceparent, webhook_span
from orchestrator.web.errors import ApiError, ErrorResponse
from orchestrator.web.limits import MAX_BODY_BYTES, json_too_deep, too_deep_error

router = APIRouter(tags=["intake"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Malformed body, or JSON nested too deep"},
    401: {"model": ErrorResponse, "description": "Unsigned, badly signed, expired or replayed request"},
    413: {"model": ErrorResponse, "description": f"Body over {MAX_BODY_BYTES} bytes (refused before it is read)"},
    422: {"model": ErrorResponse, "description": "Well-formed but not a valid call"},
    503: {
        "model": ErrorResponse,
        "description": "Admission limit reached or queue unreachable; see Retry-After",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}},
    },
}


async def _admit(request: Request, queue: CallQueue, job: CallJob, *, limit_wait: bool = True) -> JSONResponse:
    # The 202 is built only after admit returned, i.e. after the XADD succeeded: an accepted call
    # is in Redis before its sender hears so. QueueFull and Redis errors become 503s (errors.py).
    # The admission span starts the call's trace (or continues the sender's); its traceparent
    # travels in the job, so the worker's spans join the same trace.
    token = otel_context.attach(context_from(job.traceparent))
    try:
        with webhook_span(request.app.state.telemetry.tracer, call_id=job.call_id, source=job.source):
            job = job.model_copy(update={"traceparent": current_traceparent()})
            admission = await queue.admit(job, limit_wait=limit_wait)
    except ValueError as exc:
        raise ApiError(422, "unknown_priority", str(exc)) from None
    finally:
        otel_context.detach(token)
    return JSONResponse(Admitted.of(admission).model_dump(), status_code=202)


@router.post(
    "/webhooks/livekit",
    status_code=202,
    summary="LiveKit webhook: admit calls",
    response_model=Admitted,
    responses={
        200: {
            "model": Ignored | CallerLeft,
            "description": "A caller who hung up (a call still waiting leaves the queue), or an event of no use",
        },
        **_ERRORS,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A LiveKit WebhookEvent as JSON (protobuf JSON mapping).",
            "content": {
                "application/webhook+json": {"schema": {"type": "object"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
)
async def livekit_webhook(
    request: Request,
    queue: QueueDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(description="LiveKit's JWT; its sha256 claim hashes the body")] = None,
) -> JSONResponse:
    """Verify a LiveKit webhook and admit a call on ``participant_joined`` (SIP) or ``room_started`` (``call-*`` rooms).

    A caller's ``participant_left`` or a call room's ``room_finished`` takes the call out of the queue if it
    still waits (``200 {"call_id", "queue"}``). Any other event gets ``200 {"ignored": "<event>"}`` so
    LiveKit does not retry it.
    """
    # BodyLimit (app.py) refuses an oversized body with 413 before it is buffered here.
    body = await request.body()
    if not authorization:
        raise ApiError(401, "missing_authorization", "the Authorization header with LiveKit's signed JWT is required")
    token = authorization.removeprefix("Bearer ").strip()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_encoding", "the body must be UTF-8 JSON") from None
    if json_too_deep(text):
        raise too_deep_error("the body")
    event = _receive(request, text, token, settings.livekit_api_key, settings.livekit_api_secret.get_secret_value())
    if ends_call(event, request.app.state.room_prefix):
        try:
            call_id = call_id_for_room(event.room.sid, event.room.name)
        except BadEvent as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        left = CallerLeft(call_id=call_id, queue=await queue.abandon(call_id))
        return JSONResponse(left.model_dump(), status_code=200)
    if not starts_call(event, request.app.state.room_prefix):
        return JSONResponse(Ignored(ignored=event.event or "unknown").model_dump(), status_code=200)
    try:
        job = job_from_event(event, traceparent=request.headers.get("traceparent"))
    except BadEvent as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    # Its caller is already in the room: a 503 would leave them in silence while LiveKit waits out Retry-After,
    # so a long expected wait queues them (they hear it on hold); only the depth limit refuses.
    return await _admit(request, queue, job, limit_wait=False)


def _receive(request: Request, text: str, token: str, key: str, secret: str) -> WebhookEvent:
    receiver: WebhookReceiver = request.app.state.webhook_receiver
    try:
        return receiver.receive(text, token)
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "token_expired", "the webhook token has expired") from None
    except jwt.ImmatureSignatureError:
        raise ApiError(401, "token_not_yet_valid", "the webhook token is not valid yet (nbf in the future)") from None
    except jwt.InvalidIssuerError:
        raise ApiError(401, "unknown_api_key", "the webhook token was issued for another LiveKit API key") from None
    except jwt.InvalidSignatureError:
        raise ApiError(401, "bad_signature", "the webhook token is not signed with this server's API secret") from None
    except jwt.MissingRequiredClaimError as exc:
        raise ApiError(401, "bad_token", f"the webhook token lacks a required claim: {exc.claim}") from None
    except jwt.InvalidTokenError as exc:
        raise ApiError(401, "malformed_token", f"the Authorization header is not a valid JWT ({exc})") from None
    except ParseError as exc:
        raise ApiError(400, "malformed_event", f"the body is not a LiveKit WebhookEvent: {exc}") from None
    except binascii.Error:
        raise ApiError(401, "body_hash_mismatch", "the token's sha256 claim is not valid base64") from None
    except Exception as exc:
        # WebhookReceiver raises bare Exceptions for its own two checks; tell them apart by message.
        message = str(exc)
        if "sha256 was not found" in message:
            raise ApiError(401, "missing_body_hash", "the webhook token has no sha256 claim") from None
        if "hash mismatch" in message:
            raise ApiError(
                401, "body_hash_mismatch", "the body's sha256 does not match the token's sha256 claim"
            ) from None
        raise ApiError(400, "malformed_event", f"the body is not a LiveKit WebhookEvent: {message}") from None


@router.post(
    "/v1/calls",
    status_code=202,
    summary="Admit a call from another telephony source",
    response_model=Admitted,
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": CallRequest.model_json_schema()}},
        }
    },
)
async def create_call(
    request: Request,
    queue: QueueDep,
    settings: SettingsDep,
    x_switchboard_timestamp: Annotated[str | None, Header(description="Unix seconds of the signature")] = None,
    x_switchboard_signature: Annotated[
        str | None, Header(description='"v1=<hex HMAC-SHA256 of \\"<timestamp>.<raw body>\\">"')
    ] = None,
) -> JSONResponse:
    """Admit a call signed with the intake secret.

    Headers: ``X-Switchboard-Timestamp: <unix s>`` and
    ``X-Switchboard-Signature: v1=hex(HMAC-SHA256(secret, f"{timestamp}.{raw body}"))``.

    Idempotent on ``call_id`` (a replay inside the window is answered as a duplicate and counted once).
    """
    body = await request.body()
    try:
        verify_intake(
            settings.intake_secret.get_secret_value(),
            body,
            x_switchboard_timestamp,
            x_switchboard_signature,
            window_s=settings.intake_replay_window_s,
        )
    except SignatureError as exc:
        raise ApiError(401, exc.code, exc.message) from None
    if json_too_deep(body):
        raise too_deep_error("the body")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    try:
        call = CallRequest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        raise ApiError(422, "invalid_call", problems) from None
    return await _admit(request, queue, call.job(request.headers.get("traceparent")))
