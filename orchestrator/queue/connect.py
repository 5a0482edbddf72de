"""Every Redis client of every process comes from here: a plain Redis by URL, or a Sentinel-managed primary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

SENTINEL_SCHEME = "redis+sentinel://"
URL_SCHEMES = ("redis://", "rediss://", "unix://", SENTINEL_SCHEME)


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """Where a ``redis+sentinel://`` URL points: the sentinels, the primary's name and the database."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    password: str | None


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Read ``redis+sentinel://[:password@]host:port[,host:port...]/<primary name>[/<db>]``.

    Raises:
        ValueError: The URL is not of that shape (the message says what is wrong).
    """
    if not url.startswith(SENTINEL_SCHEME):
        raise ValueError(f"a Sentinel URL starts with {SENTINEL_SCHEME}")
    rest = url[len(SENTINEL_SCHEME) :]
    hosts, _, path = rest.partition("/")
    password = None
    if "@" in hosts:
        userinfo, hosts = hosts.rsplit("@", 1)
        password = unquote(userinfo.partition(":")[2] or userinfo) or None
    sentinels = []
    for part in hosts.split(","):
        split = urlsplit(f"//{part}")
        try:
            port = split.port or 26379
        except ValueError:
            raise ValueError(f"sentinel {part!r} has a bad port") from None
        if not split.hostname:
            raise ValueError(f"sentinel {part!r} has no host (expected host:port, comma-separated)")
        sentinels.append((split.hostname, port))
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise ValueError(
            "expected /<primary name>[/<db>] after the sentinels, e.g. redis+sentinel://h:26379/mymaster/0"
        )
    if len(parts) == 2 and not parts[1].isdigit():
        raise ValueError(f"database {parts[1]!r} is not a number")
    return SentinelTarget(tuple(sentinels), parts[0], int(parts[1]) if len(parts) == 2 else 0, password)


def check_redis_url(url: str) -> str:
    """``url`` if it is a Redis URL this factory opens; ``ValueError`` naming the problem otherwise."""
    if not url.startswith(URL_SCHEMES):
        raise ValueError("must start with redis://, rediss://, unix:// or redis+sentinel://")
    if url.startswith(SENTINEL_SCHEME):
        parse_sentinel_url(url)
    return url


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """A Sentinel pool that waits for a free connection instead of raising when all are busy."""


def open_redis(
    url: str,
    *,
    max_connections: int | None = None,
    pool_timeout_s: float = 10.0,
    sentinel_timeout_s: float = 0.5,
    **options: Any,
) -> aioredis.Redis:
    """A client for ``url``: a plain server, or the primary a set of sentinels names.

    A Sentinel client asks the sentinels for the primary on every new connection and drops its connections
    when they point at a demoted one, so it follows a failover; while no primary is known its commands raise
    ``MasterNotFoundError`` (a ``ConnectionError``, which callers already treat as "Redis unreachable").

    Args:
        url: ``redis://``, ``rediss://``, ``unix://`` or ``redis+sentinel://host:port,.../<name>/<db>``.
        max_connections: With it, a blocking pool of this size (callers wait for a free connection).
        pool_timeout_s: How long a caller waits for a free connection (blocking pool only).
        sentinel_timeout_s: Socket timeout of the connections to the sentinels themselves.
        options: Connection options (timeouts, retry, decode_responses…), passed to redis-py.
    """
    blocking: dict[str, Any] = {}
    if max_connections is not None:
        blocking = {"max_connections": max_connections, "timeout": pool_timeout_s}
    if not url.startswith(SENTINEL_SCHEME):
        if blocking:
            pool = aioredis.BlockingConnectionPool.from_url(url, **blocking, **options)
            return aioredis.Redis(connection_pool=pool)
        return aioredis.Redis.from_url(url, **options)
    target = parse_sentinel_url(url)
    manager = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves Sentinel's constructor unannotated
        list(target.sentinels),
        sentinel_kwargs={"socket_timeout": sentinel_timeout_s, "socket_connect_timeout": sentinel_timeout_s},
        password=target.password,
        db=target.db,
        **options,
    )
    pool_class = _BlockingSentinelPool if blocking else SentinelConnectionPool
    client = manager.master_for(
        target.service, redis_class=_SentinelRedis, connection_pool_class=pool_class, **blocking
    )
    assert isinstance(client, _SentinelRedis)
    client.sentinels = manager
    return client


class _SentinelRedis(aioredis.Redis):
    """A primary's client that also closes its connections to the sentinels."""

    sentinels: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            for sentinel in self.sentinels.sentinels:
                await sentinel.aclose()
