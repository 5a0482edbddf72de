"""`switchboard bench sip`: SIPp's statistics read into the report, and one line when SIPp or the stack is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.bench.sipp import SCENARIO, read_answer_ms, read_stats, sipp_folder, summarize

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_sipp_statistics_make_the_report(tmp_path: Path) -> None:
    # The columns SIPp 3.6.1 writes (-trace_stat, -trace_rtt), cut down to those read; the last row is cumulative.
    (tmp_path / "stats.csv").write_text("SuccessfulCall(C);FailedCall(C);Retransmissions(C);\n1;0;0;\n3;1;7;\n")
    (tmp_path / "sipp_inbound_42_rtt.csv").write_text(
        "Date_ms;response_time_ms;rtd_no\n7444;700;1\n8056;800;1\n9000;900;1\n"
    )
    stats, answers = read_stats(tmp_path), read_answer_ms(tmp_path)
    assert stats == {"successful": 3, "failed": 1, "retransmissions": 7}
    assert sorted(answers) == [700.0, 800.0, 900.0]
    queue = {"admitted": 3, "completed": 2, "abandoned": 0}
    report = summarize(4, stats, answers, queue)
    assert (report["calls"], report["answered"], report["failed"]) == (4, 3, 1)
    # Answered, admitted and never completed nor abandoned: lost.
    assert (report["admitted"], report["completed"], report["lost"]) == (3, 2, 1)
    assert report["answer_ms"]["p50"] == 800.0


def test_no_sipp_traces_is_no_answered_call(tmp_path: Path) -> None:
    assert read_stats(tmp_path) == {"successful": 0, "failed": 0, "retransmissions": 0}
    report = summarize(
        2, read_stats(tmp_path), read_answer_ms(tmp_path), {"admitted": 0, "completed": 0, "abandoned": 0}
    )
    assert (report["answered"], report["failed"], report["lost"]) == (0, 2, 0)
    assert report["answer_ms"] == {"p50": None, "p95": None, "p99": None}


def test_a_kept_folders_earlier_sipp_traces_are_not_read_again(tmp_path: Path) -> None:
    earlier = tmp_path / "sipp"
    earlier.mkdir()
    (earlier / "sipp_inbound_41_rtt.csv").write_text("Date_ms;response_time_ms;rtd_no\n7444;700;1\n")
    (earlier / "stats.csv").write_text("SuccessfulCall(C);FailedCall(C);Retransmissions(C);\n5;0;0;\n")
    folder = sipp_folder(tmp_path)
    assert read_answer_ms(folder) == []
    assert read_stats(folder)["successful"] == 0


def test_the_scenario_offers_mulaw_and_reads_its_answer_time() -> None:
    text = SCENARIO.read_text()
    assert "RTP/AVP 0 101" in text
    assert "a=rtpmap:0 PCMU/8000" in text
    assert 'start_rtd="1"' in text
    assert 'rtd="1"' in text
    assert 'rtp_stream="speech.ulaw,1,0"' in text


def _bench(tmp_path: Path, *args: str, path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path, "SWITCHBOARD_DATA_DIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "bench", "sip", "--calls", "2", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )  # fmt: skip


def test_without_sipp_one_line_and_exit_2(tmp_path: Path) -> None:
    # A PATH with no sipp on it (nor anything else): the interpreter is named by its full path.
    done = _bench(tmp_path, path=str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert "sipp is not installed" in done.stderr
    assert "sip-tester" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_without_the_server_one_line_and_exit_2(tmp_path: Path) -> None:
    done = _bench(tmp_path, "--livekit-server", str(tmp_path / "nothing"), path=os.environ["PATH"])
    if "sipp is not installed" in done.stderr or "no livekit-sip" in done.stderr:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 2, done.stderr
    assert "no livekit-server at" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
