"""The console's actions (whisper, speak, take over, release, re-route, accept), the audit log, the lease watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from langgraph.graph.state import CompiledStateGraph
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from agents.graph import build_graph
from agents.ports import HumanTicket, NotFound, PolicyViolation
from agents.prompts import Prompts
from orchestrator.config import Settings
from orchestrator.console.auth import CookieSigner, Principal, SessionStore, UserStore
from orchestrator.console.models import AuditRow, CallbackRow, WrapUpRow, create_console_schema
from orchestrator.console.room_tokens import room_token
from orchestrator.domain import create_schema, open_engine
from orchestrator.domain.db import Store
from orchestrator.domain.desk import SqlHumanDesk
from orchestrator.domain.models import CustomerRow, TicketRow
from orchestrator.live import LiveCall, LiveFeed
from orchestrator.loops import rounds, stop_loop
from orchestrator.store.checkpoints import open_checkpointer
from orchestrator.store.models import CallRow
from orchestrator.store.records import CallStore, CallView, create_records_schema
from orchestrator.web.errors import ApiError

log = logging.getLogger(__name__)

AGENTS = ("scheduling", "billing", "support")
MAX_TEXT = 500
WATCHDOG_INTERVAL_S = 0.5
# How long closing the console waits for the watchdog's round in progress before cancelling it.
WATCHDOG_STOP_S = 5.0
# The watchdog settles the escalation queue (callers who hung up leave it) every this many rounds.
SETTLE_EVERY = 4
# Wrap-up codes a person picks when closing an escalation: what became of it.
DISPOSITIONS = (
    "resolved",
    "callback_done",
    "no_answer",
    "refund_issued",
    "technician_booked",
    "complaint_logged",
    "cancelled_service",
    "transferred",
    "other",
)
# Service level: the share of today's calls answered (claimed by a worker) within this many seconds.
SLA_S = 20
# A console user heard from within this long is signed in and at their desk.
PRESENT_S = 60.0
# A number that can be rung back (E.164 or a local format); WebRTC identities and "anonymous" are not.
_DIALABLE = re.compile(r"\+?[0-9][0-9 ().-]{5,30}")


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log."""

    id: int
    at: datetime
    username: str
    role: str
    action: str
    call_id: str | None
    ticket_id: str | None
    outcome: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "at": self.at.isoformat()}


@dataclass(frozen=True)
class QueueEntry:
    """One escalation as the queue shows it.

    Attributes:
        ticket: The ticket.
        call_live: Whether the caller is still on the line.
        caller: The caller's number ("" when unknown).
        waited_s: Seconds since the call was escalated.
        transcript_url: The call's transcript: the live page while the feed has it, else the call record.
        agent: The supervisor who took it, if any.
        left_at: When the caller hung up, for a callback.
        customer: The verified customer's name ("" when not verified).
    """

    ticket: HumanTicket
    call_live: bool
    caller: str
    waited_s: float
    transcript_url: str
    agent: str | None = None
    left_at: datetime | None = None
    customer: str = ""


@dataclass(frozen=True)
class HistoryQuery:
    """What History searches for; empty fields do not filter.

    Attributes:
        search: Words in the (redacted) transcript, or a call id prefix.
        number: The caller's number, in any format.
        customer: An account id, or part of the account holder's name.
        intent: The routed intent.
        outcome: The call's outcome.
        since: Started at or after.
        until: Started before.
        page: 1-based page.
        per_page: Rows per page.
    """

    search: str = ""
    number: str = ""
    customer: str = ""
    intent: str = ""
    outcome: str = ""
    since: datetime | None = None
    until: datetime | None = None
    page: int = 1
    per_page: int = 25

    @property
    def offset(self) -> int:
        return (max(1, self.page) - 1) * self.per_page


class AuditLog:
    """Every supervisor action, allowed or refused, in ``console_audit``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def record(
        self,
        who: Principal | str,
        action: str,
        *,
        call_id: str | None = None,
        ticket_id: str | None = None,
        outcome: str = "ok",
        detail: str = "",
        data: dict[str, Any] | None = None,
        role: str = "system",
    ) -> None:
        """Write one entry; ``who`` is the acting user, or a name acting as ``role`` (``system``, ``anonymous``)."""
        username, role = (who.username, who.role) if isinstance(who, Principal) else (who[:64], role)
        async with self._sessions.begin() as session:
            session.add(
                AuditRow(
                    at=datetime.now(UTC),
                    username=username,
                    role=role,
                    action=action,
                    call_id=call_id,
                    ticket_id=ticket_id,
                    outcome=outcome,
                    detail=detail[:2000],
                    data=data or {},
                )
            )

    async def entries(
        self, *, limit: int = 100, offset: int = 0, call_id: str | None = None, username: str | None = None
    ) -> tuple[list[AuditEntry], int]:
        """Newest first, and the total count matching the filters."""
        query = select(AuditRow)
        count = select(func.count()).select_from(AuditRow)
        if call_id:
            query, count = query.where(AuditRow.call_id == call_id), count.where(AuditRow.call_id == call_id)
        if username:
            query, count = query.where(AuditRow.username == username), count.where(AuditRow.username == username)
        async with self._sessions() as session:
            rows = (await session.execute(query.order_by(AuditRow.id.desc()).limit(limit).offset(offset))).scalars()
            total = int((await session.execute(count)).scalar_one())
            return [
                AuditEntry(r.id, r.at, r.username, r.role, r.action, r.call_id, r.ticket_id, r.outcome, r.detail)
                for r in rows
            ], total


class Console:
    """Everything the console's pages and API do, on one object that the app's lifespan builds.

    Args:
        settings: Console secrets and timers, LiveKit (for join tokens).
        engine: The store (users, audit log, call records, the tenant's human desk).
        graph: The call graph, whose checkpoints hold each call's state.
        desk: The human desk (escalation tickets).
        feed: The live-call registry.
        sessions: Server-side sessions.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine: AsyncEngine,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        desk: SqlHumanDesk,
        feed: LiveFeed,
        sessions: SessionStore,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.graph = graph
        self.desk = desk
        self.feed = feed
        self.sessions = sessions
        self.users = sessions.users
        self.audit = AuditLog(engine)
        self.records = CallStore(
            engine, timezone=settings.tenant_timezone, record_key=settings.record_key.get_secret_value()
        )
        self.signer = CookieSigner(settings.console_secret.get_secret_value())
        self._tickets = async_sessionmaker(engine, expire_on_commit=False)
        # Writes that read first take SQLite's write lock up front, as the tenant's own writes do.
        self._store = Store(engine)
        self.prompts = Prompts.load(settings.prompts_dir)

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, feed: LiveFeed) -> AsyncIterator[Console]:
        """Open the store, the desk and the calls' checkpoints, create the console's tables, run the lease watchdog.

        The graph is compiled only to read checkpointed call state: the console never runs a caller turn, so no
        intent model, chat model or tenant seeding is loaded.
        """
        async with AsyncExitStack() as stack:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            engine = open_engine(settings.sqlalchemy_url)
            stack.push_async_callback(engine.dispose)
            await create_schema(engine)
            await create_console_schema(engine)
            await create_records_schema(engine)
            graph = build_graph(await open_checkpointer(settings, stack))
            desk = SqlHumanDesk(Store(engine, timezone=settings.tenant_timezone))
            sessions = SessionStore(
                feed.redis, UserStore(engine), prefix=feed.prefix, ttl_s=settings.console_session_ttl_s
            )
            console = cls(settings, engine=engine, graph=graph, desk=desk, feed=feed, sessions=sessions)
            stop = asyncio.Event()
            watchdog = asyncio.create_task(console.watch_leases(stop), name="console-lease-watchdog")
            stack.push_async_callback(stop_loop, stop, watchdog, WATCHDOG_STOP_S)
            yield console

    # ------------------------------------------------------------------ who
    async def still_valid(self, who: Principal) -> bool:
        """Whether ``who`` may still act; long-lived streams ask as they go.

        Not once their session ended, nor once their user was removed, disabled, or given another password
        or role after they proved who they are.
        """
        if who.via == "session":
            return await self.sessions.get(who.session_id) is not None
        current = await self.users.stamp(who.username)
        return current is not None and current == who.stamp

    # ------------------------------------------------------------------ reading
    async def call_state(self, call_id: str) -> dict[str, Any]:
        snapshot = await self.graph.aget_state({"configurable": {"thread_id": call_id}})
        return dict(snapshot.values or {})

    async def live_call(self, call_id: str) -> LiveCall:
        """The live (or just ended) call, or 404."""
        call = await self.feed.get(call_id)
        if call is None:
            raise ApiError(404, "call_not_found", f"no live or recent call {call_id!r}")
        return call

    async def ticket(self, ticket_id: str) -> HumanTicket:
        async with self._tickets() as session:
            row = await session.get(TicketRow, ticket_id)
        if row is None:
            raise ApiError(404, "ticket_not_found", f"no escalation ticket {ticket_id!r}")
        return HumanTicket(
            ticket_id=row.ticket_id,
            call_id=row.call_id,
            account_id=row.account_id,
            reason=row.reason,
            summary=row.summary,
            priority=row.priority,
            status=row.status,  # type: ignore[arg-type]  # the column only holds the Literal's values
            created_at=row.created_at,
        )

    async def queue(self) -> list[QueueEntry]:
        """The waiting escalations: callers still on the line first, by priority then longest waiting.

        Tickets whose caller hung up are settled first (`settle_queue`), so none of them is offered as waiting;
        a ticket whose call neither the live feed nor the records know stays, after every live caller.
        """
        await self.settle_queue()
        entries = [await self.entry(t) for t in await self.desk.waiting()]
        # desk.waiting() is already by priority then age; a stable sort puts live callers before the rest.
        return sorted(entries, key=lambda e: not e.call_live)

    async def callbacks(self) -> list[QueueEntry]:
        """Escalations whose caller hung up before a person took the call, owed a call back."""
        return [await self.entry(t) for t in await self.desk.with_status("callback")]

    async def entry(self, ticket: HumanTicket) -> QueueEntry:
        """How the queue shows ``ticket``: caller, whether they are on the line, where the transcript is."""
        call = await self.feed.get(ticket.call_id)
        async with self._tickets() as session:
            callback = await session.get(CallbackRow, ticket.ticket_id)
            row = await session.get(TicketRow, ticket.ticket_id)
        caller = call.caller_id if call is not None and call.caller_id else (callback.number if callback else "")
        url = f"/console/calls/{ticket.call_id}" if call is not None else f"/console/history/{ticket.call_id}"
        account = ticket.account_id or (call.account_id if call is not None else "")
        names = await self.customer_names({account} if account else set())
        return QueueEntry(
            ticket=ticket,
            call_live=call is not None and call.status == "live",
            caller=caller,
            waited_s=max(0.0, (datetime.now(UTC) - ticket.created_at.astimezone(UTC)).total_seconds()),
            transcript_url=url,
            agent=row.agent if row is not None else None,
            left_at=callback.left_at if callback else None,
            customer=names.get(account, ""),
        )

    async def settle_queue(self) -> list[HumanTicket]:
        """Take the tickets whose caller hung up out of the waiting queue.

        A caller with a number to ring becomes a callback (the number kept in ``console_callbacks``); one
        without (a WebRTC caller, a withheld number) is closed as abandoned. A call has ended when the live
        feed says so or, once the feed forgot it, when its record exists.

        Returns:
            The tickets settled by this call (another API process may settle the rest).
        """
        waiting = await self.desk.waiting()
        if not waiting:
            return []
        async with self._tickets() as session:
            ids = {t.call_id for t in waiting}
            recorded = set((await session.execute(select(CallRow.call_id).where(CallRow.call_id.in_(ids)))).scalars())
        settled: list[HumanTicket] = []
        for ticket in waiting:
            call = await self.feed.get(ticket.call_id)
            if (call is not None and call.status == "live") or (call is None and ticket.call_id not in recorded):
                continue
            number = call.caller_id.strip() if call is not None else ""
            callback = bool(_DIALABLE.fullmatch(number))
            if callback:
                # The number first: a reader who sees the callback status must find its number.
                try:
                    async with self._store.write() as session:
                        await session.merge(
                            CallbackRow(
                                ticket_id=ticket.ticket_id,
                                call_id=ticket.call_id,
                                number=number,
                                left_at=datetime.now(UTC),
                            )
                        )
                except IntegrityError:
                    pass  # another settler (the watchdog, another API process) stored the same number first
            try:
                done = await self.desk.caller_left(ticket.ticket_id, callback=callback)
            except (PolicyViolation, NotFound):
                continue  # taken or settled meanwhile, by a supervisor or another API process
            what = f"callback to {number}" if callback else "abandoned: no number to ring back"
            await self.feed.append(
                ticket.call_id, "event", "system", f"The caller hung up before a person took the call ({what})."
            )
            await self.audit.record(
                "system",
                "callback" if callback else "abandoned",
                call_id=ticket.call_id,
                ticket_id=ticket.ticket_id,
                detail=ticket.reason,
            )
            settled.append(done)
        return settled

    async def history(self, query: HistoryQuery) -> tuple[list[CallView], int, dict[str, str]]:
        """One page of finished calls matching ``query``, newest first; the total; and customers' names by account."""
        accounts: list[str] | None = None
        if query.customer:
            accounts = await self.accounts_matching(query.customer)
        filters: dict[str, Any] = {
            "search": query.search or None,
            "number": query.number or None,
            "accounts": accounts,
            "intent": query.intent or None,
            "outcome": query.outcome or None,
            "since": query.since,
            "until": query.until,
        }
        calls = await self.records.list_calls(**filters, limit=query.per_page, offset=query.offset)
        total = await self.records.count_calls(**filters)
        names = await self.customer_names({c.account_id for c in calls if c.account_id})
        return calls, total, names

    async def accounts_matching(self, customer: str) -> list[str]:
        """Accounts whose id is ``customer`` or whose holder's name contains it."""
        like = f"%{customer.lower()}%"
        async with self._tickets() as session:
            rows = await session.execute(
                select(CustomerRow.account_id).where(
                    or_(func.upper(CustomerRow.account_id) == customer.upper(), func.lower(CustomerRow.name).like(like))
                )
            )
            return [str(r) for r in rows.scalars()]

    async def customer_names(self, accounts: set[str]) -> dict[str, str]:
        """The account holder's name for each of ``accounts`` (the console shows who called, not a number)."""
        if not accounts:
            return {}
        async with self._tickets() as session:
            rows = await session.execute(
                select(CustomerRow.account_id, CustomerRow.name).where(CustomerRow.account_id.in_(accounts))
            )
            return {str(a): str(n) for a, n in rows.all()}

    async def seen(self, who: Principal) -> None:
        """Note that ``who`` is at the console now (the wallboard counts the people available)."""
        if who.via == "session" and who.role == "supervisor":
            await self.feed.redis.zadd(f"{self.feed.prefix}:console:seen", {who.username: time.time()})

    async def wallboard(self, queue: Any, *, sla_s: int = SLA_S) -> dict[str, Any]:
        """The contact centre at a glance: waiting, longest wait, today's service level, abandonment,
        AI-handled against escalated, people available, and the live calls with who is on them."""
        stats = await queue.stats()
        people = await self.queue()
        waiting_people = [e for e in people if e.call_live]
        calls = await self.feed.live_calls()
        names = await self.customer_names({c.account_id for c in calls if c.account_id})
        tz = ZoneInfo(self.settings.tenant_timezone)
        midnight = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0)
        async with self._tickets() as session:
            today = (CallRow.started_at >= midnight,)
            total = int((await session.execute(select(func.count()).where(*today))).scalar_one())
            within = int(
                (
                    await session.execute(select(func.count()).where(*today, CallRow.queue_wait_ms <= sla_s * 1000))
                ).scalar_one()
            )
            by_outcome = {
                str(o): int(n)
                for o, n in (
                    await session.execute(select(CallRow.outcome, func.count()).where(*today).group_by(CallRow.outcome))
                ).all()
            }
        cutoff = time.time() - PRESENT_S
        present = set(await self.feed.redis.zrangebyscore(f"{self.feed.prefix}:console:seen", cutoff, "+inf"))
        busy = {c.controller for c in calls if c.controller}
        longest = max([stats.oldest_wait_s, *(e.waited_s for e in waiting_people)], default=0.0)
        abandoned = by_outcome.get("abandoned", 0)
        escalated = sum(by_outcome.get(o, 0) for o in ("escalated", "transferred", "handled_by_human"))
        return {
            "waiting": stats.waiting + len(waiting_people),
            "waiting_for_ai": stats.waiting,
            "waiting_for_person": len(waiting_people),
            "longest_wait_s": round(longest, 1),
            "callbacks": len(await self.desk.with_status("callback")),
            "sla_s": sla_s,
            "calls_today": total,
            "service_level": round(within / total, 3) if total else None,
            "abandoned_today": abandoned,
            "abandonment_rate": round(abandoned / total, 3) if total else None,
            "hung_up_in_queue": stats.abandoned,
            "ai_handled": by_outcome.get("resolved", 0),
            "escalated": escalated,
            "handled_by_human": by_outcome.get("handled_by_human", 0),
            "wrapups_today": {k: v for k, v in (await self.wrapups(since=midnight)).items() if v},
            "people_available": sorted(present - busy),
            "people_on_calls": sorted(busy),
            "live": [
                {
                    "call_id": c.call_id,
                    "customer": names.get(c.account_id, ""),
                    "account_id": c.account_id,
                    "intent": c.intent,
                    "agent": c.agent,
                    "duration_s": round(c.duration_s(), 1),
                    "sentiment": c.sentiment,
                    "controller": c.controller,
                }
                for c in calls
            ],
        }

    async def ticket_agent(self, ticket_id: str) -> str | None:
        async with self._tickets() as session:
            row = await session.get(TicketRow, ticket_id)
        return row.agent if row is not None else None

    # ------------------------------------------------------------------ call controls
    async def _live_or_refuse(self, who: Principal, action: str, call_id: str) -> LiveCall:
        call = await self.feed.get(call_id)
        if call is None or call.status != "live":
            await self.audit.record(who, action, call_id=call_id, outcome="refused", detail="not a live call")
            status, code = (404, "call_not_found") if call is None else (409, "call_ended")
            raise ApiError(status, code, f"call {call_id!r} is not live; controls apply to live calls only")
        return call

    async def _holder_check(self, who: Principal, action: str, call: LiveCall) -> None:
        if call.controller and call.controller != who.username:
            await self.audit.record(who, action, call_id=call.call_id, outcome="refused", detail=call.controller)
            raise ApiError(409, "held_by_other", f"{call.controller} holds this call; they must release it first")

    async def whisper(self, who: Principal, call_id: str, text: str) -> str:
        """Guidance for the AI agent, never read to the caller.

        With a language model configured, the next replies' prompts include it. Without one the AI runs
        deterministic flows that cannot follow free text: a whisper that names a flow action (a specialist
        to hand to, or a person) is carried out as that action, any other is refused (409
        ``cannot_follow``) so the supervisor knows to re-route, take over or speak themselves.

        Returns:
            ``whisper``, or the flow action taken instead (``reroute:<agent>``, ``escalate``).
        """
        text = _clean(text)
        call = await self._live_or_refuse(who, "whisper", call_id)
        if self.settings.llm_configured:
            await self.feed.push_command(call_id, {"kind": "whisper", "text": text, "by": who.username})
            await self.feed.append(call_id, "event", who.username, f"{who.username} whispered to the agent: {text}")
            await self.audit.record(who, "whisper", call_id=call_id, detail=text)
            return "whisper"
        action = flow_action(text)
        if action is None:
            await self.audit.record(who, "whisper", call_id=call_id, outcome="refused", detail=text)
            raise ApiError(
                409,
                "cannot_follow",
                "No language model is configured, so the AI follows fixed flows and cannot act on that guidance: "
                "re-route the call, take it over, or say it to the caller yourself",
            )
        await self._holder_check(who, "whisper", call)
        if action == "escalate":
            await self.feed.push_command(call_id, {"kind": "escalate", "by": who.username})
            note = "hand the call to a person"
        else:
            await self.feed.push_command(call_id, {"kind": "reroute", "agent": action, "by": who.username})
            note = f"hand the call to {action}"
        await self.feed.append(
            call_id, "event", who.username, f"{who.username} whispered to the agent: {text} (followed: {note})"
        )
        await self.audit.record(who, "whisper", call_id=call_id, detail=f"{text} -> {action}")
        return "escalate" if action == "escalate" else f"reroute:{action}"

    async def say(self, who: Principal, call_id: str, text: str) -> str:
        """A supervisor speaks to the caller: a barge-in while the AI has the call, a reply once they hold it.

        Returns:
            ``barge_in`` or ``human_reply``.
        """
        text = _clean(text)
        call = await self._live_or_refuse(who, "say", call_id)
        await self._holder_check(who, "say", call)
        action = "human_reply" if call.controller == who.username else "barge_in"
        await self.feed.append(call_id, "human", who.username, text, turn=call.turns)
        await self.feed.push_command(call_id, {"kind": "say", "text": text, "by": who.username})
        await self.audit.record(who, action, call_id=call_id, detail=text)
        return action

    async def take_over(self, who: Principal, call_id: str) -> None:
        """The supervisor takes the call off the AI (it stops answering) and holds it under a lease."""
        call = await self._live_or_refuse(who, "take_over", call_id)
        holder = await self.feed.acquire(
            call_id, who.username, mode="take_over", ticket_id=call.ticket_id, lease_s=self.settings.console_lease_s
        )
        if holder is not None:
            await self.audit.record(who, "take_over", call_id=call_id, outcome="refused", detail=holder)
            raise ApiError(409, "held_by_other", f"{holder} already holds this call")
        await self.feed.push_command(call_id, {"kind": "take_over", "by": who.username})
        await self.feed.append(call_id, "event", who.username, f"{who.username} took over the call.")
        await self.audit.record(who, "take_over", call_id=call_id)

    async def release(self, who: Principal | str, call_id: str, *, action: str = "release") -> None:
        """Send the call back to the AI (the specialist it had, else the router) and close its ticket."""
        call = await self.feed.get(call_id)
        if isinstance(who, Principal):
            call = await self._live_or_refuse(who, action, call_id)
            await self._holder_check(who, action, call)
        held = await self.feed.drop(call_id)
        if call is None or call.status != "live":
            return
        await self.feed.push_command(call_id, {"kind": "release", "by": _name(who)})
        ticket_id = held.get("ticket_id") or call.ticket_id
        if ticket_id:
            with contextlib.suppress(PolicyViolation, NotFound):
                await self.desk.close(ticket_id)
        note = "sent the call back to the AI" if action == "release" else "lost contact; the call goes back to the AI"
        await self.feed.append(call_id, "event", _name(who), f"{_name(who)} {note}.")
        await self.audit.record(who, action, call_id=call_id, ticket_id=ticket_id or None)

    async def reroute(self, who: Principal, call_id: str, agent: str) -> None:
        """Hand the call to another specialist from the next turn on."""
        if agent not in AGENTS:
            raise ApiError(422, "invalid_request", f"agent: must be one of {', '.join(AGENTS)}")
        call = await self._live_or_refuse(who, "reroute", call_id)
        await self._holder_check(who, "reroute", call)
        if call.controller:
            # A held call goes back to the AI at the chosen specialist: release with a target.
            await self.feed.drop(call_id)
            await self.feed.push_command(call_id, {"kind": "release", "agent": agent, "by": who.username})
        else:
            await self.feed.push_command(call_id, {"kind": "reroute", "agent": agent, "by": who.username})
        await self.feed.append(call_id, "event", who.username, f"{who.username} re-routed the call to {agent}.")
        await self.audit.record(who, "reroute", call_id=call_id, detail=agent)

    async def heartbeat(self, who: Principal, call_id: str) -> bool:
        """Keep holding the call; False (and nothing renewed) if ``who`` does not hold it."""
        return await self.feed.renew(call_id, who.username, lease_s=self.settings.console_lease_s)

    async def stream_closed(self, who: Principal, call_id: str) -> None:
        """The holder's transcript stream closed: release after the grace period unless they come back."""
        holder = await self.feed.holder(call_id)
        if holder.get("username") == who.username:
            await self.feed.redis.zadd(
                self.feed.leases_key, {call_id: time.time() + self.settings.console_disconnect_grace_s}, xx=True
            )

    # ------------------------------------------------------------------ escalations
    async def accept(self, who: Principal, ticket_id: str) -> tuple[HumanTicket, dict[str, str] | None]:
        """Take an escalation: exactly one of two concurrent accepts wins (409 for the other).

        Returns:
            The ticket (its summary is shown before the supervisor joins) and, with LiveKit configured,
            ``{"url", "room", "token"}`` for joining the room.
        """
        try:
            ticket = await self.desk.accept(ticket_id, who.username)
        except NotFound:
            await self.audit.record(who, "accept", ticket_id=ticket_id, outcome="refused", detail="no such ticket")
            raise ApiError(404, "ticket_not_found", f"no escalation ticket {ticket_id!r}") from None
        except PolicyViolation:
            taker = await self.ticket_agent(ticket_id)
            await self.audit.record(who, "accept", ticket_id=ticket_id, outcome="refused", detail=f"taken by {taker}")
            raise ApiError(
                409, "already_taken", f"{taker or 'another supervisor'} has already taken this escalation"
            ) from None
        call = await self.feed.get(ticket.call_id)
        if call is not None and call.status == "live":
            await self.feed.drop(ticket.call_id)
            await self.feed.acquire(
                ticket.call_id,
                who.username,
                mode="escalation",
                ticket_id=ticket_id,
                lease_s=self.settings.console_lease_s,
            )
            # The graph learns a person is on the line, so the AI stops its hold lines from the next turn.
            await self.feed.push_command(
                ticket.call_id, {"kind": "take_over", "mode": "escalation", "by": who.username}
            )
            if self.settings.livekit_url:
                # The caller hears nobody until the supervisor is in the room: if they never come, the call
                # goes back to the queue (the watchdog) rather than leaving the caller in silence.
                await self.feed.expect_in_room(
                    ticket.call_id, who.username, by=time.time() + self.settings.escalation_join_s
                )
            await self.feed.append(ticket.call_id, "event", who.username, f"{who.username} accepted the escalation.")
        await self.audit.record(who, "accept", call_id=ticket.call_id, ticket_id=ticket_id)
        return ticket, self.livekit_join(who, call)

    def livekit_join(self, who: Principal, call: LiveCall | None) -> dict[str, str] | None:
        """A LiveKit access token for the call's room, when LiveKit is configured."""
        if not self.settings.livekit_url or call is None:
            return None
        room = call.room or call.call_id
        token = room_token(self.settings, who, room, "escalation")
        return {"url": self.settings.livekit_public_url or self.settings.livekit_url, "room": room, "token": token}

    async def close_ticket(self, who: Principal, ticket_id: str, disposition: str, note: str = "") -> None:
        """Close an escalation with the wrap-up code the person picked (`DISPOSITIONS`) and an optional note."""
        if disposition not in DISPOSITIONS:
            raise ApiError(422, "invalid_request", f"disposition: must be one of {', '.join(DISPOSITIONS)}")
        note = " ".join(note.split())[:MAX_TEXT]
        ticket = await self.ticket(ticket_id)
        try:
            await self.desk.close(ticket_id)
        except PolicyViolation as exc:
            raise ApiError(409, "ticket_closed", str(exc)) from None
        async with self._store.write() as session:
            await session.merge(
                WrapUpRow(
                    ticket_id=ticket_id,
                    call_id=ticket.call_id,
                    code=disposition,
                    note=note,
                    username=who.username,
                    at=datetime.now(UTC),
                )
            )
        holder = await self.feed.holder(ticket.call_id)
        if holder.get("ticket_id") == ticket_id:
            await self.feed.drop(ticket.call_id)
        await self.audit.record(
            who, "close_ticket", call_id=ticket.call_id, ticket_id=ticket_id, detail=f"{disposition} {note}".strip()
        )

    async def wrapups(self, *, since: datetime | None = None) -> dict[str, int]:
        """How many escalations were closed with each wrap-up code (since ``since``), every code listed."""
        query = select(WrapUpRow.code, func.count()).group_by(WrapUpRow.code)
        if since is not None:
            query = query.where(WrapUpRow.at >= since)
        async with self._tickets() as session:
            counts = {str(c): int(n) for c, n in (await session.execute(query)).all()}
        return {code: counts.get(code, 0) for code in DISPOSITIONS}

    async def wrapup_of(self, ticket_id: str) -> WrapUpRow | None:
        async with self._tickets() as session:
            return await session.get(WrapUpRow, ticket_id)

    async def customer_context(self, account_id: str) -> dict[str, Any] | None:
        """What a person taking a call should know of the customer: who, plan, open tickets, last calls."""
        if not account_id:
            return None
        async with self._tickets() as session:
            customer = await session.get(CustomerRow, account_id)
            if customer is None:
                return None
            tickets = (
                (
                    await session.execute(
                        select(TicketRow)
                        .where(
                            TicketRow.account_id == account_id,
                            TicketRow.status.in_(("waiting", "accepted", "callback")),
                        )
                        .order_by(TicketRow.created_at.desc())
                        .limit(10)
                    )
                )
                .scalars()
                .all()
            )
        calls = await self.records.list_calls(accounts=[account_id], limit=5)
        return {
            "account_id": account_id,
            "name": customer.name,
            "plan": customer.plan,
            "vip": customer.vip,
            "open_tickets": [
                {"ticket_id": t.ticket_id, "call_id": t.call_id, "reason": t.reason, "status": t.status}
                for t in tickets
            ],
            "last_calls": [
                {"call_id": c.call_id, "started_at": c.started_at, "outcome": c.outcome, "intent": c.intent or ""}
                for c in calls
            ],
        }

    async def requeue(self, ticket_id: str, call_id: str, by: str) -> None:
        """Put an accepted escalation whose supervisor vanished back in the queue, one step more urgent."""
        ticket = await self.ticket(ticket_id)
        with contextlib.suppress(PolicyViolation, NotFound):
            await self.desk.close(ticket_id)
        again = await self.desk.open_ticket(
            call_id=ticket.call_id,
            account_id=ticket.account_id,
            reason=ticket.reason,
            summary=ticket.summary,
            priority=max(0, ticket.priority - 1),
        )
        await self.feed.redis.hset(self.feed._k("call", call_id), "ticket_id", again.ticket_id)
        # The graph waits for a person again (hold lines, not silence), and the caller hears why at once.
        await self.feed.push_command(call_id, {"kind": "requeue", "by": by})
        await self.feed.append(call_id, "event", by, f"{by} lost contact; the call is back in the escalation queue.")
        await self.feed.append(call_id, "notice", "escalation", self.prompts.reply("escalation.reconnecting"))
        await self.audit.record(by, "auto_requeue", call_id=call_id, ticket_id=again.ticket_id, detail=ticket_id)

    # ------------------------------------------------------------------ the watchdog
    async def watch_leases(self, stop: asyncio.Event) -> None:
        """Release held calls whose supervisor went silent: back to the AI, or back to the escalation queue.

        Every few rounds it also settles the escalation queue, so callers who hung up leave it whether or not
        anyone is looking. Runs until ``stop`` is set.
        """
        async for n in rounds(WATCHDOG_INTERVAL_S, stop):
            try:
                if n % SETTLE_EVERY == 0:
                    await self.settle_queue()
                for call_id in await self.feed.lapsed():
                    await self._holder_gone(call_id)
                for call_id in await self.feed.absent():
                    # The supervisor never joined the room, or left it and did not come back in time.
                    if await self.feed.claim_absent(call_id):
                        await self._holder_gone(call_id)
            except Exception:  # noqa: BLE001 - one bad round (Redis restarting) must not end the watchdog
                log.exception("console lease watchdog")

    async def _holder_gone(self, call_id: str) -> None:
        """The call's holder is gone: an accepted escalation back to the queue, a take-over back to the AI."""
        held = await self.feed.drop(call_id)
        if not held:
            return  # released meanwhile, or another API process got there first
        by = held.get("username", "")
        call = await self.feed.get(call_id)
        if call is None or call.status != "live":
            return
        if held.get("mode") == "escalation" and held.get("ticket_id"):
            await self.requeue(held["ticket_id"], call_id, by)
        else:
            await self.feed.push_command(call_id, {"kind": "release", "by": by})
            await self.feed.append(call_id, "event", by, f"{by} lost contact; the call goes back to the AI.")
            await self.audit.record(by, "auto_release", call_id=call_id)


# What a whisper must say for the flows to follow it without a language model: a hand-off they can make.
_TO_PERSON = re.compile(
    r"\b(escalate|(transfer|hand|pass|put|send|give)\b.{0,30}\b(person|human|agent|me|supervisor|manager|team))",
    re.IGNORECASE,
)
_TO_SPECIALIST = {
    "billing": re.compile(r"\b(billing|bill|payment|balance|refund|invoice|charges?)\b", re.IGNORECASE),
    "scheduling": re.compile(
        r"\b(scheduling|schedule|appointment|technician|book(ing)?|reschedule|visit)\b", re.IGNORECASE
    ),
    "support": re.compile(r"\b(support|outage|router|troubleshoot(ing)?|internet|wi-?fi|password)\b", re.IGNORECASE),
}
_HAND_OFF = re.compile(r"\b(route|transfer|hand|pass|send|move|switch|put|take)\b", re.IGNORECASE)


def flow_action(text: str) -> str | None:
    """The flow action a whisper asks for, for an AI without a language model: ``escalate``, a specialist, or None.

    Only a hand-off the flows can make counts ("transfer them to billing", "escalate to a person"); anything
    else ("offer to waive the fee") is free text they cannot follow.
    """
    if _TO_PERSON.search(text):
        return "escalate"
    if _HAND_OFF.search(text):
        named = [agent for agent, words in _TO_SPECIALIST.items() if words.search(text)]
        if len(named) == 1:
            return named[0]
    return None


def _clean(text: str) -> str:
    text = " ".join((text or "").split())
    if not text:
        raise ApiError(422, "invalid_request", "text: must not be empty")
    if len(text) > MAX_TEXT:
        raise ApiError(422, "invalid_request", f"text: at most {MAX_TEXT} characters")
    return text


def _name(who: Principal | str) -> str:
    return who.username if isinstance(who, Principal) else who
