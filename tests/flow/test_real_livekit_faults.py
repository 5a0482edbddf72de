"""Faults in real LiveKit rooms: a killed job process, a killed agent worker, a caller who hangs up mid-reply, and
two calls back to back on a one-slot agent worker, all through a real livekit-server and WebRTC callers.

One stack for the module (one slot per worker, so the second call of a pair waits for the first): the calls run
one after the other, each fault's outcome read from the caller's notes, the checkpoints, the records and the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from livekit import api

from orchestrator.devstack import fault_caller
from orchestrator.devstack.netns import NamespacesUnavailable, NetnsPair, netns_pair, netns_supported
from orchestrator.devstack.stack import LIVEKIT_SERVER, PREFIX, Proc, RealStack, real_stack

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(not LIVEKIT_SERVER.exists(), reason="no livekit-server: run deploy/dev/tools.sh (make tools)"),
    pytest.mark.skipif(netns_supported() is not None, reason=str(netns_supported())),
    pytest.mark.skipif(shutil.which("flite") is None, reason="no flite: apt-get install -y flite"),
    # Start-up loads the models in several processes, and the calls run one after the other; every wait has a cap.
    pytest.mark.timeout(1200),
]

ROOT = Path(__file__).resolve().parents[2]
CALLER_SCRIPT = Path(fault_caller.__file__)
CALLER = "+15550100001"
CALL_CAP_S = 300
RECORD_CAP_S = 120
SECOND_AGENT_PORT = 8083


async def _poll(fn: Any, cap_s: float, interval_s: float = 0.1) -> Any:
    """Await ``fn()`` until it returns something truthy, for at most ``cap_s``; its last value otherwise."""
    deadline = time.monotonic() + cap_s
    while True:
        value = await fn()
        if value or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(interval_s)


class Caller:
    """A `fault_caller` process in the caller's namespace: its pause lines as they come, its notes at the end."""

    def __init__(
        self, stack: RealStack, pair: NetnsPair, steps: list[dict[str, Any]], name: str, *, token: str | None = None
    ) -> None:
        self.room = f"call-{secrets.token_hex(4)}"
        token = token or stack.token(self.room, f"caller-{secrets.token_hex(3)}", metadata={"caller_id": CALLER})
        self.log = stack.run_dir / f"{name}.log"
        argv = [sys.executable, str(CALLER_SCRIPT), stack.caller_url, token, json.dumps(steps)]
        with self.log.open("w") as errors:
            self.popen = subprocess.Popen(
                pair.command(pair.caller_ns, argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                env=stack.env(),
                cwd=ROOT,
            )

    def paused(self) -> dict[str, Any]:
        """The next pause line (the call is held open until `go`)."""
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        assert line, f"the caller ended before its pause:\n{self.log.read_text()[-3000:]}"
        return dict(json.loads(line))

    def go(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write("\n")
        self.popen.stdin.flush()

    def notes(self) -> dict[str, Any]:
        out, _ = self.popen.communicate(timeout=CALL_CAP_S)
        lines = out.strip().splitlines()
        assert lines, f"the caller printed nothing (exit {self.popen.returncode}):\n{self.log.read_text()[-3000:]}"
        notes: dict[str, Any] = json.loads(lines[-1])
        notes["exit"] = self.popen.returncode
        return notes

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def redis_client(stack: RealStack) -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(stack.redis_url)


def lease_pid(stack: RealStack, call_id: str) -> int:
    """The pid of the job process running ``call_id``, from the agent lease its job renews."""
    from orchestrator.worker.dispatch import agent_lease_key

    async def read() -> int:
        client = redis_client(stack)
        try:
            raw = await _poll(lambda: client.get(agent_lease_key(PREFIX, call_id)), RECORD_CAP_S)
        finally:
            await client.aclose()
        assert raw, f"no agent lease for {call_id}\n{stack.logs()}"
        return int(json.loads(raw)["pid"])

    return asyncio.run(read())


async def queue_stats(stack: RealStack, until: Any = None) -> dict[str, Any]:
    """The queue's counters, once ``until(stats)`` holds if given (polled, capped); the last ones otherwise."""
    from orchestrator.config import load_settings
    from orchestrator.queue import open_queue

    queue = open_queue(load_settings(data_dir=stack.data_dir), stack.redis_url, prefix=PREFIX)
    try:

        async def read() -> Any:
            stats = (await queue.stats()).model_dump(mode="json")
            return stats if until is None or until(stats) else None

        return await _poll(read, RECORD_CAP_S) or (await queue.stats()).model_dump(mode="json")
    finally:
        await queue.aclose()


async def read_call(stack: RealStack, call_id: str) -> dict[str, Any]:
    """The call's record (once written) and its checkpoint."""
    from orchestrator.config import load_settings
    from orchestrator.runtime import Services
    from orchestrator.store.records import CallStore
    from orchestrator.worker.runner import checkpoint_state

    async with await Services.open(load_settings(data_dir=stack.data_dir), seed=False) as services:
        store = CallStore(services.engine)
        found = await _poll(lambda: store.get_call(call_id), RECORD_CAP_S)
        return {
            "record": found.to_json() if found is not None else None,
            "checkpoint": await checkpoint_state(services, call_id),
        }


def start_agent_worker(
    stack: RealStack, name: str, port: int, *, env: dict[str, str] | None = None, ready: bool = True
) -> Proc:
    """Another agent worker (its own readiness port); with ``ready``, registered with the server before this returns."""
    log = stack.run_dir / f"{name}.log"
    argv = [sys.executable, "-m", "orchestrator.cli", "agent-worker"]
    with log.open("wb") as out:
        popen = subprocess.Popen(
            stack.pair.command(stack.pair.server_ns, argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**stack.env(), "SWITCHBOARD_AGENT_HEALTH_PORT": str(port), **(env or {})},
            cwd=ROOT,
            start_new_session=True,
        )
    proc = Proc(name, popen, log)
    # The stack stops it with the rest, also after a failure.
    stack.procs.append(proc)
    if ready:
        stack.wait_http(port, "/readyz", f"agent worker {name}")
    return proc


def call_id_of(notes: dict[str, Any]) -> str:
    return f"lk-{notes['room_sid']}"


def agent_back_after(notes: dict[str, Any], killed_at: float) -> dict[str, float]:
    """Seconds from the kill to the new agent in the room and listening, and the silence the caller heard."""
    pause = notes["pauses"][0]
    joined = min(e["at"] for e in notes["agents"] if e["event"] == "joined" and e["agent"] == pause["new_agent"])
    second = notes["turns"][1]
    return {
        "kill_to_agent_joined_s": round(joined - killed_at, 2),
        "kill_to_agent_listening_s": round(pause["listening_at"] - killed_at, 2),
        "last_audio_to_kill_s": round(killed_at - pause["last_agent_audio"], 2),
        "caller_turn_s": round(second["ended_at"] - pause["listening_at"], 2),
        "silence_at_caller_s": round(second["first_audio_at"] - pause["last_agent_audio"], 2),
    }


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The stack with one-slot workers, and the fault drills run on it one after the other (several minutes)."""
    run_dir = tmp_path_factory.mktemp("real-livekit-faults")
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

        # Two calls back to back on the one slot: the second waits in the queue while the first runs.
        first = caller([{"say": "What's my balance?"}, {"pause": True, "same": True}], "first")
        first.paused()
        second = caller([{"say": "What's my balance?"}], "second")
        asyncio.run(queue_stats(stack, lambda s: s["waiting"] == 1))
        first.go()
        result["back_to_back"] = [first.notes(), second.notes()]
        result["back_to_back_stats"] = asyncio.run(
            queue_stats(stack, lambda s: s["completed"] == 2 and s["in_flight"] == 0)
        )
        result["second_record"] = asyncio.run(read_call(stack, call_id_of(result["back_to_back"][1])))["record"]

        # The job process of a call in progress is SIGKILLed between two turns.
        killed = caller([{"say": "What's my balance?"}, {"pause": True}, {"say": "1 0 0 2 7"}], "job-killed")
        pause = killed.paused()
        call_id = f"lk-{pause['room_sid']}"
        pid = lease_pid(stack, call_id)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        killed.go()
        notes = killed.notes()
        result["job_killed"] = {"notes": notes, "killed_at": killed_at, "pid": pid}
        result["job_killed"].update(asyncio.run(read_call(stack, call_id)))
        result["job_killed_stats"] = asyncio.run(
            queue_stats(stack, lambda s: s["completed"] == 3 and s["in_flight"] == 0)
        )

        # The whole agent worker (and its job processes) is SIGKILLed; a second agent worker takes the call on.
        start_agent_worker(stack, "agent-worker-2", SECOND_AGENT_PORT)
        orphaned = caller([{"say": "What's my balance?"}, {"pause": True}, {"say": "1 0 0 2 7"}], "worker-killed")
        pause = orphaned.paused()
        call_id = f"lk-{pause['room_sid']}"
        # The agent worker running the call: its job processes are in its process group.
        [running] = [p for p in stack.procs if p.popen.pid == os.getpgid(lease_pid(stack, call_id))]
        killed_at = time.monotonic()
        os.killpg(running.popen.pid, signal.SIGKILL)
        running.popen.wait()
        orphaned.go()
        notes = orphaned.notes()
        result["worker_killed"] = {"notes": notes, "killed_at": killed_at}
        result["worker_killed"].update(asyncio.run(read_call(stack, call_id)))
        result["worker_killed_stats"] = asyncio.run(
            queue_stats(stack, lambda s: s["completed"] == 4 and s["in_flight"] == 0)
        )

        # The caller hangs up as soon as the agent starts to answer.
        gone = caller([{"say": "What's my balance?"}, {"say": "1 0 0 2 7", "hang_up": True}], "hangs-up")
        notes = gone.notes()
        result["hung_up"] = {"notes": notes}
        result["hung_up"].update(asyncio.run(read_call(stack, call_id_of(notes))))
        result["hung_up_stats"] = asyncio.run(queue_stats(stack, lambda s: s["completed"] == 5 and s["in_flight"] == 0))

        # The job process dies and its caller hangs up before another agent is there: the call still has its record.
        dropped = caller([{"say": "What's my balance?"}, {"pause": True, "same": True}], "killed-then-gone")
        call_id = f"lk-{dropped.paused()['room_sid']}"
        os.kill(lease_pid(stack, call_id), signal.SIGKILL)
        dropped.go()
        result["killed_then_gone"] = {"notes": dropped.notes()}
        result["killed_then_gone"].update(asyncio.run(read_call(stack, call_id)))
        result["killed_then_gone_stats"] = asyncio.run(
            queue_stats(stack, lambda s: s["completed"] == 6 and s["in_flight"] == 0)
        )

        # A caller who never says a word: asked once if they are still there, then the call ends.
        silent = caller([{"silent": True}], "silent")
        notes = silent.notes()
        result["silent"] = {"notes": notes}
        result["silent"].update(asyncio.run(read_call(stack, call_id_of(notes))))
        result["silent_stats"] = asyncio.run(queue_stats(stack, lambda s: s["completed"] == 7 and s["in_flight"] == 0))

        # A caller whose token has expired: the server refuses the join, and no call is admitted.
        before = asyncio.run(queue_stats(stack))
        room = f"call-{secrets.token_hex(4)}"
        expired = (
            api.AccessToken(stack.key, stack.secret)
            .with_identity(f"caller-{secrets.token_hex(3)}")
            .with_grants(api.VideoGrants(room_join=True, room=room))
            .with_ttl(timedelta(minutes=-5))
            .to_jwt()
        )
        refused = Caller(stack, pair, [{"say": "What's my balance?"}], "expired", token=expired)
        callers.append(refused)
        result["expired"] = {"notes": refused.notes(), "before": before, "after": asyncio.run(queue_stats(stack))}
        result["logs"] = stack.logs()
        yield result


def test_two_calls_back_to_back_on_one_slot_the_second_is_taken_by_its_first_dispatch(faults: dict[str, Any]) -> None:
    first, second = faults["back_to_back"]
    assert (first["exit"], second["exit"]) == (0, 0), (first.get("error"), second.get("error"), faults["logs"])
    assert second["turns"][0]["answered"]
    stats = faults["back_to_back_stats"]
    # The agent worker said it was free once the first call's process had exited, so the server offered it the
    # second call's dispatch at once: no dispatch withdrawn, no retry.
    assert (stats["completed"], stats["retries_scheduled"], stats["dead_letters"]) == (2, 0, 0), stats
    record = faults["second_record"]
    assert record is not None
    assert record["attempt"] == 1, record


def test_a_killed_job_process_is_replaced_in_the_room_and_the_call_goes_on_from_its_checkpoint(
    faults: dict[str, Any],
) -> None:
    drill = faults["job_killed"]
    notes = drill["notes"]
    assert notes["exit"] == 0, (notes.get("error"), faults["logs"])
    pause = notes["pauses"][0]
    assert pause["new_agent"]
    assert pause["new_agent"] != pause["agent"]
    assert [t["answered"] for t in notes["turns"]] == [True, True]
    # Each turn once in the call's transcript, in order: the new agent took the call on from the checkpoint.
    transcript = drill["checkpoint"]["transcript"]
    assert [t["role"] for t in transcript] == ["caller", "agent", "caller", "agent"], transcript
    record = drill["record"]
    assert record is not None
    assert record["turn_count"] == 2, record
    assert (record["attempt"], record["outcome"]) == (1, "resolved"), record
    stats = faults["job_killed_stats"]
    assert (stats["retries_scheduled"], stats["dead_letters"], stats["in_flight"]) == (0, 0, 0), stats
    print(f"\njob SIGKILL: {agent_back_after(notes, drill['killed_at'])}")


def test_a_killed_agent_worker_leaves_its_call_to_another_agent_worker(faults: dict[str, Any]) -> None:
    drill = faults["worker_killed"]
    notes = drill["notes"]
    assert notes["exit"] == 0, (notes.get("error"), faults["logs"])
    pause = notes["pauses"][0]
    assert pause["new_agent"]
    assert pause["new_agent"] != pause["agent"]
    assert [t["answered"] for t in notes["turns"]] == [True, True]
    transcript = drill["checkpoint"]["transcript"]
    assert [t["role"] for t in transcript] == ["caller", "agent", "caller", "agent"], transcript
    record = drill["record"]
    assert record is not None
    assert record["turn_count"] == 2, record
    assert (record["attempt"], record["outcome"]) == (1, "resolved"), record
    stats = faults["worker_killed_stats"]
    assert (stats["retries_scheduled"], stats["dead_letters"], stats["in_flight"]) == (0, 0, 0), stats
    print(f"\nagent worker SIGKILL: {agent_back_after(notes, drill['killed_at'])}")


def test_a_caller_who_hangs_up_mid_reply_ends_the_call_with_its_record(faults: dict[str, Any]) -> None:
    drill = faults["hung_up"]
    notes = drill["notes"]
    assert notes["exit"] == 0, (notes.get("error"), faults["logs"])
    assert notes["turns"][-1]["first_audio_at"] is not None  # the reply had begun
    record = drill["record"]
    assert record is not None, faults["logs"]
    assert record["turn_count"] >= 1, record
    stats = faults["hung_up_stats"]
    assert (stats["completed"], stats["in_flight"], stats["dead_letters"]) == (5, 0, 0), stats


def test_a_call_whose_agent_died_and_whose_caller_then_hung_up_still_has_its_record(faults: dict[str, Any]) -> None:
    drill = faults["killed_then_gone"]
    assert drill["notes"]["exit"] == 0, (drill["notes"].get("error"), faults["logs"])
    # Nobody was left to speak for the call: its record still holds the turn taken before the agent died.
    record = drill["record"]
    assert record is not None, faults["logs"]
    assert record["turn_count"] == 1, record
    assert "balance" in record["turns"][0]["caller"].lower()
    stats = faults["killed_then_gone_stats"]
    assert (stats["completed"], stats["in_flight"], stats["dead_letters"]) == (6, 0, 0), stats


def test_a_caller_who_never_speaks_is_asked_if_they_are_still_there_then_the_call_ends(faults: dict[str, Any]) -> None:
    drill = faults["silent"]
    notes = drill["notes"]
    assert notes["exit"] == 0, (notes.get("error"), faults["logs"])
    # The agent spoke (the prompt: no caller turn came before it), then left the room on its own.
    assert notes["silent"]["heard_speech_at"] is not None
    assert notes["silent"]["agent_left"]
    record = drill["record"]
    assert record is not None
    assert (record["turn_count"], record["outcome"]) == (0, "abandoned"), record
    stats = faults["silent_stats"]
    assert (stats["in_flight"], stats["dead_letters"]) == (0, 0), stats


def test_a_caller_with_an_expired_token_is_refused_by_the_server_and_nothing_is_admitted(
    faults: dict[str, Any],
) -> None:
    drill = faults["expired"]
    assert drill["notes"]["exit"] == 2
    assert "refused" in drill["notes"], drill["notes"]
    assert drill["after"]["admitted"] == drill["before"]["admitted"]
    assert drill["after"]["waiting"] == 0
