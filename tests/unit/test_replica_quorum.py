"""The replica count a synced queue write waits for: every replica online, a lost one for a grace, per primary."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.queue.replication import ReplicaQuorum, online_replicas

pytestmark = pytest.mark.unit


def info(replid: str, *states: tuple[str, int], role: str = "master") -> dict[str, Any]:
    out: dict[str, Any] = {"role": role, "master_replid": replid, "connected_slaves": len(states)}
    for i, (state, offset) in enumerate(states):
        out[f"slave{i}"] = {"ip": "127.0.0.1", "port": 7000 + i, "state": state, "offset": offset, "lag": 0}
    return out


def test_only_replicas_in_sync_that_acknowledged_a_write_are_counted() -> None:
    report = info("a", ("online", 90), ("online", 0), ("wait_bgsave", 0), ("send_bulk", 0), ("online", 12))
    assert online_replicas(report) == 2
    assert online_replicas({"role": "master", "slave_read_only": 1, "slaves": 3}) == 0  # names that only look alike


def test_the_target_is_every_replica_online_and_never_below_the_floor() -> None:
    quorum = ReplicaQuorum(1, clock=lambda: 0.0)
    assert quorum.target == 1
    quorum.observe_info(info("a", ("online", 5), ("online", 5)))
    assert quorum.target == 2
    quorum.observe_info(info("a", ("online", 5), ("online", 5), ("online", 5)))
    assert quorum.target == 3


def test_a_lost_replica_is_waited_for_until_the_grace_has_passed_since_it_was_first_missed() -> None:
    now = [0.0]
    quorum = ReplicaQuorum(1, grace_s=5.0, clock=lambda: now[0])
    quorum.observe_info(info("a", ("online", 5), ("online", 5)))
    for t in (1.0, 3.0, 5.9):
        now[0] = t
        quorum.observe_info(info("a", ("online", 5)))
        assert quorum.target == 2, t
    now[0] = 6.0
    quorum.observe_info(info("a", ("online", 5)))
    assert quorum.target == 1


def test_a_replica_back_within_the_grace_ends_it_and_a_later_loss_starts_a_new_one() -> None:
    now = [0.0]
    quorum = ReplicaQuorum(1, grace_s=5.0, clock=lambda: now[0])
    quorum.observe_info(info("a", ("online", 5), ("online", 5)))
    quorum.observe_info(info("a", ("online", 5)))
    now[0] = 4.0
    quorum.observe_info(info("a", ("online", 5), ("online", 9)))
    now[0] = 8.0
    quorum.observe_info(info("a", ("online", 5)))  # lost again: the grace counts from here
    now[0] = 12.0
    quorum.observe_info(info("a", ("online", 5)))
    assert quorum.target == 2
    now[0] = 13.0
    quorum.observe_info(info("a", ("online", 5)))
    assert quorum.target == 1


def test_a_new_primary_is_held_to_what_it_reports_and_a_replica_report_changes_nothing() -> None:
    quorum = ReplicaQuorum(1, clock=lambda: 0.0)
    quorum.observe_info(info("a", ("online", 5), ("online", 5)))
    quorum.observe_info(info("b", role="slave"))  # a demoted primary: the write will be refused as READONLY
    assert quorum.target == 2
    quorum.observe_info(info("b"))  # promoted, its replicas not yet following it
    assert quorum.target == 1


def test_the_count_is_read_again_once_a_second() -> None:
    now = [0.0]
    quorum = ReplicaQuorum(1, clock=lambda: now[0])
    assert quorum.stale()
    quorum.observe_info(info("a", ("online", 5)))
    now[0] = 0.9
    assert not quorum.stale()
    now[0] = 1.0
    assert quorum.stale()


def test_a_hung_replica_still_connected_is_not_waited_for_and_starts_no_grace() -> None:
    quorum = ReplicaQuorum(1, clock=lambda: 0.0)
    quorum.observe_info(info("a", ("online", 5), ("online", 5)))
    hung = info("a", ("online", 5), ("online", 5))
    hung["slave1"]["lag"] = 3  # silent for 3 s: replicas acknowledge every second
    quorum.observe_info(hung)
    assert quorum.target == 1
    quorum.observe_info(info("a", ("online", 9), ("online", 9)))
    assert quorum.target == 2
