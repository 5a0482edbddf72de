"""Redis URLs: the schemes every process accepts, and the ``redis+sentinel://`` form read without loading redis."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

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
