"""The LiveKit agent worker's process pool, run with no LiveKit server: dispatched jobs reach our entrypoint.

A dispatched call is tracked like a text call: its span continues the job's trace, the console's live
feed gets each turn as it is spoken, and the call record (redacted transcript), stage latencies and
phrase-cache lookups are written when it ends. The job processes export their telemetry over OTLP,
received here by a stand-in collector (`agent_worker_support/otlp_collector.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from orchestrator.providers.tts import piper_available
from orchestrator.telemetry import names
from tests.conftest import REDIS_TEST_URL

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(
        not piper_available() and shutil.which("flite") is None,
        reason="no local TTS: install Debian flite (apt-get install -y flite) or the piper extra",
    ),
]

SCRIPT = Path(__file__).with_name("agent_worker_support") / "run_pool.py"
ROOT = Path(__file__).resolve().parents[2]
# The voice stages a spoken turn splits into, besides end to end and the graph's whole run.
VOICE_STAGES = {
    names.STAGE_STT,
    names.STAGE_ENDPOINTING,
    names.STAGE_LLM_TTFT,
    names.STAGE_TTS_TTFB,
    names.STAGE_OVERHEAD,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of the pool (it takes ~40 s: process start-up, a spoken call, a forced shutdown)."""
    tmp_path = tmp_path_factory.mktemp("agent-pool")
    suffix = uuid.uuid4().hex[:8]
    call_id, room, prefix = f"call-voice-{suffix}", f"room-{suffix}", f"sbtest-{suffix}"
    env = {
        **os.environ,
        "REDIS_URL": REDIS_TEST_URL,
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
        "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("LIVEKIT_URL", None)
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(free_port()), call_id, room, prefix],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=ROOT,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(call_id=call_id, room=room)
    return result


def test_jobs_run_in_pool_processes_and_report_their_end(pool_run: dict[str, Any]) -> None:
    # Readiness comes from registration, not from the process being up.
    assert pool_run["readyz_unregistered"] == 503
    assert pool_run["active_jobs"] >= 1
    # The spoken call ended by itself; the queue worker would ack it.
    assert pool_run["call_marker"]["status"] == "ended", pool_run["call_marker"]
    # A job still in its room when the pool shuts down is cancelled, and its end-of-session marker still
    # reaches the queue worker's key, so the call would be retried, not lost.
    assert pool_run["cancelled_marker"]["status"] == "failed"
    assert "CancelledError" in pool_run["cancelled_marker"]["error"]


def test_the_voice_call_is_recorded_with_its_redacted_transcript(pool_run: dict[str, Any]) -> None:
    record = pool_run["record"]
    assert record is not None, "the agent job wrote the call record"
    assert (record["worker"], record["attempt"], record["queue_wait_ms"]) == ("queue-worker-1", 1, 12.0)
    assert record["turn_count"] == 2
    turns = record["turns"]
    assert "balance" in turns[0]["caller"].lower()
    assert all(t["agent"] for t in turns), "every turn was answered"
    assert all(t["latency_ms"] > 0 for t in turns), "a voice turn's latency is its first audio"
    # Redacted as text calls are: the verified caller's name never reaches the record.
    assert "Maria" not in json.dumps(turns)
    assert record["trace_id"] == pool_run["trace"]["trace_id"]


def test_the_call_span_continues_the_jobs_trace(pool_run: dict[str, Any]) -> None:
    trace = pool_run["trace"]
    spans = [s for s in pool_run["spans"] if s["trace"] == trace["trace_id"]]
    (call,) = [s for s in spans if s["name"] == names.SPAN_CALL]
    assert call["parent"] == trace["parent_id"], "the call span hangs off the admission span"
    assert call["attributes"][names.ATTR_CALL_ID] == pool_run["call_id"]
    assert call["attributes"][names.ATTR_OUTCOME] == "resolved"
    assert call["attributes"][names.ATTR_CALL_START_MS] > 0
    ids = {s["id"] for s in spans} | {trace["parent_id"]}
    orphans = [(s["name"], s["parent"]) for s in spans if s["parent"] not in ids]
    assert orphans == [], "every span of the call hangs off its tree"
    by_name = [s["name"] for s in spans]
    # livekit's session joined the call's trace, and so did the graph: a run per turn, its nodes, the tool.
    assert by_name.count("agent_session") == 1
    assert by_name.count(names.SPAN_GRAPH) == 2
    assert "cc.node.route" in by_name
    assert "cc.tool.get_balance" in by_name
    print(f"\nvoice call start: {call['attributes'][names.ATTR_CALL_START_MS]:.0f} ms from job start to session ready")


def _latest(points: list[dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    """Each series of ``name`` by its attributes, summed over the processes that export it (job processes,
    idle ones included), from each process's last point (cumulative temporality)."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for point in points:
        if point["name"] == name:
            last[(point["instance"], json.dumps(point["attributes"], sort_keys=True))] = point
    assert all(instance for instance, _ in last), "every process names itself (service.instance.id)"
    out: dict[str, dict[str, Any]] = {}
    for (_, key), point in last.items():
        total = out.setdefault(key, {"attributes": point["attributes"]})
        for field in ("value", "count", "sum"):
            if field in point:
                total[field] = total.get(field, 0.0) + point[field]
    return out


def test_metrics_have_the_voice_stage_latencies_and_the_cache_counts(pool_run: dict[str, Any]) -> None:
    latency = {json.loads(k)["stage"]: p for k, p in _latest(pool_run["points"], names.M_TURN_LATENCY).items()}
    assert latency[names.STAGE_E2E]["count"] == 2
    assert latency[names.STAGE_E2E]["sum"] == pytest.approx(sum(t["latency_ms"] for t in pool_run["record"]["turns"]))
    for stage in VOICE_STAGES:
        assert latency[stage]["count"] == 2, stage
    # Each stage is part of the first audio.
    for stage in (names.STAGE_STT, names.STAGE_LLM_TTFT, names.STAGE_TTS_TTFB):
        assert latency[stage]["sum"] < latency[names.STAGE_E2E]["sum"], stage
    lookups = {
        json.loads(k)["result"]: p["value"] for k, p in _latest(pool_run["points"], names.M_PHRASE_CACHE).items()
    }
    # Every sentence the agent spoke went through the cache, which counted it (no inference from replies).
    assert sum(lookups.values()) >= 2
    assert set(lookups) <= {names.CACHE_HIT, names.CACHE_MISS, names.CACHE_BYPASS}
    (calls,) = _latest(pool_run["points"], names.M_CALLS).values()
    assert (calls["attributes"], calls["value"]) == ({"outcome": "resolved"}, 1.0)


def test_the_console_saw_the_call_turn_by_turn(pool_run: dict[str, Any]) -> None:
    lines = pool_run["lines"]
    assert [(line["role"], line["turn"]) for line in lines if line["role"] in ("caller", "agent")] == [
        ("caller", 1),
        ("agent", 1),
        ("caller", 2),
        ("agent", 2),
    ]
    events = [line["text"] for line in lines if line["role"] == "event"]
    assert events == ["Call answered by queue-worker-1.", "Call ended (resolved)."]
    assert lines[-1]["text"] == "Call ended (resolved)."
    live = pool_run["live"]
    assert (live["status"], live["turns"], live["intent"], live["room"]) == ("ended", 2, "billing", pool_run["room"])


def test_console_commands_reach_the_voice_calls_checkpoint_before_a_caller_turn(pool_run: dict[str, Any]) -> None:
    state = pool_run["checkpoint"]
    # The supervisor's line and whisper were pushed as the call started, before its first checkpoint: they
    # reach the graph before the first caller turn, in the order the caller heard them.
    assert [t["role"] for t in state["transcript"]] == ["human", "caller", "agent", "caller", "agent"]
    assert state["transcript"][0]["text"] == "Hi, this is Sam from billing, I'm listening in."
    assert [(i["kind"], i["turn"], i["detail"]) for i in state["interventions"]] == [("whisper", 1, "Mention autopay.")]
    # A whisper is guidance for the agent, never read to the caller.
    assert "autopay" not in pool_run["record"]["turns"][0]["agent"].lower()
    assert pool_run["pending_commands"] == []
