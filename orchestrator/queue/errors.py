"""Errors the call queue raises to its callers."""

from __future__ import annotations


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
