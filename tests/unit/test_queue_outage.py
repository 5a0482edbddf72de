"""Outage: one warning per Redis outage, none per retry; a stale connection's failure right after is the same outage."""

from __future__ import annotations

import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from orchestrator.queue.outage import Outage

pytestmark = pytest.mark.unit

DOWN = RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "orchestrator.queue.outage"]


def test_an_outage_logs_one_line_when_it_starts_and_one_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "orchestrator.queue.outage")
    outage = Outage("worker w1", first_delay_s=0.1, max_delay_s=0.8)
    waits = [outage.failed(DOWN) for _ in range(6)]
    assert outage.down
    assert all(0.05 <= w <= 0.8 for w in waits)
    assert waits[-1] >= 0.4, "the backoff grows to its cap"
    outage.ok()
    outage.ok()
    assert not outage.down
    [went, back] = lines(caplog)
    assert went.startswith("worker w1: Redis unreachable (ConnectionError: Error 111")
    assert back.startswith("worker w1: Redis reachable again after")
    assert not [r for r in caplog.records if r.exc_info], "no traceback"


def test_a_failure_just_after_an_outage_is_its_tail_and_a_later_one_a_new_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "orchestrator.queue.outage")
    outage = Outage("worker w1", settle_s=60)
    outage.failed(DOWN)
    outage.ok()
    outage.failed(RedisConnectionError("Connection closed by server."))  # a pooled connection from before
    outage.ok()
    assert (outage.outages, len(lines(caplog))) == (1, 2)

    fresh = Outage("worker w2", settle_s=0)
    fresh.failed(DOWN)
    fresh.ok()
    fresh.failed(DOWN)
    fresh.ok()
    assert fresh.outages == 2
