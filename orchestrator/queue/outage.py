"""Riding out a Redis outage: which errors mean "unreachable", the backoff between tries, one log line per outage."""

from __future__ import annotations

import logging
import random
import time

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

# Redis is down, restarting or still loading its data (BusyLoadingError is a ConnectionError): try again later.
UNREACHABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)


class Outage:
    """One process's view of whether Redis answers, shared by its loops so an outage is logged once.

    ``failed`` returns how long to wait before the next try (exponential with jitter); ``ok`` ends the
    outage. The first failure logs one warning, the first success after it one info line, and the tries in
    between nothing (no traceback per retry). A failure within ``settle_s`` of the end of an outage is
    counted as its tail, not as a new one: connections opened before a restart fail once each on their
    first use after it.
    """

    def __init__(
        self, who: str, *, first_delay_s: float = 0.05, max_delay_s: float = 2.0, settle_s: float = 10.0
    ) -> None:
        self.who = who
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.settle_s = settle_s
        self.outages = 0
        self._since: float | None = None
        self._delay_s = first_delay_s
        self._ended: tuple[float, float] | None = None  # (started, ended) of the last outage

    @property
    def down(self) -> bool:
        """True between a failure and the next success."""
        return self._since is not None

    def failed(self, exc: BaseException) -> float:
        """Note a failed try; returns the seconds to wait before the next one."""
        now = time.monotonic()
        if self._since is not None:
            self._delay_s = min(self.max_delay_s, self._delay_s * 2)
        elif self._ended is not None and now - self._ended[1] < self.settle_s:
            self._since, self._delay_s = self._ended[0], self.first_delay_s
        else:
            self._since, self._delay_s = now, self.first_delay_s
            self._ended = None
            self.outages += 1
            logger.warning("%s: Redis unreachable (%s); retrying with backoff until it is back", self.who, _brief(exc))
        return self._delay_s * random.uniform(0.5, 1.0)

    def ok(self) -> None:
        """Note a successful try (ends an outage, if one was going on)."""
        if self._since is None:
            return
        now = time.monotonic()
        if self._ended is None:
            logger.info("%s: Redis reachable again after %.1f s", self.who, now - self._since)
        self._ended, self._since = (self._since, now), None


def _brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
