"""`switchboard capacity`: Erlang C against textbook values, the plan's arithmetic, and bad input in one line."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from orchestrator.capacity import (
    MANAGED_PRICES,
    Instance,
    Sizing,
    average_wait_s,
    erlang_c,
    plan,
    servers_needed,
    service_level,
)
from orchestrator.cli import app

pytestmark = pytest.mark.unit


def test_erlang_c_matches_the_closed_forms() -> None:
    # Two Erlangs on three servers: P(wait) = (A^N/N! * N/(N-A)) / (sum_{k<N} A^k/k! + A^N/N! * N/(N-A)) = 4/9.
    assert erlang_c(3, 2.0) == pytest.approx(4 / 9, abs=1e-12)
    # One server (M/M/1): a call waits exactly when the server is busy, with probability rho.
    for rho in (0.1, 0.5, 0.9):
        assert erlang_c(1, rho) == pytest.approx(rho, abs=1e-12)


def test_erlang_c_matches_the_textbook_call_centre_table() -> None:
    # The worked example of call-centre planning: 100 calls in 30 minutes of 180 s each (10 Erlangs), a 20 s
    # target. Agents: (probability of waiting, share answered within 20 s, average speed of answer in s).
    table = {
        11: (0.6821, 0.3896, 122.8),
        12: (0.4494, 0.6402, 40.4),
        13: (0.2853, 0.7956, 17.1),
        14: (0.1741, 0.8884, 7.8),
        15: (0.1020, 0.9415, 3.7),
    }
    for agents, (waits, answered, asa) in table.items():
        assert erlang_c(agents, 10.0) == pytest.approx(waits, abs=5e-5)
        assert service_level(agents, 10.0, 180, 20) == pytest.approx(answered, abs=5e-5)
        assert average_wait_s(agents, 10.0, 180) == pytest.approx(asa, abs=0.05)
    # 13 agents answer 79.6 %: 80 % within 20 s takes 14.
    assert servers_needed(10.0, 180, 20, 0.8) == 14


def test_erlang_c_stays_finite_for_large_centres_and_is_one_past_saturation() -> None:
    assert 0.0 < erlang_c(5000, 4900.0) < 1.0
    assert erlang_c(10, 10.0) == 1.0
    assert erlang_c(10, 12.0) == 1.0
    assert service_level(10, 12.0, 180, 20) == 0.0
    assert math.isinf(average_wait_s(10, 10.0, 180))


def test_the_sessions_planned_are_the_fewest_that_meet_the_service_level() -> None:
    for load in (0.5, 3.2, 34.7, 250.0):
        n = servers_needed(load, 180, 20, 0.8)
        assert service_level(n, load, 180, 20) >= 0.8
        assert n - 1 <= load or service_level(n - 1, load, 180, 20) < 0.8


def test_a_plan_sizes_workers_nodes_and_costs_from_the_busy_hour() -> None:
    sizing = Sizing()
    p = plan(500_000, average_call_minutes=3, peak_factor=3, answer_within_s=20, target_service_level=0.8)
    assert p.offered_erlangs == pytest.approx(500_000 / 43_200 * 3)
    assert p.peak_concurrent_calls == servers_needed(p.offered_erlangs, 180, 20, 0.8)
    assert p.agent_workers == math.ceil(p.peak_concurrent_calls / sizing.agent_slots)
    assert p.queue_workers == math.ceil(p.peak_concurrent_calls / sizing.queue_slots)
    usable = Instance().allocatable * 0.9
    assert p.node_cpu_requested <= p.nodes * Instance().vcpu * usable
    assert p.node_memory_requested_gib <= p.nodes * Instance().memory_gib * usable
    assert p.self_hosted == pytest.approx(p.nodes * Instance().hourly_usd * 730)
    assert (p.managed_low, p.managed_high) == pytest.approx((500_000 * 0.23, 500_000 * 0.33))
    assert MANAGED_PRICES == (0.23, 0.33)


def test_more_traffic_never_needs_less() -> None:
    plans = [plan(m) for m in (10_000, 25_000, 100_000, 500_000, 2_000_000)]
    for small, big in zip(plans, plans[1:], strict=False):
        assert big.peak_concurrent_calls >= small.peak_concurrent_calls
        assert big.agent_workers >= small.agent_workers
        assert big.nodes >= small.nodes


def test_small_traffic_still_gets_the_minimum_deployment() -> None:
    p = plan(100)
    assert p.agent_workers == Sizing().min_agent_workers
    assert p.queue_workers == 1
    assert p.nodes == Sizing().livekit_replicas


def test_json_has_the_documented_shape() -> None:
    result = CliRunner().invoke(app, ["capacity", "--minutes-per-month", "25000", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"peak_concurrent_calls", "agent_workers", "queue_workers", "nodes", "service_level"} <= set(out)
    assert set(out["monthly_cost"]) == {"self_hosted", "managed_low", "managed_high"}
    assert out["monthly_cost"]["managed_low"] == pytest.approx(25_000 * 0.23)
    assert out["peak_concurrent_calls"] == plan(25_000).peak_concurrent_calls


def test_the_table_shows_both_costs_side_by_side() -> None:
    result = CliRunner().invoke(app, ["capacity", "--minutes-per-month", "100000"])
    assert result.exit_code == 0, result.output
    for words in ("agent workers", "queue workers", "nodes", "$23,000", "$33,000", "self-hosted"):
        assert words in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--minutes-per-month", "-5"], "--minutes-per-month must be more than 0"),
        (["--minutes-per-month", "0"], "--minutes-per-month must be more than 0"),
        (["--minutes-per-month", "ten"], "--minutes-per-month must be a number"),
        (["--minutes-per-month", "nan"], "--minutes-per-month must be more than 0"),
        (["--minutes-per-month", "1000", "--average-call-minutes", "0"], "--average-call-minutes must be more"),
        (["--minutes-per-month", "1000", "--peak-factor", "0.5"], "--peak-factor must be at least 1"),
        (["--minutes-per-month", "1000", "--answer-within", "-1"], "--answer-within must be more than 0"),
        (["--minutes-per-month", "1000", "--service-level", "1"], "--service-level must be more than 0"),
        (["--minutes-per-month", "1000", "--instance-memory-gib", "2"], "cannot hold one agent worker"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], words: str) -> None:
    result = CliRunner().invoke(app, ["capacity", *args])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert words in lines[0]
    assert result.stdout == ""
