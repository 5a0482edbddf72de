"""livekit-server with the Redis its SIP API needs, on loopback: the server that `switchboard sip setup` configures.

livekit-server keeps SIP trunks and dispatch rules in Redis, and answers its SIP API only when it has one
(without, every SIP request fails as "not connected"). Its Redis client dials TCP, so this Redis listens
on a loopback port of its own, not the Unix socket the rest of the stack shares.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.devstack.stack import LIVEKIT_SERVER, START_CAP_S, StackFailed

LOOPBACK = "127.0.0.1"


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
