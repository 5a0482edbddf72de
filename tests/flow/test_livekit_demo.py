"""`switchboard demo --livekit`: the demo's callers through the real stack, and its one line where it cannot run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.devstack.netns import netns_supported
from orchestrator.devstack.stack import LIVEKIT_SERVER

pytestmark = [pytest.mark.flow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SWITCHBOARD = [sys.executable, "-m", "orchestrator.cli"]


def _why_not() -> str | None:
    """Why the real stack cannot run here (a skip reason), or None."""
    if not LIVEKIT_SERVER.exists():
        return "no livekit-server: run deploy/dev/tools.sh (make tools)"
    if shutil.which("flite") is None:
        return "no flite: apt-get install -y flite"
    return netns_supported()


WHY_NOT = _why_not()


def switchboard(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SWITCHBOARD, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
    )


@pytest.mark.parametrize("how", ["option", "env"])
def test_a_missing_server_binary_is_one_line_saying_what_to_do(tmp_path: Path, how: str) -> None:
    missing = tmp_path / "bin" / "livekit-server"
    if how == "option":
        done = switchboard("demo", "--livekit", "--calls", "1", "--livekit-server", str(missing))
    else:
        done = switchboard("demo", "--livekit", "--json", env={"SWITCHBOARD_LIVEKIT_SERVER": str(missing)})
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(missing) in lines[0]
    assert "make tools" in lines[0]
    assert "Traceback" not in done.stderr
    # Nothing was started, so nothing was left behind: no run folder names itself.
    assert "logs" not in done.stderr


def test_calls_without_livekit_is_a_usage_error() -> None:
    done = switchboard("demo", "--calls", "2")
    assert done.returncode == 2
    assert done.stderr.strip() == "--calls needs --livekit or --sip (the room-less demo runs each scenario once)"


@pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))
def test_demo_livekit_accounts_for_every_call() -> None:
    done = switchboard("demo", "--livekit", "--calls", "2", "--json", timeout=840)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    expected = {"calls", "completed", "lost", "abandoned", "first_audio_ms", "wer", "escalation_rate", "routes"}
    assert expected <= set(summary), summary
    assert set(summary["first_audio_ms"]) == {"p50", "p95", "p99"}
    assert summary["calls"] == 2
    assert summary["completed"] + summary["abandoned"] + summary["lost"] == 2, summary
    assert summary["lost"] == 0, summary
    # The two first demo callers book and move a technician visit: both reach scheduling when answered.
    assert set(summary["routes"]) <= {"scheduling"}, summary
