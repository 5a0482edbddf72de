"""livekit-server with the Redis its SIP API needs, on loopback (what `sip setup` configures), and livekit-sip.

livekit-server keeps SIP trunks and dispatch rules in Redis, and answers its SIP API only when it has one
(without, every SIP request fails as "not connected"). Its Redis client dials TCP, so this Redis listens
on a loopback port of its own, not the Unix socket the rest of the stack shares. `start_sip` adds the real
livekit-sip to the real stack, in its server namespace, sharing a Redis with its server; `say_at_8k` is a
SIP phone's speech.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.devstack.stack import (
    LIVEKIT_SERVER,
    ROOT,
    SIGNAL_PORT,
    START_CAP_S,
    RealStack,
    StackFailed,
)

LOOPBACK = "127.0.0.1"
LIVEKIT_SIP = LIVEKIT_SERVER.parent / "livekit-sip"
# In the server's namespace, whose loopback is its own: fixed ports cannot clash with the machine's.
SIP_PORT = 5060
SIP_REDIS_PORT = 6390
SIP_HEALTH_PORT = 8084
SIP_RTP_PORTS = (20000, 20199)
# The number phone callers dial: the trunk's, which names their rooms (never the caller's own number).
DIALLED = "+15550000100"


@dataclass(frozen=True)
class SipApiServer:
    """Where the server answers, and the key pair it accepts."""

    url: str
    key: str
    secret: str
    redis_port: int
    log: Path


def free_port() -> int:
    """A TCP port free on loopback now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def free_udp_port() -> int:
    """A UDP port free on loopback now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def server_config(*, port: int, redis_port: int, key: str, secret: str) -> str:
    """livekit-server's YAML (JSON is YAML): loopback only, and the Redis its SIP API keeps its objects in."""
    return json.dumps(
        {
            "port": port,
            "bind_addresses": [LOOPBACK],
            "keys": {key: secret},
            "redis": {"address": f"{LOOPBACK}:{redis_port}"},
            "rtc": {
                "tcp_port": free_port(),
                "udp_port": free_udp_port(),
                "node_ip": LOOPBACK,
                "use_external_ip": False,
                "ips": {"includes": [f"{LOOPBACK}/32"]},
                "stun_servers": [f"{LOOPBACK}:3478"],
            },
            "logging": {"level": "info"},
        },
        indent=2,
    )


def _wait(check: Callable[[], bool], procs: list[subprocess.Popen[bytes]], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_CAP_S
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise StackFailed(f"{what}: a process exited\n{log.read_text(errors='replace')[-3000:]}")
        if check():
            return
        time.sleep(0.1)
    raise StackFailed(f"{what} did not come up within {START_CAP_S:.0f} s\n{log.read_text(errors='replace')[-3000:]}")


def _redis_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False


def _http_answers(url: str) -> bool:
    with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)
    return False


@contextlib.contextmanager
def sip_api_server(run_dir: Path, *, with_redis: bool = True) -> Iterator[SipApiServer]:
    """Start a private redis-server and livekit-server (with ``redis:``) on loopback ports; stop both after.

    ``with_redis=False`` starts the server without Redis, as a stack without SIP runs it.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "livekit-sip-api.log"
    key, secret = f"sbsip-{secrets.token_hex(4)}", secrets.token_urlsafe(32)
    port, redis_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with log.open("wb") as out:
            if with_redis:
                argv = ["redis-server", "--bind", LOOPBACK, "--port", str(redis_port), "--save", "", "--appendonly"]
                procs.append(subprocess.Popen([*argv, "no", "--dir", str(run_dir)], stdout=out, stderr=out))
                _wait(lambda: _redis_answers(redis_port), procs, "the SIP Redis", log)
            config = json.loads(server_config(port=port, redis_port=redis_port, key=key, secret=secret))
            if not with_redis:
                del config["redis"]
            (run_dir / "livekit-sip-api.yaml").write_text(json.dumps(config, indent=2))
            argv = [str(LIVEKIT_SERVER), "--config", str(run_dir / "livekit-sip-api.yaml")]
            procs.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT))
            _wait(lambda: _http_answers(f"http://{LOOPBACK}:{port}/"), procs, "livekit-server", log)
        yield SipApiServer(f"http://{LOOPBACK}:{port}", key, secret, redis_port, log)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def sip_config(stack: RealStack) -> str:
    """livekit-sip's YAML (JSON is YAML): SIP and RTP on the server's namespace address, the server's Redis."""
    return json.dumps(
        {
            "api_key": stack.key,
            "api_secret": stack.secret,
            "ws_url": f"ws://{stack.pair.server_ip}:{SIGNAL_PORT}",
            "redis": {"address": f"{LOOPBACK}:{SIP_REDIS_PORT}"},
            "sip_port": SIP_PORT,
            "rtp_port": {"start": SIP_RTP_PORTS[0], "end": SIP_RTP_PORTS[1]},
            "listen_ip": stack.pair.server_ip,
            "nat_1_to_1_ip": stack.pair.server_ip,
            "media_nat_1_to_1_ip": stack.pair.server_ip,
            "use_external_ip": False,
            "media_use_external_ip": False,
            "health_port": SIP_HEALTH_PORT,
            # Its default refuses calls at 90 % CPU, which a shared 2-core test box is most of the time.
            "max_cpu_utilization": 1.0,
            "logging": {"level": "info"},
        },
        indent=2,
    )


def _stop(stack: RealStack, name: str) -> None:
    """Stop the stack's process ``name`` (its group) and drop it from the stack."""
    import os
    import signal

    for proc in [p for p in stack.procs if p.name == name]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait()
        stack.procs.remove(proc)


def start_sip(stack: RealStack, *, binary: Path = LIVEKIT_SIP) -> None:
    """Start livekit-sip beside the running stack; the stack stops it with the rest.

    livekit-server answers its SIP API and hands calls to livekit-sip only through a Redis they share, and it
    reads Redis only at start: so a Redis (TCP, on the server namespace's loopback) starts, and livekit-server
    starts again with it (the agent worker reconnects by itself). livekit-sip joins rooms as a WebRTC client,
    so it runs in the server's namespace, its SIP and RTP on that namespace's address.

    Raises:
        StackFailed: A process did not come up; the message carries the tails of the logs.
    """
    run_dir = stack.run_dir
    redis_argv = ["redis-server", "--bind", LOOPBACK, "--port", str(SIP_REDIS_PORT), "--save", "", "--appendonly"]
    stack.start("sip-redis", [*redis_argv, "no", "--dir", str(run_dir)])
    if not stack.pair.call_in(stack.pair.server_ns, lambda: _poll(lambda: _redis_answers(SIP_REDIS_PORT), stack)):
        raise StackFailed(f"the SIP Redis did not answer within {START_CAP_S:.0f} s\n{stack.logs()}")
    # The config the server runs with, plus the Redis.
    server_yaml = run_dir / "livekit.yaml"
    config = json.loads(server_yaml.read_text())
    config["redis"] = {"address": f"{LOOPBACK}:{SIP_REDIS_PORT}"}
    server_yaml.write_text(json.dumps(config, indent=2))
    server = next(p for p in stack.procs if p.name == "livekit-server")
    # Its own argv (the namespace's `ip netns exec` comes before it): binary, --config, the file.
    server_argv = [str(arg) for arg in list(server.popen.args)[-3:]]  # type: ignore[arg-type]  # a list, as started
    _stop(stack, "livekit-server")
    stack.start("livekit-server", server_argv)
    stack.wait_http(SIGNAL_PORT, "/", "livekit-server (with the SIP Redis)")
    sip_yaml = run_dir / "livekit-sip.yaml"
    sip_yaml.write_text(sip_config(stack))
    stack.start("livekit-sip", [str(binary), "--config", str(sip_yaml)])
    stack.wait_http(SIP_HEALTH_PORT, "/", "livekit-sip")


def _poll(check: Callable[[], bool], stack: RealStack) -> bool:
    deadline = time.monotonic() + START_CAP_S
    while time.monotonic() < deadline:
        stack.check_alive()
        if check():
            return True
        time.sleep(0.1)
    return False


def sip_setup(stack: RealStack, number: str = DIALLED) -> dict[str, Any]:
    """`switchboard sip setup` in the server's namespace, as an operator runs it: the trunk and dispatch rule.

    Returns:
        Its ``--json`` answer (what it created or found).

    Raises:
        StackFailed: The command failed; the message carries the end of its output.
    """
    argv = [sys.executable, "-m", "orchestrator.cli", "sip", "setup", "--number", number, "--json"]
    done = subprocess.run(
        stack.pair.command(stack.pair.server_ns, argv),
        capture_output=True,
        text=True,
        timeout=120,
        env=stack.env(),
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise StackFailed(f"sip setup exited {done.returncode}: {(done.stdout + done.stderr).strip()[-2000:]}")
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def say_at_8k(text: str, to: Path) -> Path:
    """flite's speech for ``text`` as a WAV at a phone line's 8 kHz, what a SIP phone plays."""
    import wave

    import numpy as np

    from orchestrator.providers.tts import FliteTTS

    tts = FliteTTS()
    pcm = np.frombuffer(tts.render(text), dtype=np.int16).astype(np.float32)
    n = int(len(pcm) * 8000 / tts.sample_rate)
    at_8k = np.interp(np.linspace(0, len(pcm) - 1, n), np.arange(len(pcm)), pcm).astype(np.int16)
    with wave.open(str(to), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(at_8k.tobytes())
    return to
