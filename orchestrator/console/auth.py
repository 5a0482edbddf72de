"""Console authentication: scrypt password hashes, admin API tokens, server-side sessions, signed cookies, CSRF."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio as aioredis
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from orchestrator.console.models import TokenRow, UserRow

Role = Literal["supervisor", "admin"]
ROLES: tuple[Role, ...] = ("supervisor", "admin")
SESSION_COOKIE = "sb_console"
LOGIN_COOKIE = "sb_console_login"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
TOKEN_PREFIX = "sbt_"

# scrypt at N=2**14, r=8 (16 MiB, ~50 ms on one core): the interactive-login cost scrypt's paper recommends.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_LEN = 2**14, 8, 1, 32
_SCRYPT_MAXMEM = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """A salted scrypt hash: ``scrypt$N$r$p$salt$hash`` (parameters stored so they can be raised later)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=_SCRYPT_LEN, maxmem=_SCRYPT_MAXMEM
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=_SCRYPT_MAXMEM,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@functools.cache
def _dummy_hash() -> str:
    # Checked when a username is unknown, so a wrong name costs as long as a wrong password (no enumeration).
    return hash_password(secrets.token_hex(8))


@dataclass(frozen=True)
class Principal:
    """Who is acting: a user, their role, and how they proved it.

    Attributes:
        username: The user.
        role: ``supervisor`` or ``admin``.
        via: ``session`` (cookie; state changes need the CSRF token) or ``token`` (admin bearer token).
        session_id: The session, for ``via == "session"``.
        csrf: The session's CSRF token, for ``via == "session"``.
    """

    username: str
    role: Role
    via: Literal["session", "token"] = "session"
    session_id: str = ""
    csrf: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class UserStore:
    """Console users and admin API tokens in the database (tables ``console_users``, ``console_tokens``)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def add(self, username: str, password: str, role: Role) -> None:
        """Create a user, or replace the password and role of an existing one.

        Raises:
            ValueError: Bad role, empty username or a password shorter than 8 characters.
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if (
            not username
            or len(username) > 64
            or not username.replace("-", "").replace("_", "").replace(".", "").isalnum()
        ):
            raise ValueError("username: 1-64 letters, digits, '.', '-' or '_'")
        if len(password) < 8:
            raise ValueError("password: at least 8 characters")
        hashed = await asyncio.to_thread(hash_password, password)
        async with self._sessions.begin() as session:
            row = await session.get(UserRow, username)
            if row is None:
                session.add(UserRow(username=username, role=role, password_hash=hashed, created_at=datetime.now(UTC)))
            else:
                row.role, row.password_hash = role, hashed

    async def remove(self, username: str) -> bool:
        """Delete a user and their tokens; False if there was no such user."""
        async with self._sessions.begin() as session:
            await session.execute(delete(TokenRow).where(TokenRow.username == username))
            result: Any = await session.execute(delete(UserRow).where(UserRow.username == username))
            return bool(result.rowcount)

    async def list(self) -> list[tuple[str, str]]:
        """``(username, role)`` of every user, by name."""
        async with self._sessions() as session:
            rows = (await session.execute(select(UserRow).order_by(UserRow.username))).scalars().all()
            return [(r.username, r.role) for r in rows]

    async def authenticate(self, username: str, password: str) -> Principal | None:
        """The user if the password is right, else None (same cost whether or not the user exists)."""
        async with self._sessions() as session:
            row = await session.get(UserRow, username)
        stored = row.password_hash if row is not None else _dummy_hash()
        ok = await asyncio.to_thread(verify_password, password, stored)
        if row is None or not ok or row.role not in ROLES:
            return None
        return Principal(username=row.username, role=row.role)

    async def create_token(self, username: str) -> str:
        """A new bearer token for an admin: ``sbt_<id>_<secret>``, shown once.

        Raises:
            ValueError: No such user, or the user is not an admin.
        """
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        async with self._sessions.begin() as session:
            user = await session.get(UserRow, username)
            if user is None or user.role != "admin":
                raise ValueError("API tokens are for admins only")
            session.add(
                TokenRow(
                    token_id=token_id,
                    username=username,
                    secret_sha256=hashlib.sha256(secret.encode()).hexdigest(),
                    created_at=datetime.now(UTC),
                )
            )
        return f"{TOKEN_PREFIX}{token_id}_{secret}"

    async def verify_token(self, token: str) -> Principal | None:
        """The admin a bearer token belongs to, or None."""
        if not token.startswith(TOKEN_PREFIX) or token.count("_") < 2:
            return None
        token_id, secret = token[len(TOKEN_PREFIX) :].split("_", 1)
        async with self._sessions() as session:
            row = await session.get(TokenRow, token_id)
            user = await session.get(UserRow, row.username) if row is not None else None
        if row is None or user is None or user.role != "admin":
            return None
        if not hmac.compare_digest(hashlib.sha256(secret.encode()).hexdigest(), row.secret_sha256):
            return None
        return Principal(username=user.username, role="admin", via="token")


class CookieSigner:
    """Signs session ids for the cookie (HMAC-SHA256), so a forged or guessed id is rejected before Redis."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"switchboard-console-cookie:" + secret.encode()).digest()

    def sign(self, value: str) -> str:
        return f"{value}.{_b64(hmac.new(self._key, value.encode(), hashlib.sha256).digest())}"

    def unsign(self, signed: str) -> str | None:
        """The value, or None if the signature is wrong."""
        value, _, sig = signed.rpartition(".")
        if not value or not hmac.compare_digest(self.sign(value), signed):
            return None
        return value


class SessionStore:
    """Server-side sessions in Redis (``<prefix>:console:sess:<id>``) with an absolute expiry.

    The cookie holds only the signed id; logout or expiry deletes the record, so a stolen cookie dies with it.
    """

    def __init__(self, redis: aioredis.Redis, *, prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}:console:sess:{session_id}"

    async def create(self, user: Principal) -> Principal:
        """Start a session for ``user``; returns the principal with its session id and CSRF token."""
        session_id, csrf = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        key = self._key(session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={"username": user.username, "role": user.role, "csrf": csrf, "created": str(int(time.time()))},
            )
            pipe.expire(key, self.ttl_s)
            await pipe.execute()
        return Principal(username=user.username, role=user.role, via="session", session_id=session_id, csrf=csrf)

    async def get(self, session_id: str) -> Principal | None:
        """The session's principal, or None once it expired or was ended."""
        raw: Any = await self.redis.hgetall(self._key(session_id))
        data = {_s(k): _s(v) for k, v in raw.items()}
        if not data.get("username") or data.get("role") not in ROLES:
            return None
        return Principal(
            username=data["username"],
            role=data["role"],  # type: ignore[arg-type]  # checked against ROLES
            via="session",
            session_id=session_id,
            csrf=data.get("csrf", ""),
        )

    async def end(self, session_id: str) -> None:
        await self.redis.delete(self._key(session_id))


def csrf_ok(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a submitted CSRF token with the session's."""
    return bool(expected) and given is not None and hmac.compare_digest(expected.encode(), given.encode())


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
