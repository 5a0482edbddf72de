"""SIPp places calls at once through the real livekit-sip into the real stack (`switchboard bench sip`'s run).

One stack: livekit-server, livekit-sip, the API and both workers in the server's namespace, SIPp in the caller's.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from orchestrator.bench.sipp import run_sip_bench
from orchestrator.devstack.netns import NamespacesUnavailable, netns_supported
from orchestrator.devstack.sip import LIVEKIT_SIP
from orchestrator.devstack.stack import LIVEKIT_SERVER

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(not LIVEKIT_SERVER.exists(), reason="no livekit-server: run deploy/dev/tools.sh (make tools)"),
    pytest.mark.skipif(not LIVEKIT_SIP.exists(), reason="no livekit-sip: run deploy/dev/tools.sh livekit-sip"),
    pytest.mark.skipif(netns_supported() is not None, reason=str(netns_supported())),
    pytest.mark.skipif(shutil.which("flite") is None, reason="no flite: apt-get install -y flite"),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="no sipp: apt-get install -y sip-tester"),
    pytest.mark.timeout(900),
]

CALLS = 4
# Longer than livekit-sip's media timeout (15 s without RTP ends a call), which a caller silent after its
# question would meet: a phone line carries silence too.
HOLD_S = 25.0


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Four SIPp calls placed at once, each 25 s on the line, one agent slot per call."""
    run_dir: Path = tmp_path_factory.mktemp("sipp-load")
    try:
        found = run_sip_bench(CALLS, rate=CALLS, hold_s=HOLD_S, run_dir=run_dir)
    except NamespacesUnavailable as exc:
        pytest.skip(f"no network namespaces here: {exc}")
    found["run_dir"] = str(run_dir)
    return found


def test_every_sipp_call_was_answered_and_hung_up_cleanly(report: dict[str, Any]) -> None:
    assert report["detail"]["sipp_exit"] == 0, report
    assert (report["calls"], report["answered"], report["failed"]) == (CALLS, CALLS, 0), report
    assert (report["sipp"]["successful"], report["sipp"]["failed"]) == (CALLS, 0), report
    answer = report["answer_ms"]
    assert answer["p50"] is not None, answer
    assert answer["p50"] <= answer["p95"] <= answer["p99"], answer


def test_each_call_was_admitted_once_and_completed_none_lost(report: dict[str, Any]) -> None:
    # Admitted once each through the server's webhook (a repeated delivery is a duplicate, not a second call).
    assert (report["admitted"], report["completed"], report["abandoned"], report["lost"]) == (CALLS, CALLS, 0, 0)
    assert report["detail"]["dead_letters"] == 0, report
    assert report["detail"]["records"] == CALLS, report


def test_the_agent_heard_each_callers_speech_over_rtp(report: dict[str, Any]) -> None:
    assert report["detail"]["heard_caller"] == CALLS, f"{report}\nlogs in {report['run_dir']}"
