"""The console's HTML pages (server-rendered Jinja2, a little vanilla JavaScript), behind the API's sessions."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.console.api import check_login, get_console, set_session_cookie
from orchestrator.console.auth import CSRF_FIELD, LOGIN_COOKIE, SESSION_COOKIE, Principal, csrf_ok
from orchestrator.console.service import AGENTS, DISPOSITIONS, SLA_S, AuditEntry, Console, HistoryQuery
from orchestrator.console.softphone import public_url
from orchestrator.live import sentiment
from orchestrator.web.errors import ApiError

HERE = Path(__file__).parent
STATIC = {"console.css": "text/css", "console.js": "text/javascript", "softphone.js": "text/javascript"}
templates = Jinja2Templates(directory=str(HERE / "templates"))

router = APIRouter(prefix="/console", include_in_schema=False)
ConsoleDep = Annotated[Console, Depends(get_console)]


def _login_required(reason: str, next_url: str) -> StarletteHTTPException:
    # A 303 with Location: browsers go to the login page; the app's error handler keeps the JSON shape.
    location = f"/console/login?reason={reason}&next={quote(next_url)}"
    return StarletteHTTPException(303, detail="log in first", headers={"Location": location})


async def page_user(request: Request, console: ConsoleDep) -> Principal:
    """The logged-in user of a page; anyone else is sent to the login page (with why)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    next_url = request.url.path
    if not cookie:
        raise _login_required("login", next_url)
    session_id = console.signer.unsign(cookie)
    principal = await console.sessions.get(session_id) if session_id else None
    if principal is None:
        raise _login_required("expired", next_url)
    await console.seen(principal)
    return principal


PageUser = Annotated[Principal, Depends(page_user)]


def _render(
    request: Request, name: str, who: Principal | None, status: int = 200, *, connect: str = "", **context: Any
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        name,
        {"who": who, "csrf": who.csrf if who else "", "agents": AGENTS, "sentiment": sentiment, **context},
        status_code=status,
    )
    response.headers["Cache-Control"] = "no-store"
    # Pages may only load our own scripts and styles, and never be framed (clickjacking on the controls).
    # A softphone page also talks to the LiveKit server (``connect``), and nowhere else.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
        + (f"; connect-src 'self' {connect}" if connect else "")
    )
    response.headers["X-Frame-Options"] = "DENY"
    return response


_REASONS = {
    "expired": "Your session has expired. Please log in again.",
    "login": "Please log in to use the console.",
    "logout": "You have logged out.",
}


@router.get("/static/{name}")
async def static(name: str) -> FileResponse:
    if name not in STATIC:
        raise ApiError(404, "not_found", "no such file")
    return FileResponse(HERE / "static" / name, media_type=STATIC[name])


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, reason: str = "", next: str = "/console/calls") -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = _render(
        request, "login.html", None, message=_REASONS.get(reason, ""), next=_safe_next(next), token=token
    )
    # Double-submit token: a cross-site form cannot read this cookie, so it cannot log a victim in.
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict", path="/console/login")
    return response


@router.post("/login", response_class=HTMLResponse)
async def login_submit(request: Request, console: ConsoleDep) -> Response:
    form = await _form(request)
    next_url = _safe_next(form.get("next", "/console/calls"))
    username, password = form.get("username", ""), form.get("password", "")
    token = secrets.token_urlsafe(24)

    def refuse(message: str, status: int) -> Response:
        response = _render(
            request,
            "login.html",
            None,
            status,
            message=message,
            error=True,
            next=next_url,
            token=token,
            username=username,
        )
        response.set_cookie(LOGIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict", path="/console/login")
        return response

    if not csrf_ok(request.cookies.get(LOGIN_COOKIE, ""), form.get(CSRF_FIELD)):
        return refuse("The login form expired. Please try again.", 403)
    try:
        user = await check_login(request, console, username, password)
    except ApiError as exc:
        if exc.status == 429:
            response = refuse("Too many failed logins. Please try again later.", 429)
            response.headers.update(exc.headers or {})
            return response
        return refuse("Wrong username or password.", 401)
    principal = await console.sessions.create(user)
    await console.audit.record(principal, "login")
    response = RedirectResponse(next_url, status_code=303)
    set_session_cookie(response, console, principal)
    response.delete_cookie(LOGIN_COOKIE, path="/console/login")
    return response


@router.post("/logout")
async def logout(request: Request, who: PageUser, console: ConsoleDep) -> Response:
    form = await _form(request)
    if not csrf_ok(who.csrf, form.get(CSRF_FIELD)):
        raise ApiError(403, "csrf_failed", "missing or wrong CSRF token")
    await console.sessions.end(who.session_id)
    await console.audit.record(who, "logout")
    response = RedirectResponse("/console/login?reason=logout", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("")
async def home(who: PageUser) -> Response:
    return RedirectResponse("/console/calls", status_code=303)


@router.get("/calls", response_class=HTMLResponse)
async def calls_page(request: Request, who: PageUser, console: ConsoleDep) -> HTMLResponse:
    calls = await console.feed.live_calls()
    names = await console.customer_names({c.account_id for c in calls if c.account_id})
    return _render(request, "calls.html", who, calls=calls, names=names, page="calls")


@router.get("/wallboard", response_class=HTMLResponse)
async def wallboard_page(request: Request, who: PageUser, console: ConsoleDep) -> HTMLResponse:
    board = await console.wallboard(request.app.state.queue, sla_s=SLA_S)
    return _render(request, "wallboard.html", who, board=board, page="wallboard")


@router.get("/calls/{call_id}", response_class=HTMLResponse)
async def call_page(request: Request, call_id: str, who: PageUser, console: ConsoleDep) -> HTMLResponse:
    call = await console.feed.get(call_id)
    if call is None:
        return _render(request, "missing.html", who, 404, what=f"No live or recent call {call_id}.", page="calls")
    url = public_url(console)
    # The softphone is offered on live calls in a LiveKit room (ids lk-<room sid>), with LiveKit configured.
    softphone = url is not None and call.status == "live" and call.call_id.startswith("lk-") and bool(call.room)
    context = await console.customer_context(call.account_id)
    return _render(
        request,
        "call.html",
        who,
        connect=livekit_origins(url) if softphone and url else "",
        call=call,
        softphone=softphone,
        context=context,
        page="calls",
    )


@router.get("/talk", response_class=HTMLResponse)
async def talk_page(request: Request, who: PageUser, console: ConsoleDep) -> HTMLResponse:
    url = public_url(console)
    if url is None:
        what = "Talking to the agent needs LiveKit: set LIVEKIT_URL (and LIVEKIT_PUBLIC_URL for browsers elsewhere)."
        return _render(request, "missing.html", who, 409, what=what, page="talk")
    return _render(request, "talk.html", who, connect=livekit_origins(url), page="talk")


def livekit_origins(url: str) -> str:
    """The origins a browser uses for the LiveKit server at ``url``: its WebSocket and its HTTP one."""
    parts = urlsplit(url)
    secure = parts.scheme in ("wss", "https")
    host = parts.netloc
    return f"{'wss' if secure else 'ws'}://{host} {'https' if secure else 'http'}://{host}"


@router.get("/escalations", response_class=HTMLResponse)
async def escalations_page(request: Request, who: PageUser, console: ConsoleDep) -> HTMLResponse:
    rows = await console.queue()
    callbacks = await console.callbacks()
    return _render(request, "escalations.html", who, rows=rows, callbacks=callbacks, page="escalations")


@router.get("/escalations/{ticket_id}", response_class=HTMLResponse)
async def escalation_page(request: Request, ticket_id: str, who: PageUser, console: ConsoleDep) -> HTMLResponse:
    try:
        ticket = await console.ticket(ticket_id)
    except ApiError:
        return _render(request, "missing.html", who, 404, what=f"No escalation {ticket_id}.", page="escalations")
    entry = await console.entry(ticket)
    agent = entry.agent
    call = await console.feed.get(ticket.call_id)
    join = console.livekit_join(who, call) if agent == who.username else None
    context = await console.customer_context(ticket.account_id or (call.account_id if call else ""))
    return _render(
        request,
        "escalation.html",
        who,
        ticket=ticket,
        entry=entry,
        context=context,
        dispositions=DISPOSITIONS,
        wrapup=await console.wrapup_of(ticket_id),
        agent=agent,
        call=call,
        join=join,
        page="escalations",
    )


OUTCOMES = ("resolved", "escalated", "transferred", "handled_by_human", "abandoned")
INTENTS = ("billing", "scheduling", "support", "escalation", "out_of_scope")
PER_PAGE = 25


@router.get("/history", response_class=HTMLResponse)
async def history_page(
    request: Request,
    who: PageUser,
    console: ConsoleDep,
    search: str = "",
    number: str = "",
    customer: str = "",
    intent: str = "",
    outcome: str = "",
    since: str = "",
    until: str = "",
    page: str = "1",
) -> HTMLResponse:
    form = {
        "search": search.strip()[:200],
        "number": number.strip()[:40],
        "customer": customer.strip()[:100],
        "intent": intent if intent in INTENTS else "",
        "outcome": outcome if outcome in OUTCOMES else "",
        "since": since.strip()[:10],
        "until": until.strip()[:10],
    }
    tz = ZoneInfo(console.settings.tenant_timezone)
    error = ""
    try:
        start = _day(form["since"], tz, "From")
        end = _day(form["until"], tz, "To")
    except ValueError as exc:
        start = end = None
        error = str(exc)
    number_ok = not form["number"] or any(ch.isdigit() for ch in form["number"])
    if not number_ok:
        error = "Number: type the caller's digits, in any format."
    at = int(page) if page.isdigit() and 0 < int(page) < 100_000 else 1
    query = HistoryQuery(
        search=form["search"],
        number=form["number"],
        customer=form["customer"],
        intent=form["intent"],
        outcome=form["outcome"],
        since=start,
        until=end + timedelta(days=1) if end is not None else None,
        page=at,
        per_page=PER_PAGE,
    )
    calls, total, names = ([], 0, {}) if error else await console.history(query)
    pages = max(1, -(-total // PER_PAGE))
    link = {k: v for k, v in form.items() if v}
    return _render(
        request,
        "history.html",
        who,
        400 if error else 200,
        calls=calls,
        names=names,
        total=total,
        at=at,
        pages=pages,
        prev_url=f"/console/history?{urlencode({**link, 'page': at - 1})}" if at > 1 else "",
        next_url=f"/console/history?{urlencode({**link, 'page': at + 1})}" if at < pages else "",
        form=form,
        error=error,
        outcomes=OUTCOMES,
        intents=INTENTS,
        page="history",
    )


def _day(value: str, tz: ZoneInfo, label: str) -> datetime | None:
    """The start of a YYYY-MM-DD day in the tenant's time zone (None for an empty field)."""
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=tz)
    except ValueError:
        raise ValueError(f"{label}: a date like 2026-12-06, not {value!r}.") from None


@router.get("/history/{call_id}", response_class=HTMLResponse)
async def record_page(request: Request, call_id: str, who: PageUser, console: ConsoleDep) -> HTMLResponse:
    view = await console.records.get_call(call_id)
    if view is None:
        return _render(request, "missing.html", who, 404, what=f"No call record {call_id}.", page="history")
    names = await console.customer_names({view.account_id} if view.account_id else set())
    said = [e for e in view.events if e.get("event") == "human"]
    return _render(
        request,
        "record.html",
        who,
        view=view,
        customer=names.get(view.account_id or ""),
        timeline=[(int(e.get("turn") or 0), describe_event(e)) for e in view.events if e.get("event") != "human"],
        said=said,
        page="history",
    )


def _words(value: Any) -> str:
    return str(value or "").replace("_", " ")


def describe_event(event: dict[str, Any]) -> str:
    """One line of a call's timeline, in words, from a stored event."""
    kind = event.get("event")
    if kind == "handoff":
        return f"Handed from {event.get('from_agent')} to {event.get('to_agent')} ({_words(event.get('reason'))})."
    if kind == "tool":
        result = "done" if event.get("ok") else "failed"
        detail = str(event.get("result") or "")[:160]
        return f"{event.get('agent')} used {_words(event.get('name'))}: {result}" + (f" ({detail})" if detail else "")
    if kind == "intervention":
        what = {
            "escalate": "Supervisor escalated the call",
            "reroute": "Re-routed",
            "correct_reply": "Supervisor corrected a reply",
            "whisper": "A supervisor whispered to the AI",
            "take_over": "A person took the call",
            "warn": "Supervisor warned about the caller's language",
        }.get(str(event.get("kind")), _words(event.get("kind")).capitalize())
        detail = _words(event.get("detail"))
        return f"{what}: {_words(event.get('reason'))}" + (f" ({detail})" if detail else "") + "."
    return f"{_words(kind)}: {event}"


def describe_audit(entry: AuditEntry) -> str:
    """Who did what, in words, from an audit entry."""
    verb = {
        "login": "logged in",
        "logout": "logged out",
        "login_failed": "failed to log in",
        "login_locked": "was locked out",
        "unlock": "lifted a lockout",
        "whisper": "whispered to the AI on",
        "barge_in": "barged in on",
        "human_reply": "spoke to the caller on",
        "take_over": "took over",
        "release": "sent back to the AI",
        "auto_release": "lost contact; the AI got back",
        "reroute": "re-routed",
        "accept": "accepted the escalation of",
        "close_ticket": "closed the escalation of",
        "auto_requeue": "lost contact; back in the queue:",
        "callback": "owes a call back for",
        "abandoned": "closed as abandoned",
        "join_listen": "listened in on",
        "join_barge": "barged in with a microphone on",
        "join_escalation": "joined with a microphone",
        "talk": "called the agent from the browser",
    }.get(entry.action, _words(entry.action))
    target = f" call {entry.call_id}" if entry.call_id else ""
    ticket = f" (ticket {entry.ticket_id})" if entry.ticket_id else ""
    refused = " - refused" if entry.outcome != "ok" else ""
    return f"{entry.username} ({entry.role}) {verb}{target}{ticket}{refused}"


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request, who: PageUser, console: ConsoleDep, call_id: str = "", username: str = ""
) -> HTMLResponse:
    if not who.is_admin:
        return _render(request, "missing.html", who, 403, what="The audit log is for admins only.", page="audit")
    entries, total = await console.audit.entries(limit=200, call_id=call_id or None, username=username or None)
    return _render(
        request,
        "audit.html",
        who,
        entries=[(e, describe_audit(e)) for e in entries],
        total=total,
        call_id=call_id,
        username=username,
        page="audit",
    )


async def _form(request: Request) -> dict[str, str]:
    # python-multipart is not a dependency; these forms are urlencoded and small.
    body = (await request.body())[:16_384].decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _safe_next(url: str) -> str:
    # Only our own pages: never an open redirect to another site.
    if url.startswith("/console") and not url.startswith("//") and "\\" not in url and "/login" not in url:
        return url
    return "/console/calls"
