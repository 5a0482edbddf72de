"""`switchboard agent-worker` drains on SIGTERM (what Kubernetes sends a pod it scales down or moves).

It must stop taking jobs, say so on /readyz, let its calls end and exit 0, instead of dying on the signal with
its calls' job processes. The first test runs with no LiveKit server (the worker keeps trying to register, as at
a cold start); the second signals a worker registered with a real livekit-server while a dispatched call talks.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REDIS_TEST_URL

pytestmark = pytest.mark.flow

ROOT = Path(__file__).resolve().parents[2]
LIVEKIT_SERVER = ROOT / ".tools" / "bin" / "livekit-server"
CAP_S = 120.0  # generous: start-up imports the voice stack and prewarms job processes on a busy machine
KEY, SECRET = "devkey", "drain-test-secret-" + "x" * 32
SCRIPT = ["What's my balance?", "10027", "Can I pay it now?", "What was my last payment?", "Thanks, that's all."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def readiness(port: int) -> tuple[int, dict[str, object]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:  # noqa: S310 - loopback
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None


def poll(check: Any, what: str, proc: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + CAP_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        assert proc is None or proc.poll() is None, f"exited ({proc.returncode}) before {what}"
        time.sleep(0.2)
    raise AssertionError(f"no {what} in {CAP_S:.0f} s")


def start_agent_worker(tmp_path: Path, livekit_url: str, health_port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LIVEKIT_URL": livekit_url,
        "LIVEKIT_API_KEY": KEY,
        "LIVEKIT_API_SECRET": SECRET,
        "REDIS_URL": REDIS_TEST_URL,
        "SWITCHBOARD_AGENT_HEALTH_PORT": str(health_port),
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
        "PYTHONWARNINGS": "ignore",
    }
    return subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "orchestrator.cli", "agent-worker"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "agent-worker.log").open("w"),
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_sigterm_drains_the_agent_worker_and_it_exits_cleanly(tmp_path: Path) -> None:
    health_port = free_port()
    proc = start_agent_worker(tmp_path, f"ws://127.0.0.1:{free_port()}", health_port)  # nothing listens there
    try:
        state = poll(lambda: readiness(health_port), "readiness endpoint", proc)
        assert state == (503, {"registered": False, "connected": False, "draining": False})
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=CAP_S)
    finally:
        stop(proc)
    log = (tmp_path / "agent-worker.log").read_text()
    assert code == 0, f"exit {code} (-15 is death by the signal, no drain): {log}"


async def _dispatch(livekit_port: int, call_id: str, prefix: str) -> None:
    from livekit import api

    from orchestrator.config import Settings
    from orchestrator.contracts import CallJob
    from orchestrator.queue import ClaimedCall
    from orchestrator.worker.dispatch import dispatch_metadata

    claimed = ClaimedCall(
        job=CallJob(call_id=call_id, source="simulate", room=call_id, caller_id="+15550100001", script=SCRIPT),
        entry_id="1-0",
        priority=1,
        deliveries=1,
        waited_s=0.0,
        consumer="drain-test",
        claimed_at=time.monotonic(),
    )
    async with api.LiveKitAPI(f"http://127.0.0.1:{livekit_port}", KEY, SECRET) as lk:
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(
                agent_name=Settings().agent_name,
                room=call_id,
                metadata=json.dumps(dispatch_metadata(claimed, prefix=prefix)),
            )
        )


async def _turns(prefix: str, call_id: str) -> int:
    import redis.asyncio as aioredis

    from orchestrator.live import LiveFeed

    client = aioredis.Redis.from_url(REDIS_TEST_URL, decode_responses=True)
    try:
        return len(await LiveFeed(client, prefix=prefix).lines(call_id))
    finally:
        await client.aclose()


def _redis_call(fn: str, *args: Any) -> Any:
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        return getattr(client, fn)(*args)
    finally:
        client.close()


@pytest.mark.skipif(not LIVEKIT_SERVER.exists(), reason="no livekit-server: make tools builds it")
@pytest.mark.timeout(400)  # the worker's start-up, a five-turn spoken call and the drain on a shared 2-core machine
def test_a_call_in_progress_ends_before_the_signalled_agent_worker_exits(tmp_path: Path) -> None:
    from orchestrator.worker.dispatch import session_ended_key

    livekit_port, health_port = free_port(), free_port()
    config = tmp_path / "livekit.yaml"
    config.write_text(
        json.dumps(
            {
                "port": livekit_port,
                "bind_addresses": ["127.0.0.1"],
                "keys": {KEY: SECRET},
                "rtc": {"tcp_port": free_port(), "udp_port": free_port(), "node_ip": "127.0.0.1"},
                "logging": {"level": "warn"},
            }
        )
    )
    server = subprocess.Popen(  # noqa: S603 - the pinned binary make tools built
        [str(LIVEKIT_SERVER), "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "livekit.log").open("w"),
    )
    suffix = uuid.uuid4().hex[:8]
    call_id, prefix = f"call-drain-{suffix}", f"sbtest-drain-{suffix}"
    worker = start_agent_worker(tmp_path, f"ws://127.0.0.1:{livekit_port}", health_port)
    try:
        registered = (200, {"registered": True, "connected": True, "draining": False})
        poll(lambda: readiness(health_port) == registered, "registration", worker)
        asyncio.run(_dispatch(livekit_port, call_id, prefix))
        # The call is talking once its first turn is in the console's live transcript.
        poll(lambda: asyncio.run(_turns(prefix, call_id)), "first turn", worker)
        worker.send_signal(signal.SIGTERM)
        assert poll(lambda: readiness(health_port), "draining readiness", worker) == (
            503,
            {"registered": True, "connected": True, "draining": True},
        )
        marker = poll(lambda: _redis_call("lpop", session_ended_key(prefix, call_id)), "end marker", None)
        code = worker.wait(timeout=CAP_S)
    finally:
        stop(worker)
        stop(server)
    log = (tmp_path / "agent-worker.log").read_text()
    assert json.loads(marker)["status"] == "ended", log
    assert code == 0, f"exit {code}: {log}"
