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
from orchestrator.redis_client import require_text_replies

Role = Literal["supervisor", "admin"]
ROLES: tuple[Role, ...] = ("supervisor", "admin")
SESSION_COOKIE = "sb_console"
LOGIN_COOKIE = "sb_console_login"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
TOKEN_PREFIX = "sbt_"
# A disabled user's password hash carries this mark (as a locked account's does in /etc/shadow): no password
# matches it. Enabling means a new password (`add`), so the sessions of before can never come back.
DISABLED_MARK = "!"

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
        stamp: The user's credential stamp when they proved who they are (see `credential_stamp`).
    """

    username: str
    role: Role
    via: Literal["session", "token"] = "session"
    session_id: str = ""
    csrf: str = ""
    stamp: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def credential_stamp(role: str, password_hash: str) -> str:
    """A fingerprint of what a user's sessions were granted on: their role and their password hash.

    A session keeps the stamp of its login and is honoured only while the user's current stamp matches,
    so deleting or disabling a user, or changing their password or role, ends every session they have
    open, from whichever process made the change (the CLI never needs to reach Redis). It is a digest,
    never the hash itself, so Redis holds nothing a password could be guessed against.
    """
    return hashlib.sha256(f"switchboard-console-stamp\0{role}\0{password_hash}".encode()).hexdigest()


def is_disabled(password_hash: str) -> bool:
    return password_hash.startswith(DISABLED_MARK)


class UserStore:
    """Console users and admin API tokens in the database (tables ``console_users``, ``console_tokens``).

    Every change to a user (removal, disabling, a new password or role) ends their open sessions at once:
    sessions are honoured only while the user's `credential_stamp` is the one they logged in with.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def add(self, username: str, password: str, role: Role) -> None:
        """Create a user, or replace the password and role of an existing one.

        An existing user's open sessions end (their credentials changed), and a disabled user is enabled again.

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
        """Delete a user and their tokens (their open sessions end with them); False if there was no such user."""
        async with self._sessions.begin() as session:
            await session.execute(delete(TokenRow).where(TokenRow.username == username))
            result: Any = await session.execute(delete(UserRow).where(UserRow.username == username))
            return bool(result.rowcount)

    async def disable(self, username: str) -> bool:
        """Lock a user out but keep them: no login, their sessions end, their API tokens are deleted.

        There is no undo that revives those sessions: `add` with a new password enables the user again.

        Returns:
            False if there is no such user.
        """
        async with self._sessions.begin() as session:
            row = await session.get(UserRow, username)
            if row is None:
                return False
            await session.execute(delete(TokenRow).where(TokenRow.username == username))
            if not is_disabled(row.password_hash):
                row.password_hash = DISABLED_MARK + row.password_hash
            return True

    async def list(self) -> list[tuple[str, str, bool]]:
        """``(username, role, disabled)`` of every user, by name."""
        async with self._sessions() as session:
            rows = (await session.execute(select(UserRow).order_by(UserRow.username))).scalars().all()
            return [(r.username, r.role, is_disabled(r.password_hash)) for r in rows]

    async def stamp(self, username: str) -> str | None:
        """The user's current credential stamp, or None when they were removed or disabled."""
        async with self._sessions() as session:
            row = await session.get(UserRow, username)
        if row is None or is_disabled(row.password_hash) or row.role not in ROLES:
            return None
        return credential_stamp(row.role, row.password_hash)

    async def authenticate(self, username: str, password: str) -> Principal | None:
        """The user if the password is right, else None (same cost whether or not the user exists)."""
        async with self._sessions() as session:
            row = await session.get(UserRow, username)
        usable = row is not None and not is_disabled(row.password_hash)
        # Unknown and disabled users cost a full scrypt too, so timing tells nobody which names exist.
        stored = row.password_hash if row is not None and usable else _dummy_hash()
        ok = await asyncio.to_thread(verify_password, password, stored)
        if row is None or not usable or not ok or row.role not in ROLES:
            return None
        return Principal(username=row.username, role=row.role, stamp=credential_stamp(row.role, row.password_hash))

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
        if row is None or user is None or user.role != "admin" or is_disabled(user.password_hash):
            return None
        if not hmac.compare_digest(hashlib.sha256(secret.encode()).hexdigest(), row.secret_sha256):
            return None
        return Principal(
            username=user.username, role="admin", via="token", stamp=credential_stamp(user.role, user.password_hash)
        )


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
    A session is also checked against its user on every use: once the user is removed or disabled, or their
    password or role changes, the session is deleted and refused (see `credential_stamp`).
    """

    def __init__(self, redis: aioredis.Redis, users: UserStore, *, prefix: str, ttl_s: int) -> None:
        require_text_replies(redis, "Sessions")
        self.redis = redis
        self.users = users
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
                mapping={
                    "username": user.username,
                    "role": user.role,
                    "csrf": csrf,
                    "stamp": user.stamp,
                    "created": str(int(time.time())),
                },
            )
            pipe.expire(key, self.ttl_s)
            await pipe.execute()
        return Principal(
            username=user.username, role=user.role, via="session", session_id=session_id, csrf=csrf, stamp=user.stamp
        )

    async def get(self, session_id: str) -> Principal | None:
        """The session's principal, or None once it expired, was ended, or its user changed (then it is ended)."""
        raw: Any = await self.redis.hgetall(self._key(session_id))
        data: dict[str, str] = dict(raw)
        if not data.get("username") or data.get("role") not in ROLES:
            return None
        current = await self.users.stamp(data["username"])
        if current is None or not hmac.compare_digest(current, data.get("stamp", "")):
            await self.end(session_id)
            return None
        return Principal(
            username=data["username"],
            role=data["role"],  # type: ignore[arg-type]  # checked against ROLES
            via="session",
            session_id=session_id,
            csrf=data.get("csrf", ""),
            stamp=current,
        )

    async def end(self, session_id: str) -> None:
        await self.redis.delete(self._key(session_id))


def csrf_ok(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a submitted CSRF token with the session's."""
    return bool(expected) and given is not None and hmac.compare_digest(expected.encode(), given.encode())


# Failed logins: five per user, or twenty per client address, within the window lock that user or address out.
LOGIN_MAX_USER_FAILURES = 5
LOGIN_MAX_ADDRESS_FAILURES = 20
LOGIN_WINDOW_S = 15 * 60
LOGIN_LOCKOUT_S = 15 * 60

# KEYS: user failures, address failures, user lock, address lock. ARGV: user max, address max, window, lockout.
# Refuses while either is locked; else counts the attempt before its password is checked, so a burst of
# parallel guesses cannot all be checked before the first failure is counted.
_ATTEMPT = """
local wait = math.max(redis.call('TTL', KEYS[3]), redis.call('TTL', KEYS[4]))
if wait > 0 then return wait end
local u = redis.call('INCR', KEYS[1])
if u == 1 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
local a = redis.call('INCR', KEYS[2])
if a == 1 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
if u > tonumber(ARGV[1]) then
  redis.call('SET', KEYS[3], '1', 'EX', ARGV[4]); redis.call('DEL', KEYS[1]); return tonumber(ARGV[4])
end
if a > tonumber(ARGV[2]) then
  redis.call('SET', KEYS[4], '1', 'EX', ARGV[4]); redis.call('DEL', KEYS[2]); return tonumber(ARGV[4])
end
return 0
"""
# Same KEYS and ARGV, after a wrong password: lock what reached its limit. Returns {user locked, address locked}.
_FAILED = """
local locked = {0, 0}
for i = 1, 2 do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[i]) then
    redis.call('SET', KEYS[i + 2], '1', 'EX', ARGV[4]); redis.call('DEL', KEYS[i]); locked[i] = 1
  end
end
return locked
"""
# KEYS: user failures, address failures. A good password clears the user's count and takes back its attempt
# from the address's (a shared office address must not lock itself out by logging in).
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
return 0
"""


@dataclass(frozen=True)
class LoginFailure:
    """What a wrong password led to: whether it locked the user, the client address, or both."""

    user_locked: bool
    address_locked: bool


class LoginThrottle:
    """Failed console logins counted per user and per client address in Redis, shared by every API process.

    Past the limits within the window the user (whether or not they exist, so a lockout tells nothing) or the
    address is locked out for a while; an admin can lift it sooner (`unlock_user`, `unlock_address`).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str,
        max_user_failures: int = LOGIN_MAX_USER_FAILURES,
        max_address_failures: int = LOGIN_MAX_ADDRESS_FAILURES,
        window_s: int = LOGIN_WINDOW_S,
        lockout_s: int = LOGIN_LOCKOUT_S,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.lockout_s = lockout_s
        self._args = (max_user_failures, max_address_failures, window_s, lockout_s)
        self._attempt = redis.register_script(_ATTEMPT)
        self._failed = redis.register_script(_FAILED)
        self._succeeded = redis.register_script(_SUCCEEDED)

    def _keys(self, username: str, address: str) -> list[str]:
        base = f"{self.prefix}:console:login"
        return [
            f"{base}:fail:user:{username}",
            f"{base}:fail:addr:{address}",
            f"{base}:lock:user:{username}",
            f"{base}:lock:addr:{address}",
        ]

    async def attempt(self, username: str, address: str) -> int:
        """Count a login attempt before its password is checked: 0 to go ahead, else seconds until it may retry."""
        wait: Any = await self._attempt(keys=self._keys(username, address), args=self._args)
        return int(wait)

    async def failed(self, username: str, address: str) -> LoginFailure:
        """The password was wrong: lock the user or the address if that was one failure too many."""
        locked: Any = await self._failed(keys=self._keys(username, address), args=self._args)
        return LoginFailure(user_locked=bool(int(locked[0])), address_locked=bool(int(locked[1])))

    async def succeeded(self, username: str, address: str) -> None:
        """The password was right: forget the user's failures."""
        await self._succeeded(keys=self._keys(username, address)[:2])

    async def unlock_user(self, username: str) -> bool:
        """Lift a user's lockout and forget their failures; False if they were not locked out."""
        fail, _, lock, _ = self._keys(username, "")
        deleted: Any = await self.redis.delete(lock)
        await self.redis.delete(fail)
        return bool(deleted)

    async def unlock_address(self, address: str) -> bool:
        """Lift a client address's lockout and forget its failures; False if it was not locked out."""
        _, fail, _, lock = self._keys("", address)
        deleted: Any = await self.redis.delete(lock)
        await self.redis.delete(fail)
        return bool(deleted)
