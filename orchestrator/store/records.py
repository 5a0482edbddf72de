"""Call records: write one finished call (redacted), list and search calls, load one, purge old ones."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, inspect, or_, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import selectinload

from orchestrator.config import DEV_RECORD_KEY
from orchestrator.redact import digits_of, names_in, number_key, redact_text, redact_turns
from orchestrator.results import AnomalyFlag, is_first_contact_resolution, is_success, segments_of
from orchestrator.sql import create_tables
from orchestrator.stats import percentile
from orchestrator.store.models import AnomalyRow, CallRow, EventRow, RecordsBase, TurnRow

if TYPE_CHECKING:
    from orchestrator.config import Settings
    from orchestrator.results import CallResult

# Any constant works; it only has to be the same in every process that creates the records' tables.
_SCHEMA_LOCK_KEY = 0x5B_D0_CA_11


# Columns added to `cc_calls` after it first shipped: create_all makes missing tables, never missing columns.
_ADDED_COLUMNS = ("caller_id", "caller_digits", "account_id")


async def create_records_schema(engine: AsyncEngine) -> None:
    """Create the `cc_*` tables that do not exist yet, and add columns newer than an existing `cc_calls`.

    Safe from several processes at once: a column another process added meanwhile is left as it is.
    """
    await create_tables(engine, RecordsBase.metadata)
    async with engine.connect() as conn:
        have = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("cc_calls")})
    for name in _ADDED_COLUMNS:
        if name in have:
            continue
        column = CallRow.__table__.c[name]
        try:
            async with engine.begin() as conn:
                kind = column.type.compile(conn.dialect)
                await conn.execute(text(f"ALTER TABLE cc_calls ADD COLUMN {name} {kind}"))
        except DBAPIError:
            async with engine.connect() as conn:
                now = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("cc_calls")})
            if name not in now:
                raise


class PricedCall(Protocol):
    """What a record keeps of a call's priced usage (telemetry's `CallCost` is one)."""

    @property
    def known_usd(self) -> float: ...

    @property
    def unknown(self) -> list[str]: ...

    @property
    def total_usd(self) -> float | None: ...

    def by_component(self) -> dict[str, float]: ...

    def by_turn(self, turns: int) -> list[float]: ...


# A caller id with this many digits is a phone number: stored masked, searchable by its key only.
_PHONE_DIGITS = 7


def masked_number(caller_id: str) -> str:
    """What a call record keeps of the caller's id: a phone number's last four digits, other ids as given."""
    digits = re.sub(r"\D", "", caller_id)
    return f"***{digits[-4:]}" if len(digits) >= _PHONE_DIGITS else caller_id


@dataclass(frozen=True)
class TurnView:
    """One stored turn (redacted)."""

    idx: int
    caller: str
    agent: str
    agent_name: str
    intent: str | None
    confidence: float | None
    latency_ms: float
    graph_ms: float
    cost_usd: float
    segment: str


@dataclass(frozen=True)
class CallView:
    """One stored call; `turns`, `events` and `anomalies` are filled by `get_call` and `load_calls`."""

    call_id: str
    started_at: datetime
    ended_at: datetime
    local_hour: int
    duration_s: float
    outcome: str
    success: bool
    first_contact_resolved: bool
    escalation_reason: str | None
    ticket_id: str | None
    intent: str | None
    agent: str | None
    turn_count: int
    queue_wait_ms: float | None
    worker: str
    attempt: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cost_usd: float | None
    cost_known_usd: float
    cost_unknown: list[str]
    cost_by_component: dict[str, float]
    anomaly_count: int
    trace_id: str | None
    errors: list[str]
    caller_id: str | None = None
    account_id: str | None = None
    turns: list[TurnView] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    anomalies: list[AnomalyFlag] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in {"turns", "events", "anomalies"}}
        data["started_at"] = self.started_at.isoformat()
        data["ended_at"] = self.ended_at.isoformat()
        data["turns"] = [t.__dict__ for t in self.turns]
        data["events"] = self.events
        data["anomalies"] = [a.to_json() | {"turn": a.turn, "score": a.score} for a in self.anomalies]
        return data


def _redact_value(value: Any, names: set[str]) -> Any:
    if isinstance(value, str):
        # An event has no dialogue to tell a ZIP answer from another number (a tool's `zip_code` argument is
        # one): five digits on their own are taken as a ZIP code.
        return redact_text(value, names=names, zip_expected=True)
    if isinstance(value, Mapping):
        return {str(k): _redact_value(v, names) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v, names) for v in value]
    return value if isinstance(value, int | float | bool) or value is None else str(value)


def _view(row: CallRow, *, full: bool) -> CallView:
    return CallView(
        call_id=row.call_id,
        started_at=row.started_at,
        ended_at=row.ended_at,
        local_hour=row.local_hour,
        duration_s=row.duration_s,
        outcome=row.outcome,
        success=row.success,
        first_contact_resolved=row.first_contact_resolved,
        escalation_reason=row.escalation_reason,
        ticket_id=row.ticket_id,
        intent=row.intent,
        agent=row.agent,
        turn_count=row.turns,
        queue_wait_ms=row.queue_wait_ms,
        worker=row.worker,
        attempt=row.attempt,
        latency_p50_ms=row.latency_p50_ms,
        latency_p95_ms=row.latency_p95_ms,
        cost_usd=row.cost_usd,
        cost_known_usd=row.cost_known_usd,
        cost_unknown=list(row.cost_unknown or []),
        cost_by_component=dict(row.cost_by_component or {}),
        anomaly_count=row.anomaly_count,
        trace_id=row.trace_id,
        errors=list(row.errors or []),
        caller_id=row.caller_id,
        account_id=row.account_id,
        turns=[
            TurnView(
                t.idx,
                t.caller,
                t.agent,
                t.agent_name,
                t.intent,
                t.confidence,
                t.latency_ms,
                t.graph_ms,
                t.cost_usd,
                t.segment,
            )
            for t in row.turn_rows
        ]
        if full
        else [],
        events=[{**e.data, "event": e.kind, "turn": e.turn} for e in row.event_rows] if full else [],
        anomalies=[AnomalyFlag(row.call_id, a.kind, a.why, a.turn, a.score) for a in row.anomaly_rows] if full else [],
    )


class CallStore:
    """Call records on the tenant's database (SQLite embedded, PostgreSQL in production).

    Args:
        engine: The async engine (`Services.engine`, or `open_engine(settings.sqlalchemy_url)`).
        timezone: The tenant's time zone, for the hour-of-day of each call.
        record_key: The key of the callers' number search keys (`Settings.record_key`); every process of a
            deployment needs the same one, or searches by number find nothing.
    """

    def __init__(
        self, engine: AsyncEngine, *, timezone: str = "America/New_York", record_key: str = DEV_RECORD_KEY
    ) -> None:
        self.engine = engine
        self.tz = ZoneInfo(timezone)
        self._record_key = record_key
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    async def open(cls, engine: AsyncEngine, settings: Settings) -> CallStore:
        """The records on ``engine`` with the tenant's time zone and number key, their tables created if needed."""
        store = cls(engine, timezone=settings.tenant_timezone, record_key=settings.record_key.get_secret_value())
        await store.create_schema()
        return store

    async def create_schema(self) -> None:
        await create_records_schema(self.engine)
        await self._hide_clear_numbers()

    def _number_key(self, caller_id: str) -> str | None:
        return number_key(caller_id, self._record_key) if len(digits_of(caller_id)) >= _PHONE_DIGITS else None

    async def _hide_clear_numbers(self) -> None:
        """Rows written before numbers were keyed kept them in clear: mask them and key their search column.

        Every process opening the schema may run this at once. Reading first and then writing each row in a
        transaction that starts with its write keeps SQLite from the deadlock of two readers upgrading to
        writers; a row another process has already masked no longer matches its update.
        """
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    # A key is 32 characters; the digits kept in clear were 10 at most.
                    select(CallRow.call_id, CallRow.caller_id, CallRow.caller_digits).where(
                        func.length(CallRow.caller_digits) <= 10
                    )
                )
            ).all()
        for call_id, caller_id, clear in rows:
            if caller_id is None or len(digits_of(caller_id)) < _PHONE_DIGITS:
                continue
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(CallRow)
                    .where(CallRow.call_id == call_id, CallRow.caller_digits == clear)
                    .values(caller_id=masked_number(caller_id), caller_digits=self._number_key(caller_id))
                )

    async def record_call(
        self,
        result: CallResult,
        *,
        started_at: datetime,
        duration_s: float,
        queue_wait_ms: float | None = None,
        worker: str = "",
        attempt: int = 1,
        cost: PricedCall | None = None,
        anomalies: Sequence[AnomalyFlag] = (),
        trace_id: str | None = None,
        names: Iterable[str] = (),
    ) -> CallView:
        """Store one finished call, replacing an earlier record of it (delivery is at least once).

        Args:
            result: The session's result (turns, handoffs, tool events, interventions, outcome).
            started_at: When the session started (aware).
            duration_s: Wall-clock length of the session.
            queue_wait_ms: Enqueue-to-claim wait of the attempt that finished it.
            worker: The worker that ran it.
            attempt: 1-based attempt that finished it.
            cost: The priced usage (None: not priced at all).
            anomalies: Flags from the anomaly detector.
            trace_id: The call's trace id (32 hex), to jump from a record to its trace.
            names: The verified caller's names, masked everywhere (spoken names are found on their own).
        """
        raw_turns = [(t.caller, t.agent) for t in result.turns]
        all_names = set(names) | names_in(a for _, a in raw_turns)
        redacted = redact_turns(raw_turns, names=all_names)
        agents = [t.agent_name for t in result.turns]
        segments = segments_of(agents)
        per_turn = cost.by_turn(len(result.turns)) if cost is not None else [0.0] * len(result.turns)
        latencies = [t.latency_ms for t in result.turns]
        intent = next((t.intent for t in result.turns if t.intent and t.intent != "out_of_scope"), None)
        agent = next((str(h.get("to_agent")) for h in result.handoffs if h.get("to_agent")), None)
        ended_at = started_at + timedelta(seconds=duration_s)
        row = CallRow(
            call_id=result.call_id,
            started_at=started_at,
            ended_at=ended_at,
            local_hour=started_at.astimezone(self.tz).hour,
            duration_s=round(duration_s, 3),
            outcome=result.outcome,
            success=is_success(result.outcome, result.errors),
            first_contact_resolved=is_first_contact_resolution(result.outcome, result.resolutions),
            escalation_reason=result.escalation_reason,
            ticket_id=result.ticket_id,
            intent=intent,
            agent=agent,
            turns=len(result.turns),
            resolutions=list(result.resolutions),
            errors=[e.split(":", 1)[0] for e in result.errors],
            queue_wait_ms=queue_wait_ms,
            worker=worker,
            attempt=attempt,
            latency_p50_ms=round(percentile(latencies, 50), 2) if latencies else None,
            latency_p95_ms=round(percentile(latencies, 95), 2) if latencies else None,
            latency_max_ms=max(latencies) if latencies else None,
            cost_usd=cost.total_usd if cost is not None else None,
            cost_known_usd=cost.known_usd if cost is not None else 0.0,
            cost_unknown=cost.unknown if cost is not None else ["unpriced"],
            cost_by_component=cost.by_component() if cost is not None else {},
            anomaly_count=len(anomalies),
            trace_id=trace_id,
            caller_id=masked_number(result.caller_id) if result.caller_id else None,
            caller_digits=self._number_key(result.caller_id or ""),
            account_id=result.account_id,
        )
        row.turn_rows = [
            TurnRow(
                idx=i,
                caller=r.caller,
                agent=r.agent,
                agent_name=t.agent_name,
                intent=t.intent,
                confidence=t.confidence,
                latency_ms=t.latency_ms,
                graph_ms=t.graph_ms,
                cost_usd=round(per_turn[i - 1], 8) if i - 1 < len(per_turn) else 0.0,
                segment=segments[i - 1],
            )
            for i, (t, r) in enumerate(zip(result.turns, redacted, strict=True), start=1)
        ]
        events: list[EventRow] = []
        for kind, items in (
            ("handoff", result.handoffs),
            ("intervention", result.interventions),
            ("tool", result.tool_events),
            ("human", result.human_lines),
        ):
            for item in items:
                data = _redact_value({k: v for k, v in item.items() if k != "turn"}, all_names)
                events.append(
                    EventRow(
                        kind=kind, turn=int(item.get("turn", 0) or 0), data=json.loads(json.dumps(data, default=str))
                    )
                )
        row.event_rows = events
        row.anomaly_rows = [AnomalyRow(kind=a.kind, why=a.why, turn=a.turn, score=a.score) for a in anomalies]
        async with self._sessions() as session, session.begin():
            for child in (TurnRow, EventRow, AnomalyRow):
                await session.execute(delete(child).where(child.call_id == result.call_id))
            await session.execute(delete(CallRow).where(CallRow.call_id == result.call_id))
            await session.flush()
            session.add(row)
        return _view(row, full=True)

    async def get_call(self, call_id: str) -> CallView | None:
        """One call with its turns, events and anomaly flags."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(CallRow)
                    .where(CallRow.call_id == call_id)
                    .options(
                        selectinload(CallRow.turn_rows),
                        selectinload(CallRow.event_rows),
                        selectinload(CallRow.anomaly_rows),
                    )
                )
            ).scalar_one_or_none()
            return _view(row, full=True) if row is not None else None

    async def list_calls(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        outcome: str | None = None,
        intent: str | None = None,
        anomalous: bool | None = None,
        search: str | None = None,
        number: str | None = None,
        accounts: Sequence[str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[CallView]:
        """Calls, newest first, without their turns.

        Args:
            since: Started at or after.
            until: Started before.
            outcome: `resolved`, `escalated`, `transferred`, `abandoned` or `handled_by_human`.
            intent: The call's first routed intent.
            anomalous: Only calls with (True) or without (False) anomaly flags.
            search: Case-insensitive text in the redacted transcript, or a call id prefix.
            number: The caller's number in any format (its digits are matched, the last ten at most).
            accounts: Only calls whose caller was verified on one of these accounts.
            limit: Page size.
            offset: Rows to skip.
        """
        query = self._filtered(
            select(CallRow), since, until, outcome, intent, anomalous, search, number, accounts
        ).order_by(CallRow.started_at.desc(), CallRow.call_id)
        async with self._sessions() as session:
            rows = (await session.execute(query.limit(limit).offset(offset))).scalars().all()
            return [_view(r, full=False) for r in rows]

    async def count_calls(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        outcome: str | None = None,
        intent: str | None = None,
        anomalous: bool | None = None,
        search: str | None = None,
        number: str | None = None,
        accounts: Sequence[str] | None = None,
    ) -> int:
        """How many calls `list_calls` would page through with the same filters."""
        query = self._filtered(
            select(func.count()).select_from(CallRow),
            since,
            until,
            outcome,
            intent,
            anomalous,
            search,
            number,
            accounts,
        )
        async with self._sessions() as session:
            return int((await session.execute(query)).scalar_one())

    def _filtered(
        self,
        query: Any,
        since: datetime | None,
        until: datetime | None,
        outcome: str | None,
        intent: str | None,
        anomalous: bool | None,
        search: str | None,
        number: str | None,
        accounts: Sequence[str] | None,
    ) -> Any:
        if since is not None:
            query = query.where(CallRow.started_at >= since)
        if until is not None:
            query = query.where(CallRow.started_at < until)
        if outcome:
            query = query.where(CallRow.outcome == outcome)
        if intent:
            query = query.where(CallRow.intent == intent)
        if anomalous is not None:
            query = query.where(CallRow.anomaly_count > 0 if anomalous else CallRow.anomaly_count == 0)
        if number is not None:
            query = query.where(CallRow.caller_digits == (self._number_key(number) or "-"))
        if accounts is not None:
            query = query.where(CallRow.account_id.in_(list(accounts)))
        if search:
            like = f"%{search.lower()}%"
            matching = select(TurnRow.call_id).where(
                or_(func.lower(TurnRow.caller).like(like), func.lower(TurnRow.agent).like(like))
            )
            query = query.where(or_(CallRow.call_id.startswith(search), CallRow.call_id.in_(matching)))
        return query

    async def load_calls(self, *, since: datetime | None = None, until: datetime | None = None) -> list[CallView]:
        """Every call in a period with turns and anomalies, oldest first (for reports)."""
        query = (
            select(CallRow)
            .order_by(CallRow.started_at)
            .options(
                selectinload(CallRow.turn_rows), selectinload(CallRow.event_rows), selectinload(CallRow.anomaly_rows)
            )
        )
        if since is not None:
            query = query.where(CallRow.started_at >= since)
        if until is not None:
            query = query.where(CallRow.started_at < until)
        async with self._sessions() as session:
            return [_view(r, full=True) for r in (await session.execute(query)).scalars().all()]

    async def purge_expired(self, retention_days: int, *, now: datetime | None = None) -> int:
        """Delete calls that started more than `retention_days` ago (0 keeps everything); returns how many."""
        if retention_days <= 0:
            return 0
        cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
        async with self._sessions() as session, session.begin():
            old = select(CallRow.call_id).where(CallRow.started_at < cutoff)
            # Children first: SQLite enforces ON DELETE CASCADE only with foreign keys on, which not every
            # engine that reaches here has.
            for child in (TurnRow, EventRow, AnomalyRow):
                await session.execute(delete(child).where(child.call_id.in_(old)))
            result = await session.execute(delete(CallRow).where(CallRow.started_at < cutoff))
            return int(getattr(result, "rowcount", 0) or 0)
