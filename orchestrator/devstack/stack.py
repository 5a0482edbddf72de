"""The whole voice stack as production runs it, started by a test: livekit-server, the API, the agent worker and
the queue worker in the server's namespace, a private Redis on a Unix socket that every process shares.

The server's config is written here: its keys, its webhook pointed at the API, and WebRTC on the namespace
link only (its address, no external IP lookup, a STUN server of its own address, so nothing is ever sent
beyond the namespaces). The API, the workers and the SQLite store are the embedded defaults: no keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from orchestrator.devstack.netns import NetnsPair

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
LIVEKIT_SERVER = ROOT / ".tools" / "bin" / "livekit-server"
SIGNAL_PORT = 7880
API_PORT = 8000
AGENT_HEALTH_PORT = 8082
PREFIX = "sb"
# Generous caps on start-up (model loading on a busy 2-core box); waits end as soon as the condition holds.
START_CAP_S = 120.0


# How long the whole stack gets to stop on SIGTERM before what is left is killed.
STOP_GRACE_S = 20.0


class StackFailed(RuntimeError):
    """A process of the stack did not come up, or died; the message carries the tails of its log."""


def livekit_config(pair: NetnsPair, *, key: str, secret: str) -> str:
    """livekit-server's YAML for the namespace pair (JSON is YAML)."""
    return json.dumps(
        {
            "port": SIGNAL_PORT,
            "bind_addresses": ["127.0.0.1", pair.server_ip],
            "keys": {key: secret},
            "rtc": {
                "tcp_port": 7881,
                "udp_port": 7882,
                "node_ip": pair.server_ip,
                "use_external_ip": False,
                "ips": {"includes": [pair.subnet]},
                # Without one of ours, clients are handed public STUN servers.
                "stun_servers": [f"{pair.server_ip}:3478"],
            },
            # A caller who leaves closes the room soon, so its room_finished webhook comes within the test; a
            # room that only an agent is in lives longer than the agent waits for a caller.
            "room": {"empty_timeout": 30, "departure_timeout": 5},
            "webhook": {"api_key": key, "urls": [f"http://127.0.0.1:{API_PORT}/webhooks/livekit"]},
            "logging": {"level": "info"},
        },
        indent=2,
    )


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        # livekit-server logs whole SDPs on one line: keep each line short enough to read.
        return "\n".join(line[:400] for line in text[-lines:])


@dataclass
class RealStack:
    """What a test needs to place calls on the running stack and read what happened."""

    pair: NetnsPair
    run_dir: Path
    data_dir: Path
    redis_url: str
    key: str
    secret: str
    procs: list[Proc] = field(default_factory=list)
    # Calls each worker (the queue worker, the agent worker) takes at once.
    slots: int = 2
    # Settings for every process of the stack beyond the embedded defaults (providers' URLs and keys).
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def caller_url(self) -> str:
        """The signalling URL as the caller (in its own namespace) reaches the server."""
        return f"ws://{self.pair.server_ip}:{SIGNAL_PORT}"

    def token(self, room: str, identity: str, *, metadata: dict[str, object] | None = None) -> str:
        """A caller's join token; ``metadata`` becomes the room's metadata when the join creates the room."""
        from livekit import api

        token = (
            api.AccessToken(self.key, self.secret)
            .with_identity(identity)
            .with_grants(api.VideoGrants(room_join=True, room=room))
        )
        if metadata is not None:
            token = token.with_room_config(api.RoomConfiguration(metadata=json.dumps(metadata)))
        return token.to_jwt()

    def create_room(self, name: str) -> None:
        """Create a room through the server's API (as a web front end does before its caller joins)."""
        from livekit import api

        async def create() -> None:
            lk = api.LiveKitAPI(f"http://127.0.0.1:{SIGNAL_PORT}", self.key, self.secret)
            try:
                await lk.room.create_room(api.CreateRoomRequest(name=name))
            finally:
                await lk.aclose()

        self.pair.call_in(self.pair.server_ns, lambda: asyncio.run(create()))

    def participants(self, room: str) -> list[str]:
        """The identities in ``room`` now, as the server reports them (none once the room is gone)."""
        from livekit import api

        async def listed() -> list[str]:
            lk = api.LiveKitAPI(f"http://127.0.0.1:{SIGNAL_PORT}", self.key, self.secret)
            try:
                found = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
                return sorted(p.identity for p in found.participants)
            except api.TwirpError:
                return []
            finally:
                await lk.aclose()

        return self.pair.call_in(self.pair.server_ns, lambda: asyncio.run(listed()))

    async def run_caller(self, argv: list[str], log: Path, cap_s: float | None = None) -> tuple[list[str], int | None]:
        """Run a caller process in the caller's namespace until it exits; its stdout lines and exit code.

        Its stderr goes to ``log``. It never outlives the await: cancelled (Ctrl-C) or past ``cap_s``, it is
        killed, and a timeout raises `TimeoutError`. Its own session keeps a Ctrl-C for the command alone.
        """
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *self.pair.command(self.pair.caller_ns, argv),
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=self.env(),
                cwd=ROOT,
                start_new_session=True,
            )
        try:
            stdout, _ = await asyncio.wait_for(proc.communicate(), cap_s)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        return stdout.decode(errors="replace").strip().splitlines(), proc.returncode

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DATABASE_URL", "REDIS_URL", "LIVEKIT_URL", "PYTEST_CURRENT_TEST", "PYTEST_VERSION"}
        }
        env.update(
            REDIS_URL=self.redis_url,
            SWITCHBOARD_DATA_DIR=str(self.data_dir),
            LIVEKIT_URL=f"ws://127.0.0.1:{SIGNAL_PORT}",
            LIVEKIT_API_KEY=self.key,
            LIVEKIT_API_SECRET=self.secret,
            SWITCHBOARD_AGENT_HEALTH_PORT=str(AGENT_HEALTH_PORT),
            SWITCHBOARD_AGENT_SLOTS=str(self.slots),
            HF_HUB_OFFLINE="1",
            PYTHONWARNINGS="ignore",
            PYTHONPATH=str(ROOT),
        )
        env.update(self.extra_env)
        return env

    def start(self, name: str, argv: list[str], *, ns: str | None = None) -> Proc:
        log = self.run_dir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                self.pair.command(ns or self.pair.server_ns, argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=ROOT,
                # A group of its own: the agent worker's job processes stop with it, and nothing else does.
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_queue_worker(self) -> Proc:
        """The queue worker, started by the test: until then, admitted calls wait in the queue."""
        argv = [sys.executable, "-m", "orchestrator.cli", "worker", "--slots", str(self.slots), "--prefix", PREFIX]
        return self.start("queue-worker", [*argv, "--hold-interval", "0"])

    def wait_for(self, check: Callable[[], T], cap_s: float, what: str) -> T:
        """Poll ``check()`` until it returns something truthy, and return that; past ``cap_s``, raise with the logs."""
        deadline = time.monotonic() + cap_s
        while not (value := check()):
            if time.monotonic() >= deadline:
                raise StackFailed(f"{what} not within {cap_s:.0f} s\n{self.logs()}")
            time.sleep(0.2)
        return value

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (exit {p.popen.poll()}) ---\n{p.tail()}" for p in self.procs)

    def check_alive(self) -> None:
        dead = [p for p in self.procs if p.popen.poll() is not None]
        if dead:
            raise StackFailed(f"{', '.join(p.name for p in dead)} exited\n{self.logs()}")

    def wait_http(self, port: int, path: str, what: str) -> None:
        """Poll ``http://127.0.0.1:port/path`` inside the server's namespace until it answers 200."""

        def poll() -> bool:
            deadline = time.monotonic() + START_CAP_S
            while time.monotonic() < deadline:
                self.check_alive()
                with (
                    contextlib.suppress(OSError, urllib.error.URLError),
                    urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp,
                ):
                    if resp.status == 200:
                        return True
                time.sleep(0.2)
            return False

        if not self.pair.call_in(self.pair.server_ns, poll):
            raise StackFailed(f"{what} did not answer 200 on :{port}{path} within {START_CAP_S:.0f} s\n{self.logs()}")

    def stop_one(self, proc: Proc) -> None:
        """SIGTERM one process's group and wait for it (a worker drains first; SIGKILL past the grace)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait()
        self.procs.remove(proc)

    def stop(self) -> None:
        """SIGTERM every process group (the agent worker drains), then SIGKILL what is left; in reverse order.

        The processes share one 20 s grace, not 20 s each: a stop must end in bounded time however many there are.
        """
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in reversed(self.procs):
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()
            # Job processes the worker left behind are in its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.popen.pid, signal.SIGKILL)


def _redis(run_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A private redis-server on a Unix socket only: reachable from every namespace through the file system."""
    sock = run_dir / "redis.sock"
    popen = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(run_dir),
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sock))
            return popen, f"unix://{sock}?db=0"
        time.sleep(0.05)
    popen.kill()
    raise StackFailed("the private redis-server did not open its socket")


@contextlib.contextmanager
def real_stack(
    pair: NetnsPair,
    run_dir: Path,
    *,
    server: Path = LIVEKIT_SERVER,
    slots: int = 2,
    env: dict[str, str] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Iterator[RealStack]:
    """Start livekit-server, `switchboard serve` and `switchboard agent-worker`; stop them (and a queue worker) after.

    Yields once the API is up and the agent worker has registered with the server (its /readyz says 200);
    the test starts the queue worker (`RealStack.start_queue_worker`) when calls should be answered.
    ``server`` is the livekit-server binary, ``slots`` the calls each worker takes at once, ``env`` settings
    every process gets (a provider's URL and key), and ``on_progress`` is told in a line what starts next.
    """
    said = on_progress or (lambda _line: None)
    run_dir.mkdir(parents=True, exist_ok=True)
    redis, redis_url = _redis(run_dir)
    key, secret = f"sbtest-{secrets.token_hex(4)}", secrets.token_urlsafe(32)
    stack = RealStack(pair, run_dir, run_dir / "data", redis_url, key, secret, slots=slots, extra_env=env or {})
    config = run_dir / "livekit.yaml"
    config.write_text(livekit_config(pair, key=key, secret=secret))
    cli = [sys.executable, "-m", "orchestrator.cli"]
    try:
        said("starting livekit-server")
        stack.start("livekit-server", [str(server), "--config", str(config)])
        stack.wait_http(SIGNAL_PORT, "/", "livekit-server")
        said("starting the API")
        stack.start("api", [*cli, "serve", "--port", str(API_PORT), "--prefix", PREFIX])
        stack.wait_http(API_PORT, "/healthz", "the API")
        said("starting the agent worker (it loads its models, then registers with livekit-server)")
        stack.start("agent-worker", [*cli, "agent-worker"])
        stack.wait_http(AGENT_HEALTH_PORT, "/readyz", "the agent worker")
        yield stack
    finally:
        stack.stop()
        redis.terminate()
        redis.wait(timeout=20)


def preflight(server: Path = LIVEKIT_SERVER, *, callers: bool = True) -> str | None:
    """None when this machine can run the real stack (and its callers), else one line: what is missing, what to do."""
    import shutil

    from orchestrator.devstack.netns import netns_supported

    if not server.is_file():
        return f"no livekit-server at {server}: run `make tools` to build it, or point --livekit-server at one"
    if not os.access(server, os.X_OK):
        return f"{server} is not executable (chmod +x it, or run `make tools` again)"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (the stack's private Redis): run `make services`"
    if callers and shutil.which("flite") is None:
        return "flite is not installed (the callers speak with it): run `make system`"
    if (reason := netns_supported()) is not None:
        return (
            "media needs two network namespaces (libwebrtc ignores loopback), which cannot be made here: "
            f"{reason}; run it as root (or with CAP_NET_ADMIN and CAP_SYS_ADMIN)"
        )
    return None
