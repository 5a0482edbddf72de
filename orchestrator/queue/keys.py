"""Redis key layout of the call queue, all under one prefix so tests and tenants can isolate themselves."""

from __future__ import annotations

from dataclasses import dataclass

# The consumer name that holds calls handed back by `release`: they stay in the group's
# pending list (so they keep their place) until the next claim takes them over.
RELEASED_CONSUMER = "__released__"
GROUP = "workers"

# Upper bounds of the wait-time histogram, in milliseconds; a final "+Inf" bucket is implied.
WAIT_BUCKETS_MS: tuple[int, ...] = (
    5,
    10,
    50,
    100,
    500,
    1_000,
    5_000,
    10_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
)


@dataclass(frozen=True)
class QueueKeys:
    """Every key the queue touches.

    Attributes:
        prefix: Common prefix, default ``"sb"``.
        priorities: Priority levels, highest first (lowest number first).
    """

    prefix: str
    priorities: tuple[int, ...]

    def stream(self, priority: int) -> str:
        """Stream of waiting and in-flight calls of one priority level (consumer group ``workers``)."""
        return f"{self.prefix}:q:{priority}"

    @property
    def streams(self) -> list[str]:
        """Every priority stream, highest priority first."""
        return [self.stream(p) for p in self.priorities]

    def admission(self, call_id: str) -> str:
        """``SET NX`` key holding the first admission of a call (``"<position> <wait_ms> <queued id>"``, with a TTL)."""
        return f"{self.prefix}:admit:{call_id}"

    def uses(self, call_id: str) -> str:
        """How many calls were admitted under a source's call id (a counter kept as long as call records)."""
        return f"{self.prefix}:uses:{call_id}"

    @property
    def location(self) -> str:
        """Hash call_id -> ``"<stream index> <entry id>"`` or ``"delayed"`` for live calls."""
        return f"{self.prefix}:loc"

    @property
    def delayed(self) -> str:
        """ZSET of failed calls waiting for their retry backoff; score = due time (ms, Redis clock)."""
        return f"{self.prefix}:delayed"

    @property
    def dead(self) -> str:
        """Dead-letter stream."""
        return f"{self.prefix}:dead"

    @property
    def alerts(self) -> str:
        """Alerts stream, also the pub/sub channel the same alerts are published on."""
        return f"{self.prefix}:alerts"

    @property
    def workers(self) -> str:
        """Set of registered worker names; each has a TTL key with its slot count."""
        return f"{self.prefix}:workers"

    @property
    def worker_prefix(self) -> str:
        """Prefix of the per-worker TTL keys (``<prefix>:worker:<name>`` = slot count)."""
        return f"{self.prefix}:worker:"

    @property
    def handle(self) -> str:
        """Hash with the moving average of handle time (``avg_ms``) and the sample count (``n``)."""
        return f"{self.prefix}:handle"

    @property
    def histogram(self) -> str:
        """Hash of wait-time bucket counts (``le:<ms>``), ``count`` and ``sum_ms``."""
        return f"{self.prefix}:hist:wait"

    @property
    def counters(self) -> str:
        """Hash of counters: admitted, duplicates, refused, completed, retries, dead."""
        return f"{self.prefix}:counters"

    @property
    def fence(self) -> str:
        """Counter written after each replicated write, so that ``WAIT`` also confirms a script that wrote nothing."""
        return f"{self.prefix}:fence"

    def published(self, call_id: str, entry_id: str) -> str:
        """Marker of a queue entry whose outcome is on the outcome stream (a replayed call is a new entry)."""
        return f"{self.prefix}:published:{call_id}:{entry_id}"
