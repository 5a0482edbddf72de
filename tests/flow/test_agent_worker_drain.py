"""`switchboard agent-worker` drains on SIGTERM (what Kubernetes sends a pod it scales down or moves).

It must stop taking jobs, say so on /readyz, let its calls end and exit 0, instead of dying on the signal with
its calls' job processes. Run with no LiveKit server: the worker keeps trying to register, as at a cold start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.flow

ROOT = Path(__file__).resolve().parents[2]
CAP_S = 120.0  # generous: start-up imports the voice stack and prewarms job processes on a busy machine


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


def test_sigterm_drains_the_agent_worker_and_it_exits_cleanly(tmp_path: Path) -> None:
    health_port = free_port()
    env = {
        **os.environ,
        "LIVEKIT_URL": f"ws://127.0.0.1:{free_port()}",  # nothing listens: the worker retries registering
        "LIVEKIT_API_KEY": "devkey",
        "LIVEKIT_API_SECRET": "drain-test-secret-" + "x" * 32,
        "SWITCHBOARD_AGENT_HEALTH_PORT": str(health_port),
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
        "PYTHONWARNINGS": "ignore",
    }
    log = tmp_path / "agent-worker.log"
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "orchestrator.cli", "agent-worker"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    try:
        deadline = time.monotonic() + CAP_S
        state = readiness(health_port)
        while state is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            state = readiness(health_port)
        assert state == (503, {"registered": False, "draining": False}), log.read_text()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=CAP_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, f"exit {code} (-15 is death by the signal, no drain): {log.read_text()}"
