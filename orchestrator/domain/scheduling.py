"""Technician visits: open slots, booking, moving and cancelling appointments."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agents.ports import Appointment, NotAllowed, NotFound, PolicyViolation, Slot
from orchestrator.domain.db import Store, new_id
from orchestrator.domain.models import AppointmentRow, SlotRow

_NO_APPOINTMENT = "I couldn't find that appointment on your account."
_NO_SLOT = "I couldn't find that time slot."
_SLOT_TAKEN = "Sorry, that time slot was just taken. Let's pick another one."
_SLOT_PAST = "That time slot has already passed. Let's pick a later one."


class SqlScheduling:
    """`agents.ports.Scheduling` on the tenant's SQL store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _slot(self, row: SlotRow) -> Slot:
        return Slot(
            slot_id=row.slot_id,
            start=self._store.local(row.starts_at),
            end=self._store.local(row.ends_at),
            technician=row.technician,
        )

    def _appointment(self, row: AppointmentRow) -> Appointment:
        return Appointment(
            appointment_id=row.appointment_id,
            account_id=row.account_id,
            slot_id=row.slot_id,
            start=self._store.local(row.slot.starts_at),
            end=self._store.local(row.slot.ends_at),
            status=row.status,  # type: ignore[arg-type]  # the column only ever holds the Literal's values
            reason=row.reason,
        )

    async def open_slots(self, *, on_or_after: date, limit: int = 3) -> list[Slot]:
        """Free future slots from `on_or_after` (tenant's local date), one per start time, soonest first."""
        if limit <= 0:
            return []
        since = max(self._store.start_of(on_or_after), self._store.now())
        async with self._store.read() as session:
            # One slot per start time: three technicians free at 8 am are one choice for the caller.
            starts = (
                select(SlotRow.starts_at, func.min(SlotRow.slot_id).label("slot_id"))
                .where(SlotRow.taken.is_(False), SlotRow.starts_at > since)
                .group_by(SlotRow.starts_at)
                .order_by(SlotRow.starts_at)
                .limit(limit)
                .subquery()
            )
            rows = (
                (
                    await session.execute(
                        select(SlotRow)
                        .join(starts, SlotRow.slot_id == starts.c.slot_id)
                        .order_by(SlotRow.starts_at, SlotRow.slot_id)
                    )
                )
                .scalars()
                .all()
            )
        return [self._slot(row) for row in rows]

    async def appointments(self, account_id: str) -> list[Appointment]:
        """Booked (future) appointments of the account, soonest first."""
        async with self._store.read() as session:
            await self._store.customer(session, account_id)
            rows = (
                (
                    await session.execute(
                        select(AppointmentRow)
                        .join(AppointmentRow.slot)
                        .where(
                            AppointmentRow.account_id == account_id,
                            AppointmentRow.status == "booked",
                            SlotRow.ends_at > self._store.now(),
                        )
                        .order_by(SlotRow.starts_at)
                    )
                )
                .scalars()
                .all()
            )
        return [self._appointment(row) for row in rows]

    async def book(self, account_id: str, slot_id: str, reason: str, *, key: str | None = None) -> Appointment:
        """Book a technician visit; raises PolicyViolation when the slot is taken or in the past.

        `key` makes the booking happen once: a second call with it returns the first booking.
        """

        async def effect(session: AsyncSession) -> tuple[str, Appointment]:
            await self._store.customer(session, account_id)
            slot = await self._take_slot(session, slot_id)
            now = self._store.now()
            row = AppointmentRow(
                appointment_id=new_id("AP"),
                account_id=account_id,
                slot_id=slot.slot_id,
                status="booked",
                reason=reason.strip() or "Technician visit",
                created_at=now,
                updated_at=now,
            )
            row.slot = slot
            session.add(row)
            await session.flush()
            return row.appointment_id, self._appointment(row)

        try:
            return await self._store.once(key, "booking", effect, self._replay(account_id))
        except IntegrityError as exc:
            # Only reachable if the slot flag and the partial unique index ever disagree.
            raise PolicyViolation(_SLOT_TAKEN) from exc

    async def move(self, account_id: str, appointment_id: str, slot_id: str, *, key: str | None = None) -> Appointment:
        """Move a booked appointment to another slot; the appointment keeps its id, the old slot is freed."""

        async def effect(session: AsyncSession) -> tuple[str, Appointment]:
            row = await self._owned(session, account_id, appointment_id)
            self._ensure_changeable(row)
            if row.slot_id == slot_id:
                raise PolicyViolation("Your appointment is already at that time.")
            old_slot_id = row.slot_id
            slot = await self._take_slot(session, slot_id)
            await self._release_slot(session, old_slot_id)
            row.slot_id = slot.slot_id
            row.slot = slot
            row.updated_at = self._store.now()
            await session.flush()
            return row.appointment_id, self._appointment(row)

        try:
            return await self._store.once(key, "move", effect, self._replay(account_id))
        except IntegrityError as exc:
            raise PolicyViolation(_SLOT_TAKEN) from exc

    async def cancel(self, account_id: str, appointment_id: str, *, key: str | None = None) -> Appointment:
        """Cancel a booked appointment and free its slot; cancelling twice raises PolicyViolation."""

        async def effect(session: AsyncSession) -> tuple[str, Appointment]:
            row = await self._owned(session, account_id, appointment_id)
            if row.status == "cancelled":
                raise PolicyViolation("That appointment is already cancelled.")
            self._ensure_changeable(row)
            row.status = "cancelled"
            row.updated_at = self._store.now()
            await self._release_slot(session, row.slot_id)
            await session.flush()
            return row.appointment_id, self._appointment(row)

        return await self._store.once(key, "cancellation", effect, self._replay(account_id))

    def _replay(self, account_id: str) -> Callable[[AsyncSession, str], Awaitable[Appointment]]:
        async def replay(session: AsyncSession, appointment_id: str) -> Appointment:
            return self._appointment(await self._owned(session, account_id, appointment_id))

        return replay

    async def _owned(self, session: AsyncSession, account_id: str, appointment_id: str) -> AppointmentRow:
        row = (
            await session.execute(
                select(AppointmentRow)
                .where(AppointmentRow.appointment_id == appointment_id)
                # Lock the appointment (PostgreSQL) so a concurrent move and cancel cannot interleave.
                .with_for_update(of=AppointmentRow)
            )
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(_NO_APPOINTMENT)
        if row.account_id != account_id:
            raise NotAllowed(_NO_APPOINTMENT)
        return row

    def _ensure_changeable(self, row: AppointmentRow) -> None:
        if row.status == "cancelled":
            raise PolicyViolation("That appointment was cancelled. I can book a new one instead.")
        if row.status == "completed" or row.slot.starts_at <= self._store.now():
            raise PolicyViolation("That visit has already taken place, so it can't be changed.")

    async def _take_slot(self, session: AsyncSession, slot_id: str) -> SlotRow:
        slot = await session.get(SlotRow, slot_id)
        if slot is None:
            raise NotFound(_NO_SLOT)
        if slot.starts_at <= self._store.now():
            raise PolicyViolation(_SLOT_PAST)
        # The conditional UPDATE is the arbiter between concurrent bookings: only one sees rowcount 1.
        result: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]  # DML returns a CursorResult
            update(SlotRow)
            .where(SlotRow.slot_id == slot_id, SlotRow.taken.is_(False))
            .values(taken=True)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            raise PolicyViolation(_SLOT_TAKEN)
        await session.refresh(slot)
        return slot

    async def _release_slot(self, session: AsyncSession, slot_id: str) -> None:
        await session.execute(
            update(SlotRow)
            .where(SlotRow.slot_id == slot_id)
            .values(taken=False)
            .execution_options(synchronize_session=False)
        )
