"""The LiveKit agent worker's process pool, run with no LiveKit server: a simulated job reaches our entrypoint."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import REDIS_TEST_URL

pytestmark = pytest.mark.flow

SCRIPT = Path(__file__).with_name("agent_worker_support") / "run_pool.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_simulated_job_runs_the_entrypoint_in_a_pool_process(tmp_path: Path) -> None:
    room = f"call-pool-{uuid.uuid4().hex[:8]}"
    # A simulated job carries no metadata, so the agent marks the default queue prefix; the room name is unique.
    prefix = "sb"
    env = {**os.environ, "REDIS_URL": REDIS_TEST_URL, "SWITCHBOARD_DATA_DIR": str(tmp_path), "PYTHONWARNINGS": "ignore"}
    env.pop("LIVEKIT_URL", None)
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(free_port()), room, prefix],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # Readiness comes from registration, not from the process being up.
    assert result["readyz_unregistered"] == 503
    assert result["active_jobs"] == 1
    # The job ran our entrypoint in a pool process; shutting the pool down cancelled it, and the
    # end-of-session marker still reached the queue worker's key, so the call would be retried, not lost.
    assert result["marker"]["status"] == "failed"
    assert "CancelledError" in result["marker"]["error"]
