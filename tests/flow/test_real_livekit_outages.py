"""Outages around real LiveKit calls: an agent worker that cannot reach livekit-server, and livekit-server itself
killed and started again with one call in progress and one waiting in the queue.

What should happen, and what these tests hold the stack to:
- an agent worker that cannot reach the server says so on /readyz (503, not connected) and in its log, gets no
  dispatch, and while it is the only one a call is handed back to the queue (no failed attempt, no dead letter)
  until an agent worker that can reach the server answers it;
- when livekit-server dies its rooms go with it: the call in progress ends there with its record (its turns so
  far), the waiting call's room is gone, so it ends as abandoned with a record and no agent is sent to it (a caller
  who dials again is a new call); the agent worker's /readyz says 503 while the server is away and 200 once it has
  registered again, and the next call is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.devstack.netns import NamespacesUnavailable, netns_pair
from orchestrator.devstack.stack import LIVEKIT_SERVER, SIGNAL_PORT, RealStack, real_stack
from tests.flow.test_real_livekit_faults import (
    RECORD_CAP_S,
    Caller,
    call_id_of,
    queue_stats,
    read_call,
    start_agent_worker,
)
from tests.flow.test_real_livekit_faults import pytestmark as faults_marks

pytestmark = faults_marks

UNREACHABLE_PORT = 8083
SPARE_PORT = 8084
# Nothing listens here in the server's namespace: an agent worker pointed at it never reaches a server.
NOWHERE = "ws://127.0.0.1:7999"


def readiness(stack: RealStack, port: int) -> tuple[int, dict[str, Any]]:
    """``/readyz`` of the agent worker on ``port``, read inside the server's namespace; (0, {}) while it is not up."""

    def read() -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:  # noqa: S310 - loopback
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            return 0, {}

    return stack.pair.call_in(stack.pair.server_ns, read)


def wait_readiness(stack: RealStack, port: int, status: int) -> dict[str, Any]:
    """Poll until ``/readyz`` answers ``status``; its body then (the last answer after the cap)."""
    deadline = time.monotonic() + RECORD_CAP_S
    while True:
        code, body = readiness(stack, port)
        if code == status or time.monotonic() >= deadline:
            return {"status": code, **body}
        time.sleep(0.1)


def wait_log(path: Path, text: str) -> bool:
    deadline = time.monotonic() + RECORD_CAP_S
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False


def held(caller: Caller) -> dict[str, Any]:
    assert caller.popen.stdout is not None
    line = caller.popen.stdout.readline()
    assert line, caller.log.read_text()[-3000:]
    return dict(json.loads(line))


@pytest.fixture(scope="module")
def outages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    run_dir = tmp_path_factory.mktemp("real-livekit-outages")
    result: dict[str, Any] = {}
    callers: list[Caller] = []
    with contextlib.ExitStack() as cleanup:
        try:
            pair = cleanup.enter_context(netns_pair())
        except NamespacesUnavailable as exc:
            pytest.skip(f"no network namespaces here: {exc}")
        stack = cleanup.enter_context(real_stack(pair, run_dir, slots=1))
        cleanup.callback(lambda: [c.stop() for c in callers])
        stack.start_queue_worker()

        def caller(steps: list[dict[str, Any]], name: str) -> Caller:
            c = Caller(stack, pair, steps, name)
            callers.append(c)
            return c

        # An agent worker that cannot reach the server, and for a while no other.
        lost = start_agent_worker(stack, "agent-worker-unreachable", UNREACHABLE_PORT, env={"LIVEKIT_URL": NOWHERE},
                                  ready=False)  # fmt: skip
        result["unreachable_logged"] = wait_log(lost.log, "cannot reach livekit-server at")
        result["unreachable_ready"] = wait_readiness(stack, UNREACHABLE_PORT, 503)
        [first] = [p for p in stack.procs if p.name == "agent-worker"]
        first.popen.send_signal(signal.SIGTERM)  # drains (it has no call) and exits
        first.popen.wait(timeout=RECORD_CAP_S)
        stack.procs.remove(first)  # stopped on purpose: the stack's checks must not take it for a crash
        waiting = caller([{"agent_cap_s": 600}, {"say": "What's my balance?"}], "waits-for-an-agent")
        queue_log = next(p.log for p in stack.procs if p.name == "queue-worker")
        result["handed_back"] = wait_log(queue_log, "handed back to the queue")
        result["while_unreachable"] = asyncio.run(queue_stats(stack))
        start_agent_worker(stack, "agent-worker-spare", SPARE_PORT)
        notes = waiting.notes()
        result["answered_later"] = {"notes": notes, **asyncio.run(read_call(stack, call_id_of(notes)))}
        result["unreachable_after"] = readiness(stack, UNREACHABLE_PORT)
        lost.popen.send_signal(signal.SIGTERM)
        lost.popen.wait(timeout=RECORD_CAP_S)
        stack.procs.remove(lost)
        result["stats_1"] = asyncio.run(queue_stats(stack, lambda s: s["completed"] == 1 and s["in_flight"] == 0))

        # livekit-server is killed with one call in progress and one waiting, then started again.
        talking = caller([{"say": "What's my balance?"}, {"pause": True, "same": True}], "in-progress")
        in_progress = f"lk-{talking.paused()['room_sid']}"
        queued = caller([{"hold": True}], "queued")
        queued_id = f"lk-{held(queued)['room_sid']}"
        asyncio.run(queue_stats(stack, lambda s: s["waiting"] == 1))
        [server] = [p for p in stack.procs if p.name == "livekit-server"]
        server.popen.kill()
        server.popen.wait()
        result["ready_while_down"] = wait_readiness(stack, SPARE_PORT, 503)
        stack.procs.remove(server)
        config = stack.run_dir / "livekit.yaml"
        stack.start("livekit-server", [str(LIVEKIT_SERVER), "--config", str(config)])
        stack.wait_http(SIGNAL_PORT, "/", "livekit-server (again)")
        result["ready_after"] = wait_readiness(stack, SPARE_PORT, 200)
        talking.go()
        queued.go()
        result["talking"], result["queued"] = talking.notes(), queued.notes()
        result["stats_2"] = asyncio.run(queue_stats(stack, lambda s: s["in_flight"] == 0 and s["waiting"] == 0))
        result["in_progress"] = asyncio.run(read_call(stack, in_progress))
        result["queued_call"] = asyncio.run(read_call(stack, queued_id))
        # The next call after the restart is answered.
        after = caller([{"say": "What's my balance?"}], "after-restart")
        result["after"] = after.notes()
        result["logs"] = stack.logs()
        yield result


def test_an_agent_worker_that_cannot_reach_the_server_is_not_ready_and_calls_wait_for_one_that_can(
    outages: dict[str, Any],
) -> None:
    assert outages["unreachable_logged"], outages["logs"]
    ready = outages["unreachable_ready"]
    assert (ready["status"], ready["registered"], ready["connected"]) == (503, False, False), ready
    # With only that one, the call's dispatch was taken by nobody: the call went back to the queue to wait.
    assert outages["handed_back"], outages["logs"]
    stats = outages["while_unreachable"]
    assert (stats["dead_letters"], stats["retries_scheduled"]) == (0, 0), stats
    answered = outages["answered_later"]
    assert answered["notes"]["exit"] == 0, (answered["notes"].get("error"), outages["logs"])
    assert answered["notes"]["turns"][0]["answered"]
    record = answered["record"]
    assert record is not None
    # Handed back is not a failure: the call was answered on its first attempt.
    assert (record["attempt"], record["turn_count"]) == (1, 1), record
    assert outages["unreachable_after"][0] == 503


def test_a_livekit_server_restart_ends_the_call_in_progress_and_the_waiting_one_with_records(
    outages: dict[str, Any],
) -> None:
    assert (outages["ready_while_down"]["status"], outages["ready_while_down"]["connected"]) == (503, False)
    assert (outages["ready_after"]["status"], outages["ready_after"]["connected"]) == (200, True)
    in_progress = outages["in_progress"]["record"]
    assert in_progress is not None, outages["logs"]
    assert in_progress["turn_count"] == 1, in_progress
    queued = outages["queued_call"]["record"]
    assert queued is not None, outages["logs"]
    assert (queued["outcome"], queued["turn_count"]) == ("abandoned", 0), queued
    assert outages["queued"]["agents_seen"] == 0
    stats = outages["stats_2"]
    assert (stats["dead_letters"], stats["in_flight"], stats["waiting"]) == (0, 0, 0), stats
    after = outages["after"]
    assert after["exit"] == 0, (after.get("error"), outages["logs"])
    assert after["turns"][0]["answered"]
