"""How many replicas must confirm a queue write: every replica the primary has online, and never fewer than asked."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

# How often the count of online replicas is read again (INFO replication) for writes that hand out no call.
REFRESH_S = 1.0
# Replicas acknowledge their offset every second; one silent for longer than this is hung, not slow.
MAX_LAG_S = 2


def online_replicas(info: Mapping[str, Any], *, max_lag_s: int | None = None) -> int:
    """Replicas that a primary's ``INFO replication`` reports in sync and following its writes.

    That is ``state=online`` with an acknowledged offset (and, with ``max_lag_s``, an acknowledgement within
    that many seconds). A syncing replica, and one that has just loaded its copy but not yet acknowledged it
    (the primary streams nothing to it until then, up to a second), receive every write through the sync and
    are not waited for.
    """
    return sum(
        1
        for key, value in info.items()
        if key.startswith("slave")
        and key[5:].isdigit()
        and isinstance(value, Mapping)
        and value.get("state") == "online"
        and int(value.get("offset", 0)) > 0
        and (max_lag_s is None or int(value.get("lag", 0)) <= max_lag_s)
    )


class ReplicaQuorum:
    """The replica count each synced write waits for (``WAIT``), kept per primary.

    Sentinel promotes the replica it last saw most up to date, from reports up to a second old, and a flapping
    primary can be replaced twice in a row. A write confirmed by ``floor`` replicas out of several can therefore
    be missing on the one promoted, and a claim missing there hands a running call to a second worker. So a
    write counts once **every** replica the primary has online holds it (at least ``floor``). A replica still
    connected but silent for over :data:`MAX_LAG_S` (hung) is not waited for; the writes go on with the others.

    A replica that disconnects still counts for ``grace_s``. Its loss is either a replica that died (writes
    resume with the others after the grace) or a replica being promoted away from this primary (a split brain:
    this primary is about to be demoted and its writes discarded). In the second case the buffered writes the
    old primary runs on waking must not count on the replicas left to it, which will be resynchronised too. A
    new primary (another replication id) starts from what it reports.
    """

    def __init__(self, floor: int, *, grace_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.floor = floor
        self.grace_s = grace_s
        self._clock = clock
        self._replid: str | None = None
        self._connected = 0  # replicas this primary is held to, hung ones included
        self._live = 0  # of those, the ones acknowledging
        self._lost_since: float | None = None  # when the primary first reported fewer than _connected
        self._checked_at = float("-inf")

    @property
    def target(self) -> int:
        """Replicas that must confirm the next write."""
        return max(self.floor, self._connected if self._lost_since is not None else self._live)

    def stale(self) -> bool:
        """Whether the count is older than :data:`REFRESH_S`."""
        return self._clock() - self._checked_at >= REFRESH_S

    def observe(self, replid: str, connected: int, live: int) -> None:
        """Take in what the primary reports: its replication id, its replicas online, and how many acknowledge."""
        now = self._clock()
        self._checked_at = now
        self._live = live
        if replid != self._replid:
            self._replid, self._connected, self._lost_since = replid, connected, None
        elif connected >= self._connected:
            self._connected, self._lost_since = connected, None
        elif self._lost_since is None:
            self._lost_since = now
        elif now - self._lost_since >= self.grace_s:
            self._connected, self._lost_since = connected, None

    def observe_info(self, info: Mapping[str, Any]) -> None:
        """:meth:`observe` of a primary's parsed ``INFO replication`` (a replica's report changes nothing)."""
        if info.get("role") != "master":
            return  # the write will be refused as READONLY; keep what the primary said
        replid = info.get("master_replid", "")
        self.observe(
            str(replid),
            online_replicas(info),
            online_replicas(info, max_lag_s=MAX_LAG_S),
        )
