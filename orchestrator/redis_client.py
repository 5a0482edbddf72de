"""Every Redis client of every process comes from here: a plain Redis by URL, or a Sentinel-managed primary.

Clients answer in ``str`` (``decode_responses=True``): every key, field and value of ours is text. The one
store of bytes, the phrase cache's audio, asks for ``decode_responses=False``.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from orchestrator.redis_url import SENTINEL_SCHEME, parse_sentinel_url


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """A Sentinel pool that waits for a free connection instead of raising when all are busy."""


def open_redis(
    url: str,
    *,
    max_connections: int | None = None,
    pool_timeout_s: float = 10.0,
    sentinel_timeout_s: float = 0.5,
    decode_responses: bool = True,
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
        decode_responses: Replies as ``str`` (the default) or as ``bytes``.
        options: Connection options (timeouts, retry…), passed to redis-py.
    """
    options["decode_responses"] = decode_responses
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


def require_text_replies(redis: aioredis.Redis, owner: str) -> None:
    """Refuse a client that answers in bytes: ``owner`` reads replies as ``str``, as ``open_redis`` gives them."""
    if not redis.get_encoder().decode_responses:  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        raise ValueError(f"{owner} needs a Redis client with decode_responses=True (open_redis gives one)")
