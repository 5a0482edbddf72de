"""The call queue on Redis Streams: admit, claim, heartbeat, reclaim, ack, retry, dead letters, positions.

Key layout (prefix ``sb`` by default; see :class:`QueueKeys`):

- ``sb:q:<priority>``: one stream per priority level, consumer group ``workers``; entry fields
  ``c`` (call id), ``a`` (attempt the entry was enqueued with), ``j`` (the CallJob as JSON).
- ``sb:admit:<call_id>``: first admission (``"<position> <wait_ms> <queued id>"``), ``SET NX``-style, with
  a TTL; ``sb:uses:<call_id>``: how many calls were admitted under a source's id (a reused id is queued
  as ``<id>~<n>``).
- ``sb:loc``: hash call id -> ``"<stream index> <entry id>"`` (or ``delayed``) for live calls.
- ``sb:delayed``: ZSET of retries by due time; ``sb:dead``: dead-letter stream;
  ``sb:alerts``: alerts stream and pub/sub channel.
- ``sb:workers`` + ``sb:worker:<name>``: registered workers and their slot counts (TTL keys).
- ``sb:handle``: moving average of handle time; ``sb:hist:wait``: wait histogram; ``sb:counters``.

Position and expected wait. A call's position ``p`` counts every waiting call of a higher priority,
then the calls of its own priority ahead of it, plus one. With ``S`` registered worker slots,
``B`` calls in flight and ``H`` the exponential moving average of handle time (claim to ack,
``default_handle_s`` before the first ack), the first ``F = max(S - B, 0)`` waiting calls start
at once, and after that one slot frees about every ``H / S`` seconds, so::

    expected_wait(p) = 0                         if p <= F
                     = (p - F) * H / max(S, 1)   otherwise

(no registered worker counts as one slot, so estimates stay finite while workers start).
"""

from orchestrator.queue.call_queue import CallQueue, ClaimedCall, FailOutcome, WaitingCall, open_queue
from orchestrator.queue.errors import DeadLetterNotFound, QueueError, QueueFull
from orchestrator.queue.keys import QueueKeys
from orchestrator.queue.reclaimer import Reclaimer

__all__ = [
    "CallQueue",
    "ClaimedCall",
    "DeadLetterNotFound",
    "FailOutcome",
    "QueueError",
    "QueueFull",
    "QueueKeys",
    "Reclaimer",
    "WaitingCall",
    "open_queue",
]
