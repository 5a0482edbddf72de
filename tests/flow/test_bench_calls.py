"""`switchboard bench calls --livekit`: the report's shape at one small level (no latency bounds), and bad levels."""

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


def _why_not() -> str | None:
    if not LIVEKIT_SERVER.exists():
        return "no livekit-server: run deploy/dev/tools.sh (make tools)"
    if shutil.which("flite") is None:
        return "no flite: apt-get install -y flite"
    return netns_supported()


WHY_NOT = _why_not()


def bench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "bench", "calls", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--levels", "1"], "bench calls needs --livekit (the room-less benchmark is `switchboard bench voice`)"),
        (["--livekit", "--levels", "1,two"], "--levels: '1,two' is not a comma-separated list of whole numbers"),
        (["--livekit", "--levels", "0"], "--levels: '0' needs at least one level, each 1 or more"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], line: str) -> None:
    done = bench(*args)
    assert (done.returncode, done.stdout, done.stderr.strip()) == (2, "", line)


@pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))
def test_the_report_at_one_level_has_both_designs_and_the_resources(tmp_path: Path) -> None:
    done = bench("--livekit", "--levels", "1", "--json", "--keep", str(tmp_path / "run"), timeout=840)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["profile"] == {"stt_final_s": 150.0, "llm_first_token_s": 300.0, "tts_first_byte_s": 80.0}
    [run] = report["runs"]
    assert run["concurrency"] == 1
    assert run["caller_errors"] == []
    for design in ("ours", "baseline"):
        assert set(run[design]) == {"p50", "p95", "p99"}
        assert all(isinstance(run[design][q], float) and run[design][q] > 0 for q in ("p50", "p95", "p99"))
        # Every turn of the call was answered and measured at the caller.
        assert run["turns"][design] == report["turns_per_call"]
    assert run["speedup_p50"] == round(run["baseline"]["p50"] / run["ours"]["p50"], 2)
    assert run["cpu_ms_per_call_s"] > 0
    assert run["rss_mb_per_call"] >= 0
    assert 0 < run["callers_cpu_share"] < 1
    assert report["capacity"] == (1 if run["ours"]["p95"] <= 500 else 0)
    # Each design's calls reached its own agent: ours through the webhook and the queue, the baseline by name.
    heard = {p.name.split("-")[0] for p in (tmp_path / "run" / "heard").iterdir()}
    assert heard == {"call", "base"}
    assert "baseline agent registered" in (tmp_path / "run" / "stack" / "baseline-agent.log").read_text()
