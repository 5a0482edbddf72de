"""CallQueue: admit, claim, heartbeat, reclaim, ack, fail, release, dead letters and positions on Redis Streams."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from orchestrator.contracts import Admission, CallJob, CallOutcome, DeadLetter, QueueStats, WaitHistogram
from orchestrator.queue import scripts
from orchestrator.queue.errors import DeadLetterNotFound, NoPrimary, QueueFull, refuses_writes
from orchestrator.queue.keys import GROUP, RELEASED_CONSUMER, WAIT_BUCKETS_MS, QueueKeys
from orchestrator.queue.outcomes import DEFAULT_MAXLEN as OUTCOMES_MAXLEN
from orchestrator.queue.outcomes import OUTCOME_FIELD, outcomes_key
from orchestrator.queue.replication import ReplicaQuorum
from orchestrator.redis_client import open_redis, require_text_replies

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

    from orchestrator.config import Settings

FailOutcome = Literal["retry", "dead", "gone"]
AbandonOutcome = Literal["waiting", "delayed", "in_flight", "gone"]


# How long an entry's "outcome published" marker lives: far longer than any call and its retries.
OUTCOME_ONCE_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class ClaimedCall:
    """A call a worker holds until it acks, fails or releases it.

    Attributes:
        job: The job; ``job.attempt`` is this run's attempt (enqueued attempt + earlier deliveries).
        entry_id: Stream entry id.
        priority: Priority level (which stream the entry is in).
        deliveries: How many times the group delivered this entry (1 on a first claim).
        waited_s: Enqueue-to-claim wait (0 for reclaimed or released calls).
        consumer: The consumer that holds it.
        claimed_at: ``time.monotonic()`` at claim; handle time is measured from here.
    """

    job: CallJob
    entry_id: str
    priority: int
    deliveries: int
    waited_s: float
    consumer: str
    claimed_at: float

    @property
    def call_id(self) -> str:
        """The call's id."""
        return self.job.call_id

    @property
    def attempt(self) -> int:
        """1-based attempt number of this run."""
        return self.job.attempt


class WaitingCall(NamedTuple):
    """One waiting call, for hold messages: its place and its expected wait."""

    call_id: str
    position: int
    expected_wait_s: float


class CallQueue:
    """The call queue: one Redis stream and consumer group per priority level.

    Every operation that touches more than one key is one Lua script (one round trip, atomic), so a
    crash between two commands cannot lose or duplicate a call. The queue does not own the Redis
    client unless it was built with :meth:`from_url`.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str = "sb",
        priorities: Sequence[int] = (0, 1),
        max_depth: int = 1000,
        max_expected_wait_s: float = 600.0,
        max_attempts: int = 3,
        reclaim_idle_ms: int = 1500,
        heartbeat_ms: int = 500,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        default_handle_s: float = 180.0,
        handle_alpha: float = 0.1,
        dedupe_ttl_s: float = 86_400.0,
        uses_ttl_s: float = 400 * 86_400.0,
        alerts_maxlen: int = 10_000,
        sync_replicas: int = 0,
        sync_timeout_ms: int = 1000,
        replica_grace_ms: int = 5000,
        owns_client: bool = False,
    ) -> None:
        """Build a queue on an existing client.

        Args:
            redis: An asyncio Redis client that answers in ``str`` (``decode_responses=True``, as from ``open_redis``).
            prefix: Prefix of every key (tests use a random one).
            priorities: Priority levels; lower numbers are served first.
            max_depth: Admission refuses calls once this many wait.
            max_expected_wait_s: Admission refuses a call whose expected wait is longer.
            max_attempts: Attempts (failures or lost workers) before a call is dead-lettered.
            reclaim_idle_ms: A held call not renewed for this long is taken over by another worker.
            heartbeat_ms: How often holders renew their calls (at most half of ``reclaim_idle_ms``).
            backoff_base_s: First retry delay; doubles per attempt.
            backoff_max_s: Cap of the retry delay.
            default_handle_s: Handle time assumed until the first call is acked.
            handle_alpha: Weight of the newest sample in the handle-time moving average.
            dedupe_ttl_s: How long a call id stays known to admission (duplicate webhooks).
            uses_ttl_s: How long admission remembers that a call id was used (keep it at least as long
                as call records and checkpoints are kept, so a reused id never finds an old call's state).
            alerts_maxlen: Approximate length cap of the alerts stream.
            sync_replicas: Fewest replicas that must hold each write that admits, hands out or ends a call (admit,
                claim, reclaim, ack, fail, release, abandon, replay) before it counts (``WAIT``); 0 trusts the
                primary alone. With it, every replica the primary has online must hold the write too
                (:class:`~orchestrator.queue.replication.ReplicaQuorum`), so whichever the sentinels promote has it:
                a primary lost right after a 202 or an ack cannot take the call's admission or its end with it, and
                a call is never run by two workers because the new primary lacked the first one's claim. A claim
                whose confirmation falls short raises :class:`NoPrimary` and is not run: its calls stay pending
                under this worker and are reclaimed after ``reclaim_idle_ms`` (or, if the claim was lost with the
                primary, claimed anew).
            sync_timeout_ms: Longest ``WAIT``; fewer confirmations by then raise :class:`NoPrimary`.
            replica_grace_ms: How long a replica the primary stopped reporting is still waited for (it may be
                the one being promoted, and this primary the one about to be discarded).
            owns_client: Close ``redis`` in :meth:`aclose`.
        """
        if heartbeat_ms * 2 > reclaim_idle_ms:
            raise ValueError("heartbeat_ms must be at most half of reclaim_idle_ms")
        if not priorities or len(set(priorities)) != len(priorities):
            raise ValueError("priorities must be distinct and not empty")
        require_text_replies(redis, "CallQueue")
        self.redis = redis
        self.keys = QueueKeys(prefix, tuple(sorted(priorities)))
        self.max_depth = max_depth
        self.max_expected_wait_s = max_expected_wait_s
        self.max_attempts = max_attempts
        self.reclaim_idle_ms = reclaim_idle_ms
        self.heartbeat_ms = heartbeat_ms
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.default_handle_s = default_handle_s
        self.handle_alpha = handle_alpha
        self.dedupe_ttl_s = dedupe_ttl_s
        self.uses_ttl_s = uses_ttl_s
        self.alerts_maxlen = alerts_maxlen
        self.sync_replicas = sync_replicas
        self.sync_timeout_ms = sync_timeout_ms
        self.replicas = ReplicaQuorum(sync_replicas, grace_s=replica_grace_ms / 1000)
        self._owns_client = owns_client
        self._ready = False
        # Redis clock minus ours (ms), measured at setup: waits of blocking claims use it.
        self._clock_offset_ms = 0.0
        # Waits of calls taken by a blocking read, fed to the histogram by the next claim, so the
        # blocking path costs no extra round trip before the call starts.
        self._unobserved: list[int] = []
        self._streams = self.keys.streams
        self._index = {p: i + 1 for i, p in enumerate(self.keys.priorities)}
        self._bounds = [str(b) for b in WAIT_BUCKETS_MS]
        reg = redis.register_script
        self._admit = reg(scripts.ADMIT)
        self._claim = reg(scripts.CLAIM)
        self._ack = reg(scripts.ACK)
        self._publish = reg(scripts.PUBLISH)
        self._heartbeat = reg(scripts.HEARTBEAT)
        self._reclaim = reg(scripts.RECLAIM)
        self._fail = reg(scripts.FAIL)
        self._promote = reg(scripts.PROMOTE)
        self._release = reg(scripts.RELEASE)
        self._replay = reg(scripts.REPLAY)
        self._abandon = reg(scripts.ABANDON)
        self._waiting = reg(scripts.WAITING)
        self._stats = reg(scripts.STATS)

    @classmethod
    def from_url(
        cls, url: str, *, max_connections: int = 64, pool_timeout_s: float = 10.0, **options: Any
    ) -> CallQueue:
        """Build a queue that owns its own client for ``url`` (closed by :meth:`aclose`).

        The pool blocks when all ``max_connections`` are busy instead of raising, so a spike of
        concurrent admits queues up in the client rather than failing.
        """
        client = open_redis(url, max_connections=max_connections, pool_timeout_s=pool_timeout_s)
        return cls(client, owns_client=True, **options)

    @classmethod
    def from_settings(cls, settings: Settings, redis: aioredis.Redis, **options: Any) -> CallQueue:
        """Build a queue with the admission and recovery limits from ``settings``."""
        base: dict[str, Any] = {
            "max_depth": settings.queue_max_depth,
            "max_expected_wait_s": settings.queue_max_wait_s,
            "max_attempts": settings.queue_max_attempts,
            "reclaim_idle_ms": settings.queue_reclaim_idle_ms,
            "heartbeat_ms": settings.queue_heartbeat_ms,
            # A call id is remembered while its records may exist (0 keeps records for good: ten years).
            "uses_ttl_s": ((settings.record_retention_days or 3650) + 1) * 86_400.0,
            "sync_replicas": settings.redis_sync_replicas,
            "sync_timeout_ms": settings.redis_sync_timeout_ms,
            "replica_grace_ms": settings.redis_replica_grace_ms,
        }
        base.update(options)
        return cls(redis, **base)

    @property
    def priorities(self) -> tuple[int, ...]:
        """Priority levels, highest (lowest number) first."""
        return self.keys.priorities

    async def setup(self) -> None:
        """Create the streams and consumer groups (idempotent; also run lazily by every operation)."""
        for stream in self._streams:
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if refuses_writes(exc):
                    raise NoPrimary(f"Redis refused the write: {exc}") from exc
                if "BUSYGROUP" not in str(exc):
                    raise
        before = time.time()
        secs, micros = await self.redis.time()
        after = time.time()
        self._clock_offset_ms = secs * 1000 + micros / 1000 - (before + after) * 500
        self._ready = True

    async def aclose(self) -> None:
        """Close the client if this queue owns it."""
        if self._owns_client:
            await self.redis.aclose()

    async def _call(
        self, script: AsyncScript, keys: list[str], args: list[Any], *, durable: bool = False, hands_out: bool = False
    ) -> Any:
        if not self._ready:
            await self.setup()
        try:
            return await self._run(script, keys, args, durable, hands_out)
        except ResponseError as exc:
            if refuses_writes(exc):
                raise NoPrimary(f"Redis refused the write: {exc}") from exc
            # A Redis that came back without its data (no AOF) has no groups: recreate, retry once.
            if "NOGROUP" not in str(exc):
                raise
            await self.setup()
            return await self._run(script, keys, args, durable, hands_out)

    async def _run(self, script: AsyncScript, keys: list[str], args: list[Any], durable: bool, hands_out: bool) -> Any:
        if not durable or self.sync_replicas <= 0:
            return await script(keys=keys, args=args)
        if hands_out:  # a claim or a takeover: not tried at all while the primary lacks its replicas
            await self._replicas_ready()
        elif self.replicas.stale():
            await self._count_replicas()
        target = self.replicas.target
        # WAIT counts the replicas that hold this connection's writes, so it follows the script on one
        # connection: a pipeline (not a transaction; WAIT is not allowed inside MULTI). The fence is a write of
        # the connection's own after the script: an answer that wrote nothing ("no longer pending") is then
        # confirmed too, with everything the primary did before it on any connection. Without it, an ack that
        # landed on a primary about to be demoted, unconfirmed, would be read back there as "already acked".
        async with self.redis.pipeline(transaction=False) as pipe:
            await script(keys=keys, args=args, client=pipe)
            pipe.incr(self.keys.fence)
            pipe.wait(target, self.sync_timeout_ms)
            result, _, acked = await pipe.execute()
        self._check_replicas(acked, target)
        return result

    async def _count_replicas(self) -> None:
        self.replicas.observe_info(await self.redis.info("replication"))

    async def _replicas_ready(self) -> None:
        """Refuse to hand out calls while the primary lacks its replicas (a write-free ``WAIT``).

        A claim that ran but was not confirmed still counted a delivery; repeated every tick of an outage
        (a new primary waiting for a replica), those deliveries would dead-letter calls nobody ran.
        """
        await self._count_replicas()
        target = self.replicas.target
        self._check_replicas(int(await self.redis.wait(target, self.sync_timeout_ms)), target)

    def _check_replicas(self, acked: int, target: int) -> None:
        if acked < target:
            raise NoPrimary(f"only {acked} of {target} replicas confirmed the write within {self.sync_timeout_ms} ms")

    # ------------------------------------------------------------------ admission
    async def admit(self, job: CallJob, *, limit_wait: bool = True) -> Admission:
        """Enqueue a call unless it was admitted before or the queue is full.

        A source's call id names one call. Within ``dedupe_ttl_s`` a repeated admit is that call's duplicate
        delivery; later, the id names a new call (a source that reuses ids), which is queued under
        ``<id>~<n>`` so that it starts with a graph thread, a record and effects of its own and never
        resumes the earlier call's state (a verified caller, say). The queue remembers how often an id was
        used for ``uses_ttl_s``.

        Args:
            job: The call; ``job.priority`` must be one of the queue's priorities.
            limit_wait: Refuse the call when its expected wait exceeds ``max_expected_wait_s``. False for a caller
                who is already connected (in a LiveKit room): refusing them would not tell them anything.

        Returns:
            Its position, expected wait and the id it is queued under; ``duplicate=True`` (and the first
            admission's numbers) when the call was already admitted, in which case nothing is enqueued.

        Raises:
            QueueFull: ``max_depth`` calls already wait, or the expected wait exceeds
                ``max_expected_wait_s``.
            ValueError: Unknown priority.
        """
        idx = self._stream_index(job.priority)
        source_id, uses = job.call_id, 0
        keys = [self.keys.admission(source_id), self.keys.location, self.keys.workers, self.keys.handle]
        keys += [self.keys.counters, self.keys.uses(source_id), *self._streams]
        while True:
            queued = job if uses == 0 else job.model_copy(update={"call_id": f"{source_id}~{uses + 1}"})
            args: list[Any] = [
                queued.call_id,
                idx,
                queued.model_dump_json(),
                queued.attempt,
                self.max_depth,
                int(self.max_expected_wait_s * 1000) if limit_wait else -1,
                int(self.default_handle_s * 1000),
                int(self.dedupe_ttl_s * 1000),
                GROUP,
                RELEASED_CONSUMER,
                self.keys.worker_prefix,
                int(self.uses_ttl_s * 1000),
                uses,
            ]
            res = await self._call(self._admit, keys, args, durable=True)
            status = res[0]
            if status != "reused":
                break
            # The id was used before (or another admit took the next use meanwhile): queue it under the next.
            uses = int(res[1])
        if status == "full":
            retry_ms = int(res[2])
            raise QueueFull(max(1, -(-retry_ms // 1000)), res[1])
        position, wait_ms, *queued_as = res[1].split(" ")
        return Admission(
            call_id=queued_as[0] if queued_as else source_id,
            position=int(position),
            expected_wait_s=int(wait_ms) / 1000,
            duplicate=status == "dup",
        )

    def _stream_index(self, priority: int) -> int:
        try:
            return self._index[priority]
        except KeyError:
            raise ValueError(f"unknown priority {priority}; the queue has {self.keys.priorities}") from None

    # ------------------------------------------------------------------ claiming
    async def claim(self, consumer: str, *, count: int = 1, block_ms: int = 1000) -> list[ClaimedCall]:
        """Take up to ``count`` waiting calls, highest priority first; call it only with free slots.

        Calls handed back by :meth:`release` come before new ones of the same priority. When
        nothing waits, blocks up to ``block_ms`` (0 = do not block) for the next admitted call.

        Args:
            consumer: This worker's unique consumer name.
            count: Free slots.
            block_ms: Longest wait for a call when none is waiting.

        Returns:
            The claimed calls (possibly fewer than ``count``, or none after the block timed out).
        """
        if count <= 0:
            return []
        keys = [self.keys.histogram, *self._streams]
        args: list[Any] = [GROUP, consumer, count, RELEASED_CONSUMER, *self._bounds]
        if self._unobserved:
            args += ["|", *self._unobserved]
            self._unobserved = []
        raw = await self._call(self._claim, keys, args, durable=True, hands_out=True)
        calls = self._parse(raw, consumer)
        if calls or block_ms <= 0:
            return calls
        # Nothing waits: block on every stream at once. A wake-up serves only the stream that got
        # the new entry, and every stream was empty a moment ago, so priority order still holds.
        # redis-py's stubs type stream replies loosely; the shapes are checked by the tests
        resp: Any = await self._read_new(consumer, count, block_ms)
        if not resp:
            return []
        now = time.monotonic()
        redis_now_ms = time.time() * 1000 + self._clock_offset_ms
        out = []
        for stream, items in resp:
            idx = self._streams.index(stream) + 1
            for entry_id, raw_fields in items:
                f = dict(raw_fields)
                eid = entry_id
                waited = max(0, int(redis_now_ms - int(eid.split("-", 1)[0])))
                self._unobserved.append(waited)
                out.append(self._claimed(idx, eid, 1, int(f["a"]), f["j"], waited, consumer, now))
        return out

    async def _read_new(self, consumer: str, count: int, block_ms: int) -> Any:
        """XREADGROUP of new entries, followed on its connection by ``WAIT`` when claims must be replicated."""
        streams: dict[Any, Any] = dict.fromkeys(self._streams, ">")  # redis-py's stubs want a wider key type
        try:
            if self.sync_replicas <= 0:
                return await self.redis.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms)
            await self._replicas_ready()
            target = self.replicas.target
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms)
                pipe.wait(target, self.sync_timeout_ms)
                resp, acked = await pipe.execute()
        except ResponseError as exc:
            if refuses_writes(exc):
                raise NoPrimary(f"Redis refused the read of new calls: {exc}") from exc
            raise
        if resp:  # nothing read, nothing written: an empty read needs no confirmation
            self._check_replicas(acked, target)
        return resp

    async def flush_observations(self) -> None:
        """Feed the histogram with waits of blocking claims not yet recorded (the next claim does it too)."""
        if self._unobserved:
            pending, self._unobserved = self._unobserved, []
            args = [GROUP, "__observer__", 0, RELEASED_CONSUMER, *self._bounds, "|", *pending]
            await self._call(self._claim, [self.keys.histogram, *self._streams], args)

    def _parse(self, raw: list[Any], consumer: str) -> list[ClaimedCall]:
        now = time.monotonic()
        out = []
        for i in range(0, len(raw), 6):
            idx, entry_id, deliveries, attempt, job, waited = raw[i : i + 6]
            out.append(
                self._claimed(int(idx), entry_id, int(deliveries), int(attempt), job, int(waited), consumer, now)
            )
        return out

    def _claimed(
        self,
        idx: int,
        entry_id: str,
        deliveries: int,
        attempt: int,
        job: Any,
        waited_ms: int,
        consumer: str,
        now: float,
    ) -> ClaimedCall:
        parsed = CallJob.model_validate_json(job)
        effective = attempt + deliveries - 1
        if parsed.attempt != effective:
            parsed = parsed.model_copy(update={"attempt": effective})
        return ClaimedCall(
            job=parsed,
            entry_id=entry_id,
            priority=self.keys.priorities[idx - 1],
            deliveries=deliveries,
            waited_s=waited_ms / 1000,
            consumer=consumer,
            claimed_at=now,
        )

    async def heartbeat(self, claimed: Sequence[ClaimedCall]) -> list[ClaimedCall]:
        """Renew every call a live worker holds so none is reclaimed while its session runs.

        Run it every ``heartbeat_ms`` for all held calls. Only entries still owned by their consumer
        are renewed (XCLAIM JUSTID resets their idle time without counting a delivery).

        Returns:
            The calls this worker no longer owns (acked elsewhere or reclaimed after a stall); the
            worker should stop them.
        """
        lost: list[ClaimedCall] = []
        by_consumer: dict[str, list[ClaimedCall]] = {}
        for c in claimed:
            by_consumer.setdefault(c.consumer, []).append(c)
        for consumer, calls in by_consumer.items():
            args: list[Any] = [GROUP, consumer]
            for c in calls:
                args += [self._index[c.priority], c.entry_id]
            gone = set(await self._call(self._heartbeat, self._streams, args))
            lost += [c for c in calls if c.entry_id in gone]
        return lost

    async def reclaim(self, consumer: str, *, count: int) -> list[ClaimedCall]:
        """Take over calls idle for longer than ``reclaim_idle_ms`` (their worker died or stalled).

        Run it on a timer (not only after non-empty reads), with ``count`` = free slots. The
        reclaimed job's attempt is its enqueued attempt plus earlier deliveries; a call whose
        attempt would exceed ``max_attempts`` (it keeps killing workers) goes to the dead letters.

        Returns:
            The calls now held by ``consumer``.
        """
        if count <= 0:
            return []
        keys = [self.keys.dead, self.keys.alerts, self.keys.location, self.keys.counters, *self._streams]
        args = [GROUP, consumer, count, self.reclaim_idle_ms, self.max_attempts, self.alerts_maxlen]
        return self._parse(await self._call(self._reclaim, keys, args, durable=True, hands_out=True), consumer)

    # ------------------------------------------------------------------ outcomes
    async def publish_outcome(self, claimed: ClaimedCall, outcome: CallOutcome) -> bool:
        """Append a claimed call's outcome to the outcome stream (:mod:`orchestrator.queue.outcomes`) once.

        A synced write like the ack that follows it: an outcome published just before a failover is not lost
        with the old primary, and one the replicas did not confirm raises :class:`NoPrimary`, to be published
        again. Once per queue entry: a try that follows one that landed, or a new holder re-running an ended
        call, adds no second record.

        Returns:
            False when the entry's outcome was already on the stream.
        """
        keys = [outcomes_key(self.keys.prefix), self.keys.published(claimed.call_id, claimed.entry_id)]
        args = [OUTCOME_FIELD, outcome.model_dump_json(), OUTCOMES_MAXLEN, OUTCOME_ONCE_MS]
        return bool(await self._call(self._publish, keys, args, durable=True))

    async def ack(self, claimed: ClaimedCall) -> bool:
        """Acknowledge a finished call: XACK + XDEL of its entry, and feed the handle-time average.

        Returns:
            False when the entry was no longer pending (already acked, or failed elsewhere).
        """
        handle_ms = max(0, int((time.monotonic() - claimed.claimed_at) * 1000))
        keys = [self.stream_of(claimed), self.keys.location, self.keys.handle, self.keys.counters]
        args = [GROUP, claimed.entry_id, claimed.call_id, handle_ms, self.handle_alpha]
        return bool(await self._call(self._ack, keys, args, durable=True))

    async def fail(self, claimed: ClaimedCall, error: str) -> FailOutcome:
        """Record a failed attempt: retry after an exponential backoff, or dead-letter it.

        After ``max_attempts`` the call goes to the dead-letter stream with ``error``, and an alert is
        added to the alerts stream and published on the channel of the same name.

        Returns:
            ``"retry"``, ``"dead"``, or ``"gone"`` when the entry was no longer pending.
        """
        attempt = claimed.attempt
        delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        delay *= 1 + random.random() * 0.1  # a little jitter so a burst of failures does not retry in lockstep
        retry = claimed.job.model_copy(update={"attempt": attempt + 1}).model_dump_json()
        keys = [self.stream_of(claimed), self.keys.delayed, self.keys.dead, self.keys.alerts]
        keys += [self.keys.location, self.keys.counters]
        args: list[Any] = [
            GROUP,
            claimed.entry_id,
            claimed.call_id,
            attempt,
            self.max_attempts,
            int(delay * 1000),
            retry,
            claimed.job.model_dump_json(),
            error,
            self._index[claimed.priority],
            self.alerts_maxlen,
        ]
        res = await self._call(self._fail, keys, args, durable=True)
        outcome: str = res[0]
        if outcome not in ("retry", "dead", "gone"):
            raise RuntimeError(f"unexpected fail outcome {outcome!r}")
        return outcome  # type: ignore[return-value]  # narrowed by the check above

    async def release(self, claimed: ClaimedCall) -> bool:
        """Hand a call back without counting a failure (a draining worker that must not start it).

        The call keeps its place: the next claim of any worker takes it before newer calls of the
        same priority.

        Returns:
            False when the entry was no longer pending.
        """
        args = [GROUP, claimed.entry_id, RELEASED_CONSUMER]
        return bool(await self._call(self._release, [self.stream_of(claimed)], args, durable=True))

    async def abandon(self, call_id: str) -> AbandonOutcome:
        """Take a call out of the queue because its caller hung up before a worker answered it.

        Args:
            call_id: The id the source admitted the call under (the call it was queued as is looked up).

        Returns:
            Where the call was: ``waiting`` (in the queue, or handed back by a worker) or ``delayed`` (in
            its retry backoff): removed, and counted as abandoned; ``in_flight``: a worker holds it and its
            session sees the caller leave, so it stays; ``gone``: not in the queue (finished, dead-lettered
            or never admitted).
        """
        keys = [self.keys.admission(call_id), self.keys.location, self.keys.delayed, self.keys.counters]
        res = await self._call(
            self._abandon, [*keys, *self._streams], [GROUP, RELEASED_CONSUMER, call_id], durable=True
        )
        state: str = res[0]
        if state not in ("waiting", "delayed", "in_flight", "gone"):
            raise RuntimeError(f"unexpected abandon result {state!r}")
        return state  # type: ignore[return-value]  # checked against the Literal's values just above

    async def promote_due(self, limit: int = 100) -> int:
        """Move retries whose backoff has ended back into their stream (run it on a timer).

        Returns:
            How many calls were moved.
        """
        keys = [self.keys.delayed, self.keys.location, *self._streams]
        return int(await self._call(self._promote, keys, [limit]))

    def stream_of(self, claimed: ClaimedCall) -> str:
        """The stream key that holds a claimed call."""
        return self.keys.stream(claimed.priority)

    # ------------------------------------------------------------------ workers
    async def register_worker(self, consumer: str, slots: int, *, ttl_ms: int | None = None) -> None:
        """Register (or refresh) a worker's slot count; it expires unless refreshed within ``ttl_ms``.

        Args:
            consumer: The worker's consumer name.
            slots: Concurrent calls it can run.
            ttl_ms: Lifetime of the registration; default ``2 * reclaim_idle_ms``.
        """
        ttl = ttl_ms if ttl_ms is not None else 2 * self.reclaim_idle_ms
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.worker_prefix + consumer, slots, px=ttl)
            pipe.sadd(self.keys.workers, consumer)
            await pipe.execute()

    async def unregister_worker(self, consumer: str) -> None:
        """Remove a worker's slots at once (a clean shutdown)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.worker_prefix + consumer)
            pipe.srem(self.keys.workers, consumer)
            await pipe.execute()

    # ------------------------------------------------------------------ dead letters
    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters first."""
        entries: Any = await self.redis.xrevrange(self.keys.dead, count=limit)
        return [self._dead(entry_id, fields) for entry_id, fields in entries]

    async def dead_letter(self, dead_id: str) -> DeadLetter | None:
        """One dead letter by id, or None."""
        entries: Any = await self.redis.xrange(self.keys.dead, dead_id, dead_id)
        return self._dead(*entries[0]) if entries else None

    @staticmethod
    def _dead(entry_id: Any, fields: dict[Any, Any]) -> DeadLetter:
        f = dict(fields)
        return DeadLetter(
            id=entry_id,
            job=CallJob.model_validate_json(f["j"]),
            error=f["e"],
            attempts=int(f["a"]),
            failed_at=datetime.fromtimestamp(int(f["t"]) / 1000, UTC),
        )

    async def replay(self, dead_id: str) -> CallJob:
        """Put a dead letter back into its queue with the attempt count reset (once).

        Returns:
            The job as re-enqueued.

        Raises:
            DeadLetterNotFound: No such dead letter (or it was already replayed).
        """
        dead = await self.dead_letter(dead_id)
        if dead is None:
            raise DeadLetterNotFound(dead_id)
        job = dead.job.model_copy(update={"attempt": 1})
        idx = self._stream_index(job.priority)
        keys = [self.keys.dead, self.keys.location, *self._streams]
        new_id = await self._call(self._replay, keys, [dead_id, job.call_id, idx, job.model_dump_json()], durable=True)
        if not new_id:
            raise DeadLetterNotFound(dead_id)
        return job

    # ------------------------------------------------------------------ positions and stats
    async def _positions(self, call_id: str, limit: int) -> list[WaitingCall]:
        keys = [self.keys.location, self.keys.workers, self.keys.handle, *self._streams]
        args = [GROUP, RELEASED_CONSUMER, int(self.default_handle_s * 1000), self.keys.worker_prefix, call_id, limit]
        raw = await self._call(self._waiting, keys, args)
        return [WaitingCall(raw[i], int(raw[i + 1]), int(raw[i + 2]) / 1000) for i in range(0, len(raw), 3)]

    async def position(self, call_id: str) -> int | None:
        """1-based place of a waiting call across priorities, or None when it is not waiting."""
        found = await self._positions(call_id, 1)
        return found[0].position if found else None

    async def expected_wait_s(self, call_id: str) -> float | None:
        """Expected seconds until a waiting call is claimed, or None when it is not waiting."""
        found = await self._positions(call_id, 1)
        return found[0].expected_wait_s if found else None

    async def waiting(self, limit: int = 10_000) -> list[WaitingCall]:
        """Every waiting call in claim order with its position and expected wait (for hold messages)."""
        return await self._positions("", limit)

    async def stats(self) -> QueueStats:
        """Depth per priority, oldest wait, in flight, retries, dead letters, slots and the wait histogram."""
        await self.flush_observations()
        keys = [self.keys.delayed, self.keys.dead, self.keys.workers, self.keys.handle, self.keys.histogram]
        keys += [self.keys.counters, *self._streams]
        args = [GROUP, RELEASED_CONSUMER, int(self.default_handle_s * 1000), self.keys.worker_prefix]
        per, oldest, busy, delayed, dead, slots, avg, hist_raw, counters_raw = await self._call(self._stats, keys, args)
        hist = {hist_raw[i]: int(hist_raw[i + 1]) for i in range(0, len(hist_raw), 2)}
        counters = {counters_raw[i]: int(counters_raw[i + 1]) for i in range(0, len(counters_raw), 2)}
        buckets = {f"{b / 1000:g}": hist.get(f"le:{b}", 0) for b in WAIT_BUCKETS_MS}
        buckets["+Inf"] = hist.get("le:+Inf", 0)
        waiting = {p: int(n) for p, n in zip(self.keys.priorities, per, strict=True)}
        return QueueStats(
            waiting_by_priority=waiting,
            waiting=sum(waiting.values()),
            oldest_wait_s=int(oldest) / 1000,
            in_flight=int(busy),
            retries_scheduled=int(delayed),
            dead_letters=int(dead),
            worker_slots=int(slots),
            avg_handle_s=float(avg) / 1000,
            admitted=counters.get("admitted", 0),
            duplicates=counters.get("duplicates", 0),
            refused=counters.get("refused", 0),
            completed=counters.get("completed", 0),
            abandoned=counters.get("abandoned", 0),
            wait_histogram=WaitHistogram(
                buckets=buckets, count=hist.get("count", 0), sum_s=hist.get("sum_ms", 0) / 1000
            ),
        )


def open_queue(settings: Settings, url: str, *, prefix: str = "sb") -> CallQueue:
    """A CallQueue that owns a blocking-pool client for ``url``, with the limits from ``settings``.

    The pool blocks when every connection is busy rather than failing, so a burst of webhooks queues
    in the client instead of turning into 503s.
    """
    client = open_redis(url, max_connections=64, pool_timeout_s=10)
    return CallQueue.from_settings(settings, client, prefix=prefix, owns_client=True)
