"""`switchboard demo --sip`: SIP phones through the real livekit-sip, one keying its ZIP and one saying it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.devstack.netns import netns_supported
from orchestrator.devstack.sip import LIVEKIT_SIP
from orchestrator.devstack.stack import LIVEKIT_SERVER

pytestmark = [pytest.mark.flow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


def _why_not() -> str | None:
    """Why the SIP demo cannot run here (a skip reason), or None."""
    if not LIVEKIT_SERVER.exists():
        return "no livekit-server: run deploy/dev/tools.sh (make tools)"
    if not LIVEKIT_SIP.exists():
        return "no livekit-sip: run deploy/dev/tools.sh livekit-sip"
    if shutil.which("flite") is None:
        return "no flite: apt-get install -y flite"
    return netns_supported()


WHY_NOT = _why_not()


def switchboard(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


@pytest.mark.parametrize("command", [["demo", "--sip"], ["sip", "demo"]])
def test_a_missing_livekit_sip_is_one_line_saying_what_to_do(tmp_path: Path, command: list[str]) -> None:
    # A livekit-server with no livekit-sip beside it.
    server = tmp_path / "bin" / "livekit-server"
    server.parent.mkdir()
    server.write_bytes(b"")
    done = switchboard(*command, "--calls", "1", "--json", "--livekit-server", str(server))
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(server.parent / "livekit-sip") in lines[0]
    assert "make tools" in lines[0]


@pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))
def test_two_phones_through_livekit_sip_one_keys_its_zip_one_says_it_and_both_are_verified() -> None:
    done = switchboard("demo", "--sip", "--calls", "2", "--json", timeout=840)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert set(summary["first_audio_ms"]) == {"p50", "p95", "p99"}, summary
    # The whole summary in the message (pytest shortens a dict's repr), with what each phone reported.
    whole = json.dumps(summary)[:4000]
    assert (summary["calls"], summary["completed"], summary["lost"]) == (2, 2, 0), whole
    # Call 0 keyed 10027# (RFC 4733 through livekit-sip); call 1 said "1 0 4 5 3" over G.711.
    assert (summary["verified_by_keypad"], summary["verified_by_voice"]) == (1, 1), whole
    assert summary["wer"] is not None, summary
