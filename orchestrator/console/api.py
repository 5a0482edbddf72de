"""The console's JSON API under /v1/console: sessions, live calls and their controls, escalations, history, audit."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from pydantic import BaseModel, BeforeValidator, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from orchestrator.console.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    LoginThrottle,
    Principal,
    csrf_ok,
)
from orchestrator.console.room_tokens import JoinMode
from orchestrator.console.service import DISPOSITIONS, SLA_S, Console, QueueEntry
from orchestrator.console.softphone import join_call, talk
from orchestrator.live import LiveFeed
from orchestrator.web.errors import ApiError, ErrorResponse
from orchestrator.web.limits import BoundedJsonRoute

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STREAM_BLOCK_MS = 1000


@asynccontextmanager
async def console_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the console beside the app's queue (its Redis holds sessions, live calls and leases)."""
    queue = app.state.queue
    feed = LiveFeed(queue.redis, prefix=queue.keys.prefix)
    async with Console.open(app.state.settings, feed) as console:
        app.state.login_throttle = LoginThrottle(queue.redis, prefix=queue.keys.prefix)
        app.state.console = console
        yield


def get_console(request: Request) -> Console:
    console: Console | None = getattr(request.app.state, "console", None)
    if console is None:
        raise ApiError(503, "console_starting", "the console is not ready yet; retry in a moment")
    return console


async def authenticate(request: Request, console: Console) -> Principal:
    """The caller: an admin bearer token, or a session cookie (plus the CSRF header on state changes).

    Raises:
        ApiError: 401 without valid credentials or with an expired session; 403 on a CSRF failure.
    """
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        principal = await console.users.verify_token(token.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            raise ApiError(
                401,
                "bad_token",
                "the bearer token is not valid (admins create one with `switchboard users token NAME`)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return principal
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise ApiError(401, "unauthenticated", "log in at /console/login (or send an admin bearer token)")
    session_id = console.signer.unsign(cookie)
    if session_id is None:
        raise ApiError(401, "bad_session", "the session cookie is not valid; log in again at /console/login")
    principal = await console.sessions.get(session_id)
    if principal is None:
        raise ApiError(401, "session_expired", "your session has expired; log in again at /console/login")
    if request.method not in SAFE_METHODS and not csrf_ok(principal.csrf, request.headers.get(CSRF_HEADER)):
        raise ApiError(403, "csrf_failed", f"missing or wrong {CSRF_HEADER} header (the session's CSRF token)")
    return principal


def client_address(request: Request) -> str:
    """The caller's address (the proxy's forwarded one where the server trusts that proxy)."""
    return request.client.host if request.client else "unknown"


async def check_login(request: Request, console: Console, username: str, password: str) -> Principal:
    """The user if the password is right, throttled per user and per client address and audited either way.

    A wrong password is written to the audit log as a failed login; the failure that reaches a limit locks the
    user (known or not) or the address out, and that is written too. While locked out, every login is refused
    with the same answer, whether or not the user exists and whatever the password.

    Raises:
        ApiError: 401 on wrong credentials; 429 with Retry-After while the user or the address is locked out.
    """
    throttle: LoginThrottle = request.app.state.login_throttle
    name, address = username[:64] or "-", client_address(request)
    wait = await throttle.attempt(name, address)
    if wait:
        await console.audit.record(
            name, "login_failed", role="anonymous", outcome="refused", detail=f"locked out; from {address}"
        )
        raise ApiError(
            429,
            "too_many_attempts",
            f"too many failed logins; try again in {wait} s, or ask an admin to unlock the account",
            headers={"Retry-After": str(wait)},
        )
    user = await console.users.authenticate(username, password) if username and password else None
    if user is None:
        failure = await throttle.failed(name, address)
        await console.audit.record(
            name, "login_failed", role="anonymous", outcome="refused", detail=f"wrong credentials; from {address}"
        )
        for locked, what in ((failure.user_locked, f"user {name}"), (failure.address_locked, f"address {address}")):
            if locked:
                await console.audit.record(
                    name, "login_locked", detail=f"{what} locked out for {throttle.lockout_s} s after failed logins"
                )
        raise ApiError(401, "bad_credentials", "wrong username or password")
    await throttle.succeeded(name, address)
    return user


async def require_user(request: Request, console: Annotated[Console, Depends(get_console)]) -> Principal:
    principal = await authenticate(request, console)
    await console.seen(principal)
    return principal


async def require_admin(principal: Annotated[Principal, Depends(require_user)]) -> Principal:
    if not principal.is_admin:
        raise ApiError(403, "forbidden", "admins only")
    return principal


User = Annotated[Principal, Depends(require_user)]
Admin = Annotated[Principal, Depends(require_admin)]
ConsoleDep = Annotated[Console, Depends(get_console)]

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Not logged in, session expired, or a bad token"},
    403: {"model": ErrorResponse, "description": "CSRF token missing or wrong, or admins only"},
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not valid JSON, or nests too deep"},
    **AUTH_ERRORS,
    404: {"model": ErrorResponse, "description": "No such call or ticket"},
    409: {"model": ErrorResponse, "description": "Someone else holds the call or took the escalation"},
    422: {"model": ErrorResponse, "description": "Invalid request"},
    503: {"model": ErrorResponse, "description": "The console is starting, or Redis is unreachable"},
}

router = APIRouter(
    prefix="/v1/console",
    tags=["console"],
    lifespan=console_lifespan,
    responses=_ERRORS,
    route_class=BoundedJsonRoute,
)


# ---------------------------------------------------------------------- models
class Login(BaseModel):
    """Credentials for a console session."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class Me(BaseModel):
    """The logged-in user; ``csrf_token`` goes in the X-CSRF-Token header of every state change."""

    username: str
    role: Literal["supervisor", "admin"]
    via: Literal["session", "token"]
    csrf_token: str | None = None


class Text(BaseModel):
    """What to whisper to the agent or say to the caller."""

    # Something besides whitespace (Python's, which also counts the separators \x1c-\x1f): the service refuses
    # a text that is empty once its whitespace is collapsed, and the schema says so.
    text: str = Field(min_length=1, max_length=500, pattern=r"[^\s\x1c-\x1f]")


class WrapUp(BaseModel):
    """How an escalation ended: a wrap-up code and an optional note."""

    disposition: Literal[DISPOSITIONS]  # type: ignore[valid-type]  # the codes live in one tuple, the service's
    note: str = Field(default="", max_length=500)


class Reroute(BaseModel):
    """The specialist to hand the call to."""

    agent: Literal["scheduling", "billing", "support"]


class LiveCallOut(BaseModel):
    """A live call as the console lists it."""

    call_id: str
    caller_id: str
    room: str
    worker: str
    status: str
    intent: str
    agent: str
    sentiment: str
    frustration: int
    turns: int
    duration_s: float
    flags: list[str]
    ticket_id: str
    outcome: str
    controller: str
    control_mode: str
    account_id: str = ""
    customer: str = ""


class LineOut(BaseModel):
    """One transcript line; ``role`` is caller, agent, human (a supervisor) or event."""

    id: str
    role: str
    agent: str
    text: str
    turn: int
    ts: float


class CallDetail(BaseModel):
    """A live call with its transcript so far."""

    call: LiveCallOut
    lines: list[LineOut]


class Done(BaseModel):
    """An action was taken."""

    ok: bool = True
    action: str
    call_id: str | None = None


class TicketOut(BaseModel):
    """An escalation: why, the AI's summary, how long the caller has waited, how urgent (0 is most urgent)."""

    ticket_id: str
    call_id: str
    reason: str
    summary: str
    priority: int
    status: str
    created_at: datetime
    waiting_s: float
    agent: str | None = None
    call_live: bool = False
    caller: str = ""
    customer: str = ""
    transcript_url: str = ""
    left_at: datetime | None = None


class LiveKitJoin(BaseModel):
    """How to join the call's LiveKit room as the human agent."""

    url: str
    room: str
    token: str


class JoinRequest(BaseModel):
    """How to join a live call: ``listen`` (hidden, receive only), ``barge`` (take the call over with the
    microphone) or ``escalation`` (the accepted escalation's supervisor, with the microphone)."""

    mode: JoinMode = "listen"


class RoomJoin(BaseModel):
    """A LiveKit room to join from the browser: the server's URL, the room, a short-lived token."""

    url: str
    room: str
    token: str
    identity: str
    mode: str
    call_id: str = ""


class TalkRequest(BaseModel):
    """A call to the agent from the browser; ``caller_id`` is a number to call as (else the console user)."""

    # The same rule as the service's (`softphone.CALLER_NUMBER`), so the schema says what is accepted.
    caller_id: str = Field(default="", max_length=32, pattern=r"^(\+?[0-9][0-9 ().-]{3,30})?$")


class Accepted(BaseModel):
    """An accepted escalation: read the summary, then join the call."""

    ticket: TicketOut
    livekit: LiveKitJoin | None = None
    call_url: str


class Heartbeat(BaseModel):
    """Whether the caller still holds the call."""

    holding: bool


class AuditOut(BaseModel):
    """One audited action."""

    id: int
    at: datetime
    username: str
    role: str
    action: str
    call_id: str | None
    ticket_id: str | None
    outcome: str
    detail: str


class AuditPage(BaseModel):
    """A page of the audit log, newest first."""

    total: int
    entries: list[AuditOut]


def _entry_out(entry: QueueEntry) -> TicketOut:
    out = _ticket_out(entry.ticket, agent=entry.agent, call_live=entry.call_live)
    return out.model_copy(
        update={
            "caller": entry.caller,
            "customer": entry.customer,
            "transcript_url": entry.transcript_url,
            "left_at": entry.left_at,
        }
    )


def _ticket_out(ticket: Any, *, agent: str | None = None, call_live: bool = False) -> TicketOut:
    created = ticket.created_at
    waiting = (datetime.now(UTC) - created.astimezone(UTC)).total_seconds() if created else 0.0
    return TicketOut(
        ticket_id=ticket.ticket_id,
        call_id=ticket.call_id,
        reason=ticket.reason,
        summary=ticket.summary,
        priority=ticket.priority,
        status=ticket.status,
        created_at=created,
        waiting_s=round(max(0.0, waiting), 1),
        agent=agent,
        call_live=call_live,
    )


# ---------------------------------------------------------------------- session
@router.post(
    "/login",
    response_model=Me,
    summary="Log in (sets the session cookie)",
    responses={
        429: {
            "model": ErrorResponse,
            "description": "Too many failed logins for this user or from this address; see Retry-After",
            "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}},
        }
    },
)
async def login(body: Login, request: Request, response: Response, console: ConsoleDep) -> Me:
    """Check the password and start a session; the answer carries the CSRF token for later state changes."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        # A cross-site HTML form cannot send JSON, so this also blocks login CSRF.
        raise ApiError(415, "unsupported_media_type", "send the credentials as application/json")
    user = await check_login(request, console, body.username, body.password)
    principal = await console.sessions.create(user)
    set_session_cookie(response, console, principal)
    await console.audit.record(principal, "login")
    return Me(username=principal.username, role=principal.role, via="session", csrf_token=principal.csrf)


def set_session_cookie(response: Response, console: Console, principal: Principal) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        console.signer.sign(principal.session_id),
        max_age=console.settings.console_session_ttl_s,
        httponly=True,
        samesite="lax",
        secure=console.settings.console_cookie_secure,
        path="/",
    )


@router.get("/me", response_model=Me, summary="Who is logged in")
async def me(who: User) -> Me:
    return Me(username=who.username, role=who.role, via=who.via, csrf_token=who.csrf or None)


@router.post("/logout", response_model=Done, summary="Log out")
async def logout(who: User, response: Response, console: ConsoleDep) -> Done:
    if who.session_id:
        await console.sessions.end(who.session_id)
    response.delete_cookie(SESSION_COOKIE, path="/")
    await console.audit.record(who, "logout")
    return Done(action="logout")


# ---------------------------------------------------------------------- live calls
@router.get("/calls", response_model=list[LiveCallOut], summary="Live calls")
async def live_calls(who: User, console: ConsoleDep) -> list[LiveCallOut]:
    """Calls being answered now: who (the verified customer), intent, agent, duration, sentiment, flags."""
    calls = await console.feed.live_calls()
    names = await console.customer_names({c.account_id for c in calls if c.account_id})
    return [LiveCallOut(**c.to_json(), customer=names.get(c.account_id, "")) for c in calls]


@router.get("/wallboard", summary="The contact centre at a glance")
async def wallboard(
    request: Request, who: User, console: ConsoleDep, sla_s: Annotated[int, Query(ge=1, le=3600)] = SLA_S
) -> dict[str, Any]:
    """Calls waiting (for the AI and for a person), the longest wait, today's service level (answered within
    ``sla_s``), abandonment, AI-handled against escalated, people available, and the live calls."""
    return await console.wallboard(request.app.state.queue, sla_s=sla_s)


@router.get("/calls/{call_id}", response_model=CallDetail, summary="A live call and its transcript")
async def live_call(call_id: str, who: User, console: ConsoleDep) -> CallDetail:
    call = await console.live_call(call_id)
    lines = await console.feed.lines(call_id)
    return CallDetail(call=LiveCallOut(**call.to_json()), lines=[LineOut(**ln.to_json()) for ln in lines])


@router.get(
    "/calls/{call_id}/stream",
    summary="Live transcript (server-sent events)",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "`line`, `call` and `session_ended` events"}},
)
async def transcript_stream(call_id: str, request: Request, who: User, console: ConsoleDep) -> EventSourceResponse:
    """Every transcript line (``line`` events) and changes of the call (``call`` events), as they happen.

    While the supervisor who holds the call keeps this stream open, their hold is renewed; when it
    closes and they do not reconnect within the grace period, the call goes back to the AI (or, for an
    escalation, back to the queue). When the session ends meanwhile (logout, expiry, or the user was
    removed, disabled or given a new password or role), a ``session_ended`` event closes the stream.
    """
    await console.live_call(call_id)
    last_event = request.headers.get("last-event-id", "")
    return EventSourceResponse(_stream(console, who, call_id, last_event), ping=5, send_timeout=10)


async def _stream(console: Console, who: Principal, call_id: str, after: str) -> AsyncIterator[ServerSentEvent]:
    last_state: dict[str, Any] = {}
    try:
        for line in await console.feed.lines(call_id, after=after):
            after = line.id
            yield ServerSentEvent(data=json.dumps(line.to_json()), event="line", id=line.id)
        while True:
            if not await console.still_valid(who):
                yield ServerSentEvent(data=json.dumps({"reason": "session_ended"}), event="session_ended")
                return
            call = await console.feed.get(call_id)
            if call is not None:
                state = call.to_json()
                state.pop("duration_s", None)
                if state != last_state:
                    last_state = state
                    yield ServerSentEvent(data=json.dumps(call.to_json()), event="call")
                if call.controller == who.username:
                    await console.heartbeat(who, call_id)
            lines = await console.feed.wait_lines(call_id, after=after or "0-0", block_ms=STREAM_BLOCK_MS)
            for line in lines:
                after = line.id
                yield ServerSentEvent(data=json.dumps(line.to_json()), event="line", id=line.id)
    finally:
        # Shielded: the stream is being cancelled, but the grace timer must still be set.
        await asyncio.shield(console.stream_closed(who, call_id))


@router.post("/calls/{call_id}/whisper", response_model=Done, summary="Whisper guidance to the AI agent")
async def whisper(call_id: str, body: Text, who: User, console: ConsoleDep) -> Done:
    """The agent's next reply follows the guidance (the caller does not hear the whisper itself)."""
    action = await console.whisper(who, call_id, body.text)
    return Done(action=action, call_id=call_id)


@router.post("/calls/{call_id}/say", response_model=Done, summary="Speak to the caller (barge in, or reply)")
async def say(call_id: str, body: Text, who: User, console: ConsoleDep) -> Done:
    """A line from the supervisor to the caller: a barge-in while the AI has the call, a reply once held."""
    action = await console.say(who, call_id, body.text)
    return Done(action=action, call_id=call_id)


@router.post("/calls/{call_id}/take-over", response_model=Done, summary="Take the call off the AI")
async def take_over(call_id: str, who: User, console: ConsoleDep) -> Done:
    """The AI stops answering; keep the transcript stream open (or send heartbeats) to keep holding it."""
    await console.take_over(who, call_id)
    return Done(action="take_over", call_id=call_id)


@router.post("/calls/{call_id}/release", response_model=Done, summary="Send the call back to the AI")
async def release(call_id: str, who: User, console: ConsoleDep) -> Done:
    await console.release(who, call_id)
    return Done(action="release", call_id=call_id)


@router.post("/calls/{call_id}/reroute", response_model=Done, summary="Re-route to another specialist")
async def reroute(call_id: str, body: Reroute, who: User, console: ConsoleDep) -> Done:
    await console.reroute(who, call_id, body.agent)
    return Done(action="reroute", call_id=call_id)


@router.post(
    "/calls/{call_id}/join",
    response_model=RoomJoin,
    summary="Join a live call's room: listen in, barge in, or take an accepted escalation",
)
async def join(call_id: str, body: JoinRequest, who: User, console: ConsoleDep) -> RoomJoin:
    """A LiveKit token for the call's room, with grants by mode.

    ``listen`` is hidden from the caller and receive-only; ``barge`` takes the call over (the AI stays silent,
    as with a take-over) and may publish a microphone; ``escalation`` is for the supervisor who accepted the
    call's escalation only. Speaking needs a console session, not an API token.
    """
    return RoomJoin(**(await join_call(console, who, call_id, body.mode)).__dict__)


@router.post("/talk", response_model=RoomJoin, summary="Call the agent from the browser")
async def talk_to_agent(body: TalkRequest, who: User, console: ConsoleDep) -> RoomJoin:
    """A new call room and a caller token: joining the room places the call, admitted and answered like any
    WebRTC caller's (the room's webhook, the queue, a worker's agent). The call id is ``lk-<room sid>``."""
    return RoomJoin(**(await talk(console, who, body.caller_id)).__dict__)


@router.post("/calls/{call_id}/heartbeat", response_model=Heartbeat, summary="Keep holding a call")
async def heartbeat(call_id: str, who: User, console: ConsoleDep) -> Heartbeat:
    """For API clients without the transcript stream: call more often than the lease (default 15 s)."""
    return Heartbeat(holding=await console.heartbeat(who, call_id))


# ---------------------------------------------------------------------- escalations
@router.get("/escalations", response_model=list[TicketOut], summary="The escalation queue")
async def escalations(who: User, console: ConsoleDep) -> list[TicketOut]:
    """Waiting escalations: callers still on the line first, most urgent first, then longest waiting.

    Callers who hung up are not here: see `/callbacks`.
    """
    return [_entry_out(e) for e in await console.queue()]


@router.get("/callbacks", response_model=list[TicketOut], summary="Escalations owed a call back")
async def callbacks(who: User, console: ConsoleDep) -> list[TicketOut]:
    """Escalations whose caller hung up before a person took the call, with the number to ring back."""
    return [_entry_out(e) for e in await console.callbacks()]


@router.get("/escalations/{ticket_id}", response_model=TicketOut, summary="One escalation")
async def escalation(ticket_id: str, who: User, console: ConsoleDep) -> TicketOut:
    return _entry_out(await console.entry(await console.ticket(ticket_id)))


@router.post("/escalations/{ticket_id}/accept", response_model=Accepted, summary="Accept an escalation")
async def accept(ticket_id: str, who: User, console: ConsoleDep) -> Accepted:
    """Exactly one of two supervisors accepting the same escalation gets it; the other gets 409."""
    ticket, join = await console.accept(who, ticket_id)
    call = await console.feed.get(ticket.call_id)
    return Accepted(
        ticket=_ticket_out(ticket, agent=who.username, call_live=call is not None and call.status == "live"),
        livekit=LiveKitJoin(**join) if join else None,
        call_url=f"/console/calls/{ticket.call_id}",
    )


@router.post("/escalations/{ticket_id}/close", response_model=Done, summary="Close an escalation with a wrap-up code")
async def close(ticket_id: str, body: WrapUp, who: User, console: ConsoleDep) -> Done:
    """The person who handled it says what became of it (``disposition``, one of the wrap-up codes)."""
    await console.close_ticket(who, ticket_id, body.disposition, body.note)
    return Done(action="close_ticket")


def _iso_moment(value: object) -> object:
    # pydantic would also take a bare number as seconds since 1970; a person's query means a calendar date.
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("expected an ISO 8601 date or date-time, e.g. 2026-12-01 or 2026-12-01T09:00:00Z")
    return value


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
Moment = Annotated[datetime, BeforeValidator(_iso_moment)]


@router.get("/wrapups", summary="Escalations closed per wrap-up code")
async def wrapups(who: User, console: ConsoleDep, since: Moment | None = None) -> dict[str, int]:
    """Every wrap-up code with how many escalations were closed with it (since ``since``, else ever)."""
    return await console.wrapups(since=since)


@router.get("/customers/{account_id}", summary="A customer's context: who, plan, open tickets, last calls")
async def customer(account_id: str, who: User, console: ConsoleDep) -> dict[str, Any]:
    context = await console.customer_context(account_id)
    if context is None:
        raise ApiError(404, "customer_not_found", f"no customer {account_id!r}")
    return context


# ---------------------------------------------------------------------- lockouts
@router.post("/users/{username}/unlock", response_model=Done, summary="Lift a user's login lockout (admins)")
async def unlock_user(
    username: Annotated[str, Path(min_length=1, max_length=64)], request: Request, who: Admin, console: ConsoleDep
) -> Done:
    """Lets the user try their password again now, instead of after the lockout runs out."""
    throttle: LoginThrottle = request.app.state.login_throttle
    was = await throttle.unlock_user(username)
    await console.audit.record(who, "unlock", detail=f"user {username}" + ("" if was else " (was not locked out)"))
    return Done(action="unlock")


@router.post("/addresses/{address}/unlock", response_model=Done, summary="Lift a client address's lockout (admins)")
async def unlock_address(
    address: Annotated[str, Path(min_length=1, max_length=64)], request: Request, who: Admin, console: ConsoleDep
) -> Done:
    """Lets logins from the address through again now, instead of after the lockout runs out."""
    throttle: LoginThrottle = request.app.state.login_throttle
    was = await throttle.unlock_address(address)
    await console.audit.record(who, "unlock", detail=f"address {address}" + ("" if was else " (was not locked out)"))
    return Done(action="unlock")


# ---------------------------------------------------------------------- history and audit
@router.get("/history", summary="Call history with search")
async def history(
    who: User,
    console: ConsoleDep,
    response: Response,
    search: Annotated[str | None, Query(max_length=200)] = None,
    number: Annotated[str | None, Query(max_length=40, pattern=r".*\d.*")] = None,
    customer: Annotated[str | None, Query(max_length=100)] = None,
    outcome: Literal["resolved", "escalated", "transferred", "handled_by_human", "abandoned"] | None = None,
    intent: Annotated[str | None, Query(max_length=32)] = None,
    since: Moment | None = None,
    until: Moment | None = None,
    anomalous: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[dict[str, Any]]:
    """Finished calls, newest first (records are redacted); the matching total is in ``X-Total-Count``.

    ``search`` matches transcript text or a call id; ``number`` the caller's number in any format; ``customer``
    an account id or part of the account holder's name.
    """
    accounts = await console.accounts_matching(customer) if customer else None
    filters: dict[str, Any] = {
        "search": search or None,
        "number": number or None,
        "accounts": accounts,
        "outcome": outcome,
        "intent": intent or None,
        "since": since,
        "until": until,
        "anomalous": anomalous,
    }
    calls = await console.records.list_calls(**filters, limit=limit, offset=offset)
    response.headers["X-Total-Count"] = str(await console.records.count_calls(**filters))
    return [c.to_json() for c in calls]


@router.get("/history/{call_id}", summary="One finished call with turns, events and anomalies")
async def history_call(call_id: str, who: User, console: ConsoleDep) -> dict[str, Any]:
    view = await console.records.get_call(call_id)
    if view is None:
        raise ApiError(404, "call_not_found", f"no call record {call_id!r}")
    return view.to_json()


@router.get("/audit", response_model=AuditPage, summary="The audit log (admins)")
async def audit(
    who: Admin,
    console: ConsoleDep,
    call_id: Annotated[str | None, Query(max_length=200)] = None,
    username: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> AuditPage:
    entries, total = await console.audit.entries(limit=limit, offset=offset, call_id=call_id, username=username)
    return AuditPage(total=total, entries=[AuditOut(**e.to_json()) for e in entries])
