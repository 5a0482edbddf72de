"""`switchboard dev`: the whole stack on this machine until Ctrl-C, reachable on loopback, and nothing left after it."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from orchestrator.devstack.netns import netns_supported
from orchestrator.devstack.stack import LIVEKIT_SERVER
from orchestrator.queue.embedded import free_port

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(not LIVEKIT_SERVER.exists(), reason="no livekit-server: run deploy/dev/tools.sh (make tools)"),
    pytest.mark.skipif(netns_supported() is not None, reason=str(netns_supported())),
    pytest.mark.timeout(600),
]

ROOT = Path(__file__).resolve().parents[2]
# Start-up loads the models in the agent worker's processes; the wait ends as soon as the ready line comes.
READY_CAP_S = 300.0
STOP_CAP_S = 120.0


def started_by(run_dir: Path) -> set[int]:
    """Processes whose command line or environment names ``run_dir``: everything the stack started."""
    mark = str(run_dir).encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if "State:\tZ" in (entry / "status").read_text():
                continue  # exited, waiting for its parent to read its status
            if mark in (entry / "cmdline").read_bytes() or mark in (entry / "environ").read_bytes():
                found.add(int(entry.name))
    return found


def namespaces_holding(address: str) -> list[str]:
    """Network namespaces with ``address`` on one of their links."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    held = []
    for name in (n for n in names if not n.startswith("(")):
        addrs = subprocess.run(["ip", "-n", name, "-4", "addr"], capture_output=True, text=True).stdout
        if f"inet {address}/" in addrs:
            held.append(name)
    return held


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_dev_serves_the_stack_on_loopback_and_stops_all_of_it_on_ctrl_c(tmp_path: Path) -> None:
    run_dir = tmp_path / "dev"
    api_port, livekit_port = free_port(), free_port()
    argv = [sys.executable, "-m", "orchestrator.cli", "dev", "--port", str(api_port)]
    argv += ["--livekit-port", str(livekit_port), "--keep", str(run_dir)]
    errors = (tmp_path / "dev.err").open("w")
    # Ctrl-C as at a terminal: a suite started in the background (nohup, a CI runner) ignores SIGINT, and a child
    # inherits that, so Python would never turn the test's SIGINT into KeyboardInterrupt.
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509  # no threads run it
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    try:
        out: list[str] = []
        deadline = time.monotonic() + READY_CAP_S
        while "Ctrl-C stops everything." not in out:
            try:
                out.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"no ready line within {READY_CAP_S:.0f} s: {out}\n{(tmp_path / 'dev.err').read_text()}")
        text = "\n".join(out)
        assert out[0] == "ready", text
        assert f"console    http://127.0.0.1:{api_port}/console" in text
        assert f"talk page  http://127.0.0.1:{api_port}/console/talk" in text
        assert f"LiveKit    ws://127.0.0.1:{livekit_port}" in text
        server_ip = re.search(r"media on (10\.213\.\d+\.1)", text)
        assert server_ip, text
        if (ROOT / ".tools" / "bin" / "livekit-sip").exists():
            assert f"SIP        sip:<number>@{server_ip.group(1)}:5060" in text
        # Both reach the namespaces from this machine's loopback.
        assert get(f"http://127.0.0.1:{api_port}/readyz") == 200
        assert get(f"http://127.0.0.1:{livekit_port}/") == 200
        started = started_by(run_dir)
        # livekit-server, the API, the agent worker (and its job processes), the queue worker, Redis.
        assert len(started) >= 5, started
        assert namespaces_holding(server_ip.group(1))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=STOP_CAP_S) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        errors.close()
        # A failed stop must not leave the stack running for the rest of the suite: report it, then end it.
        left = started_by(run_dir)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert left == set(), f"left running after dev stopped: {sorted(left)}"
    stderr = (tmp_path / "dev.err").read_text()
    assert "Traceback" not in stderr, stderr
    assert namespaces_holding(server_ip.group(1)) == []
