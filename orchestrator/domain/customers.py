"""Customer lookup, second-factor verification and password resets."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agents.ports import Customer, NotFound
from orchestrator.domain.db import Store, new_id
from orchestrator.domain.models import CustomerRow, PasswordResetRow


def normalize_phone(phone: str) -> str:
    """Best-effort E.164 for North American numbers: "(555) 010-0001" -> "+15550100001"."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 10:
        return "+1" + digits
    return "+" + digits


def normalize_zip(zip_code: str) -> str:
    """Drop all whitespace, as speech-to-text likes to write "100 27"."""
    return re.sub(r"\s+", "", zip_code)


def normalize_name(name: str) -> str:
    """A name as compared: lower case, letters and single spaces only ("Mary-Ann  O'Brien" -> "mary ann obrien")."""
    return " ".join(re.sub(r"[^a-z ]", "", name.lower().replace("-", " ")).split())


def mask_email(email: str) -> str:
    """Keep the first letter and the domain: "jane.doe@example.com" -> "j***@example.com"."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def to_customer(row: CustomerRow) -> Customer:
    """The port record of a customer row."""
    return Customer(
        account_id=row.account_id,
        name=row.name,
        phone=row.phone,
        email=row.email,
        zip_code=row.zip_code,
        plan=row.plan,
        vip=row.vip,
    )


class SqlCustomers:
    """`agents.ports.Customers` on the tenant's SQL store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def find_by_phone(self, phone: str) -> Customer | None:
        """The account whose phone number matches the caller ID, if any."""
        async with self._store.read() as session:
            row = (
                await session.execute(select(CustomerRow).where(CustomerRow.phone == normalize_phone(phone)))
            ).scalar_one_or_none()
        return to_customer(row) if row else None

    async def get(self, account_id: str) -> Customer:
        """The account; raises NotFound when there is none."""
        async with self._store.read() as session:
            return to_customer(await self._store.customer(session, account_id))

    async def check_second_factor(self, account_id: str, zip_code: str) -> bool:
        """True when `zip_code` matches the account's ZIP code (whitespace ignored; ZIP+4 accepted)."""
        given = normalize_zip(zip_code)
        if not given:
            return False
        async with self._store.read() as session:
            row = await session.get(CustomerRow, account_id)
        if row is None:
            # Same answer as a wrong ZIP: verification must not reveal which accounts exist.
            return False
        expected = normalize_zip(row.zip_code)
        return given == expected or (len(given) == 10 and given[5] == "-" and given[:5] == expected)

    async def match_name_and_zip(self, name: str, zip_code: str) -> Customer | None:
        """The one account held under `name` at `zip_code` (case, spaces and punctuation ignored), if exactly one is.

        Both are checked in one lookup, so an unknown name and a wrong ZIP look alike; two namesakes at one
        ZIP match neither, since the caller could be either of them.
        """
        given = normalize_zip(zip_code)[:5]
        wanted = normalize_name(name)
        if len(given) != 5 or not wanted:
            return None
        async with self._store.read() as session:
            rows = (await session.execute(select(CustomerRow).where(CustomerRow.zip_code == given))).scalars().all()
        found = [row for row in rows if normalize_name(row.name) == wanted]
        return to_customer(found[0]) if len(found) == 1 else None

    async def send_password_reset(self, account_id: str, *, key: str | None = None) -> str:
        """Queue a reset link to the email on file and return the masked address, e.g. "j***@example.com".

        `key` sends it once: a second call with it reports the first link instead of sending another.
        """

        async def effect(session: AsyncSession) -> tuple[str, str]:
            row = await self._store.customer(session, account_id)
            reset = PasswordResetRow(
                reset_id=new_id("PR"), account_id=row.account_id, email=row.email, created_at=self._store.now()
            )
            session.add(reset)
            return reset.reset_id, mask_email(row.email)

        async def replay(session: AsyncSession, reset_id: str) -> str:
            reset = await session.get(PasswordResetRow, reset_id)
            if reset is None or reset.account_id != account_id:
                raise NotFound("I couldn't find that account.")
            return mask_email(reset.email)

        return await self._store.once(key, "password_reset", effect, replay)
