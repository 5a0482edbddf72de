"""Admission with no writable primary: a read-only replica or unconfirmed replication is a 503, never a 500."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.api.app import create_app
from orchestrator.api.signing import sign_intake
from orchestrator.config import load_settings
from orchestrator.contracts import CallJob
from orchestrator.queue import CallQueue
from orchestrator.queue.errors import NoPrimary
from orchestrator.queue.replication import MAX_LAG_S, ReplicaQuorum, online_replicas
from tests.redis_set import RedisProc, require_redis, wait_for

pytestmark = pytest.mark.contract

INTAKE = "intake-secret"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RedisProc, RedisProc]]:
    require_redis()
    primary = RedisProc(tmp_path / "primary", [])
    replica = RedisProc(tmp_path / "replica", ["--replicaof", "127.0.0.1", str(primary.port)])
    try:
        primary.start()
        replica.start()
        replica.wait_in_sync()
        yield primary, replica
    finally:
        replica.kill9()
        primary.kill9()


async def post_call(queue: CallQueue, call_id: str) -> httpx.Response:
    app = create_app(load_settings(intake_secret=INTAKE), queue=queue)
    body = json.dumps({"call_id": call_id, "source": "sip"}).encode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await client.post("/v1/calls", content=body, headers=sign_intake(INTAKE, body))


@pytest.fixture
async def on_replica(pair: tuple[RedisProc, RedisProc]) -> AsyncIterator[CallQueue]:
    # What a client still holding a connection to a demoted primary meets during a failover.
    queue = CallQueue.from_url(pair[1].url, prefix=f"ro-{uuid.uuid4().hex[:8]}")
    yield queue
    await queue.aclose()


async def test_an_admission_a_read_only_replica_refuses_is_a_503_with_retry_after(on_replica: CallQueue) -> None:
    resp = await post_call(on_replica, "ro-1")
    assert resp.status_code == 503, resp.text
    assert resp.headers["Retry-After"] == "1"
    assert resp.json()["error"]["code"] == "queue_unavailable"


async def test_with_sync_replicas_an_admission_is_on_the_replica_before_the_202(
    pair: tuple[RedisProc, RedisProc],
) -> None:
    primary, replica = pair
    queue = CallQueue.from_url(primary.url, prefix=f"sync-{uuid.uuid4().hex[:8]}", sync_replicas=1)
    reader = replica.client()
    try:
        resp = await post_call(queue, "sync-1")
        assert resp.status_code == 202, resp.text
        # Read on the replica at once: WAIT returned only after it had the entry.
        assert reader.xlen(queue.keys.stream(1)) == 1
        claimed = await queue.claim("w1", block_ms=0)
        assert [c.call_id for c in claimed] == ["sync-1"]
        assert await queue.ack(claimed[0])
        assert reader.xpending(queue.keys.stream(1), "workers")["pending"] == 0

        # The replica gone, a write no replica confirms is refused: 503, and the queue says why.
        replica.kill9()
        wait_for(lambda: primary.client().info("replication")["connected_slaves"] == 0, "the primary losing it")
        resp = await post_call(queue, "sync-2")
        assert resp.status_code == 503, resp.text
        assert resp.headers["Retry-After"] == "1"
        with pytest.raises(NoPrimary, match="0 of 1 replicas"):
            await queue.admit(CallJob(call_id="sync-3", source="sip"))
    finally:
        reader.close()
        await queue.aclose()


async def test_without_its_replica_a_claim_hands_out_nothing_and_counts_no_delivery(
    pair: tuple[RedisProc, RedisProc],
) -> None:
    # A claim that ran but was not confirmed would count a delivery each try; a new primary waiting for
    # its replica would then dead-letter the calls nobody ran. So nothing is claimed until the replica is back.
    primary, replica = pair
    queue = CallQueue.from_url(
        primary.url,
        prefix=f"sync-{uuid.uuid4().hex[:8]}",
        sync_replicas=1,
        max_attempts=1,  # one more delivery dead-letters the call
        reclaim_idle_ms=100,
        heartbeat_ms=50,
    )
    try:
        await queue.admit(CallJob(call_id="held-1", source="sip"))
        replica.kill9()
        wait_for(lambda: primary.client().info("replication")["connected_slaves"] == 0, "the primary losing it")
        for _ in range(2):
            with pytest.raises(NoPrimary, match="0 of 1 replicas"):
                await queue.claim("w1", block_ms=0)
            with pytest.raises(NoPrimary, match="0 of 1 replicas"):
                await queue.claim("w1", block_ms=50)  # the blocking read of new calls
            with pytest.raises(NoPrimary, match="0 of 1 replicas"):
                await queue.reclaim("w2", count=1)
        stats = await queue.stats()
        assert (stats.waiting, stats.in_flight, stats.dead_letters) == (1, 0, 0)

        replica.start()
        replica.wait_in_sync()
        claimed = await queue.claim("w1", block_ms=0)
        assert [(c.call_id, c.deliveries, c.job.attempt) for c in claimed] == [("held-1", 1, 1)]
    finally:
        await queue.aclose()


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[tuple[RedisProc, RedisProc, RedisProc]]:
    require_redis()
    primary = RedisProc(tmp_path / "primary", [])
    replicas = [RedisProc(tmp_path / f"replica-{i}", ["--replicaof", "127.0.0.1", str(primary.port)]) for i in (0, 1)]
    try:
        primary.start()
        for replica in replicas:
            replica.start()
            replica.wait_in_sync()
        # A replica is in sync up to a second before it acknowledges a write (its first REPLCONF ACK).
        client = primary.client()
        try:
            client.set("first-write", 1)
        finally:
            client.close()
        wait_for(lambda: online(primary) == 2, "the primary counting both replicas online")
        yield primary, replicas[0], replicas[1]
    finally:
        for proc in (*replicas, primary):
            proc.kill9()


def online(primary: RedisProc) -> int:
    client = primary.client()
    try:
        return online_replicas(client.info("replication"))
    finally:
        client.close()


def lags(primary: RedisProc) -> list[int]:
    client = primary.client()
    try:
        report = client.info("replication")
        return sorted(int(v["lag"]) for k, v in report.items() if k.startswith("slave") and isinstance(v, dict))
    finally:
        client.close()


async def test_a_claim_counts_only_once_every_replica_online_holds_it(
    trio: tuple[RedisProc, RedisProc, RedisProc],
) -> None:
    # Sentinel promotes the replica it last saw most up to date, from reports up to a second old: a claim on
    # one replica of two may be missing on the one promoted, and the call would then run on two workers.
    primary, _, stalled = trio
    queue = CallQueue.from_url(primary.url, prefix=f"sync-{uuid.uuid4().hex[:8]}", sync_replicas=1, sync_timeout_ms=300)
    try:
        await queue.admit(CallJob(call_id="both-1", source="sip"))
        assert stalled.proc is not None
        os.kill(stalled.proc.pid, signal.SIGSTOP)  # connected, so the primary still counts it, but it confirms nothing
        try:
            with pytest.raises(NoPrimary, match="1 of 2 replicas"):
                await queue.claim("w1", block_ms=0)
        finally:
            os.kill(stalled.proc.pid, signal.SIGCONT)
        claimed = await queue.claim("w1", block_ms=0)
        assert [c.call_id for c in claimed] == ["both-1"]
        for replica in trio[1:]:
            reader = replica.client()
            try:  # at once: the claim returned only after both had it
                assert reader.xpending(queue.keys.stream(1), "workers")["pending"] == 1
            finally:
                reader.close()

        await queue.admit(CallJob(call_id="hung-1", source="sip"))

        # Silent for longer than replicas ever are (they acknowledge every second), it is hung: writes go on.
        os.kill(stalled.proc.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: lags(primary)[1] > MAX_LAG_S, "the primary seeing the replica silent")
            assert [c.call_id for c in await queue.claim("w1", block_ms=0)] == ["hung-1"]
        finally:
            os.kill(stalled.proc.pid, signal.SIGCONT)
    finally:
        await queue.aclose()


async def test_a_replica_the_primary_lost_is_waited_for_during_the_grace_then_writes_go_on_without_it(
    trio: tuple[RedisProc, RedisProc, RedisProc],
) -> None:
    # The lost replica may be the one the sentinels are promoting, and this primary the one about to be demoted:
    # what it writes meanwhile must not count on the replica left to it.
    primary, _, lost = trio
    now = [0.0]
    queue = CallQueue.from_url(primary.url, prefix=f"sync-{uuid.uuid4().hex[:8]}", sync_replicas=1, sync_timeout_ms=300)
    queue.replicas = ReplicaQuorum(1, grace_s=5.0, clock=lambda: now[0])
    try:
        await queue.admit(CallJob(call_id="grace-1", source="sip"))
        assert queue.replicas.target == 2
        lost.kill9()
        wait_for(lambda: online(primary) == 1, "the primary losing a replica")
        now[0] += 1.0  # the count is read again a second later
        with pytest.raises(NoPrimary, match="1 of 2 replicas"):
            await queue.admit(CallJob(call_id="grace-2", source="sip"))
        now[0] += 4.0
        with pytest.raises(NoPrimary, match="1 of 2 replicas"):
            await queue.admit(CallJob(call_id="grace-2", source="sip"))
        now[0] += 1.0  # five seconds since the primary first reported it gone
        admission = await queue.admit(CallJob(call_id="grace-2", source="sip"))
        # The refused tries reached the primary: the retry is their duplicate, and the call waits once.
        assert (admission.call_id, admission.duplicate, queue.replicas.target) == ("grace-2", True, 1)
        assert (await queue.stats()).waiting == 2
    finally:
        await queue.aclose()
