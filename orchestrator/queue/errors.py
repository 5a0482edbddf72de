"""Errors the call queue raises to its callers."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError


class QueueError(RuntimeError):
    """Base class of call-queue errors."""


class QueueFull(QueueError):
    """Admission control refused a call; the webhook answers 503 with ``Retry-After``.

    Attributes:
        retry_after_s: Whole seconds after which an admit is likely to succeed (at least 1).
        reason: ``"depth"`` (``max_depth`` calls already wait) or ``"wait"`` (the expected wait
            would exceed ``max_expected_wait_s``).
    """

    def __init__(self, retry_after_s: int, reason: str) -> None:
        super().__init__(f"call queue full ({reason}); retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s
        self.reason = reason


class DeadLetterNotFound(QueueError, KeyError):
    """The dead letter does not exist (never did, or it was already replayed)."""


class NoPrimary(RedisConnectionError):
    """No Redis primary took the write for good: a read-only replica, a primary refusing writes
    (``min-replicas-to-write``), or fewer replicas than asked confirmed it (``WAIT``).

    A ``ConnectionError``, so the API answers 503 with Retry-After and the workers ride it out as an outage;
    a refused admission may still be in Redis, and the sender's retry is then answered as its duplicate.
    """


def refuses_writes(exc: ResponseError) -> bool:
    """A reply of a Redis that takes no writes now but will once a primary with its replicas is back."""
    # redis-py turns READONLY into ReadOnlyError and drops the code from its message; the others keep it.
    return isinstance(exc, ReadOnlyError) or str(exc).startswith(("NOREPLICAS", "MASTERDOWN"))
