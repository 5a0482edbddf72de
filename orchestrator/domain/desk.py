"""The human-agent desk: tickets for escalated calls, taken by exactly one agent, or owed a callback."""

from __future__ import annotations

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agents.ports import HumanTicket, NotFound, PolicyViolation
from orchestrator.domain.db import Store, new_id
from orchestrator.domain.models import TicketRow

_NO_TICKET = "I couldn't find that ticket."


class SqlHumanDesk:
    """`agents.ports.HumanDesk` on the tenant's SQL store, plus `accept`, `caller_left` and `close` for the console.

    Priority 1 is the most urgent; `waiting()` lists the most urgent tickets first, oldest first
    within a priority. A ticket goes ``waiting`` -> ``accepted`` -> ``closed``; when its caller hangs up
    first it leaves the queue as a ``callback`` (closed once someone rang back) or ``abandoned`` (nobody to
    ring back).
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    def _ticket(self, row: TicketRow) -> HumanTicket:
        return HumanTicket(
            ticket_id=row.ticket_id,
            call_id=row.call_id,
            account_id=row.account_id,
            reason=row.reason,
            summary=row.summary,
            priority=row.priority,
            status=row.status,  # type: ignore[arg-type]  # the column only ever holds the Literal's values
            created_at=self._store.local(row.created_at),
        )

    async def open_ticket(
        self,
        *,
        call_id: str,
        account_id: str | None,
        reason: str,
        summary: str,
        priority: int,
        key: str | None = None,
    ) -> HumanTicket:
        """Put a call in the human queue with the AI's summary; priority 1 is the most urgent.

        `key` opens the ticket once: a second call with it returns the first ticket.
        """

        async def effect(session: AsyncSession) -> tuple[str, HumanTicket]:
            if account_id is not None:
                await self._store.customer(session, account_id)
            row = TicketRow(
                ticket_id=new_id("TK"),
                call_id=call_id,
                account_id=account_id,
                reason=reason,
                summary=summary,
                priority=priority,
                status="waiting",
                agent=None,
                created_at=self._store.now(),
                accepted_at=None,
                closed_at=None,
            )
            session.add(row)
            await session.flush()
            return row.ticket_id, self._ticket(row)

        async def replay(session: AsyncSession, ticket_id: str) -> HumanTicket:
            row = await session.get(TicketRow, ticket_id)
            if row is None or row.call_id != call_id:
                raise NotFound("I couldn't find that ticket.")
            return self._ticket(row)

        return await self._store.once(key, "ticket", effect, replay)

    async def waiting(self) -> list[HumanTicket]:
        """Tickets no agent has taken yet, most urgent first, then oldest first."""
        return await self.with_status("waiting")

    async def with_status(self, *statuses: str) -> list[HumanTicket]:
        """Tickets in any of ``statuses``, most urgent first, then oldest first."""
        async with self._store.read() as session:
            rows = (
                (
                    await session.execute(
                        select(TicketRow)
                        .where(TicketRow.status.in_(statuses))
                        .order_by(TicketRow.priority, TicketRow.created_at, TicketRow.ticket_id)
                    )
                )
                .scalars()
                .all()
            )
        return [self._ticket(row) for row in rows]

    async def caller_left(self, ticket_id: str, *, callback: bool) -> HumanTicket:
        """The caller of a waiting ticket hung up: it leaves the queue as a callback, or closed as abandoned.

        Raises:
            NotFound: There is no such ticket.
            PolicyViolation: It is no longer waiting (an agent took it, or it was settled already).
        """
        values: dict[str, object] = {"status": "callback" if callback else "abandoned"}
        if not callback:
            values["closed_at"] = self._store.now()
        return await self._transition(
            ticket_id, allowed=("waiting",), values=values, refusal="That ticket is no longer waiting."
        )

    async def accept(self, ticket_id: str, agent: str) -> HumanTicket:
        """Give a waiting ticket to `agent`; of two concurrent accepts exactly one wins.

        Raises:
            NotFound: There is no such ticket.
            PolicyViolation: Another agent took it first, or it is closed.
        """
        return await self._transition(
            ticket_id,
            allowed=("waiting",),
            values={"status": "accepted", "agent": agent, "accepted_at": self._store.now()},
            refusal="Another agent has already taken that call.",
        )

    async def close(self, ticket_id: str) -> HumanTicket:
        """Close a waiting, accepted or callback ticket; closing a closed one raises PolicyViolation."""
        return await self._transition(
            ticket_id,
            allowed=("waiting", "accepted", "callback"),
            values={"status": "closed", "closed_at": self._store.now()},
            refusal="That ticket is already closed.",
        )

    async def _transition(
        self, ticket_id: str, *, allowed: tuple[str, ...], values: dict[str, object], refusal: str
    ) -> HumanTicket:
        async with self._store.write() as session:
            # The status condition in the UPDATE is the arbiter: a concurrent winner leaves rowcount 0 here.
            result: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]  # DML returns a CursorResult
                update(TicketRow)
                .where(TicketRow.ticket_id == ticket_id, TicketRow.status.in_(allowed))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            row = await session.get(TicketRow, ticket_id)
            if row is None:
                raise NotFound(_NO_TICKET)
            if result.rowcount != 1:
                raise PolicyViolation(refusal)
            return self._ticket(row)
